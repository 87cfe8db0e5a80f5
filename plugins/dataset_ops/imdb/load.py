"""Load IMDb dumps into PostgreSQL: gzip stream -> ``COPY`` -> staging table -> atomic publish.

Flow per file (:func:`stage_file`): the compressed stream is decompressed block by block and the
text goes straight into ``COPY ... FROM STDIN`` (psycopg 3 ``cursor.copy``) into
``imdb_staging.<table>__loading``. No decompressed copy exists on disk, and memory does not grow
with the file. Then row counts are checked against the file, the table gets its primary key and
indexes, is renamed to ``imdb_staging.<table>`` (so a staging table under that name is always
complete) and ANALYZEd.

COPY streams (``streams``; the DAG Param ``copy_streams``):

* **1** (serial): one connection; the table is created in the COPY's transaction, so
  ``COPY FREEZE`` applies (rows land frozen and all-visible) and the rows keep the file's order.
* **N > 1** (parallel): this thread decompresses and cuts the text after newlines into chunks of
  about :data:`CHUNK_BYTES` and deals them out in turn to N threads, each with its own
  connection and its own ``COPY``, so N server backends parse at once. The table is created
  (committed) first, so ``FREEZE`` cannot apply: a ``VACUUM (FREEZE, ANALYZE)`` at the end
  freezes the rows instead. Each stream keeps, per chunk, the chunk's first line in the stream
  and in the file, so an error PostgreSQL reports at line *l* of a stream is reported at its
  line in the whole file. The streams' row counts are summed and checked like the serial one.
  Memory: at most :data:`QUEUE_CHUNKS_PER_STREAM` + 1 chunks per stream, one decompressed piece
  and one partial line (at most :data:`MAX_LINE_BYTES`).

Measured on 2 cores (docs/imdb.md): the parallel COPY itself is faster, but the streams' rows
interleave in the table, so the primary key's sort no longer gets the dump's sorted order and
takes about twice as long; one stream was the fastest end to end, and :func:`auto_streams`
picks 1 there.

Durability: published tables stay UNLOGGED by default. They can always be rebuilt from the
dumps kept in object storage: after a crash PostgreSQL empties UNLOGGED tables, and the next
``imdb_load`` run sees the empty table and reloads it
(:func:`dataset_ops.imdb.tasks.plan_load`). UNLOGGED tables are not replicated to standbys;
``logged=True`` publishes LOGGED tables (crash-safe, replicated). A file without array columns
is then COPied straight into a LOGGED table (written to WAL once, during the COPY); a file with
array columns lands UNLOGGED and is rewritten by ``SET LOGGED``, which also drops the bytes of
the dropped ``<name>_raw`` helper columns (without the rewrite they would stay in every row).
:func:`publish` then swaps any number of staged tables into the ``imdb`` schema in one
transaction: readers see the old generation or the new one, never a mix inside one table.

COPY options (PostgreSQL docs, "COPY"): ``FORMAT csv, DELIMITER E'\\t', NULL '\\N'`` with
``QUOTE E'\\b'``: IMDb fields can start with a double quote that never closes, so the quote
character is set to a byte that does not occur in the data; CSV mode also keeps backslashes as
data. Bytes are loaded exactly as in the file. With that quote no field spans a newline, which is
what lets the parallel path cut the text at any newline (a ``\\b`` in the data would show as
a COPY error or a row-count mismatch, in both paths).
"""

from __future__ import annotations

import bisect
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
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
#: COPY options of every stream (see the module docstring).
COPY_FORMAT = "FORMAT csv, DELIMITER E'\\t', NULL '\\N', QUOTE E'\\b'"
#: COPY options of the serial load: the header line goes to the server, which skips it; the table
#: is created in the same transaction, so FREEZE applies.
COPY_OPTIONS = f"{COPY_FORMAT}, HEADER true, FREEZE true"
#: Suffix of the table a load writes into; renamed to ``imdb_staging.<table>`` once complete.
LOADING_SUFFIX = "__loading"

#: Parallel COPY: decompressed bytes per chunk handed to a stream (cut after a newline).
CHUNK_BYTES = 1 << 20
#: Parallel COPY: chunks waiting in the queue per stream. Memory of the parallel path is about
#: ``streams * (QUEUE_CHUNKS_PER_STREAM + 1) * CHUNK_BYTES`` plus one decompressed piece
#: (:data:`dataset_ops.streams.MAX_OUTPUT`) and the partial line carried over.
QUEUE_CHUNKS_PER_STREAM = 2
#: Parallel COPY: longest line accepted (bytes). A line is never split between streams, so it
#: must fit in memory whole; the serial path has no such limit (PostgreSQL's is 1 GB).
MAX_LINE_BYTES = 64 << 20
#: Most streams one file may use (each is a connection and a server backend).
MAX_STREAMS = 16
#: :func:`auto_streams`: smallest gzipped file (bytes) it loads with more than one stream, and
#: the most streams it picks.
AUTO_MIN_BYTES = 16 << 20
AUTO_MAX_STREAMS = 4


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
    #: COPY streams used (1: serial)
    streams: int = 1

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


def _copy_error(
    spec: ImdbFile, exc: Exception, file_line: Callable[[int], int] | None = None
) -> ImdbLoadError:
    """Turn a PostgreSQL COPY error into one naming the file, the line and the reason
    (:class:`BadDumpData` when the data is at fault, else :class:`ImdbLoadError`).

    :param file_line: maps the line number PostgreSQL reports (a line of one stream's COPY
        input) to the line in the file; None when they are the same (the serial load, which
        sends the header line too).
    """
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) or str(exc).splitlines()[0]
    context = (getattr(diag, "context", None) or "").replace(f"{spec.table}{LOADING_SUFFIX}", spec.table)
    match = _LINE_RE.search(context)
    line = ""
    if match:
        number = int(match.group(1))
        if file_line is not None:
            number = file_line(number)
            context = _LINE_RE.sub(f"line {number}", context, count=1)
        line = f"line {number}: "
    detail = context.strip().splitlines()[0] if context else ""
    return _error_class(exc)(
        f"{spec.file_name}: {line}{primary} ({detail})" if detail else f"{spec.file_name}: {line}{primary}"
    )


def usable_cpus() -> int:
    """CPUs this process may run on (``sched_getaffinity``, else ``os.cpu_count()``; at least 1)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_streams(compressed_bytes: int | None, cpus: int | None = None) -> int:
    """The number of COPY streams used when none is given (``copy_streams`` 0, ``streams=None``).

    Half the CPUs, at most :data:`AUTO_MAX_STREAMS`; 1 for files under :data:`AUTO_MIN_BYTES`
    (gzipped) or of unknown size. On 2 CPUs that is 1: measured there (docs/imdb.md), one stream
    was the fastest for every file and both durabilities, because a parallel COPY saves less on
    the COPY than it costs the primary key (the dump's rows no longer arrive sorted). Above
    2 CPUs the choice is not measured: the streams then have cores of their own, and the other
    half is left to the client, WAL writing and the key's parallel sort.

    :param compressed_bytes: size of the gzipped file (bytes), None if unknown.
    :param cpus: CPUs to plan for; default :func:`usable_cpus` (of the worker, which is not
        necessarily the database server's).
    :returns: streams, 1 to :data:`AUTO_MAX_STREAMS`.
    """
    if not compressed_bytes or compressed_bytes < AUTO_MIN_BYTES:
        return 1
    cpus = usable_cpus() if cpus is None else cpus
    return max(1, min(cpus // 2, AUTO_MAX_STREAMS))


def sibling_connector(conn: psycopg.Connection) -> Callable[[], psycopg.Connection]:
    """A function that opens more autocommit connections like ``conn``: same server, database,
    user, password and connection options (``conn.info.dsn`` plus its password).

    Session settings made with ``SET`` on ``conn`` are not carried over.
    """
    import psycopg

    dsn = conn.info.dsn
    password = conn.info.password

    def connect() -> psycopg.Connection:
        return psycopg.connect(dsn, autocommit=True, **({"password": password} if password else {}))

    return connect


def stage_file(
    conn: psycopg.Connection,
    spec: ImdbFile,
    fileobj: BinaryIO,
    *,
    total_bytes: int | None = None,
    expected_rows: int | None = None,
    logged: bool = False,
    streams: int | None = 1,
    connect: Callable[[], psycopg.Connection] | None = None,
) -> StageResult:
    """COPY one gzipped IMDb file into ``imdb_staging.<table>`` and index it, ready to publish.

    The rows land in ``imdb_staging.<table>__loading``, which becomes ``imdb_staging.<table>``
    (replacing an older one) only once it is complete, checked and keyed; on any failure it is
    dropped, and the published ``imdb.<table>`` is never touched here.

    :param conn: autocommit psycopg 3 connection (e.g. from
        :func:`dataset_ops.imdb.tasks.connect`); each step runs in its own transaction.
    :param spec: which IMDb file this is.
    :param fileobj: the gzipped TSV, opened for binary reading (streamed, never read whole).
    :param total_bytes: compressed size in bytes, for progress percentages and ``streams=None``.
    :param expected_rows: rows the download counted; the load must match it.
    :param logged: publish a LOGGED table (crash-safe, replicated; see the module docstring).
    :param streams: COPY streams: 1 serial (one connection, ``COPY FREEZE``), 2 to
        :data:`MAX_STREAMS` parallel (that many extra connections), None :func:`auto_streams`.
    :param connect: opens one more autocommit connection to the same database, for the
        parallel streams; default :func:`sibling_connector` of ``conn``.
    :returns: rows and bytes loaded, the time taken and the streams used.
    :raises ValueError: ``streams`` out of range.
    :raises InvalidDump: truncated/corrupt gzip, wrong header, or (parallel only) a line longer
        than :data:`MAX_LINE_BYTES` (a ``StreamFormatError``; names file and line). Permanent.
    :raises BadDumpData: PostgreSQL rejected a row (wrong field count, bad value, invalid
        UTF-8: names the file and its line in the whole file), duplicate keys, or a row-count
        mismatch. Permanent.
    :raises ImdbLoadError: any other database failure (connection, disk): transient.
    """
    import psycopg

    if streams is None:
        streams = auto_streams(total_bytes)
    if not 1 <= streams <= MAX_STREAMS:
        raise ValueError(f"streams must be 1 to {MAX_STREAMS} (or None: auto), not {streams}")
    started = time.monotonic()
    loading = f"{STAGING_SCHEMA}.{spec.table}{LOADING_SUFFIX}"
    # LOGGED without array columns: COPY straight into a LOGGED table (WAL written once). With
    # array columns: UNLOGGED, then SET LOGGED, whose rewrite drops the helper columns' bytes.
    direct_logged = logged and not spec.array_columns
    ddl = spec.staging_ddl(STAGING_SCHEMA, f"{spec.table}{LOADING_SUFFIX}")
    if direct_logged:
        ddl = ddl.replace("CREATE UNLOGGED TABLE", "CREATE TABLE", 1)
    counter = GunzipCounter(spec.file_name, spec.header)
    label = f"COPY {spec.file_name}" + (f" ({streams} streams)" if streams > 1 else "")
    progress = ProgressLog(label, total_bytes)
    try:
        try:
            if streams == 1:
                copied = _copy_serial(conn, spec, fileobj, counter, progress, ddl, loading)
            else:
                copied = _copy_parallel(
                    conn,
                    spec,
                    fileobj,
                    counter,
                    progress,
                    ddl,
                    loading,
                    streams,
                    connect or sibling_connector(conn),
                )
        except psycopg.Error as exc:
            raise _copy_error(spec, exc) from exc
        except StreamFormatError as exc:  # the gzip stream or its header, found while feeding COPY
            raise InvalidDump.from_stream_error(exc) from exc
        copy_seconds = time.monotonic() - started
        progress.update(counter.compressed_bytes, counter.rows, force=True)
        if copied != counter.rows:
            raise BadDumpData(
                f"{spec.file_name}: COPY loaded {copied:,} rows but the file has {counter.rows:,}"
            )
        if expected_rows is not None and copied != expected_rows:
            raise BadDumpData(
                f"{spec.file_name}: {copied:,} rows loaded, but the download counted "
                f"{expected_rows:,}; the file changed in storage: rerun the download"
            )
        try:
            _finish_staging_table(conn, spec, set_logged=logged and not direct_logged, freeze=streams > 1)
        except psycopg.Error as exc:
            detail = exc.diag.message_detail
            reason = exc.diag.message_primary or str(exc).strip()
            message = f"{spec.file_name}: {reason}" + (f": {detail}" if detail else "")
            raise _error_class(exc)(message) from exc
    except BaseException:
        _drop_quietly(conn, loading)
        raise
    return StageResult(
        file=spec.name,
        table=spec.table,
        rows=copied,
        compressed_bytes=counter.compressed_bytes,
        decompressed_bytes=counter.decompressed_bytes,
        copy_seconds=round(copy_seconds, 3),
        total_seconds=round(time.monotonic() - started, 3),
        streams=streams,
    )


def _drop_quietly(conn: psycopg.Connection, table: str) -> None:
    """Drop ``table`` after a failed load; a failure to do so is logged (the next load drops it)."""
    import psycopg

    try:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    except psycopg.Error as exc:
        log.warning("could not drop %s after a failed load: %s", table, exc)


def _copy_serial(
    conn: psycopg.Connection,
    spec: ImdbFile,
    fileobj: BinaryIO,
    counter: GunzipCounter,
    progress: ProgressLog,
    ddl: str,
    loading: str,
) -> int:
    """One transaction: create ``loading``, COPY FREEZE the whole stream into it; returns rows."""
    with conn.transaction():
        conn.execute(f"DROP TABLE IF EXISTS {loading}")
        conn.execute(ddl)
        with conn.cursor() as cur:
            with cur.copy(f"COPY {loading} ({spec.copy_columns}) FROM STDIN ({COPY_OPTIONS})") as copy:
                for block in gunzip_blocks(fileobj, counter):
                    copy.write(block)
                    progress.update(counter.compressed_bytes, counter.newlines)
            return cur.rowcount


class _Cancelled(Exception):
    """Raised inside a stream's COPY to abort it (``CopyFail``) when another part failed."""


@dataclass
class Chunk:
    """Whole lines of the file handed to one COPY stream.

    :param first_line: line number in the file of the chunk's first line (the header is line 1).
    :param lines: lines in the chunk (a last line without ``\\n`` counts).
    :param data: the bytes, ending with ``\\n`` except for a file's unterminated last line.
    """

    first_line: int
    lines: int
    data: bytes


def line_chunks(
    pieces: Iterator[bytes],
    source: str,
    chunk_bytes: int = CHUNK_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[Chunk]:
    """Cut decompressed text into chunks of whole lines, without the header line.

    :param pieces: the decompressed text in pieces of any size (e.g. from
        :func:`~dataset_ops.streams.gunzip_blocks`, which checks the header).
    :param source: file name for errors.
    :param chunk_bytes: target chunk size (bytes); a chunk is smaller (cut after the last
        newline that fits) or, when one line is longer, that one line.
    :param max_line_bytes: longest line held while waiting for its newline (bytes).
    :returns: chunks in file order; their ``first_line`` numbers count from 2.
    :raises StreamFormatError: a line longer than ``max_line_bytes``.
    """
    line = 2
    in_header = True
    carry = b""
    for piece in pieces:
        buf = carry + piece if carry else piece
        pos = 0
        if in_header:
            newline = buf.find(b"\n")
            if newline < 0:
                carry = buf
                continue
            pos, in_header = newline + 1, False
        end = buf.rfind(b"\n", pos) + 1
        while pos < end:
            cut = buf.rfind(b"\n", pos, min(pos + chunk_bytes, end)) + 1
            if cut <= pos:  # one line longer than chunk_bytes
                cut = buf.find(b"\n", pos, end) + 1
            data = buf[pos:cut]
            lines = data.count(b"\n")
            yield Chunk(line, lines, data)
            line += lines
            pos = cut
        carry = buf[pos:]
        if len(carry) > max_line_bytes:
            raise StreamFormatError(
                source,
                f"line longer than {max_line_bytes:,} bytes: a parallel COPY holds each line whole "
                "(load it with one stream)",
                line,
            )
    if carry and not in_header:
        yield Chunk(line, 1, carry)


class _CopyStream(threading.Thread):
    """One COPY stream: its own connection and ``COPY``, fed whole-line chunks from a queue.

    Records, per chunk, its first line in this stream's COPY input and in the file, so
    :meth:`file_line` maps a line PostgreSQL reports back to the file.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], psycopg.Connection],
        sql: str,
        chunks: queue.Queue,
        stop: threading.Event,
    ):
        super().__init__(name=name, daemon=True)
        self._connect, self._sql, self._halt = connect, sql, stop
        #: this stream's chunks, in file order (None ends the stream)
        self.chunks = chunks
        self.rows = 0
        self.error: BaseException | None = None
        #: set once the connection is open and the server accepted the COPY
        self.ready = threading.Event()
        self._stream_lines: list[int] = []
        self._file_lines: list[int] = []

    def file_line(self, stream_line: int) -> int:
        """Line ``stream_line`` of this stream's COPY input as a line number of the file."""
        i = bisect.bisect_right(self._stream_lines, stream_line) - 1
        if i < 0:
            return stream_line
        return self._file_lines[i] + stream_line - self._stream_lines[i]

    def run(self) -> None:
        try:
            with self._connect() as conn, conn.cursor() as cur:
                with cur.copy(self._sql) as copy:
                    self.ready.set()
                    next_line = 1
                    while (chunk := self._next()) is not None:
                        self._stream_lines.append(next_line)
                        self._file_lines.append(chunk.first_line)
                        copy.write(chunk.data)
                        next_line += chunk.lines
                self.rows = cur.rowcount
        except _Cancelled:
            pass
        except BaseException as exc:  # reported by the thread that started the streams
            self.error = exc
            self._halt.set()

    def _next(self) -> Chunk | None:
        """The next chunk (None: the end); what is queued is sent even after a stop, so a
        stream whose end is queued finishes its COPY and reports its own error, if any."""
        while True:
            try:
                return self.chunks.get(timeout=0.05)
            except queue.Empty:
                if self._halt.is_set():
                    raise _Cancelled from None


def _put(
    chunks: queue.Queue,
    item: Chunk | None,
    stop: threading.Event | None,
    worker: threading.Thread | None = None,
) -> bool:
    """Queue ``item``; give up when ``stop`` is set or ``worker`` has ended. Returns whether
    it was queued."""
    while not (stop is not None and stop.is_set()) and (worker is None or worker.is_alive()):
        try:
            chunks.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _copy_parallel(
    conn: psycopg.Connection,
    spec: ImdbFile,
    fileobj: BinaryIO,
    counter: GunzipCounter,
    progress: ProgressLog,
    ddl: str,
    loading: str,
    streams: int,
    connect: Callable[[], psycopg.Connection],
) -> int:
    """Create ``loading`` (committed), then COPY the file into it over ``streams`` connections.

    This thread decompresses and cuts the text (:func:`line_chunks`) and deals the chunks out in
    turn (chunk *i* to stream *i* mod ``streams``, each stream a queue of
    :data:`QUEUE_CHUNKS_PER_STREAM`); the stream threads send them. The first failure stops
    all streams: a stream's error (mapped to the file's line; of several, the one earliest in
    the file) or this thread's (gzip, header).

    :returns: rows loaded by all streams together.
    :raises ImdbLoadError: a stream failed (bad data: :class:`BadDumpData`).
    """
    with conn.transaction():
        conn.execute(f"DROP TABLE IF EXISTS {loading}")
        conn.execute(ddl)
    sql = f"COPY {loading} ({spec.copy_columns}) FROM STDIN ({COPY_FORMAT})"
    stop = threading.Event()
    workers = [
        _CopyStream(f"copy-{spec.name}-{k + 1}", connect, sql, queue.Queue(QUEUE_CHUNKS_PER_STREAM), stop)
        for k in range(streams)
    ]
    for worker in workers:
        worker.start()
    try:
        # All streams connected and in COPY before any text is read: a connection that fails
        # fails the load before the file is decompressed, and every stream takes part.
        for worker in workers:
            while not worker.ready.wait(0.05):
                if stop.is_set() or not worker.is_alive():
                    break
        if not stop.is_set():
            pieces = gunzip_blocks(fileobj, counter)
            chunks = line_chunks(pieces, spec.file_name, CHUNK_BYTES, MAX_LINE_BYTES)
            for number, chunk in enumerate(chunks):
                if not _put(workers[number % streams].chunks, chunk, stop):
                    break
                progress.update(counter.compressed_bytes, counter.newlines)
            else:
                for worker in workers:  # the end of every stream, even when one failed already
                    _put(worker.chunks, None, None, worker)
    except BaseException:
        stop.set()
        raise
    finally:
        for worker in workers:
            worker.join()
    _raise_stream_error(spec, workers)
    log.info(
        "COPY %s: rows per stream %s",
        spec.file_name,
        ", ".join(f"{w.rows:,}" for w in workers),
    )
    return sum(w.rows for w in workers)


def _raise_stream_error(spec: ImdbFile, workers: list[_CopyStream]) -> None:
    """Raise the failure of the streams, if any: of several database errors the one at the
    earliest line of the file (as :class:`ImdbLoadError`), else the first other exception."""
    import psycopg

    failed = [w for w in workers if w.error is not None]
    if not failed:
        return
    mapped = [
        (_copy_error(spec, w.error, w.file_line), w.error)
        for w in failed
        if isinstance(w.error, psycopg.Error)
    ]
    if not mapped:
        raise failed[0].error

    def line(item: tuple[ImdbLoadError, BaseException]) -> float:
        match = _LINE_RE.search(str(item[0]))
        return int(match.group(1)) if match else float("inf")

    error, cause = min(mapped, key=line)
    raise error from cause


def _finish_staging_table(conn: psycopg.Connection, spec: ImdbFile, set_logged: bool, freeze: bool) -> None:
    """Drop helper columns, build keys and indexes, optionally ``SET LOGGED``, replace
    ``imdb_staging.<table>`` with the loaded table (one transaction), then ANALYZE it.

    Dropped helper columns keep their bytes in the rows until a rewrite (``SET LOGGED`` does one).

    :param freeze: ``VACUUM (FREEZE, ANALYZE)`` instead of ``ANALYZE``: after a parallel COPY,
        which cannot use ``COPY FREEZE``, so the table ends frozen and all-visible (index-only
        scans need no heap visits) like a serial load's.
    """
    loading = f"{STAGING_SCHEMA}.{spec.table}{LOADING_SUFFIX}"
    staged = f"{STAGING_SCHEMA}.{spec.table}"
    with conn.transaction():
        conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
        conn.execute(f"DROP TABLE IF EXISTS {staged}")  # its index names are about to be reused
        for col in spec.array_columns:
            conn.execute(f"ALTER TABLE {loading} ALTER COLUMN {col.name} DROP EXPRESSION")
            conn.execute(f"ALTER TABLE {loading} DROP COLUMN {col.raw_name}")
        conn.execute(
            f"ALTER TABLE {loading} ADD CONSTRAINT {spec.table}_pkey "
            f"PRIMARY KEY ({', '.join(spec.primary_key)})"
        )
        for col in spec.indexes:
            conn.execute(f"CREATE INDEX {spec.table}_{col.lower()}_idx ON {loading} ({col})")
        if set_logged:
            conn.execute(f"ALTER TABLE {loading} SET LOGGED")
        conn.execute(f"ALTER TABLE {loading} RENAME TO {spec.table}")
    conn.execute(f"VACUUM (FREEZE, ANALYZE) {staged}" if freeze else f"ANALYZE {staged}")


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
