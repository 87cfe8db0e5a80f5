"""What a validation found: the first errors with their place in the file, and totals.

Positions refer to the content as read (the decompressed bytes for ``.gz`` files): ``line`` is
1-based and counts ``\\n`` bytes; ``offset`` is the 0-based byte offset of the start of the
offending line (CSV: of the record's first line), or of the bad byte itself for
``invalid_utf8`` and ``nul_byte`` errors. File-level errors (size, format, record counts) have
neither.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from dataset_ops.errors import InputError

#: Error codes, stable for machines; ``reason`` is the human-readable text.
ERROR_CODES = {
    "format_not_allowed": "the name's extension is not in allowed_formats",
    "format_mismatch": "the content does not look like the format the extension names",
    "empty_file": "no bytes (or no content after decompression)",
    "file_too_large": "more bytes than max_file_size",
    "invalid_gzip": "a .gz file that is not a complete gzip stream",
    "invalid_utf8": "a byte sequence that is not UTF-8",
    "nul_byte": "a NUL byte in a text file",
    "line_too_long": "a line (CSV: record) longer than max_line_bytes",
    "empty_line": "an empty line where a record is expected (JSONL, CSV)",
    "invalid_json": "a JSONL line that is not JSON",
    "not_an_object": "a JSONL line holding a JSON value other than an object",
    "schema": "a JSONL object that does not match the JSON Schema",
    "header": "a CSV header that does not match the columns",
    "field_count": "a CSV record with a different number of fields than the header",
    "bare_quote": "a CSV field with a '\"' that is not quoted and doubled as RFC 4180 requires",
    "unclosed_quote": "a CSV quoted field that never ends",
    "malformed_record": "a CSV record the parser rejects otherwise",
    "null_value": "an empty CSV field in a column that is not nullable",
    "invalid_value": "a CSV field that does not fit its column's type, enum, pattern or bounds",
    "too_few_records": "fewer records than min_records",
    "too_many_records": "more records than max_records",
}


@dataclass
class ErrorDetail:
    """One problem in a file.

    :param code: one of :data:`ERROR_CODES`.
    :param reason: what is wrong, for people.
    :param line: 1-based line number, or None for file-level errors.
    :param offset: 0-based byte offset (see the module docstring), or None.
    :param column: CSV column or JSON path the error is about, when there is one.
    """

    code: str
    reason: str
    line: int | None = None
    offset: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line:,}")
        if self.offset is not None:
            where.append(f"byte {self.offset:,}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason

    def to_dict(self) -> dict:
        """JSON-serializable form."""
        return asdict(self)


@dataclass
class ValidationResult:
    """The outcome of validating one file.

    :param name: file name or URI as given.
    :param rules: name of the rule set used.
    :param format: ``jsonl``, ``csv``, ``txt`` (from the extension), or None if unknown.
    :param compression: ``gzip`` or None.
    :param valid: True when no error was found (and the file was read to the end).
    :param bytes: bytes read from the stream as stored (compressed bytes for ``.gz``).
    :param content_bytes: bytes of content checked (decompressed for ``.gz``).
    :param lines: physical lines of the content (``\\n`` count, plus an unterminated last line).
    :param records: JSONL: non-empty lines; CSV: records after the header (a record may span
        lines); text: lines.
    :param errors_found: every error found, listed or not.
    :param errors: the first ``max_errors`` errors, in file order.
    :param elapsed_seconds: wall time of the validation.
    :param complete: False when reading stopped early (a fatal error, ``stop_at_max_errors``);
        then ``lines``/``records`` cover only what was read.
    :param max_errors: the cap on ``errors``.
    :param workers: threads or processes that checked JSONL chunks besides the reading thread
        (0: none). Threads on the Arrow path (:mod:`dataset_ops.validation.arrow_block`),
        processes otherwise.
    :param worker_peak_rss_bytes: the worker processes' peak RSS added up (Linux ``VmHWM``), when
        processes ran (threads' memory is the validating process's own).
    """

    name: str
    rules: str
    format: str | None
    compression: str | None = None
    valid: bool = False
    bytes: int = 0
    content_bytes: int = 0
    lines: int = 0
    records: int = 0
    errors_found: int = 0
    errors: list[ErrorDetail] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    complete: bool = True
    max_errors: int = 0
    workers: int = 0
    worker_peak_rss_bytes: int | None = None

    def to_dict(self) -> dict:
        """JSON-serializable form (for XCom, reports, quarantine error files)."""
        out = asdict(self)
        out["errors"] = [e.to_dict() for e in self.errors]
        out["elapsed_seconds"] = round(self.elapsed_seconds, 6)
        return out

    def summary(self) -> str:
        """One line for logs: verdict, totals, rate and the first error."""
        rate = self.content_bytes / self.elapsed_seconds / (1 << 20) if self.elapsed_seconds > 0 else 0.0
        head = (
            f"{self.name}: {'valid' if self.valid else 'INVALID'} ({self.rules}, {self.format}): "
            f"{self.records:,} records, {self.lines:,} lines, {self.content_bytes:,} bytes in "
            f"{self.elapsed_seconds:.2f} s ({rate:.1f} MiB/s)"
        )
        if self.errors_found:
            head += f"; {self.errors_found:,} error(s), first: {self.errors[0]}"
        if not self.complete:
            head += "; stopped early"
        return head

    def raise_for_errors(self) -> None:
        """Raise :class:`ValidationFailed` unless the file is valid."""
        if not self.valid:
            raise ValidationFailed(self)


class ValidationFailed(InputError):
    """A file did not pass validation; ``result`` holds the details. A ``ValueError``, and
    permanent (:class:`dataset_ops.errors.PermanentError`): a task fails on it without retries.

    The message names the file, the number of errors and the first few (line, byte, reason).
    """

    def __init__(self, result: ValidationResult, shown: int = 5):
        self.result = result
        lines = [f"{result.name}: {result.errors_found:,} validation error(s) (rules {result.rules})"]
        lines += [f"  {e}" for e in result.errors[:shown]]
        if result.errors_found > shown:
            lines.append(f"  ... and {result.errors_found - shown:,} more")
        super().__init__("\n".join(lines))
