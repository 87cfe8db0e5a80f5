"""Benchmark: this project's IMDb loader against psql ``\\copy``, pgloader and pandas ``to_sql``.

Run: ``.venv/bin/python benchmarks/bench_imdb_copy.py [--only ratings|basics|ratings-scaled ...]
[--streams 1,2,4] [--rows N] [--scaled-rows N]`` (``make bench`` does this after installing
pgloader and starting PostgreSQL). See ``benchmarks/README.md`` for what each figure means.
Prints figures only; never asserts timings.

Inputs (prepared before any timing, cached in ``<repo>/.data/bench/``):

* ``ratings``: the complete ``title.ratings`` dump of 2018-03-12 (812,970 rows).
* ``basics``: ``title.basics`` scaled to ``--rows`` rows (default 2,000,000) by repeating the data
  rows of the real 50,001-row slice with unique ``tconst`` values (``tt`` + 8 digits); every
  other field is byte-identical. Written gzipped (level 6) and reused while its row count fits.
* ``ratings-scaled``: ``title.ratings`` scaled to ``--scaled-rows`` rows (default 20,000,000)
  the same way from the complete 2018 dump (keys ascending, as in the real dumps).

Methods, each run ``--repeat`` times (default 3, median reported) in rounds (one run of each
method per round, so background load hits all alike), with the target table dropped and a
``CHECKPOINT`` before every run (untimed):

* ``ours``: :func:`dataset_ops.imdb.load.stage_file` + :func:`~dataset_ops.imdb.load.publish`
  from the gzipped file, for each stream count of ``--streams`` (plus the one
  :func:`~dataset_ops.imdb.load.auto_streams` picks) and both durabilities:

  * ``ours N streams: published`` (``logged=False``, the default): the whole call sequence up
    to a typed, indexed, ANALYZEd, UNLOGGED table in schema ``imdb``; ``ours N streams: COPY``
    is its ``StageResult.copy_seconds``.
  * ``ours N streams LOGGED: published`` (``logged=True``): a LOGGED table (COPY straight into
    it, or ``SET LOGGED`` for files with array columns).
* ``psql \\copy``: the decompressed file into the same UNLOGGED staging DDL, with the loader's
  ``COPY_OPTIONS`` verbatim (FREEZE included: ``psql -1`` runs CREATE TABLE and ``\\copy`` in one
  transaction, as the loader does). Timed: the whole psql process.
* ``psql \\copy keyed LOGGED``: the same into the typed table made LOGGED with its primary key
  created before the ``\\copy`` (the reference of the parallel-COPY targets); ``psql \\copy, key
  after``: the key built after it.
* ``pgloader``: ``zcat file.gz | pgloader cmd.load`` with ``LOAD COPY FROM stdin`` into the same
  staging DDL. Timed: the whole pipeline (includes pgloader's start-up).
* ``to_sql``: ``pd.read_csv`` of the gzipped file + ``DataFrame.to_sql`` (default method,
  chunksize 10,000) into a table pandas creates. Timed: read + insert. Runs ``--to-sql-repeat``
  times (default 1); ``--to-sql-rows N`` loads only the first N rows and extrapolates.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins"))

import psycopg  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

from dataset_ops.imdb.datasets import ImdbFile, imdb_file  # noqa: E402
from dataset_ops.imdb.load import (  # noqa: E402
    COPY_OPTIONS,
    MAX_STREAMS,
    PUBLISHED_SCHEMA,
    STAGING_SCHEMA,
    auto_streams,
    ensure_schemas,
    publish,
    stage_file,
)

SHARED_IMDB = REPO.parent / "shared" / "data" / "imdb"
RATINGS_GZ = SHARED_IMDB / "title.ratings.2018-03-12.full.tsv.gz"
BASICS_SLICE = SHARED_IMDB / "head-2025-08" / "title.basics.tsv"
CACHE = REPO / ".data" / "bench"
BENCH_DB = "dataset_ops_bench"
DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
TO_SQL_CHUNKSIZE = 10_000
GENERATOR_VERSION = 1
MIB = 1 << 20


# --- inputs -------------------------------------------------------------------------------------


@dataclass
class BenchFile:
    """One benchmark input: the gzipped file, its decompressed copy and its size.

    :param key: short name (``ratings`` / ``basics``).
    :param spec: the IMDb dataset it is.
    :param gz: gzipped TSV (what ``ours``, pgloader and pandas read).
    :param tsv: decompressed TSV (what psql reads).
    :param rows: data rows (header excluded).
    :param gz_bytes: size of ``gz`` in bytes.
    :param tsv_bytes: size of ``tsv`` in bytes.
    """

    key: str
    spec: ImdbFile
    gz: Path
    tsv: Path
    rows: int
    gz_bytes: int
    tsv_bytes: int


def _reusable(gz: Path, tsv: Path, meta_path: Path, key: dict) -> dict | None:
    """The recorded metadata of a generated file pair when it can be reused: same generator,
    source and row count (``key``), both files present with their recorded sizes; else None."""
    meta = _read_meta(meta_path)
    if (
        meta
        and all(meta.get(k) == v for k, v in key.items())
        and gz.exists()
        and tsv.exists()
        and gz.stat().st_size == meta.get("gz_bytes")
        and tsv.stat().st_size == meta.get("tsv_bytes")
    ):
        return meta
    return None


def _read_meta(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_meta(path: Path, meta: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(path)


def decompress_counting(gz: Path, tsv: Path) -> tuple[int, int]:
    """Decompress ``gz`` to ``tsv`` (atomically) and count its data rows.

    :returns: (data rows without the header line, decompressed size in bytes).
    """
    tmp = tsv.with_name(tsv.name + ".tmp")
    newlines = size = 0
    last = b"\n"
    with open(gz, "rb") as src, open(tmp, "wb") as dst:
        d = zlib.decompressobj(wbits=31)
        while block := src.read(MIB):
            while block:
                out = d.decompress(block)
                if d.eof:  # multi-member gzip: start the next member
                    block = d.unused_data
                    d = zlib.decompressobj(wbits=31)
                else:
                    block = b""
                if out:
                    dst.write(out)
                    newlines += out.count(b"\n")
                    size += len(out)
                    last = out[-1:]
    tmp.replace(tsv)
    lines = newlines + (0 if last == b"\n" else 1)
    return lines - 1, size


def prepare_ratings() -> BenchFile:
    """The complete 2018-03-12 ``title.ratings`` dump, decompressed once into the cache.

    :returns: the input; the decompressed copy is reused while its recorded size still fits.
    """
    spec = imdb_file("title.ratings")
    stat = RATINGS_GZ.stat()
    tsv = CACHE / RATINGS_GZ.name.removesuffix(".gz")
    meta_path = CACHE / (tsv.name + ".meta.json")
    meta = _read_meta(meta_path)
    key = {"source": str(RATINGS_GZ), "gz_bytes": stat.st_size, "gz_mtime_ns": stat.st_mtime_ns}
    if not (
        meta
        and all(meta.get(k) == v for k, v in key.items())
        and tsv.exists()
        and tsv.stat().st_size == meta.get("tsv_bytes")
    ):
        print(f"prepare: decompressing {RATINGS_GZ.name} -> {tsv.relative_to(REPO)}", flush=True)
        rows, tsv_bytes = decompress_counting(RATINGS_GZ, tsv)
        meta = {**key, "rows": rows, "tsv_bytes": tsv_bytes}
        _write_meta(meta_path, meta)
    return BenchFile("ratings", spec, RATINGS_GZ, tsv, meta["rows"], stat.st_size, meta["tsv_bytes"])


def generate_basics(rows: int) -> BenchFile:
    """``title.basics`` scaled to ``rows`` data rows from the real 50,001-row slice, cached.

    Data rows of the slice are repeated in order; ``tconst`` becomes ``tt`` + an 8-digit counter
    (1, 2, ...: unique); all other fields stay byte-identical. The gzipped file (level 6) and its
    decompressed copy are reused when their recorded row count and sizes match.

    :param rows: data rows to write (1 to 99,999,999).
    :returns: the input.
    """
    if not 0 < rows <= 99_999_999:
        raise SystemExit(f"--rows must be between 1 and 99,999,999, not {rows:,}")
    spec = imdb_file("title.basics")
    gz = CACHE / f"title.basics.scaled-{rows}.tsv.gz"
    tsv = gz.with_suffix("")
    meta_path = CACHE / (gz.name + ".meta.json")
    src_stat = BASICS_SLICE.stat()
    key = {
        "generator": GENERATOR_VERSION,
        "source": str(BASICS_SLICE),
        "source_bytes": src_stat.st_size,
        "rows": rows,
    }
    meta = _reusable(gz, tsv, meta_path, key)
    if meta:
        return BenchFile("basics", spec, gz, tsv, rows, meta["gz_bytes"], meta["tsv_bytes"])

    print(f"prepare: generating {gz.relative_to(REPO)} ({rows:,} rows from {BASICS_SLICE.name})", flush=True)
    lines = BASICS_SLICE.read_bytes().splitlines(keepends=True)
    header, data = lines[0], lines[1:]
    if header.rstrip(b"\r\n") != spec.header:
        raise SystemExit(f"{BASICS_SLICE}: unexpected header {header[:200]!r}")
    if not data[-1].endswith(b"\n"):
        data[-1] += b"\n"
    tails = [line[line.index(b"\t") :] for line in data]  # everything after tconst, newline included
    tmp_gz, tmp_tsv = gz.with_name(gz.name + ".tmp"), tsv.with_name(tsv.name + ".tmp")
    tsv_bytes = 0
    with gzip.open(tmp_gz, "wb", compresslevel=6) as zout, open(tmp_tsv, "wb") as out:
        zout.write(header)
        out.write(header)
        tsv_bytes += len(header)
        batch = 100_000
        for start in range(0, rows, batch):
            stop = min(start + batch, rows)
            chunk = b"".join(b"tt%08d%s" % (n + 1, tails[n % len(tails)]) for n in range(start, stop))
            zout.write(chunk)
            out.write(chunk)
            tsv_bytes += len(chunk)
    tmp_gz.replace(gz)
    tmp_tsv.replace(tsv)
    meta = {**key, "gz_bytes": gz.stat().st_size, "tsv_bytes": tsv_bytes}
    _write_meta(meta_path, meta)
    return BenchFile("basics", spec, gz, tsv, rows, meta["gz_bytes"], tsv_bytes)


def generate_ratings_scaled(rows: int) -> BenchFile:
    """``title.ratings`` scaled to ``rows`` data rows from the complete 2018 dump, cached.

    The dump's data rows are repeated in order; ``tconst`` becomes ``tt`` + an 8-digit counter
    (1, 2, ...: unique and ascending, like the real dump's sorted keys); ``averageRating`` and
    ``numVotes`` stay byte-identical. Written gzipped (level 6) with a decompressed copy (for
    psql); both are reused while their recorded row count and sizes match.

    :param rows: data rows to write (1 to 99,999,999).
    :returns: the input (key ``ratings-scaled``).
    """
    if not 0 < rows <= 99_999_999:
        raise SystemExit(f"--scaled-rows must be between 1 and 99,999,999, not {rows:,}")
    spec = imdb_file("title.ratings")
    gz = CACHE / f"title.ratings.scaled-{rows}.tsv.gz"
    tsv = gz.with_suffix("")
    meta_path = CACHE / (gz.name + ".meta.json")
    src_stat = RATINGS_GZ.stat()
    key = {
        "generator": GENERATOR_VERSION,
        "source": str(RATINGS_GZ),
        "source_bytes": src_stat.st_size,
        "rows": rows,
    }
    meta = _reusable(gz, tsv, meta_path, key)
    if meta:
        return BenchFile("ratings-scaled", spec, gz, tsv, rows, meta["gz_bytes"], meta["tsv_bytes"])

    print(f"prepare: generating {gz.relative_to(REPO)} ({rows:,} rows from {RATINGS_GZ.name})", flush=True)
    with gzip.open(RATINGS_GZ, "rb") as src:
        lines = src.read().splitlines(keepends=True)
    header, data = lines[0], lines[1:]
    if header.rstrip(b"\r\n") != spec.header:
        raise SystemExit(f"{RATINGS_GZ}: unexpected header {header[:200]!r}")
    if not data[-1].endswith(b"\n"):
        data[-1] += b"\n"
    tails = [line[line.index(b"\t") :] for line in data]  # everything after tconst, newline included
    del lines, data
    tmp_gz, tmp_tsv = gz.with_name(gz.name + ".tmp"), tsv.with_name(tsv.name + ".tmp")
    tsv_bytes = 0
    with gzip.open(tmp_gz, "wb", compresslevel=6) as zout, open(tmp_tsv, "wb") as out:
        zout.write(header)
        out.write(header)
        tsv_bytes += len(header)
        batch = 200_000
        for start in range(0, rows, batch):
            stop = min(start + batch, rows)
            chunk = b"".join(b"tt%08d%s" % (n + 1, tails[n % len(tails)]) for n in range(start, stop))
            zout.write(chunk)
            out.write(chunk)
            tsv_bytes += len(chunk)
    tmp_gz.replace(gz)
    tmp_tsv.replace(tsv)
    meta = {**key, "gz_bytes": gz.stat().st_size, "tsv_bytes": tsv_bytes}
    _write_meta(meta_path, meta)
    return BenchFile("ratings-scaled", spec, gz, tsv, rows, meta["gz_bytes"], tsv_bytes)


# --- database -----------------------------------------------------------------------------------


@dataclass
class Db:
    """Connection strings of the benchmark database (one server, database ``dataset_ops_bench``)."""

    admin_conninfo: str
    conninfo: str
    url: str  # postgresql://user[:password]@host:port/db (pgloader)
    sa_url: str  # postgresql+psycopg://... (SQLAlchemy / pandas)


def make_db(dsn: str) -> Db:
    """Build the connection strings for ``dataset_ops_bench`` on the server ``dsn`` points to.

    :param dsn: libpq conninfo or URI of a maintenance database on the server (TCP host).
    """
    info = conninfo_to_dict(dsn)
    host, port = info.get("host", "127.0.0.1"), info.get("port", "5432")
    user, password = info.get("user", "postgres"), info.get("password")
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    tail = f"{auth}@{host}:{port}/{BENCH_DB}"
    return Db(
        admin_conninfo=make_conninfo(dsn, host=host, port=port, user=user),
        conninfo=make_conninfo(dsn, host=host, port=port, user=user, dbname=BENCH_DB),
        url=f"postgresql://{tail}",
        sa_url=f"postgresql+psycopg://{tail}",
    )


def create_database(db: Db) -> None:
    """Drop (if left over) and create ``dataset_ops_bench``."""
    with psycopg.connect(db.admin_conninfo, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {BENCH_DB}")


def drop_database(db: Db) -> None:
    """Drop ``dataset_ops_bench`` (terminating leftover sessions)."""
    with psycopg.connect(db.admin_conninfo, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def reset_table(conn: psycopg.Connection, *tables: str) -> None:
    """Drop ``tables`` and run a CHECKPOINT so every timed run starts from the same state."""
    for table in tables:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute("CHECKPOINT")


def count_rows(conn: psycopg.Connection, table: str) -> int:
    """``count(*)`` of ``table`` (rows)."""
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# --- memory -------------------------------------------------------------------------------------


def _status_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux ``clear_refs`` 5).

    :returns: whether the reset worked (else ``VmHWM`` is the peak since process start).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def maxrss_mib() -> float:
    """``ru_maxrss`` of this process (peak since start) in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- CPU ----------------------------------------------------------------------------------------


def _machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy since boot (``/proc/stat``, all CPUs: user,
    nice, system, irq, softirq, steal), None where unavailable."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        ticks = [int(v) for v in fields]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (ticks + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """Samples the machine's busy CPU seconds every ``interval`` seconds in a thread, so the
    cores kept busy in a time window (e.g. a load's COPY phase) can be read afterwards.

    The machine's figure includes every process (this one, the PostgreSQL server, other
    people's work on a shared machine).
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        busy = _machine_busy_seconds()
        if busy is not None:
            self.samples.append((time.perf_counter(), busy))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def cores(self, start: float, end: float) -> float | None:
        """Average cores busy between ``start`` and ``end`` (``time.perf_counter`` values),
        from the nearest samples; None if the window holds fewer than two samples."""
        inside = [
            (t, b) for t, b in self.samples if start - self.interval / 2 <= t <= end + self.interval / 2
        ]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        (t0, b0), (t1, b1) = inside[0], inside[-1]
        return (b1 - b0) / (t1 - t0)


# --- methods ------------------------------------------------------------------------------------


@dataclass
class Method:
    """Timings (seconds) of one method on one file, one entry per run."""

    name: str
    seconds: list[float] = field(default_factory=list)
    rows: int = 0  # rows each run loaded (verified with count(*))
    note: str = ""
    extrapolated_from: int | None = None  # rows actually loaded when extrapolated
    failed: str | None = None

    @property
    def median(self) -> float | None:
        """Median run time (seconds), None if no run succeeded."""
        return statistics.median(self.seconds) if self.seconds else None


@dataclass
class OursVariant:
    """Timings (seconds) of one ``stage_file`` + ``publish`` variant, one entry per run.

    :param streams: COPY streams (``stage_file(streams=...)``).
    :param logged: ``stage_file(logged=...)``.
    """

    streams: int
    logged: bool
    published: Method
    #: StageResult.copy_seconds
    landing: Method
    #: stage_file after its COPY: PK, indexes, (SET LOGGED,) rename, ANALYZE
    finish: list[float] = field(default_factory=list)
    #: publish(): swap into schema imdb + history row
    publishing: list[float] = field(default_factory=list)
    #: peak RSS of this process during each run (MiB)
    peaks: list[float] = field(default_factory=list)
    #: CPU seconds of this process (all its threads) per run; nearly all of it is in the COPY
    client_cpu: list[float] = field(default_factory=list)
    #: cores the whole machine kept busy during the COPY, and during the rest of stage_file
    copy_cores: list[float] = field(default_factory=list)
    finish_cores: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``ours 2 streams LOGGED``-style name."""
        s = "stream" if self.streams == 1 else "streams"
        return f"ours {self.streams} {s}" + (" LOGGED" if self.logged else "")


class OursRunner:
    """The project's loader: ``stage_file`` + ``publish``, for each stream count and durability.

    Per round, for each ``streams`` value: the default durability (``logged=False``: the
    published table stays UNLOGGED), then ``logged=True`` (LOGGED: crash-safe, replicated).
    Each variant collects the published time, the COPY time (``StageResult.copy_seconds``), the
    split of the steps after COPY (seconds) and the peak RSS of this process (MiB: ``VmHWM``
    reset to the current RSS right before each run and read right after it).

    :param streams: stream counts to run (e.g. ``[1, 2, 4]``).
    """

    def __init__(self, conn: psycopg.Connection, bf: BenchFile, streams: list[int]):
        self.conn, self.bf = conn, bf
        self.variants: dict[tuple[int, bool], OursVariant] = {}
        for n in streams:
            for logged in (False, True):
                what = (
                    "COPY, PK/indexes, ANALYZE, swap"
                    if not logged
                    else "COPY, PK/indexes, LOGGED, ANALYZE, swap"
                )
                variant = OursVariant(
                    n,
                    logged,
                    Method("", note=f"stage_file(streams={n}, logged={logged}) + publish ({what})"),
                    Method("", note=f"StageResult.copy_seconds, streams={n}, logged={logged}"),
                )
                variant.published.name = variant.label + ": published"
                variant.landing.name = variant.label + ": COPY"
                self.variants[(n, logged)] = variant
        self.staged = f"{STAGING_SCHEMA}.{bf.spec.table}"
        self.final = f"{PUBLISHED_SCHEMA}.{bf.spec.table}"
        self.rss_before: list[float] = []
        self.reset_works = True

    def run(self, i: int) -> None:
        """One round: every variant once, in stream-count order, UNLOGGED before LOGGED."""
        for variant in self.variants.values():
            self._run_variant(i, variant)

    def _run_variant(self, i: int, variant: OursVariant) -> None:
        """One timed run: gzipped file -> published ``imdb.<table>``; checks count(*) and persistence."""
        bf = self.bf
        reset_table(self.conn, self.final, self.staged)
        self.reset_works = reset_peak_rss() and self.reset_works
        self.rss_before.append((_status_kib("VmRSS") or 0) / 1024)
        cpu_started = time.process_time()
        with CpuSampler() as sampler:
            started = time.perf_counter()
            with open(bf.gz, "rb") as fileobj:
                result = stage_file(
                    self.conn,
                    bf.spec,
                    fileobj,
                    total_bytes=bf.gz_bytes,
                    expected_rows=bf.rows,
                    logged=variant.logged,
                    streams=variant.streams,
                )
            staged_at = time.perf_counter()
        variant.client_cpu.append(time.process_time() - cpu_started)
        copy_end = started + result.copy_seconds
        for cores, window in (
            (variant.copy_cores, (started, copy_end)),
            (variant.finish_cores, (copy_end, staged_at)),
        ):
            value = sampler.cores(*window)
            if value is not None:
                cores.append(value)
        publish(self.conn, [result.to_dict()])
        total = time.perf_counter() - started
        hwm = _status_kib("VmHWM")
        if hwm is not None:
            variant.peaks.append(hwm / 1024)
        rows = count_rows(self.conn, self.final)
        if rows != bf.rows or result.streams != variant.streams:
            raise SystemExit(
                f"{variant.label}: {self.final} has {rows:,} rows, expected {bf.rows:,} "
                f"({result.streams} streams used)"
            )
        persistence = self.conn.execute(
            "SELECT relpersistence FROM pg_class WHERE oid = %s::regclass", (self.final,)
        ).fetchone()[0]
        if persistence != ("p" if variant.logged else "u"):
            raise SystemExit(
                f"{variant.label}: {self.final} has relpersistence {persistence!r} "
                f"with logged={variant.logged}"
            )
        variant.finish.append(result.total_seconds - result.copy_seconds)
        variant.publishing.append(total - (staged_at - started))
        variant.published.seconds.append(total)
        variant.published.rows = bf.rows
        variant.landing.seconds.append(result.copy_seconds)
        variant.landing.rows = bf.rows
        print(
            f"  run {i + 1} {variant.label + ':':<24} COPY {result.copy_seconds:7.3f} s, "
            f"stage_file {result.total_seconds:7.3f} s, published {total:7.3f} s",
            flush=True,
        )

    def close(self) -> dict:
        """Drop the tables; returns memory (MiB) facts for the report."""
        reset_table(self.conn, self.final, self.staged)
        return {
            "reset": self.reset_works,
            "rss_before": max(self.rss_before) if self.rss_before else 0.0,
            "maxrss_after": maxrss_mib(),
        }


#: PsqlRunner modes: (method name, table suffix, note)
PSQL_MODES = {
    "landing": (
        "psql \\copy",
        "_psql",
        "decompressed file, same UNLOGGED staging DDL + COPY options, whole psql process",
    ),
    "keyed": (
        "psql \\copy keyed LOGGED",
        "_psqlkeyed",
        "CREATE TABLE (LOGGED, typed) + PRIMARY KEY/indexes, then \\copy; whole psql process",
    ),
    "key-after": (
        "psql \\copy, key after",
        "_psqlkeyafter",
        "CREATE TABLE (LOGGED, typed), \\copy, then PRIMARY KEY/indexes; whole psql process",
    ),
}


class PsqlRunner:
    """``psql -1`` loading the decompressed file; seconds per run (the whole psql process).

    Modes (:data:`PSQL_MODES`), all in one transaction (``-1``), with the loader's
    ``COPY_OPTIONS`` verbatim (``FREEZE`` is valid: the table is created in the same transaction):

    * ``landing``: into the UNLOGGED staging DDL, no key: the reference for landing the bytes.
    * ``keyed``: into the same typed table made LOGGED, with its primary key (and indexes)
      created before the ``\\copy``: what the issue's "psql ``\\copy`` into the same keyed
      LOGGED table" figure measures, and the reference of the parallel-COPY targets.
    * ``key-after``: the same LOGGED table, primary key (and indexes) built after the ``\\copy``:
      the fastest way to a keyed LOGGED table with psql alone (informational).

    Array files keep their ``<name>_raw`` helper columns in the psql tables (psql does not drop
    them); title.ratings has none.
    """

    def __init__(self, conn: psycopg.Connection, db: Db, bf: BenchFile, mode: str = "landing"):
        spec = bf.spec
        self.conn, self.bf, self.mode = conn, bf, mode
        name, suffix, note = PSQL_MODES[mode]
        self.method = Method(name, note=note)
        table_name = f"{spec.table}{suffix}"
        self.table = f"{STAGING_SCHEMA}.{table_name}"
        ddl = spec.staging_ddl(STAGING_SCHEMA, table_name)
        keys = []
        if mode != "landing":
            ddl = ddl.replace("CREATE UNLOGGED TABLE", "CREATE TABLE", 1)
            keys = [f"ALTER TABLE {self.table} ADD PRIMARY KEY ({', '.join(spec.primary_key)})"]
            keys += [f"CREATE INDEX ON {self.table} ({col})" for col in spec.indexes]
        copy_cmd = f"\\copy {self.table} ({spec.copy_columns}) FROM '{bf.tsv}' WITH ({COPY_OPTIONS})"
        steps = [ddl, *keys, copy_cmd] if mode == "keyed" else [ddl, copy_cmd, *keys]
        self.argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-d", db.conninfo]
        for step in steps:
            self.argv += ["-c", step]

    def run(self, i: int) -> None:
        """One timed run (the whole psql process); checks count(*) and, for LOGGED, persistence."""
        if self.method.failed:
            return
        reset_table(self.conn, self.table)
        started = time.perf_counter()
        proc = subprocess.run(self.argv, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        rows = count_rows(self.conn, self.table) if proc.returncode == 0 else 0
        label = f"{self.method.name}:"
        if proc.returncode != 0 or rows != self.bf.rows:
            self.method.failed = (
                f"psql exit {proc.returncode}, {rows:,} of {self.bf.rows:,} rows: {proc.stderr.strip()[:300]}"
            )
            print(f"  run {i + 1} {label:<24} FAILED: {self.method.failed}", flush=True)
            return
        self.method.seconds.append(seconds)
        self.method.rows = rows
        print(f"  run {i + 1} {label:<24} {seconds:7.3f} s", flush=True)

    def close(self) -> None:
        """Drop the table."""
        reset_table(self.conn, self.table)


_PGLOADER_TIME_RE = re.compile(r"Total import time.*?(?:(\d+)h)?(?:(\d+)m)?(\d+(?:\.\d+)?)s\s*$", re.M)
_TIME_RSS_RE = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def pgloader_command(db: Db, bf: BenchFile) -> str:
    """The pgloader command file: ``LOAD COPY FROM stdin`` into the ``_pgloader`` staging table.

    COPY (text) source: tab-delimited, ``\\N`` is NULL, quotes have no meaning (stray double
    quotes in IMDb fields are safe); backslash sequences would be COPY TEXT escapes, and none
    occur in the two inputs besides ``\\N``. ``TARGET COLUMNS`` skips the generated array column.
    """
    cols = bf.spec.copy_columns
    return (
        "LOAD COPY\n"
        f"     FROM stdin ({cols})\n"
        f"     INTO {db.url}\n"
        f"     TARGET TABLE {STAGING_SCHEMA}.{bf.spec.table}_pgloader\n"
        f"     TARGET COLUMNS ({cols})\n"
        "     WITH skip header = 1, delimiter '\\t', null '\\N';\n"
    )


class PgloaderRunner:
    """``zcat file.gz | pgloader cmd.load`` into a pre-created (untimed) staging table.

    Collects the pipeline's wall time per run (seconds), pgloader's own "Total import time"
    (seconds) and its peak RSS (MiB, ``/usr/bin/time -v``; none when that tool is missing).
    """

    def __init__(self, conn: psycopg.Connection, db: Db, bf: BenchFile):
        spec = bf.spec
        self.conn, self.bf = conn, bf
        self.method = Method("pgloader", note="zcat | pgloader, LOAD COPY FROM stdin, whole pipeline")
        self.table = f"{STAGING_SCHEMA}.{spec.table}_pgloader"
        self.work = CACHE / "pgloader"
        self.work.mkdir(parents=True, exist_ok=True)
        cmd_file = self.work / f"{spec.table}.load"
        cmd_file.write_text(pgloader_command(db, bf))
        self.log = self.work / f"{spec.table}.log"
        self.time_out = self.work / f"{spec.table}.time"
        self.argv = [
            "pgloader",
            "--root-dir",
            str(self.work / "root"),
            "--logfile",
            str(self.log),
            str(cmd_file),
        ]
        if os.access("/usr/bin/time", os.X_OK):
            self.argv = ["/usr/bin/time", "-v", "-o", str(self.time_out), *self.argv]
        self.peak_kib: list[int] = []
        self.own: list[float] = []

    def run(self, i: int) -> None:
        """One timed run (zcat and pgloader processes until both exit); checks count(*)."""
        if self.method.failed:
            return
        bf = self.bf
        reset_table(self.conn, self.table)
        self.conn.execute(bf.spec.staging_ddl(STAGING_SCHEMA, f"{bf.spec.table}_pgloader"))
        self.time_out.unlink(missing_ok=True)
        started = time.perf_counter()
        zcat = subprocess.Popen(["zcat", str(bf.gz)], stdout=subprocess.PIPE)
        proc = subprocess.Popen(
            self.argv, stdin=zcat.stdout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        zcat.stdout.close()
        output, _ = proc.communicate()
        zcat.wait()
        seconds = time.perf_counter() - started
        rows = count_rows(self.conn, self.table)
        if proc.returncode != 0 or zcat.returncode != 0 or rows != bf.rows:
            self.method.failed = (
                f"exit {proc.returncode} (zcat {zcat.returncode}), {rows:,} of "
                f"{bf.rows:,} rows loaded; log {self.log}"
            )
            print(f"  run {i + 1} pgloader:     FAILED: {self.method.failed}\n{output[-1500:]}", flush=True)
            return
        if self.time_out.exists():
            match = _TIME_RSS_RE.search(self.time_out.read_text())
            if match:
                self.peak_kib.append(int(match.group(1)))
        own = ""
        match = _PGLOADER_TIME_RE.search(output)
        if match:
            h, m, s = match.groups()
            self.own.append(int(h or 0) * 3600 + int(m or 0) * 60 + float(s))
            own = f" (pgloader's own 'Total import time' {self.own[-1]:.3f} s)"
        self.method.seconds.append(seconds)
        self.method.rows = rows
        print(f"  run {i + 1} pgloader:     {seconds:7.3f} s{own}, count(*) = {rows:,}", flush=True)

    def close(self) -> float | None:
        """Drop the table; returns pgloader's peak RSS over the runs (MiB) or None."""
        reset_table(self.conn, self.table)
        if self.own:
            self.method.note += f"; pgloader's own total, median: {statistics.median(self.own):.3f} s"
        return max(self.peak_kib) / 1024 if self.peak_kib else None


def run_to_sql(conn: psycopg.Connection, db: Db, bf: BenchFile, repeat: int, max_rows: int | None) -> Method:
    """Time ``pd.read_csv(gz)`` + ``DataFrame.to_sql`` (default method, chunksize 10,000).

    :param max_rows: load only the first ``max_rows`` rows and extrapolate the full time from
        their rows/s (labelled as extrapolated); None loads everything.
    """
    import pandas as pd
    import sqlalchemy as sa

    spec = bf.spec
    name = f"{spec.table}_pandas"
    table = f"{STAGING_SCHEMA}.{name}"
    nrows = max_rows if max_rows and max_rows < bf.rows else None
    method = Method(
        "pandas to_sql",
        note=f"read_csv(dtype=str) + to_sql(chunksize={TO_SQL_CHUNKSIZE:,}, "
        "method=None), table created by pandas (LOGGED, text)",
    )
    engine = sa.create_engine(db.sa_url)
    try:
        for i in range(repeat):
            reset_table(conn, table)
            started = time.perf_counter()
            df = pd.read_csv(
                bf.gz,
                sep="\t",
                na_values="\\N",
                keep_default_na=False,
                quoting=csv.QUOTE_NONE,
                dtype=str,
                nrows=nrows,
            )
            read = time.perf_counter() - started
            df.to_sql(
                name,
                engine,
                schema=STAGING_SCHEMA,
                if_exists="replace",
                index=False,
                chunksize=TO_SQL_CHUNKSIZE,
            )
            seconds = time.perf_counter() - started
            loaded = len(df)
            del df
            rows = count_rows(conn, table)
            expected = nrows or bf.rows
            if rows != expected or loaded != expected:
                method.failed = f"loaded {rows:,} rows (DataFrame {loaded:,}), expected {expected:,}"
                print(f"  run {i + 1} to_sql:       FAILED: {method.failed}", flush=True)
                return method
            if nrows:
                method.extrapolated_from = nrows
                full = seconds * bf.rows / nrows
                print(
                    f"  run {i + 1} to_sql:       {seconds:7.3f} s for the first {nrows:,} rows "
                    f"(read_csv {read:.3f} s) -> EXTRAPOLATED {full:.1f} s for {bf.rows:,}",
                    flush=True,
                )
                seconds = full
            else:
                print(
                    f"  run {i + 1} to_sql:       {seconds:7.3f} s (read_csv {read:.3f} s, "
                    f"to_sql {seconds - read:.3f} s)",
                    flush=True,
                )
            method.seconds.append(seconds)
    finally:
        engine.dispose()
    method.rows = bf.rows
    reset_table(conn, table)
    return method


# --- report -------------------------------------------------------------------------------------


def machine_facts(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Facts that explain the figures: CPU, memory, versions, PostgreSQL settings."""
    model = ""
    mem = ""
    try:
        model = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "",
        )
        mem_kib = next(
            int(ln.split()[1])
            for ln in Path("/proc/meminfo").read_text().splitlines()
            if ln.startswith("MemTotal:")
        )
        mem = f"{mem_kib / MIB:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    settings = ", ".join(
        f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}"
        for name in ("shared_buffers", "max_wal_size", "wal_level", "synchronous_commit", "fsync")
    )

    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
            return out.splitlines()[0].strip() if out else "?"
        except (OSError, subprocess.SubprocessError):
            return "not installed"

    import pandas as pd
    import sqlalchemy as sa

    return [
        ("CPU", f"{model or platform.processor() or '?'}; {cores} logical cores ({usable} usable)"),
        ("memory", mem or "?"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("PostgreSQL", conn.execute("SELECT version()").fetchone()[0]),
        ("PostgreSQL settings", settings),
        ("Python", platform.python_version()),
        ("psycopg / libpq", f"{psycopg.__version__} / {psycopg.pq.version()}"),
        ("pandas / SQLAlchemy", f"{pd.__version__} / {sa.__version__}"),
        ("psql", version(["psql", "--version"])),
        ("pgloader", version(["pgloader", "--version"])),
    ]


def _rate(rows: int, seconds: float | None) -> str:
    return f"{rows / seconds:,.0f}" if seconds else "-"


def _secs(method: Method | None) -> str:
    if method is None:
        return "skipped"
    if method.failed:
        return "FAILED"
    return f"{method.median:.3f}" if method.median is not None else "-"


def _ratio(slow: Method | None, fast: Method | None) -> float | None:
    if not slow or not fast or slow.failed or fast.failed or not slow.median or not fast.median:
        return None
    return slow.median / fast.median


def _fmt_ratio(value: float | None, target: float | None) -> str:
    """``value`` as ``N.NNx`` with whether ``target`` is met; ``target=None``: informational."""
    if value is None:
        return "n/a"
    if target is None:
        return f"{value:.2f}x (informational, no target)"
    return f"{value:.2f}x (target >= {target:g}x: {'met' if value >= target else 'NOT met'})"


METHOD_KEYS = (
    "ours_landing",
    "ours_published",
    "ours_logged",
    "psql",
    "psql_keyed",
    "psql_key_after",
    "pgloader",
    "to_sql",
)
#: Parallel-COPY targets (issue 17): ours vs psql \copy into the same keyed LOGGED table.
TARGET_UNLOGGED_VS_PSQL_KEYED = 1.5
TARGET_LOGGED_VS_PSQL_KEYED = 1.2


@dataclass
class FileReport:
    """All results for one input file.

    :param default_streams: what :func:`~dataset_ops.imdb.load.auto_streams` picks for the file
        (the loader's default); the single-method figures and the older targets use it.
    """

    bf: BenchFile
    default_streams: int = 1
    methods: dict[str, Method | None] = field(default_factory=dict)
    ours: dict[tuple[int, bool], OursVariant] = field(default_factory=dict)
    ours_memory: dict = field(default_factory=dict)
    pgloader_rss: float | None = None


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def print_report(
    reports: list[FileReport], facts: list[tuple[str, str]], repeat: int, to_sql_repeat: int
) -> None:
    """Print per-file figures, ratios, memory, machine facts and markdown summary tables."""
    print("\n" + "=" * 100)
    print(
        f"Results: median of {repeat} runs (to_sql: median of {to_sql_repeat}); "
        "times in seconds, rates in rows/s"
    )
    print(
        f"psql \\copy options (the loader's COPY_OPTIONS verbatim; psql -1 makes FREEZE valid): "
        f"({COPY_OPTIONS})"
    )
    print(
        "pgloader: LOAD COPY FROM stdin (cols) ... TARGET TABLE imdb_staging.<table>_pgloader "
        "TARGET COLUMNS (cols) WITH skip header = 1, delimiter '\\t', null '\\N'; defaults otherwise"
    )
    for rep in reports:
        bf, m = rep.bf, rep.methods
        print(
            f"\n{bf.spec.name} [{bf.key}]: {bf.rows:,} rows, {bf.gz_bytes / MIB:.1f} MiB gzipped, "
            f"{bf.tsv_bytes / MIB:.1f} MiB decompressed ({bf.gz}); auto_streams picks {rep.default_streams}"
        )
        lines: list[Method | None] = []
        for variant in rep.ours.values():
            lines += [variant.landing, variant.published]
        lines += [m.get(k) for k in ("psql", "psql_keyed", "psql_key_after", "pgloader", "to_sql")]
        for method in lines:
            if method is None:
                continue
            runs = ", ".join(f"{s:.3f}" for s in method.seconds)
            extra = (
                f" [EXTRAPOLATED from the first {method.extrapolated_from:,} rows]"
                if method.extrapolated_from
                else ""
            )
            rate = _rate(bf.rows, method.median)
            print(
                f"  {method.name:<32} {_secs(method):>8} s {rate:>10} rows/s{extra}"
                f"  runs [{runs}]  -- {method.note}" + (f"  FAILED: {method.failed}" if method.failed else "")
            )
        for variant in rep.ours.values():
            print(
                f"  {variant.label}, median split: COPY {variant.landing.median or 0:.3f} s + after COPY "
                f"(PK/indexes{'/SET LOGGED' if variant.logged and bf.spec.array_columns else ''}/rename/"
                f"ANALYZE) {_median(variant.finish):.3f} s + publish {_median(variant.publishing):.3f} s; "
                f"peak RSS {max(variant.peaks) if variant.peaks else 0:.0f} MiB"
            )
            print(
                f"  {variant.label}, where the CPU went (medians): this process "
                f"{_median(variant.client_cpu):.2f} CPU s; machine cores busy during COPY "
                f"{_median(variant.copy_cores):.2f}, after COPY {_median(variant.finish_cores):.2f} "
                f"(of {os.cpu_count()})"
            )
        keyed, key_after = m.get("psql_keyed"), m.get("psql_key_after")
        for variant in rep.ours.values():
            target = TARGET_LOGGED_VS_PSQL_KEYED if variant.logged else TARGET_UNLOGGED_VS_PSQL_KEYED
            print(
                f"  speed {variant.label + ' published vs psql keyed LOGGED:':<56} "
                f"{_fmt_ratio(_ratio(keyed, variant.published), target)}; "
                f"vs psql key after: {_fmt_ratio(_ratio(key_after, variant.published), None)}"
            )
        r1 = _ratio(m.get("psql"), m.get("ours_landing"))
        r2 = _ratio(m.get("pgloader"), m.get("ours_published"))
        r3 = _ratio(m.get("to_sql"), m.get("ours_published"))
        r2_logged = _ratio(m.get("pgloader"), m.get("ours_logged"))
        r3_logged = _ratio(m.get("to_sql"), m.get("ours_logged"))
        n = rep.default_streams
        speeds = [
            (f"ours ({n} streams) landing vs psql \\copy (psql time / ours COPY time)", r1, 0.9),
            (f"ours ({n} streams) published vs pgloader landing", r2, 3),
            (f"ours ({n} streams) published vs pandas to_sql", r3, 5),
            (f"ours ({n} streams) published LOGGED vs pgloader landing", r2_logged, None),
            (f"ours ({n} streams) published LOGGED vs pandas to_sql", r3_logged, None),
        ]
        for label, value, target in speeds:
            print(f"  speed {label + ':':<72} {_fmt_ratio(value, target)}")
        mem = rep.ours_memory
        if mem:
            how = (
                f"peak reset to the current RSS, <= {mem['rss_before']:.0f} MiB, right before each run"
                if mem["reset"]
                else "peak since process start: clear_refs reset unavailable"
            )
            print(
                f"  peak RSS of this Python process during our loader runs: see the split lines; "
                f"ru_maxrss {mem['maxrss_after']:.0f} MiB ({how})"
            )
        if rep.pgloader_rss is not None:
            print(
                f"  peak RSS of the pgloader process (/usr/bin/time -v, max over runs): "
                f"{rep.pgloader_rss:.0f} MiB"
            )

    print("\nMachine")
    for name, value in facts:
        print(f"  {name:<20} {value}")

    print("\nMarkdown summary\n")
    print(
        f"Median of {repeat} runs (pandas `to_sql`: {to_sql_repeat}); rows/s = file rows / time; "
        "ours = the loader's default stream count (auto_streams).\n"
    )
    print(
        "| file | rows | ours: COPY landing | ours: published | ours: published LOGGED | psql `\\copy` "
        "| psql `\\copy` keyed LOGGED | pgloader | pandas `to_sql` |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rep in reports:
        cells = []
        for key in (
            "ours_landing",
            "ours_published",
            "ours_logged",
            "psql",
            "psql_keyed",
            "pgloader",
            "to_sql",
        ):
            method = rep.methods.get(key)
            if method is None or method.failed or method.median is None:
                cells.append("skipped" if method is None else "failed")
                continue
            star = "\\*" if method.extrapolated_from else ""
            cells.append(f"{method.median:.2f} s{star} · {rep.bf.rows / method.median / 1000:,.0f} k rows/s")
        print(f"| {rep.bf.spec.name} [{rep.bf.key}] | {rep.bf.rows:,} | " + " | ".join(cells) + " |")
    print(
        "\n| file | ours landing vs psql `\\copy` (≥ 0.9x) | ours published vs pgloader (≥ 3x) "
        "| ours published vs `to_sql` (≥ 5x) | ours published LOGGED vs pgloader (no target) "
        "| ours published LOGGED vs `to_sql` (no target) | pgloader peak RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for rep in reports:
        m = rep.methods
        ratios = [
            _ratio(m.get("psql"), m.get("ours_landing")),
            _ratio(m.get("pgloader"), m.get("ours_published")),
            _ratio(m.get("to_sql"), m.get("ours_published")),
            _ratio(m.get("pgloader"), m.get("ours_logged")),
            _ratio(m.get("to_sql"), m.get("ours_logged")),
        ]
        cells = [f"{r:.2f}x" if r is not None else "n/a" for r in ratios]
        rss = f"{rep.pgloader_rss:.0f} MiB" if rep.pgloader_rss is not None else "n/a"
        print(f"| {rep.bf.spec.name} [{rep.bf.key}] | " + " | ".join(cells) + f" | {rss} |")

    print(
        "\nParallel COPY: ours by stream count against psql `\\copy` into the same keyed LOGGED table "
        f"(targets: UNLOGGED default ≥ {TARGET_UNLOGGED_VS_PSQL_KEYED:g}x, LOGGED ≥ "
        f"{TARGET_LOGGED_VS_PSQL_KEYED:g}x) and, informational, psql `\\copy` with the key built after.\n"
    )
    print(
        "| file | streams | COPY | published | published LOGGED | published vs psql keyed "
        "| LOGGED vs psql keyed | published vs psql key after | LOGGED vs psql key after | peak RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rep in reports:
        keyed, key_after = rep.methods.get("psql_keyed"), rep.methods.get("psql_key_after")
        for n in sorted({s for s, _ in rep.ours}):
            plain, logged = rep.ours.get((n, False)), rep.ours.get((n, True))
            if plain is None or logged is None:
                continue
            cells = [
                f"{plain.landing.median:.2f} s" if plain.landing.median else "-",
                f"{plain.published.median:.2f} s" if plain.published.median else "-",
                f"{logged.published.median:.2f} s" if logged.published.median else "-",
            ]
            for base, variant in ((keyed, plain), (keyed, logged), (key_after, plain), (key_after, logged)):
                r = _ratio(base, variant.published)
                cells.append(f"{r:.2f}x" if r is not None else "n/a")
            peak = max(plain.peaks + logged.peaks) if plain.peaks + logged.peaks else None
            cells.append(f"{peak:.0f} MiB" if peak is not None else "n/a")
            auto = " (auto)" if n == rep.default_streams else ""
            print(f"| {rep.bf.spec.name} [{rep.bf.key}] | {n}{auto} | " + " | ".join(cells) + " |")
    for rep in reports:
        keyed, key_after = rep.methods.get("psql_keyed"), rep.methods.get("psql_key_after")
        print(
            f"\n{rep.bf.spec.name} [{rep.bf.key}]: psql `\\copy` keyed LOGGED {_secs(keyed)} s, "
            f"psql `\\copy` key after {_secs(key_after)} s, "
            f"psql `\\copy` landing {_secs(rep.methods.get('psql'))} s"
        )
    print(
        "\nours: published = UNLOGGED published table (the loader's default: emptied by a crash, reloaded "
        "by the next run, not replicated); published LOGGED = `logged=True` (crash-safe, replicated). "
        "Peak RSS: VmHWM of this process per run, max over the runs of that stream count."
    )
    if any(m and m.extrapolated_from for rep in reports for m in rep.methods.values()):
        print("\n\\* extrapolated from the rows/s of a partial load.")


# --- main ---------------------------------------------------------------------------------------


def _streams_list(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated stream counts expected, not {text!r}") from None
    if not values or not all(1 <= v <= MAX_STREAMS for v in values):
        raise argparse.ArgumentTypeError(f"stream counts must be 1 to {MAX_STREAMS}, not {text!r}")
    return values


FILE_KEYS = ("ratings", "basics", "ratings-scaled")


def main(argv: list[str] | None = None) -> int:
    """Prepare the inputs, run every method on every file, print the figures; returns exit status 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=FILE_KEYS,
        nargs="+",
        help="benchmark these files only (default: all three)",
    )
    parser.add_argument(
        "--rows", type=int, default=2_000_000, help="rows of the scaled title.basics file (default 2,000,000)"
    )
    parser.add_argument(
        "--scaled-rows",
        type=int,
        default=20_000_000,
        help="rows of the scaled title.ratings file (default 20,000,000)",
    )
    parser.add_argument(
        "--streams",
        type=_streams_list,
        default=[1, 2, 4],
        help="COPY stream counts of our loader, comma-separated (default 1,2,4; the count "
        "auto_streams picks for a file is added)",
    )
    parser.add_argument(
        "--dsn",
        default=DEFAULT_DSN,
        help=f"libpq conninfo of a maintenance database on the server (default "
        f"{DEFAULT_DSN!r}); the benchmark creates and drops database {BENCH_DB} there",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per method (median reported; default 3)")
    parser.add_argument("--to-sql-repeat", type=int, default=1, help="runs of pandas to_sql (default 1)")
    parser.add_argument(
        "--to-sql-rows",
        type=int,
        default=None,
        help="load only the first N rows with to_sql and extrapolate (default: all rows)",
    )
    parser.add_argument("--skip-to-sql", action="store_true", help="skip pandas to_sql")
    parser.add_argument("--skip-pgloader", action="store_true", help="skip pgloader")
    args = parser.parse_args(argv)

    wall_start = time.perf_counter()
    load_start = os.getloadavg()
    CACHE.mkdir(parents=True, exist_ok=True)
    only = args.only or FILE_KEYS
    files = []
    if "ratings" in only:
        files.append(prepare_ratings())
    if "basics" in only:
        files.append(generate_basics(args.rows))
    if "ratings-scaled" in only:
        files.append(generate_ratings_scaled(args.scaled_rows))

    use_pgloader = not args.skip_pgloader and shutil.which("pgloader") is not None
    if not args.skip_pgloader and not use_pgloader:
        print("pgloader not found: skipped (Debian: apt-get install pgloader, or `make bench`)")
    if shutil.which("psql") is None:
        raise SystemExit("psql not found (Debian: apt-get install postgresql-client)")

    db = make_db(args.dsn)
    create_database(db)
    reports = [FileReport(bf, default_streams=auto_streams(bf.gz_bytes)) for bf in files]
    try:
        with psycopg.connect(db.conninfo, autocommit=True) as conn:
            ensure_schemas(conn)
            # Rounds: each round runs every variant of ours, the three psql methods and pgloader
            # once, so background load on a shared machine hits every method alike. pandas
            # (imported only then) runs last.
            for rep in reports:
                streams = sorted({*args.streams, rep.default_streams})
                print(
                    f"\n[{rep.bf.key}] {rep.bf.rows:,} rows: ours with {streams} streams (UNLOGGED, "
                    "LOGGED), psql \\copy (landing, keyed LOGGED, key after)"
                    + (", pgloader" if use_pgloader else ""),
                    flush=True,
                )
                ours = OursRunner(conn, rep.bf, streams)
                psql_runners = {
                    key: PsqlRunner(conn, db, rep.bf, mode)
                    for key, mode in (
                        ("psql", "landing"),
                        ("psql_keyed", "keyed"),
                        ("psql_key_after", "key-after"),
                    )
                }
                pgloader_runner = PgloaderRunner(conn, db, rep.bf) if use_pgloader else None
                for i in range(args.repeat):
                    ours.run(i)
                    for runner in psql_runners.values():
                        runner.run(i)
                    if pgloader_runner:
                        pgloader_runner.run(i)
                rep.ours_memory = ours.close()
                rep.ours = ours.variants
                default = ours.variants[(rep.default_streams, False)]
                rep.methods["ours_landing"] = default.landing
                rep.methods["ours_published"] = default.published
                rep.methods["ours_logged"] = ours.variants[(rep.default_streams, True)].published
                for key, runner in psql_runners.items():
                    runner.close()
                    rep.methods[key] = runner.method
                rep.methods["pgloader"] = None
                if pgloader_runner:
                    rep.pgloader_rss = pgloader_runner.close()
                    rep.methods["pgloader"] = pgloader_runner.method
            for rep in reports:
                rep.methods["to_sql"] = None
                if not args.skip_to_sql:
                    print(f"\n[{rep.bf.key}] pandas to_sql", flush=True)
                    rep.methods["to_sql"] = run_to_sql(conn, db, rep.bf, args.to_sql_repeat, args.to_sql_rows)
            facts = machine_facts(conn)
            facts.append(
                (
                    "load average",
                    "start {:.2f} {:.2f} {:.2f}; end {:.2f} {:.2f} {:.2f} "
                    "(1/5/15 min; other work on the machine skews figures)".format(
                        *load_start, *os.getloadavg()
                    ),
                )
            )
    finally:
        drop_database(db)
    print_report(reports, facts, args.repeat, args.to_sql_repeat)
    print(
        f"\ntotal wall time of this benchmark run: {time.perf_counter() - wall_start:.1f} s "
        f"(database {BENCH_DB} dropped)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
