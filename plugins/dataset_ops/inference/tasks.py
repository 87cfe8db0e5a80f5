"""Task bodies of the inference DAGs (``inference_report``, ``inference_review``,
``inference_dataset``, ``inference_merge``): one function per task, XCom-sized results.

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
    from dataset_ops.settings import InferenceDatasetParams, InferenceReportParams
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


def start_report(storage: Storage, params: InferenceReportParams, dag_run_id: str, dag_run) -> dict:
    """Check the deployment in MySQL, create the process, save its reference data.

    :param params: the run's Params (``settings.InferenceReportParams.from_params``).

    :returns: ``{"process_name", "prefix", "deployment_id", "since", "until"}`` (ISO, UTC).
    :raises dataset_ops.inference.extract.UnknownDeployment: not in MySQL (no folder made).
    """
    from dataset_ops.inference.extract import read_reference_data

    started = time.monotonic()
    deployment_id = params.deployment_id
    reference_data = read_reference_data(deployment_id)
    until = window_end(dag_run)
    since = until - timedelta(days=params.days_back)
    metadata = start_process(
        storage, deployment_id, until.date(), dag_run_id, params.as_dict(), params.process_name
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


def extract_and_report(storage: Storage, process: dict, params: InferenceReportParams) -> dict:
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
                    confidence=params.confidence,
                    min_appearances=params.min_appearances,
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


# --- inference_review, inference_dataset and inference_merge ------------------------------
# The steps of the ``inference_dataset`` and ``inference_merge`` DAGs around :mod:`.dataset` and
# :mod:`.register`, with XCom-sized results. The DAG tasks resolve the storage, the image store
# (Variable ``inference_images_root``) and the registry (Variable ``inference_registry_root``)
# through :mod:`dataset_ops.settings` and pass them in.


def create_dataset_step(
    storage: Storage,
    params: InferenceDatasetParams,
    images: str | Storage,
    registry: str | Storage | None = None,
    producer: dict | None = None,
) -> dict:
    """Class folders under ``dataset/`` of the process (see :func:`.dataset.create_dataset`).

    :param params: the run's Params (``settings.InferenceDatasetParams.from_params``).
    :param images: the image store (opened, or a root URI).
    :param registry: the registry whose registered transactions are left out (needed when
        ``params.exclude_registered``).
    :param producer: ``{"dag_id", "run_id"}`` of the DAG run, recorded in the dataset's manifest.
    :raises FileNotFoundError: no such process.
    :raises ValueError: ``exclude_registered`` without a registry.
    """
    from dataset_ops.inference.dataset import create_dataset
    from dataset_ops.inference.register import registered_transactions

    name = params.process_name
    metadata = read_metadata(storage, name)
    if metadata is None:
        raise FileNotFoundError(f"no process {name} (run inference_report first)")
    if params.exclude_registered and registry is None:
        raise ValueError("exclude_registered needs the registry")
    exclude = registered_transactions(registry) if params.exclude_registered else frozenset()
    limits = {}
    if params.fast_mode:
        limits = {
            "max_references": params.max_references,
            "max_images_per_reference": params.max_images_per_reference,
        }
    summary = create_dataset(
        storage,
        process_prefix(name),
        images,
        fast=params.fast_mode,
        exclude_transactions=exclude,
        references=list(params.references) or None,
        producer=producer,
        **limits,
    )
    small = {
        "process_name": name,
        "deployment_id": metadata.get("deployment_id"),
        "prefix": summary["prefix"],
        "images": summary["images"],
        "bytes": summary["bytes"],
        "classes": len(summary["classes"]),
        "skipped": summary["skipped"],
        "missing_count": summary["missing_count"],
        "excluded_registered": len(exclude),
    }
    record_step(storage, name, "create_dataset", small)
    return small


def summary_step(storage: Storage, created: dict) -> dict:
    """``reports/summary_dataset.csv`` (see :func:`.dataset.summary_dataset`)."""
    from dataset_ops.inference.dataset import summary_dataset

    result = summary_dataset(
        storage, created["prefix"], f"{process_prefix(created['process_name'])}/data/records.parquet"
    )
    record_step(storage, created["process_name"], "summary_dataset", result)
    return result


def folder_structure_step(storage: Storage, created: dict) -> dict:
    """``reports/folder_structure.csv`` (see :func:`.dataset.folder_structure`)."""
    from dataset_ops.inference.dataset import folder_structure

    result = folder_structure(storage, created["prefix"])
    record_step(storage, created["process_name"], "folder_structure", result)
    return result


def register_step(
    storage: Storage, created: dict, registry: str | Storage, dataset_name: str, dag_run_id: str = ""
) -> dict:
    """ZIP, upload and one registry row (see :func:`.register.register_dataset`); the row names
    the process, its deployment (when ``created`` has one) and the DAG run that registered it.

    :param registry: the registry (opened, or a root URI)."""
    from dataset_ops.inference.register import register_dataset

    metadata = {
        "process_name": created["process_name"],
        "deployment_id": created.get("deployment_id"),
        "dag_run_id": dag_run_id,
    }
    result = register_dataset(storage, created["prefix"], registry, name=dataset_name, metadata=metadata)
    record_step(storage, created["process_name"], "register_dataset", result, status="registered")
    return result


def merge_step(storage: Storage, process_names: list[str], target: str, producer: dict | None = None) -> dict:
    """The datasets of ``process_names`` merged into ``processes/{target}/dataset/`` (see
    :func:`.dataset.merge_datasets`), with the target's ``process_metadata.json`` naming them.
    ``producer``: ``{"dag_id", "run_id"}`` of the DAG run, recorded in the merged manifest.

    :raises ValueError: fewer than two processes, the target among them, or an incomplete source.
    """
    from dataset_ops.inference.dataset import merge_datasets
    from dataset_ops.inference.process import check_process_name, write_metadata

    names = [check_process_name(n) for n in process_names]
    if len(set(names)) < 2 or check_process_name(target) in names:
        raise ValueError(f"merge needs two or more other processes than the target {target}: {names}")
    result = merge_datasets(
        storage,
        [f"{process_prefix(n)}/dataset" for n in names],
        f"{process_prefix(target)}/dataset",
        producer=producer,
    )
    metadata = read_metadata(storage, target) or {"process_name": target, "steps": {}}
    metadata.update(merged_from=names, status="merged")
    write_metadata(storage, target, metadata)
    small = {
        k: result[k]
        for k in ("prefix", "files", "bytes", "duplicates", "conflict_count", "missing_in_source")
    }
    small["classes"] = len(result["classes"])
    small["process_name"] = target
    deployments = {(read_metadata(storage, n) or {}).get("deployment_id") for n in names}
    if len(deployments) == 1:  # sources of one deployment: the merged dataset is of it too
        small["deployment_id"] = deployments.pop()
    record_step(storage, target, "merge_datasets", small)
    return small
