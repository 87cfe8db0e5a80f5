"""Task bodies of ``staged_upload_validation``: find uploads, validate, promote or quarantine.

Every function takes the staging area as a :class:`~dataset_ops.storage.Storage` opened at the
staging root (layout in :mod:`dataset_ops.staging.status`). Nothing here needs a scheduler.

No valid file is ever lost and nothing invalid reaches ``fresh/``:

* promote: server-side copy ``uploads/<name>`` -> ``fresh/<name>``, verify the copy's size, write
  the ``fresh`` status, and only then delete the upload. A crash between copy and delete leaves
  the file in both places; the next run validates the upload again and finishes the move.
* quarantine: the error report goes to ``failed/<name>.report.json`` first, then the file moves
  (copy, then delete) to ``failed/<name>``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime, timedelta

from dataset_ops.staging.status import (
    FAILED,
    FRESH,
    UPLOADS,
    UploadState,
    UploadStatus,
    check_name,
    read_status,
    write_status,
)
from dataset_ops.storage import HashingReader, Storage, write_json

log = logging.getLogger(__name__)

#: Rule set used for a file whose data type is not given, by extension.
DEFAULT_DATA_TYPES = {".jsonl": "jsonl", ".csv": "csv", ".txt": "text"}


def report_key(name: str) -> str:
    """Key of the error report of a quarantined file."""
    return f"{FAILED}/{name}.report.json"


def find_uploads(storage: Storage) -> list[dict]:
    """Complete files waiting in ``uploads/``, one dict per file: ``name``, ``data_type``, ``size``.

    S3 lists a multipart upload only once it is completed, and local writes appear by rename, so
    every listed object is whole. Files whose status says ``uploading`` (a newer upload of the
    same name is on its way) are left for a later run. Keys with an unsafe name (``..``, a
    leading ``/``) are never read: :func:`quarantine_unsafe_key` moves them aside.
    """
    found = []
    for key in storage.list(UPLOADS):
        name = key[len(UPLOADS) + 1 :]
        try:
            check_name(name)
        except ValueError as exc:
            quarantine_unsafe_key(storage, key, str(exc))
            continue
        status = read_status(storage, name)
        if status is not None and status.state == UploadState.UPLOADING:
            log.info("%s: an upload of this name is in progress; left for a later run", name)
            continue
        found.append(
            {
                "name": name,
                "data_type": (status.data_type if status else None) or infer_data_type(name),
                "size": storage.stat(key).size,
            }
        )
    log.info("uploads to validate: %s", [f["name"] for f in found] or "none")
    return found


def quarantine_unsafe_key(storage: Storage, key: str, reason: str) -> UploadStatus:
    """Move an object whose key is unsafe to ``failed/_unsafe/<sha1 of the key>``, with a report
    naming the original key, and give it a ``failed`` status under that safe name."""
    safe = f"_unsafe/{hashlib.sha1(key.encode()).hexdigest()}"
    size = storage.stat(key).size
    write_json(
        storage,
        report_key(safe),
        {
            "name": safe,
            "original_key": key,
            "valid": False,
            "errors": [{"line": None, "offset": None, "reason": reason}],
        },
    )
    storage.move(key, f"{FAILED}/{safe}")
    status = UploadStatus(
        name=safe,
        state=UploadState.FAILED,
        size=size,
        errors=1,
        error_summary=f"unsafe key {key!r}: {reason}"[:500],
        report_key=report_key(safe),
    )
    write_status(storage, status)
    log.error("%s: %s; moved to %s", key, reason, storage.uri(f"{FAILED}/{safe}"))
    return status


def infer_data_type(name: str) -> str:
    """The rule set for a file without a declared data type, by extension (``.jsonl`` -> jsonl);
    ``unknown`` (no such rule set, so the file is quarantined) for other extensions."""
    base = name.rsplit("/", 1)[-1].lower().removesuffix(".gz")
    for ext, data_type in DEFAULT_DATA_TYPES.items():
        if base.endswith(ext):
            return data_type
    return "unknown"


def validate_file(storage: Storage, key: str, data_type: str, overrides: dict | None) -> dict:
    """Validate the object at ``key`` as a stream with the rule set ``data_type``.

    :returns: the validation result as a dict (``valid``, ``records``, ``errors``, totals) plus
        ``sha256`` of the bytes read.
    """
    from dataset_ops.validation import load_rules, validate_stream

    rules = load_rules(data_type, overrides)
    size = storage.stat(key).size
    with storage.open_read(key) as raw:
        reader = HashingReader(raw)
        result = validate_stream(reader, rules, name=key, size=size).to_dict()
    result["sha256"] = reader.sha256.hexdigest() if reader.size == size else None
    return result


def process_upload(
    storage: Storage,
    name: str,
    data_type: str,
    overrides: dict | None = None,
    source_prefix: str = UPLOADS,
) -> UploadStatus:
    """Validate ``<source_prefix>/<name>``, then promote it to ``fresh/`` or quarantine it.

    :param source_prefix: ``uploads`` normally; ``failed`` to re-validate a quarantined file.
    :returns: the final status record (``fresh`` or ``failed``).
    """
    check_name(name)
    src = f"{source_prefix}/{name}"
    status = read_status(storage, name) or UploadStatus(name=name, state=UploadState.UPLOADED)
    # The uploader records the sha256 of what it sent; other records describe older files.
    uploaded_sha256 = status.sha256 if status.state == UploadState.UPLOADED else None
    status = status.moved_to(UploadState.VALIDATING, data_type=data_type)
    write_status(storage, status)
    started = time.monotonic()
    try:
        result = validate_file(storage, src, data_type, overrides)
    except (ValueError, KeyError, FileNotFoundError) as exc:  # unknown rule set, bad overrides
        result = {
            "valid": False,
            "records": None,
            "errors": [{"line": None, "offset": None, "reason": str(exc)}],
            "errors_found": 1,
            "sha256": None,
        }
    if uploaded_sha256 and result.get("sha256") and result["sha256"] != uploaded_sha256:
        result["valid"] = False
        result["errors"] = [
            {
                "line": None,
                "offset": None,
                "reason": (
                    f"content sha256 {result['sha256']} differs from the uploaded file's {uploaded_sha256}: "
                    "the object changed after the upload"
                ),
            },
            *result.get("errors", []),
        ]
        result["errors_found"] = result.get("errors_found", 0) + 1
    validate_seconds = round(time.monotonic() - started, 3)
    timings = {**status.timings, "validate": validate_seconds}
    if result["valid"]:
        return promote(storage, name, src, status, result, timings)
    return quarantine(storage, name, src, status, result, timings)


def promote(
    storage: Storage, name: str, src: str, status: UploadStatus, result: dict, timings: dict
) -> UploadStatus:
    """Copy ``src`` to ``fresh/<name>``, verify it, record ``fresh``, then delete ``src``."""
    started = time.monotonic()
    dst = f"{FRESH}/{name}"
    size = storage.stat(src).size
    storage.copy(src, dst)
    copied = storage.stat(dst).size
    if copied != size:
        storage.delete(dst)
        raise RuntimeError(f"{storage.uri(dst)}: copy has {copied:,} bytes, source {size:,}; not promoted")
    final = status.moved_to(
        UploadState.FRESH,
        size=size,
        sha256=result.get("sha256") or status.sha256,
        records=result.get("records"),
        errors=0,
        error_summary=None,
        report_key=None,
        timings={**timings, "promote": round(time.monotonic() - started, 3)},
    )
    write_status(storage, final)
    storage.delete(src)
    if status.report_key:  # a quarantined file that passed on retry: its old report goes too
        storage.delete(status.report_key)
    log.info("%s: valid (%s records) -> %s", name, final.records, storage.uri(dst))
    return final


def quarantine(
    storage: Storage, name: str, src: str, status: UploadStatus, result: dict, timings: dict
) -> UploadStatus:
    """Write the error report, move ``src`` to ``failed/<name>``, record ``failed``."""
    started = time.monotonic()
    errors = result.get("errors") or []
    first = errors[0] if errors else {"reason": "invalid"}
    where = ", ".join(f"{k} {first[k]:,}" for k in ("line", "offset") if first.get(k) is not None)
    summary = f"{where}: {first['reason']}" if where else first["reason"]
    report = {
        "name": name,
        "data_type": status.data_type,
        "checked_at": datetime.now(UTC).isoformat(),
        **result,
    }
    write_json(storage, report_key(name), report)
    dst = f"{FAILED}/{name}"
    if src != dst:
        storage.move(src, dst)
    final = status.moved_to(
        UploadState.FAILED,
        size=storage.stat(dst).size,
        sha256=result.get("sha256") or status.sha256,
        records=result.get("records"),
        errors=result.get("errors_found", len(errors)),
        error_summary=summary[:500],
        report_key=report_key(name),
        timings={**timings, "quarantine": round(time.monotonic() - started, 3)},
    )
    write_status(storage, final)
    log.warning("%s: invalid (%s) -> %s", name, summary, storage.uri(dst))
    return final


def cleanup(
    storage: Storage,
    failed_older_than_hours: float = 24,
    multipart_older_than_hours: float = 24,
    dry_run: bool = False,
) -> dict:
    """Remove quarantined files (with report and status) and abandoned uploads past their age.

    :param failed_older_than_hours: age of a ``failed`` status (its last update) after which the
        file, its report and its status record are deleted.
    :param multipart_older_than_hours: age after which incomplete multipart uploads under
        ``uploads/`` are aborted (local backend: ``.partial`` files).
    :param dry_run: only report what would be removed.
    :returns: ``{"failed": [names], "incomplete_uploads": [keys], "dry_run": bool}``.
    """
    from dataset_ops.staging.status import list_statuses, status_key

    cutoff = datetime.now(UTC) - timedelta(hours=failed_older_than_hours)
    removed = []
    for status in list_statuses(storage, UploadState.FAILED):
        if datetime.fromisoformat(status.updated_at) < cutoff:
            removed.append(status.name)
            if not dry_run:
                for key in (f"{FAILED}/{status.name}", report_key(status.name), status_key(status.name)):
                    storage.delete(key)
    incomplete = storage.abort_incomplete_writes(multipart_older_than_hours * 3600, UPLOADS, dry_run)
    log.info(
        "cleanup%s: %d failed files, %d incomplete uploads",
        " (dry run)" if dry_run else "",
        len(removed),
        len(incomplete),
    )
    return {"failed": removed, "incomplete_uploads": incomplete, "dry_run": dry_run}


def retry_targets(storage: Storage, names: list[str]) -> list[dict]:
    """Quarantined files to validate again: one dict per name (``source`` = ``failed``).

    :raises ValueError: a name is unsafe or has no quarantined file.
    """
    targets = []
    for name in names:
        check_name(name)
        if not storage.exists(f"{FAILED}/{name}"):
            raise ValueError(f"{name}: no such file in {FAILED}/ (see `python -m dataset_ops.staging list`)")
        status = read_status(storage, name)
        data_type = (status.data_type if status else None) or infer_data_type(name)
        targets.append(
            {
                "name": name,
                "data_type": data_type,
                "source": FAILED,
                "size": storage.stat(f"{FAILED}/{name}").size,
            }
        )
    return targets
