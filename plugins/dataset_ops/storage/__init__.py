"""One small API over the object storage the suite keeps datasets in: a local folder or S3.

The root comes from the Airflow Variable ``dataset_ops_storage_root``: a local path (the embedded
default) or ``s3://bucket/prefix``, reached through the Airflow Connection ``aws_default``
(its extra ``endpoint_url`` points at MinIO or any S3-compatible server). Keys are ``/``-separated
paths below the root, e.g. ``imdb/raw/title.basics.tsv.gz``.

Writes are all-or-nothing: :meth:`Storage.write_stream` publishes the object only when the
source stream ended cleanly; if reading the source raises, nothing appears at the key and a
previous object there stays as it was. :func:`publish` adds verification: it writes under a
temporary key (``_tmp/``), checks size and sha256, then moves the object into place.
Datasets carry a ``manifest.json`` (:func:`write_manifest`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator

STORAGE_ROOT_VARIABLE = "dataset_ops_storage_root"
AWS_CONN_ID = "aws_default"
#: Multipart part size for streamed S3 uploads (bytes). 10,000 parts x 64 MiB = 625 GiB.
S3_PART_SIZE = 64 << 20
#: Objects above this size are copied with multipart ``UploadPartCopy`` (S3's ``CopyObject``
#: accepts at most 5 GiB).
S3_MULTIPART_COPY_THRESHOLD = 5 << 30
#: Part size of multipart copies (bytes): 10,000 parts x 512 MiB = 5 TiB, S3's object limit.
S3_COPY_PART_SIZE = 512 << 20
#: Folder below the root for temporary objects of :func:`publish`.
TMP_PREFIX = "_tmp"


@dataclass(frozen=True)
class ObjectInfo:
    """What :meth:`Storage.stat` reports: size in bytes, last modification (UTC), S3 ETag."""

    key: str
    size: int
    last_modified: datetime
    etag: str | None = None


class Storage(Protocol):
    """Object storage operations every workflow uses."""

    def uri(self, key: str) -> str:
        """Full URI (``s3://...`` or an absolute path) of ``key``."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored at ``key``."""

    def stat(self, key: str) -> ObjectInfo:
        """Size, modification time and ETag. :raises FileNotFoundError: no such object."""

    def copy(self, src: str, dst: str) -> None:
        """Copy ``src`` to ``dst`` inside the storage (server-side on S3, any size).

        :raises FileNotFoundError: no object at ``src``.
        """

    def move(self, src: str, dst: str) -> None:
        """Move ``src`` to ``dst``: a rename locally, copy then delete on S3 (so an interruption
        leaves the object in both places, never in none)."""

    def abort_incomplete_writes(
        self, older_than_seconds: float, prefix: str = "", dry_run: bool = False
    ) -> list[str]:
        """Remove writes that never finished (S3 multipart uploads, local ``.partial`` files)
        started more than ``older_than_seconds`` ago; returns their keys (with ``dry_run``: the
        keys it would remove, removing nothing)."""

    def open_read(self, key: str) -> BinaryIO:
        """Open the object for streaming binary reads. :raises FileNotFoundError: no object."""

    def write_stream(self, key: str, source: IO[bytes]) -> int:
        """Stream ``source`` to ``key`` until EOF; all-or-nothing. Returns bytes written."""

    def write_file(self, key: str, path: str | os.PathLike) -> int:
        """Upload the local file ``path`` to ``key``; all-or-nothing. Returns bytes written.

        Unlike :meth:`write_stream` it can read the file again, so an S3 upload never holds a
        whole part in memory."""

    def delete(self, key: str) -> None:
        """Delete the object at ``key`` (no error if it is absent)."""

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys below ``prefix``, sorted."""

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object below ``prefix`` with its size and last modification, sorted by key (one
        listing, no request per object)."""

    def children(self, folder: str = "") -> set[str]:
        """Names of the files and sub-folders directly in ``folder`` (no deeper listing)."""

    def create(self, key: str, data: bytes) -> bool:
        """Write ``data`` at ``key`` only if nothing is there, atomically (of two concurrent
        callers exactly one wins); returns whether this call created it."""

    def copy_new(self, src: str, dst: str) -> bool:
        """Copy ``src`` to ``dst`` only if nothing is at ``dst``, atomically (of two concurrent
        callers exactly one wins, an existing object is never replaced); returns whether this
        call created ``dst``. :raises FileNotFoundError: no object at ``src``."""


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


class HashingReader:
    """A read-through wrapper: passes ``source``'s bytes on while counting them (``size``,
    bytes) and computing their sha256 (``sha256``, a ``hashlib`` object)."""

    def __init__(self, source: IO[bytes]):
        self._source, self.size, self.sha256 = source, 0, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.size += len(data)
        self.sha256.update(data)
        return data

    def readable(self) -> bool:
        return True


class PublishError(RuntimeError):
    """Verification before publishing failed; nothing was published."""


def publish(
    storage: Storage,
    key: str,
    source: IO[bytes],
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
) -> dict:
    """Atomically publish ``source`` at ``key``: write under ``_tmp/``, verify, move into place.

    :param expected_size: bytes the source must have, if known.
    :param expected_sha256: hex sha256 the content must have, if known.
    :returns: ``{"key", "bytes", "sha256"}`` of the published object.
    :raises PublishError: the stored temporary object's size, or the content's size or sha256,
        differs from what was expected; the temporary object is removed and ``key`` untouched.
    """
    tmp = f"{TMP_PREFIX}/{uuid.uuid4().hex}/{key.rsplit('/', 1)[-1]}"
    reader = HashingReader(source)
    try:
        storage.write_stream(tmp, reader)
        digest = reader.sha256.hexdigest()
        stored = storage.stat(tmp).size
        problems = []
        if stored != reader.size:
            problems.append(f"stored {stored:,} bytes but sent {reader.size:,}")
        if expected_size is not None and reader.size != expected_size:
            problems.append(f"{reader.size:,} bytes, expected {expected_size:,}")
        if expected_sha256 is not None and digest != expected_sha256:
            problems.append(f"sha256 {digest}, expected {expected_sha256}")
        if problems:
            raise PublishError(f"{storage.uri(key)} not published: " + "; ".join(problems))
        storage.move(tmp, key)
    finally:
        if storage.exists(tmp):
            storage.delete(tmp)
    return {"key": key, "bytes": reader.size, "sha256": digest}


def publish_file(storage: Storage, key: str, path: str | os.PathLike) -> dict:
    """Atomically publish the local file ``path`` at ``key``, like :func:`publish`: its size and
    sha256 are taken from the file first, it is written under ``_tmp/`` with
    :meth:`Storage.write_file` (bounded memory for any size), the stored size is checked, then
    it is moved into place.

    :returns: ``{"key", "bytes", "sha256"}``.
    :raises PublishError: the stored size differs; the temporary object is removed.
    """
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    tmp = f"{TMP_PREFIX}/{uuid.uuid4().hex}/{key.rsplit('/', 1)[-1]}"
    try:
        storage.write_file(tmp, path)
        stored = storage.stat(tmp).size
        if stored != size:
            raise PublishError(f"{storage.uri(key)} not published: stored {stored:,} bytes of {size:,}")
        storage.move(tmp, key)
    finally:
        if storage.exists(tmp):
            storage.delete(tmp)
    return {"key": key, "bytes": size, "sha256": digest.hexdigest()}


def file_sha256(storage: Storage, key: str) -> str:
    """Hex sha256 of the object at ``key``, read as a stream (1 MiB blocks)."""
    digest = hashlib.sha256()
    with storage.open_read(key) as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(storage: Storage, prefix: str, files: list[dict], producer: dict) -> dict:
    """Write ``<prefix>/manifest.json`` describing a dataset and return it.

    :param files: one dict per file: ``key`` (below the storage root), ``bytes``, ``sha256`` and,
        where known, ``rows``.
    :param producer: who made it, e.g. ``{"dag_id": ..., "run_id": ...}``.
    :returns: ``{"files": [...], "total_bytes", "created_at" (UTC ISO 8601), "producer"}``.
    """
    manifest = {
        "files": sorted(files, key=lambda f: f["key"]),
        "total_bytes": sum(f["bytes"] for f in files),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "producer": producer,
    }
    write_json(storage, f"{prefix.rstrip('/')}/manifest.json", manifest)
    return manifest


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

    def stat(self, key: str) -> ObjectInfo:
        st = self._path(key).stat()
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def copy(self, src: str, dst: str) -> None:
        with open(self._path(src), "rb") as fh:
            self.write_stream(dst, fh)

    def move(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        if not source.is_file():
            raise FileNotFoundError(str(source))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)

    def abort_incomplete_writes(
        self, older_than_seconds: float, prefix: str = "", dry_run: bool = False
    ) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        cutoff = time.time() - older_than_seconds
        removed = []
        for path in base.rglob("*.partial") if base.exists() else ():
            if path.stat().st_mtime < cutoff:
                if not dry_run:
                    path.unlink(missing_ok=True)
                removed.append(str(path.relative_to(self.root)))
        return sorted(removed)

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

    def write_file(self, key: str, path: str | os.PathLike) -> int:
        with open(path, "rb") as fh:
            return self.write_stream(key, fh)

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

    def create(self, key: str, data: bytes) -> bool:
        """A temporary file hard-linked to the key: ``link`` fails when the key exists."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)

    def copy_new(self, src: str, dst: str) -> bool:
        """Copy into a temporary file beside ``dst``, then ``link`` it to ``dst`` (which fails,
        replacing nothing, when ``dst`` exists)."""
        source, path = self._path(src), self._path(dst)
        if not source.is_file():
            raise FileNotFoundError(str(source))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        try:
            with open(source, "rb") as fh, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(fh, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)

    def children(self, folder: str = "") -> set[str]:
        base = self._path(folder) if folder else self.root
        return {p.name for p in base.iterdir() if not p.name.endswith(".partial")} if base.is_dir() else set()

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for key in self.list(prefix):
            try:
                st = self._path(key).stat()
            except FileNotFoundError:  # removed while listing
                continue
            yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))


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
        keys = self.hook.list_keys(self.bucket, prefix=self._key(prefix)) or []
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
