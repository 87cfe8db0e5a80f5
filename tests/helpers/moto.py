"""Pointing Airflow's ``aws_default`` Connection at the local moto S3 server."""

from __future__ import annotations

import json


def use_moto(monkeypatch, endpoint: str) -> None:
    """Point the Connection ``aws_default`` (and boto3's credentials) at the moto server."""
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
    """Create a bucket named ``<prefix>-<10 random hex digits>`` on the S3 server at ``endpoint``
    (moto: any credentials); its name."""
    import uuid

    import boto3

    bucket = f"{prefix}-{uuid.uuid4().hex[:10]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    return bucket
