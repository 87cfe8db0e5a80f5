"""The read-only IMDb API: a title with its rating, akas, crew, principals and episodes; a name
with its known-for titles; title and name search with keyset pagination.

One router, served two ways:

* in Airflow's API server, at ``/dataset-ops/imdb/...`` (the plugin app
  :func:`dataset_ops.api.app.create_app` includes :data:`router`), behind Airflow's login: read
  access to the DAG ``imdb_load`` (``dataset_ops.api.common.requires_dag_access``); the database
  is the Airflow Connection ``imdb_postgres``;
* on its own (:mod:`dataset_ops.imdb.api_server`, uvicorn), at ``/imdb/...``, so read traffic
  does not share the orchestrator; it accepts the same Airflow-issued JWTs.

The handlers are thin: :mod:`dataset_ops.imdb.queries` builds every answer, mostly in
PostgreSQL, and the answer's bytes are sent as they are (no response-model serialization; the
pydantic models below document the shapes in OpenAPI). Connections come from a psycopg 3
``AsyncConnectionPool`` (:class:`ImdbDatabase`), in autocommit mode with
``default_transaction_read_only=on`` and a ``statement_timeout``, so the API cannot write.

Errors: 422 a parameter that breaks its schema (pattern, bounds: FastAPI's answer, one entry per
field), 400 parameters that disagree or a bad cursor, 404 an unknown ``tconst``/``nconst``, 503
the database is unreachable, busy, not loaded yet, or a query ran past the statement timeout.

Module import stays light (FastAPI, pydantic, orjson): every Airflow process imports the plugin;
psycopg and Airflow's modules are imported on the first request.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, Field

from dataset_ops.api.common import ErrorMessage, error_responses, requires_dag_access
from dataset_ops.imdb import queries as q

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

#: The DAG whose read permission guards the routes in Airflow's API server.
DAG_ID = "imdb_load"
#: The Airflow Connection of the database ``imdb_load`` publishes into.
IMDB_CONN_ID = "imdb_postgres"
PREFIX = "/imdb"

#: Seconds a statement may run before PostgreSQL cancels it (503).
STATEMENT_TIMEOUT_S = 10.0
#: Seconds a request waits for a free pooled connection (then 503).
POOL_TIMEOUT_S = 10.0
#: Connections per process (per event loop) in Airflow's API server.
MOUNTED_POOL_SIZE = 4

API_DESCRIPTION = f"""\
Read-only access to the seven IMDb tables `imdb_load` publishes (schema `imdb`).

* `GET {PREFIX}/titles/{{tconst}}`: a title with its rating, akas, crew (names resolved),
  principals, the series it belongs to (`episodeOf`) and its first episodes
* `GET {PREFIX}/titles/{{tconst}}/episodes`: all episodes of a series, page by page
* `GET {PREFIX}/titles`: search by words (`q`: every word of it is a word of `primaryTitle` or
  `originalTitle`), `titleType`, `genre`, `startYearFrom`/`startYearTo`, sorted by `tconst` or
  `startYear`
* `GET {PREFIX}/names/{{nconst}}`: a name with its known-for titles
* `GET {PREFIX}/names`: search names by text (`q`, in `primaryName`)

Field names are IMDb's own (https://developer.imdb.com/non-commercial-datasets/).

**Pages**: lists answer `{{"items": [...], "next": cursor | null}}`. Pass `next` as `cursor`,
with the same other parameters, for the following page; `null` means the last page. `limit` is
1 to {q.MAX_LIMIT} (default {q.DEFAULT_LIMIT}). Pages are keyset pages (no offsets): rows with
equal sort keys come in id order, and walking all pages gives every row once.

**Errors**: 422 a parameter that breaks its rule (a `tconst` not `tt` + digits, a `limit` out
of range, a name search's `q` shorter than {q.MIN_QUERY_CHARS} characters); 400 a cursor that is not from the
same query, or `startYearFrom` after `startYearTo`; 404 an unknown id; 503 the database cannot
answer (not loaded yet, unreachable, busy, or the query took more than
{STATEMENT_TIMEOUT_S:g} s).
"""


# --- the database --------------------------------------------------------------------------------
def connection_kwargs(conn: Any) -> dict[str, Any]:
    """psycopg connection arguments for an Airflow Connection ``conn`` (host, port, login,
    password, schema as the database name, and the extras), mapped as the postgres provider's
    ``PostgresHook.get_conn`` maps them (extras it ignores, such as ``cursor`` or ``iam``, are
    left out; IAM tokens are not supported here)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    kwargs: dict[str, Any] = {
        "host": conn.host,
        "port": conn.port,
        "user": conn.login,
        "password": conn.password,
        "dbname": conn.schema,
    }
    for key, value in conn.extra_dejson.items():
        if key not in PostgresHook.ignored_extra_options:
            kwargs[key] = value
    return {k: v for k, v in kwargs.items() if v not in (None, "")}


def airflow_connection_kwargs(conn_id: str = IMDB_CONN_ID) -> dict[str, Any]:
    """:func:`connection_kwargs` of the Airflow Connection ``conn_id``, looked up as hooks do
    (``AIRFLOW_CONN_<ID>``, secrets backends, the metadata database).

    :raises airflow.exceptions.AirflowNotFoundException: no such Connection.
    """
    from airflow.sdk.bases.hook import BaseHook

    return connection_kwargs(BaseHook.get_connection(conn_id))


class DatabaseUnavailable(RuntimeError):
    """The database cannot answer now (HTTP 503): the message says why."""


class ImdbDatabase:
    """Pooled, read-only, autocommit psycopg 3 connections to the IMDb database.

    A pool is opened lazily, on the first request, for each event loop that asks (a pool belongs
    to the loop that opened it: Airflow's API server mounts the plugin app without running its
    lifespan, and test clients start loops of their own).

    :param kwargs_factory: returns the psycopg connection arguments (e.g.
        :func:`airflow_connection_kwargs`); called when a pool is opened.
    :param pool_size: connections per pool (opened at start, kept).
    :param statement_timeout_s: PostgreSQL cancels longer statements.
    :param pool_timeout_s: longest wait for a free connection.
    """

    def __init__(
        self,
        kwargs_factory: Callable[[], dict[str, Any]],
        *,
        pool_size: int = MOUNTED_POOL_SIZE,
        statement_timeout_s: float = STATEMENT_TIMEOUT_S,
        pool_timeout_s: float = POOL_TIMEOUT_S,
        name: str = "imdb-api",
    ):
        self.kwargs_factory = kwargs_factory
        self.pool_size = pool_size
        self.statement_timeout_s = statement_timeout_s
        self.pool_timeout_s = pool_timeout_s
        self.name = name
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool] = (
            weakref.WeakKeyDictionary()
        )

    def pool_kwargs(self) -> dict[str, Any]:
        """The connection arguments with the read-only session settings added to ``options``."""
        kwargs = dict(self.kwargs_factory())
        settings = (
            f"-c default_transaction_read_only=on -c statement_timeout={int(self.statement_timeout_s * 1000)}"
            f" -c application_name={self.name}"
        )
        kwargs["options"] = f"{kwargs['options']} {settings}" if kwargs.get("options") else settings
        kwargs["autocommit"] = True
        return kwargs

    async def open(self) -> AsyncConnectionPool:
        """The pool of the running event loop, opened now if needed (waits for its first
        connection, so a wrong database fails here with the reason).

        :raises DatabaseUnavailable: the Connection is missing or the server does not answer.
        """
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is not None:
            return pool
        from psycopg_pool import AsyncConnectionPool, PoolTimeout

        try:
            kwargs = self.pool_kwargs()
        except Exception as exc:  # AirflowNotFoundException, a malformed URI
            raise DatabaseUnavailable(f"the IMDb database is not configured: {exc}") from exc
        pool = AsyncConnectionPool(
            kwargs=kwargs,
            min_size=self.pool_size,
            max_size=self.pool_size,
            open=False,
            timeout=self.pool_timeout_s,
            name=self.name,
        )
        try:
            await pool.open(wait=True, timeout=self.pool_timeout_s)
        except PoolTimeout as exc:
            await pool.close()
            raise DatabaseUnavailable(
                f"the IMDb database does not answer (no connection within {self.pool_timeout_s:g} s)"
            ) from exc
        if self._pools.get(loop) is not None:  # another request of this loop got there first
            await pool.close()
            return self._pools[loop]
        self._pools[loop] = pool
        return pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection for one request; database failures become
        :class:`DatabaseUnavailable` (503) with the reason, never a 500.

        :raises DatabaseUnavailable: see :meth:`open`; no free connection within the pool timeout;
            the connection broke; the IMDb tables are missing; the statement timed out.
        """
        import psycopg
        from psycopg_pool import PoolTimeout

        pool = await self.open()
        try:
            async with pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise DatabaseUnavailable(
                f"the IMDb database is busy: no free connection within {self.pool_timeout_s:g} s"
            ) from exc
        except psycopg.errors.UndefinedTable as exc:
            missing = exc.diag.message_primary or ""
            if q.WORDS_TABLE in missing or q.WORD_COUNTS_TABLE in missing:
                raise DatabaseUnavailable(
                    f"the word index of the titles is not built yet ({missing}): it is built by "
                    "dataset_ops.imdb.queries.ensure_read_indexes after the DAG imdb_load publishes"
                ) from exc
            raise DatabaseUnavailable(
                f"the IMDb tables are not loaded yet ({missing}): run the DAG imdb_load"
            ) from exc
        except psycopg.errors.QueryCanceled as exc:
            raise DatabaseUnavailable(
                f"the query took longer than {self.statement_timeout_s:g} s and was cancelled: "
                "narrow the search (a longer q, a titleType, genre or year range)"
            ) from exc
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"the IMDb database failed: {type(exc).__name__}") from exc

    async def close(self) -> None:
        """Close the pool of the running event loop (the others close with their loops)."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()


# --- documented shapes ---------------------------------------------------------------------------
class Rating(BaseModel):
    averageRating: float = Field(description="Weighted average of the user ratings (1.0 to 10.0).")
    numVotes: int


class NameRef(BaseModel):
    nconst: str
    primaryName: str | None = Field(description="null when name.basics lacks the nconst.")


class Crew(BaseModel):
    directors: list[NameRef]
    writers: list[NameRef]


class Aka(BaseModel):
    ordering: int
    title: str | None
    region: str | None
    language: str | None
    types: list[str] | None
    attributes: list[str] | None
    isOriginalTitle: bool | None


class Principal(BaseModel):
    ordering: int
    nconst: str
    primaryName: str | None
    category: str | None
    job: str | None
    characters: str | None = Field(description='IMDb\'s text, a JSON-like list such as ["Self"].')


class EpisodeOf(BaseModel):
    parentTconst: str
    primaryTitle: str | None
    seasonNumber: int | None
    episodeNumber: int | None


class Episode(BaseModel):
    tconst: str
    seasonNumber: int | None
    episodeNumber: int | None
    primaryTitle: str | None
    startYear: int | None


class EpisodePage(BaseModel):
    """A page of episodes: by season, then episode number (unknown numbers last), then tconst."""

    items: list[Episode]
    next: str | None = Field(description="Cursor of the next page; null on the last page.")


class TitleEpisodes(EpisodePage):
    total: int = Field(description="Episodes of this title in title.episode (0 for a non-series).")


class TitleSummary(BaseModel):
    tconst: str
    titleType: str | None
    primaryTitle: str | None
    originalTitle: str | None
    isAdult: bool | None
    startYear: int | None
    endYear: int | None
    runtimeMinutes: int | None
    genres: list[str] | None
    rating: Rating | None


class Title(TitleSummary):
    """A title with everything the seven tables know about it."""

    akas: list[Aka]
    crew: Crew | None
    principals: list[Principal]
    episodeOf: EpisodeOf | None = Field(description="For an episode: its series.")
    episodes: TitleEpisodes = Field(
        description=f"For a series: the total and the first {q.DEFAULT_LIMIT} episodes; `next` continues "
        f"them at `{PREFIX}/titles/{{tconst}}/episodes?cursor=...`."
    )


class TitlePage(BaseModel):
    items: list[TitleSummary]
    next: str | None = Field(description="Cursor of the next page; null on the last page.")


class KnownFor(BaseModel):
    tconst: str
    titleType: str | None
    primaryTitle: str | None
    startYear: int | None


class Name(BaseModel):
    nconst: str
    primaryName: str | None
    birthYear: int | None
    deathYear: int | None
    primaryProfession: list[str] | None
    knownForTitles: list[KnownFor]


class NameSummary(BaseModel):
    nconst: str
    primaryName: str | None
    birthYear: int | None
    deathYear: int | None
    primaryProfession: list[str] | None
    knownForTitles: list[str] | None = Field(description="tconsts, in IMDb's order.")


class NamePage(BaseModel):
    items: list[NameSummary]
    next: str | None = Field(description="Cursor of the next page; null on the last page.")


# --- parameters ----------------------------------------------------------------------------------
TconstPath = Annotated[
    str,
    PathParam(
        pattern=q.TCONST_PATTERN,
        max_length=14,
        description="IMDb title id: tt + digits.",
        examples=["tt0000001"],
    ),
]
NconstPath = Annotated[
    str,
    PathParam(
        pattern=q.NCONST_PATTERN,
        max_length=14,
        description="IMDb name id: nm + digits.",
        examples=["nm0000001"],
    ),
]
Limit = Annotated[int, Query(ge=1, le=q.MAX_LIMIT, description=f"Rows per page, 1 to {q.MAX_LIMIT}.")]
Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=q.MAX_CURSOR_CHARS,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The `next` of the previous page (same other parameters).",
    ),
]
Text = Annotated[
    str | None,
    Query(
        alias="q",
        min_length=q.MIN_TITLE_QUERY_CHARS,
        max_length=q.MAX_QUERY_CHARS,
        description=f"Words to find ({q.MIN_TITLE_QUERY_CHARS} to {q.MAX_QUERY_CHARS} characters): "
        "titles of which every word of q is a whole word of primaryTitle or originalTitle, "
        "case-insensitively. A word is a run of letters and digits; anything else separates "
        "words (q=ain't looks for the words ain and t). A q without letters or digits finds nothing.",
    ),
]
Year = Annotated[int | None, Query(ge=q.MIN_YEAR, le=q.MAX_YEAR)]


def _json(body: bytes | None, what: str = "") -> Response:
    if body is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} is not in the IMDb tables")
    return Response(body, media_type="application/json")


async def _answer(db: ImdbDatabase, func, *args) -> bytes | None:
    """``func(conn, *args)`` on a pooled connection, with the query errors as 400 and the
    database's as 503."""
    try:
        async with db.connection() as conn:
            return await func(conn, *args)
    except (q.BadQuery, q.BadCursor) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    except DatabaseUnavailable as exc:
        log.warning("IMDb API: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc


def build_router(
    db: ImdbDatabase, dependencies: list | None = None, responses: dict | None = None
) -> APIRouter:
    """The IMDb routes under :data:`PREFIX` on ``db``.

    :param dependencies: run before every route (authentication, permissions).
    :param responses: extra OpenAPI responses of every route (401, 403, ...).
    """
    common = {
        **(responses or {}),
        400: {"model": ErrorMessage, "description": "A bad cursor, or startYearFrom after startYearTo"},
        503: {"model": ErrorMessage, "description": "The database cannot answer now (the reason)"},
    }
    not_found = {404: {"model": ErrorMessage, "description": "No such id in the IMDb tables"}}
    router = APIRouter(prefix=PREFIX, tags=["IMDb"], dependencies=dependencies or [], responses=common)

    @router.get("/titles", response_model=TitlePage, summary="Search titles")
    async def search_titles(
        text: Text = None,
        title_type: Annotated[
            str | None,
            Query(
                alias="titleType",
                pattern=q.WORD_PATTERN,
                description="movie, short, tvSeries, tvEpisode, tvMiniSeries, tvMovie, tvSpecial, "
                "tvShort, tvPilot, video, videoGame",
                examples=["movie"],
            ),
        ] = None,
        genre: Annotated[
            str | None,
            Query(
                pattern=q.WORD_PATTERN,
                description="One of the title's genres, as IMDb writes it.",
                examples=["Drama"],
            ),
        ] = None,
        start_year_from: Annotated[Year, Query(alias="startYearFrom")] = None,
        start_year_to: Annotated[Year, Query(alias="startYearTo")] = None,
        sort: Annotated[
            q.TitleSort, Query(description="tconst, or startYear (unknown years last, ties by tconst).")
        ] = "tconst",
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> Response:
        """Titles matching every filter given, one page at a time (no filter: all titles).

        ``{"items": [{"tconst", "titleType", "primaryTitle", "originalTitle", "isAdult",
        "startYear", "endYear", "runtimeMinutes", "genres", "rating": {"averageRating",
        "numVotes"} | null}], "next": cursor | null}``.
        """
        search = q.TitleSearch(text, title_type, genre, start_year_from, start_year_to, sort, limit, cursor)
        return _json(await _answer(db, q.search_titles, search))

    @router.get("/titles/{tconst}", response_model=Title, responses=not_found, summary="One title")
    async def get_title(tconst: TconstPath) -> Response:
        """A title with its rating, akas, crew (directors and writers with their names),
        principals (with names), the series it is an episode of, and its first episodes."""
        return _json(await _answer(db, q.fetch_title, tconst), f"title {tconst}")

    @router.get(
        "/titles/{tconst}/episodes",
        response_model=EpisodePage,
        responses=not_found,
        summary="A series' episodes",
    )
    async def get_episodes(
        tconst: TconstPath, limit: Limit = q.DEFAULT_LIMIT, cursor: Cursor = None
    ) -> Response:
        """The episodes of a series (title.episode ``parentTconst``), by season, then episode
        number (unknown numbers last), then tconst. A title without episodes has an empty page."""
        return _json(await _answer(db, q.list_episodes, tconst, limit, cursor), f"title {tconst}")

    @router.get("/names", response_model=NamePage, summary="Search names")
    async def search_names(
        text: Annotated[str, Query(alias="q", min_length=q.MIN_QUERY_CHARS, max_length=q.MAX_QUERY_CHARS)],
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> Response:
        """Names whose ``primaryName`` contains ``q`` (case-insensitively), in nconst order.

        ``{"items": [{"nconst", "primaryName", "birthYear", "deathYear", "primaryProfession",
        "knownForTitles": [tconst, ...]}], "next": cursor | null}``.
        """
        return _json(await _answer(db, q.search_names, q.NameSearch(text, limit, cursor)))

    @router.get("/names/{nconst}", response_model=Name, responses=not_found, summary="One name")
    async def get_name(nconst: NconstPath) -> Response:
        """A name with its professions and known-for titles (type, title and year resolved)."""
        return _json(await _answer(db, q.fetch_name, nconst), f"name {nconst}")

    return router


#: The database of the routes in Airflow's API server: the Connection ``imdb_postgres``.
MOUNTED_DB = ImdbDatabase(airflow_connection_kwargs, pool_size=MOUNTED_POOL_SIZE, name="imdb-api-airflow")

#: The routes as Airflow's API server serves them (:func:`dataset_ops.api.app.create_app`):
#: read access to the DAG ``imdb_load`` needed (401 without a token, 403 without the right).
router = build_router(
    MOUNTED_DB,
    dependencies=[Depends(requires_dag_access(DAG_ID, "GET"))],
    responses=error_responses(DAG_ID),
)
