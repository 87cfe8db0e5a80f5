"""One small API over the object storage the suite keeps datasets in: a local folder or S3.

The root comes from the Airflow Variable ``dataset_ops_storage_root``: a local path (the embedded
default) or ``s3://bucket/prefix``, reached through the Airflow Connection ``aws_default``
(its extra ``endpoint_url`` points at MinIO or any S3-compatible server). Keys are ``/``-separated
paths below the root, e.g. ``imdb/raw/title.basics.tsv.gz``.

Writes are all-or-nothing: :meth:`Storage.write_stream` publishes the object only when the
source stream ended cleanly; if reading the source raises, nothing appears at the key and a
previous object there stays as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator

STORAGE_ROOT_VARIABLE = "dataset_ops_storage_root"
AWS_CONN_ID = "aws_default"
#: Multipart part size for streamed S3 uploads (bytes). 10,000 parts x 64 MiB = 625 GiB.
S3_PART_SIZE = 64 << 20


class Storage(Protocol):
    """Object storage operations every workflow uses."""

    def uri(self, key: str) -> str:
        """Full URI (``s3://...`` or an absolute path) of ``key``."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored at ``key``."""

    def size(self, key: str) -> int:
        """Size of the object in bytes. :raises FileNotFoundError: no such object."""

    def open_read(self, key: str) -> BinaryIO:
        """Open the object for streaming binary reads. :raises FileNotFoundError: no object."""

    def write_stream(self, key: str, source: IO[bytes]) -> int:
        """Stream ``source`` to ``key`` until EOF; all-or-nothing. Returns bytes written."""

    def delete(self, key: str) -> None:
        """Delete the object at ``key`` (no error if it is absent)."""

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys below ``prefix``, sorted."""


def read_json(storage: Storage, key: str) -> dict | None:
    """The JSON object stored at ``key``, or None when there is none."""
    if not storage.exists(key):
        return None
    with storage.open_read(key) as fh:
        return json.load(fh)


def write_json(storage: Storage, key: str, obj: dict) -> None:
    """Store ``obj`` as indented UTF-8 JSON at ``key`` (all-or-nothing)."""
    import io

    storage.write_stream(key, io.BytesIO(json.dumps(obj, indent=2, sort_keys=True).encode()))


class LocalStorage:
    """Objects as files below a local folder; writes go to a temporary file then ``os.replace``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents and path != self.root:
            raise ValueError(f"key {key!r} escapes the storage root {self.root}")
        return path

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def open_read(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def write_stream(self, key: str, source: IO[bytes]) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
                written = out.tell()
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return written

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return iter(())
        return iter(
            sorted(
                str(p.relative_to(self.root))
                for p in base.rglob("*")
                if p.is_file() and not p.name.endswith(".partial")
            )
        )


class S3Storage:
    """Objects in an S3 bucket below a prefix, through the amazon provider's ``S3Hook``.

    :param bucket: bucket name.
    :param prefix: key prefix below which the storage root lives (may be empty).
    :param aws_conn_id: Airflow Connection with credentials and optional ``endpoint_url``.
    """

    def __init__(self, bucket: str, prefix: str = "", aws_conn_id: str = AWS_CONN_ID):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.hook = S3Hook(aws_conn_id=aws_conn_id)
        self.client = self.hook.get_conn()

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def exists(self, key: str) -> bool:
        return self.hook.check_for_key(self._key(key), self.bucket)

    def size(self, key: str) -> int:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(self.uri(key)) from None
            raise

    def open_read(self, key: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise FileNotFoundError(self.uri(key)) from None
            raise

    def write_stream(self, key: str, source: IO[bytes]) -> int:
        """Multipart upload of ``source``; an exception while reading aborts the upload."""
        from boto3.s3.transfer import TransferConfig

        counting = _CountingReader(source)
        config = TransferConfig(multipart_chunksize=S3_PART_SIZE, max_concurrency=4)
        self.client.upload_fileobj(counting, self.bucket, self._key(key), Config=config)
        return counting.count

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        keys = self.hook.list_keys(self.bucket, prefix=self._key(prefix)) or []
        cut = len(self.prefix) + 1 if self.prefix else 0
        return iter(sorted(k[cut:] for k in keys))


class _CountingReader:
    def __init__(self, source: IO[bytes]):
        self._source, self.count = source, 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.count += len(data)
        return data


def open_storage(root: str, aws_conn_id: str = AWS_CONN_ID) -> Storage:
    """Storage for ``root``: ``s3://bucket[/prefix]`` or a local folder path.

    :raises ValueError: an ``s3://`` root without a bucket.
    """
    if root.startswith("s3://"):
        bucket, _, prefix = root[5:].partition("/")
        if not bucket:
            raise ValueError(f"storage root {root!r} names no bucket")
        return S3Storage(bucket, prefix, aws_conn_id)
    return LocalStorage(root.removeprefix("file://"))


def default_storage_root() -> str:
    """The embedded default root: ``$AIRFLOW_HOME/dataset-ops-storage`` (a local folder)."""
    home = os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))
    return os.path.join(home, "dataset-ops-storage")


def storage_from_variable() -> Storage:
    """Storage at the Variable ``dataset_ops_storage_root`` (inside a task), else the default."""
    from airflow.sdk import Variable

    return open_storage(Variable.get(STORAGE_ROOT_VARIABLE, default=default_storage_root()))
