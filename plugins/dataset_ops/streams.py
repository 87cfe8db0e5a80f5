"""Streaming helpers: gunzip a byte stream block by block while checking it.

Nothing here holds a whole file: memory is one compressed block (1 MiB) plus at most 8 MiB of
decompressed output, whatever the file size or compression ratio. Gzip format: RFC 1952;
multi-member files are read member after member as ``gzip``/``zcat`` do. Progress lines come
from the suite's one reporter, :class:`dataset_ops.progress.ProgressLog`.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from dataset_ops.progress import ProgressLog

__all__ = [
    "BLOCK_SIZE",
    "MAX_HEADER_BYTES",
    "MAX_OUTPUT",
    "GunzipCounter",
    "StreamFormatError",
    "VerifyingReader",
    "gunzip_blocks",
]

#: Compressed bytes read per step (bytes).
BLOCK_SIZE = 1 << 20
#: Largest decompressed piece produced at once (bytes).
MAX_OUTPUT = 8 << 20
#: Longest header line we look for before giving up (bytes).
MAX_HEADER_BYTES = 64 << 10


class StreamFormatError(ValueError):
    """A stream is not what it claims to be; the message names the file, line and reason.

    :param source: file name or URI.
    :param line: 1-based line number in the decompressed text, when known.
    :param reason: what is wrong.
    """

    def __init__(self, source: str, reason: str, line: int | None = None):
        self.source, self.reason, self.line = source, reason, line
        where = f"{source}: line {line}" if line is not None else source
        super().__init__(f"{where}: {reason}")


class GunzipCounter:
    """Decompress gzip data fed in compressed blocks; count bytes and lines; check the header.

    Feed compressed blocks with :meth:`feed`; it yields the decompressed bytes. Call
    :meth:`finish` at end of input: it raises if the gzip stream was truncated.

    :param source: name used in error messages.
    :param expected_header: exact first line (without ``\\n``) the text must start with, or None.
    :raises StreamFormatError: not gzip, corrupt deflate data, a wrong header, or truncation.
    """

    def __init__(self, source: str, expected_header: bytes | None = None):
        self.source = source
        self.expected_header = expected_header
        self._d = zlib.decompressobj(wbits=31)
        self._header_buf: bytearray | None = bytearray() if expected_header is not None else None
        self.compressed_bytes = 0
        self.decompressed_bytes = 0
        self.newlines = 0
        self._last_byte = b"\n"
        self._member_open = False

    def feed(self, block: bytes) -> Iterator[bytes]:
        """Decompress one compressed block; yields its decompressed bytes in pieces.

        Each piece is at most :data:`MAX_OUTPUT` bytes, so memory stays bounded even for data
        that compresses extremely well. The generator must be consumed to the end.
        """
        self.compressed_bytes += len(block)
        data = block
        while data:
            self._member_open = True
            try:
                text = self._d.decompress(data, MAX_OUTPUT)
            except zlib.error as exc:
                raise StreamFormatError(
                    self.source, f"not a valid gzip stream ({exc})", self.newlines + 1
                ) from None
            if text:
                self._account(text)
                yield text
            if self._d.eof:  # end of one gzip member; another may follow
                data = self._d.unused_data
                self._d = zlib.decompressobj(wbits=31)
                self._member_open = False
            else:
                data = self._d.unconsumed_tail

    def _account(self, text: bytes) -> None:
        if self._header_buf is not None:
            self._check_header(text)
        self.decompressed_bytes += len(text)
        self.newlines += text.count(b"\n")
        self._last_byte = text[-1:]

    def _check_header(self, text: bytes) -> None:
        assert self._header_buf is not None and self.expected_header is not None
        self._header_buf += text[:MAX_HEADER_BYTES]
        end = self._header_buf.find(b"\n")
        if end < 0:
            if len(self._header_buf) >= MAX_HEADER_BYTES:
                raise StreamFormatError(self.source, "no header line in the first 64 KiB", 1)
            return
        header = bytes(self._header_buf[:end]).rstrip(b"\r")
        self._header_buf = None
        if header != self.expected_header:
            raise StreamFormatError(
                self.source,
                f"wrong header: expected {self.expected_header.decode(errors='replace')!r}, "
                f"got {header[:300].decode(errors='replace')!r}",
                1,
            )

    def finish(self) -> None:
        """Check the end of input.

        :raises StreamFormatError: the last gzip member is incomplete (truncated download), the
            input was empty, or the header line never ended.
        """
        if self.compressed_bytes == 0:
            raise StreamFormatError(self.source, "empty file (0 bytes)")
        if self._member_open:
            raise StreamFormatError(
                self.source,
                f"truncated gzip: the stream ends after {self.compressed_bytes:,} compressed bytes "
                f"inside a member (decompressed so far: {self.decompressed_bytes:,} bytes)",
                self.newlines + 1,
            )
        if self._header_buf is not None:
            raise StreamFormatError(self.source, "the file ends before the header line does", 1)

    @property
    def rows(self) -> int:
        """Data lines after the header (a last line without ``\\n`` counts too)."""
        lines = self.newlines + (0 if self._last_byte == b"\n" else 1)
        return max(lines - (1 if self.expected_header is not None else 0), 0)


class VerifyingReader:
    """A read-only binary file object over a gzip source that checks it while it is read.

    Whoever reads it (``boto3`` ``upload_fileobj``, ``shutil.copyfileobj``) gets the compressed
    bytes unchanged; meanwhile the reader computes sha256 and size, decompresses to count rows
    and check the header, and at end of input raises :class:`StreamFormatError` instead of
    returning EOF if the gzip stream is incomplete. Writers that only publish on a clean EOF
    therefore never publish a broken file.

    :param raw: binary source with ``read(n)``.
    :param source: name for messages (the URL).
    :param expected_header: first line the decompressed text must have.
    :param expected_bytes: Content-Length, if announced; a shorter body is an error.
    :param progress: updated with the compressed bytes and rows after each block read.
    """

    def __init__(
        self,
        raw: BinaryIO,
        source: str,
        expected_header: bytes | None,
        expected_bytes: int | None = None,
        progress: ProgressLog | None = None,
    ):
        self._raw = raw
        self.source = source
        self.expected_bytes = expected_bytes
        self.gunzip = GunzipCounter(source, expected_header)
        self.sha256 = hashlib.sha256()
        self._done = False
        self._progress = progress

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` compressed bytes (``-1``: one block)."""
        if self._done:
            return b""
        block = self._raw.read(size if size and size > 0 else BLOCK_SIZE)
        if block:
            self.sha256.update(block)
            for _ in self.gunzip.feed(block):
                pass
            if self._progress:
                self._progress.update(self.gunzip.compressed_bytes, self.gunzip.rows)
            return block
        self._done = True
        if self.expected_bytes is not None and self.gunzip.compressed_bytes != self.expected_bytes:
            raise StreamFormatError(
                self.source,
                f"incomplete body: got {self.gunzip.compressed_bytes:,} of {self.expected_bytes:,} bytes",
            )
        self.gunzip.finish()
        return b""

    @property
    def bytes_read(self) -> int:
        """Compressed bytes read so far."""
        return self.gunzip.compressed_bytes


def gunzip_blocks(fileobj: BinaryIO, counter: GunzipCounter, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """Yield decompressed, non-empty blocks of ``fileobj`` through ``counter``; check the end."""
    while True:
        block = fileobj.read(block_size)
        if not block:
            break
        yield from counter.feed(block)
    counter.finish()
