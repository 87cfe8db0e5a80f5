"""Task bodies of ``staged_upload_validation``: find uploads, validate, promote or quarantine.

Every function takes the staging area as a :class:`~dataset_ops.storage.Storage` opened at the
staging root (layout in :mod:`dataset_ops.staging.status`). Nothing here needs a scheduler.

No valid file is ever lost, nothing invalid reaches ``fresh/``, and nothing is ever replaced:

* promote: the upload's sha256 is compared with every version of its name in ``fresh/``; equal
  content is a duplicate (nothing written, the upload removed, no Asset event). Otherwise it is
  copied to the first free version name (``fresh/<name>``, then ``fresh/<stem>.v2<ext>``, ...)
  with a conditional write (:meth:`~dataset_ops.storage.Storage.copy_new`: S3
  ``If-None-Match: *``, a local ``link``), so two concurrent runs never take the same name; the
  copy's size is verified, the file listed in ``fresh/_manifest.json`` (the suite's dataset
  manifest, :mod:`dataset_ops.storage.manifest`: path below ``fresh/``, bytes, sha256, rows, the
  producing run; changed under its lock, since every mapped task of a run adds to it), the
  ``fresh`` status written, and only then the upload deleted. A duplicate writes nothing. A
  crash between copy and delete leaves the file in both places; the next run finds the
  duplicate and finishes the move; if the crash came before the manifest listed the file, that
  run finishes the promotion instead (lists it, records the version; it is not a duplicate).
  ``fresh/`` folders written before the manifest existed are read through
  :func:`legacy_fresh_manifest` (built from the status records) and converted by the next
  promotion.
* quarantine: the same with ``failed/``; the version is claimed by creating its error report
  ``failed/<file>.report.json`` conditionally, then the file is copied beside it.
* an upload replaced while it was validated (a different object at ``uploads/<name>`` after the
  copy: size, ETag or modification time changed) is never deleted: it stays for the next run,
  and a copy that does not hold the validated bytes is removed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dataset_ops.errors import InputError
from dataset_ops.staging.status import (
    FAILED,
    FRESH,
    UPLOADS,
    UploadState,
    UploadStatus,
    check_name,
    read_status,
    split_extension,
    version_of,
    versioned_name,
    write_status,
)
from dataset_ops.storage import HashingReader, ObjectInfo, Storage, file_sha256, read_json, write_json
from dataset_ops.storage.manifest import (
    Manifest,
    ManifestError,
    ManifestFile,
    manifest_key,
    read_manifest,
    update_manifest,
)

log = logging.getLogger(__name__)

#: Rule set used for a file whose data type is not given, by extension.
DEFAULT_DATA_TYPES = {".jsonl": "jsonl", ".csv": "csv", ".txt": "text"}


#: ``fresh/_manifest.json``: the manifest of the validated files.
FRESH_MANIFEST = manifest_key(FRESH)


class UploadReplaced(RuntimeError):
    """The object at ``uploads/<name>`` changed while it was validated; it is left for a later run."""


@dataclass(frozen=True)
class Placement:
    """Where a file went: ``version`` (1 = the bare name), ``key`` below the staging root, and
    whether it was a ``duplicate`` of that already kept file (then nothing was written)."""

    version: int
    key: str
    duplicate: bool


def report_key(file: str) -> str:
    """Key of the error report of the quarantined file ``failed/<file>`` (``file`` is the path
    below ``failed/``, e.g. ``x.v2.jsonl``)."""
    return f"{FAILED}/{file}.report.json"


def report_key_of(key: str) -> str:
    """Key of the error report beside the file at ``key`` (``failed/...``)."""
    return f"{key}.report.json"


def find_uploads(storage: Storage, only: list[str] | None = None) -> list[dict]:
    """Complete files waiting in ``uploads/``, one dict per file: ``name``, ``data_type``, ``size``
    (bytes) and ``rules`` (a ``custom`` upload's own rules, else None).

    :param only: these names only (the API starts a run for the upload it just completed); a
        name not waiting in ``uploads/`` is skipped with a log line.

    S3 lists a multipart upload only once it is completed, and local writes appear by rename or
    link, so every listed object is whole. Files whose status says ``uploading`` (a newer upload
    of the same name is on its way) are left for a later run. Keys with an unsafe name (``..``,
    a leading ``/``) are never read: :func:`quarantine_unsafe_key` moves them aside.
    """
    found = []
    if only:
        keys = []
        for name in dict.fromkeys(only):
            key = f"{UPLOADS}/{check_name(name)}"
            if storage.exists(key):
                keys.append(key)
            else:
                log.info("%s: not waiting in %s/ (validated, or never uploaded); skipped", name, UPLOADS)
    else:
        keys = storage.list(UPLOADS)
    for key in keys:
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
                "rules": status.rules if status else None,
            }
        )
    log.info("uploads to validate: %s", [f["name"] for f in found] or "none")
    return found


def quarantine_unsafe_key(storage: Storage, key: str, reason: str) -> UploadStatus:
    """Move an object whose key is unsafe to ``failed/_unsafe/<sha1 of the key>`` (versioned like
    any quarantined file), with a report naming the original key, and give it a ``failed``
    status under that safe name."""
    safe = f"_unsafe/{hashlib.sha1(key.encode()).hexdigest()}"
    status = read_status(storage, safe) or UploadStatus(name=safe, state=UploadState.UPLOADED)
    result = {
        "valid": False,
        "records": None,
        "original_key": key,
        "errors": [{"line": None, "offset": None, "reason": reason}],
        "errors_found": 1,
        "sha256": file_sha256(storage, key),
    }
    final = quarantine(storage, safe, key, status, result, {})
    final.error_summary = f"unsafe key {key!r}: {reason}"[:500]
    write_status(storage, final)
    return final


def infer_data_type(name: str) -> str:
    """The rule set for a file without a declared data type, by extension (``.jsonl`` -> jsonl);
    ``unknown`` (no such rule set, so the file is quarantined) for other extensions."""
    base = name.rsplit("/", 1)[-1].lower().removesuffix(".gz")
    for ext, data_type in DEFAULT_DATA_TYPES.items():
        if base.endswith(ext):
            return data_type
    return "unknown"


def validate_file(
    storage: Storage, key: str, data_type: str, overrides: dict | None, rules: dict | None = None
) -> dict:
    """Validate the object at ``key`` as a stream with the rule set ``data_type`` (for ``custom``,
    the upload's own ``rules``), with ``overrides`` applied.

    :returns: the validation result as a dict (``valid``, ``records``, ``errors``, totals) plus
        ``sha256`` of the bytes read.
    """
    from dataset_ops.staging.service import check_rules
    from dataset_ops.validation import validate_stream

    ruleset = check_rules(data_type, rules, overrides)
    size = storage.stat(key).size
    with storage.open_read(key) as raw:
        reader = HashingReader(raw)
        result = validate_stream(reader, ruleset, name=key, size=size).to_dict()
    result["sha256"] = reader.sha256.hexdigest() if reader.size == size else None
    return result


def process_upload(
    storage: Storage,
    name: str,
    data_type: str,
    overrides: dict | None = None,
    source_prefix: str = UPLOADS,
    source_key: str | None = None,
    producer: dict | None = None,
    rules: dict | None = None,
) -> UploadStatus:
    """Validate ``<source_prefix>/<name>`` (or ``source_key``), then promote it to ``fresh/`` or
    quarantine it in ``failed/``, as a new version or as a duplicate of a kept file.

    :param source_prefix: ``uploads`` normally; ``failed`` to re-validate a quarantined file.
    :param source_key: the file's key when it is not ``<source_prefix>/<name>`` (a quarantined
        version ``failed/<stem>.v2<ext>`` of ``name``).
    :param producer: who promotes, for ``fresh/_manifest.json``: ``{"dag_id", "run_id"}`` of the
        DAG run (``dataset_ops.settings.producer()`` in the task body), or a tool's own
        ``{"tool": ...}``; None records ``{}`` (unknown).
    :param rules: a ``custom`` upload's own rules (the status record's ``rules``).
    :returns: the final status record: ``fresh`` or ``failed``, or ``uploaded`` again when the
        upload was replaced while it was validated (left for the next run).
    """
    check_name(name)
    src = source_key or f"{source_prefix}/{name}"
    status = read_status(storage, name) or UploadStatus(name=name, state=UploadState.UPLOADED)
    # The uploader records the sha256 of what it sent; other records describe older files.
    uploaded_sha256 = status.sha256 if status.state == UploadState.UPLOADED else None
    pinned = storage.stat(src)
    status = status.moved_to(UploadState.VALIDATING, data_type=data_type)
    write_status(storage, status)
    started = time.monotonic()
    try:
        result = validate_file(storage, src, data_type, overrides, rules)
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
    try:
        if result["valid"]:
            return promote(storage, name, src, status, result, timings, pinned=pinned, producer=producer)
        return quarantine(storage, name, src, status, result, timings, pinned=pinned)
    except UploadReplaced as exc:
        log.warning("%s", exc)
        left = status.moved_to(
            UploadState.UPLOADED,
            sha256=None,
            size=None,
            records=None,
            error_summary=str(exc)[:500],
            timings=timings,
        )
        write_status(storage, left)
        return left


# --- versions -----------------------------------------------------------------------------------
def kept_versions(storage: Storage, folder: str, name: str) -> dict[int, str]:
    """``{version: key}`` of the files of ``name`` kept in ``folder`` (``fresh`` or ``failed``),
    found with one listing of the name's folder (:meth:`~dataset_ops.storage.Storage.children`)."""
    parent, _, _ = name.rpartition("/")
    where = f"{folder}/{parent}" if parent else folder
    found = {}
    for child in storage.children(where):
        version = version_of(name, child)
        if version is not None and storage.exists(f"{where}/{child}"):
            found[version] = f"{where}/{child}"
    return found


def _known_sha256(status: UploadStatus) -> dict[str, str]:
    """``{key: sha256}`` of the files the status record says it kept."""
    known = {v["key"]: v["sha256"] for v in status.versions if v.get("key") and v.get("sha256")}
    if status.key and status.sha256 and status.state in (UploadState.FRESH, UploadState.FAILED):
        known.setdefault(status.key, status.sha256)
    return known


def _sha256_at(storage: Storage, key: str, known: dict[str, str]) -> str:
    """The sha256 of the object at ``key``: from the status record when it has it, else read."""
    return known.get(key) or file_sha256(storage, key)


def place(
    storage: Storage,
    folder: str,
    name: str,
    sha256: str,
    known: dict[str, str],
    claim: Callable[[str], bool],
) -> Placement:
    """Find ``name``'s version in ``folder`` for content ``sha256``: the kept version with that
    sha256 (a duplicate), else the next free version name, taken by ``claim(key)`` (a conditional
    write that returns False when the key is taken). A lost race moves on to the next number.

    :param known: ``{key: sha256}`` already known (others are read and hashed).
    """
    existing = kept_versions(storage, folder, name)
    for version, key in sorted(existing.items()):
        if _sha256_at(storage, key, known) == sha256:
            return Placement(version, key, True)
    version = max(existing, default=0) + 1
    while True:
        key = f"{folder}/{versioned_name(name, version)}"
        if claim(key):
            return Placement(version, key, False)
        if storage.exists(key) and _sha256_at(storage, key, known) == sha256:
            return Placement(version, key, True)  # a concurrent run placed the same content
        version += 1


def _version_entry(
    state: str, placed: Placement, sha256: str, size: int, result: dict, report: str | None
) -> dict:
    from dataset_ops.staging.status import now_iso

    return {
        "version": placed.version,
        "state": state,
        "key": placed.key,
        "sha256": sha256,
        "size": size,
        "records": result.get("records"),
        "errors": result.get("errors_found", len(result.get("errors") or [])) if state == FAILED else 0,
        "report_key": report,
        "at": now_iso(),
    }


def _placed_status(
    status: UploadStatus,
    state: UploadState,
    placed: Placement,
    *,
    sha256: str,
    size: int,
    result: dict,
    **fields,
) -> UploadStatus:
    """``status`` moved to ``state`` (FRESH or FAILED) at the object ``placed``: its size (bytes),
    sha256, records from the validation ``result``, version, key and ``duplicate_of`` (the key when
    the content was there already), plus the state's own ``fields`` (errors, report, versions,
    timings)."""
    return status.moved_to(
        state,
        size=size,
        sha256=sha256,
        records=result.get("records"),
        version=placed.version,
        key=placed.key,
        duplicate_of=placed.key if placed.duplicate else None,
        **fields,
    )


def _describe(name: str, placed: Placement, sha256: str) -> str:
    """What happened, for the log: new / new version vN of NAME / duplicate of KEY: skipped."""
    if placed.duplicate:
        return f"duplicate of {placed.key} (same sha256 {sha256[:12]}…): skipped, nothing written"
    if placed.version == 1:
        return f"new: {placed.key}"
    return f"new version v{placed.version} of {name}: {placed.key}"


def _check_source_unchanged(
    storage: Storage, src: str, pinned: ObjectInfo | None, placed: Placement, sha256: str
) -> bool:
    """Whether ``src`` may be deleted: it is still the object that was validated (same size,
    ETag and modification time as ``pinned``). A replaced source stays; if the copy made from it
    does not hold the validated bytes, that copy is removed and :class:`UploadReplaced` raised.
    """
    if pinned is None:
        return True
    try:
        now = storage.stat(src)
    except FileNotFoundError:
        return False
    if (now.size, now.etag, now.last_modified) == (pinned.size, pinned.etag, pinned.last_modified):
        return True
    if not placed.duplicate and file_sha256(storage, placed.key) != sha256:
        storage.delete(placed.key)
        if placed.key.startswith(f"{FAILED}/"):
            storage.delete(report_key_of(placed.key))
        raise UploadReplaced(
            f"{storage.uri(src)} was replaced while it was validated; nothing kept, left for the next run"
        )
    log.warning(
        "%s was replaced while it was validated: the new object stays for the next run", storage.uri(src)
    )
    return False


def promote(
    storage: Storage,
    name: str,
    src: str,
    status: UploadStatus,
    result: dict,
    timings: dict,
    pinned: ObjectInfo | None = None,
    producer: dict | None = None,
) -> UploadStatus:
    """Put the valid file ``src`` into ``fresh/`` as a new version of ``name`` (or find it is a
    duplicate of a kept one), verify the copy, list it in ``fresh/_manifest.json``
    (:func:`record_fresh`), record ``fresh``, then delete ``src`` (and, for a quarantined file
    that passed on retry, its report). A duplicate writes nothing. A "duplicate" the manifest
    does not list is the copy of a run that stopped before listing it: that promotion is
    finished (listed, a new version in the status record, not ``duplicate_of``).

    :param result: the validation result; ``records`` becomes the manifest entry's ``rows``.
    :param pinned: ``src`` as stat'ed before validation; a different object there now is kept.
    :param producer: ``{"dag_id", "run_id"}`` (or a tool's name) for the manifest; None: ``{}``.
    :raises RuntimeError: the copy's size differs from the source's (the copy is removed).
    :raises UploadReplaced: ``src`` changed during validation and the copy is not the validated
        content.
    :raises TimeoutError: ``fresh/_manifest.json.lock`` stayed taken (the copy stays; the next
        run lists it).
    :raises ManifestError: ``fresh/_manifest.json`` is not a manifest (see
        :func:`legacy_fresh_manifest`).
    """
    started = time.monotonic()
    size = storage.stat(src).size
    sha256 = result.get("sha256") or status.sha256 or file_sha256(storage, src)
    placed = place(
        storage, FRESH, name, sha256, _known_sha256(status), lambda key: storage.copy_new(src, key)
    )
    if not placed.duplicate:
        copied = storage.stat(placed.key).size
        if copied != size:
            storage.delete(placed.key)
            raise RuntimeError(
                f"{storage.uri(placed.key)}: copy has {copied:,} bytes, source {size:,}; not promoted"
            )
    delete_source = _check_source_unchanged(storage, src, pinned, placed, sha256)
    fresh = {
        "key": placed.key,
        "name": name,
        "version": placed.version,
        "data_type": status.data_type,
        "size": size,
        "sha256": sha256,
        "rows": result.get("records"),
        "producer": producer or {},
    }
    if placed.duplicate and not _listed(storage, placed.key):
        # An earlier run copied these bytes and stopped before listing them: finish its promotion.
        log.warning(
            "%s: %s is not in %s (a run stopped after its copy): finishing that promotion",
            name,
            placed.key,
            FRESH_MANIFEST,
        )
        placed = Placement(placed.version, placed.key, False)
    if not placed.duplicate:
        record_fresh(storage, **fresh)
    drop = {src} if placed.duplicate else {src, placed.key}  # (a finished promotion's entry is new)
    versions = [v for v in status.versions if v.get("key") not in drop]
    if not placed.duplicate:
        versions.append(_version_entry(FRESH, placed, sha256, size, result, None))
    final = _placed_status(
        status,
        UploadState.FRESH,
        placed,
        size=size,
        sha256=sha256,
        result=result,
        errors=0,
        error_summary=None,
        report_key=None,
        versions=versions,
        timings={**timings, "promote": round(time.monotonic() - started, 3)},
    )
    write_status(storage, final)
    if delete_source:
        storage.delete(src)
        if src.startswith(f"{FAILED}/"):  # a quarantined file that passed on retry: its report goes too
            storage.delete(report_key_of(src))
    log.info(
        "%s: valid (%s records) -> %s (%s)",
        name,
        final.records,
        _describe(name, placed, sha256),
        storage.uri(placed.key),
    )
    return final


# --- the manifest of fresh/ ---------------------------------------------------------------------
def fresh_path(key: str) -> str:
    """The path below ``fresh/`` of the key ``fresh/<path>`` (the manifest entry's ``path``)."""
    return key.removeprefix(f"{FRESH}/")


def _file_extra(name: str, version: int | None, data_type: str | None, **more) -> dict:
    return {"name": name, "version": version, "data_type": data_type, **more}


def record_fresh(
    storage: Storage,
    *,
    key: str,
    name: str,
    version: int,
    data_type: str | None,
    size: int,
    sha256: str,
    rows: int | None,
    producer: dict,
) -> Manifest:
    """List the file at ``key`` (``fresh/...``) in ``fresh/_manifest.json``, replacing an entry of
    the same path, under the manifest's lock (:func:`~dataset_ops.storage.manifest.update_manifest`:
    the mapped tasks of a run promote at the same time).

    The manifest (dataset ``fresh``, status ``complete``) gets the entry ``{"path": <key below
    fresh/>, "bytes": size, "sha256", "rows"}`` and ``extra["files"][path] = {"name": the upload
    name, "version", "data_type", "producer", "listed_at"}``; its top-level ``producer`` is the
    last writer's. A ``fresh/`` without a manifest is first read through
    :func:`legacy_fresh_manifest`, so the files promoted before stay listed.

    :param size: bytes; :param rows: the validation's record count (None if unknown).
    :param producer: ``{"dag_id", "run_id"}`` of the run, a tool's ``{"tool": ...}``, or ``{}``.
    :returns: the manifest written.
    :raises TimeoutError: the lock stayed taken (300 s).
    :raises ManifestError: ``fresh/_manifest.json`` is not a manifest.
    """
    from dataset_ops.storage.manifest import utc_now

    path = fresh_path(key)

    def change(current: Manifest | None) -> Manifest:
        manifest = current or Manifest(FRESH)
        manifest.legacy = False
        manifest.dataset = FRESH
        manifest.status = "complete"
        manifest.producer = dict(producer)
        manifest.add(ManifestFile(path, size, sha256, rows))
        files = manifest.extra.setdefault("files", {})
        files[path] = _file_extra(name, version, data_type, producer=dict(producer), listed_at=utc_now())
        return manifest

    return update_manifest(storage, FRESH, change, legacy=legacy_fresh_manifest)


def read_fresh_manifest(storage: Storage) -> Manifest | None:
    """The manifest of ``fresh/``: ``fresh/_manifest.json``, else (a folder written before it
    existed) :func:`legacy_fresh_manifest`; None when ``fresh/`` holds no promoted file.

    :raises ManifestError: ``fresh/_manifest.json`` is unreadable or not a manifest.
    """
    return read_manifest(storage, FRESH, legacy=legacy_fresh_manifest)


def _listed(storage: Storage, key: str) -> bool:
    manifest = read_fresh_manifest(storage)
    return manifest is not None and manifest.file(fresh_path(key)) is not None


def legacy_fresh_manifest(storage: Storage, prefix: str = FRESH) -> Manifest | None:
    """The manifest of a ``fresh/`` promoted into before ``fresh/_manifest.json`` existed, built
    from the status records: one entry per ``fresh`` version in a record's ``versions`` (or, for
    records older than versions, the record's own ``fresh`` file) that is still in ``fresh/``;
    ``bytes``, ``sha256`` and ``rows`` from the record (size from the listing and sha256 read
    from the file where the record has none). Status ``complete``, ``producer`` ``{}`` (not
    recorded then), ``legacy=True``; None when no such file exists.

    :param prefix: the dataset prefix (``fresh``; the signature of ``read_manifest``'s ``legacy``).
    :raises ManifestError: ``fresh/_manifest.json`` exists but is not a manifest: a user's file
        promoted before that name was reserved; it is never replaced, so it must be moved away
        first.
    """
    from dataset_ops.staging.status import list_statuses

    try:
        current = read_json(storage, FRESH_MANIFEST)
    except ValueError:  # not JSON (UnicodeDecodeError, JSONDecodeError)
        current = {}
    if isinstance(current, dict) and "format_version" in current:  # written since the caller looked
        return Manifest.from_dict(current)
    if current is not None:
        raise ManifestError(
            f"{storage.uri(FRESH_MANIFEST)} is not a dataset manifest (a file uploaded as "
            f"{FRESH_MANIFEST.rpartition('/')[2]} before that name was reserved?): move it out of "
            f"{FRESH}/ so the manifest can be written"
        )
    found = {info.key: info.size for info in storage.list_objects(FRESH)}
    manifest = Manifest(FRESH, status="complete", legacy=True)
    stamps = []
    for status in list_statuses(storage):
        kept = [v for v in status.versions if v.get("state") == FRESH]
        if not status.versions and status.state == UploadState.FRESH:  # records before versions
            key = status.key or f"{FRESH}/{status.name}"
            kept = [
                {
                    "key": key,
                    "version": status.version or 1,
                    "sha256": status.sha256,
                    "size": status.size,
                    "records": status.records,
                    "at": status.updated_at,
                }
            ]
        for v in kept:
            key = v.get("key")
            if key not in found:
                continue
            path = fresh_path(key)
            size = v.get("size") if v.get("size") is not None else found[key]
            sha256 = v.get("sha256") or file_sha256(storage, key)
            manifest.add(ManifestFile(path, int(size), sha256, v.get("records")))
            manifest.extra.setdefault("files", {})[path] = _file_extra(
                status.name, v.get("version"), status.data_type, listed_at=v.get("at")
            )
            if v.get("at"):
                stamps.append(v["at"])
    if not manifest.files:
        return None
    if stamps:
        manifest.created_at, manifest.updated_at = min(stamps), max(stamps)
    return manifest


def promotion_event_extra(storage: Storage, status: UploadStatus) -> dict:
    """The Asset event extra of the promotion ``status`` (state ``fresh``, not a duplicate), read
    from its entry in ``fresh/_manifest.json``: ``name`` (upload name), ``version``, ``key``,
    ``uri``, ``bytes``, ``sha256``, ``records`` (the entry's rows), ``data_type`` and
    ``manifest`` (the manifest's URI). Falls back to the status record's values, with a warning,
    should the entry be missing.
    """
    manifest = read_fresh_manifest(storage)
    entry = manifest.file(fresh_path(status.key)) if manifest else None
    if entry is None:
        log.warning("%s is not in %s; the event uses the status record", status.key, FRESH_MANIFEST)
        entry = ManifestFile(fresh_path(status.key), status.size or 0, status.sha256 or "", status.records)
    return {
        "name": status.name,
        "version": status.version,
        "key": status.key,
        "uri": storage.uri(status.key),
        "bytes": entry.bytes,
        "sha256": entry.sha256,
        "records": entry.rows,
        "data_type": status.data_type,
        "manifest": storage.uri(FRESH_MANIFEST),
    }


def quarantine(
    storage: Storage,
    name: str,
    src: str,
    status: UploadStatus,
    result: dict,
    timings: dict,
    pinned: ObjectInfo | None = None,
) -> UploadStatus:
    """Put the invalid file ``src`` into ``failed/`` as a new version of ``name`` with its error
    report beside it (or find it is a duplicate of a kept one), record ``failed``, delete ``src``.

    The version is claimed by creating its report conditionally, then the file is copied. A
    quarantined file re-validated in place (``src`` under ``failed/``) keeps its name; its report
    is refreshed.

    :raises UploadReplaced: ``src`` changed during validation and the copy is not the checked
        content.
    """
    started = time.monotonic()
    errors = result.get("errors") or []
    first = errors[0] if errors else {"reason": "invalid"}
    where = ", ".join(f"{k} {first[k]:,}" for k in ("line", "offset") if first.get(k) is not None)
    summary = f"{where}: {first['reason']}" if where else first["reason"]
    size = storage.stat(src).size
    sha256 = result.get("sha256") or status.sha256 or file_sha256(storage, src)

    def report_for(key: str, version: int) -> dict:
        return {
            "name": name,
            "key": key,
            "version": version,
            "data_type": status.data_type,
            "checked_at": datetime.now(UTC).isoformat(),
            **result,
            "sha256": sha256,
        }

    def claim(key: str) -> bool:
        report = report_key_of(key)
        version = version_of(name, key.rpartition("/")[2]) or 1
        body = json.dumps(report_for(key, version), indent=2, sort_keys=True).encode()
        created = storage.create(report, body)
        if not created:
            earlier = read_json(storage, report)
            if not (earlier and earlier.get("sha256") == sha256 and not storage.exists(key)):
                return False  # another file's report: the version is taken
            write_json(storage, report, report_for(key, version))  # an interrupted run of these bytes
        if storage.copy_new(src, key):
            return True
        if created and file_sha256(storage, key) != sha256:
            storage.delete(report)  # a file without a report held the name: ours describes nothing
        return False

    if src.startswith(f"{FAILED}/"):  # re-validated in place and still invalid
        entry = next((v for v in status.versions if v.get("key") == src), None)
        version = entry["version"] if entry else (version_of(name, src.rpartition("/")[2]) or 1)
        placed = Placement(version, src, False)
        write_json(storage, report_key_of(src), report_for(src, version))
        delete_source = False
    else:
        placed = place(storage, FAILED, name, sha256, _known_sha256(status), claim)
        delete_source = _check_source_unchanged(storage, src, pinned, placed, sha256)
    versions = [v for v in status.versions if v.get("key") != placed.key or placed.duplicate]
    if not placed.duplicate:
        versions.append(_version_entry(FAILED, placed, sha256, size, result, report_key_of(placed.key)))
    final = _placed_status(
        status,
        UploadState.FAILED,
        placed,
        size=size,
        sha256=sha256,
        result=result,
        errors=result.get("errors_found", len(errors)),
        error_summary=summary[:500],
        report_key=report_key_of(placed.key),
        versions=versions,
        timings={**timings, "quarantine": round(time.monotonic() - started, 3)},
    )
    write_status(storage, final)
    if delete_source:
        storage.delete(src)
    log.warning(
        "%s: invalid (%s) -> %s (%s)", name, summary, _describe(name, placed, sha256), storage.uri(placed.key)
    )
    return final


def cleanup(
    storage: Storage,
    failed_older_than_hours: float = 24,
    multipart_older_than_hours: float = 24,
    dry_run: bool = False,
) -> dict:
    """Remove quarantined files (with their reports) and abandoned uploads past their age.

    :param failed_older_than_hours: age after which a quarantined file and its report are
        deleted: the age of its entry in the status record's ``versions`` (when it was
        quarantined or last re-validated); for records written before versions existed, the
        age of the ``failed`` record. A record in state ``failed`` whose files are all gone is
        deleted too; other records keep the remaining versions.
    :param multipart_older_than_hours: age after which incomplete multipart uploads under
        ``uploads/`` are aborted (local backend: ``.partial`` files, the local uploader's too).
    :param dry_run: only report what would be removed.
    :returns: ``{"failed": [paths below failed/], "incomplete_uploads": [keys], "dry_run": bool}``.
    """
    from dataset_ops.staging.status import list_statuses, status_key

    cutoff = datetime.now(UTC) - timedelta(hours=failed_older_than_hours)
    removed = []
    for status in list_statuses(storage):
        if status.versions:
            old = [
                v
                for v in status.versions
                if v.get("state") == FAILED and datetime.fromisoformat(v["at"]) < cutoff
            ]
            keep = [v for v in status.versions if v not in old]
            removed += [v["key"][len(FAILED) + 1 :] for v in old]
            if dry_run or not old:
                continue
            for v in old:
                storage.delete(v["key"])
                storage.delete(report_key_of(v["key"]))
            if status.state == UploadState.FAILED and not keep:
                storage.delete(status_key(status.name))
            else:
                status.versions = keep
                write_status(storage, status)
        elif status.state == UploadState.FAILED and datetime.fromisoformat(status.updated_at) < cutoff:
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
    return {"failed": sorted(removed), "incomplete_uploads": incomplete, "dry_run": dry_run}


def owner_of_failed(storage: Storage, file: str) -> tuple[str, UploadStatus | None]:
    """The upload name whose quarantined version is ``failed/<file>``, and its status record:
    ``file`` itself when its record keeps that file (or predates versions), else the name
    without ``.vN`` when that name's record lists the file (``x.v2.jsonl`` -> ``x.jsonl``)."""
    key = f"{FAILED}/{file}"
    status = read_status(storage, file)
    if status is not None and (not status.versions or any(v.get("key") == key for v in status.versions)):
        return file, status
    folder, _, base = file.rpartition("/")
    stem, ext = split_extension(base)
    match = re.fullmatch(r"(.+)\.v([2-9]|[1-9][0-9]+)", stem)
    if match:
        candidate = f"{folder}/{match[1]}{ext}" if folder else f"{match[1]}{ext}"
        owner = read_status(storage, candidate)
        if owner is not None and any(v.get("key") == key for v in owner.versions):
            return candidate, owner
    return file, status


def retry_targets(storage: Storage, names: list[str]) -> list[dict]:
    """Quarantined files to validate again: one dict per file (``name`` = the upload name,
    ``key`` = the file's key, ``source`` = ``failed``, ``data_type``, ``size`` in bytes).

    :param names: paths below ``failed/``, e.g. ``x.jsonl`` or the version ``x.v2.jsonl``.
    :raises ValueError: a name is unsafe or has no quarantined file.
    """
    targets = []
    for file in names:
        check_name(file)
        key = f"{FAILED}/{file}"
        if not storage.exists(key):
            raise InputError(f"{file}: no such file in {FAILED}/ (see `python -m dataset_ops.staging list`)")
        name, status = owner_of_failed(storage, file)
        data_type = (status.data_type if status else None) or infer_data_type(name)
        targets.append(
            {
                "name": name,
                "key": key,
                "data_type": data_type,
                "source": FAILED,
                "size": storage.stat(key).size,
                "rules": status.rules if status else None,
            }
        )
    return targets
