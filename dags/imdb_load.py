"""
### IMDb load

Loads the downloaded IMDb dumps into PostgreSQL (Connection `imdb_postgres`), schema `imdb`.
Runs whenever `imdb_download` publishes a new version of any dump (Asset schedule), or manually.

1. `plan`: files whose stored sha256 differs from the last published load (Param `force` loads
   anyway).
2. `stage` (mapped per file, pool `imdb_postgres`): gunzip streams straight into `COPY` into an
   UNLOGGED table in `imdb_staging` (typed columns, `\\N` as NULL, arrays split); row counts are
   checked against the file; then primary key, indexes, `ANALYZE`. Tables stay UNLOGGED unless
   the Param `logged_tables` is on: they can be rebuilt from object storage, and `plan` reloads a
   table that a crash emptied. The Param `copy_streams` cuts each file at line boundaries into
   that many COPY streams loaded at once over as many connections (0: auto, from the file's
   size and the worker's CPUs, 1 on 2 CPUs; 1: one stream).
3. `publish`: one transaction swaps all staged tables into `imdb` and records
   `imdb.load_history`. Readers see the old generation or the new one, never a half-loaded table;
   a failed file publishes nothing.
4. `read_indexes`: what the IMDb read API's searches need on the published tables
   (`dataset_ops.imdb.queries.ensure_read_indexes`): the word index of the titles (rebuilt when
   `title_basics` was replaced), trigram, type, year, genre and episode indexes. Until it ends,
   title searches read the previous word index (docs/imdb-api.md).

Bad data (a wrong header, a row with too many or too few fields, invalid UTF-8, a value of the
wrong type, a duplicate key) fails `stage` after its first try, with the file, line and reason,
and one `failed` row in `imdb.load_history`; database failures that are not the data's fault are
retried, and only the last try records `failed`.

Columns keep IMDb's names (`tconst`, `primaryTitle`, ...), unquoted, so they read as written.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from dataset_ops.dag_defaults import DEFAULT_ARGS, START_DATE
from dataset_ops.imdb.assets import ANY_IMDB_RAW_UPDATE
from dataset_ops.imdb.datasets import files_param
from dataset_ops.imdb.load import MAX_STREAMS

IMDB_POOL = "imdb_postgres"


@dag(
    dag_id="imdb_load",
    schedule=ANY_IMDB_RAW_UPDATE,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["imdb", "postgres", "load"],
    doc_md=__doc__,
    params={
        "files": files_param("Which dumps to consider for loading."),
        "force": Param(
            False,
            type="boolean",
            title="Force",
            description="Reload files even when the same content is already published.",
        ),
        "logged_tables": Param(
            False,
            type="boolean",
            title="LOGGED tables",
            description=(
                "Publish LOGGED tables (crash-safe, replicated to standbys; the load writes them "
                "to WAL: measured 7-20% slower for title.ratings, 80% for title.basics, whose array "
                "columns need a rewrite; docs/imdb.md). Off: UNLOGGED tables, rebuilt from object "
                "storage by the next run if a crash empties them."
            ),
        ),
        "copy_streams": Param(
            0,
            type="integer",
            minimum=0,
            maximum=MAX_STREAMS,
            title="COPY streams",
            description=(
                "Parallel COPY: each file is cut at line boundaries into this many streams, loaded "
                "at once over as many database connections. 0 = auto: half the worker's CPUs (at "
                "most 4) for files of 16 MiB gzipped or more, else 1; on 2 CPUs that is 1, the "
                "fastest there (docs/imdb.md). 1 = one stream (COPY FREEZE, rows in file order)."
            ),
        ),
    },
)
def imdb_load():
    @task
    def plan(params=None) -> list[dict]:
        """Files with a new stored version (or all, with `force`)."""
        from dataset_ops import settings
        from dataset_ops.imdb.tasks import connect, plan_load

        with connect() as conn:
            return plan_load(conn, settings.storage(), params["files"], params["force"])

    @task(multiple_outputs=False, pool=IMDB_POOL, map_index_template="{{ imdb_file }}")
    def stage(item: dict, params=None, dag_run=None, ti=None) -> dict:
        """COPY one file into its staging table, then key, index and analyze it."""
        from dataset_ops import settings
        from dataset_ops.imdb.tasks import connect
        from dataset_ops.imdb.tasks import stage as stage_file

        get_current_context()["imdb_file"] = item["file"]
        with connect() as conn:
            return stage_file(
                conn,
                settings.storage(),
                item,
                dag_run.run_id,
                logged=params["logged_tables"],
                final_try=ti.try_number > ti.max_tries,
                streams=params["copy_streams"] or None,
            )

    @task
    def publish(staged: list[dict], dag_run=None) -> list[dict]:
        """Swap every staged table into `imdb` in one transaction."""
        from dataset_ops.imdb.tasks import connect
        from dataset_ops.imdb.tasks import publish as publish_tables

        with connect() as conn:
            return publish_tables(conn, list(staged), dag_run.run_id)

    @task
    def read_indexes(published: list[dict]) -> list[str]:
        """Build the read API's search indexes on the published tables (those missing)."""
        from dataset_ops.imdb.queries import ensure_read_indexes
        from dataset_ops.imdb.tasks import connect

        with connect() as conn:
            return ensure_read_indexes(conn)

    read_indexes(publish(stage.expand(item=plan())))


imdb_load()
