"""Status records of staged uploads, kept as JSON objects in the staging area.

Layout under the staging root (the Variable ``staging_root``, default ``s3://training-data/``)::

    uploads/<name>             files as uploaded (complete objects only: S3 shows a multipart
                               upload only once it is completed)
    fresh/<name>               validated files, promoted by server-side copy
    failed/<name>              quarantined files, with ``failed/<name>.report.json`` beside them
    _status/<name>.json        one status record per file (this module)

``<name>`` is the path below ``uploads/``, e.g. ``gsm8k/train.jsonl``; it may contain ``/`` but
never ``..``, a leading ``/``, a backslash or control characters (:func:`check_name`).

A record moves through ``uploading`` -> ``uploaded`` -> ``validating`` -> ``fresh`` | ``failed``;
each write replaces the whole record (all-or-nothing, see :mod:`dataset_ops.storage`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum

from dataset_ops.storage import Storage, read_json, write_json

STAGING_ROOT_VARIABLE = "staging_root"
DEFAULT_STAGING_ROOT = "s3://training-data/"
UPLOADS = "uploads"
FRESH = "fresh"
FAILED = "failed"
STATUS = "_status"

_BAD_NAME = re.compile(r"(^/)|(^|/)\.\.?(/|$)|\\|[\x00-\x1f\x7f]|//")


class UploadState(StrEnum):
    """Where a file is in its life."""

    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    VALIDATING = "validating"
    FRESH = "fresh"
    FAILED = "failed"


def check_name(name: str) -> str:
    """Return ``name`` if it is a safe relative key below ``uploads/``.

    :raises ValueError: empty, absolute (leading ``/``), with a ``..`` or ``.`` segment, a
        backslash, an empty segment, control characters, or longer than 900 bytes.
    """
    if not name or name.endswith("/") or _BAD_NAME.search(name) or len(name.encode()) > 900:
        raise ValueError(
            f"unsafe upload name {name!r}: use a relative path without '..', a leading '/', "
            "backslashes, empty segments or control characters"
        )
    return name


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
        key, part size in bytes, part count, source file path, size and ``mtime_ns``); None after.
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
    """All status records, optionally only those in ``state``, sorted by name."""
    out = []
    for key in storage.list(STATUS):
        if key.endswith(".json"):
            data = read_json(storage, key)
            if data is not None and (state is None or data.get("state") == str(state)):
                out.append(UploadStatus.from_dict(data))
    return sorted(out, key=lambda s: s.name)


def quiet_airflow_logs() -> None:
    """For command-line tools: Airflow's own log level WARNING unless the user chose one
    (``AIRFLOW__LOGGING__LOGGING_LEVEL``), so hooks' INFO lines don't bury the tool's output.
    Call before Airflow is imported."""
    import os

    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")


def staging_root(explicit: str | None = None) -> str:
    """The staging root: ``explicit``, else the Variable ``staging_root`` (inside Airflow, or its
    ``AIRFLOW_VAR_STAGING_ROOT`` environment form elsewhere), else ``s3://training-data/``."""
    import os

    if explicit:
        return explicit
    if "AIRFLOW_VAR_STAGING_ROOT" in os.environ:
        return os.environ["AIRFLOW_VAR_STAGING_ROOT"]
    try:
        from airflow.sdk import Variable

        return Variable.get(STAGING_ROOT_VARIABLE, default=DEFAULT_STAGING_ROOT)
    except Exception:  # outside a task there may be no Variable backend to ask
        return DEFAULT_STAGING_ROOT
