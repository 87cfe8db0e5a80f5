"""A distributed Airflow on one machine: CeleryExecutor, PostgreSQL metadata, Redis broker, S3 logs.

:class:`AirflowStack` starts, as separate processes with the project's ``dags/`` and ``plugins/``:

* ``airflow api-server`` (UI, REST API and the Execution API the workers talk to),
  ``airflow scheduler`` and ``airflow dag-processor``, sharing one home (``<base>/control``);
* ``N`` × ``airflow celery worker``. Each worker runs in its own UTS namespace (``unshare --uts``)
  with its own host name (``worker-1``, ``worker-2``, ...), its own ``AIRFLOW_HOME``, working
  directory and ``TMPDIR`` under ``<base>/worker-N``: nothing on local disk is shared between
  workers. Task instances record the host name (``core.hostname_callable`` is
  ``socket.gethostname``), which is how a run shows where each task ran.

The metadata database is a fresh PostgreSQL database (dropped and created at start), the broker
a Redis database number (flushed at start), the Celery result backend the metadata database,
and task logs go to S3 (``remote_logging``, Connection ``aws_default``), so the api-server reads
them without access to any worker's disk. Scheduled and asset-triggered runs are off
(``scheduler.use_job_schedule = False``): runs come from the REST API, ``airflow dags trigger``
or ``airflow backfill create`` only, so what ran is what was asked for. Every DAG is unpaused at
creation.

With ``executor="LocalExecutor"`` (no workers, no broker, optionally a triggerer, schedules on,
DAGs paused at creation) it is the single-machine Airflow of the acceptance tests
(``tests/helpers/acceptance.py``).

Used by ``make distributed`` (``scripts/distributed.py``), its benchmark and the tests
(``tests/helpers/stack.py``)::

    with AirflowStack(base, env={"AIRFLOW_CONN_AWS_DEFAULT": ...}, log_bucket="logs") as stack:
        run_id = stack.trigger("staged_upload_validation")
        assert stack.wait_for_run("staged_upload_validation", run_id) == "success"
        hosts = {ti["hostname"] for ti in stack.task_instances("staged_upload_validation", run_id)}

Needs: PostgreSQL that lets the admin URL's user create databases, Redis, an S3 endpoint (the
``aws_default`` Connection in ``env``), and ``unshare`` (util-linux) with the right to create a
UTS namespace (root, or CAP_SYS_ADMIN). Start-up took 19 to 41 s here (2 cores).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlsplit

from ports import free_port
from processes import spawn

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
DAG_IDS = tuple(sorted(p.stem for p in (REPO / "dags").glob("*.py")))
START_TIMEOUT = 240  # seconds for the api-server, scheduler, dag-processor and workers to be ready
STOP_GRACE = 30  # seconds a component gets after SIGTERM before SIGKILL
FINAL_STATES = {"success", "failed"}


class StackError(RuntimeError):
    """The stack could not start, or a request to it failed; the message says which and why."""


def aws_connection(endpoint: str) -> str:
    """The ``aws_default`` Connection (JSON form) for an S3 server at ``endpoint`` (the local
    SeaweedFS of ``scripts/seaweedfs.py`` takes any key)."""
    extra = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})


def http_connection(base_url: str, **fields) -> str:
    """An HTTP Connection (JSON form) for a local server at ``http://127.0.0.1:PORT``."""
    port = int(base_url.rstrip("/").rsplit(":", 1)[1])
    return json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http", **fields})


def recreate_database(pg_admin_url: str, name: str) -> str:
    """Drop (closing its sessions) and create the database ``name`` on ``pg_admin_url``'s server;
    the new database's URL. :class:`StackError` when the server cannot be reached."""
    import psycopg

    try:
        with psycopg.connect(pg_admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise StackError(f"PostgreSQL at {pg_admin_url} is needed: {exc}") from exc
    return f"{pg_admin_url.rsplit('/', 1)[0]}/{name}"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Component:
    """One long-running process of the stack: its command, environment, log file and process."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path):
        self.name, self.argv, self.env, self.cwd, self.log = name, argv, env, cwd, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the process in a session of its own, output appended to :attr:`log`."""
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(self.argv, self.log, self.cwd, self.env)

    def check(self) -> None:
        """Raise :class:`StackError` with the log's tail if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise StackError(
                f"{self.name} exited with status {self.proc.returncode}; last lines of {self.log}:\n"
                f"{_tail(self.log)}"
            )

    def stop(self) -> None:
        """SIGTERM to the process group (Celery: warm shutdown), SIGKILL after ``STOP_GRACE`` s."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # children left in the group
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


class AirflowStack:
    """CeleryExecutor Airflow with ``workers`` Celery workers on this machine (see the module doc),
    or, with ``executor="LocalExecutor"``, one machine's Airflow as its users run it.

    ``base``: folder for the homes, working directories and component logs (``<base>/logs``);
    emptied at start. ``env``: Connections (``AIRFLOW_CONN_*``), Variables (``AIRFLOW_VAR_*``) and
    other settings given to every component; it must define ``AIRFLOW_CONN_AWS_DEFAULT`` (task logs
    go to ``s3://<log_bucket>/airflow-logs``, the bucket must exist). ``concurrency``: task slots
    per worker (Celery prefork processes). ``database``: name of the metadata database created on
    ``pg_admin_url``'s server; ``redis_db``: the broker's Redis database number.

    ``executor="LocalExecutor"``: no workers and no broker; the scheduler runs the tasks
    (``parallelism`` slots) and task logs stay in the control home unless ``log_bucket`` is given.
    ``triggerer``: also start ``airflow triggerer`` (deferred tasks). ``schedules``: let the
    scheduler create scheduled and asset-triggered runs (off by default: only what is triggered
    runs). ``paused_at_creation``: new DAGs start paused, as in a default Airflow (off by default).

    Raises :class:`StackError` when a component exits or is not ready within ``START_TIMEOUT`` s.
    """

    def __init__(
        self,
        base: Path,
        *,
        env: dict[str, str],
        log_bucket: str | None = None,
        executor: str = "CeleryExecutor",
        triggerer: bool = False,
        schedules: bool = False,
        paused_at_creation: bool = False,
        parallelism: int = 8,
        workers: int = 2,
        concurrency: int = 1,
        pg_admin_url: str = "postgresql://postgres@127.0.0.1:5432/postgres",
        redis_url: str = "redis://127.0.0.1:6379",
        redis_db: int = 6,
        database: str = "dataset_ops_distributed",
        port: int | None = None,
    ):
        if executor not in ("CeleryExecutor", "LocalExecutor"):
            raise StackError(f"executor must be CeleryExecutor or LocalExecutor, not {executor!r}")
        celery = executor == "CeleryExecutor"
        if celery and not log_bucket:
            raise StackError("a CeleryExecutor stack needs log_bucket: its workers share no disk")
        if log_bucket and "AIRFLOW_CONN_AWS_DEFAULT" not in env:
            raise StackError("env needs AIRFLOW_CONN_AWS_DEFAULT: task logs are written to S3")
        self.base = Path(base)
        self.executor, self.triggerer = executor, triggerer
        self.workers = workers if celery else 0
        self.concurrency = concurrency
        self.pg_admin_url, self.database = pg_admin_url, database
        self.redis_url, self.redis_db = redis_url.rstrip("/"), redis_db
        self.port = port or free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.username = "admin"
        self.password = secrets.token_urlsafe(12)
        # a read-only user too (role Viewer), for what a user without edit rights sees
        self.viewer_username, self.viewer_password = "viewer", secrets.token_urlsafe(12)
        self.hostnames = [f"worker-{i}" for i in range(1, self.workers + 1)]
        self._token: tuple[str, float] | None = None
        self.components: list[Component] = []
        pg = urlsplit(pg_admin_url)
        metadata_url = f"postgresql+psycopg2://{pg.netloc}/{database}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))},
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "AIRFLOW_HOME": str(self.base / "control"),
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(paused_at_creation),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": (
                f"{self.username}:admin,{self.viewer_username}:viewer"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.base / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(schedules),
            # after a task the supervisor can sit in select() this long (default 5 s) before it
            # sees the task process exit, the worker's slot idle meanwhile (bench_distributed.py)
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        }
        if celery:
            self.env["AIRFLOW__CELERY__BROKER_URL"] = f"{self.redis_url}/{redis_db}"
            self.env["AIRFLOW__CELERY__RESULT_BACKEND"] = f"db+{metadata_url}"
        if log_bucket:
            self.env["AIRFLOW__LOGGING__REMOTE_LOGGING"] = "True"
            self.env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] = f"s3://{log_bucket}/airflow-logs"
            self.env["AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID"] = "aws_default"
        self.env.update(env)

    # --- life cycle -----------------------------------------------------------------------------
    def __enter__(self) -> AirflowStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Fresh metadata DB and broker, migrate, pools, then every component; wait until ready."""
        shutil.rmtree(self.base, ignore_errors=True)
        (self.base / "logs").mkdir(parents=True)
        (self.base / "passwords.json").write_text(
            json.dumps({self.username: self.password, self.viewer_username: self.viewer_password})
        )
        self._reset_backends()
        self.airflow("db", "migrate", timeout=300)
        self.airflow("pools", "import", str(REPO / "include" / "pools.json"))
        control = self.base / "control"
        self._add(
            "api-server",
            ["api-server", "--host", "127.0.0.1", "--port", str(self.port), "-w", "1"],
            {},
            control,
        )
        self._add("scheduler", ["scheduler"], {}, control)
        self._add("dag-processor", ["dag-processor"], {}, control)
        if self.triggerer:
            self._add("triggerer", ["triggerer"], {}, control)
        for host in self.hostnames:
            home = self.base / host
            for sub in ("home", "tmp"):
                (home / sub).mkdir(parents=True, exist_ok=True)
            argv = [
                "celery",
                "worker",
                "--celery-hostname",
                f"{host}@{host}",
                "--concurrency",
                str(self.concurrency),
            ]
            argv += ["--skip-serve-logs", "--without-mingle", "--without-gossip"]
            self._add(
                host,
                argv,
                {"AIRFLOW_HOME": str(home / "home"), "TMPDIR": str(home / "tmp")},
                home / "work",
                host,
            )
        for component in self.components:
            component.start()
        self._wait_ready()

    def stop(self) -> None:
        """Stop the workers first (they finish their current task), then the other components."""
        for component in reversed(self.components):
            component.stop()
        self.components = []

    def _add(self, name: str, args: list[str], env: dict[str, str], cwd: Path, hostname: str | None = None):
        argv = [AIRFLOW, *args]
        if hostname:  # own UTS namespace: set the host name, then exec the worker
            setter = (
                "import os, socket, sys; socket.sethostname(sys.argv[1]); os.execv(sys.argv[2], sys.argv[2:])"
            )
            argv = ["unshare", "--uts", "--", sys.executable, "-c", setter, hostname, *argv]
        self.components.append(
            Component(name, argv, {**self.env, **env}, cwd, self.base / "logs" / f"{name}.log")
        )

    def _reset_backends(self) -> None:
        import redis

        recreate_database(self.pg_admin_url, self.database)
        if not self.workers:
            return
        try:
            redis.Redis.from_url(f"{self.redis_url}/{self.redis_db}", socket_timeout=5).flushdb()
        except redis.RedisError as exc:
            raise StackError(f"Redis at {self.redis_url} is needed as the Celery broker: {exc}") from exc

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        pending = {"api-server", "scheduler", "dag-processor", "dags", *self.hostnames}
        if self.triggerer:
            pending.add("triggerer")
        while pending:
            for component in self.components:
                component.check()
            if time.monotonic() > deadline:
                raise StackError(
                    f"not ready after {START_TIMEOUT} s: {', '.join(sorted(pending))}; "
                    f"logs in {self.base / 'logs'}"
                )
            with contextlib.suppress(StackError, OSError):
                health = self._get_json("/api/v2/monitor/health", auth=False)
                pending.discard("api-server")
                for part in ("scheduler", "dag_processor", "triggerer"):
                    if (health.get(part) or {}).get("status") == "healthy":
                        pending.discard(part.replace("_", "-"))
            if "api-server" not in pending and "dags" in pending:
                with contextlib.suppress(StackError, OSError):
                    found = {d["dag_id"] for d in self.get("/api/v2/dags", limit=100)["dags"]}
                    if set(DAG_IDS) <= found:
                        pending.discard("dags")
            for host in self.hostnames:
                if host in pending and f"{host}@{host} ready." in _tail(
                    self.base / "logs" / f"{host}.log", 200
                ):
                    pending.discard(host)
            time.sleep(1)

    # --- CLI and REST API -----------------------------------------------------------------------
    def airflow(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """Run the ``airflow`` CLI with the stack's settings; :class:`StackError` if it fails."""
        result = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.base
        )
        if result.returncode != 0:
            raise StackError(
                f"airflow {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
            )
        return result

    def token(self) -> str:
        """A JWT for the REST API (``POST /auth/token`` as the admin), reused for 10 minutes."""
        if self._token is None or self._token[1] < time.monotonic():
            body = self._request(
                "POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False
            )
            self._token = (body["access_token"], time.monotonic() + 600)
        return self._token[0]

    def _request(self, method: str, path: str, payload: dict | None = None, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.api_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise StackError(
                f"{method} {path}: HTTP {exc.code}: {exc.read()[:2000].decode(errors='replace')}"
            ) from exc
        except urllib.error.URLError as exc:
            raise StackError(f"{method} {path}: {exc.reason}") from exc

    def _get_json(self, path: str, auth: bool = True) -> dict:
        return self._request("GET", path, auth=auth)

    def get(self, path: str, **params) -> dict:
        """``GET`` a REST API path with query parameters; the decoded JSON body."""
        query = "&".join(f"{k}={quote(str(v))}" for k, v in params.items())
        return self._get_json(f"{path}?{query}" if query else path)

    def trigger(self, dag_id: str, conf: dict | None = None, logical_date: str | None = None) -> str:
        """Trigger a run through ``POST /api/v2/dags/{dag_id}/dagRuns``; its ``dag_run_id``."""
        body = self._request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": logical_date, "conf": conf or {}}
        )
        return body["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        """The state of a DAG run (queued, running, success, failed)."""
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        """Poll until the run is success or failed; that state. :class:`StackError` on timeout or if
        a component died meanwhile."""
        deadline = time.monotonic() + timeout
        while (state := self.run_state(dag_id, run_id)) not in FINAL_STATES:
            for component in self.components:
                component.check()
            if time.monotonic() > deadline:
                raise StackError(f"{dag_id} run {run_id} still {state} after {timeout} s")
            time.sleep(1)
        return state

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """Task instances of a run (REST API objects: task_id, map_index, state, hostname, ...)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return self.get(path, limit=1000)["task_instances"]

    def dag_runs(self, dag_id: str) -> list[dict]:
        """Every run of a DAG (REST API objects), oldest logical date first."""
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns", limit=1000, order_by="logical_date")["dag_runs"]

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1
    ) -> str:
        """A task try's log as the api-server reads it (from S3), as text."""
        run = quote(run_id, safe="")
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/logs/{try_number}"
        body = self.get(path, map_index=map_index, full_content="true")
        content = body.get("content")
        if isinstance(content, list):
            return "\n".join(c.get("event", "") if isinstance(c, dict) else str(c) for c in content)
        return str(content)
