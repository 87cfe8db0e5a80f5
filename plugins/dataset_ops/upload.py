"""Upload a local file to the staging area's ``uploads/``: parallel, resumable S3 multipart
upload, or a resumable copy into a local staging root (the embedded default).

Usage::

    python -m dataset_ops.upload FILE [--root ROOT | --to DEST] [--name NAME]
        [--data-type T] [--parallel N] [--aws-conn-id aws_default] [--part-size-mib M]

The object key is ``<prefix><NAME>``; NAME defaults to the file's base name and may contain ``/``
but never ``..`` or a leading ``/`` (:func:`dataset_ops.staging.status.check_name`). ``--root``
is the staging root (``s3://bucket/prefix/``, ``file:///folder`` or a local folder) and the file
goes to its ``uploads/``; ``--to`` is the destination prefix itself (``s3://bucket/prefix/uploads/``
or a local ``.../uploads`` folder). With neither, the destination is ``uploads/`` under the
staging root: the Variable ``staging_root`` (``AIRFLOW_VAR_STAGING_ROOT``), else
``s3://training-data/``. The status record goes to ``_status/<NAME>.json`` under the staging
root, which is the destination prefix without its trailing ``uploads/`` (a prefix that does not
end in ``uploads/`` is itself the staging root).

**Nothing is replaced.** If ``uploads/<NAME>`` already holds a file (waiting for validation), the
same content is a no-op (recorded as ``uploaded``), and different content is refused with exit
code 3: the ``PutObject`` and ``CompleteMultipartUpload`` carry ``If-None-Match: *`` (a local
upload is hard-linked into place, which never replaces a file). Once validation has taken the
waiting file, the same command uploads the new content, which then becomes a new version of the
name in ``fresh/`` or ``failed/``.

**Local staging root** (a folder or ``file://``): the bytes are copied in 8 MiB blocks to a
hidden ``.<base>.upload.partial`` file beside the key (sha256 computed on the way, fsynced), then
hard-linked to the key, so the object appears under ``uploads/`` only when complete. The
``uploading`` record names the partial file and the source's size and ``mtime_ns``; a rerun with
the same file checks the partial file against the source block by block and copies the rest
(else it starts over, saying so). Progress as below.

Credentials and endpoint come from the Airflow Connection ``--aws-conn-id`` through
``S3Hook(aws_conn_id=...).get_conn()``, which reads ``AIRFLOW_CONN_AWS_DEFAULT`` without a
metadata DB. When no such Connection exists, the hook falls back to boto3's default chain
(environment, ``~/.aws``, instance role; ``AWS_ENDPOINT_URL_S3`` for the endpoint).

Exit codes: 0 uploaded (or already there), 1 upload failed (resumable: rerun the same command),
2 bad arguments (unsafe name, missing file, bad destination), 3 ``uploads/<NAME>`` holds a
different file not validated yet (nothing replaced), 130 interrupted (Ctrl-C, resumable).
The final status record is printed as JSON on the last line of stdout (Airflow's own log lines
may come before it); messages and progress go to stderr.

Design
------
* **Parts.** Files under 16 MiB go up with one ``PutObject``; larger ones as a multipart upload
  (``CreateMultipartUpload``, ``UploadPart`` in ``--parallel`` threads, ``CompleteMultipartUpload``)
  with the part size of :func:`choose_part_size`. S3 shows nothing at the key until
  ``CompleteMultipartUpload``, so an upload abandoned mid-way never looks complete.
* **Bounded memory.** A part is never read into memory: ``UploadPart`` gets a
  :class:`_FileRegion`, a seekable view of the part's byte range (``os.pread`` on one shared
  descriptor, like s3transfer's ``ReadFileChunk``). botocore reads it in 1 MiB blocks for the
  checksum and the SigV4 payload hash, rewinds it, and the HTTP layer streams it in 16 KiB
  blocks. Memory does not grow with the part size or the file size.
* **Integrity.** The whole file's sha256 is computed in a background thread, in one sequential
  read, while Airflow is imported, the Connection and the status record are read and, for a
  multipart upload, while the parts go out; ``CompleteMultipartUpload`` waits for it. Every
  part carries a CRC32 checksum (``ChecksumAlgorithm="CRC32"``, computed by botocore from the
  part's bytes) that S3 verifies on ``UploadPart``, and ``CompleteMultipartUpload`` lists every
  part with its ETag (and CRC32 when known). A file under 16 MiB is hashed first and sent with
  ``ChecksumSHA256`` (S3 verifies it) and ``x-amz-meta-sha256``. The sha256 goes into the
  status record, where the validation workflow compares it with the sha256 of the bytes it
  reads before anything is promoted. After completion ``HeadObject`` must show the file's size
  (and the metadata, or a ``-<parts>`` ETag). The file must not change during the upload: its
  size and mtime are checked again before completing.
* **Resume.** Before the first part, the status ``_status/<NAME>.json`` is written as
  ``uploading`` with ``upload_id``, ``size`` and a ``multipart`` block (bucket, key, part size,
  part count, file path, size and ``mtime_ns``: the record's ``multipart`` field, cleared once
  the upload is complete). Rerunning the same command reads it; if the file's size and mtime
  and the destination are the same, it lists the parts already on the server (``ListParts``,
  paginated) and keeps those whose size matches the plan and whose CRC32 (or MD5 ETag) matches
  the file's bytes now; it uploads only the others, with the recorded part size. If the file's
  size or mtime changed, or the upload id is gone (``NoSuchUpload``: aborted, or removed by a
  lifecycle rule or the staging cleanup), it aborts the old upload when it can and starts
  over, saying so. A failure or Ctrl-C leaves the record ``uploading`` and the multipart upload
  in place (it is never aborted on failure: that is what lets the next run resume). On success
  the record becomes ``uploaded`` with size, sha256, the object's ETag and ``timings``
  (``hash``: seconds of the sha256 pass, ``upload``: seconds of this run), and ``upload_id``
  cleared.
* **Already there.** If the record of a finished upload has the file's size and sha256 and the
  object at the key has that size and the recorded ETag (or ``sha256`` metadata), nothing is
  sent.
* **One uploader per name.** Concurrent uploads of the same NAME are not supported: each would
  replace the other's status record; the first ``CompleteMultipartUpload`` wins, the other gets
  412 (exit code 3) and keeps its parts.
* **Progress** on stderr: percent, MiB/s (last 10 s), ETA and parts done/total, every second as
  one carriage-return line on a terminal, every 5 s as plain lines otherwise (task logs).

Fault injection (tests only): with ``DATASET_OPS_UPLOAD_CRASH_AFTER_PARTS=N`` in the
environment the process ends with ``os._exit(137)`` (like a SIGKILL) right after N parts have
completed in this run, leaving the multipart upload and the ``uploading`` record behind.

S3 API and limits (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html): at most
10,000 parts; parts from 5 MiB to 5 GiB, except the last, which may be smaller; objects up to
5 TiB; ``PutObject`` up to 5 GiB.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import json
import logging
import os
import re
import shlex
import sys
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

from dataset_ops.staging.status import (
    UPLOADS,
    UploadState,
    UploadStatus,
    check_name,
    now_iso,
    quiet_airflow_logs,
    staging_root,
    status_key,
    write_status,
)
from dataset_ops.storage import Storage, file_sha256, open_storage, read_json

MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

#: S3 limits (bytes / counts).
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_OBJECT_SIZE = 5 * TiB
#: Files smaller than this (bytes) are sent with one PutObject.
SINGLE_PUT_LIMIT = 16 * MiB
#: Part size tiers (bytes): (files smaller than, part size).
PART_SIZE_TIERS = ((100 * MiB, 16 * MiB), (1 * GiB, 64 * MiB))
LARGE_PART_SIZE = 128 * MiB

DEFAULT_PARALLEL = 4
AWS_CONN_ID = "aws_default"
#: Test-only fault injection: ``os._exit(137)`` after this many parts completed in one run.
CRASH_ENV = "DATASET_OPS_UPLOAD_CRASH_AFTER_PARTS"
#: Key of the resume block in the status record's JSON (next to :class:`UploadStatus` fields).
MULTIPART_BLOCK = "multipart"

_HASH_BLOCK = 8 * MiB


class UploadError(RuntimeError):
    """The upload did not complete. The status record says ``uploading`` when it can resume."""


class NameTaken(UploadError):
    """``uploads/<NAME>`` holds a different file that has not been validated yet; nothing was
    replaced. Exit code 3."""


class UploadInterrupted(UploadError):
    """Stopped by Ctrl-C (or another BaseException) while parts were going out; resumable."""


class UploadCancelled(Exception):
    """Raised inside part reads once the upload is stopping (not an OSError: never retried)."""


# --- plan ---------------------------------------------------------------------------------------
def choose_part_size(size: int) -> int:
    """Multipart part size in bytes for a file of ``size`` bytes.

    16 MiB below 100 MiB, 64 MiB below 1 GiB, 128 MiB from 1 GiB; grown (in whole MiB) when the
    file would otherwise need more than 10,000 parts, the ``UploadPart`` maximum (so above
    1.22 TiB). The result is always between 5 MiB and 5 GiB, S3's bounds for every part but the
    last.

    :param size: file size in bytes.
    :returns: part size in bytes.
    :raises ValueError: ``size`` is negative or above 5 TiB (S3's largest object).
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if size > MAX_OBJECT_SIZE:
        raise ValueError(f"{size:,} bytes is more than S3's largest object (5 TiB)")
    part = next((p for limit, p in PART_SIZE_TIERS if size < limit), LARGE_PART_SIZE)
    if -(-size // part) > MAX_PARTS:
        part = -(-size // MAX_PARTS)
        part = -(-part // MiB) * MiB
    return part


def check_part_size(size: int, part_size: int) -> int:
    """``part_size`` if S3 accepts it for a ``size``-byte file, in bytes.

    :raises ValueError: below 5 MiB, above 5 GiB, or more than 10,000 parts.
    """
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise ValueError(f"part size {part_size:,} bytes is outside S3's 5 MiB .. 5 GiB")
    if -(-size // part_size) > MAX_PARTS:
        raise ValueError(f"{size:,} bytes in parts of {part_size:,} bytes needs more than 10,000 parts")
    return part_size


def plan_parts(size: int, part_size: int) -> list[tuple[int, int, int]]:
    """``(part_number, offset, length)`` of every part (numbers from 1; all bytes)."""
    return [(i // part_size + 1, i, min(part_size, size - i)) for i in range(0, size, part_size)]


def parse_destination(uri: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix/``; the prefix is ``""`` or ends with ``/``.

    :raises ValueError: not ``s3://``, no bucket, or an empty path segment.
    """
    if not uri.startswith("s3://"):
        raise ValueError(f"destination {uri!r} must be an s3:// URI (e.g. s3://bucket/uploads/)")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"destination {uri!r} names no bucket")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if prefix.startswith("/") or "//" in prefix:
        raise ValueError(f"destination {uri!r} has an empty path segment")
    return bucket, prefix


def staging_root_of(bucket: str, prefix: str) -> str:
    """The staging root of a destination: the prefix without a trailing ``uploads/``."""
    tail = f"{UPLOADS}/"
    if prefix == tail or prefix.endswith(f"/{tail}"):
        prefix = prefix[: -len(tail)]
    return f"s3://{bucket}/{prefix}"


def local_destination(uri: str) -> tuple[str, str]:
    """``(staging root folder, key prefix)`` of a local destination: a folder path or a
    ``file://`` URI. Like :func:`staging_root_of`, a destination ending in ``uploads`` has its
    parent as the staging root (prefix ``uploads/``); any other folder is itself the root
    (prefix ``""``).

    :raises ValueError: another URL scheme (``gs://``, ``http://``), or an empty path.
    """
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", uri)
    if scheme and scheme[1].lower() != "file":
        raise ValueError(
            f"destination {uri!r}: scheme {scheme[1]!r} is not supported "
            "(s3://bucket/prefix/uploads/, file:///folder/uploads/ or a local folder)"
        )
    folder = uri.removeprefix("file://").rstrip("/")
    if not folder:
        raise ValueError(f"destination {uri!r} names no folder")
    path = Path(folder).expanduser().absolute()
    if path.name == UPLOADS:
        return str(path.parent), f"{UPLOADS}/"
    return str(path), ""


def default_destination() -> str:
    """``uploads/`` under the staging root (Variable ``staging_root``, ``AIRFLOW_VAR_STAGING_ROOT``)."""
    return staging_root().rstrip("/") + f"/{UPLOADS}/"


# --- reading the file -------------------------------------------------------------------------
class _FileRegion:
    """Seekable read-only view of ``length`` bytes at ``offset`` of an open file (positions relative).

    Reads use ``os.pread`` on a descriptor shared by all parts, so threads never hold more than
    one read's worth of bytes and never disturb each other's position. Bytes count towards
    progress only while "transferring" (between the ``request-created`` handlers, see
    :func:`_watch_transfers`), so botocore's checksum and signing passes are not counted; a
    rewind while transferring (a retry) subtracts what was counted.
    """

    def __init__(self, fd: int, offset: int, length: int, on_progress=None, stop=None):
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
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}[whence]
        new = max(0, min(self._length, base + pos))
        if self._transferring and self._on_progress is not None and new != self._pos:
            self._on_progress(new - self._pos)
        self._pos = new
        return new

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        """Nothing to release: the descriptor belongs to :func:`upload_file`."""

    def signal_transferring(self) -> None:
        self._transferring = True

    def signal_not_transferring(self) -> None:
        self._transferring = False


def _request_body(request) -> Any:
    body = getattr(request, "body", None)
    return getattr(body, "_raw", body)  # botocore's AwsChunkedWrapper (HTTPS trailer checksums)


def _not_transferring(request, operation_name=None, **kwargs) -> None:
    body = _request_body(request)
    if operation_name in ("UploadPart", "PutObject") and isinstance(body, _FileRegion):
        body.signal_not_transferring()


def _transferring(request, operation_name=None, **kwargs) -> None:
    body = _request_body(request)
    if operation_name in ("UploadPart", "PutObject") and isinstance(body, _FileRegion):
        body.signal_transferring()


def _watch_transfers(client) -> None:
    """Count body bytes only while sent: around the signer, like s3transfer does."""
    events = client.meta.events
    events.register_first("request-created.s3", _not_transferring, unique_id="dataset-ops-upload-off")
    events.register_last("request-created.s3", _transferring, unique_id="dataset-ops-upload-on")


# --- progress ---------------------------------------------------------------------------------
def _fmt_bytes(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB"


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class _Progress:
    """Thread-safe byte/part counters with a reporter thread writing to ``stream``.

    :param label: what is measured (``sha256``, ``upload``).
    :param total: bytes in all (including ``done`` bytes already on the server).
    :param done: bytes already done before this run (resumed parts).
    """

    def __init__(
        self,
        label: str,
        name: str,
        total: int,
        *,
        done: int = 0,
        parts_total: int = 0,
        parts_done: int = 0,
        stream: IO[str] | None = None,
        enabled: bool = True,
    ):
        self.label, self.name, self.total = label, name, total
        self.base, self.sent = done, 0
        self.parts_total, self.parts_done = parts_total, parts_done
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 1.0 if self.tty else 5.0
        self._lock = threading.Lock()
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._done_event = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = time.monotonic()

    def add(self, n: int) -> None:
        with self._lock:
            self.sent += n

    def part_done(self) -> None:
        with self._lock:
            self.parts_done += 1

    def __enter__(self) -> _Progress:
        self.started = time.monotonic()
        self._samples.append((self.started, 0))
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name=f"progress-{self.label}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._done_event.set()
        if self._thread is not None:
            self._thread.join()
            if self.tty:
                self._write(self.line(), end="\n")
            elif exc_type is None and time.monotonic() - self.started >= self.interval:
                self._write(self.line(), end="\n")

    def _run(self) -> None:
        while not self._done_event.wait(self.interval):
            self._write(self.line(), end="" if self.tty else "\n")

    def _write(self, text: str, end: str) -> None:
        prefix = "\r\x1b[K" if self.tty else ""
        self.stream.write(prefix + text + end)
        self.stream.flush()

    def rate(self) -> float:
        """Bytes per second over the last 10 s of this run."""
        now = time.monotonic()
        with self._lock:
            sent = self.sent
        self._samples.append((now, sent))
        while len(self._samples) > 2 and now - self._samples[1][0] >= 10:
            self._samples.popleft()
        t0, s0 = self._samples[0]
        return (sent - s0) / (now - t0) if now > t0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        done = self.base + self.sent
        pct = 100.0 * done / self.total if self.total else 100.0
        eta = (self.total - done) / rate if rate > 0 else None
        text = (
            f"{self.label} {self.name}: {pct:5.1f}% {_fmt_bytes(done)} of {_fmt_bytes(self.total)}"
            f" {rate / MiB:6.1f} MiB/s ETA {_fmt_eta(eta)}"
        )
        if self.parts_total:
            text += f" parts {self.parts_done}/{self.parts_total}"
        return text


# --- S3 ---------------------------------------------------------------------------------------
def s3_client(aws_conn_id: str = AWS_CONN_ID, parallel: int = DEFAULT_PARALLEL):
    """A boto3 S3 client from the Airflow Connection ``aws_conn_id`` (``S3Hook.get_conn()``).

    A missing Connection makes the hook fall back to boto3's default credential chain. The
    HTTP pool is widened when ``parallel`` exceeds botocore's default of 10 connections.
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=aws_conn_id)
    client = hook.get_conn()
    if client.meta.config.max_pool_connections < parallel + 1:
        from botocore.config import Config

        config = hook.config.merge(Config(max_pool_connections=parallel + 1))
        client = hook.get_client_type(region_name=hook.region_name, config=config)
    return client


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code")


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


def _abort(client, bucket: str, key: str, upload_id: str, say) -> None:
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        say(f"aborted the old multipart upload {upload_id}")
    except Exception as exc:  # gone already, or no permission: starting over works regardless
        if _error_code(exc) != "NoSuchUpload":
            say(
                f"could not abort the old multipart upload {upload_id} ({exc}); "
                "the bucket's lifecycle rule or the staging cleanup will remove it"
            )


def _completed_part(number: int, etag: str, source: dict) -> dict:
    part = {"PartNumber": number, "ETag": etag}
    if source.get("ChecksumCRC32"):
        part["ChecksumCRC32"] = source["ChecksumCRC32"]
    return part


# --- the upload -------------------------------------------------------------------------------
def _sha256_of(fd: int, size: int, name: str, progress: bool, stop: threading.Event | None = None) -> str:
    """Hex sha256 of the first ``size`` bytes of ``fd`` (8 MiB reads into one reused buffer)."""
    digest = hashlib.sha256()
    buf = bytearray(_HASH_BLOCK)
    view = memoryview(buf)
    with _Progress("sha256", name, size, enabled=progress) as prog:
        offset = 0
        while True:
            if stop is not None and stop.is_set():
                raise UploadCancelled("hashing stopped")
            n = os.preadv(fd, [buf], offset)
            if not n:
                break
            digest.update(view[:n])
            offset += n
            prog.add(n)
    if offset != size:
        raise UploadError(f"read {offset:,} bytes, expected {size:,}: the file changed while hashing")
    return digest.hexdigest()


class _HashJob:
    """:func:`_sha256_of` in a background thread, so the hashing pass overlaps the start-up work
    (importing Airflow, resolving the Connection, reading the status record: about 3 s) and the
    parts of a multipart upload. It shows no progress line of its own."""

    def __init__(self, fd: int, size: int, name: str, progress: bool = False):
        self._stop = threading.Event()
        self._digest: str | None = None
        self._error: BaseException | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(
            target=self._run, args=(fd, size, name, progress), name="sha256", daemon=True
        )
        self._thread.start()

    def _run(self, fd: int, size: int, name: str, progress: bool) -> None:
        started = time.monotonic()
        try:
            self._digest = _sha256_of(fd, size, name, progress, self._stop)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc
        self.seconds = round(time.monotonic() - started, 3)

    def result(self) -> str:
        """The hex digest; re-raises what the hashing raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._digest is not None
        return self._digest

    def cancel(self) -> None:
        """Stop hashing (used when start-up fails) and wait for the thread."""
        self._stop.set()
        self._thread.join()


def _send_parts(
    client,
    bucket: str,
    key: str,
    upload_id: str,
    fd: int,
    todo: list[tuple[int, int, int]],
    parallel: int,
    prog: _Progress,
) -> dict[int, dict]:
    """Upload ``todo`` parts in ``parallel`` threads; the first failure stops the others."""
    stop = threading.Event()
    crash_after = int(os.environ.get(CRASH_ENV) or 0)
    lock = threading.Lock()
    sent: dict[int, dict] = {}

    def send(number: int, offset: int, length: int) -> None:
        if stop.is_set():
            raise UploadCancelled("upload stopping")
        body = _FileRegion(fd, offset, length, on_progress=prog.add, stop=stop)
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
            sent[number] = _completed_part(number, response["ETag"], response)
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
        stop.set()  # in-flight reads raise UploadCancelled; queued parts are dropped
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return sent


@dataclass
class _Job:
    """What every step of one upload needs (sizes in bytes)."""

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
        fields = dict(
            size=self.size,
            sha256=self.sha256,
            upload_id=upload_id,
            data_type=self.data_type or (self.previous.data_type if self.previous else None),
            records=None,
            errors=None,
            error_summary=None,
            report_key=None,
            version=None,
            key=None,
            duplicate_of=None,
            timings={},
        )
        if self.previous is None:
            return UploadStatus(name=self.name, state=str(UploadState.UPLOADING), **fields)
        return self.previous.moved_to(UploadState.UPLOADING, started_at=now_iso(), **fields)

    def write_uploading(self, status: UploadStatus, block: dict | None) -> None:
        """Store the ``uploading`` record, with the resume ``block`` beside its fields."""
        write_status(self.storage, replace(status, multipart=block))


#: Block size of a local upload (bytes): reads, progress, resume checks and the crash hook count these.
LOCAL_BLOCK = 8 * MiB


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _verified_prefix(fd: int, partial: Path, digest) -> int:
    """Bytes at the start of ``partial`` equal to the source's (compared in blocks; hashed into
    ``digest``); the partial file is cut there."""
    have, offset = partial.stat().st_size, 0
    with open(partial, "r+b") as out:
        while offset < have:
            n = min(LOCAL_BLOCK, have - offset)
            theirs = os.pread(fd, n, offset)
            if out.read(n) != theirs:
                break
            digest.update(theirs)
            offset += n
        out.truncate(offset)
    return offset


def _upload_local(
    path: Path,
    dest: str,
    name: str,
    data_type: str | None,
    progress: bool,
    say: Callable[[str], None],
    started: float,
) -> UploadStatus:
    """Copy ``path`` into a local staging root (the storage layer's local backend).

    The bytes go to ``<folder>/.<base>.upload.partial`` (hashed with sha256 on the way, fsynced),
    which is then hard-linked to the key: ``link`` never replaces a file, so the object appears
    under ``uploads/`` only when complete and a file waiting there is never overwritten
    (:class:`NameTaken`). The ``uploading`` record names the partial file and the source's
    size and ``mtime_ns``; a rerun with the same source checks the partial file block by block
    against the source and copies only the rest, else starts over, saying so. The staging
    cleanup removes partial files older than its ``multipart_older_than_hours``.
    """
    root, prefix = local_destination(dest)
    storage = open_storage(root)
    key = f"{prefix}{name}"
    folder, _, base = key.rpartition("/")
    partial_key = f"{folder}/.{base}.upload.partial" if folder else f".{base}.upload.partial"
    final, partial = Path(storage.uri(key)), Path(storage.uri(partial_key))
    record = read_json(storage, status_key(name))
    previous = UploadStatus.from_dict(record) if record else None
    with open(path, "rb") as fh:
        fd = fh.fileno()
        st = os.fstat(fd)
        size = st.st_size
        if final.is_file():  # same content: nothing to do; different: never replaced
            existing = file_sha256(storage, key) if final.stat().st_size == size else None
            sha256 = _sha256_of(fd, size, name, progress=False)
            return _existing_upload(
                storage, name, str(final), previous, data_type, size, sha256, existing, say
            )
        source = {"path": str(path), "size": size, "mtime_ns": st.st_mtime_ns}
        block = (record or {}).get(MULTIPART_BLOCK) or {}
        digest = hashlib.sha256()
        offset = 0
        resumable = (
            previous is not None
            and previous.state == UploadState.UPLOADING
            and block.get("partial") == partial_key
            and block.get("source") == source
            and partial.is_file()
        )
        if resumable:
            offset = _verified_prefix(fd, partial, digest)
            say(f"resuming: {_fmt_bytes(offset)} of {_fmt_bytes(size)} already copied to {partial}")
        elif partial.exists() or (previous is not None and previous.state == UploadState.UPLOADING):
            say(f"the interrupted upload of {name} was of a different or changed file: starting over")
            partial.unlink(missing_ok=True)
        if previous is not None and previous.state == UploadState.UPLOADING and resumable:
            status = previous if not data_type else replace(previous, data_type=data_type)
        else:
            fields = dict(
                size=size, sha256=None, upload_id=None, records=None, errors=None, error_summary=None,
                report_key=None, version=None, key=None, duplicate_of=None, timings={},
                data_type=data_type or (previous.data_type if previous else None),
            )  # fmt: skip
            status = (
                UploadStatus(name=name, state=str(UploadState.UPLOADING), **fields)
                if previous is None
                else previous.moved_to(UploadState.UPLOADING, started_at=now_iso(), **fields)
            )
        write_status(storage, replace(status, multipart={"partial": partial_key, "source": source}))
        if not resumable:
            say(f"uploading {path} to {final}: {_fmt_bytes(size)}")
        crash_after = int(os.environ.get(CRASH_ENV) or 0)
        sending = time.monotonic()
        partial.parent.mkdir(parents=True, exist_ok=True)
        out = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            with _Progress("upload", name, size, done=offset, enabled=progress) as prog:
                blocks = 0
                while offset < size:
                    data = os.pread(fd, min(LOCAL_BLOCK, size - offset), offset)
                    if not data:
                        raise UploadError(f"{path} ended at byte {offset:,}: it shrank during the upload")
                    digest.update(data)
                    _write_all(out, data)
                    offset += len(data)
                    prog.add(len(data))
                    blocks += 1
                    if crash_after and blocks >= crash_after:
                        sys.stderr.write(f"\n{CRASH_ENV}={crash_after}: simulated crash (os._exit(137))\n")
                        sys.stderr.flush()
                        os._exit(137)
            os.fsync(out)
        except KeyboardInterrupt as exc:
            raise UploadInterrupted(
                f"{_fmt_bytes(offset)} of {_fmt_bytes(size)} copied; kept in {partial}"
            ) from exc
        finally:
            os.close(out)
        now = os.fstat(fd)
        if (now.st_size, now.st_mtime_ns) != (size, st.st_mtime_ns):
            raise UploadError(
                f"{path} changed during the upload (the next run starts over with the new content)"
            )
    sha256 = digest.hexdigest()
    try:
        os.link(partial, final)
    except FileExistsError:
        raise NameTaken(
            f"{final} appeared during the upload (another upload of this name): nothing was replaced; "
            f"rerun the command once that file was validated (the copy in {partial} is reused)"
        ) from None
    partial.unlink()
    total = round(time.monotonic() - started, 3)
    status = status.moved_to(
        UploadState.UPLOADED,
        size=size,
        sha256=sha256,
        upload_id=None,
        multipart=None,
        etag=None,
        timings={"upload": total},
    )
    write_status(storage, status)
    send_seconds = max(time.monotonic() - sending, 1e-9)
    say(
        f"uploaded {final}: {_fmt_bytes(size)} in {total:.1f} s "
        f"({size / MiB / send_seconds:.1f} MiB/s); sha256 {sha256}"
    )
    return status


def upload_file(
    path: str | os.PathLike,
    dest_uri: str | None = None,
    *,
    name: str | None = None,
    data_type: str | None = None,
    parallel: int = DEFAULT_PARALLEL,
    aws_conn_id: str = AWS_CONN_ID,
    progress: bool = True,
    part_size: int | None = None,
) -> UploadStatus:
    """Upload the local file ``path`` to ``<dest_uri><name>`` and record it as ``uploaded``.

    Below 16 MiB one ``PutObject``; otherwise a multipart upload (``CreateMultipartUpload``,
    ``UploadPart`` x N in ``parallel`` threads, ``CompleteMultipartUpload``) that resumes an
    interrupted upload of the same name and content (``ListParts``). See the module docstring.

    :param path: the local file.
    :param dest_uri: ``s3://bucket/prefix/`` (normally ending in ``uploads/``), or a local folder
        or ``file://`` URI (then the copy of :func:`_upload_local`, no S3 involved); default
        ``uploads/`` under the staging root (:func:`default_destination`).
    :param name: key below ``dest_uri``; default the file's base name.
    :param data_type: rule set for validation, stored in the status record.
    :param parallel: parts in flight at once (threads), >= 1.
    :param aws_conn_id: Airflow Connection for credentials and ``endpoint_url``.
    :param progress: write progress and notices to stderr (else notices go to the log).
    :param part_size: part size in bytes instead of :func:`choose_part_size` (5 MiB .. 5 GiB);
        a resumed upload keeps the part size it was started with.
    :returns: the ``uploaded`` status record (``size`` in bytes, ``sha256`` hex, ``timings``
        in seconds), or the existing record when the object already holds this content.
    :raises ValueError: unsafe ``name``, bad ``dest_uri``, ``part_size`` or ``parallel``, or a
        file above 5 TiB.
    :raises FileNotFoundError: ``path`` does not exist. :raises IsADirectoryError: it is a folder.
    :raises UploadError: S3 refused or failed (status left ``uploading``: call again to resume).
    :raises UploadInterrupted: KeyboardInterrupt while parts were going out (resumable).
    :raises NameTaken: the destination holds a different file not validated yet (nothing replaced).
    """
    log = logging.getLogger(__name__)

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)
        else:
            log.info("%s", message)

    started = time.monotonic()
    path = Path(path).expanduser().absolute()
    name = check_name(name if name is not None else path.name)
    dest = dest_uri or default_destination()
    if not dest.startswith("s3://"):
        local_destination(dest)  # ValueError for other schemes, before the file is opened
    else:
        bucket, prefix = parse_destination(dest)
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    if not dest.startswith("s3://"):
        return _upload_local(path, dest, name, data_type, progress, say, started)
    key = f"{prefix}{name}"

    with open(path, "rb") as fh:
        fd = fh.fileno()
        st = os.fstat(fd)
        if st.st_size > MAX_OBJECT_SIZE:
            raise ValueError(f"{path}: {st.st_size:,} bytes is more than S3's largest object (5 TiB)")
        if part_size is not None:
            check_part_size(st.st_size, part_size)

        # The sha256 pass runs in a thread beside everything else: the start-up below and, for a
        # multipart upload, the parts themselves (its own progress line would collide).
        hash_job = _HashJob(fd, st.st_size, name)
        try:
            storage = open_storage(staging_root_of(bucket, prefix), aws_conn_id)
            client = s3_client(aws_conn_id, parallel)
            _watch_transfers(client)
            record = read_json(storage, status_key(name))
            previous = UploadStatus.from_dict(record) if record else None
            job = _Job(
                client, storage, bucket, key, name, path, fd, st, None, data_type, previous, record,
                progress, say,
            )  # fmt: skip
            if _already_there(job, hash_job):
                say(f"{job.uri} already holds this file (sha256 {job.sha256[:12]}…, state {previous.state})")
                return previous
            head = _head(client, bucket, key)
            if head is not None:  # a file waiting for validation holds the name: never replaced
                return _existing_upload(
                    storage, name, job.uri, previous, data_type, st.st_size, hash_job.result(),
                    _object_sha256(client, bucket, key, head, st.st_size), say,
                )  # fmt: skip
            sending = time.monotonic()
            resume = _resumable(job)
            if resume is None and job.size < SINGLE_PUT_LIMIT:
                job.sha256 = hash_job.result()
                status, sent_parts, reused_parts, sent_bytes = _put_single(job), 1, 0, job.size
            else:
                status, sent_parts, reused_parts, sent_bytes = _put_multipart(
                    job, resume, parallel, part_size, hash_job
                )
        except UploadError:
            raise
        except Exception as exc:  # botocore/S3 errors: the record (if written) stays `uploading`
            if _error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise NameTaken(
                    f"s3://{bucket}/{key} appeared during the upload (another upload of this name): "
                    "nothing was replaced; the parts sent are kept, so rerunning the command once "
                    "that file was validated completes this upload"
                ) from exc
            raise UploadError(f"upload of {path} to s3://{bucket}/{key} failed: {exc}") from exc
        finally:
            hash_job.cancel()  # a no-op once it is done
        sha256 = job.sha256

        total = round(time.monotonic() - started, 3)
        status = status.moved_to(
            UploadState.UPLOADED,
            size=job.size,
            sha256=sha256,
            upload_id=None,
            multipart=None,
            etag=job.etag,
            timings={"hash": hash_job.seconds, "upload": total},
        )
        try:
            write_status(storage, status)
        except Exception as exc:
            raise UploadError(
                f"{job.uri} is uploaded but its status record could not be written: {exc}"
            ) from exc
        send_seconds = max(time.monotonic() - sending, 1e-9)
        say(
            f"uploaded {job.uri}: {_fmt_bytes(job.size)} in {total:.1f} s "
            f"({sent_bytes / MiB / send_seconds:.1f} MiB/s; sha256 {hash_job.seconds:.1f} s alongside); "
            f"{sent_parts} part(s) sent, {reused_parts} reused; sha256 {sha256}"
        )
        return status


def _head(client, bucket: str, key: str) -> dict | None:
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _already_there(job: _Job, hash_job: _HashJob) -> bool:
    """True when the key already holds this file: the record of a finished upload names the same
    size and sha256 and the object has that size and the recorded ETag (or ``sha256`` metadata).
    Only then does this wait for the hash (``job.sha256`` is set)."""
    prev = job.previous
    if prev is None or prev.state == UploadState.UPLOADING or not prev.sha256 or prev.size != job.size:
        return False
    head = _head(job.client, job.bucket, job.key) or {}
    if head.get("ContentLength") != job.size:
        return False
    same_object = (prev.etag and head.get("ETag") == prev.etag) or head.get("Metadata", {}).get(
        "sha256"
    ) == prev.sha256
    if not same_object:
        return False
    job.sha256 = hash_job.result()
    return job.sha256 == prev.sha256


def _object_sha256(client, bucket: str, key: str, head: dict, size: int) -> str | None:
    """The sha256 of the object at ``key``: its ``sha256`` metadata (a single ``PutObject`` of
    this uploader), else read and hashed when its size is ``size`` (else None: it differs)."""
    if head.get("Metadata", {}).get("sha256"):
        return head["Metadata"]["sha256"]
    if head.get("ContentLength") != size:
        return None
    digest = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    while block := body.read(_HASH_BLOCK):
        digest.update(block)
    return digest.hexdigest()


def _existing_upload(
    storage: Storage,
    name: str,
    uri: str,
    previous: UploadStatus | None,
    data_type: str | None,
    size: int,
    sha256: str,
    existing_sha256: str | None,
    say: Callable[[str], None],
) -> UploadStatus:
    """``uploads/<name>`` already holds a file. The same content (``existing_sha256 == sha256``):
    nothing is sent, the record says ``uploaded`` with that sha256 (an interrupted earlier run of
    this command is finished so). Different content: :class:`NameTaken`, nothing replaced.
    """
    if existing_sha256 != sha256:
        state = previous.state if previous else "no status record"
        raise NameTaken(
            f"{uri} holds a different file (state {state}) that has not been validated yet; "
            "nothing was replaced. Wait until staged_upload_validation has taken it (every 5 "
            "minutes; then this upload becomes a new version of the name), or use another --name"
        )
    if previous is not None and previous.state == UploadState.UPLOADED and previous.sha256 == sha256:
        say(f"{uri} already holds this file (sha256 {sha256[:12]}…, state {previous.state})")
        return previous
    fields = dict(size=size, sha256=sha256, upload_id=None, multipart=None, error_summary=None)
    fields["data_type"] = data_type or (previous.data_type if previous else None)
    if previous is None:
        status = UploadStatus(name=name, state=str(UploadState.UPLOADED), **fields)
    else:
        status = previous.moved_to(UploadState.UPLOADED, **fields)
    write_status(storage, status)
    say(f"{uri} already holds this file (sha256 {sha256[:12]}…): nothing sent, recorded as uploaded")
    return status


def _part_matches(fd: int, offset: int, length: int, listed: dict) -> bool:
    """Does the stored part ``listed`` (a ``ListParts`` entry) hold the file's bytes now?

    Compares its ``ChecksumCRC32`` (base64 of the big-endian CRC32) or else an MD5 ETag (what S3
    gives a part without SSE-KMS) with the local bytes; with neither, the part counts as stale.
    """
    want_crc = listed.get("ChecksumCRC32")
    etag = str(listed.get("ETag", "")).strip('"')
    if not want_crc and not (len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())):
        return False
    crc, md5 = 0, hashlib.md5(usedforsecurity=False)
    end = offset + length
    while offset < end:
        chunk = os.pread(fd, min(_HASH_BLOCK, end - offset), offset)
        if not chunk:
            return False
        if want_crc:
            crc = zlib.crc32(chunk, crc)
        else:
            md5.update(chunk)
        offset += len(chunk)
    if want_crc:
        return base64.b64encode(crc.to_bytes(4, "big")).decode() == want_crc
    return md5.hexdigest() == etag.lower()


def _resumable(job: _Job) -> dict | None:
    """The parts of an interrupted upload of this same file, or None (aborting what is stale).

    :returns: ``{"upload_id", "part_size", "parts": {number: ListParts entry}}``.
    """
    previous, say = job.previous, job.say
    if previous is None or previous.state != UploadState.UPLOADING or not previous.upload_id:
        return None
    block = (job.record or {}).get(MULTIPART_BLOCK) or {}
    upload_id = previous.upload_id
    old_bucket, old_key = block.get("bucket", job.bucket), block.get("key", job.key)
    source = block.get("source") or {}
    reasons = []
    if (old_bucket, old_key) != (job.bucket, job.key):
        reasons.append(f"destination was s3://{old_bucket}/{old_key}")
    if previous.size != job.size or source.get("size") != job.size:
        reasons.append(f"size {previous.size} -> {job.size}")
    if source.get("mtime_ns") != job.stat.st_mtime_ns:
        reasons.append("modification time changed")
    part_size = block.get("part_size")
    try:
        check_part_size(job.size, int(part_size))
    except (TypeError, ValueError):
        reasons.append(f"recorded part size {part_size!r} unusable")
    if reasons:
        say(
            f"the interrupted upload {upload_id} was of different content ({'; '.join(reasons)}): "
            "starting over"
        )
        _abort(job.client, old_bucket, old_key, upload_id, say)
        return None
    try:
        parts = list_uploaded_parts(job.client, job.bucket, job.key, upload_id)
    except Exception as exc:
        if _error_code(exc) != "NoSuchUpload":
            raise UploadError(f"ListParts of upload {upload_id} failed: {exc}") from exc
        say(
            f"the interrupted upload {upload_id} no longer exists on the server (aborted or expired): "
            "starting over"
        )
        return None
    return {"upload_id": upload_id, "part_size": int(part_size), "parts": parts}


def _put_single(job: _Job) -> UploadStatus:
    """One ``PutObject`` with the whole file's ``ChecksumSHA256`` (S3 verifies it)."""
    status = job.new_record(upload_id=None)
    job.write_uploading(status, None)
    with _Progress("upload", job.name, job.size, parts_total=1, enabled=job.progress) as prog:
        body: Any = _FileRegion(job.fd, 0, job.size, on_progress=prog.add) if job.size else b""
        job.client.put_object(
            Bucket=job.bucket,
            Key=job.key,
            Body=body,
            ContentLength=job.size,
            Metadata={"sha256": job.sha256},
            ChecksumSHA256=base64.b64encode(bytes.fromhex(job.sha256)).decode(),
            IfNoneMatch="*",  # never replaces a file waiting in uploads/
        )
        prog.part_done()
    job.etag = _verify(job, parts=None)
    return status


def _put_multipart(
    job: _Job, resume: dict | None, parallel: int, part_size: int | None, hash_job: _HashJob
) -> tuple[UploadStatus, int, int, int]:
    """Create (or resume) the multipart upload, send the missing parts, check the reused ones
    against the file, wait for the sha256, complete, verify.

    :returns: (``uploading`` record, parts sent, parts reused, bytes sent).
    """
    client, size, say = job.client, job.size, job.say
    if resume is not None:
        upload_id, part_size = resume["upload_id"], resume["part_size"]
        status = job.previous
        if job.data_type and job.data_type != status.data_type:
            status = status.moved_to(UploadState.UPLOADING, data_type=job.data_type)
            job.write_uploading(status, job.record.get(MULTIPART_BLOCK))
    else:
        part_size = part_size or choose_part_size(size)
        created = client.create_multipart_upload(Bucket=job.bucket, Key=job.key, ChecksumAlgorithm="CRC32")
        upload_id = created["UploadId"]
        status = job.new_record(upload_id)
        block = {
            "bucket": job.bucket,
            "key": job.key,
            "part_size": part_size,
            "parts": -(-size // part_size),
            "checksum_algorithm": "CRC32",
            "source": {"path": str(job.path), "size": size, "mtime_ns": job.stat.st_mtime_ns},
        }
        job.write_uploading(status, block)  # before any part goes out

    plan = plan_parts(size, part_size)
    done: dict[int, dict] = {}
    if resume is not None:  # same size and mtime; are the stored parts still the file's bytes?
        stale = []
        for number, offset, length in plan:
            listed = resume["parts"].get(number)
            if listed is not None and listed.get("Size") == length:
                if _part_matches(job.fd, offset, length, listed):
                    done[number] = _completed_part(number, listed["ETag"], listed)
                else:
                    stale.append(str(number))
        if stale:
            say(f"{len(stale)} stored part(s) differ from the file (part {', '.join(stale)}): sending again")
        say(
            f"resuming: {len(done)} of {len(plan)} parts already uploaded "
            f"({_fmt_bytes(sum(p[2] for p in plan if p[0] in done))}); upload id {upload_id}"
        )
    else:
        say(
            f"uploading {job.path} to {job.uri}: {_fmt_bytes(size)} in {len(plan)} parts of "
            f"{_fmt_bytes(part_size)}, {parallel} in parallel; upload id {upload_id}"
        )
    todo = [p for p in plan if p[0] not in done]
    done_bytes = sum(length for number, _, length in plan if number in done)
    with _Progress(
        "upload", job.name, size, done=done_bytes, parts_total=len(plan), parts_done=len(done),
        enabled=job.progress,
    ) as prog:  # fmt: skip
        try:
            done.update(_send_parts(client, job.bucket, job.key, upload_id, job.fd, todo, parallel, prog))
        except KeyboardInterrupt as exc:
            raise UploadInterrupted(
                f"{prog.parts_done} of {len(plan)} parts uploaded; multipart upload {upload_id} kept"
            ) from exc
        except Exception as exc:
            raise UploadError(f"upload of part failed: {exc}") from exc
    job.sha256 = hash_job.result()

    now = os.fstat(job.fd)
    if (now.st_size, now.st_mtime_ns) != (size, job.stat.st_mtime_ns):
        raise UploadError(
            f"{job.path} changed during the upload; not completing upload {upload_id} "
            "(the next run starts over with the new content)"
        )
    client.complete_multipart_upload(
        Bucket=job.bucket,
        Key=job.key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [done[number] for number, _, _ in plan]},
        IfNoneMatch="*",  # never replaces a file waiting in uploads/ (412: the parts stay)
    )
    job.etag = _verify(job, parts=len(plan))
    return status, len(todo), len(plan) - len(todo), sum(length for _, _, length in todo)


def _verify(job: _Job, parts: int | None) -> str:
    """``HeadObject`` shows the file's size, and the ``sha256`` metadata of a single ``PutObject``
    or the ``-<parts>`` ETag of a multipart upload; returns the ETag.

    A mismatch deletes the object (nothing wrong stays where readers look) and raises
    :class:`UploadError`; the record stays ``uploading`` and the next run starts over.
    """
    head = job.client.head_object(Bucket=job.bucket, Key=job.key)
    problems = []
    if head["ContentLength"] != job.size:
        problems.append(f"size {head['ContentLength']:,} != {job.size:,}")
    etag = head.get("ETag", "")
    if parts is None and head.get("Metadata", {}).get("sha256") != job.sha256:
        problems.append("sha256 metadata differs")
    if parts is not None and "-" in etag and etag.strip('"').rsplit("-", 1)[1] != str(parts):
        problems.append(f"ETag {etag} does not name {parts} parts")
    if problems:
        job.client.delete_object(Bucket=job.bucket, Key=job.key)
        raise UploadError(f"{job.uri} after upload: {'; '.join(problems)}; object deleted")
    return etag


# --- command line -----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dataset_ops.upload",
        description="Upload a file to the staging area's uploads/ (parallel, resumable multipart).",
    )
    parser.add_argument("file", help="local file to upload")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--to",
        dest="dest",
        default=None,
        help="destination prefix: s3://bucket/prefix/uploads/, file:///folder/uploads/ or a local "
        "folder (default: uploads/ under the staging root)",
    )
    where.add_argument(
        "--root",
        default=None,
        help="staging root (s3://bucket/prefix/, file:///folder or a local folder); the file goes "
        "to its uploads/ (default: the Variable staging_root, AIRFLOW_VAR_STAGING_ROOT, else "
        "s3://training-data/)",
    )
    parser.add_argument("--name", default=None, help="key below the destination (default: file's base name)")
    parser.add_argument("--data-type", default=None, help="validation rule set (include/validation/<T>.yaml)")
    parser.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL, help="parts in flight (default 4)")
    parser.add_argument("--aws-conn-id", default=AWS_CONN_ID, help="Airflow Connection (default aws_default)")
    parser.add_argument(
        "--part-size-mib",
        type=int,
        default=None,
        help="part size in MiB (5..5120) instead of the size-based choice (tests, tuning)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0, 1 failed, 2 bad input, 3 the name is
    taken in uploads/ by a different file not validated yet, 130 Ctrl-C)."""
    quiet_airflow_logs()
    args = _parser().parse_args(argv)
    if args.root:
        args.dest = args.root.rstrip("/") + f"/{UPLOADS}/"
    resume_cmd = shlex.join(
        [sys.executable, "-m", "dataset_ops.upload", os.path.abspath(args.file)]
        + (["--to", args.dest] if args.dest else [])
        + (["--name", args.name] if args.name else [])
        + (["--aws-conn-id", args.aws_conn_id] if args.aws_conn_id != AWS_CONN_ID else [])
    )
    part_size = args.part_size_mib * MiB if args.part_size_mib else None
    try:
        status = upload_file(
            args.file,
            args.dest,
            name=args.name,
            data_type=args.data_type,
            parallel=args.parallel,
            aws_conn_id=args.aws_conn_id,
            part_size=part_size,
        )
    except (ValueError, FileNotFoundError, IsADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NameTaken as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (UploadInterrupted, KeyboardInterrupt) as exc:
        detail = f" ({exc})" if isinstance(exc, UploadInterrupted) else ""
        print(
            f"\ninterrupted{detail}. The upload is resumable; "
            f"rerun the same command to resume:\n  {resume_cmd}",
            file=sys.stderr,
        )
        return 130
    except UploadError as exc:
        print(
            f"error: {exc}\nThe upload is resumable; rerun the same command to resume:\n  {resume_cmd}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(asdict(status), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
