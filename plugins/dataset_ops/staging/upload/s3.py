"""An upload to S3: one ``PutObject`` below 16 MiB, else a parallel, resumable multipart upload.

* **Parts.** ``CreateMultipartUpload``, ``UploadPart`` in ``parallel`` threads
  (:func:`~dataset_ops.staging.upload.transfer.send_parts`), ``CompleteMultipartUpload``. S3
  shows nothing at the key until ``CompleteMultipartUpload``, so an upload abandoned mid-way
  never looks complete.
* **Integrity.** The sha256 is computed beside everything else
  (:class:`~dataset_ops.staging.upload.hashing.HashJob`); ``CompleteMultipartUpload`` waits for
  it and lists every part with its ETag and CRC32. A file under 16 MiB is hashed
  first and sent with ``ChecksumSHA256`` (S3 verifies it) and ``x-amz-meta-sha256``. After
  completion ``HeadObject`` must show the file's size (and the metadata, or a ``-<parts>``
  ETag). The file must not change during the upload: its size and mtime are checked again
  before completing.
* **Nothing is replaced.** ``PutObject`` and ``CompleteMultipartUpload`` carry
  ``If-None-Match: *``: a file that appeared at the key meanwhile stays, the upload stops with
  :class:`~dataset_ops.staging.upload.errors.NameTaken` and keeps its parts.
* **One uploader per name.** Concurrent uploads of the same name are not supported: each would
  replace the other's status record; the first ``CompleteMultipartUpload`` wins, the other gets
  412 (exit code 3) and keeps its parts.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataset_ops.progress import format_bytes
from dataset_ops.staging.status import UploadState, UploadStatus, status_key, write_status
from dataset_ops.staging.upload.errors import NameTaken, UploadError, UploadInterrupted
from dataset_ops.staging.upload.hashing import HashJob
from dataset_ops.staging.upload.plan import (
    MAX_OBJECT_SIZE,
    MULTIPART_BLOCK,
    SINGLE_PUT_LIMIT,
    check_part_size,
    choose_part_size,
    parse_destination,
    plan_parts,
    staging_root_of,
)
from dataset_ops.staging.upload.progress import upload_progress
from dataset_ops.staging.upload.resume import already_there, existing_upload, part_crc32, resumable
from dataset_ops.staging.upload.transfer import (
    FileRegion,
    S3Job,
    completed_part,
    error_code,
    head,
    object_sha256,
    s3_client,
    send_parts,
    watch_transfers,
)
from dataset_ops.storage import read_json
from dataset_ops.storage.s3 import S3Storage

MiB = 1 << 20


def upload_s3(
    path: Path,
    dest: str,
    name: str,
    *,
    data_type: str | None,
    parallel: int,
    aws_conn_id: str,
    progress: bool,
    part_size: int | None,
    say: Callable[[str], None],
    started: float,
) -> UploadStatus:
    """Upload the checked local file ``path`` to ``<dest><name>`` (``dest`` an ``s3://`` prefix)
    and record it as ``uploaded``; the arguments are those of
    :func:`~dataset_ops.staging.upload.api.upload_file`, already checked.

    :param started: ``time.monotonic()`` when the upload began (for ``timings``).
    :raises ValueError: a file above 5 TiB, or a ``part_size`` S3 refuses for it.
    :raises UploadError: S3 refused or failed (status left ``uploading``: call again to resume).
    :raises UploadInterrupted: KeyboardInterrupt while parts were going out (resumable).
    :raises NameTaken: the key holds a different file not validated yet (nothing replaced).
    """
    bucket, prefix = parse_destination(dest)
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
        hash_job = HashJob(fd, st.st_size)
        try:
            client = s3_client(aws_conn_id, parallel)
            root = staging_root_of(bucket, prefix)
            storage = S3Storage(bucket, root[len(f"s3://{bucket}/") :], aws_conn_id, client)
            watch_transfers(client)
            record = read_json(storage, status_key(name))
            previous = UploadStatus.from_dict(record) if record else None
            job = S3Job(
                client, storage, bucket, key, name, path, fd, st, None, data_type, previous, record,
                progress, say,
            )  # fmt: skip
            if already_there(job, hash_job):
                say(f"{job.uri} already holds this file (sha256 {job.sha256[:12]}…, state {previous.state})")
                return previous
            found = head(client, bucket, key)
            if found is not None:  # a file waiting for validation holds the name: never replaced
                return existing_upload(
                    storage, name, job.uri, previous, data_type, st.st_size, hash_job.result(),
                    object_sha256(client, bucket, key, found, st.st_size), say,
                )  # fmt: skip
            sending = time.monotonic()
            resume = resumable(job)
            if resume is None and job.size < SINGLE_PUT_LIMIT:
                job.sha256 = hash_job.result()
                status, sent_parts, reused_parts, sent_bytes = put_single(job), 1, 0, job.size
            else:
                status, sent_parts, reused_parts, sent_bytes = put_multipart(
                    job, resume, parallel, part_size, hash_job
                )
        except UploadError:
            raise
        except Exception as exc:  # botocore/S3 errors: the record (if written) stays `uploading`
            if error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
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
            f"uploaded {job.uri}: {format_bytes(job.size)} in {total:.1f} s "
            f"({sent_bytes / MiB / send_seconds:.1f} MiB/s; sha256 {hash_job.seconds:.1f} s alongside); "
            f"{sent_parts} part(s) sent, {reused_parts} reused; sha256 {sha256}"
        )
        return status


def put_single(job: S3Job) -> UploadStatus:
    """One ``PutObject`` with the whole file's ``ChecksumSHA256`` (S3 verifies it) and
    ``If-None-Match: *``; ``job.sha256`` must be known. :returns: the ``uploading`` record."""
    status = job.new_record(upload_id=None)
    job.write_uploading(status, None)
    with upload_progress(job.name, job.size, parts_total=1).reporting(job.progress) as prog:
        body: Any = FileRegion(job.fd, 0, job.size, on_progress=prog.add) if job.size else b""
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
    job.etag = verify(job, parts=None)
    return status


def put_multipart(
    job: S3Job, resume: dict | None, parallel: int, part_size: int | None, hash_job: HashJob
) -> tuple[UploadStatus, int, int, int]:
    """Create (or resume) the multipart upload, send the missing parts, check the reused ones
    against the file, wait for the sha256, complete, verify.

    :param resume: :func:`~dataset_ops.staging.upload.resume.resumable`'s answer, or None.
    :param part_size: bytes per part for a new upload (None: :func:`choose_part_size`).
    :returns: (``uploading`` record, parts sent, parts reused, bytes sent).
    :raises UploadInterrupted: Ctrl-C while parts went out. :raises UploadError: a part failed,
        or the file changed during the upload.
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
                crc32 = part_crc32(job.fd, offset, length, listed)
                if crc32 is not None:
                    done[number] = completed_part(number, listed["ETag"], {"ChecksumCRC32": crc32})
                else:
                    stale.append(str(number))
        if stale:
            say(f"{len(stale)} stored part(s) differ from the file (part {', '.join(stale)}): sending again")
        say(
            f"resuming: {len(done)} of {len(plan)} parts already uploaded "
            f"({format_bytes(sum(p[2] for p in plan if p[0] in done))}); upload id {upload_id}"
        )
    else:
        say(
            f"uploading {job.path} to {job.uri}: {format_bytes(size)} in {len(plan)} parts of "
            f"{format_bytes(part_size)}, {parallel} in parallel; upload id {upload_id}"
        )
    todo = [p for p in plan if p[0] not in done]
    done_bytes = sum(length for number, _, length in plan if number in done)
    prog = upload_progress(job.name, size, done=done_bytes, parts_total=len(plan), parts_done=len(done))
    with prog.reporting(job.progress):
        try:
            done.update(send_parts(client, job.bucket, job.key, upload_id, job.fd, todo, parallel, prog))
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
    job.etag = verify(job, parts=len(plan))
    return status, len(todo), len(plan) - len(todo), sum(length for _, _, length in todo)


def verify(job: S3Job, parts: int | None) -> str:
    """``HeadObject`` shows the file's size, and the ``sha256`` metadata of a single ``PutObject``
    (``parts`` None) or the ``-<parts>`` ETag of a multipart upload; returns the ETag.

    :raises UploadError: a mismatch; the object is deleted first (nothing wrong stays where
        readers look), the record stays ``uploading`` and the next run starts over.
    """
    found = job.client.head_object(Bucket=job.bucket, Key=job.key)
    problems = []
    if found["ContentLength"] != job.size:
        problems.append(f"size {found['ContentLength']:,} != {job.size:,}")
    etag = found.get("ETag", "")
    if parts is None and found.get("Metadata", {}).get("sha256") != job.sha256:
        problems.append("sha256 metadata differs")
    if parts is not None and "-" in etag and etag.strip('"').rsplit("-", 1)[1] != str(parts):
        problems.append(f"ETag {etag} does not name {parts} parts")
    if problems:
        job.client.delete_object(Bucket=job.bucket, Key=job.key)
        raise UploadError(f"{job.uri} after upload: {'; '.join(problems)}; object deleted")
    return etag
