"""Streaming validation of dataset files: JSONL, CSV (RFC 4180) and plain text, all UTF-8.

Usage::

    from dataset_ops.validation import load_rules, validate_stream

    rules = load_rules("training_jsonl", overrides={"min_records": 100})
    with storage.open_read(key) as fh:
        result = validate_stream(fh, rules, name=key, size=storage.stat(key).size)
    result.raise_for_errors()          # ValidationFailed names file, line, byte and reason
    report = result.to_dict()          # JSON-serializable: XCom, quarantine error report

Rule sets are YAML files in ``include/validation/`` (``<data_type>.yaml``, see the README there);
:func:`load_rules` reads one and applies top-level overrides (Airflow Params).

What is checked, in order, each failure an :class:`ErrorDetail` with a stable ``code``:

1. the name's extension is in ``allowed_formats`` (``format_not_allowed``); a known ``size``
   over ``max_file_size`` fails before any read (``file_too_large``), and so does reading more
   bytes than that while streaming;
2. the content is there (``empty_file``) and looks like the format (``format_mismatch``: JSON
   in a ``.csv``, a CSV or a JSON array in a ``.jsonl``, binary in a ``.txt``, gzip in a name
   without ``.gz``);
3. per format: UTF-8 (``invalid_utf8`` with the offset of the bad byte), line/record length
   (``line_too_long``, detected while streaming, never buffered beyond ``max_line_bytes``),
   JSONL objects and their JSON Schema, CSV quoting, field counts, header and column types;
4. ``min_records``/``max_records`` (after the whole file was read).

Errors beyond ``max_errors`` are counted (``errors_found``) but not listed; reading goes on to
the end so totals are exact, unless ``stop_at_max_errors`` is set (then ``complete`` is
False). Fatal errors (format, size, an unclosed CSV quote that never ends, broken gzip) stop
reading at once. Blocks or chunks with errors are checked again record by record at Python speed
(roughly 10-20 MB/s), so a huge file that is bad throughout is slow to count to the end: set
``stop_at_max_errors`` for such inputs.

Memory is bounded by the block size (4 MiB; CSV: three 1 MiB chunks in flight with their
arrow tables), and ``max_line_bytes`` for one long JSONL line or CSV record; it does not grow
with the file (peak RSS about 50 MiB for JSONL, 155 MiB for CSV, pyarrow included). Speed on
2 cores: ``benchmarks/bench_validation.py``.
"""

from dataset_ops.validation.reader import BLOCK_SIZE, CSV_BLOCK_SIZE
from dataset_ops.validation.result import (
    ERROR_CODES,
    ErrorDetail,
    ValidationFailed,
    ValidationResult,
)
from dataset_ops.validation.rules import (
    DEFAULT_MAX_LINE_BYTES,
    FORMATS,
    RULES_DIR,
    ColumnRule,
    CsvRules,
    JsonlRules,
    RuleError,
    RuleSet,
    TextRules,
    UnknownRuleSet,
    available_rule_sets,
    load_rules,
    parse_size,
)
from dataset_ops.validation.validator import detect_format, validate_path, validate_stream

__all__ = [
    "BLOCK_SIZE",
    "CSV_BLOCK_SIZE",
    "DEFAULT_MAX_LINE_BYTES",
    "ERROR_CODES",
    "FORMATS",
    "RULES_DIR",
    "ColumnRule",
    "CsvRules",
    "ErrorDetail",
    "JsonlRules",
    "RuleError",
    "RuleSet",
    "TextRules",
    "UnknownRuleSet",
    "ValidationFailed",
    "ValidationResult",
    "available_rule_sets",
    "detect_format",
    "load_rules",
    "parse_size",
    "validate_path",
    "validate_stream",
]
