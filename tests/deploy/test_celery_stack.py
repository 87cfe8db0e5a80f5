"""The suite on a real CeleryExecutor Airflow with two workers (``airflow_stack``, see
tests/helpers/stack.py): a staged-upload batch spreads over both workers and ends exactly as a
single-machine ``dag.test()`` run of the same batch; task logs are read back from S3; a week's
``airflow backfill create`` of ``microservice_ingest`` runs once per day, one partition per day."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from distributed import placement, put_batch, staged_batch, staging_outcome
from helpers.dags import load_dag
from helpers.s3 import use_s3
from helpers.stack import LAKE_PREFIX, STAGING_PREFIX

from dataset_ops.storage import open_storage

pytestmark = [pytest.mark.integration, pytest.mark.distributed]


def test_a_staged_batch_runs_on_both_workers_and_ends_as_on_one_machine(airflow_stack, monkeypatch):
    world, stack = airflow_stack, airflow_stack.stack
    use_s3(monkeypatch, world.s3_endpoint)
    batch = staged_batch(8)  # 6 good JSON Lines files, one with a broken line, one empty
    root = world.root(STAGING_PREFIX)
    put_batch(root, batch)

    run_id = stack.trigger("staged_upload_validation")
    assert stack.wait_for_run("staged_upload_validation", run_id, timeout=300) == "success"
    tis = stack.task_instances("staged_upload_validation", run_id)
    failed = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in tis if ti["state"] != "success"}
    logs = {key: stack.task_log("staged_upload_validation", run_id, key[0], key[1])[-3000:] for key in failed}
    assert not failed and len(tis) == 2 + len(batch), logs
    where = placement(tis)
    assert set(where) == {"worker-1", "worker-2"}, where  # both workers ran tasks
    assert sum(len(labels) for labels in where.values()) == len(tis)

    distributed = staging_outcome(root)
    expected = {name: "failed" if name.startswith("bad/") else "fresh" for name in batch}
    assert {name: o["state"] for name, o in distributed.items()} == expected
    assert distributed["bad/empty.jsonl"]["report"]["records"] == 0
    assert not list(open_storage(root).list("uploads"))

    # the api-server reads each task's log from S3, not from a worker's disk
    log = stack.task_log("staged_upload_validation", run_id, "find")
    assert f"s3://{world.bucket}/airflow-logs/dag_id=staged_upload_validation" in log
    assert "uploads to validate" in log

    single_root = world.root("single-machine/staging")
    monkeypatch.setenv("AIRFLOW_VAR_STAGING_ROOT", single_root)
    put_batch(single_root, batch)
    run = load_dag("staged_upload_validation", retries=0).test()
    assert str(run.state) == "success"
    assert staging_outcome(single_root) == distributed


def _backfill_runs(stack, dag_id: str, count: int, timeout: float = 600) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        runs = [r for r in stack.dag_runs(dag_id) if r["run_type"] == "backfill"]
        if len(runs) >= count and all(r["state"] in ("success", "failed") for r in runs):
            return runs
        assert time.monotonic() < deadline, [(r["logical_date"], r["state"]) for r in runs]
        time.sleep(2)


def test_a_week_backfill_runs_once_per_day_with_one_partition_per_day(airflow_stack, monkeypatch):
    world, stack = airflow_stack, airflow_stack.stack
    use_s3(monkeypatch, world.s3_endpoint)
    first = datetime(2026, 11, 11, 2, 0, tzinfo=UTC)
    stack.airflow(
        "backfill", "create", "--dag-id", "microservice_ingest",
        "--from-date", first.isoformat(), "--to-date", (first + timedelta(days=6)).isoformat(),
        "--dag-run-conf", json.dumps({"entities": ["ordenes"]}),
    )  # fmt: skip
    runs = _backfill_runs(stack, "microservice_ingest", 7)
    assert [r["state"] for r in runs] == ["success"] * 7
    starts = sorted(datetime.fromisoformat(r["data_interval_start"]) for r in runs)
    assert [b - a for a, b in zip(starts, starts[1:], strict=False)] == [timedelta(days=1)] * 6

    lake = open_storage(world.root(LAKE_PREFIX))
    keys = sorted(k for k in lake.list("ordenes/") if not k.endswith("/_manifest.json"))
    days = [s.strftime("%Y-%m-%d") for s in starts]
    assert [k.split("/")[1] for k in keys] == [f"dt={d}" for d in days]  # one partition per day
    manifests = sorted(k for k in lake.list("ordenes/") if k.endswith("/_manifest.json"))
    assert [k.split("/")[1] for k in manifests] == [f"dt={d}" for d in days]  # each written last
    landed = []
    for key in keys:
        with lake.open_read(key) as fh:
            landed += [row["id"] for row in csv.DictReader(io.StringIO(fh.read().decode("utf-8")))]
    served = world.inventory.records(
        "ordenes",
        updated_since=starts[0].isoformat(),
        updated_before=(starts[-1] + timedelta(days=1)).isoformat(),
    )
    assert sorted(landed) == sorted(str(r["id"]) for r in served)  # every order once, no gap
    assert not list(lake.list("productos/"))  # only the entity asked for in the run conf
