"""Staged uploads as a service: what the ``/dataset-ops/staging`` API (:mod:`dataset_ops.staging.api`)
does, without HTTP. Every function takes the opened staging root (a :class:`~dataset_ops.storage.Storage`).

**Uploads from a browser or a script** follow the S3 multipart protocol that Uppy's ``@uppy/aws-s3``
plugin speaks to a Companion server (``POST /s3/multipart``, sign a part, list parts, complete,
abort; https://uppy.io/docs/aws-s3/):

* :func:`start_upload` checks the name, the data type (a rule set, or ``custom`` with the rules in
  the request) and the declared size, refuses a name whose file still waits for validation (409),
  creates the multipart upload and writes the ``uploading`` status record.
* :func:`sign_part`: on S3 a presigned ``UploadPart`` URL: the bytes go from the client straight to
  S3, never through the API server. On a local staging root the URL is the API's own
  ``PUT .../parts/{upload_id}/{part_number}`` (:func:`write_local_part` streams the body to a part
  file below ``uploads/``, 1 MiB at a time).
* :func:`list_parts` is what a resumed upload asks for; :func:`complete_upload` completes with
  ``If-None-Match: *`` (S3) or a hard link (local), so a file waiting in ``uploads/`` is never
  replaced, checks the size, and records ``uploaded``; :func:`abort_upload` gives up.

Reading: :func:`staged_files`, :func:`file_info` (status record and error report),
:func:`upload_progress`, :func:`download_target`; maintenance: :func:`cleanup_uploads`;
figures: :func:`metrics` (also as Prometheus text, :func:`prometheus_text`) and :func:`health`.

Errors: :class:`BadRequest` (an ``InputError``: 400), :class:`UploadNotFound` (404),
:class:`UploadConflict` (409). Anything else is the server's or the storage's fault.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dataset_ops.errors import InputError, NotFound, PermanentError
from dataset_ops.staging.status import (
    FAILED,
    FRESH,
    UPLOADS,
    UploadState,
    UploadStatus,
    check_name,
    list_statuses,
    read_status,
    status_key,
    uploading_record,
    write_status,
)
from dataset_ops.staging.upload.plan import MAX_OBJECT_SIZE, MAX_PARTS, MIN_PART_SIZE, choose_part_size
from dataset_ops.storage import Storage, read_json

log = logging.getLogger(__name__)

#: The data type whose rules come with the upload (``rules`` in :func:`start_upload`).
CUSTOM = "custom"
#: Seconds a presigned part or download URL stays valid.
URL_SECONDS = 3600
#: Bytes read from a request body and written at a time (a local root's part upload).
WRITE_BLOCK = 1 << 20
#: Part files of a local root's upload: ``uploads/.<base>.<upload id>.parts/part-00001.<md5>.partial``
#: (the ``.partial`` suffix keeps them out of listings and lets the cleanup remove them).
_PART_FILE = re.compile(r"part-(\d{5})\.([0-9a-f]{32})\.partial")


class BadRequest(InputError):
    """The request cannot succeed as sent (400): a bad name, size, data type, rule or part."""


class UploadNotFound(NotFound):
    """No such upload, file, version or status record (404)."""


class UploadConflict(PermanentError):
    """The request clashes with the state of the name (409): a file of that name is still waiting
    for validation, another upload of it is in progress, or the upload id is not the current one."""


def is_s3(storage: Storage) -> bool:
    """Whether ``storage`` is an S3 bucket (else a local folder)."""
    return hasattr(storage, "bucket")


def upload_key(name: str) -> str:
    """``uploads/<name>``: the key below the staging root a complete upload of ``name`` lands at."""
    return f"{UPLOADS}/{check_name(name)}"


def name_of_key(key: str) -> str:
    """The upload name of ``key`` (``uploads/<name>``, as :func:`start_upload` returned it).

    :raises BadRequest: the key is not below ``uploads/`` or names an unsafe path."""
    if not isinstance(key, str) or not key.startswith(f"{UPLOADS}/"):
        raise BadRequest(f"key {key!r} is not an upload key (uploads/<name>)")
    try:
        return check_name(key[len(UPLOADS) + 1 :])
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


# --- rules ----------------------------------------------------------------------------------------
def rule_sets() -> list[dict]:
    """Every rule set in ``include/validation`` as ``{"name", "description", "rules"}`` (the rules as
    :meth:`~dataset_ops.validation.rules.RuleSet.to_dict` gives them), sorted by name."""
    from dataset_ops.validation.rules import available_rule_sets, load_rules

    out = []
    for name in available_rule_sets():
        rules = load_rules(name)
        out.append({"name": name, "description": rules.description, "rules": rules.to_dict()})
    return out


def check_rules(data_type: str, rules: dict | None, overrides: dict | None = None):
    """The rule set a file of ``data_type`` is validated with: the named rule set, or for
    :data:`CUSTOM` the ``rules`` given (the YAML format of ``include/validation``, as JSON), with
    ``overrides`` applied.

    :raises BadRequest: an unknown data type, ``custom`` without rules, rules with a named type,
        or rules/overrides the rule format refuses (the message names the key).
    """
    from dataset_ops.validation.rules import RuleError, RuleSet, load_rules

    try:
        if data_type == CUSTOM:
            if not isinstance(rules, dict) or not rules:
                raise BadRequest("data_type custom needs its rules: an object like the rule set files'")
            return RuleSet.from_dict(CUSTOM, rules, source="the upload's rules").with_overrides(overrides)
        if rules:
            raise BadRequest(f"rules are only taken with data_type {CUSTOM!r}; {data_type!r} has its own")
        return load_rules(data_type, overrides)
    except RuleError as exc:
        raise BadRequest(str(exc)) from None


# --- starting, parts, completing -----------------------------------------------------------------
def start_upload(
    storage: Storage,
    name: str,
    data_type: str,
    size: int,
    *,
    description: str = "",
    rules: dict | None = None,
    user: str | None = None,
) -> dict:
    """Start the multipart upload of a file of ``size`` bytes to ``uploads/<name>``.

    :param name: the upload name (a path below ``uploads/``, :func:`~dataset_ops.staging.status.check_name`).
    :param data_type: a rule set name or :data:`CUSTOM`. :param rules: the rules of a custom upload.
    :param size: the file's size in bytes (1 byte to 5 TiB); the rule set's ``max_file_size`` applies.
    :param user: who uploads (kept in the status record).
    :returns: ``{"uploadId", "key", "name", "bucket" (S3 only), "part_size" (bytes, what
        :func:`~dataset_ops.staging.upload.plan.choose_part_size` advises), "part_count"}``.
    :raises BadRequest: a bad name, size, data type or rules. :raises UploadConflict: ``uploads/<name>``
        holds a file waiting for validation, or another upload of the name is in progress.
    """
    try:
        name = check_name(name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_OBJECT_SIZE:
        raise BadRequest(f"size must be 1 to {MAX_OBJECT_SIZE:,} bytes (5 TiB), got {size!r}")
    ruleset = check_rules(data_type, rules)
    if ruleset.max_file_size is not None and size > ruleset.max_file_size:
        raise BadRequest(
            f"{name}: {size:,} bytes is more than the rule set {data_type!r} allows "
            f"(max_file_size {ruleset.max_file_size:,} bytes)"
        )
    key = upload_key(name)
    if storage.exists(key):
        raise UploadConflict(
            f"{key} holds a file waiting for validation; upload again once it was validated "
            "(it is promoted to fresh/ or quarantined within minutes)"
        )
    previous = read_status(storage, name)
    if previous is not None and previous.state == UploadState.UPLOADING and previous.upload_id:
        raise UploadConflict(
            f"an upload of {name} is in progress (upload id {previous.upload_id}, started "
            f"{previous.started_at}): resume it, or abort it "
            f"(DELETE .../s3/multipart/{{upload id}}?key={key})"
        )
    part_size = choose_part_size(size)
    if is_s3(storage):
        created = storage.client.create_multipart_upload(Bucket=storage.bucket, Key=storage.object_key(key))
        upload_id = created["UploadId"]
    else:
        upload_id = uuid.uuid4().hex
        _parts_dir(storage, name, upload_id).mkdir(parents=True)
    block = {
        "key": key,
        "part_size": part_size,
        "parts": -(-size // part_size),
        "source": {"client": "api", "user": user, "size": size},
    }
    if is_s3(storage):
        block["bucket"] = storage.bucket
    status = uploading_record(
        previous,
        name,
        size=size,
        sha256=None,
        upload_id=upload_id,
        data_type=data_type,
        rules=rules if data_type == CUSTOM else None,
        description=description or None,
        multipart=block,
    )
    write_status(storage, status)
    log.info("%s: upload %s started by %s (%s bytes, data type %s)", name, upload_id, user, size, data_type)
    answer = {
        "uploadId": upload_id,
        "key": key,
        "name": name,
        "part_size": part_size,
        "part_count": block["parts"],
    }
    if is_s3(storage):
        answer["bucket"] = storage.bucket
    return answer


def current_upload(storage: Storage, upload_id: str, key: str) -> UploadStatus:
    """The ``uploading`` record of the upload ``upload_id`` at ``key``.

    :raises BadRequest: a bad key. :raises UploadNotFound: no upload of that name is in progress.
    :raises UploadConflict: the name's current upload has another id (this one was replaced or
        completed)."""
    name = name_of_key(key)
    status = read_status(storage, name)
    if status is None or status.state != UploadState.UPLOADING or not status.upload_id:
        raise UploadNotFound(f"no upload of {name} is in progress (upload id {upload_id})")
    if status.upload_id != upload_id:
        raise UploadConflict(
            f"upload id {upload_id} is not the current upload of {name} ({status.upload_id})"
        )
    return status


def _check_part_number(part_number: int) -> None:
    if not 1 <= part_number <= MAX_PARTS:
        raise BadRequest(f"part number must be 1 to {MAX_PARTS}, got {part_number}")


def sign_part(storage: Storage, upload_id: str, key: str, part_number: int, local_url: str) -> dict:
    """Where to send part ``part_number`` of the upload: ``{"url", "expires_in"}`` (seconds).

    On S3 a presigned ``UploadPart`` URL (valid :data:`URL_SECONDS`), made with the Connection's
    ``browser_endpoint_url`` extra when it has one (the S3 address clients reach, when it differs
    from the API server's ``endpoint_url``); the answer to the ``PUT`` carries the part's ``ETag``.
    On a local root ``local_url``, the API's own part route.

    :raises BadRequest: a bad key or part number. :raises UploadNotFound, UploadConflict: see
        :func:`current_upload`."""
    _check_part_number(part_number)
    current_upload(storage, upload_id, key)
    if not is_s3(storage):
        return {"url": local_url, "expires_in": URL_SECONDS}
    url = presign_client(storage).generate_presigned_url(
        "upload_part",
        Params={
            "Bucket": storage.bucket,
            "Key": storage.object_key(key),
            "UploadId": upload_id,
            "PartNumber": part_number,
        },
        ExpiresIn=URL_SECONDS,
    )
    return {"url": url, "expires_in": URL_SECONDS}


def presign_client(storage: Storage):
    """A boto3 S3 client for URLs handed to clients: the storage's own, or one on the Connection's
    ``browser_endpoint_url`` extra when it is set."""
    endpoint = storage.hook.conn_config.extra_config.get("browser_endpoint_url")
    if not endpoint:
        return storage.client
    return storage.hook.get_session().client("s3", endpoint_url=endpoint, config=storage.hook.config)


def _parts_dir(storage: Storage, name: str, upload_id: str) -> Path:
    """A local root's folder of part files for one upload: ``uploads/.<base>.<upload id>.parts``."""
    if not re.fullmatch(r"[0-9a-f]{32}", upload_id or ""):
        raise UploadNotFound(f"no upload {upload_id!r}")
    folder, _, base = name.rpartition("/")
    return storage.path(
        f"{UPLOADS}/{folder}/.{base}.{upload_id}.parts" if folder else f"{UPLOADS}/.{base}.{upload_id}.parts"
    )


def _local_parts(storage: Storage, name: str, upload_id: str) -> dict[int, tuple[str, int, Path]]:
    """``{part number: (etag, size in bytes, path)}`` of the complete part files of a local upload."""
    parts = {}
    folder = _parts_dir(storage, name, upload_id)
    for path in folder.iterdir() if folder.is_dir() else ():
        match = _PART_FILE.fullmatch(path.name)
        if match:
            parts[int(match[1])] = (match[2], path.stat().st_size, path)
    return parts


def open_local_part(storage: Storage, upload_id: str, key: str, part_number: int):
    """For the API's part route on a local root: a :class:`LocalPartWriter` for part ``part_number``
    of the upload (the caller writes the request body to it, then calls ``finish``).

    :raises BadRequest: an S3 root (parts go to S3), a bad key or part number.
    :raises UploadNotFound, UploadConflict: see :func:`current_upload`."""
    if is_s3(storage):
        raise BadRequest("this staging root is on S3: send parts to the presigned URL")
    _check_part_number(part_number)
    status = current_upload(storage, upload_id, key)
    return LocalPartWriter(_parts_dir(storage, status.name, upload_id), part_number, status.size or 0)


class LocalPartWriter:
    """One part of a local root's upload, written to a temporary file and renamed to
    ``part-<n>.<md5>.partial`` (the md5 is the part's ETag, as S3's for an unencrypted part)
    only once all of it was written and fsynced; a part sent again replaces the old one.

    :param folder: the upload's part folder. :param part_number: 1 to 10,000.
    :param limit: the most bytes a part may have (the declared file size).
    """

    def __init__(self, folder: Path, part_number: int, limit: int):
        self.folder, self.part_number, self.limit = folder, part_number, limit
        self.tmp = folder / f".part-{part_number:05d}.{uuid.uuid4().hex}.tmp.partial"
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0
        self._fh = open(self.tmp, "wb")  # noqa: SIM115 (closed by finish/discard)

    def write(self, data: bytes) -> None:
        """Append ``data``. :raises BadRequest: the part grew past the declared file size."""
        self.size += len(data)
        if self.size > self.limit:
            raise BadRequest(
                f"part {self.part_number} is larger than the declared file size ({self.limit:,} bytes)"
            )
        self.md5.update(data)
        self._fh.write(data)

    def finish(self) -> str:
        """Flush, fsync and publish the part; its ETag (md5 hex)."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        etag = self.md5.hexdigest()
        for old in self.folder.glob(f"part-{self.part_number:05d}.*.partial"):
            old.unlink(missing_ok=True)
        os.replace(self.tmp, self.folder / f"part-{self.part_number:05d}.{etag}.partial")
        return etag

    def discard(self) -> None:
        """Drop what was written (the request failed or was refused)."""
        self._fh.close()
        self.tmp.unlink(missing_ok=True)


def list_parts(storage: Storage, upload_id: str, key: str) -> list[dict]:
    """The parts the storage holds for the upload: ``[{"PartNumber", "ETag", "Size"}]`` (bytes),
    by part number (S3 ``ListParts``, every page)."""
    return _held_parts(storage, current_upload(storage, upload_id, key), upload_id, key)


def _held_parts(storage: Storage, status: UploadStatus, upload_id: str, key: str) -> list[dict]:
    """:func:`list_parts` for a status record already read."""
    if not is_s3(storage):
        return [
            {"PartNumber": n, "ETag": f'"{etag}"', "Size": size}
            for n, (etag, size, _) in sorted(_local_parts(storage, status.name, upload_id).items())
        ]
    parts = []
    paginator = storage.client.get_paginator("list_parts")
    for page in paginator.paginate(Bucket=storage.bucket, Key=storage.object_key(key), UploadId=upload_id):
        parts += [
            {"PartNumber": p["PartNumber"], "ETag": p["ETag"], "Size": p["Size"]}
            for p in page.get("Parts", [])
        ]
    return sorted(parts, key=lambda p: p["PartNumber"])


def _etag(value: Any) -> str:
    return str(value or "").strip().strip('"')


def complete_upload(storage: Storage, upload_id: str, key: str, parts: list[dict]) -> UploadStatus:
    """Complete the upload from ``parts`` (``[{"PartNumber", "ETag"}]``, every part, in order) and
    record it ``uploaded``; the file appears at ``uploads/<name>`` whole or not at all.

    S3: ``CompleteMultipartUpload`` with ``If-None-Match: *``, then ``HeadObject`` must show the
    declared size (else the object is deleted again). Local: the part files are checked (numbers
    1..N, ETags, sizes adding up to the declared size), joined into a hidden ``.partial`` file,
    fsynced and hard-linked to the key.

    :raises BadRequest: missing, unknown or mismatched parts, or a size other than the declared one
        (the record says why; on S3 the upload stays open, so the parts can be sent again).
    :raises UploadConflict: ``uploads/<name>`` appeared meanwhile (nothing replaced; the parts stay).
    """
    status = current_upload(storage, upload_id, key)
    numbers = [p.get("PartNumber") for p in parts]
    if not parts or numbers != list(range(1, len(parts) + 1)):
        raise BadRequest(f"parts must be numbered 1..N in order, got {numbers[:20]}")
    etag = None
    if is_s3(storage):
        etag = _complete_s3(storage, status, upload_id, key, parts)
    else:
        _complete_local(storage, status, upload_id, key, parts)
    started = datetime.fromisoformat(status.started_at)
    done = status.moved_to(
        UploadState.UPLOADED,
        upload_id=None,
        multipart=None,
        etag=etag,
        timings={"upload": round((datetime.now(UTC) - started).total_seconds(), 3)},
    )
    write_status(storage, done)
    log.info("%s: upload %s complete (%s bytes in %d parts)", status.name, upload_id, status.size, len(parts))
    return done


def _complete_s3(storage: Storage, status: UploadStatus, upload_id: str, key: str, parts: list[dict]) -> str:
    """Complete on S3; the completed object's ETag (one ``HeadObject``)."""
    from botocore.exceptions import ClientError

    object_key = storage.object_key(key)
    # checked against ListParts first: a completed upload cannot be reopened, so a wrong part list
    # must be refused before S3 sees it (the parts stay, and the client can send the missing ones)
    held = {p["PartNumber"]: p for p in _held_parts(storage, status, upload_id, key)}
    problems = []
    for p in parts:
        found = held.get(p["PartNumber"])
        if found is None:
            problems.append(f"part {p['PartNumber']} was not received")
        elif _etag(found["ETag"]) != _etag(p.get("ETag")):
            problems.append(
                f"part {p['PartNumber']} ETag {_etag(p.get('ETag'))} != received {_etag(found['ETag'])}"
            )
    total = sum(held[p["PartNumber"]]["Size"] for p in parts if p["PartNumber"] in held)
    if not problems and total != status.size:
        problems.append(f"the parts hold {total:,} bytes, the upload declared {status.size:,}")
    if problems:
        raise BadRequest(f"cannot complete upload {upload_id} of {key}: {'; '.join(problems[:10])}")
    try:
        storage.client.complete_multipart_upload(
            Bucket=storage.bucket,
            Key=object_key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": p["PartNumber"], "ETag": f'"{_etag(p.get("ETag"))}"'} for p in parts]
            },
            IfNoneMatch="*",  # never replaces a file waiting in uploads/
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if code in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise UploadConflict(
                f"{key} appeared during the upload: nothing was replaced; the parts are kept, so "
                "completing again once that file was validated works"
            ) from None
        if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "NoSuchUpload", "MalformedXML"):
            raise BadRequest(
                f"S3 refused to complete upload {upload_id} of {key}: {code} {message}".strip()
            ) from None
        raise
    completed = storage.stat(key)
    size = completed.size
    if size != status.size:
        storage.delete(key)
        write_status(
            storage,
            status.moved_to(
                UploadState.UPLOADING, error_summary=f"completed size {size:,} != declared {status.size:,}"
            ),
        )
        raise BadRequest(
            f"{key}: the completed object has {size:,} bytes, the upload declared {status.size:,}; "
            "object deleted, start the upload again"
        )
    return completed.etag


def _complete_local(
    storage: Storage, status: UploadStatus, upload_id: str, key: str, parts: list[dict]
) -> None:
    import shutil

    from dataset_ops.storage.local import _link_new

    held = _local_parts(storage, status.name, upload_id)
    problems = []
    for p in parts:
        found = held.get(p["PartNumber"])
        if found is None:
            problems.append(f"part {p['PartNumber']} was not received")
        elif found[0] != _etag(p.get("ETag")):
            problems.append(f"part {p['PartNumber']} ETag {_etag(p.get('ETag'))} != received {found[0]}")
    sizes = [held[p["PartNumber"]][1] for p in parts if p["PartNumber"] in held]
    if not problems:
        total = sum(sizes)
        if total != status.size:
            problems.append(f"the parts hold {total:,} bytes, the upload declared {status.size:,}")
        small = [n for n, s in enumerate(sizes[:-1], 1) if s < MIN_PART_SIZE]
        if small:
            problems.append(f"parts {small[:10]} are under 5 MiB (only the last part may be)")
    if problems:
        raise BadRequest(f"cannot complete upload {upload_id} of {key}: {'; '.join(problems[:10])}")

    def join(out) -> None:
        for p in parts:
            with open(held[p["PartNumber"]][2], "rb") as fh:
                shutil.copyfileobj(fh, out, 8 << 20)
        out.flush()
        os.fsync(out.fileno())

    if not _link_new(storage.path(key), join):
        raise UploadConflict(f"{key} appeared during the upload: nothing was replaced; the parts are kept")
    shutil.rmtree(_parts_dir(storage, status.name, upload_id), ignore_errors=True)


def abort_upload(storage: Storage, upload_id: str, key: str) -> UploadStatus | None:
    """Give up the upload: its parts are deleted (S3 ``AbortMultipartUpload``) and the status
    record goes back to the state of the name's last kept file (deleted when there is none).

    :returns: the record as it is now, or None when it was deleted."""
    status = current_upload(storage, upload_id, key)
    if is_s3(storage):
        storage.client.abort_multipart_upload(
            Bucket=storage.bucket, Key=storage.object_key(key), UploadId=upload_id
        )
    else:
        import shutil

        shutil.rmtree(_parts_dir(storage, status.name, upload_id), ignore_errors=True)
    return _forget_upload(storage, status, "aborted")


def _forget_upload(storage: Storage, status: UploadStatus, why: str) -> UploadStatus | None:
    """The record of a name whose upload ended without a file: back to its last kept version."""
    if not status.versions:
        storage.delete(status_key(status.name))
        log.info(
            "%s: upload %s %s; the name has no kept file, record deleted", status.name, status.upload_id, why
        )
        return None
    last = status.versions[-1]
    restored = status.moved_to(
        last.get("state", FRESH),
        upload_id=None,
        multipart=None,
        size=last.get("size"),
        sha256=last.get("sha256"),
        records=last.get("records"),
        version=last.get("version"),
        key=last.get("key"),
        error_summary=f"upload {status.upload_id} {why}",
    )
    write_status(storage, restored)
    log.info("%s: upload %s %s; record back to %s", status.name, status.upload_id, why, restored.state)
    return restored


# --- reading --------------------------------------------------------------------------------------
def file_entry(status: UploadStatus) -> dict:
    """One staged file as the listing shows it (the old service's fields, then the suite's):
    ``file_id`` and ``original_name`` (both the name), ``status``, ``file_size`` (bytes),
    ``data_type``, ``description``, ``version``, ``key``, ``updated_at``, ``started_at``,
    ``error_summary``, ``errors``, ``records``, ``duplicate_of``, ``versions`` (count)."""
    return {
        "file_id": status.name,
        "name": status.name,
        "original_name": status.name.rpartition("/")[2],
        "status": status.state,
        "file_size": status.size,
        "data_type": status.data_type,
        "description": status.description,
        "version": status.version,
        "key": status.key,
        "records": status.records,
        "errors": status.errors,
        "error_summary": status.error_summary,
        "duplicate_of": status.duplicate_of,
        "started_at": status.started_at,
        "updated_at": status.updated_at,
        "versions": len(status.versions),
    }


def staged_files(storage: Storage, state: str | None = None) -> dict:
    """``{"files": [file_entry, ...] (by name), "total_files"}``, optionally only those in ``state``
    (an :class:`~dataset_ops.staging.status.UploadState` value).

    :raises BadRequest: an unknown state."""
    if state is not None and state not in {s.value for s in UploadState}:
        raise BadRequest(f"unknown status {state!r}; one of {[s.value for s in UploadState]}")
    files = [file_entry(s) for s in list_statuses(storage, state)]
    return {"files": files, "total_files": len(files)}


def require_status(storage: Storage, name: str) -> UploadStatus:
    """The status record of ``name``. :raises BadRequest: an unsafe name.
    :raises UploadNotFound: no record."""
    try:
        check_name(name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    status = read_status(storage, name)
    if status is None:
        raise UploadNotFound(f"no staged file named {name!r}")
    return status


def file_info(storage: Storage, name: str) -> dict:
    """:func:`file_entry` plus ``record`` (the whole status record, with ``versions``: every kept
    file) and ``report``: the error report of the latest quarantined version (``{"valid",
    "records", "errors": [{"line", "offset", "reason"}], "errors_found", ...}``), or None."""
    status = require_status(storage, name)
    report_key = status.report_key
    if report_key is None:
        failed = [v for v in status.versions if v.get("state") == FAILED and v.get("report_key")]
        report_key = failed[-1]["report_key"] if failed else None
    return {
        **file_entry(status),
        "record": asdict(status),
        "report": read_json(storage, report_key) if report_key else None,
    }


def upload_progress(storage: Storage, name: str) -> dict:
    """How far the upload of ``name`` is: ``{"file_id", "status", "progress" (percent, 0 to 100),
    "bytes_uploaded", "file_size" (bytes), "chunk_count" (parts planned), "parts_uploaded",
    "error"}``. While uploading, the bytes are those of the parts the storage holds (S3
    ``ListParts``; a local root's part files); from ``uploaded`` on, the whole file."""
    status = require_status(storage, name)
    size = status.size or 0
    block = status.multipart or {}
    uploaded, parts = size, block.get("parts") or 0
    parts_done = parts
    if status.state == UploadState.UPLOADING:
        try:
            held = []
            if status.upload_id:
                held = _held_parts(storage, status, status.upload_id, upload_key(name))
        except Exception as exc:  # the CLI's upload of another client: its parts may be unlisted
            log.warning("%s: listing the parts failed: %s", name, exc)
            held = []
        uploaded, parts_done = sum(p["Size"] for p in held), len(held)
    return {
        "file_id": name,
        "status": status.state,
        "progress": round(100.0 * uploaded / size, 2)
        if size
        else (100.0 if status.state != UploadState.UPLOADING else 0.0),
        "bytes_uploaded": uploaded,
        "file_size": status.size,
        "chunk_count": parts,
        "parts_uploaded": parts_done,
        "error": status.error_summary if status.state == UploadState.FAILED else None,
    }


@dataclass
class DownloadTarget:
    """A kept file to download: ``key`` below the staging root, ``filename`` (base name),
    ``size`` in bytes, ``state`` (``fresh`` or ``failed``), ``version``."""

    key: str
    filename: str
    size: int
    state: str
    version: int


def download_target(
    storage: Storage, name: str, version: int | None = None, state: str | None = None
) -> DownloadTarget:
    """The kept file of ``name`` to download: its latest ``fresh`` version by default, else the
    given ``version`` (and ``state``, when a version number exists in both folders).

    :raises UploadNotFound: no such record, version, or no validated file yet."""
    status = require_status(storage, name)
    kept = [v for v in status.versions if (state is None or v.get("state") == state)]
    if version is not None:
        kept = [v for v in kept if v.get("version") == version]
    elif state is None:
        kept = [v for v in kept if v.get("state") == FRESH]
    if not kept:
        what = f"version {version}" if version is not None else "a validated (fresh) file"
        raise UploadNotFound(
            f"{name} has no {what}{f' in {state}/' if state else ''}; see file-info for its versions"
        )
    chosen = kept[-1]
    if not storage.exists(chosen["key"]):
        raise UploadNotFound(
            f"{chosen['key']} is listed in the status record of {name} but is not in the storage"
        )
    return DownloadTarget(
        key=chosen["key"],
        filename=chosen["key"].rpartition("/")[2],
        size=storage.stat(chosen["key"]).size,
        state=chosen.get("state", FRESH),
        version=chosen.get("version", 1),
    )


def presigned_download(storage: Storage, target: DownloadTarget) -> str:
    """A presigned ``GetObject`` URL of ``target`` (valid :data:`URL_SECONDS`), answered as an
    attachment named after the file."""
    from urllib.parse import quote

    return presign_client(storage).generate_presigned_url(
        "get_object",
        Params={
            "Bucket": storage.bucket,
            "Key": storage.object_key(target.key),
            "ResponseContentDisposition": f"attachment; filename*=UTF-8''{quote(target.filename)}",
        },
        ExpiresIn=URL_SECONDS,
    )


# --- maintenance ----------------------------------------------------------------------------------
def cleanup_uploads(storage: Storage, hours_old: float = 24, dry_run: bool = False) -> dict:
    """The old service's cleanup of failed and abandoned uploads older than ``hours_old`` hours:
    quarantined files with their reports, incomplete multipart uploads (S3) and part files (local),
    and the ``uploading`` records those uploads leave (back to the name's last kept file).

    :returns: ``{"cleaned" (files and uploads removed), "failed": [paths below failed/],
        "incomplete_uploads": [keys], "abandoned_records": [names], "hours_old", "dry_run"}``.
    """
    from dataset_ops.staging.tasks import cleanup

    report = cleanup(storage, hours_old, hours_old, dry_run)
    cutoff = datetime.now(UTC) - timedelta(hours=hours_old)
    abandoned = []
    for status in list_statuses(storage, UploadState.UPLOADING):
        if datetime.fromisoformat(status.updated_at) >= cutoff or storage.exists(upload_key(status.name)):
            continue
        abandoned.append(status.name)
        if not dry_run:
            if not is_s3(storage) and status.upload_id:
                import shutil

                try:
                    shutil.rmtree(_parts_dir(storage, status.name, status.upload_id), ignore_errors=True)
                except UploadNotFound:  # the CLI's local upload: a .partial file the cleanup removed
                    pass
            _forget_upload(storage, status, f"abandoned (no activity for {hours_old:g} hours; cleaned up)")
    return {
        **report,
        "abandoned_records": abandoned,
        "cleaned": len(report["failed"]) + len(report["incomplete_uploads"]),
        "hours_old": hours_old,
    }


# --- figures --------------------------------------------------------------------------------------
def _at(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def metrics(storage: Storage, now: datetime | None = None) -> dict:
    """Figures from the status records (one listing of ``_status/``).

    :returns: ``{"files_by_state": {state: {"count", "bytes"}}`` (every state, zeros included),
        ``"kept_files": {"fresh": {"count", "bytes"}, "failed": {...}}`` (every kept version),
        ``"total_uploads"`` (names), ``"successful_uploads"``, ``"failed_uploads"``, ``"total_size"``
        and ``"average_file_size"`` (bytes, over names with a known size), ``"uploads_last_hour"``,
        ``"validations_last_hour"``, ``"uploads_per_hour_24h"`` and ``"validations_per_hour_24h"``
        (means over the last 24 hours), ``"upload_bytes_per_second"`` and
        ``"validation_bytes_per_second"`` (bytes over seconds of the uploads and validations of the
        last 24 hours; None without any), ``"generated_at"``}.
    """
    now = now or datetime.now(UTC)
    hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(hours=24)
    by_state = {s.value: {"count": 0, "bytes": 0} for s in UploadState}
    kept = {FRESH: {"count": 0, "bytes": 0}, FAILED: {"count": 0, "bytes": 0}}
    uploads_hour = uploads_day = validations_hour = validations_day = 0
    up_bytes = up_seconds = val_bytes = val_seconds = 0.0
    sizes = []
    statuses = list_statuses(storage)
    for status in statuses:
        entry = by_state.setdefault(status.state, {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += status.size or 0
        if status.size is not None:
            sizes.append(status.size)
        for v in status.versions:
            if v.get("state") in kept:
                kept[v["state"]]["count"] += 1
                kept[v["state"]]["bytes"] += v.get("size") or 0
            at = _at(v.get("at"))
            if at and at >= day_ago:
                validations_day += 1
                validations_hour += at >= hour_ago
        # an upload finished when the record left `uploading`: the time of the state after it
        timeline = [*status.history, [status.state, status.updated_at]]
        finished = [
            _at(after[1])
            for (state, _), after in zip(timeline, timeline[1:], strict=False)
            if state == UploadState.UPLOADING and after[0] != UploadState.UPLOADING
        ]
        for at in finished:
            if at and at >= day_ago:
                uploads_day += 1
                uploads_hour += at >= hour_ago
        updated = _at(status.updated_at)
        if updated and updated >= day_ago and status.size:
            if status.timings.get("upload"):
                up_bytes += status.size
                up_seconds += status.timings["upload"]
            if status.timings.get("validate"):
                val_bytes += status.size
                val_seconds += status.timings["validate"]
    return {
        "files_by_state": by_state,
        "kept_files": kept,
        "total_uploads": len(statuses),
        "successful_uploads": by_state[UploadState.FRESH.value]["count"],
        "failed_uploads": by_state[UploadState.FAILED.value]["count"],
        "total_size": sum(sizes),
        "average_file_size": round(sum(sizes) / len(sizes), 1) if sizes else 0,
        "uploads_last_hour": uploads_hour,
        "validations_last_hour": validations_hour,
        "uploads_per_hour_24h": round(uploads_day / 24, 3),
        "validations_per_hour_24h": round(validations_day / 24, 3),
        "upload_bytes_per_second": round(up_bytes / up_seconds, 1) if up_seconds else None,
        "validation_bytes_per_second": round(val_bytes / val_seconds, 1) if val_seconds else None,
        "generated_at": now.isoformat(timespec="seconds"),
    }


def prometheus_text(figures: dict) -> bytes:
    """:func:`metrics` in the Prometheus text exposition format (version 0.0.4), rendered by
    ``prometheus_client``: gauges ``dataset_ops_staging_files{state}``,
    ``dataset_ops_staging_bytes{state}``, ``dataset_ops_staging_kept_files{folder}``,
    ``dataset_ops_staging_kept_bytes{folder}``, ``dataset_ops_staging_uploads_last_hour``,
    ``dataset_ops_staging_validations_last_hour``, ``dataset_ops_staging_upload_bytes_per_second``,
    ``dataset_ops_staging_validation_bytes_per_second`` (NaN when unknown)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    class Collector:
        def collect(self):
            files = GaugeMetricFamily("dataset_ops_staging_files", "Staged names by state", labels=["state"])
            size = GaugeMetricFamily(
                "dataset_ops_staging_bytes", "Bytes of the staged names by state", labels=["state"]
            )
            for state, entry in figures["files_by_state"].items():
                files.add_metric([state], entry["count"])
                size.add_metric([state], entry["bytes"])
            kept = GaugeMetricFamily(
                "dataset_ops_staging_kept_files", "Kept file versions", labels=["folder"]
            )
            kept_bytes = GaugeMetricFamily(
                "dataset_ops_staging_kept_bytes", "Bytes of kept versions", labels=["folder"]
            )
            for folder, entry in figures["kept_files"].items():
                kept.add_metric([folder], entry["count"])
                kept_bytes.add_metric([folder], entry["bytes"])
            yield from (files, size, kept, kept_bytes)
            for name, help_text in (
                ("uploads_last_hour", "Uploads completed in the last hour"),
                ("validations_last_hour", "Files validated in the last hour"),
                ("upload_bytes_per_second", "Upload throughput over the last 24 hours"),
                ("validation_bytes_per_second", "Validation throughput over the last 24 hours"),
            ):
                value = figures[name]
                yield GaugeMetricFamily(
                    f"dataset_ops_staging_{name}", help_text, value=float("nan") if value is None else value
                )

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry)


def health(storage: Storage) -> dict:
    """Whether the staging root answers: ``{"status": "healthy" | "unhealthy", "storage": uri,
    "error", "active_uploads", "failed_uploads", "total_files"}`` (the old service's fields)."""
    try:
        statuses = list_statuses(storage)
    except Exception as exc:  # the point of a health check: say it, don't fail
        return {
            "status": "unhealthy",
            "storage": storage.uri(""),
            "error": f"{type(exc).__name__}: {exc}"[:500],
            **dict.fromkeys(("active_uploads", "failed_uploads", "total_files")),
        }
    return {
        "status": "healthy",
        "storage": storage.uri(""),
        "error": None,
        "active_uploads": sum(s.state == UploadState.UPLOADING for s in statuses),
        "failed_uploads": sum(s.state == UploadState.FAILED for s in statuses),
        "total_files": len(statuses),
    }
