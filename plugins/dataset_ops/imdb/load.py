"""Load IMDb dumps into PostgreSQL: gzip stream -> ``COPY`` -> staging table -> atomic publish.

Flow per file (:func:`stage_file`): the compressed stream is decompressed block by block and the
raw blocks go straight into ``COPY ... FROM STDIN`` (psycopg 3 ``cursor.copy``) into an UNLOGGED
table in the ``imdb_staging`` schema, created in the same transaction so ``COPY FREEZE`` applies.
No decompressed copy exists in memory or on disk. Then row counts are checked against the file,
the table gets its primary key and indexes and is ANALYZEd.

Durability: published tables stay UNLOGGED by default. Writing them to WAL (``SET LOGGED``)
costs about as much as the COPY itself, and the tables can always be rebuilt from the dumps kept
in object storage: after a crash PostgreSQL empties UNLOGGED tables, and the next ``imdb_load``
run sees the empty table and reloads it (:func:`dataset_ops.imdb.tasks.plan_load`). UNLOGGED
tables are not replicated to standbys; ``logged=True`` makes them LOGGED (crash-safe,
replicated) at that cost.
:func:`publish` then swaps any number of staged tables into the ``imdb`` schema in one
transaction: readers see the old generation or the new one, never a mix inside one table.

COPY options (PostgreSQL docs, "COPY"): ``FORMAT csv, DELIMITER E'\\t', NULL '\\N'`` with
``QUOTE E'\\b'``: IMDb fields can start with a double quote that never closes, so the quote
character is set to a byte that does not occur in the data; CSV mode also keeps backslashes as
data. Bytes are loaded exactly as in the file.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, BinaryIO

from dataset_ops.errors import InputError
from dataset_ops.imdb.datasets import ImdbFile, InvalidDump
from dataset_ops.progress import ProgressLog
from dataset_ops.streams import GunzipCounter, StreamFormatError, gunzip_blocks

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

PUBLISHED_SCHEMA = "imdb"
STAGING_SCHEMA = "imdb_staging"
HISTORY_TABLE = f"{PUBLISHED_SCHEMA}.load_history"
#: How long publish waits for readers of the old tables before failing (and being retried).
PUBLISH_LOCK_TIMEOUT = "60s"
COPY_OPTIONS = "FORMAT csv, DELIMITER E'\\t', NULL '\\N', QUOTE E'\\b', HEADER true, FREEZE true"


class ImdbLoadError(RuntimeError):
    """A file could not be loaded; the message names the file, the line (when known) and why.

    This class itself is transient (a lost connection, a lock timeout, the server out of
    space): the task is retried. Bad data raises :class:`BadDumpData`.
    """


class BadDumpData(InputError, ImdbLoadError):
    """The dump's content cannot be loaded as it is: PostgreSQL rejected a row (wrong field
    count, a value of the wrong type, invalid UTF-8: SQLSTATE class 22), keys are duplicated
    (class 23), or the row counts do not match. Permanent: the task fails after one try."""


#: SQLSTATE classes that mean the data is wrong, not the server (PostgreSQL docs, Appendix A):
#: 22 data exception (22P04 bad COPY format, 22021 invalid UTF-8, 22P02 bad value), 23
#: integrity constraint violation (23505 duplicate key).
_DATA_SQLSTATE_CLASSES = ("22", "23")


def _error_class(exc: Exception) -> type[ImdbLoadError]:
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return BadDumpData if sqlstate[:2] in _DATA_SQLSTATE_CLASSES else ImdbLoadError


@dataclass
class StageResult:
    """What :func:`stage_file` loaded (sizes in bytes, time in seconds)."""

    file: str
    table: str
    rows: int
    compressed_bytes: int
    decompressed_bytes: int
    copy_seconds: float
    total_seconds: float

    def to_dict(self) -> dict:
        """Plain dict for XCom."""
        return asdict(self)


def ensure_schemas(conn: psycopg.Connection) -> None:
    """Create the ``imdb`` and ``imdb_staging`` schemas and the load history table if missing."""
    with conn.transaction():
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {PUBLISHED_SCHEMA}")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {STAGING_SCHEMA}")
        conn.execute(
            f"""
            CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
              id bigserial PRIMARY KEY,
              file text NOT NULL,
              status text NOT NULL CHECK (status IN ('staged', 'published', 'failed')),
              etag text,
              sha256 text,
              rows bigint,
              bytes bigint,
              seconds double precision,
              error text,
              dag_run_id text,
              recorded_at timestamptz NOT NULL DEFAULT now()
            )"""
        )
        conn.execute(f"CREATE INDEX IF NOT EXISTS load_history_file_idx ON {HISTORY_TABLE} (file, id)")


def record_history(
    conn: psycopg.Connection,
    file: str,
    status: str,
    *,
    etag: str | None = None,
    sha256: str | None = None,
    rows: int | None = None,
    bytes_: int | None = None,
    seconds: float | None = None,
    error: str | None = None,
    dag_run_id: str | None = None,
) -> None:
    """Append one row to ``imdb.load_history`` (its own transaction unless one is open)."""
    with conn.transaction():
        conn.execute(
            f"INSERT INTO {HISTORY_TABLE} (file, status, etag, sha256, rows, bytes, seconds, "
            "error, dag_run_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (file, status, etag, sha256, rows, bytes_, seconds, error, dag_run_id),
        )


def published_table_is_empty(conn: psycopg.Connection, spec: ImdbFile) -> bool:
    """True if ``imdb.<table>`` is missing or has no rows (e.g. an UNLOGGED table after a crash)."""
    table = f"{PUBLISHED_SCHEMA}.{spec.table}"
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        return True
    return conn.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {table})").fetchone()[0]


def last_published(conn: psycopg.Connection, file: str) -> dict | None:
    """The latest ``published`` history row of ``file`` as a dict, or None."""
    cur = conn.execute(
        f"SELECT etag, sha256, rows, recorded_at FROM {HISTORY_TABLE} "
        "WHERE file = %s AND status = 'published' ORDER BY id DESC LIMIT 1",
        (file,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip(("etag", "sha256", "rows", "recorded_at"), row, strict=True))


_LINE_RE = re.compile(r"\bline (\d+)")


def _copy_error(spec: ImdbFile, exc: Exception) -> ImdbLoadError:
    """Turn a PostgreSQL COPY error into one naming the file, the line and the reason
    (:class:`BadDumpData` when the data is at fault, else :class:`ImdbLoadError`)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) or str(exc).splitlines()[0]
    context = getattr(diag, "context", None) or ""
    match = _LINE_RE.search(context)
    line = f"line {match.group(1)}: " if match else ""
    detail = context.strip().splitlines()[0] if context else ""
    return _error_class(exc)(
        f"{spec.file_name}: {line}{primary} ({detail})" if detail else f"{spec.file_name}: {line}{primary}"
    )


def stage_file(
    conn: psycopg.Connection,
    spec: ImdbFile,
    fileobj: BinaryIO,
    *,
    total_bytes: int | None = None,
    expected_rows: int | None = None,
    logged: bool = False,
) -> StageResult:
    """COPY one gzipped IMDb file into ``imdb_staging.<table>`` and index it, ready to publish.

    :param conn: autocommit psycopg 3 connection (e.g. from
        :func:`dataset_ops.imdb.tasks.connect`); each step runs in its own transaction.
    :param spec: which IMDb file this is.
    :param fileobj: the gzipped TSV, opened for binary reading (streamed, never read whole).
    :param total_bytes: compressed size in bytes, for progress percentages.
    :param expected_rows: rows the download counted; the load must match it.
    :param logged: make the table LOGGED (crash-safe, replicated) before it is published.
    :returns: rows and bytes loaded and the time taken.
    :raises InvalidDump: truncated/corrupt gzip or wrong header (a ``StreamFormatError``; names
        file and line). Permanent.
    :raises BadDumpData: PostgreSQL rejected a row (wrong field count, bad value, invalid
        UTF-8: names the file and line), duplicate keys, or a row-count mismatch. Permanent.
    :raises ImdbLoadError: any other database failure (connection, disk): transient.
    """
    import psycopg

    started = time.monotonic()
    table = f"{STAGING_SCHEMA}.{spec.table}"
    counter = GunzipCounter(spec.file_name, spec.header)
    progress = ProgressLog(f"COPY {spec.file_name}", total_bytes)
    try:
        with conn.transaction():
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(spec.staging_ddl(STAGING_SCHEMA, spec.table))
            with conn.cursor() as cur:
                with cur.copy(f"COPY {table} ({spec.copy_columns}) FROM STDIN ({COPY_OPTIONS})") as copy:
                    for block in gunzip_blocks(fileobj, counter):
                        copy.write(block)
                        progress.update(counter.compressed_bytes, counter.newlines)
                copied = cur.rowcount
    except psycopg.Error as exc:
        raise _copy_error(spec, exc) from exc
    except StreamFormatError as exc:  # the gzip stream or its header, found while feeding COPY
        raise InvalidDump.from_stream_error(exc) from exc
    copy_seconds = time.monotonic() - started
    progress.update(counter.compressed_bytes, counter.rows, force=True)
    if copied != counter.rows:
        raise BadDumpData(f"{spec.file_name}: COPY loaded {copied:,} rows but the file has {counter.rows:,}")
    if expected_rows is not None and copied != expected_rows:
        raise BadDumpData(
            f"{spec.file_name}: {copied:,} rows loaded, but the download counted "
            f"{expected_rows:,}; the file changed in storage: rerun the download"
        )
    try:
        _finish_staging_table(conn, spec, logged)
    except psycopg.Error as exc:
        detail = exc.diag.message_detail
        reason = exc.diag.message_primary or str(exc).strip()
        message = f"{spec.file_name}: {reason}" + (f": {detail}" if detail else "")
        raise _error_class(exc)(message) from exc
    return StageResult(
        file=spec.name,
        table=spec.table,
        rows=copied,
        compressed_bytes=counter.compressed_bytes,
        decompressed_bytes=counter.decompressed_bytes,
        copy_seconds=round(copy_seconds, 3),
        total_seconds=round(time.monotonic() - started, 3),
    )


def _finish_staging_table(conn: psycopg.Connection, spec: ImdbFile, logged: bool) -> None:
    """Drop helper columns, build keys and indexes, optionally make the table LOGGED, ANALYZE it.

    Dropped helper columns keep their bytes in the rows until a rewrite (``SET LOGGED`` does one).
    """
    table = f"{STAGING_SCHEMA}.{spec.table}"
    with conn.transaction():
        conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for col in spec.array_columns:
            conn.execute(f"ALTER TABLE {table} ALTER COLUMN {col.name} DROP EXPRESSION")
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {col.raw_name}")
        conn.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {spec.table}_pkey "
            f"PRIMARY KEY ({', '.join(spec.primary_key)})"
        )
        for col in spec.indexes:
            conn.execute(f"CREATE INDEX {spec.table}_{col.lower()}_idx ON {table} ({col})")
        if logged:
            conn.execute(f"ALTER TABLE {table} SET LOGGED")
    conn.execute(f"ANALYZE {table}")


def publish(conn: psycopg.Connection, staged: list[dict], dag_run_id: str | None = None) -> None:
    """Swap staged tables into the ``imdb`` schema in one transaction and record the history.

    :param staged: one dict per file with ``file`` (IMDb name), ``table`` and the history fields
        ``etag``, ``sha256``, ``rows``, ``compressed_bytes``, ``total_seconds``.
    :raises ImdbLoadError: a staged table is missing (nothing is published then).
    :raises psycopg.errors.LockNotAvailable: readers held the old tables longer than
        :data:`PUBLISH_LOCK_TIMEOUT`; nothing is published and the task can be retried.
    """
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{PUBLISH_LOCK_TIMEOUT}'")
        for item in staged:
            table = item["table"]
            exists = conn.execute(
                "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s",
                (STAGING_SCHEMA, table),
            ).fetchone()
            if not exists:
                raise ImdbLoadError(f"{item['file']}: staged table {STAGING_SCHEMA}.{table} is missing")
            conn.execute(f"DROP TABLE IF EXISTS {PUBLISHED_SCHEMA}.{table}")
            conn.execute(f"ALTER TABLE {STAGING_SCHEMA}.{table} SET SCHEMA {PUBLISHED_SCHEMA}")
            record_history(
                conn,
                item["file"],
                "published",
                etag=item.get("etag"),
                sha256=item.get("sha256"),
                rows=item.get("rows"),
                bytes_=item.get("compressed_bytes"),
                seconds=item.get("total_seconds"),
                dag_run_id=dag_run_id,
            )
