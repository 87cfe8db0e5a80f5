"""Process folders: default names take the next free number even when runs race for it; a
retry of the same DAG run reuses its process; an explicit name of another run is refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest

from dataset_ops.inference.process import ProcessExists, start_process
from dataset_ops.storage import open_storage

DAY = date(2026, 11, 20)


def test_concurrent_runs_get_distinct_versions(tmp_path):
    storage = open_storage(str(tmp_path))
    with ThreadPoolExecutor(6) as pool:
        names = list(
            pool.map(lambda i: start_process(storage, 7, DAY, f"run_{i}", {})["process_name"], range(6))
        )
    assert sorted(names) == [f"dataset_7_201126_v{n}" for n in range(1, 7)]
    again = start_process(storage, 7, DAY, "run_3", {})  # a retry of run_3's first task
    assert again["process_name"] == names[3] and again["dag_run_id"] == "run_3"


def test_an_explicit_name_belongs_to_its_run(tmp_path):
    storage = open_storage(str(tmp_path))
    assert start_process(storage, 7, DAY, "run_a", {}, "mine")["process_name"] == "mine"
    assert start_process(storage, 7, DAY, "run_a", {}, "mine")["status"] == "running"
    with pytest.raises(ProcessExists, match="run_a"):
        start_process(storage, 7, DAY, "run_b", {}, "mine")
    with pytest.raises(ValueError):
        start_process(storage, 7, DAY, "run_b", {}, "../up")
