"""``inference_report`` with ``dag.test()``: 30,000 generated records in an Elasticsearch-API
server (noida-db) over HTTP, reference data in MariaDB, the process folder on a local root.

The workbook opens with openpyxl; its sheets and figures match what the test computes from the
generated world (not from the code under test). An unknown deployment, a deployment without
records in the window and an unreachable Elasticsearch fail with a clear message and write no
workbook."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import timedelta

import openpyxl
import pyarrow.parquet as pq
import pytest
from helpers.dags import load_dag
from helpers.inference_data import LOW_CONFIDENCE, NOW, WINDOW_DAYS

pytestmark = pytest.mark.integration

SHEETS = ["Resumen", "Datos_Elasticsearch", "References", "Devices", "Labels", "Model_Data", "Consistencia"]


@pytest.fixture
def root(tmp_path, monkeypatch, inference_env):
    path = tmp_path / "storage"
    monkeypatch.setenv("AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT", str(path))
    return path


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _table(ws) -> list[dict]:
    rows = ws.iter_rows(values_only=True)
    header = next(rows)
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_the_report_matches_the_records(root, inference_env):
    world = inference_env.world
    dag = load_dag("inference_report", retries=0)
    run = dag.test(logical_date=NOW, run_conf={"deployment_id": world.deployment_id, "min_appearances": 50})
    assert str(run.state) == "success", _states(run)
    name = f"dataset_{world.deployment_id}_{NOW:%d%m%y}_v1"
    folder = root / "processes" / name
    for sub in ("reports", "images/productos", "images/devices", "data", "logs"):
        assert (folder / sub).is_dir(), sub
    metadata = json.loads((folder / "process_metadata.json").read_text())
    assert metadata["status"] == "report_ready" and set(metadata["steps"]) == {
        "start",
        "extract_and_report",
    }
    truth = world.window_records
    assert metadata["steps"]["extract_and_report"]["records"] == len(truth) == 30_000
    assert pq.read_metadata(folder / "data" / "records.parquet").num_rows == len(truth)

    workbook = folder / "reports" / f"dataset_{world.deployment_id}_{NOW:%Y%m%d_%H%M%S}.xlsx"
    book = openpyxl.load_workbook(workbook, read_only=True)
    assert book.sheetnames == SHEETS
    data = book["Datos_Elasticsearch"]
    ids = [row[0] for row in data.iter_rows(min_row=2, values_only=True)]
    assert sorted(ids) == sorted(r.transaction_id for r in truth)

    # References: transactions, model OK and ok % per reference, computed here from the world
    per_ref = defaultdict(list)
    for r in truth:
        per_ref[r.reference_id].append(r)
    refs = {row["reference_id"]: row for row in _table(book["References"])}
    assert set(refs) == set(per_ref)
    for ref_id, records in per_ref.items():
        row = refs[ref_id]
        assert row["transactions"] == len(records)
        assert row["model_ok_pct"] == pytest.approx(sum(r.top1_right for r in records) / len(records))
        assert row["top3_hit_rate"] == pytest.approx(sum(r.right_in_top3 for r in records) / len(records))
        with_result = [r for r in records if r.result is not None]
        assert row["ok_pct"] == pytest.approx(sum(r.result == "ok" for r in with_result) / len(with_result))
        assert row["below_threshold"] == sum(r.low_confidence for r in records)
        assert row["known_in_mysql"] is (ref_id in world.reference_by_id)
        assert row["revisar_imagenes"] in (None, "")

    # Devices: every device of the deployment, the two without data at 0
    devices = {row["device_id"]: row for row in _table(book["Devices"])}
    counts = Counter(r.device_id for r in truth)
    assert set(devices) == {d.id for d in world.devices_for()}
    for device_id, row in devices.items():
        assert row["transactions"] == counts.get(device_id, 0)

    # Consistencia: the planted inconsistencies, with their counts
    findings = _table(book["Consistencia"])
    unknown = {
        int(f["item"]): f["count"]
        for f in findings
        if f["check"] == "reference in Elasticsearch unknown to MySQL"
    }
    assert unknown == world.unknown_references(since=world.window_start, until=NOW)
    no_ref = {int(f["item"]) for f in findings if f["check"] == "label without reference"}
    assert no_ref == set(world.labels_without_references())
    idle = {int(f["item"]) for f in findings if f["check"] == "device without data"}
    assert idle == set(world.devices_without_data(since=world.window_start, until=NOW))
    below = next(f for f in findings if f["check"] == "records below the confidence threshold")
    assert below["count"] == sum(r.top1_conf < LOW_CONFIDENCE for r in truth)
    missing = {f["item"]: f["count"] for f in findings if f["check"] == "field missing in records"}
    assert missing["result"] == sum(r.result is None for r in truth)

    # Resumen: the KPIs
    kpis = {row[0]: row[1] for row in book["Resumen"].iter_rows(values_only=True) if row and row[0]}
    assert kpis["Records"] == len(truth)
    assert kpis["Model OK (top-1)"] == pytest.approx(sum(r.top1_right for r in truth) / len(truth))
    labels = {row["label_id"]: row for row in _table(book["Labels"])}
    assert set(labels) == {label.id for label in world.labels_for()}
    model = {row["field"]: row["value"] for row in _table(book["Model_Data"])}
    assert model["model_name"] == world.model_for().name
    book.close()


def test_a_second_run_takes_the_next_version(root, inference_env):
    dag = load_dag("inference_report", retries=0)
    conf = {"deployment_id": inference_env.world.deployment_id, "days_back": 2}
    for _ in range(2):
        assert str(dag.test(logical_date=NOW, run_conf=conf).state) == "success"
    names = sorted(p.name for p in (root / "processes").iterdir())
    base = f"dataset_{inference_env.world.deployment_id}_{NOW:%d%m%y}_v"
    assert names == [f"{base}1", f"{base}2"]


def test_an_unknown_deployment_fails_clearly_and_makes_no_folder(root, inference_env, capfd):
    dag = load_dag("inference_report", retries=0)
    run = dag.test(logical_date=NOW, run_conf={"deployment_id": 999})
    assert str(run.state) == "failed" and _states(run)["start"] == "failed"
    assert "deployment 999 is not in the deployments table" in capfd.readouterr().out
    assert not (root / "processes").exists()


def test_a_window_without_records_writes_no_workbook(root, inference_env, capfd):
    dag = load_dag("inference_report", retries=0)
    later = NOW + timedelta(days=60)  # (a logical date before the DAG's start_date runs no task)
    conf = {"deployment_id": inference_env.world.deployment_id, "days_back": 7}
    run = dag.test(logical_date=later, run_conf=conf)
    assert str(run.state) == "failed" and _states(run)["extract_and_report"] == "failed"
    assert "has no inference records" in capfd.readouterr().out
    assert not any((root / "processes").rglob("*.xlsx"))
    [metadata] = list((root / "processes").rglob("process_metadata.json"))
    assert json.loads(metadata.read_text())["status"] == "failed: no records"


def test_an_unreachable_elasticsearch_is_named(root, inference_env, monkeypatch, capfd):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = {"conn_type": "elasticsearch", "host": "127.0.0.1", "port": port, "schema": "http"}
    monkeypatch.setenv("AIRFLOW_CONN_INFERENCE_ES", json.dumps(conn))
    dag = load_dag("inference_report", retries=0)
    run = dag.test(logical_date=NOW, run_conf={"deployment_id": inference_env.world.deployment_id})
    assert str(run.state) == "failed" and _states(run)["extract_and_report"] == "failed"
    assert "Connection inference_es, index inferences-*) is unreachable" in capfd.readouterr().out
    assert WINDOW_DAYS == 30


def test_the_report_on_an_s3_root(tmp_path, monkeypatch, inference_env):
    import io

    import boto3

    world, bucket = inference_env.world, inference_env.bucket
    prefix = f"root-{tmp_path.name[-10:]}/"
    monkeypatch.setenv("AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT", f"s3://{bucket}/{prefix}")
    dag = load_dag("inference_report", retries=0)
    run = dag.test(logical_date=NOW, run_conf={"deployment_id": world.deployment_id, "days_back": 3})
    assert str(run.state) == "success", _states(run)

    s3 = boto3.client("s3", endpoint_url=inference_env.s3_endpoint, region_name="us-east-1")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
    folder = f"{prefix}processes/dataset_{world.deployment_id}_{NOW:%d%m%y}_v1/"
    book_key = f"{folder}reports/dataset_{world.deployment_id}_{NOW:%Y%m%d_%H%M%S}.xlsx"
    assert {f"{folder}data/records.parquet", book_key, f"{folder}process_metadata.json"} <= keys
    assert not any(".partial" in key or "/." in key for key in keys)  # no work files published

    truth = [r for r in world.window_records if r.timestamp >= NOW - timedelta(days=3)]
    parquet = s3.get_object(Bucket=bucket, Key=f"{folder}data/records.parquet")["Body"].read()
    assert pq.read_table(io.BytesIO(parquet)).num_rows == len(truth) > 0
    body = s3.get_object(Bucket=bucket, Key=book_key)["Body"].read()
    book = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    kpis = {row[0]: row[1] for row in book["Resumen"].iter_rows(values_only=True) if row and row[0]}
    assert book.sheetnames == SHEETS and kpis["Records"] == len(truth)
    book.close()
