"""Building blocks the format validators share: fixed-size block reads, the error collector,
UTF-8 scanning with exact offsets.

Nothing here holds more than one block (default 4 MiB) of the file, plus up to 8 MiB of
decompressed output for ``.gz`` (see :mod:`dataset_ops.streams`).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import BinaryIO

from dataset_ops.progress import ProgressLog
from dataset_ops.streams import GunzipCounter, StreamFormatError
from dataset_ops.validation.result import ErrorDetail

#: Bytes read from the file per step (JSONL, text).
BLOCK_SIZE = 4 << 20
#: Bytes read per step for CSV: smaller, as three chunks are in flight at once (peak RSS).
CSV_BLOCK_SIZE = 1 << 20
#: UTF-8 byte order mark; skipped at the start of the content (offsets still count it).
BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
#: Bytes gathered before the first block is handed on, so content sniffing sees enough.
_SNIFF_BYTES = 4096


class Stop(Exception):
    """Internal: validation ends now (a fatal error, or the error cap with ``stop_at_max_errors``)."""


class ErrorCollector:
    """Counts every error, keeps the first ``max_errors``.

    :param max_errors: how many errors to keep.
    :param stop_at_max: raise :class:`Stop` once ``max_errors`` errors were found.
    """

    def __init__(self, max_errors: int, stop_at_max: bool = False):
        self.max_errors = max_errors
        self.stop_at_max = stop_at_max
        self.errors: list[ErrorDetail] = []
        self.count = 0

    def add(
        self,
        code: str,
        reason: str,
        line: int | None = None,
        offset: int | None = None,
        column: str | None = None,
    ) -> None:
        """Record one error. :raises Stop: the cap was reached and ``stop_at_max`` is set."""
        self.count += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(ErrorDetail(code, reason, line, offset, column))
        if self.stop_at_max and self.count >= self.max_errors:
            raise Stop

    def count_more(self, n: int) -> None:
        """Count ``n`` errors that are not listed (found beyond a worker's list).

        :raises Stop: the cap was reached and ``stop_at_max`` is set."""
        if n > 0:
            self.count += n
            if self.stop_at_max and self.count >= self.max_errors:
                raise Stop

    def fatal(self, code: str, reason: str, line: int | None = None, offset: int | None = None) -> Stop:
        """Record an error after which reading cannot go on; returns :class:`Stop` to raise."""
        self.count += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(ErrorDetail(code, reason, line, offset))
        return Stop()


class BlockSource:
    """The content of a binary stream as blocks of about ``block_size`` bytes.

    Counts stored bytes (``bytes_read``) and content bytes (``content_bytes``; they differ for
    gzip), enforces ``max_file_size`` on stored bytes while reading, reports an empty stream,
    skips a UTF-8 BOM at the start (``start_offset`` is then 3) and logs progress.

    :param fileobj: binary stream with ``read(n)``.
    :param block_size: bytes per read.
    :param max_file_size: stored-byte limit, or None.
    :param gzip: decompress (RFC 1952, multi-member) while reading.
    :param errors: where fatal errors go.
    :param progress: progress logger, updated per block.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        *,
        block_size: int,
        max_file_size: int | None,
        gzip: bool,
        errors: ErrorCollector,
        name: str,
        progress: ProgressLog | None = None,
    ):
        self.fileobj = fileobj
        self.block_size = block_size
        self.max_file_size = max_file_size
        self.gzip = gzip
        self.errors = errors
        self.name = name
        self.progress = progress
        self.bytes_read = 0
        self.content_bytes = 0
        self.start_offset = 0
        self.records_hint = 0
        self.last_byte = b""

    def _raw_blocks(self) -> Iterator[bytes]:
        read = self.fileobj.read
        counter = GunzipCounter(self.name) if self.gzip else None
        while True:
            raw = read(self.block_size)
            if not raw:
                break
            self.bytes_read += len(raw)
            if self.max_file_size is not None and self.bytes_read > self.max_file_size:
                raise self.errors.fatal(
                    "file_too_large",
                    f"the file is larger than max_file_size ({self.max_file_size:,} bytes): "
                    f"stopped after reading {self.bytes_read:,} bytes",
                )
            if counter is None:
                yield raw
            else:
                try:
                    yield from counter.feed(raw)
                except StreamFormatError as exc:
                    raise self.errors.fatal("invalid_gzip", exc.reason) from None
            if self.progress:
                self.progress.update(self.bytes_read, self.records_hint)
        if self.bytes_read == 0:
            raise self.errors.fatal("empty_file", "empty file (0 bytes)")
        if counter is not None:
            try:
                counter.finish()
            except StreamFormatError as exc:
                raise self.errors.fatal("invalid_gzip", exc.reason) from None

    def blocks(self) -> Iterator[bytes]:
        """Content blocks (non-empty bytes), the first one at least 4 KiB unless the content is
        shorter and without a leading BOM.

        :raises Stop: empty stream or content, a file over ``max_file_size``, a broken gzip
            stream, or gzip content in a stream whose name does not say so (errors recorded).
        """
        it = self._raw_blocks()
        first = b""
        for block in it:
            first += block
            if len(first) >= _SNIFF_BYTES:
                break
        if not first:
            raise self.errors.fatal("empty_file", "empty file (no content after decompression)")
        if not self.gzip and first.startswith(GZIP_MAGIC):
            raise self.errors.fatal(
                "format_mismatch", "the content is gzip-compressed but the name does not end in .gz", 1, 0
            )
        if first.startswith(BOM):
            self.start_offset = len(BOM)
            first = first[len(BOM) :]
        self.content_bytes = self.start_offset
        if first:
            self.content_bytes += len(first)
            self.last_byte = first[-1:]
            yield first
        for block in it:
            self.content_bytes += len(block)
            self.last_byte = block[-1:]
            yield block


def first_non_space(data: bytes) -> int:
    """Index of the first byte that is not ASCII whitespace, or -1."""
    stripped = data.lstrip(b" \t\r\n")
    return len(data) - len(stripped) if stripped else -1


def describe_start(data: bytes, limit: int = 40) -> str:
    """The first characters of ``data``, quoted, for messages."""
    text = data[: limit * 4].decode("utf-8", "replace").splitlines()[0] if data.strip() else ""
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def is_utf8(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` is entirely valid UTF-8 (RFC 3629: no overlong forms, no encoded
    surrogates such as ``ED A0 80``, nothing above U+10FFFF, no sequence cut off at the end).

    One strict ``str(data, "utf-8")`` (C speed, a memcpy for ASCII). Every parser that may skip
    bytes without decoding them (msgspec skips unknown fields and keys unchecked) is guarded by
    this, so that no rule set lets invalid UTF-8 through anywhere in a record.
    """
    try:
        str(data, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def utf8_errors(data: bytes) -> Iterator[tuple[int, str]]:
    """Every invalid UTF-8 sequence in ``data`` (which must not end inside a valid sequence):
    ``(index of its first byte, description)``.

    Fast when there is none: one ``bytes.decode``.
    """
    pos = 0
    while True:
        try:
            data[pos:].decode("utf-8") if pos else data.decode("utf-8")
            return
        except UnicodeDecodeError as exc:
            bad = pos + exc.start
            seq = data[bad : pos + exc.end]
            yield bad, f"invalid UTF-8: byte(s) {seq.hex(' ').upper()} ({exc.reason})"
            pos += exc.end


class Utf8Stream:
    """UTF-8 check over consecutive blocks with exact offsets of invalid bytes.

    Sequences split across blocks are handled (an incremental decoder keeps up to 3 bytes).
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")

    def feed(self, block: bytes, offset: int, final: bool = False) -> list[tuple[int, str]]:
        """Check ``block`` that starts at content offset ``offset``.

        :returns: ``(offset of the first bad byte, description)`` per invalid sequence.
        """
        found = []
        data = block
        base = offset
        while True:
            pending = len(self._decoder.getstate()[0])
            try:
                self._decoder.decode(data, final)
                return found
            except UnicodeDecodeError as exc:
                bad = base - pending + exc.start
                found.append(
                    (
                        bad,
                        f"invalid UTF-8: byte(s) {exc.object[exc.start : exc.end].hex(' ').upper()} "
                        f"({exc.reason})",
                    )
                )
                self._decoder.reset()
                skip = max(exc.end - pending, 0)
                data = data[skip:]
                base += skip
                if not data:
                    return found

    def finish(self, offset: int) -> list[tuple[int, str]]:
        """End of content at ``offset``: a sequence cut off by the end is an error."""
        pending = self._decoder.getstate()[0]
        if pending:
            self._decoder.reset()
            return [
                (
                    offset - len(pending),
                    f"invalid UTF-8: byte(s) {pending.hex(' ').upper()} (unexpected end of data)",
                )
            ]
        return []
