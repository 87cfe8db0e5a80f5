"""``dataset_ops.settings``: configuration resolved at the task boundary.

* Variables in a command-line tool: the Variable the UI edits (the metadata database of the
  Airflow home), unless ``AIRFLOW_VAR_<KEY>`` is set; a database that cannot be read is an error
  with its reason, never the default.
* Every root's resolution (Variable, default, explicit) and the one rule for opening it: a local
  folder opens as such, ``s3://`` needs the Connection ``aws_default`` and names it (and the
  Variable) when it is missing, as a permanent error.
* The per-workflow Param objects from the DAGs' own Param defaults.
* No module of the library but ``settings`` reads a Variable.

In-process tests take the command-line path (``_in_task`` False): the test Airflow home's
migrated metadata database is where unset Variables and Connections are looked up.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dataset_ops import settings
from dataset_ops.errors import PermanentError, is_permanent
from dataset_ops.storage import LocalStorage, S3Storage

REPO = Path(__file__).resolve().parents[2]
PRINT_ROOT = "from dataset_ops import settings; print(settings.staging_root().uri)"
VARIABLES = (
    settings.STORAGE_ROOT_VARIABLE,
    settings.STAGING_ROOT_VARIABLE,
    settings.DATALAKE_ROOT_VARIABLE,
    settings.IMDB_BASE_URL_VARIABLE,
    settings.IMAGES_ROOT_VARIABLE,
    settings.REGISTRY_ROOT_VARIABLE,
)
AWS_JSON = json.dumps(
    {"conn_type": "aws", "login": "k", "password": "s", "extra": {"endpoint_url": "http://127.0.0.1:9"}}
)


def _python(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_VAR_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "PYTHONPATH": str(REPO / "plugins"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def clean(monkeypatch, tmp_path):
    """No suite Variable or ``aws_default`` in the environment, the command-line path, and an
    Airflow home of the test's own (for the storage root's default)."""
    for name in VARIABLES:
        monkeypatch.delenv(f"AIRFLOW_VAR_{name.upper()}", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    monkeypatch.setattr(settings, "_in_task", lambda: False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    return monkeypatch


def _var(monkeypatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)


# --- Variables in a command-line tool ---------------------------------------------------------
def test_a_command_line_tool_reads_the_variable_set_in_the_metadata_database(tmp_path):
    root = str(tmp_path / f"staging-{uuid.uuid4().hex[:6]}")
    set_it = f"from airflow.models import Variable; Variable.set('staging_root', {root!r}); print('set')"
    assert _python(set_it) == "set"
    try:
        assert _python(PRINT_ROOT) == root  # what `python -m dataset_ops.upload` would use
        assert _python(PRINT_ROOT, AIRFLOW_VAR_STAGING_ROOT="/elsewhere") == "/elsewhere"  # env wins
    finally:
        _python("from airflow.models import Variable; Variable.delete('staging_root'); print('ok')")
    assert _python(PRINT_ROOT) == "s3://training-data/"  # unset: the documented default


def test_a_variable_that_cannot_be_read_is_an_error_with_its_reason_not_the_default(tmp_path):
    """A metadata database that is not migrated: the staging root is not silently the default."""
    code = (
        "from dataset_ops import settings\n"
        "try:\n"
        "    print(settings.staging_root().uri)\n"
        "except settings.VariableUnavailable as exc:\n"
        "    print('unavailable:', exc)\n"
    )
    empty = tmp_path / "not-migrated.db"
    out = _python(code, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{empty}")
    assert out.startswith("unavailable: the Variable staging_root cannot be read"), out
    assert str(empty) in out and "no such table: variable" in out and "AIRFLOW_VAR_STAGING_ROOT" in out
    # the environment form needs no database
    database = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{empty}"}
    assert _python(code, **database, AIRFLOW_VAR_STAGING_ROOT="/s") == "/s"


def test_a_connection_that_cannot_be_looked_up_is_an_error_not_a_missing_one(tmp_path):
    code = (
        "from dataset_ops import settings\n"
        "try:\n"
        "    print(settings.connection_exists('aws_default'))\n"
        "except settings.ConnectionUnavailable as exc:\n"
        "    print('unavailable:', exc)\n"
    )
    empty = tmp_path / "not-migrated.db"
    out = _python(code, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{empty}")
    assert out.startswith("unavailable: whether the Connection aws_default exists"), out
    assert "no such table: connection" in out


def test_an_empty_variable_counts_as_unset(clean):
    _var(clean, settings.STAGING_ROOT_VARIABLE, "")
    assert settings.staging_root().uri == settings.DEFAULT_STAGING_ROOT


# --- each root's resolution -------------------------------------------------------------------
def test_storage_root_variable_else_the_airflow_home_folder(clean, tmp_path):
    default = str(tmp_path / "home" / "dataset-ops-storage")
    assert settings.storage_root() == settings.Root(default, "dataset_ops_storage_root")
    assert isinstance(settings.storage(), LocalStorage)
    _var(clean, "dataset_ops_storage_root", str(tmp_path / "s"))
    assert settings.storage_root().uri == str(tmp_path / "s")
    assert settings.storage().uri("a/b") == str(tmp_path / "s" / "a" / "b")


def test_staging_root_explicit_else_variable_else_default(clean, tmp_path):
    assert settings.staging_root() == settings.Root("s3://training-data/", "staging_root")
    _var(clean, "staging_root", str(tmp_path / "st"))
    assert settings.staging_root() == settings.Root(str(tmp_path / "st"), "staging_root")
    assert settings.staging_root("/given") == settings.Root("/given", None)


def test_datalake_root_variable_else_datalake_below_the_storage_root(clean, tmp_path):
    home_storage = str(tmp_path / "home" / "dataset-ops-storage")
    assert settings.datalake_root() == settings.Root(f"{home_storage}/datalake", "datalake_root")
    _var(clean, "dataset_ops_storage_root", "s3://bucket/datasets/")
    assert settings.datalake_root().uri == "s3://bucket/datasets/datalake"
    _var(clean, "datalake_root", "s3://inventario-datalake/")
    assert settings.datalake_root() == settings.Root("s3://inventario-datalake/", "datalake_root")
    assert settings.datalake_root("/lake").uri == "/lake"


def test_registry_root_variable_else_registry_below_the_storage_root(clean, tmp_path):
    _var(clean, "dataset_ops_storage_root", str(tmp_path / "s"))
    assert settings.inference_registry_root() == settings.Root(
        f"{tmp_path}/s/registry", "inference_registry_root"
    )
    _var(clean, "inference_registry_root", "s3://reg/")
    assert settings.inference_registry_root().uri == "s3://reg/"


def test_images_root_is_required_and_the_error_names_the_variable(clean):
    missing = "the Variable inference_images_root is not set"
    with pytest.raises(settings.MissingVariable, match=missing) as err:
        settings.inference_images_root()
    assert is_permanent(err.value)
    _var(clean, "inference_images_root", "s3://retail-images/")
    assert settings.inference_images_root() == settings.Root("s3://retail-images/", "inference_images_root")


def test_imdb_base_url_param_else_variable_else_imdb(clean):
    assert settings.imdb_base_url(None) == "https://datasets.imdbws.com/"
    assert settings.imdb_base_url("") == "https://datasets.imdbws.com/"
    _var(clean, "imdb_base_url", "http://127.0.0.1:1/dumps/")
    assert settings.imdb_base_url(None) == "http://127.0.0.1:1/dumps/"
    assert settings.imdb_base_url("file:///data/") == "file:///data/"


# --- the one rule: s3:// needs aws_default ----------------------------------------------------
ROOTS = {
    "dataset_ops_storage_root": settings.storage_root,
    "staging_root": settings.staging_root,
    "datalake_root": settings.datalake_root,
    "inference_images_root": settings.inference_images_root,
    "inference_registry_root": settings.inference_registry_root,
}


@pytest.mark.parametrize("variable", sorted(ROOTS))
def test_an_s3_root_without_aws_default_fails_naming_the_connection_and_the_variable(clean, variable):
    _var(clean, variable, "s3://some-bucket/prefix")
    root = ROOTS[variable]()
    assert root.uri == "s3://some-bucket/prefix" and root.variable == variable
    with pytest.raises(settings.MissingConnection) as err:
        root.open()
    with pytest.raises(settings.MissingConnection):
        root.check()
    message = str(err.value)
    assert isinstance(err.value, PermanentError) and is_permanent(err.value)  # fails at try 1
    assert "s3://some-bucket/prefix" in message and "no Connection aws_default exists" in message
    assert "create it" in message and f"set the Variable {variable} to a local folder" in message
    assert (err.value.conn_id, err.value.variable) == ("aws_default", variable)


def test_the_default_lake_below_an_s3_storage_root_needs_aws_default_too(clean):
    _var(clean, "dataset_ops_storage_root", "s3://bucket/datasets")
    with pytest.raises(settings.MissingConnection, match="the Variable datalake_root"):
        settings.datalake_root().open()


def test_an_explicit_s3_root_without_aws_default_says_so(clean):
    with pytest.raises(settings.MissingConnection, match=r"given explicitly.*use a local folder"):
        settings.open_root("s3://b/p", None)


def test_with_aws_default_an_s3_root_opens_and_a_local_root_needs_no_connection(clean, tmp_path):
    assert isinstance(settings.open_root(str(tmp_path / "x"), "staging_root"), LocalStorage)
    assert isinstance(settings.open_root(f"file://{tmp_path}/y", "staging_root"), LocalStorage)
    clean.setenv("AIRFLOW_CONN_AWS_DEFAULT", AWS_JSON)
    storage = settings.open_root("s3://bkt/pre/fix", "staging_root")
    assert isinstance(storage, S3Storage) and storage.uri("k") == "s3://bkt/pre/fix/k"
    assert settings.Root("s3://bkt/", "staging_root").check().uri == "s3://bkt/"


def test_a_connection_in_the_metadata_database_counts_outside_a_task(clean):
    """The API server and the command-line tools see the Connection the UI created."""
    from airflow.models.connection import Connection as StoredConnection
    from airflow.utils.session import create_session

    conn_id = f"aws_{uuid.uuid4().hex[:8]}"
    assert not settings.connection_exists(conn_id)
    with create_session() as session:
        session.add(StoredConnection(conn_id=conn_id, conn_type="aws"))
    try:
        assert settings.connection_exists(conn_id)
        storage = settings.open_root("s3://bkt/p", "staging_root", aws_conn_id=conn_id)
        assert isinstance(storage, S3Storage)
    finally:
        with create_session() as session:
            session.query(StoredConnection).filter(StoredConnection.conn_id == conn_id).delete()


# --- Param objects from the DAGs' own Params ------------------------------------------------
def _dag_params(dag_id: str, **required) -> dict:
    """The DAG's Params with their defaults (and ``required`` for those without one), as a run
    that changes nothing in the trigger form gets them."""
    from helpers.dags import load_dag

    params = load_dag(dag_id).params
    params.update(required)
    params.validate()
    return dict(params)


def test_inference_report_params_from_the_dags_defaults():
    params = _dag_params("inference_report", deployment_id=7)
    options = settings.InferenceReportParams.from_params(params)
    assert options == settings.InferenceReportParams(
        deployment_id=7,
        days_back=params["days_back"],
        confidence=params["confidence"],
        min_appearances=params["min_appearances"],
        process_name=None,
    )
    assert options == settings.InferenceReportParams(deployment_id=7)  # the dataclass agrees
    assert options.as_dict()["process_name"] == ""
    named = settings.InferenceReportParams.from_params(params | {"process_name": "p_1"})
    assert named.process_name == "p_1"


def test_inference_dataset_params_from_the_dags_defaults():
    params = _dag_params("inference_dataset", process_name="dataset_7_201126_v1")
    options = settings.InferenceDatasetParams.from_params(params)
    assert options == settings.InferenceDatasetParams(process_name="dataset_7_201126_v1")
    assert options.registry_name == "dataset_7_201126_v1" and options.references == ()
    chosen = settings.InferenceDatasetParams.from_params(
        params | {"references": [3, 5], "dataset_name": "ds", "fast_mode": True}
    )
    assert chosen.references == (3, 5) and chosen.registry_name == "ds" and chosen.fast_mode


def test_apify_download_params_from_the_dags_defaults():
    params = _dag_params("apify_dataset_download", run_id="HG7ML7M8z78YcAPEB")
    options = settings.ApifyDownloadParams.from_params(params)
    assert options == settings.ApifyDownloadParams()
    assert options.frames_wanted
    assert not settings.ApifyDownloadParams.from_params(params | {"download_media": False}).frames_wanted


# --- only settings reads Variables --------------------------------------------------------
def _reads_variables(tree: ast.AST) -> list[str]:
    """``Variable.get`` calls and ``Variable`` imports from airflow, with their line numbers."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow"):
            if any(alias.name == "Variable" for alias in node.names):
                found.append(f"line {node.lineno}: from {node.module} import Variable")
        elif isinstance(node, ast.Attribute) and node.attr == "get":
            if isinstance(node.value, ast.Name) and node.value.id.endswith("Variable"):
                found.append(f"line {node.lineno}: {node.value.id}.get")
    return found


def test_the_scan_finds_a_variable_read():
    source = "def f():\n    from airflow.sdk import Variable\n    return Variable.get('x')\n"
    assert len(_reads_variables(ast.parse(source))) == 2


def test_no_library_module_but_settings_reads_a_variable():
    package = REPO / "plugins" / "dataset_ops"
    offenders = {}
    for path in sorted(package.rglob("*.py")):
        if path == package / "settings.py":
            continue
        found = _reads_variables(ast.parse(path.read_text(encoding="utf-8")))
        if found:
            offenders[str(path.relative_to(REPO))] = found
    assert not offenders, f"read Variables through dataset_ops.settings: {offenders}"


def test_apify_media_settings_come_from_the_connections_extra(monkeypatch):
    extra = {"media_workers": "16", "media_read_timeout": 30}
    conn = {"conn_type": "http", "host": "api.apify.com", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_APIFY_TEST", json.dumps(conn))
    assert settings.apify_media_settings("apify_test") == {"workers": 16, "read_timeout": 30.0}

    conn["extra"] = {"media_retries": "many"}
    monkeypatch.setenv("AIRFLOW_CONN_APIFY_TEST", json.dumps(conn))
    with pytest.raises(ValueError, match="Connection apify_test: extra media_retries='many' is not a int"):
        settings.apify_media_settings("apify_test")

    from airflow.exceptions import AirflowNotFoundException

    with pytest.raises(AirflowNotFoundException, match="apify_absent"):
        settings.apify_media_settings("apify_absent")
