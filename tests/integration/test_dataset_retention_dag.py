"""``dataset_retention`` with ``dag.test()`` on a local storage root and staging root: a manual
run with the defaults reports and deletes nothing; with ``dry_run`` off it deletes exactly the old
datasets (keeping the newest and the one downloading), old abandoned uploads and old inference
working folders, all in one report."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from helpers.apify_datasets import make_dataset
from helpers.dags import load_dag

pytestmark = pytest.mark.integration

AGES = {"BBBBBBBBBBBBBBBB1": 2, "BBBBBBBBBBBBBBBB2": 35, "BBBBBBBBBBBBBBBB3": 40, "BBBBBBBBBBBBBBBB4": 90}


@pytest.fixture
def roots(tmp_path, monkeypatch):
    storage, staging = tmp_path / "storage", tmp_path / "staging"
    monkeypatch.setenv("AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT", str(storage))
    monkeypatch.setenv("AIRFLOW_VAR_STAGING_ROOT", str(staging))
    sizes = {run_id: make_dataset(storage, run_id, days_ago=age) for run_id, age in AGES.items()}
    make_dataset(storage, "BBBBBBBBBBBBBBBB5", days_ago=120, completeness="in_progress", touched_days_ago=0)
    old = (datetime.now(UTC) - timedelta(days=3)).timestamp()
    partial = staging / "uploads" / ".big.jsonl.abc.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"x" * 10)
    os.utime(partial, (old, old))
    work = storage / "work" / "inference" / "dataset_7_011126_v1" / "tmp.bin"
    work.parent.mkdir(parents=True)
    work.write_bytes(b"w" * 7)
    old = (datetime.now(UTC) - timedelta(days=30)).timestamp()
    os.utime(work, (old, old))
    return storage, staging, sizes


def _datasets(storage) -> set[str]:
    return {p.name for p in (storage / "datasets" / "facebook").iterdir()}


def test_manual_runs_report_first_and_delete_when_asked(roots):
    storage, staging, sizes = roots
    dag = load_dag("dataset_retention", retries=0)
    run = dag.test(run_conf={"keep_recent": 1})
    assert str(run.state) == "success"
    report = run.get_task_instance("report").xcom_pull(task_ids="report")
    assert report["dry_run"] is True and report["runs_deleted"] == 0
    assert {r["run_id"] for r in report["deleted_runs"]} == {
        "BBBBBBBBBBBBBBBB2",
        "BBBBBBBBBBBBBBBB3",
        "BBBBBBBBBBBBBBBB4",
    }
    assert report["staging"]["incomplete_uploads"] == ["uploads/.big.jsonl.abc.partial"]
    assert report["work_folders"]["folders_to_delete"] == 1
    assert _datasets(storage) == set(AGES) | {"BBBBBBBBBBBBBBBB5"}
    assert (staging / "uploads" / ".big.jsonl.abc.partial").exists()

    run = dag.test(run_conf={"keep_recent": 1, "dry_run": False})
    assert str(run.state) == "success"
    report = run.get_task_instance("report").xcom_pull(task_ids="report")
    assert report["runs_checked"] == 5 and report["runs_deleted"] == 3 and report["runs_kept"] == 2
    assert report["freed_space_bytes"] == sum(
        sizes[r] for r in ("BBBBBBBBBBBBBBBB2", "BBBBBBBBBBBBBBBB3", "BBBBBBBBBBBBBBBB4")
    )
    assert {r["run_id"]: r["days_old"] for r in report["deleted_runs"]} == {
        "BBBBBBBBBBBBBBBB2": 35,
        "BBBBBBBBBBBBBBBB3": 40,
        "BBBBBBBBBBBBBBBB4": 90,
    }
    assert _datasets(storage) == {"BBBBBBBBBBBBBBBB1", "BBBBBBBBBBBBBBBB5"}
    assert not (staging / "uploads" / ".big.jsonl.abc.partial").exists()
    assert report["work_folders"]["freed_space_bytes"] == 7
    assert not (storage / "work" / "inference" / "dataset_7_011126_v1").exists()
