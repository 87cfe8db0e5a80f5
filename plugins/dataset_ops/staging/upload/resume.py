"""What an earlier run left: the same file already there, or an interrupted upload to resume.

* **Resume (S3).** Before the first part, the status ``_status/<NAME>.json`` is written as
  ``uploading`` with ``upload_id``, ``size`` and a ``multipart`` block (bucket, key, part size,
  part count, file path, size and ``mtime_ns``; cleared once the upload is complete). Rerunning
  the same command reads it (:func:`resumable`): if the file's size and mtime and the
  destination are the same, it lists the parts already on the server (``ListParts``, paginated)
  and keeps those whose size matches the plan and whose CRC32 (or MD5 ETag) matches the file's
  bytes now (:func:`part_crc32`); only the others are uploaded, with the recorded part size.
  If the file's size or mtime changed, or the upload id is gone (``NoSuchUpload``: aborted, or
  removed by a lifecycle rule or the staging cleanup), the old upload is aborted when it can be
  and the upload starts over, saying so. A failure or Ctrl-C leaves the record ``uploading``
  and the multipart upload in place (never aborted on failure: that is what lets the next run
  resume).
* **Resume (local root).** The ``uploading`` record names the partial file and the source's
  size and ``mtime_ns``; a rerun with the same file checks the partial file against the source
  block by block and copies the rest (:func:`verified_prefix`), else it starts over.
* **Already there.** If the record of a finished upload has the file's size and sha256 and the
  object at the key has that size and the recorded ETag (or ``sha256`` metadata), nothing is
  sent (:func:`already_there`). If ``uploads/<NAME>`` holds a file waiting for validation, the
  same content is a no-op recorded as ``uploaded`` and different content is refused
  (:func:`existing_upload`, :class:`~dataset_ops.staging.upload.errors.NameTaken`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from collections.abc import Callable
from pathlib import Path

from dataset_ops.staging.status import UploadState, UploadStatus, write_status
from dataset_ops.staging.upload.errors import NameTaken, UploadError
from dataset_ops.staging.upload.hashing import HashJob
from dataset_ops.staging.upload.plan import HASH_BLOCK, MULTIPART_BLOCK, check_part_size
from dataset_ops.staging.upload.transfer import S3Job, abort, error_code, head, list_uploaded_parts
from dataset_ops.storage import Storage


def existing_upload(
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
    this command is finished so).

    :returns: the ``uploaded`` record (written unless ``previous`` already said so).
    :raises NameTaken: different content; nothing replaced.
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


def already_there(job: S3Job, hash_job: HashJob) -> bool:
    """True when the key already holds this file: the record of a finished upload names the same
    size and sha256 and the object has that size and the recorded ETag (or ``sha256`` metadata).
    Only then does this wait for the hash (and set ``job.sha256``)."""
    prev = job.previous
    if prev is None or prev.state == UploadState.UPLOADING or not prev.sha256 or prev.size != job.size:
        return False
    found = head(job.client, job.bucket, job.key) or {}
    if found.get("ContentLength") != job.size:
        return False
    same_object = (prev.etag and found.get("ETag") == prev.etag) or found.get("Metadata", {}).get(
        "sha256"
    ) == prev.sha256
    if not same_object:
        return False
    job.sha256 = hash_job.result()
    return job.sha256 == prev.sha256


def part_crc32(fd: int, offset: int, length: int, listed: dict) -> str | None:
    """The CRC32 (base64 of the big-endian value) of a stored part that holds the file's bytes
    now; None when it does not (a stale part, to be sent again).

    ``listed`` is the part's ``ListParts`` entry: its ``ChecksumCRC32`` or else an MD5 ETag (what
    S3 gives a part without SSE-KMS) is compared with the ``length`` bytes at ``offset`` of
    ``fd``; with neither, the part counts as stale. The CRC32 is computed from the local bytes
    either way, because ``CompleteMultipartUpload`` of an upload created with
    ``ChecksumAlgorithm=CRC32`` needs every part's checksum, and some servers (SeaweedFS) list
    parts without it.
    """
    want_crc = listed.get("ChecksumCRC32")
    etag = str(listed.get("ETag", "")).strip('"')
    if not want_crc and not (len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())):
        return None
    crc, md5 = 0, hashlib.md5(usedforsecurity=False)
    end = offset + length
    while offset < end:
        chunk = os.pread(fd, min(HASH_BLOCK, end - offset), offset)
        if not chunk:
            return None
        crc = zlib.crc32(chunk, crc)
        if not want_crc:
            md5.update(chunk)
        offset += len(chunk)
    have_crc = base64.b64encode(crc.to_bytes(4, "big")).decode()
    if want_crc:
        return have_crc if have_crc == want_crc else None
    return have_crc if md5.hexdigest() == etag.lower() else None


def resumable(job: S3Job) -> dict | None:
    """The parts of an interrupted upload of this same file, or None (aborting what is stale).

    :returns: ``{"upload_id", "part_size", "parts": {number: ListParts entry}}``.
    :raises UploadError: ``ListParts`` failed for another reason than ``NoSuchUpload``.
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
        abort(job.client, old_bucket, old_key, upload_id, say)
        return None
    try:
        parts = list_uploaded_parts(job.client, job.bucket, job.key, upload_id)
    except Exception as exc:
        if error_code(exc) != "NoSuchUpload":
            raise UploadError(f"ListParts of upload {upload_id} failed: {exc}") from exc
        say(
            f"the interrupted upload {upload_id} no longer exists on the server (aborted or expired): "
            "starting over"
        )
        return None
    return {"upload_id": upload_id, "part_size": int(part_size), "parts": parts}


def verified_prefix(fd: int, partial: Path, digest, block: int) -> int:
    """Bytes at the start of the local ``partial`` file equal to the source's (open descriptor
    ``fd``), compared in blocks of ``block`` bytes and hashed into ``digest`` (a hashlib object);
    the partial file is cut there. :returns: that byte count."""
    have, offset = partial.stat().st_size, 0
    with open(partial, "r+b") as out:
        while offset < have:
            n = min(block, have - offset)
            theirs = os.pread(fd, n, offset)
            if out.read(n) != theirs:
                break
            digest.update(theirs)
            offset += n
        out.truncate(offset)
    return offset
