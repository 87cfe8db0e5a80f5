"""Talking to S3: the client from the Airflow Connection, part bodies that are never held in
memory, botocore hooks for progress, ``UploadPart`` in parallel threads, and the small S3 calls
the upload needs (``HeadObject``, ``ListParts``, ``AbortMultipartUpload``).

* **Bounded memory.** A part is never read into memory: ``UploadPart`` gets a
  :class:`FileRegion`, a seekable view of the part's byte range (``os.pread`` on one shared
  descriptor, like s3transfer's ``ReadFileChunk``). botocore reads it in 1 MiB blocks for the
  checksum and the SigV4 payload hash, rewinds it, and the HTTP layer streams it in 16 KiB
  blocks. Memory does not grow with the part size or the file size.
* **Integrity.** Every part carries a CRC32 checksum (``ChecksumAlgorithm="CRC32"``, computed
  by botocore from the part's bytes) that S3 verifies on ``UploadPart``.
* **Progress.** Bytes count only while botocore sends them (:func:`watch_transfers`), not
  during its checksum and signing passes.

Credentials and endpoint come from the Airflow Connection through
``S3Hook(aws_conn_id=...).get_conn()`` (:func:`s3_client`), which reads
``AIRFLOW_CONN_AWS_DEFAULT`` without a metadata DB; without such a Connection the hook falls back
to boto3's default chain (environment, ``~/.aws``, instance role; ``AWS_ENDPOINT_URL_S3``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dataset_ops.progress import ProgressLog
from dataset_ops.staging.status import UploadStatus, uploading_record, write_status
from dataset_ops.staging.upload.errors import UploadCancelled, UploadError
from dataset_ops.staging.upload.plan import CRASH_ENV, DEFAULT_PARALLEL, HASH_BLOCK
from dataset_ops.storage import Storage
from dataset_ops.storage.s3 import AWS_CONN_ID


class FileRegion:
    """Seekable read-only view of ``length`` bytes at ``offset`` of an open file (positions relative).

    Reads use ``os.pread`` on a descriptor shared by all parts, so threads never hold more than
    one read's worth of bytes and never disturb each other's position. Bytes count towards
    progress (``on_progress(n)``) only while "transferring" (between the ``request-created``
    handlers, see :func:`watch_transfers`), so botocore's checksum and signing passes are not
    counted; a rewind while transferring (a retry) subtracts what was counted.

    :param fd: open descriptor (owned by the caller). :param offset: first byte in the file.
    :param length: bytes in the view. :param on_progress: called with each count (bytes).
    :param stop: once set, reads raise :class:`UploadCancelled`.
    :raises UploadError: (from :meth:`read`) the file ended early: it shrank during the upload.
    """

    def __init__(
        self,
        fd: int,
        offset: int,
        length: int,
        on_progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ):
        self._fd, self._offset, self._length = fd, offset, length
        self._pos = 0
        self._on_progress = on_progress
        self._stop = stop
        self._transferring = False

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all the rest when None or negative); ``b""`` at the end."""
        if self._stop is not None and self._stop.is_set():
            raise UploadCancelled("upload stopping")
        remaining = self._length - self._pos
        n = remaining if size is None or size < 0 else min(size, remaining)
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._offset + self._pos)
        if not data:
            raise UploadError(f"file ended at byte {self._offset + self._pos:,}: it shrank during the upload")
        self._pos += len(data)
        if self._transferring and self._on_progress is not None:
            self._on_progress(len(data))
        return data

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        """Move within the view (clamped to it); returns the new position."""
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}[whence]
        new = max(0, min(self._length, base + pos))
        if self._transferring and self._on_progress is not None and new != self._pos:
            self._on_progress(new - self._pos)
        self._pos = new
        return new

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        """Nothing to release: the descriptor belongs to the caller."""

    def signal_transferring(self) -> None:
        """From now on reads count as progress (same name as s3transfer's ``ReadFileChunk``)."""
        self._transferring = True

    def signal_not_transferring(self) -> None:
        """Reads no longer count as progress."""
        self._transferring = False


def _request_body(request) -> Any:
    body = getattr(request, "body", None)
    return getattr(body, "_raw", body)  # botocore's AwsChunkedWrapper (HTTPS trailer checksums)


def _not_transferring(request, operation_name=None, **kwargs) -> None:
    body = _request_body(request)
    if operation_name in ("UploadPart", "PutObject") and isinstance(body, FileRegion):
        body.signal_not_transferring()


def _transferring(request, operation_name=None, **kwargs) -> None:
    body = _request_body(request)
    if operation_name in ("UploadPart", "PutObject") and isinstance(body, FileRegion):
        body.signal_transferring()


def watch_transfers(client) -> None:
    """Count body bytes only while sent: botocore ``request-created`` handlers around the
    signer, like s3transfer does."""
    events = client.meta.events
    events.register_first("request-created.s3", _not_transferring, unique_id="dataset-ops-upload-off")
    events.register_last("request-created.s3", _transferring, unique_id="dataset-ops-upload-on")


def s3_client(aws_conn_id: str = AWS_CONN_ID, parallel: int = DEFAULT_PARALLEL):
    """A boto3 S3 client for the Airflow Connection ``aws_conn_id``: built from the environment
    without importing Airflow when the Connection is a plain one there
    (:func:`~dataset_ops.storage.s3.client_from_environment`), else through ``S3Hook`` (a missing
    Connection makes the hook fall back to boto3's default credential chain). The HTTP pool holds
    ``parallel`` + 1 connections (botocore's default is 10); the payload is not signed (below).
    """
    from botocore.config import Config

    from dataset_ops.storage.s3 import client_from_environment

    def tuned(base):
        base = base or Config()
        return base.merge(
            Config(
                max_pool_connections=max(parallel + 1, base.max_pool_connections or 10),
                # Every part carries a CRC32 that S3 checks; a SigV4 sha256 of each part's payload
                # would be a second full pass over the file. botocore already skips it over HTTPS
                # when a checksum is sent; this skips it over plain HTTP too (a local S3 server).
                s3={**(base.s3 or {}), "payload_signing_enabled": False},
            )
        )

    client = client_from_environment(aws_conn_id, tuned(None))
    if client is not None:
        return client
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=aws_conn_id)
    return hook.get_client_type(region_name=hook.region_name, config=tuned(hook.config))


def error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ``ClientError`` (``"NoSuchUpload"``, ``"404"``), else None."""
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code")


def head(client, bucket: str, key: str) -> dict | None:
    """``HeadObject`` of ``key``, or None when there is no object.

    :raises botocore.exceptions.ClientError: any other failure.
    """
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def object_sha256(client, bucket: str, key: str, head: dict, size: int) -> str | None:
    """The sha256 of the object at ``key``: its ``sha256`` metadata (a single ``PutObject`` of
    this uploader), else read and hashed when its size is ``size`` (else None: it differs)."""
    if head.get("Metadata", {}).get("sha256"):
        return head["Metadata"]["sha256"]
    if head.get("ContentLength") != size:
        return None
    digest = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    while block := body.read(HASH_BLOCK):
        digest.update(block)
    return digest.hexdigest()


def list_uploaded_parts(client, bucket: str, key: str, upload_id: str) -> dict[int, dict]:
    """Parts already stored for ``upload_id``, by part number (``ListParts``, every page).

    :raises botocore.exceptions.ClientError: ``NoSuchUpload`` when the upload is gone.
    """
    parts: dict[int, dict] = {}
    paginator = client.get_paginator("list_parts")
    for page in paginator.paginate(Bucket=bucket, Key=key, UploadId=upload_id):
        for part in page.get("Parts", []):
            parts[part["PartNumber"]] = part
    return parts


def abort(client, bucket: str, key: str, upload_id: str, say: Callable[[str], None]) -> None:
    """Abort the multipart upload ``upload_id``; a failure is only said (never raised): the
    bucket's lifecycle rule or the staging cleanup removes what is left."""
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        say(f"aborted the old multipart upload {upload_id}")
    except Exception as exc:  # gone already, or no permission: starting over works regardless
        if error_code(exc) != "NoSuchUpload":
            say(
                f"could not abort the old multipart upload {upload_id} ({exc}); "
                "the bucket's lifecycle rule or the staging cleanup will remove it"
            )


def completed_part(number: int, etag: str, source: dict) -> dict:
    """The ``CompleteMultipartUpload`` entry of a part: number, ETag and CRC32 when ``source``
    (an ``UploadPart`` answer or a ``ListParts`` entry) has one."""
    part = {"PartNumber": number, "ETag": etag}
    if source.get("ChecksumCRC32"):
        part["ChecksumCRC32"] = source["ChecksumCRC32"]
    return part


def send_parts(
    client,
    bucket: str,
    key: str,
    upload_id: str,
    fd: int,
    todo: list[tuple[int, int, int]],
    parallel: int,
    prog: ProgressLog,
) -> dict[int, dict]:
    """``UploadPart`` of each ``(number, offset, length)`` in ``todo`` in ``parallel`` threads,
    CRC32 checked by S3; the first failure stops the others (in-flight reads raise
    :class:`UploadCancelled`, queued parts are dropped) and is raised.

    With ``DATASET_OPS_UPLOAD_CRASH_AFTER_PARTS=N`` in the environment (tests only) the process
    ends with ``os._exit(137)`` right after N parts completed.

    :returns: :func:`completed_part` entries by part number.
    """
    stop = threading.Event()
    crash_after = int(os.environ.get(CRASH_ENV) or 0)
    lock = threading.Lock()
    sent: dict[int, dict] = {}

    def send(number: int, offset: int, length: int) -> None:
        if stop.is_set():
            raise UploadCancelled("upload stopping")
        body = FileRegion(fd, offset, length, on_progress=prog.add, stop=stop)
        response = client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ContentLength=length,
            ChecksumAlgorithm="CRC32",
        )
        with lock:
            sent[number] = completed_part(number, response["ETag"], response)
            prog.part_done()
            if crash_after and len(sent) >= crash_after:
                sys.stderr.write(
                    f"\n{CRASH_ENV}={crash_after}: simulated crash after {len(sent)} parts (os._exit(137))\n"
                )
                sys.stderr.flush()
                os._exit(137)

    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="upload-part")
    futures = [pool.submit(send, *part) for part in todo]
    try:
        for future in as_completed(futures):
            future.result()
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return sent


@dataclass
class S3Job:
    """What every step of one S3 upload needs (sizes in bytes)."""

    client: Any
    storage: Storage
    bucket: str
    key: str
    name: str
    path: Path
    fd: int
    stat: os.stat_result
    sha256: str | None  # None until the hashing thread is done (multipart uploads)
    data_type: str | None
    previous: UploadStatus | None
    record: dict | None
    progress: bool
    say: Callable[[str], None]
    etag: str | None = None  # the object's ETag once complete

    @property
    def size(self) -> int:
        return self.stat.st_size

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def new_record(self, upload_id: str | None) -> UploadStatus:
        """An ``uploading`` record for new content, keeping the history of an earlier record."""
        return uploading_record(
            self.previous,
            self.name,
            size=self.size,
            sha256=self.sha256,
            upload_id=upload_id,
            data_type=self.data_type or (self.previous.data_type if self.previous else None),
        )

    def write_uploading(self, status: UploadStatus, block: dict | None) -> None:
        """Store the ``uploading`` record, with the resume ``block`` beside its fields."""
        write_status(self.storage, replace(status, multipart=block))
