"""Task bodies of the IMDb DAGs, importable and testable without a scheduler.

The DAG files only wire these together. Connections: ``imdb_postgres`` (target database).
The DAG tasks resolve the storage (Variable ``dataset_ops_storage_root``) and the download host
(Param ``base_url``, Variable ``imdb_base_url``) through :mod:`dataset_ops.settings` and pass them in.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from dataset_ops.errors import is_permanent
from dataset_ops.imdb import load as loader
from dataset_ops.imdb.datasets import imdb_file
from dataset_ops.imdb.download import (
    DownloadResult,
    download_file,
    http_session,
    raw_key,
    read_raw_manifest,
    stored_dump,
)
from dataset_ops.storage import Storage

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

IMDB_CONN_ID = "imdb_postgres"


def connect(conn_id: str = IMDB_CONN_ID) -> psycopg.Connection:
    """An autocommit psycopg 3 connection from the Airflow Connection ``conn_id``."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = PostgresHook(postgres_conn_id=conn_id).get_conn()
    conn.autocommit = True
    return conn


def download(
    name: str,
    base_url: str,
    storage: Storage,
    *,
    read_timeout: float = 60.0,
    retries: int = 5,
    backoff_factor: float = 2.0,
    producer: dict | None = None,
) -> DownloadResult:
    """Download one dump (see :func:`dataset_ops.imdb.download.download_file`)."""
    session = http_session(retries=retries, backoff_factor=backoff_factor)
    return download_file(
        imdb_file(name),
        base_url,
        storage,
        session=session,
        read_timeout=read_timeout,
        producer=producer,
    )


def plan_load(conn: psycopg.Connection, storage: Storage, files: list[str], force: bool) -> list[dict]:
    """Which downloaded dumps need loading.

    What was downloaded comes from the manifest ``imdb/raw/_manifest.json`` (or, for dumps of
    earlier versions, their ``<file>.json``; see
    :func:`~dataset_ops.imdb.download.read_raw_manifest`). A dump is loaded when its stored
    sha256 differs from the last published load, when its published table is missing or empty
    although it was published (an UNLOGGED table after a crash), or when ``force`` is set.

    :param files: IMDb names to consider.
    :param force: load even if the same content was published before.
    :returns: one dict per file to load: ``file``, ``key``, ``etag``, ``sha256``, ``rows``,
        ``bytes``.
    """
    loader.ensure_schemas(conn)
    raw = read_raw_manifest(storage)
    plan = []
    for name in files:
        spec = imdb_file(name)
        manifest = stored_dump(raw, spec)
        if manifest is None:
            log.warning(
                "%s: not downloaded yet (not in the manifest of %s); run imdb_download first",
                name,
                storage.uri(raw_key(spec).rsplit("/", 1)[0]),
            )
            continue
        last = loader.last_published(conn, spec.name)
        if not force and last is not None and last["sha256"] == manifest["sha256"]:
            if not (last["rows"] and loader.published_table_is_empty(conn, spec)):
                log.info(
                    "%s: already published (sha256 %s, %s rows); skipping",
                    name,
                    manifest["sha256"][:12],
                    f"{last['rows']:,}",
                )
                continue
            log.warning(
                "%s: published before with %s rows but imdb.%s is now missing or empty "
                "(an UNLOGGED table after a crash?); reloading",
                name,
                f"{last['rows']:,}",
                spec.table,
            )
        plan.append(
            {
                "file": spec.name,
                "key": raw_key(spec),
                "etag": manifest.get("etag"),
                "sha256": manifest["sha256"],
                "rows": manifest.get("rows"),
                "bytes": manifest.get("bytes"),
            }
        )
    log.info("files to load: %s", [p["file"] for p in plan] or "none")
    return plan


def stage(
    conn: psycopg.Connection,
    storage: Storage,
    item: dict,
    dag_run_id: str | None = None,
    logged: bool = False,
    final_try: bool = True,
    streams: int | None = None,
) -> dict:
    """COPY one planned dump into its staging table; records ``failed`` history on error.

    One failed load is one ``failed`` row in ``imdb.load_history``: it is written when the
    error is permanent (:func:`dataset_ops.errors.is_permanent`: bad data, the task is not
    retried) or when this is the task's last try; a transient error with retries left is only
    logged, and the retry writes the row if it fails too.

    :param item: one entry of :func:`plan_load`.
    :param dag_run_id: recorded in the history.
    :param logged: make the table LOGGED before publishing (see :mod:`dataset_ops.imdb.load`).
    :param final_try: no retry follows a failure of this try (in a task:
        ``ti.try_number > ti.max_tries``); outside Airflow, True.
    :param streams: COPY streams (1: serial; None: :func:`~dataset_ops.imdb.load.auto_streams`
        of the file's stored size ``item["bytes"]``); the extra connections are opened like
        ``conn`` (:func:`~dataset_ops.imdb.load.sibling_connector`).
    :returns: ``item`` plus the :class:`~dataset_ops.imdb.load.StageResult` fields.
    :raises: what :func:`dataset_ops.imdb.load.stage_file` raises.
    """
    spec = imdb_file(item["file"])
    started = time.monotonic()
    try:
        with storage.open_read(item["key"]) as fh:
            result = loader.stage_file(
                conn,
                spec,
                fh,
                total_bytes=item.get("bytes"),
                expected_rows=item.get("rows"),
                logged=logged,
                streams=streams,
            )
    except Exception as exc:
        if not (final_try or is_permanent(exc)):
            log.warning("%s: %s: %s; the task will be retried", spec.name, type(exc).__name__, exc)
            raise
        loader.record_history(
            conn,
            spec.name,
            "failed",
            etag=item.get("etag"),
            sha256=item.get("sha256"),
            bytes_=item.get("bytes"),
            seconds=round(time.monotonic() - started, 3),
            error=str(exc)[:2000],
            dag_run_id=dag_run_id,
        )
        raise
    log.info(
        "%s: staged %s rows in %.2f s (COPY %.2f s, %d stream%s)",
        spec.name,
        f"{result.rows:,}",
        result.total_seconds,
        result.copy_seconds,
        result.streams,
        "" if result.streams == 1 else "s",
    )
    return {**item, **result.to_dict()}


def publish(conn: psycopg.Connection, staged: list[dict], dag_run_id: str | None = None) -> list[dict]:
    """Swap all staged tables into ``imdb`` in one transaction; returns table/rows per file."""
    if not staged:
        log.info("nothing staged; the published tables stay as they are")
        return []
    loader.publish(conn, staged, dag_run_id=dag_run_id)
    summary = [
        {"table": f"{loader.PUBLISHED_SCHEMA}.{s['table']}", "rows": s["rows"], "seconds": s["total_seconds"]}
        for s in staged
    ]
    for row in summary:
        log.info("published %(table)s: %(rows)s rows (%(seconds)s s)", row)
    return summary
