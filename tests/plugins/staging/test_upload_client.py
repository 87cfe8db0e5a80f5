"""The uploader's S3 client: a plain Connection in the environment is used without importing
Airflow (about 1.8 s of the command's start), with the same endpoint, region and credentials as
``S3Hook`` gives; anything else goes through ``S3Hook``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_ops.storage.s3 import client_from_environment

REPO = Path(__file__).resolve().parents[3]
PLAIN = {
    "conn_type": "aws",
    "login": "AKIAEXAMPLE",
    "password": "secret-example",
    "extra": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-1"},
}


def test_a_plain_environment_connection_gives_what_s3hook_gives(monkeypatch, tmp_path):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(PLAIN))
    fast, hook = client_from_environment(), S3Hook(aws_conn_id="aws_default").get_conn()
    assert fast is not None
    for client in (fast, hook):
        credentials = client._request_signer._credentials
        assert (client.meta.endpoint_url, client.meta.region_name) == ("http://127.0.0.1:9", "eu-west-1")
        assert (credentials.access_key, credentials.secret_key) == ("AKIAEXAMPLE", "secret-example")


@pytest.mark.parametrize(
    "case",
    ["uri", "role", "profile", "not-aws", "secrets-env", "secrets-cfg", "missing"],
)
def test_anything_else_goes_through_s3hook(case, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW__SECRETS__BACKEND", raising=False)
    conn = json.loads(json.dumps(PLAIN))
    raw = None
    if case == "uri":
        raw = "aws://AKIAEXAMPLE:secret@/?endpoint_url=http%3A%2F%2F127.0.0.1%3A9"
    elif case == "role":
        conn["extra"]["role_arn"] = "arn:aws:iam::123456789012:role/uploader"
    elif case == "profile":
        conn["extra"]["profile_name"] = "uploads"
    elif case == "not-aws":
        conn["conn_type"] = "http"
    elif case == "secrets-env":
        monkeypatch.setenv(
            "AIRFLOW__SECRETS__BACKEND", "airflow.secrets.local_filesystem.LocalFilesystemBackend"
        )
    elif case == "secrets-cfg":
        (tmp_path / "airflow.cfg").write_text(
            "[secrets]\nbackend = airflow.secrets.local_filesystem.LocalFilesystemBackend\n"
        )
    if case == "missing":
        monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", raw or json.dumps(conn))
    assert client_from_environment() is None


def test_the_uploader_does_not_import_airflow_for_a_plain_connection(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(PLAIN),
        "PYTHONPATH": str(REPO / "plugins"),
    }
    code = (
        "import sys; from dataset_ops.staging.upload.transfer import s3_client; "
        "c = s3_client(parallel=8); "
        "print(c.meta.endpoint_url, c.meta.config.max_pool_connections, "
        "c.meta.config.s3['payload_signing_enabled'], 'airflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["http://127.0.0.1:9", "10", "False", "False"]
