"""CSV (RFC 4180, https://www.rfc-editor.org/rfc/rfc4180): a header record, then records of the
same number of fields; fields may be ``"``-quoted, a quote inside is doubled (``""``), quoted
fields may hold the delimiter, CR and LF; records end in CRLF or LF. UTF-8.

How it runs (fast path): the content is cut into chunks of whole records, about one block
each. A record boundary is a ``\\n`` preceded by an even number of ``"`` since the chunk
started; numpy finds the newlines and quotes of a block and their parity in a few vectorized
passes (:class:`_Scanner`), which also flag quotes RFC 4180 forbids. Each chunk is parsed by
``pyarrow.csv.read_csv`` into string columns (arrow checks UTF-8 and the field count) and the
column rules are applied as vectorized ``pyarrow.compute`` kernels (``cast`` for numbers and ISO
dates, ``strptime`` for formatted dates, ``is_in`` for enums and booleans, RE2 for patterns).
Parsing and the column checks run in two worker threads (arrow releases the GIL), one chunk
each, while the main thread reads and cuts the next one; results are taken in file order.
Memory: three chunks of about ``CSV_BLOCK_SIZE`` (1 MiB) and their arrow tables.

Precise path: a chunk in which anything fails, or that holds a quote RFC 4180 forbids, is
checked again: an exact quote state machine (:func:`_quote_scan`) and Python's ``csv`` module
over its lines give every problem its line number (the record's first line), the byte offset
of that line and a reason; the column rules are the same kernels, mapped back to records. Only
the bad chunks pay for this.

Decisions:

* The header is the first record. ``header: exact`` wants the column names in order;
  ``by_name`` wants the required ones in any order. When the header does not match, the rest
  of the file is still checked for structure (UTF-8, quoting, field count), not for types.
* An empty field (a ``null_values`` entry, quoted or not) is null.
* Blank lines are errors (``empty_line``) unless ``skip_blank_lines``; they are not records.
* ``max_line_bytes`` bounds a whole record. A record without an end within that many bytes
  (typically an unclosed quote) stops the validation: the error names the line where the
  quoted field opened. An unclosed quote at the end of the file is reported the same way.
* ``csv.field_size_limit`` is raised to ``max_line_bytes`` for the process (the ``csv``
  module's default is 128 KiB per field).
"""

from __future__ import annotations

import bisect
import csv
import io
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from dataset_ops.validation.reader import (
    BlockSource,
    ErrorCollector,
    describe_start,
    first_non_space,
    utf8_errors,
)
from dataset_ops.validation.rules import ColumnRule, CsvRules, RuleSet

#: Longest value shown in an error message (characters).
_SHOW = 60
#: Worker threads that parse and check chunks (arrow releases the GIL while it works).
WORKERS = 2


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOW else text[: _SHOW - 4] + "...'"


class _Cut(NamedTuple):
    """Where to cut a buffer that starts at a record start."""

    end: int  # index just after the last record-ending '\n', 0 if there is none
    newlines: int  # '\n' bytes before ``end`` (or in the whole buffer when ``end`` is 0)
    quotes: int  # '"' bytes in the whole buffer when ``end`` is 0 (to resume the scan)
    suspicious: bool  # a quote before ``end`` breaks RFC 4180 (then ``end`` comes from a full scan)


class _Scanner:
    """Record boundaries of CSV bytes, found with vectorized scans.

    A ``\\n`` ends a record when the number of ``"`` before it (from a record start) is even. That
    holds while every quote opens a field (it follows the delimiter, CR, LF or the start), closes
    one, or is doubled inside one. A quote after an ordinary character at an even count (so
    outside a quoted field) breaks it: RFC 4180 forbids it, pyarrow and Python's ``csv`` read it
    as a literal character. Such buffers, and quotes between two ordinary characters
    (``"ab"c``, ``ab"c``), are *suspicious*: their boundaries come from :func:`_quote_scan`, an
    exact state machine, and their chunks go to the precise path.
    """

    def __init__(self, delimiter: str):
        self.delimiter = ord(delimiter)
        ordinary = np.ones(256, dtype=bool)
        ordinary[[self.delimiter, 0x22, 0x0A, 0x0D]] = False
        self.ordinary = ordinary

    def cut(
        self, buf: bytes | bytearray, start: int = 0, done: _Cut | None = None, final: bool = False
    ) -> _Cut:
        """The last record boundary in ``buf`` (or its end when ``final``).

        :param start: bytes before ``start`` were scanned already and hold no boundary;
            ``done`` is what that scan counted. Only ``buf[start:]`` is scanned, so a record
            that grows over many blocks costs one block of scratch memory per step.
        """
        a = np.frombuffer(buf, dtype=np.uint8)
        quotes = np.flatnonzero(a[start:] == 0x22) + start
        nl_before = done.newlines if done else 0
        q_before = done.quotes if done else 0
        end, nq = 0, len(quotes)
        if final:
            end = len(buf)
        else:
            # the last '\n' with an even number of quotes before it: a few rfind steps back
            # (odd ones are newlines inside quoted fields, ~1% in real data); many: vectorized
            pos = buf.rfind(b"\n", start)
            for _ in range(64):
                if pos < start:
                    break
                k = int(np.searchsorted(quotes, pos))
                if not (q_before + k) & 1:
                    end, nq = pos + 1, k
                    break
                pos = buf.rfind(b"\n", start, pos)
            else:
                nl = np.flatnonzero(a[start : pos + 1] == 0x0A) + start
                before = np.searchsorted(quotes, nl) + q_before
                even = np.flatnonzero((before & 1) == 0)
                if len(even):
                    end, nq = int(nl[even[-1]]) + 1, int(before[even[-1]]) - q_before
        k = buf.count(b"\n", start, end or len(buf))
        suspicious = (done is not None and done.suspicious) or (
            bool(nq) and self._suspicious(a, quotes[:nq], q_before)
        )
        if final and (q_before + nq) & 1:
            suspicious = True  # ends inside a quoted field
        if suspicious and not final:
            end = _quote_scan(buf, self.delimiter).last_boundary(buf)
            return _Cut(end, buf.count(b"\n", 0, end or len(buf)), buf.count(b'"'), True)
        return _Cut(end, nl_before + k, q_before + len(quotes), suspicious)

    def _suspicious(self, a: np.ndarray, quotes: np.ndarray, q_before: int) -> bool:
        ordinary = self.ordinary
        prev = a[np.maximum(quotes - 1, 0)]
        prev_ordinary = ordinary[prev]
        if quotes[0] == 0:
            prev_ordinary[0] = False  # the first quote starts a field
        outside = ((np.arange(len(quotes)) + q_before) & 1) == 0
        if np.any(prev_ordinary & outside):
            return True
        nxt = a[np.minimum(quotes + 1, len(a) - 1)]
        return bool(np.any(prev_ordinary & ordinary[nxt]))


class _QuoteScan(NamedTuple):
    problems: list[tuple[int, str]]  # (index of the quote, reason)
    spans: list[tuple[int, int]]  # (opening quote, closing quote) of each quoted field
    open_at: int | None  # opening quote of a field still open at the end

    def last_boundary(self, data: bytes | bytearray) -> int:
        """Index just after the last ``\\n`` of ``data`` outside quoted fields, or 0."""
        opens = [o for o, _ in self.spans]
        limit = len(data) if self.open_at is None else self.open_at
        while True:
            nl = data.rfind(b"\n", 0, limit)
            if nl < 0:
                return 0
            i = bisect.bisect_right(opens, nl) - 1
            if i >= 0 and self.spans[i][1] > nl:
                limit = opens[i]
            else:
                return nl + 1


def _quote_scan(data: bytes | bytearray, delimiter: int) -> _QuoteScan:
    """Quote state machine over ``data`` (which starts at a record start), as pyarrow and
    Python's ``csv`` read it: a ``"`` opens a field only at the start of a field; inside, ``""``
    is a quote and ``"`` ends the field. Python-speed per quote: only for suspicious chunks.
    """
    problems: list[tuple[int, str]] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    while True:
        q = data.find(b'"', pos)
        if q < 0:
            return _QuoteScan(problems, spans, None)
        if not _opens_field(data, q, delimiter):
            problems.append((q, "'\"' inside a field that is not quoted"))
            pos = q + 1
            continue
        c = _closing_quote(data, q)
        if c < 0:
            return _QuoteScan(problems, spans, q)
        spans.append((q, c))
        after = data[c + 1 : c + 2]
        if after and after[0] not in (delimiter, 0x0A, 0x0D):
            problems.append((c, "text after the closing '\"' of a quoted field"))
        pos = c + 1


def _opens_field(data: bytes | bytearray, q: int, delimiter: int) -> bool:
    """Whether the ``"`` at ``q`` opens a quoted field: it is at the start of ``data`` or
    follows the delimiter or a line break."""
    before = data[q - 1] if q else 0x0A
    return before in (delimiter, 0x0A, 0x0D)


def _closing_quote(data: bytes | bytearray, q: int) -> int:
    """Index of the ``"`` that closes the quoted field opened at ``q`` (``""`` inside is an
    escaped quote), or -1 when the field is still open at the end of ``data``."""
    p = q + 1
    while True:
        c = data.find(b'"', p)
        if c < 0 or data[c + 1 : c + 2] != b'"':
            return c
        p = c + 2


def _first_record_end(data: bytes | bytearray, delimiter: int) -> int:
    """Index just after the first record of ``data`` (its terminator included), or ``len(data)``."""
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        q = data.find(b'"', pos, nl if nl >= 0 else len(data))
        if q < 0:
            return nl + 1 if nl >= 0 else len(data)
        if not _opens_field(data, q, delimiter):
            pos = q + 1
            continue
        c = _closing_quote(data, q)
        if c < 0:
            return len(data)
        pos = c + 1


def _longest_record(view: memoryview) -> int:
    """Bytes of the longest record in ``view`` (whole records, no bad quotes), terminator excluded."""
    a = np.frombuffer(view, dtype=np.uint8)
    nl = np.flatnonzero(a == 0x0A)
    quotes = np.flatnonzero(a == 0x22)
    ends = nl[(np.searchsorted(quotes, nl) & 1) == 0]
    if len(a) and a[-1] != 0x0A:
        ends = np.append(ends, len(a))  # the last record of the file, unterminated
    if not len(ends):
        return 0
    starts = np.concatenate(([0], ends[:-1] + 1))
    cr = (ends > 0) & (a[np.maximum(ends - 1, 0)] == 0x0D) & (ends < len(a))
    return int((ends - starts - cr).max())


def _looks_like_json(block: bytes, i: int) -> bool:
    """Whether the line at ``block[i:]`` starts a JSON object or array (not a header like ``[id],x``)."""
    nl = block.find(b"\n", i)
    first = block[i : nl if nl >= 0 else len(block)].strip()
    if first[:1] not in (b"{", b"["):
        return False
    if first in (b"{", b"[") or first[:2] in (b'{"', b"{}", b"[{", b"[[", b'["', b"[]"):
        return True
    try:
        return isinstance(orjson.loads(first), dict | list)
    except orjson.JSONDecodeError:
        return False


def _bad_rows(arr: pa.Array, convert: Callable[[pa.Array], object]) -> list[int]:
    """Rows of ``arr`` for which ``convert`` raises ``ArrowInvalid``, by bisection (k log n calls)."""
    out = []
    stack = [(0, len(arr))]
    while stack:
        lo, hi = stack.pop()
        try:
            convert(arr.slice(lo, hi - lo))
        except pa.ArrowInvalid:
            if hi - lo == 1:
                out.append(lo)
            else:
                mid = (lo + hi) // 2
                stack += [(mid, hi), (lo, mid)]
    return sorted(out)


#: strptime directives as RE2 (what Python's ``strptime`` accepts for each, roughly); ``%d`` is
#: the day that can roll over.
_DIRECTIVES = {
    "d": "(?:29|30|31)",
    "m": r"\d{1,2}",
    "Y": r"\d{4}",
    "y": r"\d{2}",
    "H": r"\d{1,2}",
    "I": r"\d{1,2}",
    "M": r"\d{1,2}",
    "S": r"\d{1,2}",
    "f": r"\d{1,6}",
    "p": "[A-Za-z]+",
    "b": "[A-Za-z]+",
    "B": "[A-Za-z]+",
    "a": "[A-Za-z]+",
    "A": "[A-Za-z]+",
    "z": r"[+-]?\d{2}:?\d{2}|Z",
    "%": "%",
}


def _rollover_pattern(fmt: str) -> str:
    """An RE2 pattern matching text of the format ``fmt`` whose day (``%d``) is 29, 30 or 31; for
    a format with other directives, or none for the day, any text with 29, 30 or 31 in it."""
    import re

    parts, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            directive = _DIRECTIVES.get(fmt[i + 1])
            if directive is None:
                return "29|30|31"
            parts.append(directive)
            i += 2
        else:
            parts.append(re.escape(fmt[i]))
            i += 1
    return f"^\\s*{''.join(parts)}\\s*$" if "%d" in fmt else "29|30|31"


def strptime_strict(col: pa.Array | pa.ChunkedArray, fmt: str) -> pa.Array | pa.ChunkedArray:
    """``col`` parsed with the strptime format ``fmt`` (timestamps in seconds), a value that does
    not parse being null, as Python's ``datetime.strptime`` decides.

    Arrow's ``strptime`` rolls an impossible day over (``31-02-2015`` becomes 3 March), where
    Python's refuses it. A rolled-over date lands on day 1, 2 or 3 of the next month while its text
    says day 29, 30 or 31 (:func:`_rollover_pattern`): only such values are parsed again by Python,
    and those it refuses become null.
    """
    from datetime import datetime

    parsed = pc.strptime(col, format=fmt, unit="s", error_is_null=True)
    suspect = pc.and_(
        pc.less_equal(pc.day(parsed), 3),
        pc.match_substring_regex(col, _rollover_pattern(fmt)),
    )
    if not pc.any(suspect).as_py():
        return parsed
    chunked = isinstance(parsed, pa.ChunkedArray)
    flat_col = col.combine_chunks() if chunked else col
    flat = parsed.combine_chunks() if chunked else parsed
    flat_suspect = suspect.combine_chunks() if chunked else suspect
    rows = pc.indices_nonzero(flat_suspect).to_pylist()
    refused = []
    for row, text in zip(rows, pc.take(flat_col, rows).to_pylist(), strict=True):
        try:
            datetime.strptime(text, fmt)
        except ValueError:
            refused.append(row)
    if not refused:
        return parsed
    mask = np.zeros(len(flat), dtype=bool)
    mask[refused] = True
    return pc.if_else(pa.array(mask), pa.scalar(None, flat.type), flat)


def _count_true(mask: pa.Array | pa.ChunkedArray) -> int:
    return pc.sum(mask).as_py() or 0


class _Column:
    """The checks of one column rule, on a string column; fast (any problem?) and exact (which rows)."""

    def __init__(self, index: int, rule: ColumnRule, crules: CsvRules):
        self.index = index
        self.rule = rule
        self.name = rule.name
        self.cast_to = None
        if rule.type == "integer":
            self.cast_to = pa.int64()
        elif rule.type == "number":
            self.cast_to = pa.float64()
        elif rule.type == "date" and not rule.format:
            self.cast_to = pa.date32()
        self.bools = pa.array(list(crules.true_values + crules.false_values), pa.string())
        self.enum = pa.array(list(rule.enum), pa.string()) if rule.enum is not None else None
        self.regex = f"^(?:{rule.pattern})$" if rule.pattern is not None else None

    @property
    def needed(self) -> bool:
        r = self.rule
        return not r.nullable or r.type != "string" or r.enum is not None or r.pattern is not None

    # -- conversions ---------------------------------------------------------------------
    def _convert(self, col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray | None:
        """The typed column, or None when a value does not convert (nulls stay null)."""
        rule = self.rule
        if self.cast_to is not None:
            try:
                return pc.cast(col, self.cast_to)
            except pa.ArrowInvalid:
                return None
        if rule.format:
            parsed = strptime_strict(col, rule.format)
            return parsed if parsed.null_count == col.null_count else None
        if rule.type == "datetime":
            for target in (pa.timestamp("us"), pa.timestamp("us", "UTC")):
                try:
                    return pc.cast(col, target)
                except pa.ArrowInvalid:
                    pass
            return None
        if rule.type == "boolean":
            ok = _count_true(pc.is_in(col, value_set=self.bools)) == len(col) - col.null_count
            return col if ok else None
        return col

    def _type_problem_rows(self, col: pa.Array) -> list[int]:
        rule = self.rule
        if self.cast_to is not None:
            target = self.cast_to
            return _bad_rows(col, lambda a: pc.cast(a, target))
        if rule.format:
            parsed = strptime_strict(col, rule.format)
            mask = pc.and_(pc.is_null(parsed), pc.is_valid(col))
        elif rule.type == "datetime":
            naive = _bad_rows(col, lambda a: pc.cast(a, pa.timestamp("us")))
            aware = pa.timestamp("us", "UTC")
            return [r for r in naive if _bad_rows(col.slice(r, 1), lambda a: pc.cast(a, aware))]
        elif rule.type == "boolean":
            mask = pc.and_(pc.invert(pc.is_in(col, value_set=self.bools)), pc.is_valid(col))
        else:
            return []
        return pc.indices_nonzero(mask).to_pylist()

    def _type_reason(self, value: str) -> str:
        rule = self.rule
        if rule.type == "integer":
            return f"{_show(value)} is not an integer"
        if rule.type == "number":
            return f"{_show(value)} is not a number"
        if rule.type == "boolean":
            return f"{_show(value)} is not a boolean (one of {self.bools.to_pylist()})"
        if rule.format:
            return f"{_show(value)} does not match the {rule.type} format {rule.format!r}"
        if rule.type == "date":
            return f"{_show(value)} is not an ISO date (YYYY-MM-DD)"
        return f"{_show(value)} is not an ISO 8601 date-time"

    # -- fast: any problem? ----------------------------------------------------------------
    def has_problem(self, col: pa.ChunkedArray) -> bool:
        """Whether any value of ``col`` breaks the rule."""
        rule = self.rule
        nulls = col.null_count
        if nulls and not rule.nullable:
            return True
        present = len(col) - nulls
        if not present:
            return False
        typed = self._convert(col)
        if typed is None:
            return True
        if self.enum is not None and _count_true(pc.is_in(col, value_set=self.enum)) != present:
            return True
        if self.regex is not None and _count_true(pc.match_substring_regex(col, self.regex)) != present:
            return True
        if rule.minimum is not None or rule.maximum is not None:
            bounds = pc.min_max(typed).as_py()
            if rule.minimum is not None and bounds["min"] is not None and bounds["min"] < rule.minimum:
                return True
            if rule.maximum is not None and bounds["max"] is not None and bounds["max"] > rule.maximum:
                return True
        return False

    # -- exact: which rows? ----------------------------------------------------------------
    def problems(self, col: pa.Array) -> list[tuple[int, str, str]]:
        """``(row, code, reason)`` for every value of ``col`` that breaks the rule."""
        rule = self.rule
        label = f"column {self.name!r}"
        out: list[tuple[int, str, str]] = []
        if col.null_count and not rule.nullable:
            for row in pc.indices_nonzero(pc.is_null(col)).to_pylist():
                out.append((row, "null_value", f"{label} is empty but not nullable"))
        if col.null_count == len(col):
            return out
        bad = self._type_problem_rows(col)
        for row in bad:
            out.append((row, "invalid_value", f"{label}: {self._type_reason(col[row].as_py())}"))
        bad_mask = None
        if bad:
            flags = [False] * len(col)
            for row in bad:
                flags[row] = True
            bad_mask = pa.array(flags)
            col = pc.if_else(bad_mask, pa.scalar(None, pa.string()), col)
        checks: list[tuple[pa.Array, Callable[[int], str]]] = []
        if self.enum is not None:
            allowed = self.enum.to_pylist()
            mask = pc.invert(pc.is_in(col, value_set=self.enum))
            checks.append((mask, lambda r, a=allowed: f"{_show(col[r].as_py())} is not one of {a}"))
        if self.regex is not None:
            mask = pc.invert(pc.match_substring_regex(col, self.regex))
            checks.append((mask, lambda r: f"{_show(col[r].as_py())} does not match {rule.pattern!r}"))
        if rule.minimum is not None or rule.maximum is not None:
            typed = self._convert(col)
            if typed is not None:
                if rule.minimum is not None:
                    mask = pc.less(typed, rule.minimum)
                    checks.append((mask, lambda r: f"{_show(col[r].as_py())} is less than {rule.minimum}"))
                if rule.maximum is not None:
                    mask = pc.greater(typed, rule.maximum)
                    checks.append((mask, lambda r: f"{_show(col[r].as_py())} is more than {rule.maximum}"))
        for mask, reason in checks:
            mask = pc.and_(pc.fill_null(mask, False), pc.is_valid(col))
            for row in pc.indices_nonzero(mask).to_pylist():
                out.append((row, "invalid_value", f"{label}: {reason(row)}"))
        return out


class ColumnChecks:
    """All column rules of a CSV file, bound to the file's column positions.

    :param columns: ``(column index in the file, rule)`` pairs.
    :param crules: the CSV rules (boolean spellings).
    """

    def __init__(self, columns: list[tuple[int, ColumnRule]], crules: CsvRules):
        self.columns = [c for c in (_Column(i, r, crules) for i, r in columns) if c.needed]

    def __bool__(self) -> bool:
        return bool(self.columns)

    def has_problem(self, table: pa.Table) -> bool:
        """Whether any value in ``table`` breaks a rule (fast, no positions)."""
        return any(c.has_problem(table.column(c.index)) for c in self.columns)

    def problems(self, table: pa.Table) -> list[tuple[int, str, str, str]]:
        """``(row, column name, code, reason)`` for every broken rule, by row then column."""
        out = []
        for c in self.columns:
            for row, code, reason in c.problems(table.column(c.index).combine_chunks()):
                out.append((row, c.index, c.name, code, reason))
        out.sort(key=lambda p: (p[0], p[1]))
        return [(row, name, code, reason) for row, _, name, code, reason in out]


class CsvValidator:
    """Validate CSV content from a :class:`BlockSource`; see the module docstring.

    :param rules: the rule set (``csv`` section, ``max_line_bytes``).
    :param errors: where errors go.
    :param threaded: parse and check chunks in :data:`WORKERS` threads (pipelined with reading).
    """

    def __init__(self, rules: RuleSet, errors: ErrorCollector, threaded: bool = True):
        self.rules = rules
        self.crules = rules.csv
        self.errors = errors
        self.threaded = threaded
        self.max_line = rules.max_line_bytes
        self.delimiter = self.crules.delimiter
        self._scanner = _Scanner(self.delimiter)
        self.lines = 0
        self.records = 0
        self.names: list[str] = []
        self.checks: ColumnChecks | None = None
        self._nulls = set(self.crules.null_values)
        if csv.field_size_limit() < self.max_line:
            csv.field_size_limit(self.max_line)

    # -- header ----------------------------------------------------------------------------
    def _sniff(self, block: bytes, offset: int) -> None:
        """Fail fast when the first block is JSON or binary rather than CSV."""
        i = first_non_space(block)
        if i >= 0 and _looks_like_json(block, i):
            raise self.errors.fatal(
                "format_mismatch",
                f"content does not look like CSV: it starts with {describe_start(block[i:])} (JSON?)",
                1 + block.count(b"\n", 0, i),
                offset + block.rfind(b"\n", 0, i) + 1,
            )
        nul = block.find(b"\0")
        if nul >= 0:
            raise self.errors.fatal(
                "format_mismatch",
                f"content does not look like CSV: NUL byte at offset {offset + nul:,} (binary data?)",
                1 + block.count(b"\n", 0, nul),
                offset + nul,
            )

    def _header(self, data: bytes, offset: int) -> None:
        """Check the header record ``data`` (terminator included) and set up the column checks."""
        for bad, reason in utf8_errors(data):
            self.errors.add(
                "invalid_utf8", f"{reason} in the header", 1 + data.count(b"\n", 0, bad), offset + bad
            )
        text = data.decode("utf-8", "replace")
        if not text.strip("\r\n"):
            raise self.errors.fatal("header", "the first line (the header) is empty", 1, offset)
        names = next(csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter, strict=False))
        self.names = names
        problem = self._header_problem(names)
        columns: list[tuple[int, ColumnRule]] = []
        if problem:
            self.errors.add("header", problem + "; the column rules are not checked", 1, offset)
        elif self.crules.columns:
            by_name = {c.name: c for c in self.crules.columns}
            columns = [(i, by_name[n]) for i, n in enumerate(names) if n in by_name]
        self.checks = ColumnChecks(columns, self.crules) if columns else None
        self._arrow_names = [f"c{i}" for i in range(len(names))]
        self._read_options = pa_csv.ReadOptions(column_names=self._arrow_names, use_threads=False)
        self._parse_options = pa_csv.ParseOptions(
            delimiter=self.delimiter,
            quote_char='"',
            double_quote=True,
            escape_char=False,
            newlines_in_values=True,
            ignore_empty_lines=self.crules.skip_blank_lines,
        )
        self._convert_options = pa_csv.ConvertOptions(
            column_types={n: pa.string() for n in self._arrow_names},
            null_values=list(self.crules.null_values),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            check_utf8=True,
        )

    def _header_problem(self, names: list[str]) -> str | None:
        expected = [c.name for c in self.crules.columns]
        if not expected:
            return None
        hint = ""
        if len(names) == 1 and len(expected) > 1:
            for sep in ("\t", ";", "|"):
                if sep in names[0]:
                    hint = f" (the header contains {sep!r}: is the delimiter {self.delimiter!r} right?)"
        if self.crules.header == "exact":
            if names == expected:
                return None
            missing = [n for n in expected if n not in names]
            extra = [n for n in names if n not in expected]
            if not missing and not extra and len(names) == len(expected):
                i = next(i for i, (a, b) in enumerate(zip(names, expected, strict=True)) if a != b)
                return (
                    f"header columns are in a different order: column {i + 1} is {names[i]!r}, "
                    f"expected {expected[i]!r}"
                )
            return (
                f"header does not match: {len(names)} field(s), expected {len(expected)}; "
                f"missing {missing}, unexpected {extra}{hint}"
            )
        dupes = sorted({n for n in names if names.count(n) > 1})
        missing = [c.name for c in self.crules.columns if c.required and c.name not in names]
        extra = [] if self.crules.allow_extra_columns else [n for n in names if n not in expected]
        if not (dupes or missing or extra):
            return None
        parts = []
        if dupes:
            parts.append(f"duplicate columns {dupes}")
        if missing:
            parts.append(f"missing required columns {missing}")
        if extra:
            parts.append(f"unexpected columns {extra}")
        return "header does not match: " + "; ".join(parts) + hint

    # -- chunks ----------------------------------------------------------------------------
    def _chunks(self, src: BlockSource) -> Iterator[tuple[bytes | bytearray, int, bool, bool, int, int, int]]:
        """``(buf, end, final, suspicious, offset, line, newlines)``: ``buf[:end]`` holds whole
        records starting at content ``offset`` on line ``line``, with ``newlines`` ``\\n`` bytes;
        ``final`` for the rest at the end of the content. ``end == -1``: ``buf`` is a record
        start with no record end within ``max_line_bytes`` (the last item)."""
        carry: bytes | bytearray = b""
        scanned: _Cut | None = None  # what the scans of `carry` (no boundary in it) counted
        offset = src.start_offset
        line = 1
        first = True
        for block in src.blocks():
            if first:
                self._sniff(block, offset)
                first = False
            scanned_len = len(carry) if scanned else 0
            if isinstance(carry, bytearray):
                carry += block
                buf = carry
            else:
                buf = carry + block if carry else block
            cut = self._scanner.cut(buf, scanned_len, scanned)
            if not cut.end:
                if len(buf) > self.max_line + 2:
                    yield buf, -1, False, True, offset, line, 0  # the caller reports it
                    return
                scanned = cut
                carry = buf if isinstance(buf, bytearray) or len(buf) <= src.block_size else bytearray(buf)
                continue
            yield buf, cut.end, False, cut.suspicious, offset, line, cut.newlines
            offset += cut.end
            line += cut.newlines
            carry = bytes(buf[cut.end :])
            scanned = None
        if carry:
            cut = self._scanner.cut(carry, len(carry) if scanned else 0, scanned, final=True)
            yield carry, len(carry), True, cut.suspicious, offset, line, cut.newlines

    def _overflow(self, data: bytes | bytearray, offset: int, line: int) -> None:
        """A record goes on past ``max_line_bytes``: stop, naming the unclosed quote if there is one."""
        scan = _quote_scan(data, ord(self.delimiter))
        if scan.open_at is not None:
            at = scan.open_at
            number = line + data.count(b"\n", 0, at)
            raise self.errors.fatal(
                "unclosed_quote",
                f"the quoted field opened at byte {offset + at:,} does not end within max_line_bytes "
                f"({self.max_line:,} bytes): unclosed quote? Validation stopped here",
                number,
                offset + data.rfind(b"\n", 0, at) + 1,
            )
        raise self.errors.fatal(
            "line_too_long",
            f"record is longer than max_line_bytes ({self.max_line:,} bytes); validation stopped here",
            line,
            offset,
        )

    # -- run -------------------------------------------------------------------------------
    def run(self, src: BlockSource) -> None:
        """Read ``src`` to the end. :raises Stop: a fatal error or the error cap."""
        newlines = 0
        pending: deque[tuple] = deque()
        header = True
        pool = (
            ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="csv-validate")
            if self.threaded
            else None
        )
        try:
            for buf, end, final, suspicious, offset, line, count in self._chunks(src):
                if end < 0:
                    while pending:  # errors before this point come first
                        self._finish(pending.popleft())
                    self._overflow(buf, offset, line)
                newlines += count
                start = 0
                if header:
                    start = _first_record_end(buf, ord(self.delimiter))
                    self._header(bytes(buf[:start]), offset)
                    header = False
                    skipped = buf.count(b"\n", 0, start)
                    offset += start
                    line += skipped
                    if start >= end:
                        continue
                future: Future | int | None = None
                if not suspicious:
                    view = memoryview(buf)[start:end]
                    future = pool.submit(self._fast, view) if pool else self._fast(view)
                pending.append((buf, start, end, final, offset, line, future))
                while len(pending) > WORKERS:
                    self._finish(pending.popleft())
                src.records_hint = self.records
                self.lines = newlines
            while pending:
                self._finish(pending.popleft())
        finally:
            if pool:
                pool.shutdown(wait=True, cancel_futures=True)
            self.lines = newlines
        self.lines = newlines + (0 if src.last_byte in (b"\n", b"") else 1)

    def _finish(self, item: tuple) -> None:
        buf, start, end, final, offset, line, future = item
        rows = future.result() if isinstance(future, Future) else future
        if rows is None:
            rows = self._precise(bytes(buf[start:end]), offset, line)
        self.records += rows

    def _fast(self, view: memoryview) -> int | None:
        """Rows in the chunk if every check passes, else None (then the precise path runs)."""
        try:
            table = pa_csv.read_csv(
                pa.py_buffer(view),
                read_options=self._read_options,
                parse_options=self._parse_options,
                convert_options=self._convert_options,
            )
        except pa.ArrowInvalid:
            return None
        if not self.crules.skip_blank_lines and self._has_blank_rows(table):
            return None
        if len(view) > self.max_line and _longest_record(view) > self.max_line:
            return None
        if self.checks and self.checks.has_problem(table):
            return None
        return table.num_rows

    @staticmethod
    def _has_blank_rows(table: pa.Table) -> bool:
        """Whether a row has every field null (a blank line looks like that to arrow)."""
        if not table.num_rows or any(c.null_count == 0 for c in table.columns):
            return False
        mask = pc.is_null(table.column(0))
        for col in table.columns[1:]:
            mask = pc.and_(mask, pc.is_null(col))
        return bool(pc.any(mask).as_py())

    # -- precise path ----------------------------------------------------------------------
    def _precise(self, data: bytes, offset: int, line: int) -> int:
        """Check ``data`` (whole records starting at ``offset``/``line``) record by record;
        add every error in file order. Returns the number of records."""
        found: list[tuple[int, int, str, str, str | None]] = []  # line, offset, code, reason, column
        pieces = data.split(b"\n")
        ends_with_newline = pieces[-1] == b""
        if ends_with_newline:
            pieces.pop()
        starts = [0] * len(pieces)
        pos = 0
        for i, piece in enumerate(pieces):
            starts[i] = pos
            pos += len(piece) + 1
        last = len(pieces) - 1

        def place(i: int) -> tuple[int, int]:
            """(line number, offset of the line start) of byte ``i`` of ``data``."""
            k = max(bisect.bisect_right(starts, i) - 1, 0)
            return line + k, offset + starts[k]

        for bad, reason in utf8_errors(data):
            found.append((place(bad)[0], offset + bad, "invalid_utf8", reason, None))
        scan = _quote_scan(data, ord(self.delimiter))
        for q, reason in scan.problems:
            found.append(
                (
                    *place(q),
                    "bare_quote",
                    f"{reason} at byte {offset + q:,} (RFC 4180 wants "
                    'a field with a quote quoted, the quote doubled: "a ""b"" c")',
                    None,
                )
            )
        open_at = scan.open_at
        if open_at is not None:
            found.append(
                (
                    *place(open_at),
                    "unclosed_quote",
                    f"the quoted field opened at byte {offset + open_at:,} is never closed "
                    "(the file ends in it)",
                    None,
                )
            )

        def text_lines() -> Iterator[str]:
            for i, piece in enumerate(pieces):
                text = piece.decode("utf-8", "replace")
                yield text + "\n" if i < last or ends_with_newline else text

        reader = csv.reader(
            text_lines(), delimiter=self.delimiter, quotechar='"', doublequote=True, strict=False
        )
        parsed: list[tuple[int, int, list[str]]] = []  # first line, line after it, fields
        consumed = 0
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                found.append(
                    (
                        line + consumed,
                        offset + starts[consumed],
                        "malformed_record",
                        f"malformed record: {exc}",
                        None,
                    )
                )
                consumed = reader.line_num
                continue
            parsed.append((consumed, reader.line_num, record))
            consumed = reader.line_num
        if open_at is not None and parsed and starts[parsed[-1][0]] <= open_at:
            parsed.pop()  # the unclosed record itself: reported above, not a record

        ncols = len(self.names)
        good_rows: list[list[str]] = []
        good_at: list[int] = []
        records = 0
        for idx, after, record in parsed:
            where = (line + idx, offset + starts[idx])
            if not record:
                if not self.crules.skip_blank_lines:
                    found.append((*where, "empty_line", "empty line (a CSV record needs fields)", None))
                continue
            records += 1
            stop = starts[after] if after < len(starts) else len(data)
            size = stop - starts[idx] - (data[stop - 2 : stop] == b"\r\n") - (data[stop - 1 : stop] == b"\n")
            if size > self.max_line:
                reason = f"record is longer than max_line_bytes ({self.max_line:,} bytes): {size:,} bytes"
                found.append((*where, "line_too_long", reason, None))
            elif len(record) != ncols:
                found.append(
                    (*where, "field_count", f"record has {len(record)} field(s), the header {ncols}", None)
                )
            elif self.checks:
                good_rows.append(record)
                good_at.append(idx)
        if good_rows:
            nulls = self._nulls
            table = pa.table(
                [
                    pa.array([None if v in nulls else v for v in values], pa.string())
                    for values in zip(*good_rows, strict=True)
                ],
                names=self._arrow_names,
            )
            for row, name, code, reason in self.checks.problems(table):
                idx = good_at[row]
                found.append((line + idx, offset + starts[idx], code, reason, name))
        found.sort(key=lambda f: (f[0], f[1]))
        for number, at, code, reason, column in found:
            self.errors.add(code, reason, number, at, column)
        return records
