"""Every DAG file parses, follows the suite's policies and stays light at parse time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
HEAVY = [
    "pandas",
    "cv2",
    "openpyxl",
    "xlsxwriter",
    "boto3",
    "botocore",
    "psycopg",
    "psycopg2",
    "elasticsearch",
    "MySQLdb",
    "pymysql",
    "numpy",
    "requests",
]
#: Heavy modules a DAG file may import, and why.
ALLOWED_HEAVY = {
    # DockerOperator (its `docker` runner) imports the docker SDK, which imports requests
    "microservice_ingest.py": {"requests"},
}
#: Pools the DAGs may use; `make demo` and docker compose create them (include/pools.json).
KNOWN_POOLS = set(json.loads((REPO / "include" / "pools.json").read_text())) | {"default_pool"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"), known_pools=KNOWN_POOLS)


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {"imdb_download", "imdb_load"} <= set(dagbag.dag_ids)


def test_no_warnings_such_as_unknown_pools(dagbag):
    assert not dagbag.dag_warnings, dagbag.dag_warnings


def test_every_dag_has_owner_tags_retries_and_docs(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md) > 100, f"{dag_id} has no doc_md"
        for task in dag.tasks:
            assert task.owner not in ("", "airflow"), f"{dag_id}.{task.task_id} has no owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_every_task_has_the_suites_failure_callback(dagbag):
    from dataset_ops.notify import task_failure_callback

    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert callbacks == [task_failure_callback], f"{dag_id}.{task.task_id}: {callbacks}"


def test_no_task_splits_its_result_into_one_xcom_per_key(dagbag):
    """A ``@task`` annotated ``-> dict`` gets ``multiple_outputs`` and pushes every key as an XCom
    of its own besides the whole result: one Execution API call each, never read here."""
    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            assert not getattr(task, "multiple_outputs", False), f"{dag_id}.{task.task_id}"


def test_every_param_has_a_title_and_description(dagbag):
    for dag_id, dag in dagbag.dags.items():
        for name in dag.params:
            param = dag.params.get_param(name)
            assert param.schema.get("title"), f"{dag_id} Param {name} has no title"
            assert param.description, f"{dag_id} Param {name} has no description"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parsing_imports_no_heavy_modules(path):
    code = (
        "import runpy, sys, json\n"
        f"runpy.run_path({str(path)!r})\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert loaded <= ALLOWED_HEAVY.get(path.name, set()), sorted(loaded)
