"""Pointing Airflow's ``aws_default`` Connection at the test session's S3 server (SeaweedFS, see
``scripts/seaweedfs.py``), and making buckets on it. The server accepts any access key; these
helpers use ``testing``/``testing``."""

from __future__ import annotations

import json
import uuid


def use_s3(monkeypatch, endpoint: str) -> None:
    """Point the Connection ``aws_default`` (and boto3's credentials, through
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``) at the S3 server at ``endpoint``
    (``http://127.0.0.1:PORT``), for the current test (``monkeypatch``)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            }
        ),
    )


def new_bucket(endpoint: str, prefix: str) -> str:
    """Create a bucket named ``<prefix>-<10 random hex digits>`` on the S3 server at ``endpoint``;
    its name. ``prefix``: lower-case letters, digits and hyphens, at least 2 characters (bucket
    names must be DNS-valid)."""
    from seaweedfs import s3_client

    bucket = f"{prefix}-{uuid.uuid4().hex[:10]}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    return bucket
