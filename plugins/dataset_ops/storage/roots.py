"""Opening a storage root: ``s3://bucket/prefix`` or a local folder.

:func:`open_storage` opens the root it is given and reads no configuration. Which root a task
uses (a Variable, its default) and the rule that an ``s3://`` root needs its Connection are
:mod:`dataset_ops.settings` (``settings.storage_root().open()``, ``settings.open_root``).
"""

from __future__ import annotations

import re

from dataset_ops.storage.base import Storage
from dataset_ops.storage.local import LocalStorage
from dataset_ops.storage.s3 import AWS_CONN_ID, S3Storage

__all__ = ["open_storage"]


def open_storage(root: str, aws_conn_id: str = AWS_CONN_ID) -> Storage:
    """Storage for ``root``: ``s3://bucket[/prefix]``, ``file:///path`` or a local folder path.

    An ``s3://`` root goes through the Connection ``aws_conn_id`` as it is (a missing Connection
    leaves boto3 to its default credential chain); tasks open configured roots with
    :func:`dataset_ops.settings.open_root`, which requires the Connection.

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
