"""The S3 backend (any S3-compatible server: AWS, MinIO, SeaweedFS) through the Airflow
Connection ``aws_default`` (boto3 via the Amazon provider's ``S3Hook``)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from collections.abc import Iterator

from dataset_ops.storage.base import ObjectInfo

AWS_CONN_ID = "aws_default"
#: Multipart part size for streamed S3 uploads (bytes). 10,000 parts x 64 MiB = 625 GiB.
S3_PART_SIZE = 64 << 20
#: Objects above this size are copied with multipart ``UploadPartCopy`` (S3's ``CopyObject``
#: accepts at most 5 GiB).
S3_MULTIPART_COPY_THRESHOLD = 5 << 30
#: Part size of multipart copies (bytes): 10,000 parts x 512 MiB = 5 TiB, S3's object limit.
S3_COPY_PART_SIZE = 512 << 20


#: ``extra`` keys of an AWS Connection that :func:`client_from_environment` maps itself (anything
#: else, e.g. ``role_arn`` or ``profile_name``, needs the amazon provider's session factory).
_PLAIN_EXTRA = frozenset({"endpoint_url", "region_name", "aws_session_token"})


def client_from_environment(aws_conn_id: str = AWS_CONN_ID, config=None):
    """A boto3 S3 client for the Connection ``aws_conn_id`` built without importing Airflow (about
    1.8 s of a command-line tool's start here), or None when that cannot be done faithfully.

    Only the plain case: the Connection is the environment variable ``AIRFLOW_CONN_<ID>`` in
    Airflow's JSON form (``{"conn_type": "aws", "login", "password", "extra": {...}}``, the
    Airflow docs' "Storing connections in environment variables"), no secrets backend is
    configured (``AIRFLOW__SECRETS__BACKEND`` or ``[secrets] backend`` in ``airflow.cfg``: a
    backend is asked before the environment), and ``extra`` holds only ``endpoint_url``,
    ``region_name`` and ``aws_session_token``. Then ``login``/``password`` are the access key,
    as ``S3Hook`` takes them. In every other case (URI form, assumed roles, profiles, a secrets
    backend, no such variable) it returns None and the caller goes through ``S3Hook``.

    :param config: a botocore ``Config`` for the client.
    """
    import configparser
    import json

    raw = os.environ.get(f"AIRFLOW_CONN_{aws_conn_id.upper()}")
    if not raw or not raw.lstrip().startswith("{") or os.environ.get("AIRFLOW__SECRETS__BACKEND"):
        return None
    cfg = configparser.ConfigParser(interpolation=None)
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    try:
        cfg.read(os.path.join(home, "airflow.cfg"))
    except configparser.Error:
        return None
    if cfg.get("secrets", "backend", fallback="").strip():
        return None
    try:
        conn = json.loads(raw)
    except ValueError:
        return None
    extra = conn.get("extra") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            return None
    if conn.get("conn_type") != "aws" or not isinstance(extra, dict) or set(extra) - _PLAIN_EXTRA:
        return None
    import boto3

    return boto3.session.Session(
        aws_access_key_id=conn.get("login") or None,
        aws_secret_access_key=conn.get("password") or None,
        aws_session_token=extra.get("aws_session_token"),
        region_name=extra.get("region_name"),
    ).client("s3", endpoint_url=extra.get("endpoint_url"), config=config)


class S3Storage:
    """Objects in an S3 bucket below a prefix, through the amazon provider's ``S3Hook``.

    :param bucket: bucket name.
    :param prefix: key prefix below which the storage root lives (may be empty).
    :param aws_conn_id: Airflow Connection with credentials and optional ``endpoint_url``.
    :param client: a boto3 S3 client to use instead of the hook's (the uploader's, see
        :func:`client_from_environment`); :attr:`hook` is then made only if asked for.
    """

    def __init__(self, bucket: str, prefix: str = "", aws_conn_id: str = AWS_CONN_ID, client=None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.aws_conn_id = aws_conn_id
        self._hook = None
        self.client = client if client is not None else self.hook.get_conn()

    @property
    def hook(self):
        """The amazon provider's ``S3Hook`` on :attr:`aws_conn_id` (made on first use)."""
        if self._hook is None:
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            self._hook = S3Hook(aws_conn_id=self.aws_conn_id)
        return self._hook

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def object_key(self, key: str) -> str:
        """The S3 object key of ``key`` (the prefix joined in)."""
        return self._key(key)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except FileNotFoundError:
            return False
        return True

    def stat(self, key: str) -> ObjectInfo:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(self.uri(key)) from None
            raise
        return ObjectInfo(key, head["ContentLength"], head["LastModified"], head.get("ETag"))

    def copy(self, src: str, dst: str, multipart_threshold: int = S3_MULTIPART_COPY_THRESHOLD) -> None:
        """Server-side copy through boto3's managed transfer: ``CopyObject`` up to
        ``multipart_threshold`` bytes, multipart ``UploadPartCopy`` above (S3 API reference)."""
        from boto3.s3.transfer import TransferConfig

        self.stat(src)  # FileNotFoundError with the URI, before the transfer machinery starts
        config = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=min(S3_COPY_PART_SIZE, max(multipart_threshold, 5 << 20)),
            max_concurrency=4,
        )
        self.client.copy(
            {"Bucket": self.bucket, "Key": self._key(src)}, self.bucket, self._key(dst), Config=config
        )

    def move(self, src: str, dst: str) -> None:
        self.copy(src, dst)
        self.delete(src)

    def abort_incomplete_writes(
        self, older_than_seconds: float, prefix: str = "", dry_run: bool = False
    ) -> list[str]:
        cutoff = datetime.now(UTC).timestamp() - older_than_seconds
        paginator = self.client.get_paginator("list_multipart_uploads")
        aborted = []
        cut = len(self.prefix) + 1 if self.prefix else 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() < cutoff:
                    if not dry_run:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                    aborted.append(upload["Key"][cut:])
        return sorted(aborted)

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

    def write_file(self, key: str, path: str | os.PathLike) -> int:
        """``upload_file``: parts are read from the file as they are sent (s3transfer)."""
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_chunksize=S3_PART_SIZE, max_concurrency=4)
        self.client.upload_file(os.fspath(path), self.bucket, self._key(key), Config=config)
        return os.path.getsize(path)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        keys = [
            item["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix))
            for item in page.get("Contents", ())
        ]
        cut = len(self.prefix) + 1 if self.prefix else 0
        return iter(sorted(k[cut:] for k in keys))

    def create(self, key: str, data: bytes) -> bool:
        """``PutObject`` with ``If-None-Match: *`` (S3 conditional writes): 412 when it exists."""
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                return False
            raise

    def copy_new(self, src: str, dst: str, part_size: int = S3_COPY_PART_SIZE) -> bool:
        """Server-side multipart copy (``UploadPartCopy`` in parts of ``part_size`` bytes, any
        object size) completed with ``If-None-Match: *``: S3 answers 412 when ``dst`` exists,
        and the copy is then aborted (``CopyObject`` ignores that header on some servers)."""
        from concurrent.futures import ThreadPoolExecutor

        from botocore.exceptions import ClientError

        size = self.stat(src).size
        if size == 0:
            return self.create(dst, b"")
        source = {"Bucket": self.bucket, "Key": self._key(src)}
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=self._key(dst))["UploadId"]

        def part(number: int, offset: int) -> dict:
            end = min(offset + part_size, size) - 1
            result = self.client.upload_part_copy(
                Bucket=self.bucket,
                Key=self._key(dst),
                UploadId=upload_id,
                PartNumber=number,
                CopySource=source,
                CopySourceRange=f"bytes={offset}-{end}",
            )
            return {"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]}

        try:
            with ThreadPoolExecutor(max_workers=4) as pool:
                plan = list(enumerate(range(0, size, part_size), 1))
                parts = list(pool.map(lambda p: part(*p), plan))
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._key(dst),
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
            return True
        except ClientError as exc:
            self._abort_quietly(dst, upload_id)
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        except BaseException:
            self._abort_quietly(dst, upload_id)
            raise

    def _abort_quietly(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._key(key), UploadId=upload_id)
        except Exception:  # already gone; a lifecycle rule or the staging cleanup removes leftovers
            pass

    def children(self, folder: str = "") -> set[str]:
        """``ListObjectsV2`` with ``Delimiter="/"``: common prefixes are the sub-folders."""
        prefix = (
            self._key(folder.strip("/") + "/")
            if folder.strip("/")
            else (f"{self.prefix}/" if self.prefix else "")
        )
        paginator = self.client.get_paginator("list_objects_v2")
        names: set[str] = set()
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            names |= {p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])}
            names |= {o["Key"][len(prefix) :] for o in page.get("Contents", [])}
        return names

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """``ListObjectsV2`` pages (1,000 keys each): sizes and dates come with the listing."""
        cut = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for obj in page.get("Contents", []):
                yield ObjectInfo(obj["Key"][cut:], obj["Size"], obj["LastModified"], obj.get("ETag"))


class _CountingReader:
    def __init__(self, source: IO[bytes]):
        self._source, self.count = source, 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.count += len(data)
        return data
