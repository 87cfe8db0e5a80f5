"""The inference report workbook: :mod:`.analysis` figures written with :mod:`.workbook`.

Sheets, in order: ``Resumen`` (KPIs and the top-1 confidence chart), ``Datos_Elasticsearch``
(every record, streamed as Arrow batches while they are extracted, or from the Parquet file;
continued on ``Datos_Elasticsearch_2``... past Excel's row limit), ``References`` and ``Devices``
(with the ``revisar_imagenes`` column users mark), ``Labels``, ``Model_Data``, ``Consistencia``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from dataset_ops.inference.analysis import RECORD_COLUMNS, Analyser, Table, label_references, sheet_batches
from dataset_ops.inference.workbook import EXCEL_MAX_ROWS, Column, ReportWorkbook, SheetSpec

log = logging.getLogger(__name__)

#: Column kinds of the analysis tables (anything not listed: text; ``conf ...``: percent).
KINDS = {
    "reference_id": "int",
    "device_id": "int",
    "label_id": "int",
    "transactions": "int",
    "appearances": "int",
    "below_threshold": "int",
    "references": "int",
    "predicted_top1": "int",
    "top1_correct": "int",
    "count": "int",
    "ok_pct": "percent",
    "model_ok_pct": "percent",
    "top1_hit_rate": "percent",
    "top2_hit_rate": "percent",
    "top3_hit_rate": "percent",
    "precision": "percent",
    "confidence_mean": "float",
    "meets_min_appearances": "bool",
    "known_in_mysql": "bool",
    "active": "bool",
    "first_seen": "datetime",
    "last_seen": "datetime",
    "revisar_imagenes": "mark",
}


def _kind(name: str) -> str:
    return "percent" if name.startswith("conf ") else KINDS.get(name, "text")


def use_lean_allocators() -> None:
    """Allocator settings for a process that runs the report (the DAG's task, the benchmark):

    * Arrow on the system ``malloc`` (``pyarrow.set_memory_pool``, the runtime form of
      ``ARROW_DEFAULT_MEMORY_POOL=system``): the default mimalloc pool keeps freed pages per
      thread, and the report has a fetching and a writing thread;
    * glibc's mmap threshold fixed at 128 KiB (``mallopt(M_MMAP_THRESHOLD)``, the runtime form of
      ``MALLOC_MMAP_THRESHOLD_``): by default it rises up to 32 MiB after the first large free,
      after which the ~5 MB response bodies and Arrow buffers are carved out of the heap and
      fragment it; fixed, every allocation above 128 KiB is its own mapping, returned on free.
      Without glibc (another libc) this part does nothing.

    ``set_memory_pool`` reaches what pyarrow allocates from Python; the C++ default pool (used
    inside the Parquet writer, for one) is chosen when pyarrow loads, so the workers that run
    ``inference_report`` should also have ``ARROW_DEFAULT_MEMORY_POOL=system`` in their
    environment (logged when missing). Measured with ``benchmarks/bench_inference.py`` (100,000
    records): peak RSS 383 MiB with none of this, 303 MiB with the system pool set here, 291 MiB
    with the mmap threshold too, 263 MiB with the environment variable as well.
    """
    import ctypes
    import os

    import pyarrow as pa

    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL") != "system":
        log.info("ARROW_DEFAULT_MEMORY_POOL is not 'system': Arrow's C++ default pool keeps freed memory")
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (glibc malloc.h)
    except (OSError, AttributeError):
        pass


def table_sheet(name: str, table: Table) -> SheetSpec:
    """A sheet of an analysis :class:`~dataset_ops.inference.analysis.Table` (None: blank cells)."""
    return SheetSpec(name, [Column(str(c), _kind(str(c))) for c in table.columns], table.rows)


def write_report(
    path: Path,
    records: Path,
    reference_data: dict[str, list[dict]],
    *,
    confidence: float,
    min_appearances: int,
    ok_results: frozenset[str],
    window: tuple[str, str] | None = None,
    max_rows_per_sheet: int = EXCEL_MAX_ROWS,
    record_batches: Iterable | None = None,
) -> dict:
    """Analyse ``records`` and write the workbook at ``path`` (atomically: nothing at ``path``
    if anything fails).

    One pass over the records: each batch is added to the :class:`~.analysis.Analyser` and written
    to the data sheet; then the ``Resumen`` sheet (kept in front, filled last) and the small
    sheets. The batches come from ``record_batches`` (Arrow record batches, e.g.
    :meth:`dataset_ops.inference.extract.RecordExtraction.batches`, written as they arrive,
    overlapping the extraction) or else from the Parquet file ``records``.

    :returns: ``{"path", "bytes", "sheets": {name: data rows}, "figures": {...}}``.
    :raises ValueError: no records.
    """
    label_refs = label_references(reference_data["labels"])
    analyser = Analyser(
        reference_data, confidence=confidence, min_appearances=min_appearances, ok_results=ok_results
    )
    if record_batches is None:
        import pyarrow.parquet as pq

        record_batches = pq.ParquetFile(records).iter_batches(batch_size=20_000)

    def analysed(batches: Iterable) -> Iterator:
        for batch in batches:
            analyser.add(batch)
            yield batch

    with ReportWorkbook(path, max_rows_per_sheet=max_rows_per_sheet) as book:
        book.reserve_sheet("Resumen")
        book.add_batches(
            "Datos_Elasticsearch",
            [Column(name, kind) for name, kind in RECORD_COLUMNS],
            sheet_batches(analysed(record_batches), label_refs, confidence=confidence),
        )
        try:
            analysis = analyser.result(window)
        except ValueError:
            raise ValueError(f"{records}: no records to analyse") from None
        book.add_summary("Resumen", analysis.kpis, analysis.chart)
        book.add_sheet(table_sheet("References", analysis.references))
        book.add_sheet(table_sheet("Devices", analysis.devices))
        book.add_sheet(table_sheet("Labels", analysis.labels))
        book.add_sheet(SheetSpec("Model_Data", [Column("field"), Column("value", width=40)], analysis.model))
        book.add_sheet(table_sheet("Consistencia", analysis.consistency))
    result = dict(book.result)
    result["figures"] = analysis.figures
    return result
