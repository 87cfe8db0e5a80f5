"""JSONL (JSON Lines, https://jsonlines.org/): one JSON object per ``\\n``-terminated line, UTF-8.

How it runs: the complete lines of a block are first checked as one buffer, in C, by the fast
paths; numpy checks that every line starts with ``{`` and ends with ``}``, so that as many
values as lines means one object per line.

One strict UTF-8 decode of the block comes first (Arrow stores invalid bytes in string columns
unchecked, and msgspec skips undeclared fields and unknown keys without decoding them).

1. When the schema is in its subset, Arrow's JSON reader and vectorized checks
   (:mod:`dataset_ops.validation.arrow_block`) decide.
2. Else, or when Arrow cannot decide a block, a msgspec decoder parses and checks the block
   (:mod:`dataset_ops.validation.block_decoder`).
3. Otherwise the block is split into lines with one ``bytes.split`` and every line goes through
   ``orjson.loads`` (which also rejects invalid UTF-8) and the compiled fastjsonschema validator
   in a tight loop.

Only when that fails is the block checked again line by line, by orjson and fastjsonschema,
to find every bad line with its number, offset and reason. A line longer than the block is
gathered in a ``bytearray`` up to ``max_line_bytes``; beyond that it is reported at once and
the rest of it is skipped without being kept, so memory stays at one block plus at most
``max_line_bytes``.

With ``workers`` > 1 (the default for files of 256 MiB and more, see
:func:`~dataset_ops.validation.validator.default_workers`), the reading thread only reads and
cuts blocks at the last newline; :meth:`JsonlValidator.check_chunk` runs elsewhere: in threads
(:class:`ThreadChunkPool`) on the Arrow path, whose C++ releases the GIL; else in worker
processes (:mod:`dataset_ops.validation.workers`, each running
:mod:`dataset_ops.validation.jsonl_worker`). At most two chunks per worker are in flight, and
the answers are applied in file order, so the result is the same as with one thread. Threads get
memory views of the blocks: the line cut by a block boundary is joined and checked as a chunk of
its own. Blocks with a line longer than ``max_line_bytes`` are handled by the reading thread,
after the workers' earlier answers.

Line rules: an empty or whitespace-only line is an error (``empty_line``) and not a record; a
final line without ``\\n`` is a line like the others; CRLF endings are accepted (``\\r`` is JSON
whitespace).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from dataset_ops.validation.arrow_block import ArrowBlockChecker, compile_arrow_checker
from dataset_ops.validation.reader import (
    BlockSource,
    ErrorCollector,
    Stop,
    describe_start,
    first_non_space,
    is_utf8,
)
from dataset_ops.validation.rules import RuleSet
from dataset_ops.validation.workers import WorkerPool

_NL, _CR, _OPEN, _CLOSE = 10, 13, ord("{"), ord("}")
_COMPILE = object()  # JsonlValidator(arrow=...): compile the Arrow checker from the rules
_JSON_KIND = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


class JsonlValidator:
    """Validate JSONL content from a :class:`BlockSource`; see the module docstring.

    :param rules: the rule set (``jsonl.schema``, ``max_line_bytes``, ``max_errors``).
    :param errors: where errors go.
    :param workers: processes that check blocks of whole lines while this one reads (1: none,
        everything in the calling thread). Results are taken in file order, so line numbers,
        offsets, the error list and the totals are the same as with one.
    """

    def __init__(self, rules: RuleSet, errors: ErrorCollector, workers: int = 1, arrow: Any = _COMPILE):
        self.rules = rules
        self.errors = errors
        self.validate: Callable[[Any], Any] = rules.jsonl.validator
        self.decode_block = rules.jsonl.block_decoder.decode_lines if rules.jsonl.block_decoder else None
        #: the Arrow fast path (:mod:`.arrow_block`), or None where the schema is outside it
        self.arrow: ArrowBlockChecker | None = (
            compile_arrow_checker(rules.jsonl.schema) if arrow is _COMPILE else arrow
        )
        self.max_line = rules.max_line_bytes
        self.lines = 0
        self.records = 0
        self.workers = workers
        self._pool: WorkerPool | None = None
        self._offsets: deque[int] = deque()  # content offset of each chunk the workers have
        #: worker processes that ran, and their peak RSS added up (bytes; None if none ran)
        self.workers_started = 0
        self.worker_peak_rss_bytes: int | None = None

    def run(self, src: BlockSource) -> None:
        """Read ``src`` to the end. :raises Stop: a fatal error or the error cap."""
        finished = False
        try:
            self._run(src)
            finished = True
        finally:
            if self._pool is not None:  # after a failure or Stop: at once, without the answers
                self._pool.close(kill=not finished)
                self.worker_peak_rss_bytes = self._pool.peak_rss_bytes
                self._pool = None

    def _run(self, src: BlockSource) -> None:
        loads, validate, max_line = orjson.loads, self.validate, self.max_line
        pos = src.start_offset  # content offset of the next block
        carry: bytes | bytearray = b""  # the start of a line that goes on in the next block
        skipping = False  # inside a line already reported as too long: drop bytes up to its end
        first = True
        fast_ok = self.decode_block is not None or self.arrow is not None
        parallel = self.workers > 1
        for block in src.blocks():
            block_start = pos
            pos += len(block)
            if first:
                self._sniff(block, block_start)
                first = False
            if parallel and len(carry) + len(block) <= max_line and not skipping:
                last = block.rfind(b"\n")
                if last >= 0:  # whole lines, none too long: to a worker
                    if carry and self.arrow is not None:
                        # threads take memory views: only the line cut by the block boundary is
                        # joined (a copy of one line, not of the block), and checked on its own
                        nl = block.find(b"\n")
                        self._submit(b"", memoryview(carry + block[: nl + 1]), block_start - len(carry))
                        if nl < last:
                            self._submit(b"", memoryview(block)[nl + 1 : last + 1], block_start + nl + 1)
                    else:
                        self._submit(carry, memoryview(block)[: last + 1], block_start - len(carry))
                    carry = block[last + 1 :]
                    src.records_hint = self.records
                    continue
            self._drain(0)  # what follows counts lines itself
            if skipping:
                nl = block.find(b"\n")
                if nl < 0:
                    continue
                skipping = False
                self.lines += 1
                block = block[nl + 1 :]
                block_start += nl + 1
                if not block:
                    continue
            if fast_ok and len(carry) + len(block) <= max_line:
                last = block.rfind(b"\n")
                if last >= 0:
                    if carry:
                        region = carry + block[: last + 1]
                    else:
                        region = memoryview(block)[: last + 1]
                    n = self._fast_region(region)
                    if n:
                        self.lines += n
                        self.records += n
                        carry = block[last + 1 :]
                        src.records_hint = self.records
                        continue
            lines = block.split(b"\n")
            tail = lines.pop()
            line_start = block_start - len(carry)
            if carry:
                if not lines:  # the carried line goes on past this block
                    seen = len(carry) + len(tail)
                    if seen > max_line:
                        self._too_long(self.lines + 1, line_start, seen, streaming=True)
                        skipping, carry = True, b""
                    else:
                        if not isinstance(carry, bytearray):
                            carry = bytearray(carry)
                        carry += tail
                    continue
                seen = len(carry) + len(lines[0])
                if seen > max_line:
                    self.lines += 1
                    self._too_long(self.lines, line_start, seen, streaming=False)
                    line_start += seen + 1
                    del lines[0]
                elif isinstance(carry, bytearray):
                    carry += lines[0]
                    lines[0] = carry
                else:
                    lines[0] = carry + lines[0]
                carry = b""
            if lines:
                self._check_lines(lines, line_start, loads, validate, max_line)
            if len(tail) > max_line:
                self._too_long(self.lines + 1, pos - len(tail), len(tail), streaming=True)
                skipping = True
            else:
                carry = tail
            src.records_hint = self.records
        self._drain(0)
        if skipping:  # the over-long line was the last one, without '\n'
            self.lines += 1
        elif carry:
            self._check_lines([carry], pos - len(carry), loads, validate, max_line)

    def _submit(self, head: bytes | bytearray, lines: memoryview, offset: int) -> None:
        """Hand whole lines (``head`` + ``lines``) starting at content ``offset`` to a worker;
        keep at most two chunks per worker in flight, applying finished ones in order."""
        if self._pool is None:
            if self.arrow is not None:  # Arrow releases the GIL: threads, no processes
                self._pool = ThreadChunkPool(self.rules, self.arrow, self.workers)
                self.workers_started = self.workers
            else:
                self._pool = WorkerPool(
                    self.rules.jsonl.to_dict(), self.max_line, self.rules.max_errors, self.workers
                )
                self.workers_started = self.workers
        self._pool.submit(head, lines)
        self._offsets.append(offset)
        self._drain(2 * self.workers)

    def _drain(self, keep: int) -> None:
        """Apply worker answers, oldest first, until ``keep`` chunks are left in flight."""
        while len(self._offsets) > keep:
            lines, records, errors, found = self._pool.next_answer()
            offset = self._offsets.popleft()
            base = self.lines
            self.lines += lines
            self.records += records
            for code, reason, line, at, column in errors:
                self.errors.add(code, reason, base + line, offset + at, column)
            self.errors.count_more(found - len(errors))  # found in the chunk beyond the worker's list

    def _fast_region(self, region: bytes | memoryview) -> int:
        """Check whole lines (``region`` ends with ``\\n``) in C; their count, or 0 to check them again.

        ``decode_lines`` alone would accept ``{..}{..}`` on one line beside a blank line, or one
        object over two lines, since it counts values, not lines. So every line must also start
        with ``{`` and end with ``}`` (or ``}\\r``): then every newline lies between two top-level
        values (a JSON string cannot hold a raw newline), each line holds at least one value,
        and as many values as lines means exactly one object per line.

        msgspec skips fields the schema does not declare (and keys it does not know) without
        decoding them, so invalid UTF-8 there would pass: the region's bytes are checked as
        UTF-8 first, and a region with invalid bytes goes to the exact path (orjson checks the
        whole line), which reports the line, the offset of the bad byte and why.
        """
        if not is_utf8(region):
            return 0
        a = np.frombuffer(region, np.uint8)
        if a[0] != _OPEN:
            return 0
        ends = np.flatnonzero(a == _NL)
        if not (a[ends[:-1] + 1] == _OPEN).all():
            return 0
        closed = a[ends - 1] == _CLOSE
        if not closed.all():
            cr = ends[~closed]
            if cr.min() < 2 or not ((a[cr - 1] == _CR) & (a[cr - 2] == _CLOSE)).all():
                return 0
        if self.arrow is not None:
            rows = self.arrow.rows_if_valid(region)
            if rows == len(ends):
                return rows
        if self.decode_block is None:
            return 0
        try:
            values = len(self.decode_block(region))
        except Exception:  # msgspec.ValidationError / DecodeError: the exact path says which line
            return 0
        return len(ends) if values == len(ends) else 0

    def check_chunk(self, chunk: bytes | memoryview) -> list:
        """Check one chunk of whole lines (ending in ``\\n``, none longer than ``max_line_bytes``)
        on its own, as a worker process does: line numbers from 1 and byte offsets from 0 within
        the chunk; the counters and errors of this validator are reset first.

        :returns: ``[lines, records, errors, found]``: ``errors`` the first ``max_errors`` as
            ``[code, reason, line, offset, column]``, ``found`` the count of all of them.
        :raises Stop: a fatal error.
        """
        self.lines = self.records = 0
        self.errors = ErrorCollector(self.errors.max_errors)
        if (self.decode_block is not None or self.arrow is not None) and (n := self._fast_region(chunk)):
            return [n, n, [], 0]
        lines = bytes(chunk).split(b"\n")  # a thread's memory view: copied only on this slow path
        lines.pop()
        self._check_lines(lines, 0, orjson.loads, self.validate, self.max_line)
        errors = [[e.code, e.reason, e.line, e.offset, e.column] for e in self.errors.errors]
        return [self.lines, self.records, errors, self.errors.count]

    def _sniff(self, block: bytes, offset: int) -> None:
        i = first_non_space(block)
        if i < 0 or block[i : i + 1] == b"{":
            return
        what = "a JSON array, not one object per line" if block[i : i + 1] == b"[" else "not a JSON object"
        raise self.errors.fatal(
            "format_mismatch",
            f"content does not look like JSONL: it starts with {describe_start(block[i:])} ({what})",
            1 + block.count(b"\n", 0, i),
            offset + block.rfind(b"\n", 0, i) + 1,
        )

    def _too_long(self, number: int, offset: int, seen: int, streaming: bool) -> None:
        """Report line ``number`` (a record) as too long; ``seen``: its bytes so far."""
        self.records += 1
        size = f"at least {seen:,}" if streaming else f"{seen:,}"
        self.errors.add(
            "line_too_long",
            f"line is longer than max_line_bytes ({self.max_line:,} bytes): {size} bytes; not parsed",
            number,
            offset,
        )

    def _check_lines(
        self, lines: list, offset: int, loads: Callable, validate: Callable, max_line: int
    ) -> None:
        """Check complete lines (without ``\\n``) starting at content ``offset``."""
        try:
            if sum(map(len, lines)) > max_line and max(map(len, lines)) > max_line:
                raise ValueError("a line is too long")
            if self.decode_block is not None or self.arrow is not None:  # in C; blank lines differ
                if self._fast_region(b"\n".join(lines) + b"\n") != len(lines):
                    raise ValueError("not one object per line, or a rule failed")
            else:
                for line in lines:
                    validate(loads(line))
        except Exception:
            self._check_lines_slowly(lines, offset, loads, validate, max_line)
            return
        self.lines += len(lines)
        self.records += len(lines)

    def _check_lines_slowly(
        self, lines: list, offset: int, loads: Callable, validate: Callable, max_line: int
    ) -> None:
        """Line by line, every error with its line number and offset."""
        add = self.errors.add
        for line in lines:
            self.lines += 1
            number = self.lines
            if not line.strip(b" \t\r"):
                add("empty_line", "empty line (JSONL needs one JSON object per line)", number, offset)
            elif len(line) > max_line:
                self._too_long(number, offset, len(line), streaming=False)
            else:
                self.records += 1
                self._check_one(line, number, offset, loads, validate)
            offset += len(line) + 1

    def _check_one(self, line: bytes, number: int, offset: int, loads: Callable, validate: Callable) -> None:
        add = self.errors.add
        try:
            obj = loads(line)
        except orjson.JSONDecodeError as exc:
            try:
                bytes(line).decode("utf-8")
            except UnicodeDecodeError as uexc:
                bad = line[uexc.start : uexc.end]
                add(
                    "invalid_utf8",
                    f"invalid UTF-8: byte(s) {bytes(bad).hex(' ').upper()} ({uexc.reason})",
                    number,
                    offset + uexc.start,
                )
                return
            add("invalid_json", f"invalid JSON: {exc}", number, offset)
            return
        if obj.__class__ is not dict:
            kind = "null" if obj is None else _JSON_KIND.get(type(obj), type(obj).__name__)
            add("not_an_object", f"the line holds {kind}, not a JSON object", number, offset)
            return
        try:
            validate(obj)
        except Stop:
            raise
        except Exception as exc:  # fastjsonschema.JsonSchemaValueException
            message = getattr(exc, "message", str(exc))
            path = getattr(exc, "path", None)
            column = ".".join(str(p) for p in path[1:]) if path and len(path) > 1 else None
            add("schema", f"schema: {message}", number, offset, column)


class ThreadChunkPool:
    """Chunks of whole lines checked by :meth:`JsonlValidator.check_chunk` in ``threads`` threads
    (the Arrow path releases the GIL), with :class:`~.workers.WorkerPool`'s interface: answers are
    taken in the order the chunks were submitted. Each chunk gets its own validator state; the
    compiled rules and the Arrow checker are shared (both are read-only).

    :param rules: the rule set. :param arrow: its compiled Arrow checker. :param threads: >= 1.
    """

    def __init__(self, rules: RuleSet, arrow: ArrowBlockChecker, threads: int):
        from concurrent.futures import ThreadPoolExecutor

        self._rules, self._arrow = rules, arrow
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="jsonl-check")
        self._pending: deque = deque()
        #: no worker processes: their peak RSS is nothing (the threads' memory is this process's)
        self.peak_rss_bytes: int | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def _check(self, chunk: bytes | memoryview) -> list:
        validator = JsonlValidator(self._rules, ErrorCollector(self._rules.max_errors), arrow=self._arrow)
        return validator.check_chunk(chunk)

    def submit(self, head: bytes | bytearray, lines: memoryview) -> None:
        """Check ``head + lines`` (whole lines) in a thread; joined only when ``head`` is not empty."""
        chunk = bytes(head) + lines if head else lines
        self._pending.append(self._executor.submit(self._check, chunk))

    def next_answer(self) -> tuple[int, int, list[list], int]:
        """The answer to the oldest chunk: ``(lines, records, errors, found)``; re-raises what the
        check raised (a :class:`Stop`)."""
        lines, records, errors, found = self._pending.popleft().result()
        return lines, records, errors, found

    def close(self, kill: bool = False) -> None:
        """Stop the threads (``kill``: drop the chunks not started yet)."""
        self._executor.shutdown(wait=True, cancel_futures=kill)
