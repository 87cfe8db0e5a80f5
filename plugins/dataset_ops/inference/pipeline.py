"""The steps of the ``inference_report`` DAG: one function per task, XCom-sized results.

Files go to the process folder (:mod:`dataset_ops.inference.process`) through a
:class:`~dataset_ops.storage.workspace.FolderWorkspace`, so the storage root may be a local
folder or S3 and each task may run on any worker.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import orjson

from dataset_ops.inference.process import FOLDERS, process_prefix, read_metadata, record_step, start_process
from dataset_ops.storage import LocalStorage
from dataset_ops.storage.workspace import FolderWorkspace

if TYPE_CHECKING:
    from dataset_ops.storage import Storage

log = logging.getLogger(__name__)
RECORDS = "data/records.parquet"
REFERENCE_DATA = "data/reference_data.json"


class NoRecords(LookupError):
    """The deployment has no inference records in the window (no workbook is written)."""


def window_end(dag_run) -> datetime:
    """The end of the extraction window: the run's logical date, else when it was triggered."""
    end = getattr(dag_run, "logical_date", None) or dag_run.run_after
    return end.astimezone(UTC)


def start_report(storage: Storage, params: dict, dag_run_id: str, dag_run) -> dict:
    """Check the deployment in MySQL, create the process, save its reference data.

    :returns: ``{"process_name", "prefix", "deployment_id", "since", "until"}`` (ISO, UTC).
    :raises dataset_ops.inference.extract.UnknownDeployment: not in MySQL (no folder made).
    """
    from dataset_ops.inference.extract import read_reference_data

    started = time.monotonic()
    deployment_id = int(params["deployment_id"])
    reference_data = read_reference_data(deployment_id)
    until = window_end(dag_run)
    since = until - timedelta(days=int(params["days_back"]))
    metadata = start_process(
        storage, deployment_id, until.date(), dag_run_id, dict(params), params.get("process_name") or None
    )
    name = metadata["process_name"]
    with FolderWorkspace(storage, process_prefix(name)) as ws:
        if isinstance(storage, LocalStorage):
            for folder in FOLDERS:
                (ws.path / folder).mkdir(parents=True, exist_ok=True)
        (ws.path / "data").mkdir(parents=True, exist_ok=True)
        (ws.path / REFERENCE_DATA).write_bytes(orjson.dumps(reference_data, option=orjson.OPT_INDENT_2))
        ws.publish(REFERENCE_DATA)
    counts = {k: len(v) for k, v in reference_data.items()}
    record_step(
        storage,
        name,
        "start",
        {
            "reference_rows": counts,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "seconds": round(time.monotonic() - started, 3),
        },
    )
    log.info(
        "process %s: deployment %s, window %s .. %s, reference data %s",
        name,
        deployment_id,
        since,
        until,
        counts,
    )
    return {
        "process_name": name,
        "prefix": process_prefix(name),
        "deployment_id": deployment_id,
        "since": since.isoformat(),
        "until": until.isoformat(),
    }


def extract_and_report(storage: Storage, process: dict, params: dict) -> dict:
    """All the deployment's records in the window -> ``data/records.parquet`` and the workbook in
    ``reports/``, in one pass: the data sheet is written while the next Elasticsearch page is
    being fetched (:class:`~dataset_ops.inference.extract.RecordExtraction` feeding
    :func:`~dataset_ops.inference.report.write_report`), then the analysis of the Parquet file
    and the other sheets.

    :returns: ``{"records", "pages", "missing", "first", "last", "parquet_bytes", "workbook"
        (storage key), "bytes", "sheets": {name: rows}, "figures": {...}, "seconds"}``.
    :raises NoRecords: none in the window (the process is marked failed; no workbook, no Parquet).
    :raises dataset_ops.inference.extract.ExtractError: Elasticsearch unreachable or denied, or a
        bad value (names the record and field); nothing is published.
    """
    from dataset_ops.inference.config import load_mapping
    from dataset_ops.inference.extract import RecordExtraction, es_client
    from dataset_ops.inference.report import use_lean_allocators, write_report

    started = time.monotonic()
    use_lean_allocators()
    mapping = load_mapping(process["deployment_id"])
    since, until = datetime.fromisoformat(process["since"]), datetime.fromisoformat(process["until"])
    name = f"reports/dataset_{process['deployment_id']}_{until:%Y%m%d_%H%M%S}.xlsx"
    with FolderWorkspace(storage, process["prefix"]) as ws:
        reference_data = orjson.loads(ws.local(REFERENCE_DATA).read_bytes())
        records = ws.path / RECORDS
        extraction = RecordExtraction(es_client(), mapping, process["deployment_id"], since, until, records)
        try:
            with extraction:
                result = write_report(
                    ws.path / name,
                    records,
                    reference_data,
                    confidence=float(params["confidence"]),
                    min_appearances=int(params["min_appearances"]),
                    ok_results=mapping.ok_results,
                    window=(process["since"], process["until"]),
                    record_batches=extraction.batches(),
                )
        except ValueError:
            if extraction.summary is None or extraction.summary["records"]:
                raise
            records.unlink(missing_ok=True)
            record_step(
                storage,
                process["process_name"],
                "extract_and_report",
                extraction.summary,
                status="failed: no records",
            )
            raise NoRecords(
                f"deployment {process['deployment_id']} has no inference records in {mapping.index} between "
                f"{process['since']} and {process['until']}: no workbook written"
            ) from None
        ws.publish(RECORDS)
        ws.publish(name)
    summary = dict(extraction.summary)
    summary["parquet_bytes"] = summary.pop("bytes")
    summary.update(
        workbook=f"{process['prefix']}/{name}",
        bytes=result["bytes"],
        sheets=result["sheets"],
        figures=result["figures"],
        seconds=round(time.monotonic() - started, 3),
    )
    record_step(storage, process["process_name"], "extract_and_report", summary, status="report_ready")
    log.info(
        "process %s: %d records, workbook %s (%d bytes)",
        process["process_name"],
        summary["records"],
        name,
        result["bytes"],
    )
    return summary


def process_summary(storage: Storage, name: str) -> dict | None:
    """The process metadata (None when there is no such process)."""
    return read_metadata(storage, name)
