"""Every DAG file parses, follows the suite's policies and stays light at parse time."""

from __future__ import annotations

import io
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


def test_every_task_has_the_suites_retry_policy(dagbag):
    """Permanent errors fail at once in every task: the policy comes with DEFAULT_ARGS."""
    from dataset_ops.dag_defaults import RETRY_POLICY

    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            assert task.retry_policy is RETRY_POLICY, f"{dag_id}.{task.task_id}: {task.retry_policy}"


def _permanent_errors() -> list[BaseException]:
    """Representative errors no retry can fix, each raised by the suite's own code."""
    from dataset_ops.errors import InputError
    from dataset_ops.imdb.datasets import InvalidDump, imdb_file
    from dataset_ops.imdb.download import DownloadRefused
    from dataset_ops.imdb.load import BadDumpData
    from dataset_ops.inference.extract import UnknownDeployment
    from dataset_ops.inference.register import AlreadyRegistered, DatasetIncomplete
    from dataset_ops.ingest.http import IngestClientError
    from dataset_ops.staging.status import check_name
    from dataset_ops.validation import load_rules, validate_stream

    errors: list[BaseException] = []
    for call in (
        lambda: load_rules("no_such_data_type"),  # unknown data type
        lambda: load_rules("jsonl", {"max_errors": "many"}),  # bad Param value
        lambda: imdb_file("title.nonsense"),  # unknown file
        lambda: check_name("../etc/passwd"),  # bad upload name
        lambda: validate_stream(  # a bad file (invalid UTF-8), checked where a task requires it
            io.BytesIO(b'{"a": "\xff"}\n'), load_rules("jsonl"), name="x.jsonl"
        ).raise_for_errors(),
    ):
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - collected for classification
            errors.append(exc)
    assert len(errors) == 5
    from dataset_ops.apify.run import RunEnded, RunNotFound, check_succeeded

    try:
        check_succeeded({"run_id": "r1", "status": "FAILED", "status_message": "boom"})
    except RunEnded as exc:
        errors.append(exc)
    errors += [
        InvalidDump("title.basics.tsv.gz", "wrong header", 1),
        BadDumpData("title.basics.tsv.gz: line 9: extra data after last expected column"),
        DownloadRefused("https://h/title.basics.tsv.gz: HTTP 404 Not Found", 404),
        DownloadRefused("https://h/title.basics.tsv.gz: HTTP 410 Gone", 410),
        IngestClientError("GET https://h/api/x: HTTP 403 Forbidden", 403),
        UnknownDeployment("deployment 77 is not in the reference database"),
        RunNotFound("Apify has no actor run r2"),
        AlreadyRegistered("dataset 'd1' is registered already"),
        DatasetIncomplete("s3://b/processes/p/dataset has no _manifest.json: the dataset is incomplete"),
        InputError("bad Param value"),
    ]
    return errors


def _transient_errors() -> list[BaseException]:
    """Errors a retry may fix: they keep the task's retries."""
    import psycopg
    import requests
    from botocore.exceptions import ClientError, EndpointConnectionError

    from dataset_ops.imdb.download import DownloadError
    from dataset_ops.imdb.load import ImdbLoadError
    from dataset_ops.ingest.http import IngestHTTPError
    from dataset_ops.validation.workers import WorkerError

    return [
        ConnectionError("connection refused"),
        TimeoutError("timed out"),
        requests.ConnectionError("connection reset"),
        requests.Timeout("read timed out"),
        DownloadError("https://h/title.basics.tsv.gz: HTTP 503 Service Unavailable"),
        DownloadError("https://h/title.basics.tsv.gz: download broke off after 1,000 bytes"),
        IngestHTTPError("GET https://h/api/x: HTTP 429 Too Many Requests after retries"),
        ImdbLoadError("title.basics.tsv.gz: canceling statement due to statement timeout"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.errors.LockNotAvailable("lock timeout"),
        ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce your request rate."}}, "PutObject"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        WorkerError("JSONL validation worker exited with code -9"),
        OSError(28, "No space left on device"),
    ]


def test_the_retry_policy_fails_permanent_errors_and_retries_transient_ones():
    """What Airflow's task runner asks the policy on every failure (try 1 of 3)."""
    from airflow.sdk import RetryAction

    from dataset_ops.dag_defaults import RETRY_POLICY
    from dataset_ops.errors import is_permanent

    for exc in _permanent_errors():
        decision = RETRY_POLICY.evaluate(exception=exc, try_number=1, max_tries=2)
        assert decision.action == RetryAction.FAIL, repr(exc)
        assert is_permanent(exc), repr(exc)
    for exc in _transient_errors():
        decision = RETRY_POLICY.evaluate(exception=exc, try_number=1, max_tries=2)
        assert decision.action == RetryAction.DEFAULT, repr(exc)
        assert not is_permanent(exc), repr(exc)


def test_http_statuses():
    from dataset_ops.errors import is_permanent_http_status

    assert [s for s in range(100, 600) if is_permanent_http_status(s)] == [
        s for s in range(400, 500) if s not in (408, 425, 429)
    ]
