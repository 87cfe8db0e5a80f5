"""The ``/dataset-ops/apify/facebook`` API: the inventory of downloaded Apify datasets and the
download trigger, served by Airflow's own API server (plugin ``dataset_ops``,
``plugins/dataset_ops_plugin.py``, mounts :func:`create_app` at ``/dataset-ops``).

The handlers are thin: :mod:`dataset_ops.apify.inventory` computes every answer. Input is checked
before any handler runs, by the OpenAPI schema the app publishes: strict, bounded pydantic request
models and a run-id pattern on the path (422 with one entry per bad field). Behind that, the
inventory's own argument checks raise :class:`~dataset_ops.apify.inventory.InvalidArgument` (400);
``DatasetNotFound`` is 404, ``DatasetBusy`` 409. Every other exception stays a 500: a corrupt
manifest or a storage failure is the server's fault, never blamed on the request. Permissions go
through Airflow's ``airflow.api_fastapi.core_api.security``; the download route triggers the DAG as
the core ``POST /api/v2/dags/{dag_id}/dagRuns`` route does. :data:`API_DESCRIPTION` (shown at
``/dataset-ops/docs``) is the user's view.

Module import stays light (FastAPI, pydantic and the inventory module): every Airflow process,
task runners included, imports the plugin, so Airflow's API-server modules are imported on the
first request, not here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from dataset_ops.api.common import (
    ALL_METHODS,
    ErrorMessage,
    JsonInt,
    TriggeredRun,
    audited,
    error_responses,
    not_allowed,
    requires_dag_access,
    trigger_dag_run,
    with_statuses,
)
from dataset_ops.apify import inventory

log = logging.getLogger(__name__)

API_DESCRIPTION = """\
Downloaded Apify datasets (Facebook Ads Library actor runs) and their download trigger.

* `GET /apify/facebook/runs/list`: every stored dataset (summary), newest first
* `GET /apify/facebook/runs/{run_id}`: one dataset in detail
* `DELETE /apify/facebook/runs/{run_id}`: delete one dataset
* `POST /apify/facebook/runs/cleanup`: retention, old datasets beyond the newest N (dry run by default)
* `POST /apify/facebook/download-dataset-from-run`: trigger the DAG `apify_dataset_download`

**Authentication** is Airflow's: send `Authorization: Bearer <JWT>` (a token from
`POST /auth/token`) or the Airflow UI's session cookie; without one the answer is 401. The auth
manager decides the rest against the DAG `apify_dataset_download` (403 when it refuses): reading
needs read access to that DAG, deleting and cleanup need edit access to it, the trigger needs
permission to create its DAG runs (as `POST /api/v2/dags/{dag_id}/dagRuns`).

Datasets live in the storage of the Airflow Variable `dataset_ops_storage_root` (a local folder or
`s3://bucket/prefix` through the Airflow Connection `aws_default`, which must exist; default
`$AIRFLOW_HOME/dataset-ops-storage`) under
`datasets/facebook/{run_id}/`. Sizes are in bytes, dates UTC ISO 8601.

**Bad input is answered 4xx before the storage is touched.** A run id is 17 letters and digits;
anything else (`../../etc`, `a%2Fb`, `short`) is answered 422. Request bodies are JSON objects with
exactly the documented fields and types (no unknown field, no `"30"` for a number, no `true` for a
count, no NaN or infinity); numbers have bounds (`days_old` 0 to 36500, `keep_recent` 0 to
1000000, `frame_interval_seconds` above 0 up to 3600). A violation is answered 422 with one entry
per field in `detail` (`loc`, `msg`, `type`); a body that is not JSON is 422 too. A method a path
does not have is answered 405 with the path's methods in `Allow`.
"""

#: The DAG whose permissions guard these routes and which the download route triggers.
DAG_ID = "apify_dataset_download"
PREFIX = "/apify/facebook"

#: An Apify run id, as the DAG's Param ``run_id`` and :func:`dataset_ops.apify.items.check_run_id`
#: check it (``$`` is Python's end of text: no final newline; the length makes sure of it in any
#: regex dialect).
RUN_ID_PATTERN = r"^[A-Za-z0-9]{17}$"
RUN_ID_EXAMPLE = "HG7ML7M8z78YcAPEB"

_ERRORS = error_responses(DAG_ID)
_RUN_ERRORS = {
    **_ERRORS,
    404: {"model": ErrorMessage, "description": "No dataset is stored for this run id"},
}

#: The ``run_id`` path parameter: checked against the pattern before the handler runs (422).
RunIdPath = Annotated[
    str,
    PathParam(
        pattern=RUN_ID_PATTERN,
        min_length=17,
        max_length=17,
        description="The Apify actor run id (17 letters and digits).",
        examples=[RUN_ID_EXAMPLE],
    ),
]


ReaderDep = Annotated[Any, Depends(requires_dag_access(DAG_ID, "GET"))]
EditorDep = Annotated[Any, Depends(requires_dag_access(DAG_ID, "PUT"))]
TriggerDep = Annotated[Any, Depends(requires_dag_access(DAG_ID, "POST", run_access=True))]


def _storage():
    """The storage root (Variable ``dataset_ops_storage_root`` as the API server sees it: environment,
    secrets backends, metadata DB; else the default), opened by the suite's one rule
    (:func:`dataset_ops.settings.open_root`).

    :raises dataset_ops.settings.VariableUnavailable: the metadata DB cannot be read (a 500).
    :raises dataset_ops.settings.MissingConnection: an ``s3://`` root without the Connection
        ``aws_default`` (a 500 naming the Connection and the Variable)."""
    from dataset_ops import settings

    return settings.storage_root().open()


#: The inventory's exceptions as HTTP statuses (a ``ValueError`` from a corrupt manifest is not
#: among them: a 500, the server's fault).
_STATUSES = {inventory.InvalidArgument: 400, inventory.DatasetNotFound: 404, inventory.DatasetBusy: 409}


def _http_errors(func, *args, **kwargs):
    """``func(*args, **kwargs)`` with the inventory's exceptions as HTTP answers (:data:`_STATUSES`)."""
    return with_statuses(_STATUSES, func, *args, **kwargs)


class CleanupRequest(BaseModel):
    """Body of ``POST /runs/cleanup`` (the old service's fields); every field is optional.
    Strict: ``"30"``, ``30.5`` or ``true`` for a count and unknown fields are refused (422)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    days_old: JsonInt = Field(
        30,
        ge=0,
        le=inventory.MAX_DAYS_OLD,
        description="Delete datasets created more than this many days ago (0 to 36500).",
    )
    keep_recent: JsonInt = Field(
        10,
        ge=0,
        le=inventory.MAX_KEEP_RECENT,
        description="Always keep this many of the newest datasets (0 to 1000000).",
    )
    dry_run: bool = Field(True, description="Only report what would be deleted (the default here).")


class SeedCleanupRequest(CleanupRequest):
    """The body of ``POST /api/v1/apify/facebook/runs/cleanup``: the old service's defaults, so
    ``dry_run`` is false when absent (as the old clients expect)."""

    dry_run: bool = Field(False, description="Only report what would be deleted (the old default: false).")


class DownloadRequest(BaseModel):
    """Body of ``POST /download-dataset-from-run``: the conf of the ``apify_dataset_download`` run.
    The fields carry the DAG's Param rules (pattern, bounds), so a bad value is a 422 here; the
    DAG's Params check the conf again when the run is created (400 if they ever disagree)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    run_id: str = Field(
        pattern=RUN_ID_PATTERN,
        min_length=17,
        max_length=17,
        description="The Apify actor run (17 letters and digits).",
        examples=[RUN_ID_EXAMPLE],
    )
    download_media: bool = Field(True, description="Download the ads' images and videos.")
    force_download: bool = Field(False, description="Fetch everything again even if complete.")
    extract_video_frames: bool = Field(True, description="One JPEG per interval of each video.")
    frame_interval_seconds: float = Field(
        1.0, gt=0, le=3600, allow_inf_nan=False, description="Seconds between frames (0 < s <= 3600)."
    )


Completeness = Literal["complete", "partial", "in_progress", "unknown"]
Success = Literal["success"]


class RunSummary(BaseModel):
    """One entry of ``GET /runs/list``."""

    run_id: str
    path: str = Field(description="The dataset's folder: a local path or `s3://bucket/...`.")
    has_csv: bool
    has_jsonl: bool
    has_media: bool
    media_count: int = Field(description="Images and videos in `media/`.")
    created_at: str | None = Field(description="UTC ISO 8601 (manifest, else the oldest file).")
    last_modified: str | None = Field(description="UTC ISO 8601.")
    size_bytes: int
    completeness: Completeness = Field(description="From the manifest; `unknown` without one.")


class RunsList(BaseModel):
    """``GET /runs/list``: every stored dataset, newest first."""

    status: Success
    total_runs: int
    runs: list[RunSummary]
    total_size_bytes: int


class CsvFile(BaseModel):
    exists: bool
    path: str = Field(description="`{run_id}.csv`, relative to the dataset's folder.")
    size_bytes: int
    rows: int | None = Field(description="Rows after the header (manifest, else counted); null if absent.")


class JsonlFile(BaseModel):
    exists: bool
    path: str = Field(description="`{run_id}.jsonl`, relative to the dataset's folder.")
    size_bytes: int
    lines: int | None = Field(description="Items (manifest, else counted); null if absent.")


class MediaFiles(BaseModel):
    exists: bool
    path: str
    count: int = Field(description="Images plus videos.")
    size_bytes: int
    images: int
    videos: int
    failed: int = Field(description="Media the download could not fetch (manifest; 0 without one).")


class FrameFiles(BaseModel):
    exists: bool
    path: str
    count: int
    size_bytes: int
    videos_failed: int = Field(description="Videos no frame could be read from (manifest; 0 without one).")


class ReportFiles(BaseModel):
    exists: bool
    path: str
    files: list[str] = Field(description="File names in `reports/`.")


class RunFiles(BaseModel):
    csv: CsvFile
    jsonl: JsonlFile
    media: MediaFiles
    video_frames: FrameFiles
    reports: ReportFiles


class RunDetails(BaseModel):
    """``GET /runs/{run_id}``: one dataset in detail."""

    status: Success
    run_id: str
    exists: bool
    path: str = Field(description="The dataset's folder: a local path or `s3://bucket/...`.")
    dataset_id: str | None
    created_at: str | None
    last_modified: str | None
    completeness: Completeness
    files: RunFiles
    total_size_bytes: int


class DeleteResult(BaseModel):
    """``DELETE /runs/{run_id}``."""

    status: Success
    message: str
    deleted_path: str
    freed_space_bytes: int
    run_id: str
    deleted: bool
    files_deleted: int


class CleanupCriteria(BaseModel):
    days_old: int
    keep_recent: int


class CleanupDeletedRun(BaseModel):
    run_id: str
    days_old: int
    size_bytes: int
    created_at: str | None


class CleanupReport(BaseModel):
    """``POST /runs/cleanup``; ``runs_deleted`` and ``freed_space_bytes`` are 0 on a dry run."""

    status: Success
    dry_run: bool
    criteria: CleanupCriteria
    runs_checked: int
    runs_to_delete: int
    runs_deleted: int
    runs_kept: int
    freed_space_bytes: int
    deleted_runs: list[CleanupDeletedRun]
    space_to_free_bytes: int
    in_progress: list[str] = Field(description="Run ids kept because a download is writing them.")
    days_old: int
    keep_recent: int


class StorageMetrics(BaseModel):
    """``GET /storage/metrics``: the old service's "Métricas y Monitoreo" (bytes, days)."""

    status: Success
    as_of: str
    total_runs: int
    total_size_bytes: int
    avg_size_bytes: int
    by_completeness: dict[str, int]
    oldest_run_days: int | None
    newest_run_days: int | None
    space_available_bytes: int | None = Field(description="Free space of a local root; null on S3.")
    space_total_bytes: int | None = Field(description="Size of a local root's file system; null on S3.")
    growth_bytes_per_day: dict[str, int] = Field(
        description='Bytes of new datasets per day, `{"7d", "30d"}`.'
    )
    freed_space_bytes: dict[str, int] = Field(description='Bytes freed by deletions, `{"7d", "30d"}`.')
    cleanups: dict[str, int] = Field(description="Datasets deleted by cleanups.")
    deletions: dict[str, int] = Field(description="Datasets deleted (by hand or by cleanups).")
    freed_space_bytes_total: int
    ledger_since: str | None = Field(description="The oldest deletion on record.")


class DownloadedParts(BaseModel):
    csv: bool
    jsonl: bool
    media: bool
    media_count: int


class DatasetDownloaded(BaseModel):
    """The download's answer once the dataset is stored (the old service's answer)."""

    status: Success
    run_id: str
    message: str
    downloaded: DownloadedParts
    path: str
    size_bytes: int
    completeness: Completeness
    dag_run_id: str | None = Field(
        description="The DAG run that downloaded it; null when it was already stored."
    )
    dag_run_state: str | None


class DownloadPending(TriggeredRun):
    """202: the DAG run still runs after the wait; follow it with the core API."""

    detail: str


#: Longest wait of a download request (seconds).
MAX_WAIT_SECONDS = 1800.0
#: The wait of the old service's path, which answered when the dataset was there (seconds).
SEED_WAIT_SECONDS = 600.0
#: Seconds between two looks at the waited-for DAG run.
POLL_SECONDS = 1.0


def _naive_dates(value: Any) -> Any:
    """The old service's dates: UTC without an offset (``2025-11-24T10:30:00``), as its clients
    parse them (``datetime.fromisoformat`` then arithmetic with a naive ``datetime.now()``)."""
    if isinstance(value, dict):
        return {
            k: v.removesuffix("+00:00")
            if k in ("created_at", "last_modified") and isinstance(v, str)
            else _naive_dates(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_naive_dates(v) for v in value]
    return value


def _stored_download(conf: dict) -> dict | None:
    """The download's answer from the stored dataset, if it already holds what ``conf`` asks
    (the DAG would skip it), else None."""
    from dataset_ops.apify.tasks import satisfies
    from dataset_ops.settings import ApifyDownloadParams

    storage = _storage()
    if not satisfies(
        inventory.read_dataset_manifest(storage, conf["run_id"]), ApifyDownloadParams.from_params(conf)
    ):
        return None
    return _downloaded(storage, conf["run_id"], None, None, "Dataset already stored; nothing downloaded")


def _downloaded(storage, run_id: str, dag_run_id: str | None, state: str | None, message: str) -> dict:
    summary = inventory.get_dataset(storage, run_id).summary()
    return {
        "status": "success",
        "run_id": run_id,
        "message": message,
        "downloaded": {
            "csv": summary["has_csv"],
            "jsonl": summary["has_jsonl"],
            "media": summary["has_media"],
            "media_count": summary["media_count"],
        },
        "path": summary["path"],
        "size_bytes": summary["size_bytes"],
        "completeness": summary["completeness"],
        "dag_run_id": dag_run_id,
        "dag_run_state": state,
    }


def _dag_run_state(dag_run_id: str) -> tuple[str, list[str], bool]:
    """(state of the DAG run, its failed task instances as ``task_id`` or ``task_id[i]``,
    whether the DAG is paused)."""
    from airflow.models import DagModel, DagRun, TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        state = session.scalar(
            select(DagRun.state).where(DagRun.dag_id == DAG_ID, DagRun.run_id == dag_run_id)
        )
        paused = bool(session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == DAG_ID)))
        failed = []
        if state == "failed":
            rows = session.execute(
                select(TaskInstance.task_id, TaskInstance.map_index).where(
                    TaskInstance.dag_id == DAG_ID,
                    TaskInstance.run_id == dag_run_id,
                    TaskInstance.state == "failed",
                )
            )
            failed = [t if i < 0 else f"{t}[{i}]" for t, i in rows]
    return str(state), sorted(failed), paused


async def _wait_for_dag_run(dag_run_id: str, timeout: float) -> tuple[str, list[str], bool]:
    """Look at the DAG run every :data:`POLL_SECONDS` until it is ``success`` or ``failed``,
    ``timeout`` seconds passed, or it is queued on a paused DAG (it would wait for the unpause);
    no thread is held while waiting. :returns: (state, failed tasks, DAG paused)."""
    deadline = time.monotonic() + timeout
    while True:
        state, failed, paused = await run_in_threadpool(_dag_run_state, dag_run_id)
        left = deadline - time.monotonic()
        if state in ("success", "failed") or left <= 0 or (paused and state == "queued"):
            return state, failed, paused
        await asyncio.sleep(min(POLL_SECONDS, left))


def build_router(prefix: str, *, seed: bool = False) -> APIRouter:
    """The inventory's routes under ``prefix``. ``seed``: the old service's path
    (``/api/v1/apify/facebook``) with its defaults: a cleanup without ``dry_run`` deletes, a
    download waits up to :data:`SEED_WAIT_SECONDS` for the dataset, dates have no UTC offset."""
    router = APIRouter(prefix=prefix, tags=["Apify datasets (Facebook Ads Library)"])
    cleanup_body = SeedCleanupRequest if seed else CleanupRequest
    dated = _naive_dates if seed else (lambda answer: answer)

    for path, method in (("/runs/list", "GET"), ("/runs/cleanup", "POST"), ("/storage/metrics", "GET")):
        router.add_api_route(
            path,
            not_allowed(method),
            methods=[m for m in ALL_METHODS if m != method],
            include_in_schema=False,
        )

    @router.get("/runs/list", responses=_ERRORS)
    def list_runs(user: ReaderDep) -> RunsList:
        """Every dataset stored under ``datasets/facebook/``, newest first.

        ``{"status": "success", "total_runs", "runs": [{"run_id", "path", "has_csv",
        "has_jsonl", "has_media", "media_count", "created_at", "last_modified", "size_bytes",
        "completeness"}], "total_size_bytes"}``: ``size_bytes`` is the sum of the dataset's file
        sizes (bytes), dates are UTC ISO 8601, ``completeness`` is ``complete``, ``partial``,
        ``in_progress`` or ``unknown`` (no manifest: e.g. a folder of the old service).
        """
        return dated(inventory.runs_list(_storage()))

    @router.get("/storage/metrics", responses=_ERRORS)
    def storage_metrics(user: ReaderDep) -> StorageMetrics:
        """Storage metrics: datasets, space used, space available (local root; null on S3),
        growth per day and space freed by deletions and cleanups over the last 7 and 30 days
        (from the deletion ledger ``datasets/_deletions/facebook/``). Bytes and days."""
        return inventory.storage_metrics(_storage())

    @router.get("/runs/{run_id:path}", responses=_RUN_ERRORS)
    def get_run(run_id: RunIdPath, user: ReaderDep) -> RunDetails:
        """One dataset in detail.

        ``{"status": "success", "run_id", "exists": true, "path", "dataset_id", "created_at",
        "last_modified", "completeness", "files": {"csv": {"exists", "path", "size_bytes",
        "rows"}, "jsonl": {"exists", "path", "size_bytes", "lines"}, "media": {"exists", "path",
        "count", "size_bytes", "images", "videos", "failed"}, "video_frames": {"exists", "path",
        "count", "size_bytes", "videos_failed"}, "reports": {"exists", "path", "files"}},
        "total_size_bytes"}``. ``rows``/``lines`` come from the manifest, or are counted in the
        files when there is none. Errors: 422 not a run id, 404 nothing stored.
        """
        storage = _storage()
        details = _http_errors(lambda: inventory.get_dataset(storage, run_id).details())
        return dated({"status": "success", **details})

    @router.delete(
        "/runs/{run_id:path}",
        responses={
            **_RUN_ERRORS,
            409: {"model": ErrorMessage, "description": "The dataset's download is in progress"},
        },
    )
    def delete_run(run_id: RunIdPath, user: EditorDep) -> DeleteResult:
        """Delete every file of one dataset (its manifest last).

        ``{"status": "success", "message", "deleted_path", "freed_space_bytes", "run_id",
        "deleted": true, "files_deleted"}``. Errors: 422 not a run id, 404 nothing stored, 409 a
        download is writing it (its manifest says ``in_progress`` and was updated within the
        last 24 hours). The deletion is written to Airflow's audit log and the deletion ledger.
        """
        result = _http_errors(inventory.delete_dataset, _storage(), run_id)
        audited(
            "delete_dataset",
            user,
            DAG_ID,
            apify_run_id=run_id,
            files_deleted=result["files_deleted"],
            freed_space_bytes=result["freed_space_bytes"],
        )
        return result

    def cleanup_runs(user: EditorDep, body: CleanupRequest | None = None) -> CleanupReport:
        """Retention: delete the datasets created more than ``days_old`` days ago, except the
        ``keep_recent`` newest and any whose download is in progress.

        ``{"status": "success", "dry_run", "criteria": {"days_old", "keep_recent"},
        "runs_checked", "runs_to_delete", "runs_deleted", "runs_kept", "freed_space_bytes",
        "deleted_runs": [{"run_id", "days_old", "size_bytes", "created_at"}],
        "space_to_free_bytes", "in_progress": [run ids], "days_old", "keep_recent"}``;
        ``runs_deleted`` and ``freed_space_bytes`` are 0 on a dry run. A real cleanup is written
        to Airflow's audit log. Errors: 422 a field out of its bounds, of another type, or
        unknown.
        """
        body = body or cleanup_body()
        report = _http_errors(inventory.cleanup_datasets, _storage(), **body.model_dump())
        if not body.dry_run:
            audited(
                "cleanup_datasets",
                user,
                DAG_ID,
                **body.model_dump(),
                deleted=[r["run_id"] for r in report["deleted_runs"]],
                freed_space_bytes=report["freed_space_bytes"],
            )
        return dated(report)

    # this path's body model (the old path's defaults differ); annotations are text here
    cleanup_runs.__annotations__["body"] = cleanup_body | None
    router.post(
        "/runs/cleanup",
        responses={
            **_ERRORS,
            400: {"model": ErrorMessage, "description": "Refused by the retention rule's own checks"},
        },
    )(cleanup_runs)

    wait_default = SEED_WAIT_SECONDS if seed else 0.0

    @router.post(
        "/download-dataset-from-run",
        responses={
            **_ERRORS,
            202: {"model": DownloadPending, "description": "Waited `wait_seconds`; the DAG run still runs"},
            400: {
                "model": ErrorMessage,
                "description": "The DAG's Params reject the conf, or the DAG cannot be triggered",
            },
            404: {"model": ErrorMessage, "description": "The DAG is not in the metadata DB (not parsed yet)"},
            502: {"model": ErrorMessage, "description": "The download's DAG run failed"},
        },
    )
    async def download_dataset_from_run(
        body: DownloadRequest,
        user: TriggerDep,
        wait_seconds: Annotated[
            float,
            Query(
                ge=0,
                le=MAX_WAIT_SECONDS,
                allow_inf_nan=False,
                description="Seconds to wait for the dataset (0: answer the DAG run at once).",
            ),
        ] = wait_default,
    ) -> TriggeredRun | DatasetDownloaded:
        """Download a run's dataset with the DAG ``apify_dataset_download`` (the body is its
        conf), as ``POST /api/v2/dags/apify_dataset_download/dagRuns`` would trigger it (same
        Params validation, run type ``manual``, triggered by ``rest_api``, the caller as
        triggering user).

        With ``wait_seconds`` 0 (the default here) the answer is the new DAG run as the core API
        shows it: ``{"dag_run_id", "dag_id", "state" ("queued"), "logical_date" (null),
        "run_after", "queued_at", "conf", "run_type", "triggered_by", "triggering_user_name",
        ...}``; follow it with ``GET /api/v2/dags/apify_dataset_download/dagRuns/{dag_run_id}``.

        With ``wait_seconds`` above 0 (the old service's path waits 600 s by default) the answer
        comes when the dataset is stored: 200 ``{"status": "success", "run_id", "message",
        "downloaded": {"csv", "jsonl", "media", "media_count"}, "path", "size_bytes",
        "completeness", "dag_run_id", "dag_run_state"}``, at once and without a DAG run when the
        stored dataset already holds what the body asks (unless ``force_download``); 202 (the
        DAG run, a ``detail`` and a ``Location`` header) when the run still runs after the wait
        (at once when the DAG is paused: its run would wait for the unpause);
        502 with ``detail`` naming the failed tasks when the run failed.

        Errors: 422 a missing, unknown or bad field (a run id that is not 17 letters and
        digits, an interval out of 0 < s <= 3600, a wait out of 0 to 1800 s); 400 the DAG's
        Params reject the conf or the DAG has import errors; 404 the DAG is not parsed yet.
        A paused DAG keeps the run queued until it is unpaused.
        """
        conf = body.model_dump()
        if wait_seconds > 0 and not body.force_download:
            stored = await run_in_threadpool(_stored_download, conf)
            if stored is not None:
                return DatasetDownloaded(**stored)
        answer = await run_in_threadpool(trigger_dag_run, DAG_ID, conf, user, "trigger_download")
        dag_run_id = answer["dag_run_id"]
        log.info("Apify run %s: download run %s (wait %s s)", conf["run_id"], dag_run_id, wait_seconds)
        if wait_seconds == 0:
            return TriggeredRun(**answer)
        state, failed, paused = await _wait_for_dag_run(dag_run_id, wait_seconds)
        follow = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(dag_run_id, safe='')}"
        if state == "success":
            done = await run_in_threadpool(
                _downloaded, _storage(), conf["run_id"], dag_run_id, state, "Dataset downloaded"
            )
            return DatasetDownloaded(**done)
        if state == "failed":
            raise HTTPException(
                502,
                f"the download (DAG run {dag_run_id} of {DAG_ID}) failed; failed tasks: "
                f"{', '.join(failed) or 'none recorded'}; their logs: GET {follow}/taskInstances",
            )
        why = (
            f"the DAG {DAG_ID} is paused: the run stays queued until it is unpaused"
            if paused and state == "queued"
            else f"still {state} after {wait_seconds:g} s"
        )
        pending = {
            **answer,
            "state": state,
            "detail": f"the download (DAG run {dag_run_id}): {why}; follow it with GET {follow}",
        }
        return JSONResponse(pending, status_code=202, headers={"Location": follow})

    return router


#: The suite's routes, ``/dataset-ops/apify/facebook/...`` on the API server.
router = build_router(PREFIX)
#: The old service's path, ``/api/v1/apify/facebook/...`` on the API server (plugin mount
#: ``/api/v1/apify/facebook``), so its clients only change the host and add a token.
seed_router = build_router("", seed=True)
SEED_PREFIX = "/api/v1/apify/facebook"


def create_seed_app() -> FastAPI:
    """The old service's paths as an app of their own, which the plugin mounts at
    :data:`SEED_PREFIX` (``/api/v1/apify/facebook/runs/list``...), with the suite's error
    handlers; OpenAPI at ``/api/v1/apify/facebook/openapi.json``."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from dataset_ops.api.common import http_error, validation_error

    app = FastAPI(
        title="dataset-ops: the Apify inventory on the old service's paths",
        description=API_DESCRIPTION,
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(seed_router)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    return app


def create_app() -> FastAPI:
    """The suite's whole app (:func:`dataset_ops.api.app.create_app`), under its old name."""
    from dataset_ops.api.app import create_app as create

    return create()
