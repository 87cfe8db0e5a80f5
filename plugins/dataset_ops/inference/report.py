"""The inference report workbook: :mod:`.analysis` figures written with :mod:`.workbook`.

Sheets, in order: ``Resumen`` (KPIs and the top-1 confidence chart), ``Datos_Elasticsearch``
(every record, streamed from the Parquet file; continued on ``Datos_Elasticsearch_2``... past
Excel's row limit), ``References`` and ``Devices`` (with the ``revisar_imagenes`` column users
mark), ``Labels``, ``Model_Data``, ``Consistencia``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from dataset_ops.inference.analysis import RECORD_COLUMNS, analyse, label_references, sheet_batches
from dataset_ops.inference.workbook import EXCEL_MAX_ROWS, Column, ReportWorkbook, SheetSpec

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


def frame_sheet(name: str, frame: pd.DataFrame) -> SheetSpec:
    """A sheet of ``frame``'s columns and rows (NaN/NaT become blank cells)."""
    columns = [Column(str(c), _kind(str(c))) for c in frame.columns]
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
    rows = frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None)
    return SheetSpec(name, columns, rows)


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

    The data sheet comes first (``Resumen`` keeps its place in front, filled last), then the
    analysis of the Parquet file and the other sheets. With ``record_batches`` (Arrow record
    batches, e.g. :meth:`dataset_ops.inference.extract.RecordExtraction.batches`) the data sheet
    is written from them as they arrive, overlapping the extraction; ``records`` must be the
    complete Parquet file once they are exhausted.

    :returns: ``{"path", "bytes", "sheets": {name: data rows}, "figures": {...}}``.
    :raises ValueError: no records.
    """
    label_refs = label_references(reference_data["labels"])
    with ReportWorkbook(path, max_rows_per_sheet=max_rows_per_sheet) as book:
        book.reserve_sheet("Resumen")
        if record_batches is None:
            import pyarrow.parquet as pq

            record_batches = pq.ParquetFile(records).iter_batches(batch_size=20_000)
        book.add_batches(
            "Datos_Elasticsearch",
            [Column(name, kind) for name, kind in RECORD_COLUMNS],
            sheet_batches(record_batches, label_refs, confidence=confidence),
        )
        analysis = analyse(
            records,
            reference_data,
            confidence=confidence,
            min_appearances=min_appearances,
            ok_results=ok_results,
            window=window,
        )
        book.add_summary("Resumen", analysis.kpis, analysis.chart)
        book.add_sheet(frame_sheet("References", analysis.references))
        book.add_sheet(frame_sheet("Devices", analysis.devices))
        book.add_sheet(frame_sheet("Labels", analysis.labels))
        book.add_sheet(
            SheetSpec(
                "Model_Data",
                [Column("field"), Column("value", width=40)],
                analysis.model,
            )
        )
        book.add_sheet(frame_sheet("Consistencia", analysis.consistency))
    result = dict(book.result)
    result["figures"] = analysis.figures
    return result
