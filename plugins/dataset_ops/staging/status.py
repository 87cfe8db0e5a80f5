"""Status records of staged uploads, kept as JSON objects in the staging area.

Layout under the staging root (the Variable ``staging_root``, default ``s3://training-data/``)::

    uploads/<name>             files as uploaded (complete objects only: S3 shows a multipart
                               upload only once it is completed)
    fresh/<name>               validated files, promoted by server-side copy (version 1)
    fresh/<stem>.v<N><ext>     version N >= 2 of the name: different content uploaded later
    fresh/_manifest.json       the suite's dataset manifest of fresh/ (one entry per file kept
                               there: path below fresh/, bytes, sha256, rows; see
                               :mod:`dataset_ops.storage.manifest`), updated by each promotion
                               under ``fresh/_manifest.json.lock``
    failed/<name>              quarantined files (versioned the same way), each with
                               ``failed/<file>.report.json`` beside it
    _status/<name>.json        one status record per name (this module)

``<name>`` is the path below ``uploads/``, e.g. ``gsm8k/train.jsonl``; it may contain ``/`` but
never ``..``, a leading ``/``, a backslash or control characters, and the top-level names
``_manifest.json`` and ``_manifest.json.lock`` are reserved for ``fresh/``'s manifest and its lock
(:func:`check_name`; ``data/_manifest.json`` is a fine name).

Nothing in ``fresh/`` or ``failed/`` is ever replaced. Version 1 of a name is the name itself;
version N >= 2 puts ``.vN`` before the extension (:func:`versioned_name`: ``x.jsonl`` ->
``x.v2.jsonl``, ``a/t.jsonl.gz`` -> ``a/t.v2.jsonl.gz``, ``README`` -> ``README.v2``). Content
equal (sha256) to a version already kept in the folder is a duplicate: nothing is written.

A record moves through ``uploading`` -> ``uploaded`` -> ``validating`` -> ``fresh`` | ``failed``;
each write replaces the whole record (all-or-nothing, see :mod:`dataset_ops.storage`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum

from dataset_ops.errors import InputError
from dataset_ops.storage import MANIFEST_NAME, Storage, read_json, write_json

UPLOADS = "uploads"
FRESH = "fresh"
FAILED = "failed"
STATUS = "_status"

_BAD_NAME = re.compile(r"(^/)|(^|/)\.\.?(/|$)|\\|[\x00-\x1f\x7f]|//")
#: Top-level names that would land on ``fresh/_manifest.json`` or its lock: refused by
#: :func:`check_name` (``storage.manifest.MANIFEST_NAME`` and the lock of ``update_manifest``).
RESERVED_NAMES = (MANIFEST_NAME, f"{MANIFEST_NAME}.lock")
#: Longest folder or file name in an upload name (bytes of UTF-8): 255, the usual file-system limit,
#: less room for what the staging area adds (``.`` + ``.v<N>`` + ``.report.json`` + a temporary
#: ``.partial`` suffix).
MAX_SEGMENT_BYTES = 200
#: Compression suffixes kept together with the format suffix before them (``.jsonl.gz``).
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")


class UploadState(StrEnum):
    """Where a file is in its life."""

    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    VALIDATING = "validating"
    FRESH = "fresh"
    FAILED = "failed"


def check_name(name: str) -> str:
    """Return ``name`` if it is a safe relative key below ``uploads/``.

    :raises InputError: (a ValueError) empty, absolute (leading ``/``), with a ``..`` or ``.``
        segment, a backslash, an empty segment, control characters, longer than 900 bytes, a
        segment (folder or file name) longer than :data:`MAX_SEGMENT_BYTES`, or one
        of the :data:`RESERVED_NAMES` (``_manifest.json`` at the top would be promoted onto
        ``fresh/_manifest.json``, the manifest of the validated files).
    """
    if not name or name.endswith("/") or _BAD_NAME.search(name) or len(name.encode()) > 900:
        raise InputError(
            f"unsafe upload name {name!r}: use a relative path without '..', a leading '/', "
            "backslashes, empty segments or control characters"
        )
    longest = max(len(part.encode()) for part in name.split("/"))
    if longest > MAX_SEGMENT_BYTES:
        raise InputError(
            f"upload name {name[:80]!r}...: a folder or file name of {longest} bytes; at most "
            f"{MAX_SEGMENT_BYTES} bytes each (file systems allow 255, and the staging area adds "
            "suffixes such as .v2, .report.json and .partial)"
        )
    if name in RESERVED_NAMES:
        raise InputError(
            f"reserved upload name {name!r}: fresh/{MANIFEST_NAME} is the manifest of the validated "
            f"files (and fresh/{MANIFEST_NAME}.lock its lock); rename the file or put it in a "
            f"folder (e.g. mydata/{name})"
        )
    return name


def split_extension(base: str) -> tuple[str, str]:
    """``(stem, extension)`` of a file's base name: the last suffix, with the one before it when
    the last is a compression suffix (``t.jsonl.gz`` -> ``("t", ".jsonl.gz")``); a leading dot
    is part of the stem (``.env`` -> ``(".env", "")``)."""
    dot = base.rfind(".")
    if dot <= 0:
        return base, ""
    stem, ext = base[:dot], base[dot:]
    if ext.lower() in COMPRESSION_SUFFIXES:
        inner = stem.rfind(".")
        if inner > 0:
            stem, ext = stem[:inner], stem[inner:] + ext
    return stem, ext


def versioned_name(name: str, version: int) -> str:
    """The name of version ``version`` (1, 2, ...) of ``name``: ``name`` itself for 1, else
    ``.v<version>`` before the extension (``gsm8k/train.jsonl``, 3 -> ``gsm8k/train.v3.jsonl``).

    :raises ValueError: ``version`` below 1.
    """
    if version < 1:
        raise ValueError(f"version must be >= 1, got {version}")
    if version == 1:
        return name
    folder, _, base = name.rpartition("/")
    stem, ext = split_extension(base)
    return f"{folder}/{stem}.v{version}{ext}" if folder else f"{stem}.v{version}{ext}"


def version_of(name: str, candidate: str) -> int | None:
    """The version number ``candidate`` (a base name in ``name``'s folder) has as a version of
    ``name``'s base name, or None when it is not one (``x.jsonl``, ``x.v2.jsonl`` -> 2)."""
    stem, ext = split_extension(name.rpartition("/")[2])
    match = re.fullmatch(re.escape(stem) + r"(?:\.v([2-9]|[1-9][0-9]+))?" + re.escape(ext), candidate)
    if match is None:
        return None
    return int(match[1]) if match[1] else 1


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds (status timestamps only, never keys)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class UploadStatus:
    """One file's status record (sizes in bytes, timings in seconds).

    :param name: path below ``uploads/``.
    :param state: an :class:`UploadState` value.
    :param data_type: rule set name (``include/validation/<data_type>.yaml``), or None.
    :param size: file size in bytes, when known.
    :param sha256: hex digest of the content, when known (the uploader's is known once all of
        the file was read, so an ``uploading`` record of a multipart upload has none yet).
    :param etag: the uploaded object's ETag, set by the uploader when the upload is complete.
    :param records: records counted by validation.
    :param upload_id: S3 multipart upload id while ``uploading`` (lets an upload resume).
    :param timings: seconds per phase (``upload``, ``validate``, ``promote``).
    :param errors: number of validation errors found (capped by the rule set).
    :param error_summary: first error, one line.
    :param report_key: key of the JSON error report (``failed/<name>.report.json``).
    :param history: earlier ``(state, at)`` pairs, oldest first.
    :param multipart: while ``uploading``: what a rerun of the uploader needs to resume (bucket,
        key, part size in bytes, part count, source file path, size and ``mtime_ns``; on a local
        root the partial file's key); None after.
    :param version: version number of this name's latest file in ``fresh/`` or ``failed/``
        (1 is the bare name, see :func:`versioned_name`); None before validation.
    :param key: key of that file below the staging root (``fresh/x.v2.jsonl``).
    :param duplicate_of: set when the latest upload had the same sha256 as a file already kept:
        that file's key (nothing was written; ``key`` and ``version`` name it).
    :param description: free text given with an upload through the API.
    :param rules: the rules of a ``custom`` upload (the rule set format of ``include/validation``),
        given with the upload through the API; None for a named rule set.
    :param versions: every file of this name kept in ``fresh/`` and ``failed/``, oldest first:
        dicts with ``version``, ``state``, ``key``, ``sha256``, ``size`` (bytes), ``records``,
        ``errors``, ``report_key`` (failed only) and ``at`` (ISO 8601 UTC).
    """

    name: str
    state: str
    data_type: str | None = None
    size: int | None = None
    sha256: str | None = None
    etag: str | None = None
    records: int | None = None
    upload_id: str | None = None
    started_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    timings: dict[str, float] = field(default_factory=dict)
    errors: int | None = None
    error_summary: str | None = None
    report_key: str | None = None
    history: list[list[str]] = field(default_factory=list)
    multipart: dict | None = None
    version: int | None = None
    key: str | None = None
    duplicate_of: str | None = None
    versions: list[dict] = field(default_factory=list)
    description: str | None = None
    rules: dict | None = None

    def moved_to(self, state: UploadState | str, **changes) -> UploadStatus:
        """A copy in ``state`` with ``changes`` applied; the old state goes to ``history``."""
        data = asdict(self)
        data.update(changes)
        data["history"] = [*self.history, [self.state, self.updated_at]]
        data["state"] = str(state)
        data["updated_at"] = now_iso()
        return UploadStatus(**data)

    @classmethod
    def from_dict(cls, data: dict) -> UploadStatus:
        """Build from stored JSON, ignoring unknown keys (records written by newer versions)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def uploading_record(previous: UploadStatus | None, name: str, **fields) -> UploadStatus:
    """The ``uploading`` record of new content for ``name``: ``fields`` (size, upload id, data
    type, ...) set, what described the old content (records, errors, report, version, key,
    duplicate, timings) cleared, and an earlier record's history and kept ``versions`` carried on."""
    fresh_start = dict(
        records=None,
        errors=None,
        error_summary=None,
        report_key=None,
        version=None,
        key=None,
        duplicate_of=None,
        timings={},
    )
    if previous is None:
        return UploadStatus(name=name, state=str(UploadState.UPLOADING), **{**fresh_start, **fields})
    return previous.moved_to(UploadState.UPLOADING, started_at=now_iso(), **{**fresh_start, **fields})


def status_key(name: str) -> str:
    """Key of ``name``'s status record."""
    return f"{STATUS}/{check_name(name)}.json"


def read_status(storage: Storage, name: str) -> UploadStatus | None:
    """The status record of ``name``, or None if it has none."""
    data = read_json(storage, status_key(name))
    return UploadStatus.from_dict(data) if data is not None else None


def write_status(storage: Storage, status: UploadStatus) -> None:
    """Store ``status`` (replaces the previous record of that name)."""
    write_json(storage, status_key(status.name), asdict(status))


def list_statuses(storage: Storage, state: UploadState | str | None = None) -> list[UploadStatus]:
    """All status records, optionally only those in ``state``, sorted by name.

    One listing of ``_status/``, then the records read 16 at a time (on S3 each is a GET, so a
    thousand names cost about a thousand round trips divided by 16)."""
    from concurrent.futures import ThreadPoolExecutor

    keys = [key for key in storage.list(STATUS) if key.endswith(".json")]
    if len(keys) > 1:
        with ThreadPoolExecutor(max_workers=min(16, len(keys))) as pool:
            records = list(pool.map(lambda key: read_json(storage, key), keys))
    else:
        records = [read_json(storage, key) for key in keys]
    out = [
        UploadStatus.from_dict(data)
        for data in records
        if data is not None and (state is None or data.get("state") == str(state))
    ]
    return sorted(out, key=lambda s: s.name)


def quiet_airflow_logs() -> None:
    """For command-line tools: Airflow's own log level WARNING unless the user chose one
    (``AIRFLOW__LOGGING__LOGGING_LEVEL``), so hooks' INFO lines don't bury the tool's output.
    Call before Airflow is imported."""
    import os

    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
