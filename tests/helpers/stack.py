"""The ``airflow_stack`` fixture: a real CeleryExecutor Airflow with two workers for the session.

It starts :class:`airflow_stack.AirflowStack` (``scripts/airflow_stack.py``: api-server,
scheduler, dag-processor and two Celery workers as separate processes, each worker with its own
host name, home and ``TMPDIR``; metadata on the PostgreSQL server, broker Redis database 7) on
the world the DAGs it runs need, all reached over the network by the workers:

* S3: a bucket on the session's S3 server (SeaweedFS, ``s3_endpoint``), which also holds the task logs;
  storage root ``s3://<bucket>/datasets``, staging root ``s3://<bucket>/staging``, data lake
  ``s3://<bucket>/lake``;
* the Apify API (:class:`helpers.apify_server.ApifyServer`, Connection ``apify_default``);
* the three inventory microservices (:class:`helpers.inventory_server.InventoryServer`, seed 11,
  6,000 orders; Connections ``productos_service``, ``ordenes_service``, ``proveedores_service``).

Start-up took 19 to 41 s here; the fixture is session-scoped, so the tests that share it pay once.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import pytest

STAGING_PREFIX, STORAGE_PREFIX, LAKE_PREFIX = "staging", "datasets", "lake"


@dataclass
class StackWorld:
    """The running stack and what it was started on."""

    stack: object  # airflow_stack.AirflowStack
    bucket: str
    s3_endpoint: str
    apify: object  # helpers.apify_server.ApifyServer
    inventory: object  # helpers.inventory_server.InventoryServer

    def root(self, prefix: str) -> str:
        """``s3://<bucket>/<prefix>``: one of the roots the stack's Variables point at."""
        return f"s3://{self.bucket}/{prefix}"


@pytest.fixture(scope="session")
def airflow_stack(s3_endpoint, tmp_path_factory) -> StackWorld:
    """A started :class:`AirflowStack` (two workers, one task slot each) and its world."""
    from airflow_stack import AirflowStack, aws_connection, http_connection

    from helpers.apify_server import ApifyServer
    from helpers.inventory_server import InventoryServer
    from helpers.s3 import new_bucket

    bucket = new_bucket(s3_endpoint, "stack")
    with ApifyServer() as apify, InventoryServer(seed=11, orders=6_000) as inventory:
        apify_conn = {
            "conn_type": "http",
            "host": apify.api_url,
            "password": apify.token,
            "extra": {"media_read_timeout": 5.0, "media_backoff_factor": 0.05, "media_retries": 2},
        }
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(s3_endpoint),
            "AIRFLOW_CONN_APIFY_DEFAULT": json.dumps(apify_conn),
            "AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT": f"s3://{bucket}/{STORAGE_PREFIX}",
            "AIRFLOW_VAR_STAGING_ROOT": f"s3://{bucket}/{STAGING_PREFIX}",
            "AIRFLOW_VAR_DATALAKE_ROOT": f"s3://{bucket}/{LAKE_PREFIX}",
        }
        for conn_id in ("productos_service", "ordenes_service", "proveedores_service"):
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = http_connection(inventory.base_url)
        stack = AirflowStack(
            tmp_path_factory.mktemp("airflow-stack"),
            env=env,
            log_bucket=bucket,
            redis_db=7,
            database=f"dataset_ops_stack_test_{uuid.uuid4().hex[:8]}",
        )
        with stack:
            yield StackWorld(stack, bucket, s3_endpoint, apify, inventory)
        _drop_database(stack)


def _drop_database(stack) -> None:
    import psycopg

    with psycopg.connect(stack.pg_admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{stack.database}" WITH (FORCE)')
