"""``microservice_ingest`` with ``dag.test()``: the three services played by the local inventory
server, the lake on moto's S3 server. A run lands every entity; a rerun of the same day leaves
the same keys and bytes; three days give three partitions; the Docker runner's tasks are built
with the right image, command, environment and network."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers.dags import load_dag
from helpers.inventory_server import InventoryServer

from dataset_ops.storage import open_storage

pytestmark = pytest.mark.integration

ENTITIES = ["productos", "categorias", "ordenes", "clientes", "proveedores"]
DAY = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)  # the run after the interval 11-15 02:00 .. 11-16 02:00


def _dag():
    return load_dag("microservice_ingest", retries=0)


def _states(run) -> dict[str, str]:
    return {
        f"{ti.task_id}[{ti.rendered_map_index}]" if ti.map_index >= 0 else ti.task_id: str(ti.state)
        for ti in run.get_task_instances()
    }


@pytest.fixture
def services(monkeypatch):
    with InventoryServer(seed=11, orders=6_000) as server:
        port = server.base_url.rsplit(":", 1)[1]
        for conn_id in ("productos_service", "ordenes_service", "proveedores_service"):
            monkeypatch.setenv(
                f"AIRFLOW_CONN_{conn_id.upper()}",
                json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": int(port), "schema": "http"}),
            )
        yield server


@pytest.fixture
def lake(s3_bucket, monkeypatch):
    root = f"s3://{s3_bucket}/lake"
    monkeypatch.setenv("AIRFLOW_VAR_DATALAKE_ROOT", root)
    return open_storage(root)


def _snapshot(lake) -> dict[str, bytes]:
    out = {}
    for key in sorted(lake.list("")):
        if key.startswith("_metrics/"):
            continue
        with lake.open_read(key) as fh:
            out[key] = fh.read()
    return out


def test_a_daily_run_lands_every_entity_and_a_rerun_changes_nothing(services, lake):
    dag = _dag()
    run = dag.test(logical_date=DAY)
    states = _states(run)
    assert str(run.state) == "success", states
    for service in ("productos_service", "ordenes_service", "proveedores_service"):
        assert all(v == "skipped" for k, v in states.items() if k.startswith(f"ingest_{service}_docker"))
    assert sorted(k for k, v in states.items() if v == "success" and k.startswith("ingest_")) == sorted(
        f"ingest_{s}[{e}]"
        for s, es in [
            ("productos_service", ["productos", "categorias"]),
            ("ordenes_service", ["ordenes", "clientes"]),
            ("proveedores_service", ["proveedores"]),
        ]
        for e in es
    )
    first = _snapshot(lake)
    for entity in ENTITIES:
        assert f"{entity}/dt=2026-11-15/{entity}_20261115_020000.csv" in first
        assert f"parquet/{entity}/dt=2026-11-15/{entity}_20261115_020000.parquet" in first
        assert f"raw/{entity}/dt=2026-11-15/{entity}_20261115_020000.jsonl" in first
    orders = pd.read_csv(io.BytesIO(first["ordenes/dt=2026-11-15/ordenes_20261115_020000.csv"]))
    expected = services.records(
        "ordenes", updated_since="2026-11-15T02:00:00Z", updated_before="2026-11-16T02:00:00Z"
    )
    assert orders["id"].tolist() == [r["id"] for r in expected] and 0 < len(expected) < 6_000
    products = pq.read_table(
        io.BytesIO(first["parquet/productos/dt=2026-11-15/productos_20261115_020000.parquet"])
    )
    assert products.num_rows == services.count("productos")
    assert str(products.schema.field("actualizado").type) == "timestamp[ms, tz=UTC]"

    again = dag.test(logical_date=DAY)
    assert str(again.state) == "success", _states(again)
    assert _snapshot(lake) == first  # same keys, same bytes


def test_three_days_give_three_partitions(services, lake):
    dag = _dag()
    for day in range(3):
        run = dag.test(logical_date=DAY + timedelta(days=day), run_conf={"entities": ["ordenes"]})
        assert str(run.state) == "success", _states(run)
    keys = [k for k in lake.list("ordenes/")]
    assert keys == [
        "ordenes/dt=2026-11-15/ordenes_20261115_020000.csv",
        "ordenes/dt=2026-11-16/ordenes_20261116_020000.csv",
        "ordenes/dt=2026-11-17/ordenes_20261117_020000.csv",
    ]
    assert not [k for k in lake.list("productos/")]  # not asked for: skipped


def test_docker_runner_tasks_are_built_with_image_command_environment_and_network():
    from airflow.providers.docker.operators.docker import DockerOperator

    dag = _dag()
    task = dag.get_task("ingest_ordenes_service_docker")
    partial = task.partial_kwargs
    assert task.operator_class is DockerOperator or getattr(task, "_operator_name", "") == "DockerOperator"
    assert "ingest_image" in partial["image"] and "dataset-ops-ingest:latest" in partial["image"]
    assert partial["network_mode"] == "bridge" and partial["pool"] == "ordenes_service"
    env = partial["environment"]
    assert env["AIRFLOW_CONN_ORDENES_SERVICE"] == "{{ conn_uri('ordenes_service') }}"
    assert "datalake_root" in env["AIRFLOW_VAR_DATALAKE_ROOT"] and "AIRFLOW_CONN_AWS_DEFAULT" in env
    commands = task.expand_input.value["command"]
    assert [c[3] for c in commands] == ["ordenes", "clientes"]
    assert commands[0][:3] == ["python", "-m", "dataset_ops.ingest"]
    assert "{{ data_interval_start.isoformat() }}" in commands[0] and "{{ params.layout }}" in commands[0]


def test_without_an_s3_connection_the_lake_is_the_local_storage_folder(services, monkeypatch, tmp_path):
    """The old containers' `/data` fallback: no `aws_default`, so `s3://inventario-datalake/`
    becomes `$AIRFLOW_HOME/dataset-ops-storage/inventario-datalake/`."""
    import os

    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_DATALAKE_ROOT", raising=False)
    run = _dag().test(logical_date=DAY, run_conf={"entities": ["categorias"]})
    assert str(run.state) == "success", _states(run)
    folder = os.path.join(os.environ["AIRFLOW_HOME"], "dataset-ops-storage", "inventario-datalake")
    local = open_storage(folder)
    assert "categorias/dt=2026-11-15/categorias_20261115_020000.csv" in list(local.list("categorias/"))


def test_backfill_over_three_days_plans_one_run_per_day():
    """`airflow backfill create --dry-run` over 2026-11-10 02:00 .. 2026-11-12 02:00 plans three
    runs, one per day (the logical dates it prints are one day before each 02:00 trigger). The
    runs themselves need a scheduler; the dag.test runs above cover what each run does."""
    import os
    import re
    import subprocess
    import sys

    airflow = [sys.executable, "-m", "airflow"]
    env = {**os.environ}
    subprocess.run([*airflow, "dags", "reserialize"], env=env, check=True, capture_output=True, timeout=300)
    out = subprocess.run(
        [*airflow, "backfill", "create", "--dag-id", "microservice_ingest", "--dry-run",
         "--from-date", "2026-11-10T02:00:00+00:00", "--to-date", "2026-11-12T02:00:00+00:00"],
        env=env, check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    planned = re.findall(r"\|\s*(2026-\d\d-\d\d \d\d:\d\d:\d\d\+00:00)\s*\|", out.stdout + out.stderr)
    assert planned == [
        "2026-11-09 02:00:00+00:00",
        "2026-11-10 02:00:00+00:00",
        "2026-11-11 02:00:00+00:00",
    ], out.stdout
