"""Opening a storage root: ``s3://bucket/prefix`` or a local folder."""

from __future__ import annotations

import os
import re

from dataset_ops.storage.base import Storage
from dataset_ops.storage.local import LocalStorage
from dataset_ops.storage.s3 import AWS_CONN_ID, S3Storage

STORAGE_ROOT_VARIABLE = "dataset_ops_storage_root"


def open_storage(root: str, aws_conn_id: str = AWS_CONN_ID) -> Storage:
    """Storage for ``root``: ``s3://bucket[/prefix]``, ``file:///path`` or a local folder path.

    :raises ValueError: an ``s3://`` root without a bucket, or another URL scheme (``http://``,
        ``gs://``...), which would otherwise be taken for a local folder name.
    """
    if root.startswith("s3://"):
        bucket, _, prefix = root[5:].partition("/")
        if not bucket:
            raise ValueError(f"storage root {root!r} names no bucket")
        return S3Storage(bucket, prefix, aws_conn_id)
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", root)
    if scheme and scheme[1].lower() != "file":
        raise ValueError(
            f"storage root {root!r}: scheme {scheme[1]!r} is not supported (s3:// or a local path)"
        )
    return LocalStorage(root.removeprefix("file://"))


def default_storage_root() -> str:
    """The embedded default root: ``$AIRFLOW_HOME/dataset-ops-storage`` (a local folder)."""
    home = os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))
    return os.path.join(home, "dataset-ops-storage")


def storage_from_variable() -> Storage:
    """Storage at the Variable ``dataset_ops_storage_root`` (inside a task), else the default."""
    from airflow.sdk import Variable

    return open_storage(Variable.get(STORAGE_ROOT_VARIABLE, default=default_storage_root()))
