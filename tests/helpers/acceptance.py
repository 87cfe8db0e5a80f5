"""The acceptance layer's Airflow: the suite as its users run it, started once for the package
``tests/acceptance`` and stopped after it (so that it does not run beside the Celery stack).

The ``acceptance`` fixture starts :class:`airflow_stack.AirflowStack` with the LocalExecutor
(``airflow api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` as separate processes,
metadata in a fresh PostgreSQL database), with schedules and Asset triggers on and every DAG
paused at creation, as in a default Airflow. Nothing about the suite's world is put in the
environment: the Connections and Variables are created through the REST API with the official
client (``apache-airflow-client``), as a user would in the UI, so the tasks read them from the
metadata database; the pools come from ``include/pools.json`` (``airflow pools import``).

The world, all reached over the network by the task processes:

* S3: a bucket on the session's S3 server (SeaweedFS): storage root ``s3://<bucket>/datasets``, staging
  root ``.../staging``, data lake ``.../lake``, inference registry ``.../registry/``;
* IMDb: the bundled sample (``include/imdb_sample/``) over HTTP with ETag/Last-Modified, loaded
  into a fresh PostgreSQL database (Connection ``imdb_postgres``);
* Apify: :class:`helpers.apify_server.ApifyServer` (Connection ``apify_default``);
* the inventory services: :class:`helpers.inventory_server.InventoryServer`;
* inference: the session's Elasticsearch-API server, MariaDB reference data and image bucket
  (``helpers.inference_fixtures``).

:class:`Acceptance` wraps the official client: trigger a run with or without a logical date,
wait for it, read task instances, XComs and logs, pause and unpause DAGs.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FINAL_STATES = {"success", "failed"}
PREFIXES = {"storage": "datasets", "staging": "staging", "lake": "lake", "registry": "registry/"}


@dataclass
class Acceptance:
    """The running Airflow (:attr:`stack`), its official REST client (:attr:`api`, an
    ``airflow_client.client.ApiClient``) and the world it was started on."""

    stack: object  # airflow_stack.AirflowStack
    api: object  # airflow_client.client.ApiClient
    bucket: str
    s3_endpoint: str
    apify: object  # helpers.apify_server.ApifyServer
    inventory: object  # helpers.inventory_server.InventoryServer
    imdb_server: object  # helpers.http_server.FileServer
    imdb_postgres_url: str
    inference: object  # helpers.inference_fixtures.InferenceEnv-like: world, es, mysql_url, images_root
    settings: dict = field(default_factory=dict)  # {"variables": {...}, "connections": {...}}

    # --- roots ---------------------------------------------------------------------------------
    def root(self, kind: str) -> str:
        """``s3://<bucket>/<prefix>`` of one of the roots the Variables point at (:data:`PREFIXES`)."""
        return f"s3://{self.bucket}/{PREFIXES[kind]}"

    # --- REST API through the official client ----------------------------------------------------
    def _refresh_token(self) -> None:
        self.api.configuration.access_token = self.stack.token()

    @property
    def dag_runs(self):
        from airflow_client.client.api.dag_run_api import DagRunApi

        self._refresh_token()
        return DagRunApi(self.api)

    @property
    def dags(self):
        from airflow_client.client.api.dag_api import DAGApi

        self._refresh_token()
        return DAGApi(self.api)

    @property
    def task_instances_api(self):
        from airflow_client.client.api.task_instance_api import TaskInstanceApi

        self._refresh_token()
        return TaskInstanceApi(self.api)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """``PATCH /api/v2/dags/{dag_id}`` with ``is_paused``."""
        from airflow_client.client.models import DAGPatchBody

        self.dags.patch_dag(dag_id=dag_id, dag_patch_body=DAGPatchBody(is_paused=paused))

    def trigger(self, dag_id: str, conf: dict | None = None, logical_date: datetime | None = None) -> str:
        """``POST /api/v2/dags/{dag_id}/dagRuns``; ``logical_date`` None sends ``"logical_date":
        null`` (a run without a logical date or data interval). The new run's id."""
        from airflow_client.client.models import TriggerDAGRunPostBody

        body = TriggerDAGRunPostBody(logical_date=logical_date, conf=conf or {})
        return self.dag_runs.trigger_dag_run(dag_id=dag_id, trigger_dag_run_post_body=body).dag_run_id

    def run(self, dag_id: str, run_id: str):
        """The DAG run (``DAGRunResponse``)."""
        return self.dag_runs.get_dag_run(dag_id=dag_id, dag_run_id=run_id)

    def runs(self, dag_id: str) -> list:
        """Every run of the DAG (``DAGRunResponse``), oldest ``run_after`` first."""
        return self.dag_runs.get_dag_runs(dag_id=dag_id, limit=100, order_by=["run_after"]).dag_runs

    def wait(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        """Poll until the run is success or failed; that state. Fails the test on timeout (with
        the task states) or when a component of the stack died."""
        deadline = time.monotonic() + timeout
        while (state := str(self.run(dag_id, run_id).state.value)) not in FINAL_STATES:
            for component in self.stack.components:
                component.check()
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{dag_id} {run_id} still {state} after {timeout} s: {self.states(dag_id, run_id)}"
                )
            time.sleep(1)
        return state

    def wait_for_new_run(
        self, dag_id: str, known: set[str], timeout: float = 300, run_type: str | None = None
    ):
        """The first run of ``dag_id`` whose id is not in ``known`` (and of ``run_type``, if
        given: ``scheduled``, ``asset_triggered``, ``manual``, ``backfill``), once it exists."""
        deadline = time.monotonic() + timeout
        while True:
            for run in self.runs(dag_id):
                if run.dag_run_id not in known and (run_type is None or run.run_type.value == run_type):
                    return run
            if time.monotonic() > deadline:
                pytest.fail(f"no new {run_type or ''} run of {dag_id} within {timeout} s")
            time.sleep(1)

    def task_instances(self, dag_id: str, run_id: str) -> list:
        """The run's task instances (``TaskInstanceResponse``: task_id, map_index, state, try_number...)."""
        return self.task_instances_api.get_task_instances(
            dag_id=dag_id, dag_run_id=run_id, limit=1000
        ).task_instances

    def states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """``{"task_id[map_index]": state}`` of a run."""
        out = {}
        for ti in self.task_instances(dag_id, run_id):
            label = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            out[label] = ti.state.value if ti.state is not None else "none"
        return out

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1):
        """The ``return_value`` XCom of a task instance, deserialised."""
        from airflow_client.client.api.x_com_api import XComApi

        self._refresh_token()
        entry = XComApi(self.api).get_xcom_entry(
            dag_id=dag_id, dag_run_id=run_id, task_id=task_id, xcom_key="return_value", map_index=map_index,
            deserialize=True,
        )  # fmt: skip
        entry = getattr(entry, "actual_instance", entry)  # the client wraps the response in a oneOf
        value = entry.value
        return getattr(value, "actual_instance", value)

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """A task try's log as the api-server serves it, as text."""
        return self.stack.task_log(dag_id, run_id, task_id, map_index=map_index, try_number=try_number)

    def discard_run(self, dag_id: str, run_id: str) -> None:
        """Mark a run failed (a queued or running run cannot be deleted), then delete it."""
        from airflow_client.client.models import DagRunMutableStates, DAGRunPatchBody

        if str(self.run(dag_id, run_id).state.value) not in FINAL_STATES:
            self.dag_runs.patch_dag_run(
                dag_id=dag_id,
                dag_run_id=run_id,
                dag_run_patch_body=DAGRunPatchBody(state=DagRunMutableStates.FAILED),
            )
        self.dag_runs.delete_dag_run(dag_id=dag_id, dag_run_id=run_id)

    def run_to_end(
        self,
        dag_id: str,
        conf: dict | None = None,
        logical_date: datetime | None = None,
        timeout: float = 600,
    ) -> tuple[str, str]:
        """Trigger a run and wait for it: ``(run_id, final state)``."""
        run_id = self.trigger(dag_id, conf, logical_date)
        return run_id, self.wait(dag_id, run_id, timeout)


def _configure(api, stack, connections: dict[str, dict], variables: dict[str, str]) -> None:
    """Create Connections and Variables through the REST API (official client), as in the UI."""
    from airflow_client.client.api.connection_api import ConnectionApi
    from airflow_client.client.api.variable_api import VariableApi
    from airflow_client.client.models import ConnectionBody, VariableBody

    api.configuration.access_token = stack.token()
    for conn_id, fields in connections.items():
        extra = fields.get("extra")
        body = ConnectionBody(
            connection_id=conn_id,
            conn_type=fields["conn_type"],
            host=fields.get("host"),
            port=fields.get("port"),
            login=fields.get("login"),
            password=fields.get("password"),
            schema=fields.get("schema"),
            extra=json.dumps(extra) if extra is not None else None,
        )
        ConnectionApi(api).post_connection(connection_body=body)
    for key, value in variables.items():
        VariableApi(api).post_variable(variable_body=VariableBody(key=key, value=value))


def _settings(world: dict) -> tuple[dict[str, dict], dict[str, str]]:
    """The Connections and Variables of the acceptance world."""
    from urllib.parse import urlsplit

    pg = urlsplit(world["imdb_postgres_url"])
    mysql = urlsplit(world["inference"].mysql_url)
    es = world["inference"].es
    bucket = world["bucket"]
    connections = {
        "aws_default": {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": world["s3_endpoint"], "region_name": "us-east-1"},
        },
        "imdb_postgres": {
            "conn_type": "postgres",
            "host": pg.hostname,
            "port": pg.port or 5432,
            "login": pg.username or "postgres",
            "schema": pg.path.lstrip("/"),
        },
        "apify_default": {
            "conn_type": "http",
            "host": world["apify"].api_url,
            "password": world["apify"].token,
            "extra": {"media_read_timeout": 5.0, "media_backoff_factor": 0.05, "media_retries": 2},
        },
        "inference_es": {"conn_type": "elasticsearch", "host": es.host, "port": es.port, "schema": "http"},
        "inference_mysql": {
            "conn_type": "mysql",
            "host": mysql.hostname,
            "port": mysql.port or 3306,
            "login": mysql.username or "root",
            "schema": mysql.path.lstrip("/"),
        },
    }
    port = int(world["inventory"].base_url.rstrip("/").rsplit(":", 1)[1])
    for conn_id in ("productos_service", "ordenes_service", "proveedores_service"):
        connections[conn_id] = {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http"}
    variables = {
        "dataset_ops_storage_root": f"s3://{bucket}/{PREFIXES['storage']}",
        "staging_root": f"s3://{bucket}/{PREFIXES['staging']}",
        "datalake_root": f"s3://{bucket}/{PREFIXES['lake']}",
        "inference_registry_root": f"s3://{bucket}/{PREFIXES['registry']}",
        "inference_images_root": world["inference"].images_root,
        "imdb_base_url": world["imdb_server"].url,
    }
    return connections, variables


@dataclass
class _InferenceWorld:
    world: object
    es: object
    mysql_url: str
    images_root: str


@pytest.fixture(scope="package")
def acceptance(
    s3_endpoint, tmp_path_factory, inference_world, inference_es, inference_mysql, inference_images_bucket
) -> Acceptance:
    """A running LocalExecutor Airflow with schedules on, configured through its REST API."""
    import psycopg
    from airflow_client.client import ApiClient, Configuration
    from airflow_stack import AirflowStack, recreate_database

    from helpers.apify_server import ApifyServer
    from helpers.http_server import FileServer
    from helpers.inference_data import IMAGES_PREFIX
    from helpers.inventory_server import InventoryServer
    from helpers.s3 import new_bucket

    bucket = new_bucket(s3_endpoint, "accept")
    imdb_files = tmp_path_factory.mktemp("imdb-www")
    for path in (REPO / "include" / "imdb_sample").glob("*.tsv.gz"):
        shutil.copy(path, imdb_files / path.name)
    tag = uuid.uuid4().hex[:8]
    pg_admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    imdb_url = recreate_database(pg_admin, f"dataset_ops_accept_imdb_{tag}")
    imdb_server = FileServer(imdb_files)
    inference = _InferenceWorld(
        inference_world, inference_es, inference_mysql, f"s3://{inference_images_bucket}/{IMAGES_PREFIX}"
    )
    try:
        with ApifyServer() as apify, InventoryServer(seed=11, orders=6_000) as inventory:
            world = {
                "bucket": bucket,
                "s3_endpoint": s3_endpoint,
                "apify": apify,
                "inventory": inventory,
                "imdb_server": imdb_server,
                "imdb_postgres_url": imdb_url,
                "inference": inference,
            }
            connections, variables = _settings(world)
            stack = AirflowStack(
                tmp_path_factory.mktemp("airflow-acceptance"),
                env={"ARROW_DEFAULT_MEMORY_POOL": "system"},
                executor="LocalExecutor",
                triggerer=True,
                schedules=True,
                paused_at_creation=True,
                parallelism=6,
                database=f"dataset_ops_accept_meta_{tag}",
            )
            with stack:
                config = Configuration(host=stack.api_url)
                with ApiClient(config) as api:
                    _configure(api, stack, connections, variables)
                    yield Acceptance(
                        stack=stack,
                        api=api,
                        settings={"connections": connections, "variables": variables},
                        **world,
                    )
            with psycopg.connect(pg_admin, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{stack.database}" WITH (FORCE)')
    finally:
        imdb_server.close()
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "dataset_ops_accept_imdb_{tag}" WITH (FORCE)')
