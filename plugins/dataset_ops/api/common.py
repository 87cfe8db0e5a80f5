"""What every router of the suite's API shares: Airflow's authentication and per-DAG permissions,
the error models and handlers, DAG-run triggering and the audit log.

Module import stays light (FastAPI and pydantic): every Airflow process, task runners included,
imports the plugin, so Airflow's API-server modules are imported inside the functions, on the
first request.
"""

from __future__ import annotations

import json
import logging
import math
from functools import cache
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordBearer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)

# The same two credential sources as Airflow's own ``get_user`` (OpenAPI shows the login form).
_oauth2 = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


class ErrorMessage(BaseModel):
    """An error answer with one message (400, 401, 403, 404, 405, 409, 413)."""

    detail: str = Field(description="What was wrong, naming the value.")


class FieldError(BaseModel):
    """One rejected part of a request (an entry of a 422's ``detail``)."""

    loc: list[str | int] = Field(description="Where: `body`, `path` or `query`, then the field.")
    msg: str = Field(description="Why, in words.")
    type: str = Field(description="The rule broken (pydantic's error type).")
    input: Any = Field(None, description="The rejected value (shortened; non-JSON values as text).")
    ctx: dict[str, Any] | None = Field(None, description="The rule's parameters (e.g. its bound).")


class ValidationErrors(BaseModel):
    """The 422 answer: every rejected field of the request."""

    detail: list[FieldError]


def error_responses(dag_id: str) -> dict[int, dict]:
    """The OpenAPI ``responses`` every route guarded by ``dag_id``'s permissions has: 401, 403, 422."""
    return {
        401: {"model": ErrorMessage, "description": "No token, or an expired one"},
        403: {
            "model": ErrorMessage,
            "description": f"The user may not do this on the DAG `{dag_id}` (or a bad token)",
        },
        422: {
            "model": ValidationErrors,
            "description": "The request does not match the schema (each bad field in `detail`)",
        },
    }


def requires_dag_access(dag_id: str, method: str, run_access: bool = False):
    """A dependency answering 401/403 through Airflow's security module, as
    ``Depends(requires_access_dag(method, access_entity, param_dag_id=dag_id))`` would, and
    returning the user (a ``BaseUser``). ``method``: ``GET`` to read, ``PUT`` to edit, ``POST``
    with ``run_access`` to create DAG runs (trigger). Credentials: ``Authorization: Bearer <JWT>``
    or the Airflow UI's ``_token`` cookie."""

    async def dependency(
        request: Request,
        token: Annotated[str | None, Depends(_oauth2)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Any:
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
        from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

        user = await get_user(request, _oauth_token=token, bearer_credentials=credentials)
        check = requires_access_dag(method, DagAccessEntity.RUN if run_access else None, param_dag_id=dag_id)
        await run_in_threadpool(check, request, user)  # may read the DAG's team from the DB
        return user

    return dependency


def with_statuses(statuses: dict[type[Exception], int], func, *args, **kwargs):
    """``func(*args, **kwargs)``, its exceptions of the classes in ``statuses`` answered as
    ``HTTPException(status, str(exc))`` (the first class that matches, in order). Anything else
    propagates: a 500, the server's fault."""
    try:
        return func(*args, **kwargs)
    except tuple(statuses) as exc:
        code = next(code for cls, code in statuses.items() if isinstance(exc, cls))
        raise HTTPException(code, str(exc)) from exc


def audit(session, event: str, user, dag_id: str, *, run_id: str | None = None, **extra) -> None:
    """One row ``dataset_ops.<event>`` in Airflow's audit log (Browse > Audit Log) for ``dag_id``;
    ``run_id`` is a DAG run id, ``extra`` is stored as JSON."""
    from airflow.models import Log

    session.add(
        Log(
            event=f"dataset_ops.{event}",
            owner=user.get_name(),
            owner_display_name=user.get_name(),
            dag_id=dag_id,
            run_id=run_id,
            extra=json.dumps(extra, default=str),
        )
    )


def audited(event: str, user, dag_id: str, **extra) -> None:
    """:func:`audit` in a session of its own."""
    from airflow.utils.session import create_session

    with create_session(scoped=False) as session:
        audit(session, event, user, dag_id, **extra)


def trigger_dag_run(dag_id: str, conf: dict, user, event: str, **audit_extra) -> dict:
    """Create a manual run of ``dag_id`` with ``conf``, as ``POST /api/v2/dags/{dag_id}/dagRuns``
    does (the DAG's Params validate the conf; no logical date; triggered by ``rest_api``; the
    caller as triggering user), and write ``dataset_ops.<event>`` to the audit log.

    :returns: the run as the core API shows it (Airflow's ``DAGRunResponse`` as JSON: ``dag_run_id``,
        ``state`` ``queued``, ``conf``, ...).
    :raises HTTPException: 404 the DAG is not in the metadata DB; 400 it has import errors, does not
        allow manual runs, or its Params reject ``conf``.
    """
    from airflow.api_fastapi.common.dagbag import get_latest_version_of_dag
    from airflow.api_fastapi.core_api.datamodels.dag_run import DAGRunResponse, TriggerDAGRunPostBody
    from airflow.exceptions import ParamValidationError
    from airflow.models import DagModel
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        dm = session.scalar(select(DagModel).where(~DagModel.is_stale, DagModel.dag_id == dag_id).limit(1))
        if not dm:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"Dag with dag_id: '{dag_id}' not found")
        if dm.allowed_run_types is not None and DagRunType.MANUAL not in dm.allowed_run_types:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"Dag with dag_id: '{dag_id}' does not allow manual runs"
            )
        if dm.has_import_errors:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                f"Dag with dag_id: '{dag_id}' has import errors and cannot be triggered",
            )
        dag = get_latest_version_of_dag(dag_bag(), dag_id, session)
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
        audit(session, event, user, dag_id, run_id=dag_run.run_id, conf=conf, **audit_extra)
    log.info("%s triggered %s run %s (conf %s)", user.get_name(), dag_id, answer["dag_run_id"], conf)
    return answer


@cache
def dag_bag():
    """One DB dag bag for the app, configured (cache size and TTL) like the API server's own."""
    from airflow.api_fastapi.common.dagbag import create_dag_bag

    return create_dag_bag()


def _whole_number(value: Any) -> Any:
    """JSON has one number type and JSON Schema counts ``30.0`` as the integer 30: such a float
    becomes an int; anything else (``30.5``, ``1e309``, NaN, ``"30"``, ``true``) is left for the
    strict ``int`` check to refuse."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: A JSON integer (``30`` or ``30.0``), strictly: no string, bool or fraction.
JsonInt = Annotated[int, BeforeValidator(_whole_number)]


class TriggeredRun(BaseModel):
    """A DAG run created by the API, as the core API shows it (Airflow's ``DAGRunResponse``; the
    fields below, and the rest of that model)."""

    model_config = ConfigDict(extra="allow")

    dag_run_id: str
    dag_id: str
    state: str
    logical_date: str | None
    run_after: str
    queued_at: str | None
    conf: dict[str, Any] | None
    run_type: str
    triggered_by: str | None
    triggering_user_name: str | None


#: Methods a route may be asked for that it does not have (405 with ``Allow``).
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


class MethodNotAllowed(HTTPException):
    """405 from a fixed path's catch-all route: its ``Allow`` is already exact."""


def not_allowed(*allowed: str):
    """An endpoint answering 405 with ``Allow: allowed``: registered on a fixed path for every
    other method, before a path with a parameter, so that the fixed path is never taken for a
    parameter value."""

    def method_not_allowed() -> None:
        raise MethodNotAllowed(status.HTTP_405_METHOD_NOT_ALLOWED, headers={"Allow": ", ".join(allowed)})

    return method_not_allowed


#: Longest rejected input echoed back in a 422 (characters of its text).
MAX_ECHOED_INPUT = 200


def json_safe(value: Any) -> Any:
    """``value`` as JSON can carry it: NaN and infinities, integers too long for text, bytes and
    other objects become (shortened) text, so describing a bad input never fails itself."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_ECHOED_INPUT else value[:MAX_ECHOED_INPUT] + "..."
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, int):  # str() of an int over 4300 digits raises ValueError
        return (
            value
            if abs(value) < 2**63
            else f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
        )
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value[:20]]
    if isinstance(value, dict):
        return {str(k)[:MAX_ECHOED_INPUT]: json_safe(v) for k, v in list(value.items())[:20]}
    text = repr(value)
    return text if len(text) <= MAX_ECHOED_INPUT else text[:MAX_ECHOED_INPUT] + "..."


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one entry per rejected field: FastAPI's answer, with the echoed input made
    JSON-safe (its own handler fails with a 500 on a NaN or a huge integer in the input)."""
    detail = []
    for error in exc.errors():
        entry = {
            "loc": [p if isinstance(p, int) else str(p) for p in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
            "input": json_safe(error.get("input")),
        }
        if error.get("ctx"):
            entry["ctx"] = {str(k): json_safe(v) for k, v in error["ctx"].items()}
        detail.append(entry)
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """HTTP errors as ``{"detail": ...}``; a 405 lists in ``Allow`` every method of the path
    (Starlette names only those of the first route that matched the path)."""
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED and not isinstance(exc, MethodNotAllowed):
        allowed = set()
        for route in request.app.router.routes:
            match, _ = route.matches(request.scope)
            if match != Match.NONE:
                allowed |= set(getattr(route, "methods", ()) or ())
        exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
    return await http_exception_handler(request, exc)
