"""The dataset manifest: one type for every workflow, written last beside a dataset's files.

A dataset is the set of objects below one prefix of the storage root (an Apify run's folder, an
inference dataset, an IMDb dump, a data-lake partition). Its manifest is the object
``<prefix>/_manifest.json`` (:data:`MANIFEST_NAME`; the leading underscore makes Glue, Athena,
Hive and Spark skip it when they read the prefix as a table). It is written after every file it
lists, so a reader that finds it complete may trust the files; a dataset without one is still
being written, was abandoned, or predates this format (see *Legacy files* below).

The JSON (format version 1; sizes in bytes, times UTC ISO 8601)::

    {"format_version": 1,
     "dataset": "datasets/facebook/abc123",          # the prefix below the storage root
     "status": "complete" | "partial" | "in_progress",
     "created_at": "2026-12-07T17:00:00+00:00",
     "updated_at": "2026-12-07T17:05:00+00:00",
     "producer": {"dag_id": "apify_dataset_download", "run_id": "manual__...", "task_id": "..."},
     "files": [{"path": "abc123.csv", "bytes": 123, "sha256": "<64 hex>", "rows": 10}, ...],
     "total_bytes": 123,
     "problems": ["why the dataset is partial", ...],
     "extra": {...}}                                 # the workflow's own fields

``path`` is relative to the dataset prefix, ``/``-separated; ``rows`` is ``null`` where a file has
no rows (images, ZIPs). ``extra`` holds what one workflow alone needs (Apify's media list, the
inference dataset's transactions, an IMDb file's name); readers of other workflows ignore it.

Legacy files: manifests written before this format (Apify's ``manifest.json``, IMDb's
``<file>.json``, ...) are read through the ``legacy`` argument of :func:`read_manifest`: a function
of the workflow that knows the old file and converts it, so old datasets stay listable,
checkable and deletable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from dataset_ops.storage.base import read_json, write_json

if TYPE_CHECKING:
    from dataset_ops.storage.base import Storage

#: The manifest's object name below the dataset prefix.
MANIFEST_NAME = "_manifest.json"
#: The version of the JSON layout this module writes (and the highest it reads).
FORMAT_VERSION = 1

Status = Literal["complete", "partial", "in_progress"]
STATUSES: tuple[str, ...] = ("complete", "partial", "in_progress")


class ManifestError(ValueError):
    """A manifest object that is not a manifest: bad JSON shape, unknown status or a newer format."""


def utc_now() -> str:
    """The current time, UTC ISO 8601 to the second (``2026-12-07T17:00:00+00:00``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def manifest_key(prefix: str) -> str:
    """``<prefix>/_manifest.json``: where the manifest of the dataset at ``prefix`` lives."""
    prefix = prefix.strip("/")
    return f"{prefix}/{MANIFEST_NAME}" if prefix else MANIFEST_NAME


@dataclass(frozen=True)
class ManifestFile:
    """One file of a dataset.

    :param path: relative to the dataset prefix, ``/``-separated.
    :param bytes: its size in bytes.
    :param sha256: hex digest of its content.
    :param rows: data rows (CSV/TSV rows without the header, JSONL lines, Parquet rows), or None.
    """

    path: str
    bytes: int
    sha256: str
    rows: int | None = None

    def to_dict(self) -> dict:
        """``{"path", "bytes", "sha256", "rows"}``."""
        return {"path": self.path, "bytes": self.bytes, "sha256": self.sha256, "rows": self.rows}

    @classmethod
    def from_dict(cls, d: dict) -> ManifestFile:
        """The inverse of :meth:`to_dict`. :raises ManifestError: a field is missing or mistyped."""
        try:
            rows = d.get("rows")
            return cls(str(d["path"]), int(d["bytes"]), str(d["sha256"]), None if rows is None else int(rows))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"manifest file entry {d!r}: {exc}") from exc


@dataclass
class Manifest:
    """A dataset's manifest (layout in the module docstring).

    :param dataset: the dataset's prefix below the storage root.
    :param producer: ``{"dag_id", "run_id"}`` (and ``task_id`` where known); ``{}`` if unknown.
    :param status: ``complete`` (everything asked for is there), ``partial`` (usable, with
        ``problems``) or ``in_progress``.
    """

    dataset: str
    producer: dict = field(default_factory=dict)
    status: str = "in_progress"
    files: list[ManifestFile] = field(default_factory=list)
    created_at: str = field(default_factory=utc_now)
    updated_at: str | None = None
    problems: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    #: True when read from a file of an older format (through ``legacy``), never written.
    legacy: bool = False

    @property
    def complete(self) -> bool:
        """Whether the status is ``complete``."""
        return self.status == "complete"

    @property
    def total_bytes(self) -> int:
        """The sum of the files' sizes (bytes)."""
        return sum(f.bytes for f in self.files)

    def file(self, path: str) -> ManifestFile | None:
        """The entry for ``path`` (relative to the dataset), or None."""
        return next((f for f in self.files if f.path == path), None)

    def add(self, entry: ManifestFile) -> None:
        """Add ``entry``, replacing an entry with the same path."""
        self.files = [f for f in self.files if f.path != entry.path] + [entry]

    def to_dict(self) -> dict:
        """The JSON object of the module docstring (files sorted by path)."""
        return {
            "format_version": self.format_version,
            "dataset": self.dataset,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at or self.created_at,
            "producer": dict(self.producer),
            "files": [f.to_dict() for f in sorted(self.files, key=lambda f: f.path)],
            "total_bytes": self.total_bytes,
            "problems": list(self.problems),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        """The inverse of :meth:`to_dict`.

        :raises ManifestError: not a manifest object, a status outside :data:`STATUSES`, or a
            ``format_version`` newer than :data:`FORMAT_VERSION`.
        """
        if not isinstance(d, dict) or "format_version" not in d or "files" not in d:
            raise ManifestError("not a dataset manifest (no format_version or files)")
        version = d["format_version"]
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ManifestError(
                f"manifest format_version {version!r}: this code reads up to {FORMAT_VERSION}"
            )
        if d.get("status") not in STATUSES:
            raise ManifestError(f"manifest status {d.get('status')!r}: expected one of {', '.join(STATUSES)}")
        return cls(
            dataset=str(d.get("dataset", "")),
            producer=dict(d.get("producer") or {}),
            status=d["status"],
            files=[ManifestFile.from_dict(f) for f in d["files"]],
            created_at=str(d.get("created_at", "")),
            updated_at=d.get("updated_at"),
            problems=list(d.get("problems") or []),
            extra=dict(d.get("extra") or {}),
            format_version=version,
        )


def file_entry(storage: Storage, key: str, path: str, rows: int | None = None) -> ManifestFile:
    """The entry of the object at ``key``: its size and sha256, read as a stream (1 MiB blocks).

    :param path: the name to record, relative to the dataset prefix.
    :raises FileNotFoundError: no object at ``key``.
    """
    digest, size = hashlib.sha256(), 0
    with storage.open_read(key) as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return ManifestFile(path, size, digest.hexdigest(), rows)


def write_manifest(storage: Storage, manifest: Manifest) -> Manifest:
    """Write ``manifest`` to ``<manifest.dataset>/_manifest.json`` (last, after its files).

    Sets ``updated_at`` to now. The write replaces the previous manifest atomically (the storage
    writes all or nothing). :returns: ``manifest``.
    """
    manifest.updated_at = utc_now()
    write_json(storage, manifest_key(manifest.dataset), manifest.to_dict())
    return manifest


def read_manifest(
    storage: Storage,
    prefix: str,
    legacy: Callable[[Storage, str], Manifest | None] | None = None,
) -> Manifest | None:
    """The manifest of the dataset at ``prefix``, or None when it has none.

    :param legacy: called with ``(storage, prefix)`` when there is no ``_manifest.json``, or when
        there is one without ``format_version`` (a workflow's older file of the same name): the
        workflow's reader of its older files, returning a :class:`Manifest` with ``legacy=True``
        or None.
    :raises ManifestError: ``_manifest.json`` exists but is not a readable manifest.
    """
    data = read_json(storage, manifest_key(prefix))
    if legacy and isinstance(data, dict) and "format_version" not in data:
        return legacy(storage, prefix)
    if data is not None:
        manifest = Manifest.from_dict(data)
        manifest.dataset = manifest.dataset or prefix.strip("/")
        return manifest
    return legacy(storage, prefix) if legacy else None


def verify(storage: Storage, manifest: Manifest, *, checksums: bool = False) -> list[str]:
    """What is wrong with the dataset's files against its manifest; ``[]`` when nothing is.

    Checks that every listed file exists with its size (one listing of the prefix), and with
    ``checksums=True`` also re-reads each file's sha256. Each problem names the file.
    """
    prefix = manifest.dataset.strip("/")
    base = f"{prefix}/" if prefix else ""
    found = {info.key.removeprefix(base): info.size for info in storage.list_objects(prefix)}
    problems = []
    for entry in manifest.files:
        size = found.get(entry.path)
        if size is None:
            problems.append(f"{entry.path}: listed in the manifest but missing")
        elif size != entry.bytes:
            problems.append(f"{entry.path}: {size} bytes, the manifest says {entry.bytes}")
        elif checksums and file_entry(storage, base + entry.path, entry.path).sha256 != entry.sha256:
            problems.append(f"{entry.path}: sha256 differs from the manifest")
    return problems


def entries(
    storage: Storage, prefix: str, paths: Iterable[str], rows: dict[str, int] | None = None
) -> list[ManifestFile]:
    """:func:`file_entry` for each of ``paths`` (relative to ``prefix``), with ``rows`` where given."""
    rows = rows or {}
    base = prefix.strip("/")
    return [file_entry(storage, f"{base}/{p}" if base else p, p, rows.get(p)) for p in paths]


#: A manifest lock older than this (seconds) was left by a lost worker and is taken over.
STALE_LOCK_SECONDS = 600.0


def update_manifest(
    storage: Storage,
    prefix: str,
    change: Callable[[Manifest | None], Manifest],
    *,
    legacy: Callable[[Storage, str], Manifest | None] | None = None,
    timeout: float = 300.0,
) -> Manifest:
    """Read, change and write the manifest of ``prefix`` while no other writer does.

    For datasets that several tasks add files to (the seven IMDb dumps of ``imdb/raw``, a lake
    partition): the writers take turns through ``<prefix>/_manifest.json.lock``, created with
    :meth:`Storage.create` (only if absent: of two writers exactly one wins) and removed after the
    write; a lock older than :data:`STALE_LOCK_SECONDS` is taken over.

    :param change: gets the current manifest (through ``legacy`` for older files; None when
        there is none) and returns the one to write.
    :param timeout: seconds to wait for the lock.
    :returns: the manifest written.
    :raises TimeoutError: the lock stayed taken for ``timeout`` seconds.
    :raises ManifestError: the current ``_manifest.json`` is not a readable manifest.
    """
    import json
    import time
    import uuid

    lock = manifest_key(prefix) + ".lock"
    owner = uuid.uuid4().hex
    body = json.dumps({"owner": owner, "at": time.time()}).encode()
    deadline = time.monotonic() + timeout
    while not storage.create(lock, body):
        try:
            held = read_json(storage, lock)
        except FileNotFoundError:  # released between the check and the read
            held = None
        except ValueError:  # not JSON: not a lock this code wrote
            held = {}
        if held is None:  # released meanwhile: try again
            continue
        if time.time() - float(held.get("at") or 0) > STALE_LOCK_SECONDS:
            storage.delete(lock)
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"{storage.uri(lock)} held by another writer for more than {timeout:.0f} s")
        time.sleep(0.2)
    try:
        manifest = change(read_manifest(storage, prefix, legacy=legacy))
        return write_manifest(storage, manifest)
    finally:
        try:
            held = read_json(storage, lock)
        except (FileNotFoundError, ValueError):
            held = None
        if (held or {}).get("owner") == owner:
            storage.delete(lock)
