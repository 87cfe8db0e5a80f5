"""The ``/dataset-ops/staging`` API: staged uploads as a service, on Airflow's API server (plugin
``dataset_ops``; :func:`dataset_ops.api.app.create_app`). The handlers are thin:
:mod:`dataset_ops.staging.service` does the work. :data:`API_DESCRIPTION` is the user's view.

Module import stays light (FastAPI, pydantic, the service module): every Airflow process imports
the plugin.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from dataset_ops.api.common import (
    ErrorMessage,
    JsonInt,
    TriggeredRun,
    audited,
    error_responses,
    requires_dag_access,
    trigger_dag_run,
    with_statuses,
)
from dataset_ops.staging import service
from dataset_ops.staging.status import UploadState

log = logging.getLogger(__name__)

#: The DAG whose permissions guard these routes and which validates the uploads.
DAG_ID = "staged_upload_validation"
PREFIX = "/staging"
#: The Uploads page's built files (``make install`` builds them from ``ui/uploads``).
PAGE_DIR = Path(__file__).with_name("webui")

API_DESCRIPTION = """\
Large files uploaded to `uploads/` of the staging root (Airflow Variable `staging_root`), validated
as a stream by the DAG `staged_upload_validation`, promoted to `fresh/` or quarantined in `failed/`
with an error report. The Uploads page (`/dataset-ops/staging/ui/`, in the Airflow UI's menu) uses
these routes; scripts can too.

**Uploading** follows the S3 multipart protocol Uppy's AWS S3 plugin speaks to a Companion server
(`endpoint: "<host>/dataset-ops/staging"` in `@uppy/aws-s3` 5, `companionEndpoint` in 6):
`POST /staging/s3/multipart` starts (`filename` = the upload name, `metadata.data_type`,
`metadata.size` in bytes, `metadata.description`, `metadata.rules` for `data_type: custom`);
`GET /staging/s3/multipart/{upload_id}/{part_number}?key=` gives the URL to `PUT` a part to (on S3 a
presigned URL: the bytes go straight to S3, never through the API server; on a local staging root
the API's own `PUT /staging/parts/...`); `GET /staging/s3/multipart/{upload_id}?key=` lists the parts
already there (to resume); `POST /staging/s3/multipart/{upload_id}/complete?key=` completes (never
replacing a file waiting in `uploads/`) and starts a validation run at once;
`DELETE /staging/s3/multipart/{upload_id}?key=` aborts.

**Files** (the old service's routes): `GET /staging/staged-files?status=`,
`GET /staging/file-info/{name}` (status record and error report), `GET /staging/upload-progress/{name}`,
`GET /staging/download-file/{name}` (a redirect to a presigned URL on S3, the bytes for a local root),
`POST /staging/process-file/{name}` (validate a waiting file now, with rule overrides),
`POST /staging/retry-failed-file/{name}` (validate a quarantined file again, rules relaxed),
`DELETE /staging/cleanup-failed-uploads?hours_old=24`, `GET /staging/health`, `GET /staging/metrics`
(JSON, or Prometheus text with `?format=prometheus`), `GET /staging/rule-sets`.
A name is the path below `uploads/` (it may contain `/`).

**Permissions** are Airflow's, on the DAG `staged_upload_validation`: reading needs read access to the
DAG; uploading, processing and retrying need permission to create its DAG runs; the cleanup needs edit
access. Without a token (or the Airflow UI's cookie) the answer is 401; refused, 403.
"""

_ERRORS = error_responses(DAG_ID)
_404 = {404: {"model": ErrorMessage, "description": "No such staged file, upload or version"}}
_400 = {
    400: {"model": ErrorMessage, "description": "The request cannot succeed as sent (the message says why)"}
}
_409 = {
    409: {
        "model": ErrorMessage,
        "description": "The name's state forbids it (a file waiting, another upload)",
    }
}

ReaderDep = Annotated[Any, Depends(requires_dag_access(DAG_ID, "GET"))]
EditorDep = Annotated[Any, Depends(requires_dag_access(DAG_ID, "PUT"))]
TriggerDep = Annotated[Any, Depends(requires_dag_access(DAG_ID, "POST", run_access=True))]

NamePath = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=900,
        description="The upload name: its path below `uploads/` (e.g. `gsm8k/train.jsonl`).",
        examples=["gsm8k/train.jsonl"],
    ),
]
UploadIdPath = Annotated[str, PathParam(min_length=1, max_length=1024, description="The upload id.")]
KeyQuery = Annotated[
    str,
    Query(min_length=9, max_length=1024, description="The key the start answered: `uploads/<name>`."),
]
PartNumberPath = Annotated[int, PathParam(ge=1, le=10_000, description="1 to 10,000.")]


def _storage():
    """The staging root (Variable ``staging_root`` as the API server sees it), opened by
    :func:`dataset_ops.settings.staging_root`."""
    from dataset_ops import settings

    return settings.staging_root().open()


#: The service's exceptions as HTTP statuses.
_STATUSES = {service.BadRequest: 400, service.UploadNotFound: 404, service.UploadConflict: 409}


def _call(func, *args, **kwargs):
    """``func(*args, **kwargs)`` with the service's exceptions as HTTP answers (:data:`_STATUSES`)."""
    return with_statuses(_STATUSES, func, *args, **kwargs)


# --- models -------------------------------------------------------------------------------------
def _decimal_text(value: Any) -> Any:
    """Uppy's Companion client sends every metadata value as text (S3 object metadata is text):
    ``"268435456"`` becomes the integer; anything else is left to the strict check."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value)
    return value


def _json_object_text(value: Any) -> Any:
    """The same for ``rules``: a JSON object sent as text is parsed; anything else is left."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, dict) else value
    return value


class UploadMetadata(BaseModel):
    """``metadata`` of the start request (Uppy sends the file's meta fields it was told to allow;
    other fields such as `name`, `type` or `relativePath` are accepted and ignored). Uppy's
    Companion client sends the values as text, so `size` may be a string of digits and `rules` a
    JSON object as text; otherwise strict (no `"1e3"` for a size)."""

    model_config = ConfigDict(extra="allow", strict=True)

    data_type: str = Field(
        min_length=1, max_length=100, description="A rule set (see `GET /staging/rule-sets`) or `custom`."
    )
    size: Annotated[JsonInt, BeforeValidator(_decimal_text)] = Field(
        ge=1, le=5 << 40, description="The file's size in bytes (1 B to 5 TiB), a number or its digits."
    )
    description: str = Field("", max_length=2000, description="Free text kept with the file.")
    rules: Annotated[dict[str, Any] | None, BeforeValidator(_json_object_text)] = Field(
        None,
        description="With `data_type: custom`: the rules, as in `include/validation/*.yaml` (an "
        "object, or that object as JSON text).",
    )


class StartUpload(BaseModel):
    """Body of ``POST /staging/s3/multipart`` (the Companion protocol's fields)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    filename: str = Field(
        min_length=1, max_length=900, description="The upload name (a path below `uploads/`)."
    )
    type: str | None = Field(None, max_length=255, description="The file's MIME type (not used).")
    metadata: UploadMetadata


class StartedUpload(BaseModel):
    """What a client needs to send the parts."""

    uploadId: str
    key: str = Field(description="`uploads/<name>`: pass it back as `?key=`.")
    name: str
    part_size: int = Field(description="Advised part size in bytes (every part but the last >= 5 MiB).")
    part_count: int
    bucket: str | None = None


class SignedPart(BaseModel):
    url: str = Field(description="`PUT` the part's bytes here; the answer's `ETag` header names the part.")
    expires_in: int = Field(description="Seconds the URL stays valid.")


class Part(BaseModel):
    model_config = ConfigDict(extra="allow")

    PartNumber: JsonInt = Field(ge=1, le=10_000)
    ETag: str = Field(min_length=1, max_length=200)


class StoredPart(Part):
    Size: int = Field(description="Bytes.")


class CompleteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parts: list[Part] = Field(min_length=1, max_length=10_000, description="Every part, numbered 1..N.")


class Completed(BaseModel):
    """The completed upload, and the validation run started for it (None when it could not be
    started: the five-minute schedule then takes the file; `validation_error` says why)."""

    location: str
    key: str
    name: str
    status: str
    size: int | None
    validation_run: TriggeredRun | None
    validation_error: str | None


class PartWritten(BaseModel):
    ETag: str
    Size: int


class StagedFile(BaseModel):
    """One name in `staged-files` (the old service's `file_id`, `original_name`, `status`, `file_size`)."""

    file_id: str
    name: str
    original_name: str
    status: str
    file_size: int | None
    data_type: str | None
    description: str | None
    version: int | None
    key: str | None
    records: int | None
    errors: int | None
    error_summary: str | None
    duplicate_of: str | None
    started_at: str
    updated_at: str
    versions: int = Field(description="Kept files of the name (fresh/ and failed/).")


class StagedFiles(BaseModel):
    files: list[StagedFile]
    total_files: int


class FileInfo(StagedFile):
    record: dict[str, Any] = Field(description="The whole status record (`_status/<name>.json`).")
    report: dict[str, Any] | None = Field(
        description="The latest quarantined version's report: `errors` [{line, offset, reason}], "
        "`errors_found`."
    )


class Progress(BaseModel):
    file_id: str
    status: str
    progress: float = Field(description="Percent, 0 to 100.")
    bytes_uploaded: int
    file_size: int | None
    chunk_count: int
    parts_uploaded: int
    error: str | None


class RuleOverrides(BaseModel):
    """Rule settings replacing the rule set's for one run (top-level keys of a rule set, e.g.
    `{"min_records": 1, "max_errors": 1000}`; the old service's `max_file_size`, `allowed_formats`,
    `min_records` are such keys)."""

    model_config = ConfigDict(extra="allow")


class RetryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str | None = Field(
        None, max_length=900, description="Which quarantined file (`x.v2.jsonl`); default the latest."
    )
    rule_overrides: dict[str, Any] = Field(default_factory=dict, description="Relaxed rules for this try.")


class CleanupResult(BaseModel):
    cleaned: int
    failed: list[str]
    incomplete_uploads: list[str]
    abandoned_records: list[str]
    hours_old: float
    dry_run: bool


class Health(BaseModel):
    status: Literal["healthy", "unhealthy"]
    storage: str
    error: str | None
    active_uploads: int | None
    failed_uploads: int | None
    total_files: int | None


class RuleSetInfo(BaseModel):
    name: str
    description: str
    rules: dict[str, Any]


class RuleSets(BaseModel):
    rule_sets: list[RuleSetInfo]


router = APIRouter(prefix=PREFIX, tags=["Staged uploads"])


# --- uploading (the Companion S3 multipart protocol) ------------------------------------------------
def _validation_run(name: str, user) -> tuple[dict | None, str | None]:
    """Start a run of the validation DAG for ``name``; (run, None) or (None, why not)."""
    try:
        return trigger_dag_run(DAG_ID, {"names": [name]}, user, "validate_upload", name=name), None
    except HTTPException as exc:
        log.warning("%s: no validation run started (%s); the schedule will take it", name, exc.detail)
        return None, str(exc.detail)
    except Exception as exc:  # the upload is complete and recorded: say why, the schedule takes it
        log.exception("%s: starting the validation run failed; the schedule will take it", name)
        return None, f"{type(exc).__name__}: {exc}"[:500]


@router.post("/s3/multipart", responses={**_ERRORS, **_400, **_409})
def start_upload(body: StartUpload, user: TriggerDep) -> StartedUpload:
    """Start an upload of `filename` (the upload name) with `metadata.data_type`, `metadata.size`
    (bytes) and optionally `metadata.description` and, for `custom`, `metadata.rules`. Answers
    `{"uploadId", "key", "name", "part_size", "part_count", "bucket"}`. Errors: 400 a bad name,
    unknown data type, bad rules, a size above the rule set's `max_file_size`; 409 a file of that
    name still waits for validation, or another upload of it is in progress."""
    meta = body.metadata
    answer = _call(
        service.start_upload,
        _storage(),
        body.filename,
        meta.data_type,
        meta.size,
        description=meta.description,
        rules=meta.rules,
        user=user.get_name(),
    )
    audited("start_upload", user, DAG_ID, name=answer["name"], upload_id=answer["uploadId"], size=meta.size)
    return answer


@router.get("/s3/multipart/{upload_id}/{part_number}", responses={**_ERRORS, **_400, **_404, **_409})
def sign_part(
    request: Request, upload_id: UploadIdPath, part_number: PartNumberPath, key: KeyQuery, user: TriggerDep
) -> SignedPart:
    """Where to `PUT` part `part_number`: a presigned S3 URL (valid an hour), or on a local
    staging root the API's `PUT /staging/parts/{upload_id}/{part_number}?key=`."""
    local = str(
        request.url_for("put_part", upload_id=upload_id, part_number=part_number).include_query_params(
            key=key
        )
    )
    return _call(service.sign_part, _storage(), upload_id, key, part_number, local)


@router.get("/s3/multipart/{upload_id}", responses={**_ERRORS, **_400, **_404, **_409})
def list_parts(upload_id: UploadIdPath, key: KeyQuery, user: TriggerDep) -> list[StoredPart]:
    """The parts the storage holds for the upload, `[{"PartNumber", "ETag", "Size"}]`: a resumed
    upload sends only the others."""
    return _call(service.list_parts, _storage(), upload_id, key)


@router.post("/s3/multipart/{upload_id}/complete", responses={**_ERRORS, **_400, **_404, **_409})
def complete_upload(
    upload_id: UploadIdPath, key: KeyQuery, body: CompleteBody, user: TriggerDep
) -> Completed:
    """Complete the upload from its parts and start a validation run for it at once. The file
    appears in `uploads/` whole or not at all, and never replaces one waiting there (409)."""
    storage = _storage()
    done = _call(service.complete_upload, storage, upload_id, key, [p.model_dump() for p in body.parts])
    audited("complete_upload", user, DAG_ID, name=done.name, upload_id=upload_id, size=done.size)
    run, why = _validation_run(done.name, user)
    return {
        "location": storage.uri(key),
        "key": key,
        "name": done.name,
        "status": done.state,
        "size": done.size,
        "validation_run": run,
        "validation_error": why,
    }


@router.delete("/s3/multipart/{upload_id}", responses={**_ERRORS, **_400, **_404, **_409})
def abort_upload(upload_id: UploadIdPath, key: KeyQuery, user: TriggerDep) -> dict[str, Any]:
    """Abort the upload: its parts are deleted; the name's record goes back to its last kept file."""
    left = _call(service.abort_upload, _storage(), upload_id, key)
    audited("abort_upload", user, DAG_ID, key=key, upload_id=upload_id)
    return {"aborted": True, "upload_id": upload_id, "key": key, "status": left.state if left else None}


@router.put(
    "/parts/{upload_id}/{part_number}",
    responses={**_ERRORS, **_400, **_404, **_409},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def put_part(
    request: Request, upload_id: UploadIdPath, part_number: PartNumberPath, key: KeyQuery, user: TriggerDep
) -> Response:
    """A part of an upload to a local staging root, streamed to disk (1 MiB buffered at a time).
    The answer's `ETag` header (md5 of the part) is what `complete` wants; on S3 roots, 400 (parts
    go to the presigned S3 URL)."""
    writer = await run_in_threadpool(_call, service.open_local_part, _storage(), upload_id, key, part_number)
    buffer = bytearray()
    try:
        async for chunk in request.stream():
            buffer += chunk
            if len(buffer) >= service.WRITE_BLOCK:
                await run_in_threadpool(_call, writer.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await run_in_threadpool(_call, writer.write, bytes(buffer))
        etag = await run_in_threadpool(writer.finish)
    except BaseException:
        await run_in_threadpool(writer.discard)
        raise
    return Response(
        content=PartWritten(ETag=f'"{etag}"', Size=writer.size).model_dump_json(),
        media_type="application/json",
        headers={"ETag": f'"{etag}"'},
    )


# --- files ----------------------------------------------------------------------------------------
@router.get("/staged-files", responses={**_ERRORS, **_400})
def staged_files(
    user: ReaderDep,
    status_filter: Annotated[
        Literal["uploading", "uploaded", "validating", "fresh", "failed"] | None,
        Query(alias="status", description="Only names in this state."),
    ] = None,
) -> StagedFiles:
    """Every staged name (one status record each), by name, optionally in one state."""
    return _call(service.staged_files, _storage(), status_filter)


@router.get("/file-info/{name:path}", responses={**_ERRORS, **_400, **_404})
def file_info(name: NamePath, user: ReaderDep) -> FileInfo:
    """One name: its listing entry, whole status record (every kept version) and the error report
    of its latest quarantined file (`errors`: line, byte offset, reason)."""
    return _call(service.file_info, _storage(), name)


@router.get("/upload-progress/{name:path}", responses={**_ERRORS, **_400, **_404})
def upload_progress(name: NamePath, user: ReaderDep) -> Progress:
    """How far the upload of `name` is (the parts the storage holds), then its state."""
    return _call(service.upload_progress, _storage(), name)


@router.get(
    "/download-file/{name:path}",
    responses={
        **_ERRORS,
        **_400,
        **_404,
        200: {"content": {"application/octet-stream": {}}, "description": "The file (local staging root)"},
        307: {"description": "Redirect to a presigned S3 URL of the file (S3 staging root)"},
    },
    response_class=Response,
)
def download_file(
    name: NamePath,
    user: ReaderDep,
    version: Annotated[
        int | None, Query(ge=1, le=1_000_000, description="A kept version; default the latest fresh one.")
    ] = None,
    folder: Annotated[
        Literal["fresh", "failed"] | None, Query(description="Where the version is kept.")
    ] = None,
) -> Response:
    """A kept file of `name`: by default its latest validated (fresh) version. On S3 a redirect to a
    presigned URL (the bytes never pass through the API server); on a local root the file itself."""
    storage = _storage()
    target = _call(service.download_target, storage, name, version, folder)
    if service.is_s3(storage):
        return RedirectResponse(service.presigned_download(storage, target), status_code=307)
    return FileResponse(
        storage.path(target.key), filename=target.filename, media_type="application/octet-stream"
    )


@router.post("/process-file/{name:path}", responses={**_ERRORS, **_400, **_404})
def process_file(
    name: NamePath, user: TriggerDep, rules: Annotated[RuleOverrides | None, Body()] = None
) -> TriggeredRun:
    """Validate the file `name` waiting in `uploads/` now, with these rule overrides for this run
    (e.g. `{"max_file_size": 1000000000, "allowed_formats": ["jsonl", "csv"], "min_records": 100}`).
    Answers the DAG run. Errors: 404 no such file waiting; 400 an override the rules refuse."""
    storage = _storage()
    overrides = rules.model_dump() if rules else {}
    status_record = _call(service.require_status, storage, name)
    if not storage.exists(service.upload_key(name)):
        raise HTTPException(404, f"{name} is not waiting in uploads/ (state {status_record.state})")
    _call(service.check_rules, status_record.data_type or "", status_record.rules, overrides)
    return trigger_dag_run(
        DAG_ID, {"names": [name], "rule_overrides": overrides}, user, "process_file", name=name
    )


@router.post("/retry-failed-file/{name:path}", responses={**_ERRORS, **_400, **_404})
def retry_failed_file(name: NamePath, user: TriggerDep, body: RetryBody | None = None) -> TriggeredRun:
    """Validate a quarantined file of `name` again (by default its latest), with the same or relaxed
    rules (`rule_overrides`). Answers the DAG run. Errors: 404 the name has no quarantined file."""
    from dataset_ops.staging.status import FAILED

    body = body or RetryBody()
    storage = _storage()
    record = _call(service.require_status, storage, name)
    failed = [v["key"] for v in record.versions if v.get("state") == FAILED]
    if record.state == UploadState.FAILED and record.key and record.key not in failed:
        failed.append(record.key)
    file = f"{FAILED}/{body.file}" if body.file else (failed[-1] if failed else None)
    if file is None or file not in failed or not storage.exists(file):
        raise HTTPException(404, f"{name} has no quarantined file {body.file or ''}".rstrip())
    _call(service.check_rules, record.data_type or "", record.rules, body.rule_overrides)
    return trigger_dag_run(
        DAG_ID,
        {"retry_failed": [file[len(FAILED) + 1 :]], "rule_overrides": body.rule_overrides},
        user,
        "retry_failed_file",
        name=name,
    )


@router.delete("/cleanup-failed-uploads", responses=_ERRORS)
def cleanup_failed_uploads(
    user: EditorDep,
    hours_old: Annotated[
        float, Query(ge=0, le=24 * 36500, allow_inf_nan=False, description="Age in hours.")
    ] = 24,
    dry_run: Annotated[bool, Query(description="Only report what would go.")] = False,
) -> CleanupResult:
    """Remove quarantined files (with their reports) and abandoned uploads older than `hours_old`."""
    result = service.cleanup_uploads(_storage(), hours_old, dry_run)
    if not dry_run:
        audited("cleanup_failed_uploads", user, DAG_ID, hours_old=hours_old, cleaned=result["cleaned"])
    return result


@router.get("/health", responses=_ERRORS)
def health(user: ReaderDep) -> Health:
    """Whether the staging root answers, and the counts the old service's health check gave."""
    return service.health(_storage())


@router.get(
    "/metrics",
    responses={**_ERRORS, 200: {"content": {"application/json": {}, "text/plain": {}}}},
)
def metrics(
    user: ReaderDep,
    format: Annotated[
        Literal["json", "prometheus"], Query(description="`prometheus`: text format 0.0.4.")
    ] = "json",
) -> Any:
    """Counts and bytes by state, kept versions, uploads and validations per hour, bytes per second."""
    figures = service.metrics(_storage())
    if format == "prometheus":
        return Response(
            service.prometheus_text(figures), media_type="text/plain; version=0.0.4; charset=utf-8"
        )
    return figures


@router.get("/rule-sets", responses=_ERRORS)
def rule_sets(user: ReaderDep) -> RuleSets:
    """The rule sets a file can be validated with (`data_type`), with their rules."""
    return {"rule_sets": service.rule_sets()}


# --- the page ---------------------------------------------------------------------------------------
def mount_page(app: FastAPI) -> None:
    """Serve the Uploads page's built files at ``/staging/ui/`` (no login needed for the files
    themselves: every API call they make is checked). Without a build, the page says how to make it."""
    from starlette.staticfiles import StaticFiles

    if (PAGE_DIR / "index.html").is_file():
        app.mount(f"{PREFIX}/ui", StaticFiles(directory=PAGE_DIR, html=True), name="staging-ui")
        return

    @app.get(f"{PREFIX}/ui/", include_in_schema=False)
    def page_not_built() -> HTMLResponse:
        return HTMLResponse(
            "<h1>The Uploads page is not built</h1><p>Run <code>make install</code> "
            "(it builds <code>ui/uploads</code> into <code>plugins/dataset_ops/staging/webui</code>).</p>",
            status_code=503,
        )
