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

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI
from fastapi import Path as PathParam
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
    dry_run: bool = Field(True, description="Only report what would be deleted (the default).")


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


class RunSummary(BaseModel):
    """One entry of ``GET /runs/list``."""

    run_id: str
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

    runs: list[RunSummary]
    total_runs: int
    total_size_bytes: int


class CsvFile(BaseModel):
    name: str
    size_bytes: int
    rows: int | None = Field(description="From the manifest (null without one).")


class JsonlFile(BaseModel):
    name: str
    size_bytes: int
    lines: int | None = Field(description="From the manifest (null without one).")


class RunFiles(BaseModel):
    csv: CsvFile | None
    jsonl: JsonlFile | None


class RunMedia(BaseModel):
    images: int
    videos: int
    failed: int
    size_bytes: int


class RunFrames(BaseModel):
    count: int
    size_bytes: int
    videos_failed: int


class RunDetails(BaseModel):
    """``GET /runs/{run_id}``: one dataset in detail."""

    run_id: str
    path: str = Field(description="`datasets/facebook/{run_id}` below the storage root.")
    dataset_id: str | None
    created_at: str | None
    last_modified: str | None
    completeness: Completeness
    files: RunFiles
    media: RunMedia
    video_frames: RunFrames
    reports: list[str] = Field(description="File names in `reports/`.")
    total_size_bytes: int


class DeleteResult(BaseModel):
    """``DELETE /runs/{run_id}``."""

    run_id: str
    deleted: bool
    files_deleted: int
    freed_space_bytes: int


class CleanupDeletedRun(BaseModel):
    run_id: str
    days_old: int
    size_bytes: int
    created_at: str | None


class CleanupReport(BaseModel):
    """``POST /runs/cleanup``; ``runs_deleted`` and ``freed_space_bytes`` are 0 on a dry run."""

    runs_checked: int
    runs_to_delete: int
    runs_deleted: int
    runs_kept: int
    freed_space_bytes: int
    space_to_free_bytes: int
    deleted_runs: list[CleanupDeletedRun]
    in_progress: list[str]
    dry_run: bool
    days_old: int
    keep_recent: int


router = APIRouter(prefix=PREFIX, tags=["Apify datasets (Facebook Ads Library)"])


router.add_api_route(
    "/runs/list",
    not_allowed("GET"),
    methods=[m for m in ALL_METHODS if m != "GET"],
    include_in_schema=False,
)
router.add_api_route(
    "/runs/cleanup",
    not_allowed("POST"),
    methods=[m for m in ALL_METHODS if m != "POST"],
    include_in_schema=False,
)


@router.get("/runs/list", responses=_ERRORS)
def list_runs(user: ReaderDep) -> RunsList:
    """Every dataset stored under ``datasets/facebook/``, newest first.

    ``{"runs": [{"run_id", "has_csv", "has_jsonl", "has_media", "media_count", "created_at",
    "last_modified", "size_bytes", "completeness"}], "total_runs", "total_size_bytes"}``:
    ``size_bytes`` is the sum of the dataset's file sizes (bytes), dates are UTC ISO 8601,
    ``completeness`` is ``complete``, ``partial``, ``in_progress`` or ``unknown`` (no manifest).
    """
    return inventory.runs_list(_storage())


@router.get("/runs/{run_id:path}", responses=_RUN_ERRORS)
def get_run(run_id: RunIdPath, user: ReaderDep) -> RunDetails:
    """One dataset in detail.

    ``{"run_id", "path", "dataset_id", "created_at", "last_modified", "completeness",
    "files": {"csv": {"name", "size_bytes", "rows"} | null, "jsonl": {"name", "size_bytes",
    "lines"} | null}, "media": {"images", "videos", "failed", "size_bytes"},
    "video_frames": {"count", "size_bytes", "videos_failed"}, "reports": [file names],
    "total_size_bytes"}``. ``rows``/``lines`` come from the manifest (null without one).
    Errors: 422 not a run id, 404 nothing stored.
    """
    storage = _storage()
    return _http_errors(lambda: inventory.get_dataset(storage, run_id).details())


@router.delete(
    "/runs/{run_id:path}",
    responses={
        **_RUN_ERRORS,
        409: {"model": ErrorMessage, "description": "The dataset's download is in progress"},
    },
)
def delete_run(run_id: RunIdPath, user: EditorDep) -> DeleteResult:
    """Delete every file of one dataset (its manifest last).

    ``{"run_id", "deleted": true, "files_deleted", "freed_space_bytes"}``. Errors: 422 not a run
    id, 404 nothing stored, 409 a download is writing it (its manifest says ``in_progress`` and
    was updated within the last 24 hours). The deletion is written to Airflow's audit log.
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


@router.post(
    "/runs/cleanup",
    responses={
        **_ERRORS,
        400: {"model": ErrorMessage, "description": "Refused by the retention rule's own checks"},
    },
)
def cleanup_runs(user: EditorDep, body: CleanupRequest | None = None) -> CleanupReport:
    """Retention: delete the datasets created more than ``days_old`` days ago, except the
    ``keep_recent`` newest and any whose download is in progress. ``dry_run`` (the default)
    deletes nothing and reports what would go.

    ``{"runs_checked", "runs_to_delete", "runs_deleted", "runs_kept", "freed_space_bytes",
    "space_to_free_bytes", "deleted_runs": [{"run_id", "days_old", "size_bytes", "created_at"}],
    "in_progress": [run ids], "dry_run", "days_old", "keep_recent"}``; ``runs_deleted`` and
    ``freed_space_bytes`` are 0 on a dry run. A real cleanup is written to Airflow's audit log.
    No body (or ``null``) means the defaults: a dry run. Errors: 422 a field out of its bounds,
    of another type, or unknown.
    """
    body = body or CleanupRequest()
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
    return report


@router.post(
    "/download-dataset-from-run",
    responses={
        **_ERRORS,
        400: {
            "model": ErrorMessage,
            "description": "The DAG's Params reject the conf, or the DAG cannot be triggered",
        },
        404: {"model": ErrorMessage, "description": "The DAG is not in the metadata DB (not parsed yet)"},
    },
)
def download_dataset_from_run(body: DownloadRequest, user: TriggerDep) -> TriggeredRun:
    """Trigger a run of the DAG ``apify_dataset_download`` with the body as its conf, as
    ``POST /api/v2/dags/apify_dataset_download/dagRuns`` does (same Params validation, run type
    ``manual``, triggered by ``rest_api``, the caller as triggering user).

    Answers the new DAG run as the core API shows it: ``{"dag_run_id", "dag_id", "state"
    ("queued"), "logical_date" (null), "run_after", "queued_at", "conf", "run_type",
    "triggered_by", "triggering_user_name", ...}`` (dates UTC ISO 8601). Follow it with
    ``GET /api/v2/dags/apify_dataset_download/dagRuns/{dag_run_id}``. A paused DAG keeps the run
    queued until it is unpaused. Errors: 422 a missing, unknown or bad field (a run id that is
    not 17 letters and digits, an interval out of 0 < s <= 3600); 400 the DAG's Params reject
    the conf or the DAG has import errors; 404 the DAG is not parsed yet.
    """
    conf = body.model_dump()
    answer = trigger_dag_run(DAG_ID, conf, user, "trigger_download")
    log.info("Apify run %s: download run %s", conf["run_id"], answer["dag_run_id"])
    return answer


def create_app() -> FastAPI:
    """The suite's whole app (:func:`dataset_ops.api.app.create_app`), under its old name."""
    from dataset_ops.api.app import create_app as create

    return create()
