#!/usr/bin/env python3
"""Run the IMDb pipeline locally: ``make demo`` (download + load) and ``make airflow`` (the UI).

``make demo`` (``python scripts/demo.py``) needs nothing but the project's virtualenv:

1. **Airflow** gets a home of its own in ``.data/airflow`` (SQLite metadata DB, the project's
   ``dags/`` and ``plugins/``, no examples). ``airflow db migrate`` runs and every pool of
   ``include/pools.json`` is created (a pool that exists is left as it is: its size may be yours).
2. **PostgreSQL**: ``scripts/local_postgres.py`` gives a database ``imdb_demo_<hash>``, named
   after this checkout (:func:`demo_database`: a short hash of the data folder's path, so two
   checkouts on one machine never share it), on the machine's server at 127.0.0.1:5432 if it lets
   ``postgres`` in without a password, else on an embedded PostgreSQL kept in ``.data/postgres``
   (``--embedded-postgres`` skips the machine's server). It becomes the Connection
   ``imdb_postgres``, whose description names the checkout.
3. **Storage** is the folder ``.data/storage`` (Variable ``dataset_ops_storage_root``); the
   staging area of ``staged_upload_validation`` is the folder ``.data/staging`` (Variable
   ``staging_root``): drop files into ``.data/staging/uploads/`` to see them validated.
4. **IMDb source**: the bundled sample ``include/imdb_sample/`` (real IMDb slices, see its
   README), served over HTTP on 127.0.0.1 with stable ETags, as Variable ``imdb_base_url``.
   ``IMDB_BASE_URL=https://datasets.imdbws.com/ make demo`` uses the real dumps instead
   (several GB; the load then takes a long while).

The Variables and the Connection are written into the metadata DB (:func:`store_settings`),
where the UI, the REST API and the ``airflow`` CLI show and change them; no
``AIRFLOW_VAR_*``/``AIRFLOW_CONN_*`` for them is set (one left in the shell, e.g. by an older
``.data/demo.env``, is dropped with a note), so nothing hides a change. The rule on a later run:
a setting still holding what the demo wrote last time (``.data/demo-settings.json``) is updated
(the sample server's port changes per run); one changed since in Airflow is kept and a note says
so; ``IMDB_BASE_URL=...`` is an explicit request and always sets ``imdb_base_url``.
5. ``imdb_download`` then ``imdb_load`` run in this process with ``dag.test()``. Their task logs
   go to ``.data/demo.log``; the terminal gets a line per file (downloaded or unchanged, loaded),
   progress of long transfers, each failed try with its exception, and a summary: rows per
   table, elapsed times, a sample row, and how to go on.

A second run finds nothing new (HTTP 304 for every file, nothing to load) and says so.
``.data/demo.env`` holds the ``export`` lines of this setup (the home, DAG and plugin folders,
no Variable or Connection): ``source .data/demo.env`` and the ``airflow`` CLI works on the same
home and metadata DB. ``--setup-only`` prepares all of this and exits; ``--data-dir DIR`` puts
``.data`` elsewhere (a second demo home; the database name follows the folder).

``make airflow`` (``python scripts/demo.py --ui``) prepares the same home, starts the sample
server again (so a run triggered in the UI works offline) and runs ``airflow standalone`` on
http://localhost:8080 (API server bound to 127.0.0.1, ``parallelism`` 4 to keep memory low; about
1.9 GB in all; ``[api] base_url`` is ``http://localhost:<port>`` unless ``AIRFLOW__API__BASE_URL``
is set, so the links in failure mails lead to this UI) until Ctrl-C, SIGTERM or SIGHUP, which
stop all of Airflow's processes (about 5 s).
Its output goes to ``.data/airflow-standalone.log``; the admin password is printed (it is kept in
``.data/airflow/simple_auth_manager_passwords.json.generated``).

Exit status: 0 done, 1 error (the message says what failed and what to do), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".data"
AIRFLOW_HOME = DATA / "airflow"
STORAGE_ROOT = DATA / "storage"
STAGING_ROOT = DATA / "staging"
SAMPLE_DIR = REPO / "include" / "imdb_sample"
LOG_FILE = DATA / "demo.log"
STANDALONE_LOG = DATA / "airflow-standalone.log"
ENV_FILE = DATA / "demo.env"
SETTINGS_RECORD = DATA / "demo-settings.json"
POOLS_FILE = REPO / "include" / "pools.json"
#: The Connection and Variables the demo writes into the metadata DB.
CONNECTION_ID = "imdb_postgres"
STORAGE_VARIABLE, STAGING_VARIABLE, BASE_URL_VARIABLE = (
    "dataset_ops_storage_root",
    "staging_root",
    "imdb_base_url",
)
UI_READY_TIMEOUT = 180  # seconds to wait for the API server's health endpoint
UI_STOP_TIMEOUT = 60  # seconds `airflow standalone` gets to stop after SIGINT


class DemoError(RuntimeError):
    """A failure with a message telling the user what failed and what to do."""


def demo_database(data_dir: Path) -> str:
    """The demo's PostgreSQL database for the data folder ``data_dir`` (one per checkout):
    ``imdb_demo_`` and the first 8 hex digits of the sha256 of its absolute path."""
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:8]
    return f"imdb_demo_{digest}"


DATABASE = demo_database(DATA)


def use_data_dir(data_dir: Path) -> None:
    """Point every path of the demo (home, storage, staging, logs, env file, database name) at
    ``data_dir`` instead of ``<repo>/.data``; call before anything else."""
    global DATA, AIRFLOW_HOME, STORAGE_ROOT, STAGING_ROOT, LOG_FILE, STANDALONE_LOG, ENV_FILE
    global SETTINGS_RECORD, DATABASE
    DATA = Path(data_dir).resolve()
    AIRFLOW_HOME, STORAGE_ROOT, STAGING_ROOT = DATA / "airflow", DATA / "storage", DATA / "staging"
    LOG_FILE, STANDALONE_LOG = DATA / "demo.log", DATA / "airflow-standalone.log"
    ENV_FILE, SETTINGS_RECORD = DATA / "demo.env", DATA / "demo-settings.json"
    DATABASE = demo_database(DATA)


def _shown(path: Path) -> Path:
    """``path`` relative to the checkout when it is inside it (for messages)."""
    with contextlib.suppress(ValueError):
        return path.relative_to(REPO)
    return path


def _terminal():
    """A handle on the original stdout that stays there while fd 1 is redirected to the log."""
    try:
        return os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8", errors="replace")
    except (OSError, ValueError, AttributeError):
        return sys.stdout


_TERMINAL = _terminal()


def out(message: str = "") -> None:
    """Print to the terminal (the real stdout, even while task output goes to the log)."""
    with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP): carry on regardless
        print(message, file=_TERMINAL, flush=True)


# --- environment --------------------------------------------------------------------------------
def airflow_env() -> dict[str, str]:
    """The Airflow settings of the demo home; set before anything imports airflow."""
    return {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
        # Arrow's C++ default pool is chosen when pyarrow loads: the inference report's memory
        # figures (benchmarks/README.md) are with the system allocator
        "ARROW_DEFAULT_MEMORY_POOL": os.environ.get("ARROW_DEFAULT_MEMORY_POOL", "system"),
    }


def write_env_file(env: dict[str, str]) -> None:
    """``.data/demo.env``: ``export`` lines to use the ``airflow`` CLI on the demo's home."""
    lines = [
        f"# Written by scripts/demo.py: `source {_shown(ENV_FILE)}`, then the airflow CLI uses the demo's",
        "# home and DAGs. The Connection imdb_postgres and the Variables are in the metadata DB",
        "# (`airflow variables list`, `airflow connections get imdb_postgres`): nothing here hides",
        "# them. The bundled sample's HTTP server (Variable imdb_base_url) only runs while",
        "# `make demo` / `make airflow` run.",
        f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"',
    ]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items() if not _is_setting_env(k)]
    # an older demo.env exported these: sourcing this one over it must not keep them
    lines += [f"unset {name}" for name in sorted(setting_env_names())]
    ENV_FILE.write_text("\n".join(lines) + "\n")
    ENV_FILE.chmod(0o600)


def setting_env_names() -> set[str]:
    """The environment variables that would shadow the demo's settings in the metadata DB
    (``AIRFLOW_VAR_<KEY>``, ``AIRFLOW_CONN_<ID>``): Airflow reads them before the DB."""
    keys = (STORAGE_VARIABLE, STAGING_VARIABLE, BASE_URL_VARIABLE)
    return {f"AIRFLOW_VAR_{k.upper()}" for k in keys} | {f"AIRFLOW_CONN_{CONNECTION_ID.upper()}"}


def _is_setting_env(name: str) -> bool:
    return name.upper() in setting_env_names()


def launch_environment(base: dict[str, str], port: int) -> dict[str, str]:
    """The environment ``airflow standalone`` (scheduler, API server, workers) starts with:
    ``base`` without the variables of :func:`setting_env_names` (so the metadata DB, where the
    UI edits them, is what tasks read), plus the demo's process settings. ``[api] base_url``
    (the host of the links in failure mails, ``ti.log_url``) is ``http://localhost:<port>``
    unless ``base`` sets ``AIRFLOW__API__BASE_URL``."""
    env = {k: v for k, v in base.items() if not _is_setting_env(k)}
    env.update(
        {
            # `airflow standalone` starts its components as `airflow ...` from PATH.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
            "AIRFLOW__CORE__PARALLELISM": base.get("AIRFLOW__CORE__PARALLELISM", "4"),
            "AIRFLOW__API__HOST": base.get("AIRFLOW__API__HOST", "127.0.0.1"),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base.get("AIRFLOW__API__BASE_URL") or f"http://localhost:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        }
    )
    return env


def ensure_postgres(embedded_only: bool) -> str:
    """URI of the database :data:`DATABASE` (``imdb_demo_<hash>``) on a local server (see
    ``scripts/local_postgres.py``)."""
    import local_postgres

    try:
        with redirect_fd(2, LOG_FILE, PostgresNotes()):
            return local_postgres.ensure(DATABASE, use_system=not embedded_only)
    except local_postgres.LocalPostgresError as exc:
        raise DemoError(f"no PostgreSQL for the demo: {exc}") from exc


def migrate_airflow_db() -> float:
    """``airflow db migrate`` on the demo home (a subprocess); returns the seconds it took."""
    started = time.monotonic()
    with open(LOG_FILE, "a") as log:
        log.write("\n=== airflow db migrate ===\n")
        log.flush()
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=os.environ.copy(),
            check=False,
        )
    if proc.returncode != 0:
        raise DemoError(
            f"`airflow db migrate` failed (exit {proc.returncode}) for the home {AIRFLOW_HOME}.\n"
            + log_tail(LOG_FILE)
            + f"\nIf the metadata DB is broken, delete {AIRFLOW_HOME} and run `make demo` again "
            "(the IMDb data in PostgreSQL and .data/storage are kept)."
        )
    return time.monotonic() - started


def create_pools() -> list[str]:
    """Every pool of ``include/pools.json`` (``{name: {"slots", "description",
    "include_deferred"}}``) that does not exist yet; an existing pool keeps its slots (they may
    have been changed in the UI). Returns one line per pool for the terminal."""
    from airflow.models.pool import Pool

    lines = []
    for name, spec in json.loads(POOLS_FILE.read_text()).items():
        pool = Pool.get_pool(name)
        if pool is None:
            Pool.create_or_update_pool(
                name, spec["slots"], spec.get("description", ""), spec.get("include_deferred", False)
            )
            lines.append(f"pool {name}: created ({spec['slots']} slots)")
        else:
            lines.append(f"pool {name}: {pool.slots} slots (kept)")
    return lines


def _read_record() -> dict:
    try:
        record = json.loads(SETTINGS_RECORD.read_text())
    except (OSError, ValueError):
        return {"variables": {}, "connections": {}}
    return {"variables": record.get("variables", {}), "connections": record.get("connections", {})}


def store_settings(
    variables: dict[str, str], connections: dict[str, str], force: frozenset[str] = frozenset()
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Write the demo's Variables (key -> value) and Connections (id -> URI) into the metadata DB.

    A setting is written when it is missing, when it still holds what the demo wrote last time
    (recorded in ``demo-settings.json``), or when its key is in ``force``; one changed since in
    the UI, the REST API or the CLI is kept. Returns (the values now in effect, as
    ``{"variables": {...}, "connections": {...}}``, and one note per kept setting).
    """
    # the ORM models (airflow.sdk's Connection and Variable cannot write the metadata DB)
    from airflow.models.connection import Connection
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    record = _read_record()
    effective: dict[str, dict[str, str]] = {"variables": {}, "connections": {}}
    written: dict[str, dict[str, str]] = {"variables": {}, "connections": {}}
    notes = []
    description = f"set by scripts/demo.py for the checkout {REPO} (data folder {DATA})"
    with create_session() as session:
        for key, value in variables.items():
            row = session.scalar(select(Variable).where(Variable.key == key))
            current = row.val if row is not None else None
            last = record["variables"].get(key)
            if row is None or current == last or key in force:
                if current != value:
                    Variable.set(key, value, description=description, session=session)
                effective["variables"][key] = written["variables"][key] = value
            else:
                effective["variables"][key] = current
                written["variables"][key] = last
                notes.append(
                    f"Variable {key} = {current!r} kept (changed in Airflow; the demo's is {value!r})"
                )
        for conn_id, uri in connections.items():
            row = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
            current = row.get_uri() if row is not None else None
            last = record["connections"].get(conn_id)
            if row is None or current == last:
                new = Connection(conn_id=conn_id, uri=uri, description=f"make demo's database, {description}")
                if row is not None and current != new.get_uri():
                    session.delete(row)
                    session.flush()
                if row is None or current != new.get_uri():
                    session.add(new)
                effective["connections"][conn_id] = written["connections"][conn_id] = new.get_uri()
            else:
                effective["connections"][conn_id] = current
                written["connections"][conn_id] = last
                notes.append(f"Connection {conn_id} kept as changed in Airflow ({current})")
    SETTINGS_RECORD.write_text(json.dumps(written, indent=2) + "\n")
    SETTINGS_RECORD.chmod(0o600)
    return effective, notes


def start_sample_server():
    """Serve ``include/imdb_sample`` like datasets.imdbws.com (ETag = sha256 of the content)."""
    from dataset_ops.imdb.datasets import IMDB_FILE_NAMES

    missing = [n for n in IMDB_FILE_NAMES if not (SAMPLE_DIR / f"{n}.tsv.gz").is_file()]
    if missing:
        raise DemoError(
            f"the bundled sample is incomplete: {', '.join(f'{n}.tsv.gz' for n in missing)} "
            f"missing in {SAMPLE_DIR}. Restore it (`git checkout -- include/imdb_sample`) or set "
            "IMDB_BASE_URL to a folder URL holding the seven dumps."
        )
    from helpers.http_server import FileServer

    return FileServer(SAMPLE_DIR)


def check_base_url(url: str) -> None:
    """Fail fast when IMDB_BASE_URL does not serve the dumps (the DAG would retry for minutes)."""
    if not re.match(r"^https?://[^/]+", url):
        raise DemoError(
            f"IMDB_BASE_URL={url!r} is not an http(s) folder URL; use e.g. "
            "IMDB_BASE_URL=https://datasets.imdbws.com/ (or unset it for the bundled sample)"
        )
    probe = urljoin(url if url.endswith("/") else url + "/", "title.ratings.tsv.gz")
    request = urllib.request.Request(probe, method="HEAD", headers={"User-Agent": "dataset-ops demo"})
    try:
        with urllib.request.urlopen(request, timeout=15):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code not in (405, 501):  # HEAD not supported: let the DAG find out with GET
            raise DemoError(
                f"IMDB_BASE_URL: {probe} answers HTTP {exc.code} {exc.reason}; it must be the "
                "folder holding the seven <name>.tsv.gz dumps, e.g. https://datasets.imdbws.com/"
            ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DemoError(
            f"IMDB_BASE_URL: {probe} cannot be reached ({reason}). Check the URL and the network, "
            "or unset IMDB_BASE_URL to use the bundled sample."
        ) from exc


def resolve_source() -> tuple[str, object | None, str]:
    """(base URL, sample server or None, description) of the IMDb source."""
    user_url = os.environ.get("IMDB_BASE_URL", "").strip()
    if user_url:
        check_base_url(user_url)
        return user_url, None, f"{user_url} (from IMDB_BASE_URL)"
    server = start_sample_server()
    rel = SAMPLE_DIR.relative_to(REPO)
    return server.url, server, f"bundled sample {rel}/, served at {server.url}"


# --- output capture -----------------------------------------------------------------------------
class PostgresNotes:
    """Echo ``local_postgres``'s progress notes (stderr) to the terminal."""

    def feed(self, text: str) -> None:
        if text.startswith("local_postgres: "):
            out(f"  {text.removeprefix('local_postgres: ')}")


class TaskEvents:
    """Pick what matters out of the task logs while a DAG runs and echo it to the terminal.

    Long downloads and COPYs log progress every 10 s (echoed once they run for 5 s or more);
    a failed try is echoed with its exception, so a run waiting for a retry is not silent.
    Everything else stays in the log file only.
    """

    _STRUCTLOG_TAIL = re.compile(r"\s+\[[\w.]+\]\s+loc=\S+.*$")
    _PROGRESS = re.compile(r"\b((?:GET|COPY) \S+\.tsv\.gz: .*MiB.*, ([\d.]+) s)")
    _STARTING = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
    _EXCEPTION = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Timeout|Exit)\w*: .+)$")
    _NEW_STATE = re.compile(r"new_state=(up_for_retry|failed)\b")

    def __init__(self, dag_id: str):
        self.dag_id = dag_id
        self.task = ""
        self.error = ""
        self.tries: dict[str, int] = {}
        self.errors: dict[str, str] = {}  # task label -> exception of its last failed try

    def _label(self, task_id: str, map_index: str) -> str:
        if map_index == "-1":
            return task_id
        if self.dag_id == "imdb_download" and task_id == "download":
            from dataset_ops.imdb.datasets import IMDB_FILE_NAMES

            with contextlib.suppress(IndexError, ValueError):
                return f"{task_id}[{IMDB_FILE_NAMES[int(map_index)]}]"
        return f"{task_id}[{map_index}]"

    def feed(self, text: str) -> None:
        if m := self._STARTING.search(text):
            self.task, self.error = self._label(*m.groups()), ""
        elif m := self._PROGRESS.search(text):
            if float(m.group(2)) >= 5:
                out(f"    {self._STRUCTLOG_TAIL.sub('', m.group(1))}")
        elif m := self._EXCEPTION.match(text):
            self.error = m.group(1)
        elif m := self._NEW_STATE.search(text):
            self.tries[self.task] = self.tries.get(self.task, 0) + 1
            self.errors[self.task] = self.error
            what = (
                "failed; Airflow retries it after the DAG's retry delay (30 s, then longer)"
                if m.group(1) == "up_for_retry"
                else "failed for good"
            )
            out(f"    {self.task} try {self.tries[self.task]} {what}")
            if self.error:
                out(f"      {self.error[:300]}")


@contextlib.contextmanager
def redirect_fd(fd: int, log_path: Path, watcher=None):
    """Send file descriptor ``fd`` (1 or 2) to ``log_path`` for the block, line by line through
    ``watcher.feed`` (if given), which may echo what matters to the terminal."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = os.dup(fd)
    read_end, write_end = os.pipe()
    log = open(log_path, "ab")

    def pump():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                log.write(line)
                log.flush()
                if watcher is not None:
                    with contextlib.suppress(Exception):  # echoing must never break the run
                        watcher.feed(line.decode(errors="replace").rstrip("\n"))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    os.dup2(write_end, fd)
    os.close(write_end)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved, fd)
        os.close(saved)
        thread.join(timeout=10)
        log.close()


@contextlib.contextmanager
def task_output_to_log(title: str, watcher=None):
    """Airflow's and the tasks' output (stdout and stderr) go to ``.data/demo.log``."""
    with open(LOG_FILE, "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {title} ===\n")
    with redirect_fd(2, LOG_FILE, watcher), redirect_fd(1, LOG_FILE, watcher):
        yield


def log_tail(path: Path, lines: int = 25) -> str:
    """The last lines of ``path``, indented, for an error message."""
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"Last lines of {path}:\n  " + "\n  ".join(tail)


# --- running the DAGs ---------------------------------------------------------------------------
def load_dags():
    """Parse ``dags/``; returns the two IMDb DAGs or raises a DemoError naming import errors."""
    from airflow.dag_processing.dagbag import DagBag

    with task_output_to_log("parse dags/"):
        bag = DagBag(dag_folder=str(REPO / "dags"))
    if bag.import_errors:
        errors = "\n".join(f"  {path}:\n    {err.strip()}" for path, err in bag.import_errors.items())
        raise DemoError(f"the DAG files do not import:\n{errors}")
    dags = {dag_id: bag.get_dag(dag_id) for dag_id in ("imdb_download", "imdb_load")}
    absent = [d for d, dag in dags.items() if dag is None]
    if absent:
        raise DemoError(f"DAG(s) {', '.join(absent)} not found in {REPO / 'dags'}")
    return dags["imdb_download"], dags["imdb_load"]


def run_dag(dag) -> tuple[object, float, TaskEvents]:
    """``dag.test()`` with its output in the log; returns (DagRun, seconds, echoed events)."""
    out(f"Running {dag.dag_id} ...")
    started = time.monotonic()
    events = TaskEvents(dag.dag_id)
    with task_output_to_log(f"{dag.dag_id}: dag.test()", events):
        run = dag.test()
    return run, time.monotonic() - started, events


def task_states(run) -> list[tuple[str, str, str]]:
    """(task_id, label, state) per task instance; mapped tasks are labelled by their file."""
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = run.get_task_instances(session=session)
        rows = [
            (
                ti.task_id,
                ti.rendered_map_index or (str(ti.map_index) if ti.map_index >= 0 else ""),
                str(ti.state),
            )
            for ti in tis
        ]
    return sorted(rows)


def check_run(run, elapsed: float, events: TaskEvents) -> list[tuple[str, str, str]]:
    """Raise a DemoError saying what failed when the run did not succeed; else its task states."""
    states = task_states(run)
    if str(run.state) == "success":
        return states
    bad = [
        (f"{task}[{label}]" if label else task, state)
        for task, label, state in states
        if state not in ("success", "skipped")
    ]
    lines = [f"{run.dag_id} ended {run.state} after {elapsed:.1f} s."]
    for label, state in bad:
        lines.append(f"  {label}: {state}")
        error = events.errors.get(label)
        if error:
            lines.append(f"    {error[:500]}")
    if not events.errors:
        lines.append(log_tail(LOG_FILE, 30))
    hint = {
        "imdb_download": "the IMDb source (the sample server, or IMDB_BASE_URL) and the storage "
        f"folder {STORAGE_ROOT}",
        "imdb_load": f"PostgreSQL (Connection {CONNECTION_ID}, database {DATABASE}) and the "
        f"downloaded files in {STORAGE_ROOT}",
    }.get(run.dag_id, "the error above")
    lines.append(
        f"Task logs with the full tracebacks: {LOG_FILE}\n"
        f"Check {hint}, then run `make demo` again: files already downloaded or loaded are kept "
        "and not done twice."
    )
    raise DemoError("\n".join(lines))


def report_download(states, elapsed: float) -> int:
    """Per file: downloaded (size, rows) or unchanged. Returns how many were downloaded."""
    downloaded = 0
    for task, label, state in states:
        if task != "download":
            continue
        manifest = {}  # this dump's entry in imdb/raw/_manifest.json (the dataset manifest)
        path = STORAGE_ROOT / "imdb" / "raw" / "_manifest.json"
        with contextlib.suppress(OSError, ValueError):
            files = json.loads(path.read_text())["files"]
            manifest = next((f for f in files if f["path"] == f"{label}.tsv.gz"), {})
        if state == "success":
            downloaded += 1
            out(
                f"  {label:<17} downloaded  {manifest.get('bytes', 0):>13,} bytes "
                f"{manifest.get('rows', 0):>12,} rows"
            )
        else:
            out(f"  {label:<17} unchanged   (304 Not Modified: nothing transferred, stored copy kept)")
    unchanged = sum(1 for t, _, s in states if t == "download" and s == "skipped")
    out(f"  imdb_download: {downloaded} downloaded, {unchanged} unchanged in {elapsed:.1f} s")
    return downloaded


def report_load(states, elapsed: float, conn) -> int:
    """Per staged file: rows loaded. Returns how many tables were published."""
    staged = [(label, state) for task, label, state in states if task == "stage"]
    loaded = [label for label, state in staged if state == "success"]
    for label in loaded:
        row = conn.execute(
            "SELECT rows, seconds FROM imdb.load_history WHERE file = %s AND status = 'published' "
            "ORDER BY id DESC LIMIT 1",
            (label,),
        ).fetchone()
        rows, seconds = row if row else (0, 0.0)
        out(f"  {label:<17} loaded {rows:>12,} rows into imdb.{label.replace('.', '_')} ({seconds:.2f} s)")
    if loaded:
        out(f"  imdb_load: {len(loaded)} table(s) published in {elapsed:.1f} s")
    else:
        out(f"  imdb_load: nothing new to load; every table already holds this content ({elapsed:.1f} s)")
    return len(loaded)


def report_tables(conn) -> None:
    """Row count of every published table, and one sample row."""
    from dataset_ops.imdb.datasets import IMDB_FILE_NAMES

    out("Published tables:")
    for name in IMDB_FILE_NAMES:
        table = name.replace(".", "_")
        exists = conn.execute("SELECT to_regclass(%s)", (f"imdb.{table}",)).fetchone()[0]
        if exists is None:
            out(f"  imdb.{table:<17} (not loaded)")
            continue
        count = conn.execute(f"SELECT count(*) FROM imdb.{table}").fetchone()[0]
        out(f"  imdb.{table:<17} {count:>12,} rows")
    row = None
    with contextlib.suppress(Exception):
        cur = conn.execute(
            'SELECT tconst, titleType AS "titleType", primaryTitle AS "primaryTitle", '
            'startYear AS "startYear", runtimeMinutes AS "runtimeMinutes", genres '
            "FROM imdb.title_basics WHERE tconst = 'tt0000001'"
        )
        row = cur.fetchone()
    if row:
        cols = [d.name for d in cur.description]
        out("Sample row (imdb.title_basics):")
        out(
            "  "
            + ", ".join(
                f"{c}={v!r}" if isinstance(v, str) else f"{c}={v}" for c, v in zip(cols, row, strict=True)
            )
        )


# --- the two modes ------------------------------------------------------------------------------
def prepare(args) -> tuple[dict[str, str], str, object | None, str]:
    """Shared setup of both modes; returns (exported env, PostgreSQL URI, sample server, source).

    The caller closes the sample server (when there is one) once done.
    """
    DATA.mkdir(parents=True, exist_ok=True)
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    STORAGE_ROOT.mkdir(parents=True, exist_ok=True)
    (STAGING_ROOT / "uploads").mkdir(parents=True, exist_ok=True)
    env = airflow_env()
    os.environ.update(env)
    shadowing = sorted(name for name in os.environ if _is_setting_env(name))
    for name in shadowing:  # Airflow would read these before the metadata DB
        del os.environ[name]
    if shadowing:
        out(f"Ignoring {', '.join(shadowing)} from the environment: the settings are in the metadata DB")
    # The sample server, PostgreSQL and the API server are local: never through an HTTP proxy.
    no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    local = [h for h in ("127.0.0.1", "localhost") if h not in no_proxy.split(",")]
    if local:
        os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(filter(None, [no_proxy, *local]))

    base_url, server, source = resolve_source()  # first: a wrong IMDB_BASE_URL fails fast
    try:
        out(f"PostgreSQL (database {DATABASE}, this checkout's):")
        uri = ensure_postgres(args.embedded_postgres)
        write_env_file(env)

        out(f"Airflow home {_shown(AIRFLOW_HOME)}: migrating the metadata DB ...")
        seconds = migrate_airflow_db()
        out(f"  ready in {seconds:.1f} s")
        for line in create_pools():
            out(f"  {line}")
        effective, notes = store_settings(
            {
                STORAGE_VARIABLE: str(STORAGE_ROOT),
                STAGING_VARIABLE: str(STAGING_ROOT),
                BASE_URL_VARIABLE: base_url,
            },
            {CONNECTION_ID: uri},
            force=frozenset({BASE_URL_VARIABLE} if server is None else ()),  # IMDB_BASE_URL given
        )
        out("  settings in the metadata DB (change them in the UI: Admin > Variables / Connections):")
        for key, value in effective["variables"].items():
            out(f"    Variable {key} = {value}")
        out(f"    Connection {CONNECTION_ID} = {effective['connections'][CONNECTION_ID]}")
        for note in notes:
            out(f"    {note}")
    except BaseException:
        if server is not None:
            server.close()
        raise
    return env, effective["connections"][CONNECTION_ID], server, source


def run_demo(args) -> int:
    """``make demo``: download and load with dag.test(), then the summary."""
    import psycopg

    DATA.mkdir(parents=True, exist_ok=True)
    LOG_FILE.write_text("")  # this run's logs only
    env, uri, server, source = prepare(args)
    out(f"IMDb source: {source}")
    out(f"Storage:     {STORAGE_ROOT}")
    out(f"Task logs:   {LOG_FILE}")
    try:
        download_dag, load_dag = load_dags()
        run, download_seconds, events = run_dag(download_dag)
        states = check_run(run, download_seconds, events)
        downloaded = report_download(states, download_seconds)
        run, load_seconds, events = run_dag(load_dag)
        states = check_run(run, load_seconds, events)
    finally:
        if server is not None:
            server.close()
    with psycopg.connect(uri, autocommit=True, connect_timeout=10) as conn:
        loaded = report_load(states, load_seconds, conn)
        out()
        report_tables(conn)
    out()
    if not downloaded and not loaded:
        out("Nothing new: every file was unchanged (304) and every table already current.")
    out(
        f"Total: download {download_seconds:.1f} s + load {load_seconds:.1f} s = "
        f"{download_seconds + load_seconds:.1f} s"
    )
    out()
    out("Next:")
    out("  Airflow UI on http://localhost:8080 (this home, these DAGs and runs):")
    out("      make airflow")
    out("  Query the tables:")
    out(f"      psql {uri} -c 'SELECT * FROM imdb.title_ratings LIMIT 5'")
    if shutil.which("psql") is None:
        out("      (psql: `apt-get install postgresql-client`)")
    out("  The airflow CLI on this home (e.g. `airflow dags list`, `airflow dags test imdb_load`):")
    out(f"      source {_shown(ENV_FILE)}")
    if server is not None:
        out("  The real, complete dumps (several GB; loading takes a long while):")
        out("      IMDB_BASE_URL=https://datasets.imdbws.com/ make demo")
    out(f"  Task logs: {_shown(LOG_FILE)}")
    return 0


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> dict | None:
    """Poll ``url`` until it answers 200 with JSON; None if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return json.loads(resp.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.5)
    return None


def live_group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies (an orphan that exited stays a zombie
    in the group until init reaps it, which some container inits never do)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def stop_standalone(proc: subprocess.Popen) -> None:
    """Stop ``airflow standalone`` and everything it started.

    SIGINT goes to the standalone process only: it then stops its components in order (~5-15 s).
    Sending SIGINT to every process at once can deadlock the scheduler's executor workers, and
    SIGTERM to the parent alone leaves its children running. Whatever is left of the process
    group after ``UI_STOP_TIMEOUT`` gets SIGTERM, then SIGKILL; a second Ctrl-C kills at once.
    """
    steps = ((signal.SIGINT, UI_STOP_TIMEOUT, False), (signal.SIGTERM, 10, True), (signal.SIGKILL, 5, True))
    try:
        for sig, grace, whole_group in steps:
            with contextlib.suppress(ProcessLookupError):
                if whole_group:
                    os.killpg(proc.pid, sig)
                else:
                    os.kill(proc.pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                proc.poll()  # reap the parent
                if not live_group_members(proc.pid):
                    return
                time.sleep(0.2)
            if sig != signal.SIGKILL:
                left = ", ".join(map(str, live_group_members(proc.pid)))
                out(
                    f"  processes {left} still there {grace} s after {signal.Signals(sig).name}; "
                    f"sending {'SIGTERM' if sig == signal.SIGINT else 'SIGKILL'}"
                )
    except KeyboardInterrupt:
        out("  interrupted again: killing Airflow's processes")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_ui(args) -> int:
    """``make airflow``: ``airflow standalone`` on the demo's home until Ctrl-C."""
    port = args.port
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise DemoError(
                f"port {port} on 127.0.0.1 is already in use (another Airflow or web server?). "
                f"Stop it, or choose another port: `.venv/bin/python scripts/demo.py --ui --port 8081`."
            )
    env, uri, server, source = prepare(args)
    ui_env = launch_environment(dict(os.environ), port)
    password_file = AIRFLOW_HOME / "simple_auth_manager_passwords.json.generated"
    out(f"IMDb source: {source}")
    if server is not None:
        out("  (it runs as long as this command, so a run triggered in the UI works offline)")
    out(f"Starting `airflow standalone` (output: {_shown(STANDALONE_LOG)}) ...")
    started = time.monotonic()
    with open(STANDALONE_LOG, "ab") as log:
        # Own session and process group: Ctrl-C in the terminal reaches only this script, which
        # then stops Airflow in order (stop_standalone). SIGINT is handled (not ignored) here,
        # so the launched processes start with its default disposition.
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "standalone"],
            env=ui_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        health = wait_healthy(
            f"http://127.0.0.1:{port}/api/v2/monitor/health", proc, timeout=UI_READY_TIMEOUT
        )
        if health is None:
            code = proc.poll()
            stop_standalone(proc)
            what = f"exited with {code}" if code is not None else f"did not answer in {UI_READY_TIMEOUT} s"
            raise DemoError(
                f"`airflow standalone` {what} (health check http://127.0.0.1:{port}/api/v2/monitor/health)."
                f"\n{log_tail(STANDALONE_LOG, 30)}"
            )
        out(
            f"  the API answers after {time.monotonic() - started:.1f} s "
            f"(scheduler: {health.get('scheduler', {}).get('status', '?')})"
        )
        out()
        out(f"Airflow UI:  http://localhost:{port}  ([api] base_url {ui_env['AIRFLOW__API__BASE_URL']})")
        password = ""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            password = json.loads(password_file.read_text()).get("admin", "")
        out(f"  user admin, password {password or '(not generated yet)'}  (from {password_file})")
        out(
            "  The DAGs start paused: unpause them, then trigger imdb_download (▶); imdb_load follows"
            " when a file changed."
        )
        out(f"  psql {uri}")
        out("Press Ctrl-C to stop.")
        while proc.poll() is None:
            time.sleep(0.5)
        raise DemoError(f"`airflow standalone` exited ({proc.returncode}).\n{log_tail(STANDALONE_LOG, 30)}")
    except KeyboardInterrupt:
        out()
        out("Stopping Airflow ...")
        stopped = time.monotonic()
        stop_standalone(proc)
        out(f"  stopped in {time.monotonic() - stopped:.1f} s")
        return 0
    finally:
        if proc.poll() is None:
            stop_standalone(proc)
        if server is not None:
            server.close()


def run_setup(args) -> int:
    """``--setup-only``: prepare the home, PostgreSQL and the settings, then exit."""
    DATA.mkdir(parents=True, exist_ok=True)
    LOG_FILE.write_text("")
    env, uri, server, source = prepare(args)
    if server is not None:
        server.close()
    out(f"IMDb source: {source} (stopped again: it runs while `make demo` / `make airflow` run)")
    out(f"Ready: source {_shown(ENV_FILE)} for the airflow CLI; `make airflow` for the UI.")
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 130 interrupted)."""
    parser = argparse.ArgumentParser(
        description="Run the IMDb DAGs locally on the bundled sample (make demo), or the Airflow UI "
        "on the same home (make airflow). IMDB_BASE_URL=<folder URL> uses other dumps."
    )
    parser.add_argument("--ui", action="store_true", help="run `airflow standalone` on the demo home")
    parser.add_argument("--port", type=int, default=8080, help="UI/API port for --ui (default 8080)")
    parser.add_argument(
        "--embedded-postgres",
        action="store_true",
        help="use the embedded PostgreSQL even if 127.0.0.1:5432 answers",
    )
    parser.add_argument(
        "--setup-only",
        action="store_true",
        help="prepare the home, database, pools, Variables and Connection, then exit",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the demo's data folder (default <repo>/.data); the database name follows it",
    )
    args = parser.parse_args(argv)
    if args.data_dir is not None:
        use_data_dir(args.data_dir)
    for folder in ("scripts", "plugins", "tests"):  # local_postgres, dataset_ops, helpers
        if str(REPO / folder) not in sys.path:
            sys.path.insert(0, str(REPO / folder))
    # Started from a non-interactive shell in the background, SIGINT arrives ignored; handle it
    # so Ctrl-C / kill -INT work, and so that processes started from here get the default.
    # SIGTERM and SIGHUP (terminal closed) take the same way out, so `--ui` never leaves
    # Airflow's processes behind.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        if args.setup_only:
            return run_setup(args)
        return run_ui(args) if args.ui else run_demo(args)
    except DemoError as exc:
        print(f"\ndemo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
