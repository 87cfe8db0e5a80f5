"""The IMDb read API on its own: uvicorn serving :mod:`dataset_ops.imdb.api`'s routes at
``/imdb/...``, so read traffic need not share Airflow's API server.

Run::

    python -m dataset_ops.imdb.api_server --host 127.0.0.1 --port 8090 --workers 2

Configuration comes from the environment, as for every Airflow component:

* ``AIRFLOW_CONN_IMDB_POSTGRES``: the database, as the Airflow Connection ``imdb_postgres``
  (a URI such as ``postgresql://user:password@host:5432/imdb`` or Airflow's JSON form).
* Authentication: every ``/imdb`` route needs ``Authorization: Bearer <JWT>`` with a token that
  Airflow's API server issued (``POST /auth/token``), validated by Airflow's own
  ``airflow.api_fastapi.auth.tokens.JWTValidator`` with Airflow's settings: the key
  (``AIRFLOW__API_AUTH__JWT_SECRET``, or ``[api_auth] jwt_private_key_path`` /
  ``trusted_jwks_url``), ``[api_auth] jwt_audience`` (default ``apache-airflow``),
  ``jwt_issuer``, ``jwt_leeway``, ``jwt_algorithm``. So no second user store: whoever can log in
  to Airflow can read here. Answers as Airflow's: 401 without a token or with an expired one,
  403 for any other invalid token. Two differences with the mounted routes: there is no per-DAG
  permission check (a valid token of any role reads), and token revocation (Airflow's logout,
  kept in its metadata database) is not seen; tokens stay valid until they expire
  (``[api_auth] jwt_expiration_time``).

``GET /health`` (no token) answers ``{"status": "ok"}`` when the database answers, else 503.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from dataset_ops.api.common import ErrorMessage, http_error, validation_error
from dataset_ops.imdb import api

log = logging.getLogger(__name__)

#: The environment variable holding the Connection ``imdb_postgres`` (URI or JSON).
CONN_ENV = f"AIRFLOW_CONN_{api.IMDB_CONN_ID.upper()}"
#: Connections per worker process (``--pool-size`` sets it for the workers).
POOL_SIZE_ENV = "DATASET_OPS_IMDB_API_POOL_SIZE"
DEFAULT_POOL_SIZE = 4
DEFAULT_PORT = 8090
#: Validated tokens remembered per process, and for how long (seconds; never past ``exp``).
TOKEN_CACHE_SIZE = 1024
TOKEN_CACHE_SECONDS = 60.0

_bearer = HTTPBearer(auto_error=False, description="A JWT issued by Airflow's API server (POST /auth/token).")


class ConfigurationError(RuntimeError):
    """The server cannot start: a setting is missing or wrong (the message names it)."""


def env_connection_kwargs() -> dict[str, Any]:
    """psycopg connection arguments of the Connection in :data:`CONN_ENV` (Airflow's URI or JSON
    form, read with ``airflow.sdk.Connection.from_uri`` / ``from_json``).

    :raises ConfigurationError: the variable is not set or cannot be read.
    """
    from airflow.sdk import Connection

    value = os.environ.get(CONN_ENV, "").strip()
    if not value:
        raise ConfigurationError(
            f"{CONN_ENV} is not set: give the IMDb database as an Airflow Connection URI"
        )
    try:
        if value.startswith("{"):
            conn = Connection.from_json(value, conn_id=api.IMDB_CONN_ID)
        else:
            conn = Connection.from_uri(value, conn_id=api.IMDB_CONN_ID)
    except Exception as exc:
        raise ConfigurationError(f"{CONN_ENV} is not a Connection URI or JSON: {type(exc).__name__}") from exc
    return api.connection_kwargs(conn)


def jwt_audience() -> str:
    """The audience Airflow's API server puts in its tokens: ``[api_auth] jwt_audience``, by
    default ``apache-airflow``."""
    from airflow.configuration import conf

    return conf.get("api_auth", "jwt_audience", fallback=None) or "apache-airflow"


def airflow_token_validator():
    """Airflow's ``JWTValidator`` set up as Airflow's auth managers set theirs up (key, audience,
    leeway; issuer and algorithm from ``[api_auth]``), except that no key is ever made up.

    :raises ConfigurationError: no key is configured (``AIRFLOW__API_AUTH__JWT_SECRET``, or a
        private key / JWKS URL).
    """
    from airflow.api_fastapi.auth.tokens import JWTValidator, get_sig_validation_args
    from airflow.configuration import conf

    try:
        key_args = get_sig_validation_args(make_secret_key_if_needed=False)
    except ValueError as exc:
        raise ConfigurationError(
            f"{exc}: set AIRFLOW__API_AUTH__JWT_SECRET to the secret of Airflow's API server"
        ) from exc
    return JWTValidator(**key_args, leeway=conf.getint("api_auth", "jwt_leeway"), audience=jwt_audience())


class AirflowTokenAuth:
    """A FastAPI dependency accepting Airflow-issued JWTs; returns the token's claims (``sub``
    is the user id).

    A validated token is remembered (at most :data:`TOKEN_CACHE_SIZE` of them, keyed by the whole
    token, signature included) for :data:`TOKEN_CACHE_SECONDS` and never past its ``exp``, so
    a client's repeated requests do not each pay for the signature check; a token that differs
    in any byte is validated in full.

    :param validator: an ``airflow.api_fastapi.auth.tokens.JWTValidator``; by default
        :func:`airflow_token_validator`, made on first use.
    """

    def __init__(self, validator=None):
        self._validator = validator
        self._valid: dict[str, tuple[dict[str, Any], float]] = {}

    @property
    def validator(self):
        """The validator (made now if needed; raises :class:`ConfigurationError`)."""
        if self._validator is None:
            self._validator = airflow_token_validator()
        return self._validator

    async def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> dict[str, Any]:
        import jwt

        if credentials is None or not credentials.credentials:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "Not authenticated", headers={"WWW-Authenticate": "Bearer"}
            )
        token = credentials.credentials
        now = time.time()
        known = self._valid.get(token)
        if known is not None and known[1] > now:
            return known[0]
        try:
            claims = await self.validator.avalidated_claims(token)
        except jwt.ExpiredSignatureError:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "Token Expired", headers={"WWW-Authenticate": "Bearer"}
            ) from None
        except (jwt.InvalidTokenError, ValueError):  # bad signature, audience, issuer, claims
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Invalid JWT token") from None
        if len(self._valid) >= TOKEN_CACHE_SIZE:
            self._valid.pop(next(iter(self._valid)))  # the oldest entry
        self._valid[token] = (claims, min(now + TOKEN_CACHE_SECONDS, float(claims["exp"])))
        return claims


def create_app(
    connection_kwargs: dict[str, Any] | None = None,
    *,
    pool_size: int | None = None,
    token_auth: AirflowTokenAuth | None = None,
) -> FastAPI:
    """The standalone app (a factory for ``uvicorn --factory``).

    :param connection_kwargs: psycopg connection arguments; default :func:`env_connection_kwargs`.
    :param pool_size: connections per process; default ``$DATASET_OPS_IMDB_API_POOL_SIZE`` or 4.
    :param token_auth: the authentication dependency; default :class:`AirflowTokenAuth` with
        Airflow's settings.
    :raises ConfigurationError: no database Connection, or no JWT key.
    """
    kwargs = connection_kwargs if connection_kwargs is not None else env_connection_kwargs()
    size = pool_size or int(os.environ.get(POOL_SIZE_ENV) or DEFAULT_POOL_SIZE)
    auth = token_auth or AirflowTokenAuth()
    auth.validator  # noqa: B018 (fail at start, not on the first request, without a key)
    db = api.ImdbDatabase(lambda: kwargs, pool_size=size, name="imdb-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            await db.open()
        except api.DatabaseUnavailable as exc:  # answer 503 until it is up; retried per request
            log.warning("IMDb API starting without its database: %s", exc)
        yield
        await db.close()

    app = FastAPI(
        title="dataset-ops IMDb API",
        description=api.API_DESCRIPTION
        + "\n\n**Authentication**: `Authorization: Bearer <JWT>`, a token issued by Airflow's API "
        "server (`POST /auth/token`). 401 without one or when it expired, 403 when it is invalid.",
        version="1",
        lifespan=lifespan,
    )
    auth_responses = {
        401: {"model": ErrorMessage, "description": "No token, or an expired one"},
        403: {"model": ErrorMessage, "description": "An invalid token"},
    }
    app.include_router(api.build_router(db, dependencies=[Depends(auth)], responses=auth_responses))

    @app.get("/health", responses={503: {"model": ErrorMessage}}, tags=["health"])
    async def health() -> Response:
        """``{"status": "ok"}`` when the database answers a query (no token needed)."""
        try:
            async with db.connection() as conn:
                await conn.execute("SELECT 1")
        except api.DatabaseUnavailable as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
        return Response(b'{"status":"ok"}', media_type="application/json")

    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    return app


def main(argv: list[str] | None = None) -> int:
    """Command line: check the configuration, then run uvicorn (uvloop, httptools) with
    ``--workers`` processes; returns the exit status (2 on a configuration error)."""
    parser = argparse.ArgumentParser(
        prog="python -m dataset_ops.imdb.api_server",
        description=f"Serve the read-only IMDb API. Database: {CONN_ENV}; tokens: Airflow's "
        "[api_auth] settings (AIRFLOW__API_AUTH__JWT_SECRET).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=DEFAULT_POOL_SIZE,
        help=f"database connections per worker (default {DEFAULT_POOL_SIZE})",
    )
    parser.add_argument("--no-access-log", action="store_true", help="do not log every request")
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    args = parser.parse_args(argv)
    try:
        env_connection_kwargs()
        airflow_token_validator()
    except ConfigurationError as exc:
        print(f"imdb api_server: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    os.environ[POOL_SIZE_ENV] = str(args.pool_size)
    uvicorn.run(
        "dataset_ops.imdb.api_server:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        access_log=not args.no_access_log,
        log_level=args.log_level,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
