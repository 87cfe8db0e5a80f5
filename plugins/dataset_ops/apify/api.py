"""The ``/dataset-ops/apify/facebook`` API: the inventory of downloaded Apify datasets and the
download trigger, served by Airflow's own API server (plugin ``dataset_ops``,
``plugins/dataset_ops_plugin.py``, mounts :func:`create_app` at ``/dataset-ops``).

The handlers are thin: :mod:`dataset_ops.apify.inventory` computes every answer; this module maps
its exceptions to HTTP (``ValueError`` 400, ``DatasetNotFound`` 404, ``DatasetBusy`` 409), checks
permissions through Airflow's ``airflow.api_fastapi.core_api.security`` and triggers the DAG as the
core ``POST /api/v2/dags/{dag_id}/dagRuns`` route does. :data:`API_DESCRIPTION` (shown at
``/dataset-ops/docs``) is the user's view.

Module import stays light (FastAPI, pydantic and the inventory module): every Airflow process,
task runners included, imports the plugin, so Airflow's API-server modules are imported on the
first request, not here.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordBearer
from pydantic import BaseModel, ConfigDict, Field

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
`s3://bucket/prefix`; default `$AIRFLOW_HOME/dataset-ops-storage`) under
`datasets/facebook/{run_id}/`. Sizes are in bytes, dates UTC ISO 8601. A run id is 17 letters and
digits; anything else (`../../etc`, `a/b`) is answered 400 before the storage is touched.
"""

#: The DAG whose permissions guard these routes and which the download route triggers.
DAG_ID = "apify_dataset_download"
PREFIX = "/apify/facebook"

# The same two credential sources as Airflow's own ``get_user`` (OpenAPI shows the login form).
_oauth2 = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)
_bearer = HTTPBearer(auto_error=False)

_ERRORS = {
    401: {"description": "No token, or an expired one"},
    403: {"description": "The user may not do this on the DAG `apify_dataset_download` (or a bad token)"},
}
_RUN_ERRORS = {
    **_ERRORS,
    400: {"description": "`run_id` is not an Apify run id (17 letters and digits)"},
    404: {"description": "No dataset is stored for this run id"},
}


def _requires_dag_access(method: str, run_access: bool = False):
    """A dependency answering 401/403 through Airflow's security module, as
    ``Depends(requires_access_dag(method, access_entity, param_dag_id=DAG_ID))`` would, and
    returning the user. ``run_access``: the access asked is for the DAG's runs."""

    async def dependency(
        request: Request,
        token: Annotated[str | None, Depends(_oauth2)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Any:
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
        from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

        user = await get_user(request, _oauth_token=token, bearer_credentials=credentials)
        check = requires_access_dag(method, DagAccessEntity.RUN if run_access else None, param_dag_id=DAG_ID)
        await run_in_threadpool(check, request, user)  # may read the DAG's team from the DB
        return user

    return dependency


ReaderDep = Annotated[Any, Depends(_requires_dag_access("GET"))]
EditorDep = Annotated[Any, Depends(_requires_dag_access("PUT"))]
TriggerDep = Annotated[Any, Depends(_requires_dag_access("POST", run_access=True))]


def storage_root() -> str:
    """The Variable ``dataset_ops_storage_root`` as the API server sees it (environment
    ``AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT``, secrets backends, metadata DB), else the default.
    ``airflow.sdk.Variable`` is for tasks; outside one, ``airflow.models.Variable`` reads it."""
    from airflow.models import Variable

    from dataset_ops.storage import STORAGE_ROOT_VARIABLE, default_storage_root

    # not airflow.sdk.Variable: outside a task it reads env and secrets backends, not the DB
    return Variable.get(STORAGE_ROOT_VARIABLE, default_var=default_storage_root())  # noqa: AIR311


def _storage():
    from dataset_ops.storage import open_storage

    return open_storage(storage_root())


def _http_errors(func, *args, **kwargs):
    """``func(*args, **kwargs)`` with the inventory's exceptions as HTTP answers."""
    try:
        return func(*args, **kwargs)
    except inventory.DatasetNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except inventory.DatasetBusy as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


def _audit(session, event: str, user, *, run_id: str | None = None, **extra) -> None:
    """One row in Airflow's audit log (Browse > Audit Log) for the DAG ``apify_dataset_download``:
    ``run_id`` is a DAG run id (Apify run ids go in ``extra``)."""
    from airflow.models import Log

    session.add(
        Log(
            event=f"dataset_ops.{event}",
            owner=user.get_name(),
            owner_display_name=user.get_name(),
            dag_id=DAG_ID,
            run_id=run_id,
            extra=json.dumps(extra, default=str),
        )
    )


def _audited(event: str, user, **extra) -> None:
    from airflow.utils.session import create_session

    with create_session(scoped=False) as session:
        _audit(session, event, user, **extra)


class CleanupRequest(BaseModel):
    """Body of ``POST /runs/cleanup``; every field is optional."""

    model_config = ConfigDict(extra="forbid")

    days_old: float = Field(30, ge=0, description="Delete datasets created more than this many days ago.")
    keep_recent: int = Field(10, ge=0, description="Always keep this many of the newest datasets.")
    dry_run: bool = Field(True, description="Only report what would be deleted (the default).")


class DownloadRequest(BaseModel):
    """Body of ``POST /download-dataset-from-run``: the conf of the ``apify_dataset_download`` run.
    The DAG's Params validate it (run id pattern, interval range): a bad value is answered 400."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(description="The Apify actor run (17 letters and digits).")
    download_media: bool = Field(True, description="Download the ads' images and videos.")
    force_download: bool = Field(False, description="Fetch everything again even if complete.")
    extract_video_frames: bool = Field(True, description="One JPEG per interval of each video.")
    frame_interval_seconds: float = Field(1.0, description="Seconds between frames (0 < s <= 3600).")


router = APIRouter(prefix=PREFIX, tags=["Apify datasets (Facebook Ads Library)"])


@router.get("/runs/list", responses=_ERRORS)
def list_runs(user: ReaderDep) -> dict:
    """Every dataset stored under ``datasets/facebook/``, newest first.

    ``{"runs": [{"run_id", "has_csv", "has_jsonl", "has_media", "media_count", "created_at",
    "last_modified", "size_bytes", "completeness"}], "total_runs", "total_size_bytes"}``:
    ``size_bytes`` is the sum of the dataset's file sizes (bytes), dates are UTC ISO 8601,
    ``completeness`` is ``complete``, ``partial``, ``in_progress`` or ``unknown`` (no manifest).
    """
    return inventory.runs_list(_storage())


@router.get("/runs/{run_id:path}", responses=_RUN_ERRORS)
def get_run(run_id: str, user: ReaderDep) -> dict:
    """One dataset in detail.

    ``{"run_id", "path", "dataset_id", "created_at", "last_modified", "completeness",
    "files": {"csv": {"name", "size_bytes", "rows"} | null, "jsonl": {"name", "size_bytes",
    "lines"} | null}, "media": {"images", "videos", "failed", "size_bytes"},
    "video_frames": {"count", "size_bytes", "videos_failed"}, "reports": [file names],
    "total_size_bytes"}``. ``rows``/``lines`` come from the manifest (null without one).
    Errors: 400 not a run id, 404 nothing stored.
    """
    storage = _storage()
    return _http_errors(lambda: inventory.get_dataset(storage, run_id).details())


@router.delete(
    "/runs/{run_id:path}",
    responses={**_RUN_ERRORS, 409: {"description": "The dataset's download is in progress"}},
)
def delete_run(run_id: str, user: EditorDep) -> dict:
    """Delete every file of one dataset (its manifest last).

    ``{"run_id", "deleted": true, "files_deleted", "freed_space_bytes"}``. Errors: 400 not a run
    id, 404 nothing stored, 409 a download is writing it (its manifest says ``in_progress`` and
    was updated within the last 24 hours). The deletion is written to Airflow's audit log.
    """
    result = _http_errors(inventory.delete_dataset, _storage(), run_id)
    _audited(
        "delete_dataset",
        user,
        apify_run_id=run_id,
        files_deleted=result["files_deleted"],
        freed_space_bytes=result["freed_space_bytes"],
    )
    return result


@router.post("/runs/cleanup", responses={**_ERRORS, 422: {"description": "A negative or unknown field"}})
def cleanup_runs(user: EditorDep, body: CleanupRequest | None = None) -> dict:
    """Retention: delete the datasets created more than ``days_old`` days ago, except the
    ``keep_recent`` newest and any whose download is in progress. ``dry_run`` (the default)
    deletes nothing and reports what would go.

    ``{"runs_checked", "runs_to_delete", "runs_deleted", "runs_kept", "freed_space_bytes",
    "space_to_free_bytes", "deleted_runs": [{"run_id", "days_old", "size_bytes", "created_at"}],
    "in_progress": [run ids], "dry_run", "days_old", "keep_recent"}``; ``runs_deleted`` and
    ``freed_space_bytes`` are 0 on a dry run. A real cleanup is written to Airflow's audit log.
    """
    body = body or CleanupRequest()
    report = _http_errors(inventory.cleanup_datasets, _storage(), **body.model_dump())
    if not body.dry_run:
        _audited(
            "cleanup_datasets",
            user,
            **body.model_dump(),
            deleted=[r["run_id"] for r in report["deleted_runs"]],
            freed_space_bytes=report["freed_space_bytes"],
        )
    return report


@router.post(
    "/download-dataset-from-run",
    responses={
        **_ERRORS,
        400: {"description": "The DAG's Params reject the conf (the reason is in `detail`)"},
        404: {"description": "The DAG is not in the metadata DB (not parsed yet)"},
        422: {"description": "A field of the wrong type or an unknown field"},
    },
)
def download_dataset_from_run(body: DownloadRequest, user: TriggerDep) -> dict:
    """Trigger a run of the DAG ``apify_dataset_download`` with the body as its conf, as
    ``POST /api/v2/dags/apify_dataset_download/dagRuns`` does (same Params validation, run type
    ``manual``, triggered by ``rest_api``, the caller as triggering user).

    Answers the new DAG run as the core API shows it: ``{"dag_run_id", "dag_id", "state"
    ("queued"), "logical_date" (null), "run_after", "queued_at", "conf", "run_type",
    "triggered_by", "triggering_user_name", ...}`` (dates UTC ISO 8601). Follow it with
    ``GET /api/v2/dags/apify_dataset_download/dagRuns/{dag_run_id}``. A paused DAG keeps the run
    queued until it is unpaused. Errors: 400 the Params reject the conf (e.g. a run id that is
    not 17 letters and digits) or the DAG has import errors; 404 the DAG is not parsed yet.
    """
    from airflow.api_fastapi.common.dagbag import get_latest_version_of_dag
    from airflow.api_fastapi.core_api.datamodels.dag_run import DAGRunResponse, TriggerDAGRunPostBody
    from airflow.exceptions import ParamValidationError
    from airflow.models import DagModel
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select

    conf = body.model_dump()
    with create_session(scoped=False) as session:
        dm = session.scalar(select(DagModel).where(~DagModel.is_stale, DagModel.dag_id == DAG_ID).limit(1))
        if not dm:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"Dag with dag_id: '{DAG_ID}' not found")
        if dm.allowed_run_types is not None and DagRunType.MANUAL not in dm.allowed_run_types:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"Dag with dag_id: '{DAG_ID}' does not allow manual runs"
            )
        if dm.has_import_errors:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                f"Dag with dag_id: '{DAG_ID}' has import errors and cannot be triggered",
            )
        dag = get_latest_version_of_dag(_dag_bag(), DAG_ID, session)
        try:
            params = TriggerDAGRunPostBody(logical_date=None, conf=conf).validate_context(dag)
            dag_run = dag.create_dagrun(
                run_id=params["run_id"],
                logical_date=params["logical_date"],
                data_interval=params["data_interval"],
                run_after=params["run_after"],
                conf=params["conf"],
                run_type=DagRunType.MANUAL,
                triggered_by=DagRunTriggeredByType.REST_API,
                triggering_user_name=user.get_name(),
                state=DagRunState.QUEUED,
                partition_key=params["partition_key"],
                partition_date=params["partition_date"],
                session=session,
            )
        except (ParamValidationError, ValueError) as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
        session.flush()
        answer = DAGRunResponse.model_validate(dag_run).model_dump(mode="json")
        _audit(session, "trigger_download", user, run_id=dag_run.run_id, conf=conf)
    log.info(
        "%s triggered %s run %s for Apify run %s",
        user.get_name(),
        DAG_ID,
        answer["dag_run_id"],
        conf["run_id"],
    )
    return answer


@cache
def _dag_bag():
    """One DB dag bag for this app, configured (cache size and TTL) like the API server's own."""
    from airflow.api_fastapi.common.dagbag import create_dag_bag

    return create_dag_bag()


def create_app() -> FastAPI:
    """The FastAPI app the plugin mounts at ``/dataset-ops`` (docs at ``/dataset-ops/docs``)."""
    app = FastAPI(
        title="dataset-ops: Apify datasets",
        description=API_DESCRIPTION,
        version="1",
    )
    app.include_router(router)
    return app
