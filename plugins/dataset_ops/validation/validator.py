"""Entry points: validate a stream (or a local file) against a :class:`~.rules.RuleSet`."""

from __future__ import annotations

import logging
import os
import time
from typing import BinaryIO

from dataset_ops.progress import ProgressLog
from dataset_ops.validation.jsonl import JsonlValidator
from dataset_ops.validation.reader import BLOCK_SIZE, CSV_BLOCK_SIZE, BlockSource, ErrorCollector, Stop
from dataset_ops.validation.result import ValidationResult
from dataset_ops.validation.rules import BASE_FORMATS, RuleSet
from dataset_ops.validation.text import TextValidator

log = logging.getLogger(__name__)

#: Seconds between progress log lines.
PROGRESS_EVERY = 10.0
#: JSONL files of at least this many bytes are checked in worker processes (one per core, up to
#: :data:`MAX_WORKERS`) unless ``workers`` says otherwise; below it, starting them costs more
#: than it saves.
PARALLEL_MIN_BYTES = 256 << 20
MAX_WORKERS = 4


def default_workers(fmt: str | None, size: int | None) -> int:
    """Worker processes :func:`validate_stream` uses by default: 1, or for a JSONL file of at
    least :data:`PARALLEL_MIN_BYTES` bytes the CPUs this process may run on (at most 4)."""
    if fmt != "jsonl" or size is None or size < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))


def detect_format(name: str) -> tuple[str | None, bool]:
    """``(base format, gzip)`` from a file name or URI: ``"a/b.csv.gz"`` -> ``("csv", True)``.

    The base format is the extension (``jsonl``, ``csv``, ``txt``), or None when it is none of them.
    """
    base = name.rsplit("/", 1)[-1].lower()
    gzip = base.endswith(".gz")
    if gzip:
        base = base[:-3]
    ext = base.rsplit(".", 1)[-1] if "." in base else ""
    return (ext if ext in BASE_FORMATS else None), gzip


def validate_stream(
    fileobj: BinaryIO,
    rules: RuleSet,
    *,
    name: str,
    size: int | None = None,
    block_size: int | None = None,
    threaded: bool = True,
    workers: int | None = None,
) -> ValidationResult:
    """Validate a binary stream against ``rules``, reading it once in fixed-size blocks.

    The format comes from ``name``'s extension (``.jsonl``, ``.csv``, ``.txt``, each optionally
    ``.gz``), which must be in ``rules.allowed_formats``; the content must then look like that
    format. Memory stays at a few blocks (plus up to ``max_line_bytes`` for one long JSONL line
    or CSV record) whatever the file size. Progress is logged every 10 s.

    :param fileobj: binary stream with ``read(n)`` (a file, an S3 ``StreamingBody``, ...). Not
        closed. Non-seekable streams are fine.
    :param rules: from :func:`~.rules.load_rules`.
    :param name: file name or URI; gives the format and appears in the result.
    :param size: stored size in bytes, if known: a size over ``max_file_size`` fails at once
        without reading; also used for progress percentages.
    :param block_size: bytes per read (default 4 MiB; CSV 1 MiB).
    :param threaded: CSV only: parse and check chunks in two worker threads while reading
        (default on; off: everything in the calling thread).
    :param workers: JSONL only: processes that check blocks of lines while this one reads
        (default :func:`default_workers`; 1: none). The result is the same either way.
    :returns: the result; ``result.valid`` tells, ``result.raise_for_errors()`` raises. Errors
        in the data never raise; a failing ``fileobj.read`` does, and so does a JSONL worker
        process that dies (:class:`~.workers.WorkerError`).
    """
    started = time.perf_counter()
    fmt, gzip = detect_format(name)
    errors = ErrorCollector(rules.max_errors, rules.stop_at_max_errors)
    result = ValidationResult(
        name=name,
        rules=rules.name,
        format=fmt,
        compression="gzip" if gzip else None,
        max_errors=rules.max_errors,
    )
    validator = None
    src: BlockSource | None = None
    read_all = False  # the content was read to its end
    try:
        full = f"{fmt}.gz" if gzip else fmt
        if fmt is None or full not in rules.allowed_formats:
            what = f"format {full!r}" if fmt else f"extension of {name.rsplit('/', 1)[-1]!r}"
            raise errors.fatal(
                "format_not_allowed",
                f"{what} is not allowed by rules {rules.name!r} (allowed: {list(rules.allowed_formats)})",
            )
        if size is not None and rules.max_file_size is not None and size > rules.max_file_size:
            raise errors.fatal(
                "file_too_large",
                f"the file has {size:,} bytes, more than max_file_size ({rules.max_file_size:,})",
            )
        if size == 0:
            raise errors.fatal("empty_file", "empty file (0 bytes)")
        progress = ProgressLog(f"validate {name}", total_bytes=size, every=PROGRESS_EVERY)
        src = BlockSource(
            fileobj,
            block_size=block_size or (CSV_BLOCK_SIZE if fmt == "csv" else BLOCK_SIZE),
            max_file_size=rules.max_file_size,
            gzip=gzip,
            errors=errors,
            name=name,
            progress=progress,
        )
        if fmt == "jsonl":
            validator = JsonlValidator(rules, errors, workers or default_workers(fmt, size))
        elif fmt == "csv":
            from dataset_ops.validation.csvfile import CsvValidator  # pyarrow: import only when needed

            validator = CsvValidator(rules, errors, threaded=threaded)
        else:
            validator = TextValidator(rules, errors)
        validator.run(src)
        read_all = True
        records = validator.records
        if records < rules.min_records:
            errors.add(
                "too_few_records", f"{records:,} record(s), fewer than min_records ({rules.min_records:,})"
            )
        if rules.max_records is not None and records > rules.max_records:
            errors.add(
                "too_many_records", f"{records:,} records, more than max_records ({rules.max_records:,})"
            )
    except Stop:
        result.complete = read_all
    if src is not None:
        result.bytes, result.content_bytes = src.bytes_read, src.content_bytes
    if validator is not None:
        result.lines, result.records = validator.lines, validator.records
        result.workers = getattr(validator, "workers_started", 0)
        result.worker_peak_rss_bytes = getattr(validator, "worker_peak_rss_bytes", None)
    result.errors, result.errors_found = errors.errors, errors.count
    result.valid = errors.count == 0 and result.complete
    result.elapsed_seconds = time.perf_counter() - started
    (log.info if result.valid else log.warning)("%s", result.summary())
    return result


def validate_path(
    path: str | os.PathLike, rules: RuleSet, *, name: str | None = None, **kwargs
) -> ValidationResult:
    """Validate a local file (its size is passed on, so an oversized file fails without reading).

    :param path: the file.
    :param rules: the rule set.
    :param name: name for the result and the format (default: ``path``).
    :param kwargs: passed to :func:`validate_stream`.
    """
    path = os.fspath(path)
    with open(path, "rb", buffering=0) as fh:
        return validate_stream(fh, rules, name=name or path, size=os.fstat(fh.fileno()).st_size, **kwargs)
