"""``microservice_ingest`` with ``dag.test()``: the three services played by the local inventory
server, the lake on moto's S3 server. A run lands every entity; a rerun of the same day leaves
the same keys and bytes; three days give three partitions; a run without a logical date lands
the last complete interval before its ``run_after``, the Param ``day`` that day's interval; the
task ``catalog`` writes the table definitions once, and DuckDB reading the lake through them
(partition projection, SerDe, types) gets what the services served, partition by partition; the
Docker runner (against a fake Docker Engine API) runs only the entities asked for, gets its
Connections privately and leaves no secret in rendered fields, XCom, the audit log or the task
log; the README's backfill command gives the partitions the README promises."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers.dags import load_dag
from helpers.inventory_server import InventoryServer
from helpers.lake_tables import comparable, expected_rows, read_table, sort_key

from dataset_ops.ingest.catalog import location_uri
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


def _data_keys(lake, prefix: str) -> list[str]:
    """The data files below ``prefix`` (each partition's ``_manifest.json`` aside)."""
    return [k for k in lake.list(prefix) if not k.endswith("/_manifest.json")]


def _snapshot(lake) -> dict[str, bytes]:
    """Every data file of the lake (the partitions' ``_manifest.json`` aside: a rerun rewrites
    them with its own run id and time)."""
    out = {}
    for key in sorted(lake.list("")):
        if key.endswith("/_manifest.json"):
            continue
        with lake.open_read(key) as fh:
            out[key] = fh.read()
    return out


def _catalog_xcom(run) -> dict | None:
    [ti] = [ti for ti in run.get_task_instances() if ti.task_id == "catalog"]
    return ti.xcom_pull(task_ids="catalog")


def _served(services, entity: str, day: str) -> list[dict]:
    """What the service served for the interval starting at 02:00 UTC on ``day``."""
    if entity != "ordenes":
        return services.records(entity)
    start = datetime.fromisoformat(day).replace(hour=2, tzinfo=UTC)
    return services.records(
        "ordenes", updated_since=start.isoformat(), updated_before=(start + timedelta(days=1)).isoformat()
    )


def _assert_tables_read_what_was_served(
    lake, services, database: str, tables: list[str], days: list[str], tmp
):
    """Each table, from its Glue file in the lake, read with DuckDB through its partition
    projection: the rows of every projected partition are what the services served that day."""
    explode = {"proveedores": "productos"}
    for table in tables:
        entity = table.removesuffix("_parquet")
        with lake.open_read(f"_catalog/{database}/glue/{table}.json") as fh:
            request = json.loads(fh.read())
        assert request["DatabaseName"] == database
        rows = read_table(lake, location_uri(lake, ""), request, tmp / table)
        expected = [
            row
            for day in days
            for row in expected_rows(_served(services, entity, day), request, day, explode.get(entity))
        ]
        assert sorted(comparable(rows, expected), key=sort_key) == sorted(expected, key=sort_key), table
        assert sorted({r["dt"] for r in rows}) == days


def test_a_daily_run_lands_every_entity_and_a_rerun_changes_nothing(services, lake, tmp_path):
    dag = _dag()
    run = dag.test(logical_date=DAY)
    states = _states(run)
    assert str(run.state) == "success", states
    assert states["catalog"] == "success"
    catalog = _catalog_xcom(run)
    assert catalog["database"] == "inventario_datalake" and len(catalog["files"]) == 20
    assert all(
        f["written"] and f["key"].startswith("_catalog/inventario_datalake/") for f in catalog["files"]
    )
    _assert_tables_read_what_was_served(
        lake,
        services,
        "inventario_datalake",
        [f"{e}{suffix}" for e in ENTITIES for suffix in ("", "_parquet")],
        ["2026-11-15"],
        tmp_path,
    )
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
    with lake.open_read("ordenes/dt=2026-11-15/_manifest.json") as fh:
        manifest = json.loads(fh.read())
    assert manifest["status"] == "complete"
    assert (manifest["producer"]["dag_id"], manifest["producer"]["run_id"]) == (
        "microservice_ingest",
        run.run_id,
    )
    assert [f["path"] for f in manifest["files"]] == ["ordenes_20261115_020000.csv"]
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
    assert _snapshot(lake) == first  # same keys, same bytes (the catalog's too)
    assert [(f["key"], f["written"]) for f in _catalog_xcom(again)["files"]] == [
        (f["key"], False) for f in catalog["files"]
    ]


def test_three_days_give_three_partitions(services, lake, tmp_path):
    """...and the tables of the Param catalog_database show the three days, each with the orders
    the service served for it."""
    dag = _dag()
    for day in range(3):
        conf = {"entities": ["ordenes"], "catalog_database": "ventas"}
        run = dag.test(logical_date=DAY + timedelta(days=day), run_conf=conf)
        assert str(run.state) == "success", _states(run)
    keys = _data_keys(lake, "ordenes/")
    assert keys == [
        "ordenes/dt=2026-11-15/ordenes_20261115_020000.csv",
        "ordenes/dt=2026-11-16/ordenes_20261116_020000.csv",
        "ordenes/dt=2026-11-17/ordenes_20261117_020000.csv",
    ]
    assert not [k for k in lake.list("productos/")]  # not asked for: skipped
    assert {k.split("/")[1] for k in lake.list("_catalog/")} == {"ventas"}
    days = ["2026-11-15", "2026-11-16", "2026-11-17"]
    _assert_tables_read_what_was_served(
        lake, services, "ventas", ["ordenes", "ordenes_parquet"], days, tmp_path
    )


def test_without_the_variable_the_lake_is_datalake_below_the_storage_root(services, monkeypatch):
    """No Variable `datalake_root`: the lake is `datalake/` below the storage root, here the
    storage root's default `$AIRFLOW_HOME/dataset-ops-storage` (a local folder: no AWS needed).
    This replaces the old silent fallback of `s3://inventario-datalake/` to a local folder."""
    import os

    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_DATALAKE_ROOT", raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT", raising=False)
    run = _dag().test(logical_date=DAY, run_conf={"entities": ["categorias"]})
    assert str(run.state) == "success", _states(run)
    folder = os.path.join(os.environ["AIRFLOW_HOME"], "dataset-ops-storage", "datalake")
    local = open_storage(folder)
    assert "categorias/dt=2026-11-15/categorias_20261115_020000.csv" in list(local.list("categorias/"))


def test_an_s3_lake_without_the_aws_connection_fails_at_the_first_try_naming_it(services, monkeypatch, capfd):
    """`datalake_root` on S3 and no Connection `aws_default`: the ingest task fails at its first
    try (the DAG's own retries are not used) with an error naming the Connection and the
    Variable; nothing lands anywhere else."""
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    monkeypatch.setenv("AIRFLOW_VAR_DATALAKE_ROOT", "s3://inventario-datalake/")
    run = load_dag("microservice_ingest").test(logical_date=DAY, run_conf={"entities": ["categorias"]})
    assert str(run.state) == "failed"
    [ti] = [
        ti
        for ti in run.get_task_instances()
        if ti.task_id == "ingest_productos_service" and ti.rendered_map_index == "categorias"
    ]
    assert str(ti.state) == "failed" and ti.try_number == 1
    log = "".join(capfd.readouterr())
    assert "MissingConnection" in log and "no Connection aws_default exists" in log
    assert "set the Variable datalake_root to a local folder" in log


# --- runs without a logical date, and the Param day ------------------------------------------
def _last_complete_interval(run_after: datetime) -> tuple[datetime, datetime]:
    """The schedule's (02:00 UTC, one day) last interval ending at or before ``run_after``, by
    hand, to check the timetable-based resolution against."""
    end = run_after.astimezone(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    if end > run_after:
        end -= timedelta(days=1)
    return end - timedelta(days=1), end


def _interval_xcom(run) -> dict:
    [ti] = [ti for ti in run.get_task_instances() if ti.task_id == "data_interval"]
    return ti.xcom_pull(task_ids="data_interval")


@pytest.mark.parametrize(
    "logical_date",
    [None, DAY + timedelta(hours=13, minutes=14, seconds=48)],
    ids=["without-logical-date", "manual-at-an-odd-time"],
)
def test_a_manual_run_lands_the_last_complete_interval_of_the_schedule(services, lake, logical_date):
    """Without a logical date (REST `"logical_date": null`, the trigger form with the date
    cleared: no data interval, only `run_after`), which used to fail every ingest task with
    AttributeError; and with a logical date at an odd time (the form's pre-filled "now"), which
    used to land a partition overlapping the scheduled ones. Both land the schedule's interval
    that ended last before the run's moment."""
    run = _dag().test(logical_date=logical_date, run_conf={"entities": ["categorias", "ordenes"]})
    assert str(run.state) == "success", _states(run)
    if logical_date is None:
        assert run.logical_date is None and run.data_interval_start is None  # the kind of run we mean
        (start, end), source = _last_complete_interval(run.run_after), "run_after"
    else:
        assert run.data_interval_end == logical_date  # Airflow's manual interval: the 24 h before
        (start, end), source = (DAY - timedelta(days=1), DAY), "aligned"
    assert _interval_xcom(run) == {"start": start.isoformat(), "end": end.isoformat(), "source": source}
    stamp = f"{start:%Y%m%d}_020000"
    assert _data_keys(lake, "categorias/") == [f"categorias/dt={start:%Y-%m-%d}/categorias_{stamp}.csv"]
    assert _data_keys(lake, "ordenes/") == [f"ordenes/dt={start:%Y-%m-%d}/ordenes_{stamp}.csv"]
    with lake.open_read(f"categorias/dt={start:%Y-%m-%d}/categorias_{stamp}.csv") as fh:
        assert len(pd.read_csv(io.BytesIO(fh.read()))) == services.count("categorias")
    with lake.open_read(f"ordenes/dt={start:%Y-%m-%d}/ordenes_{stamp}.csv") as fh:
        landed = pd.read_csv(io.BytesIO(fh.read()))["id"].tolist()  # the header only when none
    expected = services.records("ordenes", updated_since=start.isoformat(), updated_before=end.isoformat())
    assert landed == [r["id"] for r in expected]
    assert not list(lake.list("productos/"))


@pytest.mark.parametrize(
    "logical_date, day",
    [(None, "2026-11-12"), (DAY, "2026-11-11")],
    ids=["without-logical-date", "day-wins-over-the-logical-date"],
)
def test_the_param_day_lands_that_days_interval(services, lake, logical_date, day):
    run = _dag().test(logical_date=logical_date, run_conf={"day": day, "entities": ["ordenes"]})
    assert str(run.state) == "success", _states(run)
    start = datetime.fromisoformat(day).replace(hour=2, tzinfo=UTC)
    end = start + timedelta(days=1)
    assert _interval_xcom(run) == {"start": start.isoformat(), "end": end.isoformat(), "source": "day"}
    key = f"ordenes/dt={day}/ordenes_{start:%Y%m%d}_020000.csv"
    assert _data_keys(lake, "ordenes/") == [key]
    with lake.open_read(key) as fh:
        landed = pd.read_csv(io.BytesIO(fh.read()))["id"].tolist()
    expected = services.records("ordenes", updated_since=start.isoformat(), updated_before=end.isoformat())
    assert landed == [r["id"] for r in expected] and expected


def test_a_day_whose_interval_is_not_complete_fails_once_before_any_ingest(services, lake):
    dag = load_dag("microservice_ingest")  # the DAG's own retries: the failure must not use them
    run = dag.test(logical_date=None, run_conf={"day": "2999-01-01", "entities": ["categorias"]})
    assert str(run.state) == "failed"
    tis = {ti.task_id: ti for ti in run.get_task_instances() if ti.map_index <= 0}
    assert str(tis["data_interval"].state) == "failed" and tis["data_interval"].try_number == 1
    assert str(tis["ingest_productos_service"].state) == "upstream_failed"
    assert not list(lake.list(""))


def test_a_day_that_is_no_date_is_refused_before_the_run_starts():
    from airflow.sdk.definitions.param import ParamValidationError

    for bad in ("2026-02-30", "12/11/2026", "2026-11-12T00:00:00"):
        with pytest.raises(ParamValidationError):
            _dag().test(logical_date=None, run_conf={"day": bad})


# --- the docker runner ----------------------------------------------------------------------
#: passwords with every URL-special character, so the raw and the URL-encoded forms differ
SERVICE_PASSWORD = "s3cr3t/p@ss:w?rd#&=+ %é"
AWS_SECRET = "AwsS3cret/Key+With=Specials%&"


def _secret_forms(secret: str) -> set[str]:
    from urllib.parse import quote, quote_plus

    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}


def _metadata_rows(table: str) -> str:
    import os
    import sqlite3

    db = os.path.join(os.environ["AIRFLOW_HOME"], "airflow.db")
    with sqlite3.connect(db) as conn:
        return "\n".join(repr(row) for row in conn.execute(f"SELECT * FROM {table}"))  # noqa: S608


@pytest.mark.parametrize(
    "logical_date, entities",
    [(None, ["categorias"]), (DAY, ["ordenes", "proveedores"])],
    ids=["categorias-without-logical-date", "two-services-with-logical-date"],
)
def test_docker_runner_runs_only_the_entities_asked_for_and_shows_no_secret(
    monkeypatch, capfd, logical_date, entities
):
    """Against a fake Docker Engine API (tests/helpers/docker_engine.py): the containers that
    would start, their command and environment; the Connections reach the container through
    `private_environment`; no form of a password is in the rendered fields, XCom, the audit log
    or the task logs."""
    from airflow.sdk import Connection
    from helpers.docker_engine import FakeDockerEngine

    for conn_id in ("productos_service", "ordenes_service", "proveedores_service"):
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            json.dumps({"conn_type": "http", "host": "inventory.internal", "port": 8000, "schema": "http",
                        "login": "ingest", "password": SERVICE_PASSWORD}),
        )  # fmt: skip
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps({"conn_type": "aws", "login": "AKIAFAKE", "password": AWS_SECRET}),
    )
    monkeypatch.setenv("AIRFLOW_VAR_DATALAKE_ROOT", "s3://inventario-datalake/")
    output = ['{"entity": "x", "rows": 7, "pages": 1, "duplicates": 0, "invalid_rows": 0, "seconds": 0.1}']
    with FakeDockerEngine(output=output) as engine:
        monkeypatch.setenv("DOCKER_HOST", engine.docker_url)
        # no catalog: the lake here is a name only (no S3 server behind it); the task is skipped
        conf = {"runner": "docker", "entities": entities, "catalog_database": None}
        run = _dag().test(logical_date=logical_date, run_conf=conf)
    states = _states(run)
    assert str(run.state) == "success", states
    assert states["catalog"] == "skipped"

    services = {
        "productos": "productos_service",
        "categorias": "productos_service",
        "ordenes": "ordenes_service",
        "clientes": "ordenes_service",
        "proveedores": "proveedores_service",
    }
    for entity, service in services.items():
        expected = "success" if entity in entities else "skipped"
        assert states[f"ingest_{service}_docker[{entity}]"] == expected
    in_process = {k: v for k, v in states.items() if k.startswith("ingest_") and "_docker" not in k}
    assert list(in_process.values()) == ["skipped"] * 5  # the other branch
    # exactly the containers asked for, with the run's interval in the command
    if logical_date is None:
        start, end = _last_complete_interval(run.run_after)
    else:
        start, end = DAY - timedelta(days=1), DAY
    assert sorted(spec["Cmd"][3] for spec in engine.created) == sorted(entities)
    for index, spec in enumerate(engine.created):
        entity = spec["Cmd"][3]
        assert spec["Cmd"] == [
            "python", "-m", "dataset_ops.ingest", entity, "--start", start.isoformat(),
            "--end", end.isoformat(), "--layout", "partitioned", "--run-id", run.run_id,
        ]  # fmt: skip
        env = engine.environment(index)
        # what the container gets still holds the Connections, password intact
        service_conn = Connection.from_uri(env[f"AIRFLOW_CONN_{services[entity].upper()}"], conn_id="x")
        assert (service_conn.host, service_conn.password) == ("inventory.internal", SERVICE_PASSWORD)
        assert Connection.from_uri(env["AIRFLOW_CONN_AWS_DEFAULT"], conn_id="y").password == AWS_SECRET
        assert env["AIRFLOW_VAR_DATALAKE_ROOT"] == "s3://inventario-datalake/"  # resolved in the worker
        others = {f"AIRFLOW_CONN_{s.upper()}" for s in set(services.values()) - {services[entity]}}
        assert not others & set(env)  # only its own service's Connection
    assert len(run.get_task_instance("summary").xcom_pull(task_ids="summary")) == len(entities)

    rendered = _metadata_rows("rendered_task_instance_fields")
    assert "AIRFLOW_VAR_DATALAKE_ROOT" in rendered and start.isoformat() in rendered  # the rows are there
    places = {
        "rendered fields": rendered,
        "xcom": _metadata_rows("xcom"),
        "audit log": _metadata_rows("log"),
        "task log": "".join(capfd.readouterr()),
    }
    assert "ingest_" in places["task log"] and "Starting docker container" in places["task log"]
    for where, text in places.items():
        for secret in _secret_forms(SERVICE_PASSWORD) | _secret_forms(AWS_SECRET):
            assert secret not in text, f"a password ({secret!r}) in the {where}"


def test_docker_runner_tasks_render_no_connection_into_their_template_fields():
    """The mapped Docker tasks as parsed: the template fields name no Connection at all (the
    secrets go through `private_environment` at execute time)."""
    dag = _dag()
    for service in ("productos_service", "ordenes_service", "proveedores_service"):
        partial = dag.get_task(f"ingest_{service}_docker").partial_kwargs
        assert partial["conn_id"] == service and partial["pool"] == service
        assert set(partial["environment"]) == {"AIRFLOW_VAR_DATALAKE_ROOT"}
        assert not partial.get("private_environment")
        assert partial["network_mode"] == "bridge" and "ingest_image" in partial["image"]


# --- the README's backfill example ----------------------------------------------------------
README_BACKFILL = (
    "airflow backfill create --dag-id microservice_ingest "
    "--from-date 2026-11-11T02:00:00+00:00 --to-date 2026-11-13T02:00:00+00:00"
)
README_PARTITIONS = ["dt=2026-11-10", "dt=2026-11-11", "dt=2026-11-12"]
#: the README's warning: dates without a time are midnights
README_MIDNIGHTS = "--from-date 2026-11-10 --to-date 2026-11-12"
README_MIDNIGHTS_PARTITIONS = ["dt=2026-11-09", "dt=2026-11-10"]


@pytest.mark.parametrize(
    "command, partitions",
    [
        (README_BACKFILL, README_PARTITIONS),
        (README_BACKFILL.split(" --from-date")[0] + " " + README_MIDNIGHTS, README_MIDNIGHTS_PARTITIONS),
    ],
    ids=["the-example", "dates-without-time"],
)
def test_the_readme_backfill_command_gives_the_partitions_the_readme_promises(command, partitions):
    """Runs the README's command exactly as written there against the test metadata DB (a
    subprocess; Airflow's own backfill code creates the runs, queued, as no scheduler runs here),
    then names each run's files from its stored data interval the way the ingest does: the
    partitions are the ones the README lists. The runs are deleted afterwards."""
    import os
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    from airflow.models import DagRun
    from airflow.models.backfill import Backfill, BackfillDagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select

    from dataset_ops.ingest.extract import lake_key
    from dataset_ops.ingest.interval import resolve_interval

    # the ingest reference moved from README.md to docs/ingest.md (issue 15)
    readme = (Path(__file__).resolve().parents[2] / "docs" / "ingest.md").read_text(encoding="utf-8")
    text = " ".join(readme.split())
    assert README_BACKFILL in text and README_MIDNIGHTS in text, "the README's command changed"
    assert all(f"`{p}`" in readme for p in partitions)
    argv = shlex.split(command)
    assert argv[0] == "airflow"
    env = {**os.environ}
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "dags", "reserialize"], env=env, check=True, capture_output=True, timeout=300)
    out = subprocess.run([*airflow, *argv[1:]], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    timetable = _dag().timetable
    with create_session() as session:
        backfill = session.scalars(
            select(Backfill).where(Backfill.dag_id == "microservice_ingest").order_by(Backfill.id.desc())
        ).first()
        runs = session.scalars(
            select(DagRun).where(DagRun.backfill_id == backfill.id).order_by(DagRun.logical_date)
        ).all()
        try:
            landed = []
            for run in runs:
                interval = resolve_interval(
                    timetable,
                    data_interval_start=run.data_interval_start,
                    data_interval_end=run.data_interval_end,
                    run_after=run.run_after,
                )
                assert interval.end - interval.start == timedelta(days=1)
                landed.append(lake_key("ordenes", "csv", interval.start).split("/")[1])
            assert landed == partitions, [(r.logical_date, r.data_interval_start) for r in runs]
        finally:
            session.execute(delete(BackfillDagRun).where(BackfillDagRun.backfill_id == backfill.id))
            for run in runs:
                session.delete(run)
            session.delete(backfill)
