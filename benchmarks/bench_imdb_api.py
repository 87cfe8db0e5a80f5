"""Benchmark: the IMDb read API (:mod:`dataset_ops.imdb.api_server`) against a seed-style one.

Run: ``.venv/bin/python benchmarks/bench_imdb_api.py [--workers 2] [--duration 20]``. Prints
figures and ratios only; never asserts timings.

Data (prepared once, reused while its marker matches; ``--rebuild`` forces it) in its own
database ``--db`` (default ``imdb_bench_api``, created if missing; no other database is touched):

* ``title.ratings``: the complete dump of 2018-03-12 (``../shared/data/imdb/``, 812,970 rows),
  loaded by the suite's loader (:func:`dataset_ops.imdb.load.stage_file` + ``publish``).
* ``title.basics``: ``--rows`` generated rows (default 2,000,000), loaded the same way. Every
  rated tconst is a title; the other ids are unused numbers below the highest rated one, so the
  file is in tconst order like IMDb's. Words of ``primaryTitle`` are drawn, with their
  frequencies, from the titles of the real 50,001-row slice ``head-2025-08/title.basics.tsv``;
  ``originalTitle`` differs for 8 % of titles; ``titleType``, ``genres`` and ``startYear``
  follow IMDb's overall proportions (about two thirds episodes; years weighted towards recent
  ones, 10 % unknown). Seeded: the same file every time.
* The other five tables exist but are empty (loaded from header-only files), so the title route
  runs all its sub-queries. Then :func:`dataset_ops.imdb.queries.ensure_read_indexes` builds the
  search indexes and the word index ``title_words`` (its time is printed; on a reused database
  it runs too and builds only what is missing), and :data:`SEED_INDEXES` the seed-style's
  trigram indexes.

Servers, each in turn on the same database, same uvicorn settings (``--workers`` processes,
uvloop, httptools, no access log):

* **ours**: ``python -m dataset_ops.imdb.api_server`` (FastAPI routes, psycopg 3
  ``AsyncConnectionPool`` of ``--pool-size`` per worker, JSON built in PostgreSQL / orjson),
  with a real Airflow JWT on every request (made here with Airflow's ``JWTGenerator`` and the
  server's ``AIRFLOW__API_AUTH__JWT_SECRET``).
* **seed-style**: :func:`create_seed_app` below, written as the seed built its API: FastAPI sync
  endpoints, SQLAlchemy ORM models, a ``Session`` per request (``Depends(get_db)``), pydantic
  response models from ORM objects, no authentication; the engine's pool sized to FastAPI's 40
  threads (with SQLAlchemy's default 5 + 10 one worker starves under 64 connections). By id
  it answers less than ours: the title and its rating in one joined ORM query (ours also reads
  akas, crew, principals and episodes). Search has the same filters as ours; its ``q`` is the
  seed's substring match (``ILIKE '%q%'`` on primaryTitle or originalTitle, served by the trigram
  indexes of :data:`SEED_INDEXES`) where ours matches whole words through ``title_words`` (so
  ours finds a subset: ``love`` is not found in ``Lovely``); ordered by tconst and paged with
  ``OFFSET``.

Load: wrk (``/usr/bin/wrk``, ``--threads`` threads, ``--connections`` connections, ``--duration``
seconds after a ``--warmup`` run) with a Lua script cycling through a fixed list of request
paths, different per thread:

* ``by-id``: 20,000 tconsts drawn from ``title.basics`` (all exist; about 40 % have a rating);
* ``search``: 5,000 first-page searches: a word drawn with its frequency from the titles (70 %),
  with ``titleType`` (30 %), ``genre`` (20 %), a ``startYear`` range (20 %) or sorted by year
  (15 % of ours; the seed-style has no year sort and gets tconst order); filters without a word
  for the rest.

The Lua ``done`` hook prints requests/s, p50/p95/p99 latency and non-2xx/socket errors. Also
printed per run: the server processes' CPU time per request, how busy both CPUs were (all
processes: server, PostgreSQL, wrk and whatever else ran) and the load average before and
after: other work shares the 2 cores.
"""

from __future__ import annotations

import argparse
import gzip
import io
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins"))

SHARED_IMDB = REPO.parent / "shared" / "data" / "imdb"
RATINGS_GZ = SHARED_IMDB / "title.ratings.2018-03-12.full.tsv.gz"
BASICS_SLICE = SHARED_IMDB / "head-2025-08" / "title.basics.tsv"
CACHE = REPO / ".data" / "bench" / "imdb_api"
DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
GENERATOR_VERSION = 1
WRK = "/usr/bin/wrk"
JWT_SECRET = "bench-imdb-api-secret-" + "x" * 48

#: IMDb title types and their share of title.basics (approximate, 2025 dump).
TITLE_TYPES = {
    "tvEpisode": 0.66,
    "short": 0.095,
    "movie": 0.065,
    "video": 0.028,
    "tvSeries": 0.026,
    "tvMovie": 0.014,
    "tvMiniSeries": 0.006,
    "tvSpecial": 0.005,
    "videoGame": 0.004,
    "tvShort": 0.003,
}
#: IMDb genres, weighted by how often titles carry them (approximate).
GENRES = {
    "Drama": 30, "Comedy": 25, "Documentary": 14, "Talk-Show": 10, "Reality-TV": 8, "Family": 7,
    "Romance": 7, "Animation": 7, "Action": 6, "Crime": 6, "News": 6, "Short": 5, "Adventure": 5,
    "Game-Show": 4, "Music": 4, "Thriller": 4, "Horror": 3, "Fantasy": 3, "Mystery": 3, "Biography": 2,
    "History": 2, "Sport": 2, "Sci-Fi": 2, "Adult": 2, "Musical": 1, "War": 1, "Western": 1, "Film-Noir": 0.2,
}  # fmt: skip
BASICS_HEADER = (
    "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres"
)


# --- data --------------------------------------------------------------------------------------
def title_words() -> tuple[list[str], list[int]]:
    """Words of the real slice's primaryTitle values and their counts (the generator's vocabulary)."""
    counts: Counter[str] = Counter()
    with open(BASICS_SLICE, encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            counts.update(line.split("\t")[2].split())
    words = sorted(counts)
    return words, [counts[w] for w in words]


def _take(pool, k: int, rng: random.Random, words: list[str], cum: list[float]) -> list[str]:
    """``k`` words from the pre-drawn ``pool`` (drawing more when it runs out)."""
    got = list(itertools.islice(pool, k))
    return got + rng.choices(words, cum_weights=cum, k=k - len(got))


def rated_tconsts() -> list[str]:
    with gzip.open(RATINGS_GZ, "rt", encoding="utf-8") as fh:
        next(fh)
        return [line.split("\t", 1)[0] for line in fh]


def generate_basics(path: Path, rows: int, seed: int = 17) -> None:
    """Write the generated ``title.basics.tsv.gz`` (see the module docstring)."""
    rng = random.Random(seed)
    rated = rated_tconsts()
    numbers = {int(t[2:]) for t in rated}
    top = max(numbers)
    if rows < len(numbers):
        raise SystemExit(f"--rows must be at least the {len(numbers):,} rated titles")
    while len(numbers) < rows:
        numbers.update(rng.randint(1, top) for _ in range(rows - len(numbers)))
    ids = sorted(numbers)
    words, weights = title_words()
    word_cum = list(itertools.accumulate(weights))
    types, type_cum = list(TITLE_TYPES), list(itertools.accumulate(TITLE_TYPES.values()))
    genres, genre_cum = list(GENRES), list(itertools.accumulate(GENRES.values()))
    years = list(range(1890, 2026))
    year_cum = list(itertools.accumulate(1.045 ** (y - 1890) for y in years))
    lengths = (1, 2, 2, 3, 3, 3, 4, 5, 6)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    started = time.monotonic()
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1, newline="\n") as out:
        out.write(BASICS_HEADER + "\n")
        for start in range(0, len(ids), 100_000):
            chunk = ids[start : start + 100_000]
            n = len(chunk)
            kinds = rng.choices(types, cum_weights=type_cum, k=n)
            starts = rng.choices(years, cum_weights=year_cum, k=n)
            pool = iter(rng.choices(words, cum_weights=word_cum, k=n * 5))
            lines = []
            for number, kind, year in zip(chunk, kinds, starts, strict=True):
                title = " ".join(_take(pool, rng.choice(lengths), rng, words, word_cum))
                original = title
                if rng.random() < 0.08:
                    original = " ".join(_take(pool, rng.choice(lengths[:6]), rng, words, word_cum))
                start_year = "\\N" if rng.random() < 0.10 else str(year)
                end_year = "\\N"
                if kind in ("tvSeries", "tvMiniSeries") and start_year != "\\N" and rng.random() < 0.6:
                    end_year = str(min(2025, year + rng.randint(0, 12)))
                runtime = "\\N" if rng.random() < 0.5 else str(rng.randint(1, 30 if kind == "short" else 180))
                if rng.random() < 0.05:
                    genre = "\\N"
                else:
                    picked = rng.choices(genres, cum_weights=genre_cum, k=rng.choice((1, 1, 2, 3)))
                    genre = ",".join(sorted(set(picked)))
                adult = "1" if rng.random() < 0.02 else "0"
                lines.append(
                    f"tt{number:07d}\t{kind}\t{title}\t{original}\t{adult}\t{start_year}\t{end_year}\t"
                    f"{runtime}\t{genre}\n"
                )
            out.write("".join(lines))
    tmp.rename(path)
    print(f"generated {path.name}: {len(ids):,} rows in {time.monotonic() - started:.1f} s")


#: The seed-style search's own indexes: trigram GIN for its ``ILIKE '%q%'`` on primaryTitle and on
#: originalTitle where it differs (its condition matches that partial index). Ours searches words
#: through ``imdb.title_words`` and needs none of them.
SEED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS bench_seed_primarytitle_trgm_idx ON imdb.title_basics "
    "USING gin (primarytitle gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS bench_seed_originaltitle_trgm_idx ON imdb.title_basics "
    "USING gin (originaltitle gin_trgm_ops) WHERE originaltitle <> primarytitle",
)


def build_indexes(conn) -> None:
    """:func:`dataset_ops.imdb.queries.ensure_read_indexes` (timed: the indexes and the word
    index ``title_words`` it creates, when missing), then :data:`SEED_INDEXES`."""
    from dataset_ops.imdb.queries import ensure_read_indexes

    started = time.monotonic()
    created = ensure_read_indexes(conn)
    if created:
        print(f"ensure_read_indexes: built {', '.join(created)} in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    with conn.transaction():
        conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
        for statement in SEED_INDEXES:
            conn.execute(statement)
    print(f"seed-style trigram indexes present ({time.monotonic() - started:.1f} s)")


def prepare_database(admin_dsn: str, db: str, rows: int, rebuild: bool) -> str:
    """Create (or reuse) the benchmark database and return its DSN."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from dataset_ops.imdb import load
    from dataset_ops.imdb.datasets import IMDB_FILES, imdb_file

    marker = f"dataset-ops bench_imdb_api v{GENERATOR_VERSION} rows={rows}"
    params = conninfo_to_dict(admin_dsn)
    dsn = make_conninfo(**{**params, "dbname": db})
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        found = admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (db,)
        ).fetchone()
        if found is not None and found[0] == marker and not rebuild:
            print(f"reusing database {db} ({marker})")
            with psycopg.connect(dsn, autocommit=True) as conn:
                build_indexes(conn)  # what a newer version of the code needs, if missing
            return dsn
        if found is not None:
            admin.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{db}"')
    basics = CACHE / f"title.basics.{rows}.v{GENERATOR_VERSION}.tsv.gz"
    if not basics.exists():
        generate_basics(basics, rows)
    with psycopg.connect(dsn, autocommit=True) as conn:
        load.ensure_schemas(conn)
        staged = []
        for name, path in (("title.ratings", RATINGS_GZ), ("title.basics", basics)):
            with open(path, "rb") as fh:
                result = load.stage_file(conn, imdb_file(name), fh)
            print(f"loaded {name}: {result.rows:,} rows in {result.total_seconds:.1f} s")
            staged.append(result.to_dict())
        for name, spec in IMDB_FILES.items():
            if name not in ("title.ratings", "title.basics"):
                empty = io.BytesIO(gzip.compress(spec.header + b"\n"))
                staged.append(load.stage_file(conn, spec, empty).to_dict())
        load.publish(conn, staged)
        build_indexes(conn)
        conn.execute("VACUUM ANALYZE imdb.title_basics")
        conn.execute("VACUUM ANALYZE imdb.title_ratings")
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f"COMMENT ON DATABASE \"{db}\" IS '{marker}'")
    return dsn


def request_paths(dsn: str, seed: int = 5) -> dict[str, dict[str, list[str]]]:
    """{scenario: {"ours": [paths], "seed": [paths]}} for wrk (see the module docstring)."""
    import psycopg

    rng = random.Random(seed)
    with psycopg.connect(dsn) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT tconst FROM imdb.title_basics TABLESAMPLE SYSTEM (2) REPEATABLE (7)"
            )
        ]
    ids = rng.sample(ids, min(20_000, len(ids)))
    words, weights = title_words()
    words = [
        (w, c) for w, c in zip(words, weights, strict=True) if len(w) >= 3 and re.fullmatch(r"[\w'-]+", w)
    ]
    vocab, vocab_cum = [w for w, _ in words], list(itertools.accumulate(c for _, c in words))
    ours, seed_paths = [], []
    types = list(TITLE_TYPES)
    genres = list(GENRES)
    from urllib.parse import urlencode

    for _ in range(5_000):
        params: dict[str, object] = {}
        if rng.random() < 0.7:
            params["q"] = rng.choices(vocab, cum_weights=vocab_cum)[0]
        if rng.random() < 0.3 or not params:
            params["titleType"] = rng.choices(types, list(TITLE_TYPES.values()))[0]
        if rng.random() < 0.2:
            params["genre"] = rng.choices(genres, list(GENRES.values()))[0]
        if rng.random() < 0.2:
            low = rng.randint(1900, 2020)
            params.update(startYearFrom=low, startYearTo=low + rng.randint(0, 15))
        params["limit"] = 20
        mine = dict(params)
        if rng.random() < 0.15:
            mine["sort"] = "startYear"
        ours.append("/imdb/titles?" + urlencode(mine))
        seed_paths.append("/titles/?" + urlencode({**params, "skip": 0}))
    return {
        "by-id": {"ours": [f"/imdb/titles/{t}" for t in ids], "seed": [f"/titles/{t}" for t in ids]},
        "search": {"ours": ours, "seed": seed_paths},
    }


# --- the seed-style implementation ---------------------------------------------------------------
def create_seed_app():
    """The API the way the seed built it: FastAPI, SQLAlchemy ORM, a session per request.

    Database: ``$BENCH_SEED_DATABASE_URL`` (a SQLAlchemy URL, ``postgresql+psycopg://...``).
    Routes: ``GET /titles/{tconst}`` (title + rating, one joined ORM query) and ``GET /titles/``
    (filters as ours, ``skip``/``limit`` offset paging, tconst order).
    """
    from fastapi import Depends, FastAPI, HTTPException
    from pydantic import BaseModel, ConfigDict
    from sqlalchemy import (
        Boolean,
        Column,
        ForeignKey,
        Integer,
        Numeric,
        String,
        Text,
        and_,
        create_engine,
        func,
        or_,
    )
    from sqlalchemy.dialects.postgresql import ARRAY
    from sqlalchemy.orm import Session, declarative_base, joinedload, relationship, sessionmaker

    # Sized to the 40 threads FastAPI runs sync endpoints on. With SQLAlchemy's default (5 + 10
    # overflow) one worker under 64 connections starves: requests holding threads wait for
    # connections that only threads can give back, until the pool's 30 s timeout (measured:
    # 3.9 requests/s and 500s). Opened lazily: at most one connection per running request.
    engine = create_engine(os.environ["BENCH_SEED_DATABASE_URL"], pool_size=20, max_overflow=20)
    SessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine)
    Base = declarative_base()

    class TitleRating(Base):
        __tablename__ = "title_ratings"
        __table_args__ = {"schema": "imdb"}
        tconst = Column(String, ForeignKey("imdb.title_basics.tconst"), primary_key=True)
        averageRating = Column("averagerating", Numeric(3, 1))
        numVotes = Column("numvotes", Integer)

    class TitleBasic(Base):
        __tablename__ = "title_basics"
        __table_args__ = {"schema": "imdb"}
        tconst = Column(String, primary_key=True)
        titleType = Column("titletype", String)
        primaryTitle = Column("primarytitle", String)
        originalTitle = Column("originaltitle", String)
        isAdult = Column("isadult", Boolean)
        startYear = Column("startyear", Integer)
        endYear = Column("endyear", Integer)
        runtimeMinutes = Column("runtimeminutes", Integer)
        genres = Column(ARRAY(Text))
        rating = relationship(TitleRating, uselist=False, lazy="joined")

    class RatingOut(BaseModel):
        model_config = ConfigDict(from_attributes=True)
        averageRating: float
        numVotes: int

    class TitleOut(BaseModel):
        model_config = ConfigDict(from_attributes=True)
        tconst: str
        titleType: str | None
        primaryTitle: str | None
        originalTitle: str | None
        isAdult: bool | None
        startYear: int | None
        endYear: int | None
        runtimeMinutes: int | None
        genres: list[str] | None
        rating: RatingOut | None

    def get_db():
        db = SessionLocal()
        try:
            yield db
        finally:
            db.close()

    app = FastAPI(title="seed-style IMDb API")

    @app.get("/titles/{tconst}", response_model=TitleOut)
    def read_title(tconst: str, db: Session = Depends(get_db)):
        title = (
            db.query(TitleBasic)
            .options(joinedload(TitleBasic.rating))
            .filter(TitleBasic.tconst == tconst)
            .first()
        )
        if title is None:
            raise HTTPException(status_code=404, detail="Title not found")
        return title

    @app.get("/titles/", response_model=list[TitleOut])
    def read_titles(
        q: str | None = None,
        titleType: str | None = None,
        genre: str | None = None,
        startYearFrom: int | None = None,
        startYearTo: int | None = None,
        skip: int = 0,
        limit: int = 20,
        db: Session = Depends(get_db),
    ):
        query = db.query(TitleBasic)
        if q:
            pattern = f"%{q}%"
            query = query.filter(
                or_(
                    TitleBasic.primaryTitle.ilike(pattern),
                    and_(
                        TitleBasic.originalTitle != TitleBasic.primaryTitle,
                        TitleBasic.originalTitle.ilike(pattern),
                    ),
                )
            )
        if titleType:
            query = query.filter(TitleBasic.titleType == titleType)
        if genre:
            query = query.filter(TitleBasic.genres.contains([genre]))
        if startYearFrom is not None or startYearTo is not None:
            year = func.coalesce(TitleBasic.startYear, 2147483647)
            query = query.filter(year.between(startYearFrom or 1, startYearTo or 9999))
        return query.order_by(TitleBasic.tconst).offset(skip).limit(limit).all()

    return app


# --- running -----------------------------------------------------------------------------------
LUA = r"""
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local auth = os.getenv("BENCH_AUTH")
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  i = math.floor(#paths * id / 4)
  if auth ~= nil and auth ~= "" then wrk.headers["Authorization"] = "Bearer " .. auth end
end
function request()
  i = i + 1
  if i > #paths then i = 1 end
  return wrk.format("GET", paths[i])
end
function done(summary, latency, requests)
  local s = summary
  local errors = s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout
  io.write(string.format(
    'BENCH {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.2f, "p95_ms": %.2f, '
    .. '"p99_ms": %.2f, "max_ms": %.2f, "non_2xx": %d, "socket_errors": %d}\n',
    s.requests, s.duration / 1e6, s.requests / (s.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    s.errors.status, errors))
end
"""


def airflow_token() -> str:
    from airflow.api_fastapi.auth.tokens import JWTGenerator

    return JWTGenerator(secret_key=JWT_SECRET, audience="apache-airflow", valid_for=3 * 3600).generate(
        {"sub": "bench"}
    )


def wait_for(url: str, timeout: float = 60.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # answering
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"no answer from {url} within {timeout:.0f} s")


def start_server(kind: str, port: int, workers: int, pool_size: int, dsn: str, env: dict) -> subprocess.Popen:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    user, host, dbname = params.get("user", "postgres"), params.get("host", "127.0.0.1"), params["dbname"]
    port_db = params.get("port", "5432")
    env = {**env, "PYTHONPATH": str(REPO / "plugins")}
    if kind == "ours":
        env["AIRFLOW_CONN_IMDB_POSTGRES"] = f"postgresql://{user}@{host}:{port_db}/{dbname}"
        cmd = [sys.executable, "-m", "dataset_ops.imdb.api_server", "--port", str(port),
               "--workers", str(workers), "--pool-size", str(pool_size), "--no-access-log",
               "--log-level", "warning"]  # fmt: skip
        health = f"http://127.0.0.1:{port}/health"
    else:
        env["BENCH_SEED_DATABASE_URL"] = f"postgresql+psycopg://{user}@{host}:{port_db}/{dbname}"
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "bench_imdb_api:create_seed_app", "--app-dir",
               str(REPO / "benchmarks"), "--port", str(port), "--workers", str(workers), "--loop", "uvloop",
               "--http", "httptools", "--no-access-log", "--log-level", "warning"]  # fmt: skip
        health = f"http://127.0.0.1:{port}/titles/tt0000001"
    print("  $ " + " ".join(cmd[1:] if cmd[0] == sys.executable else cmd))
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True)
    try:
        wait_for(health)
    except BaseException:
        stop_server(proc)
        raise
    return proc


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def group_cpu_seconds(pgid: int) -> float:
    import psutil

    total = 0.0
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid:
                t = p.cpu_times()
                total += t.user + t.system
        except (psutil.Error, ProcessLookupError):
            continue
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from ``/proc/stat``."""
    fields = [float(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def run_wrk(url: str, paths_file: Path, lua: Path, args, token: str | None, duration: float) -> dict:
    cmd = [WRK, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{duration:g}s",
           "--timeout", "10s", "-s", str(lua), url]  # fmt: skip
    env = {**os.environ, "BENCH_PATHS": str(paths_file), "BENCH_AUTH": token or ""}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no result: {out.stdout}\n{out.stderr}")
    return {**json.loads(line[6:]), "command": " ".join(cmd)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN of the PostgreSQL server")
    parser.add_argument("--db", default="imdb_bench_api", help="the benchmark's own database")
    parser.add_argument("--rows", type=int, default=2_000_000, help="generated title.basics rows")
    parser.add_argument("--rebuild", action="store_true", help="load the database again")
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="uvicorn worker counts to run")
    parser.add_argument("--pool-size", type=int, default=4, help="ours: connections per worker")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--duration", type=float, default=20, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of wrk before each measured run")
    parser.add_argument("--only", choices=["ours", "seed"], help="run one implementation")
    parser.add_argument("--scenarios", nargs="+", default=["by-id", "search"], choices=["by-id", "search"])
    parser.add_argument("--port", type=int, default=18091, help="port of the server under test")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--prepare-only", action="store_true", help="prepare the database, run nothing")
    args = parser.parse_args(argv)
    if not Path(WRK).exists():
        raise SystemExit(f"{WRK} is missing: apt-get install wrk")

    dsn = prepare_database(args.dsn, args.db, args.rows, args.rebuild)
    if args.prepare_only:
        return 0
    paths = request_paths(dsn)
    token = None
    work = Path(tempfile.mkdtemp(prefix="bench-imdb-api-"))
    lua = work / "paths.lua"
    lua.write_text(LUA)
    env = {**os.environ, "AIRFLOW_HOME": str(work / "airflow"), "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET}
    os.environ.update({k: env[k] for k in ("AIRFLOW_HOME", "AIRFLOW__API_AUTH__JWT_SECRET")})
    token = airflow_token()
    print(f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()}")
    results = []
    kinds = [args.only] if args.only else ["ours", "seed"]
    base = f"http://127.0.0.1:{args.port}"
    for workers in args.workers:
        for kind in kinds:
            print(f"\n{kind}, {workers} worker(s):")
            proc = start_server(kind, args.port, workers, args.pool_size, dsn, env)
            try:
                for scenario in args.scenarios:
                    file = work / f"{kind}-{scenario}.txt"
                    file.write_text("\n".join(paths[scenario][kind]) + "\n")
                    auth = token if kind == "ours" else None
                    run_wrk(base, file, lua, args, auth, args.warmup)
                    load_before = os.getloadavg()[0]
                    cpu0, machine0 = group_cpu_seconds(proc.pid), machine_cpu()
                    result = run_wrk(base, file, lua, args, auth, args.duration)
                    cpu1, machine1 = group_cpu_seconds(proc.pid), machine_cpu()
                    n = max(result["requests"], 1)
                    result.update(
                        impl=kind,
                        workers=workers,
                        scenario=scenario,
                        load_before=load_before,
                        load_after=os.getloadavg()[0],
                        server_cpu_us_per_request=round((cpu1 - cpu0) * 1e6 / n),
                        machine_busy_percent=round(
                            100 * (machine1[0] - machine0[0]) / max(machine1[1] - machine0[1], 1), 1
                        ),
                    )
                    results.append(result)
                    print(
                        f"  {scenario:7s} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:6.1f} ms  "
                        f"p95 {result['p95_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  "
                        f"non-2xx {result['non_2xx']}  socket errors {result['socket_errors']}  "
                        f"server CPU/request {result['server_cpu_us_per_request']} us, "
                        f"machine CPU busy {result['machine_busy_percent']} %  "
                        f"(load {load_before:.2f} -> {result['load_after']:.2f})"
                    )
                    print(f"    $ {result['command']}")
            finally:
                stop_server(proc)
    print("\nsummary (measured while other work ran on the machine):")
    print("| impl | workers | scenario | req/s | p50 ms | p95 ms | p99 ms | non-2xx |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['impl']} | {r['workers']} | {r['scenario']} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | "
            f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['non_2xx']} |"
        )
    by = {(r["impl"], r["workers"], r["scenario"]): r for r in results}
    for workers in args.workers:
        for scenario in args.scenarios:
            ours, seed = by.get(("ours", workers, scenario)), by.get(("seed", workers, scenario))
            if ours and seed and seed["rps"] > 0:
                ratio = ours["rps"] / seed["rps"]
                print(f"ours / seed-style req/s, {scenario}, {workers} worker(s): {ratio:.2f}x")
        ours_id, ours_search = by.get(("ours", workers, "by-id")), by.get(("ours", workers, "search"))
        if ours_id:
            print(
                f"target by-id >= 1,000 req/s and p95 < 50 ms ({workers} worker(s)): "
                f"{ours_id['rps']:,.0f} req/s, p95 {ours_id['p95_ms']:.1f} ms"
            )
        if ours_search:
            print(f"target search p95 < 200 ms ({workers} worker(s)): p95 {ours_search['p95_ms']:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
