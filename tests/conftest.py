"""Shared fixtures: an isolated Airflow home and real services started on demand.

* Airflow: a fresh ``AIRFLOW_HOME`` (SQLite metadata DB, migrated once per session) whose DAG
  folder is the project's ``dags/``, so ``dag.test()`` runs the real DAG files.
* PostgreSQL: a throwaway database on the server at ``DATASET_OPS_TEST_PG`` (default
  ``postgresql://postgres@127.0.0.1:5432/postgres``), dropped afterwards.
* MariaDB: a throwaway database on ``127.0.0.1:3306`` (root, no password), dropped afterwards.
* S3: a SeaweedFS server (``scripts/seaweedfs.py``, a real object store) over HTTP on free ports,
  one per session.
* HTTP: :class:`helpers.http_server.FileServer` serving a temporary folder.

``make test`` runs two sessions side by side (``--stacks only`` and ``--stacks exclude``), each
with its own Airflow home, databases and S3 server.

`make test` starts PostgreSQL and MariaDB when they are down; a fixture whose service does not
answer fails with what it needs, it never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from helpers.s3 import new_bucket, use_s3
from helpers.services import PG_ADMIN_URL, free_port  # noqa: F401 (free_port: for conftest users)

pytest_plugins = ["helpers.inference_fixtures", "helpers.stack", "helpers.acceptance"]

REPO = Path(__file__).resolve().parents[1]

# --- Airflow home: set before anything imports airflow -------------------------------------
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="dataset-ops-airflow-test-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)


def pytest_sessionstart(session):
    """Migrate the test metadata DB once (about 6 s)."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


#: session fixtures that start a whole Airflow (several processes each). ``make test`` runs the
#: tests that use one (``--stacks only``) and all the others (``--stacks exclude``) as two pytest
#: processes side by side, so each stack starts once and never two at a time on the 2 cores.
STACK_FIXTURES = ("airflow_stack", "acceptance")
#: modules that set up an Airflow home of their own through the CLI (``make demo``'s setup, the
#: documented commands): they go with the stack tests, which balances the two sessions
#: (session 9: 1,087 s against 885 s without them)
WHOLE_AIRFLOW_MODULES = ("tests/scripts/test_demo.py", "tests/test_docs_commands.py")


def pytest_addoption(parser):
    parser.addoption(
        "--stacks",
        choices=("all", "only", "exclude"),
        default="all",
        help="run all tests, only those on a whole Airflow (the airflow_stack and acceptance "
        "fixtures, the demo and documented-command modules), or the others",
    )


def pytest_collection_modifyitems(config, items):
    which = config.getoption("--stacks")
    if which == "all":
        return
    keep, drop = [], []
    for item in items:
        on_stack = bool(set(STACK_FIXTURES) & set(getattr(item, "fixturenames", ()))) or (
            item.nodeid.split("::", 1)[0] in WHOLE_AIRFLOW_MODULES
        )
        (keep if on_stack == (which == "only") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of a fresh, empty PostgreSQL database on the real server; dropped at the end."""
    import psycopg

    name = f"dataset_ops_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed at {PG_ADMIN_URL} (run `make services`): {exc}")
    with admin:
        admin.execute(f"CREATE DATABASE {name}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def imdb_conn_env(postgres_url, monkeypatch) -> str:
    """Point the Airflow Connection ``imdb_postgres`` at the test database."""
    monkeypatch.setenv("AIRFLOW_CONN_IMDB_POSTGRES", postgres_url)
    return postgres_url


@pytest.fixture
def pg(postgres_url):
    """An autocommit psycopg 3 connection to the test database, with no ``imdb*`` schemas yet."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS imdb, imdb_staging CASCADE")
        yield conn


# --- MariaDB -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mariadb_url() -> str:
    """URL of a fresh MariaDB database on 127.0.0.1:3306 (root); dropped at the end."""
    import pymysql

    name = f"dataset_ops_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=5)
    except pymysql.err.OperationalError as exc:
        pytest.fail(f"MariaDB is needed at 127.0.0.1:3306 (run `make services`): {exc}")
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    yield f"mysql://root@127.0.0.1:3306/{name}"
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.close()


# --- S3 over HTTP (SeaweedFS) ------------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """Endpoint URL (``http://127.0.0.1:PORT``) of a SeaweedFS S3 gateway started for the session
    (``scripts/seaweedfs.py``: a separate process, any access key); stopped and deleted at the end.
    The Airflow stacks of ``helpers.stack`` and ``helpers.acceptance`` use it too."""
    from seaweedfs import SeaweedFS, SeaweedFSError

    server = SeaweedFS()
    try:
        server.start()
    except SeaweedFSError as exc:
        pytest.fail(f"the S3 server (SeaweedFS, `make install`) did not start: {exc}")
    yield server.endpoint
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch) -> str:
    """A new bucket on the session's S3 server; the Connection ``aws_default`` points at it."""
    use_s3(monkeypatch, s3_endpoint)
    return new_bucket(s3_endpoint, "test")


# --- moto: only where the real server cannot do what a test needs --------------------------------
@pytest.fixture(scope="session")
def moto_s3_endpoint() -> str:
    """Endpoint URL of moto's ``ThreadedMotoServer`` (an S3 mock in this process) for the session.

    Only for tests that need what AWS S3 does and SeaweedFS does not (each says why in a comment):
    keys with ``..``, ``.`` or empty segments, which AWS stores as given and SeaweedFS refuses or
    normalises; an atomic ``If-None-Match`` on ``CompleteMultipartUpload``, which SeaweedFS 4.48
    checks without a lock. Everything else runs on :func:`s3_endpoint`."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def moto_bucket(moto_s3_endpoint, monkeypatch) -> str:
    """A new bucket on the moto server; the Connection ``aws_default`` points at moto (do not use
    it with :func:`s3_bucket` in one test)."""
    use_s3(monkeypatch, moto_s3_endpoint)
    return new_bucket(moto_s3_endpoint, "moto")


# --- HTTP file server --------------------------------------------------------------------------
@pytest.fixture
def file_server(tmp_path):
    """A :class:`helpers.http_server.FileServer` serving ``tmp_path / "www"``."""
    from helpers.http_server import FileServer

    root = tmp_path / "www"
    root.mkdir()
    server = FileServer(root)
    yield server
    server.close()
