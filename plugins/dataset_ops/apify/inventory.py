"""The inventory of downloaded Apify datasets: list, inspect, delete, and the retention rule.

One module serves the ``apify_dataset_download`` and ``dataset_retention`` DAGs and the
``/dataset-ops/apify/facebook`` API of the Airflow plugin. Datasets live in the storage (see
:mod:`dataset_ops.storage`) under ``datasets/facebook/{run_id}/``, as the ads team's old service
kept them::

    {run_id}.csv  {run_id}.jsonl  media/  video_frames/  reports/  _manifest.json

Everything here is computed from one listing of the objects (sizes and dates come with it) plus
the dataset's manifest where there is one (rows, lines, completeness): ``_manifest.json``, the
suite's one manifest type (:mod:`dataset_ops.storage.manifest`), or the ``manifest.json`` that
earlier versions wrote (read by :func:`legacy_manifest`). A folder without either (copied in by
hand, or written by the old service) is listed and deletable too, its completeness ``unknown``.
The JSON shapes are those of the old service's endpoints, field for field (seed
``000_7188696ca1829e4a``: ``GET /runs/list``, ``GET /runs/{run_id}``, ``DELETE /runs/{run_id}``,
``POST /runs/cleanup``), with a few fields of the suite's own added (``completeness``,
``last_modified``, ``dataset_id``...); every size is in bytes, every date UTC ISO 8601.

Folders the old service wrote have no manifest and media named as it named them
(``imagen1.jpg``): they are listed, inspected (rows and lines are counted from the files) and
deleted like any other dataset, dated by their oldest file. A folder whose name is not an Apify
run id is not a dataset and is left alone.

Every deletion leaves one small record in the deletion ledger (``datasets/_deletions/facebook/
{YYYY-MM-DD}/{run_id}_{HHMMSSffffff}.json``: run id, reason, dates, files and bytes freed), which
:func:`storage_metrics` reads for the space freed and the growth per day.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from dataset_ops.apify.items import check_run_id
from dataset_ops.storage import LocalStorage, ObjectInfo, read_json
from dataset_ops.storage.manifest import (
    MANIFEST_NAME,
    STATUSES,
    Manifest,
    ManifestError,
    ManifestFile,
    read_manifest,
)

if TYPE_CHECKING:
    from dataset_ops.storage import Storage

log = logging.getLogger(__name__)

#: Where the Facebook Ads Library datasets live below the storage root.
DATASETS_PREFIX = "datasets/facebook"
#: The dataset's manifest (:mod:`dataset_ops.storage.manifest`).
MANIFEST = MANIFEST_NAME
#: The manifest written before the one manifest type (read by :func:`legacy_manifest`).
LEGACY_MANIFEST = "manifest.json"
#: The DAG that writes the datasets (the producer of a legacy manifest).
DAG_ID = "apify_dataset_download"
MEDIA, FRAMES, REPORTS = "media", "video_frames", "reports"
#: ``completeness`` values of a dataset (its manifest's ``status``).
COMPLETE, PARTIAL, IN_PROGRESS = "complete", "partial", "in_progress"
#: A download whose manifest says ``in_progress`` but was not updated for this long is taken as
#: dead (its worker was lost), so retention may remove it.
STALE_IN_PROGRESS = timedelta(hours=24)
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
_VIDEO_EXTS = (".mp4", ".mov", ".webm", ".m4v", ".mkv", ".avi")
_TEMP_SUFFIXES = (".part", ".partial", ".download.lock")
#: Largest ``days_old`` of a cleanup (100 years): any older cutoff is before every dataset, and
#: ``now - timedelta(days=...)`` must stay inside the calendar.
MAX_DAYS_OLD = 36_500
#: Largest ``keep_recent`` of a cleanup.
MAX_KEEP_RECENT = 1_000_000
#: The deletion ledger: one JSON record per deleted dataset (:func:`record_deletion`).
DELETIONS_PREFIX = "datasets/_deletions/facebook"
#: The windows of the growth and freed-space figures of :func:`storage_metrics` (days).
METRIC_WINDOWS = (7, 30)


class InvalidArgument(ValueError):
    """An argument given by the caller is not acceptable (not a run id, a negative or too large
    ``days_old``...); the message names the value and the rule. The API answers 400. Other errors
    (a corrupt manifest, storage failures) are not this type: they are faults of the server."""


class DatasetNotFound(LookupError):
    """No dataset is stored for this run id (the API answers 404)."""


class DatasetBusy(RuntimeError):
    """The dataset's download is in progress (the API answers 409)."""


def dataset_prefix(run_id: str) -> str:
    """``datasets/facebook/{run_id}`` after :func:`check_run_id`.

    :raises InvalidArgument: ``run_id`` is not an Apify run id (17 letters and digits).
    """
    try:
        return f"{DATASETS_PREFIX}/{check_run_id(run_id)}"
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc


def _bounded_count(name: str, value, maximum: int | float, *, integer: bool) -> None:
    """:raises InvalidArgument: ``value`` is not a finite number (an int when ``integer``) in
    ``0..maximum``; bools are refused (JSON ``true`` is not a count)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise InvalidArgument(f"{name} must be {'an integer' if integer else 'a number'}, not {value!r}")
    if not math.isfinite(value) or not 0 <= value <= maximum:
        raise InvalidArgument(f"{name} must be >= 0 and <= {maximum}, not {value!r}")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else None


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_OK = ("downloaded", "present")


def legacy_manifest(storage: Storage, prefix: str) -> Manifest | None:
    """The ``manifest.json`` of an earlier version of the DAG as a :class:`Manifest`
    (``legacy=True``), or None when the dataset has none.

    The old file (UTC ISO 8601 dates, bytes)::

        {"run_id", "dataset_id", "completeness", "created_at", "last_modified", "run", "params",
         "download": {"dag_run_id", ...}, "counts": {...},
         "files": {"jsonl" | "csv" | "report": {"name", "bytes", "sha256"}},
         "media": [{"name", "status", "bytes", "sha256", ...}],
         "video_frames": [{"video", "frames": [{"name", "bytes", "sha256", ...}], ...}],
         "total_size_bytes", "problems"}

    ``completeness`` becomes ``status``, ``last_modified`` ``updated_at``; the files, the media
    downloaded and the frames become the file list (CSV rows and JSONL lines from ``counts``);
    ``run_id``, ``dataset_id``, ``run``, ``params``, ``download``, ``counts``, ``media`` and
    ``video_frames`` go to ``extra`` as :mod:`dataset_ops.apify.tasks` writes them.

    :raises ManifestError: the file is not a JSON object or its ``completeness`` is not one of
        ``complete``, ``partial``, ``in_progress``. :raises ValueError: not JSON.
    """
    old = read_json(storage, f"{prefix.strip('/')}/{LEGACY_MANIFEST}")
    if old is None:
        return None
    if not isinstance(old, dict) or old.get("completeness") not in STATUSES:
        raise ManifestError(f"{storage.uri(prefix)}/{LEGACY_MANIFEST}: no valid completeness")
    counts = old.get("counts") or {}
    rows = {"csv": counts.get("csv_rows"), "jsonl": counts.get("jsonl_lines")}
    try:
        files = [
            ManifestFile(f["name"], int(f["bytes"]), str(f["sha256"]), rows.get(kind))
            for kind, f in (old.get("files") or {}).items()
        ]
        files += [
            ManifestFile(f"{MEDIA}/{m['name']}", int(m["bytes"]), str(m["sha256"]))
            for m in old.get("media") or []
            if m.get("status") in _OK and m.get("sha256")
        ]
        files += [
            ManifestFile(f"{FRAMES}/{f['name']}", int(f["bytes"]), str(f["sha256"]))
            for v in old.get("video_frames") or []
            for f in v.get("frames") or []
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{storage.uri(prefix)}/{LEGACY_MANIFEST}: bad file entry: {exc}") from exc
    dag_run_id = (old.get("download") or {}).get("dag_run_id")
    keep = ("run_id", "dataset_id", "run", "params", "download", "counts", "media", "video_frames")
    return Manifest(
        dataset=prefix.strip("/"),
        producer={"dag_id": DAG_ID, "run_id": dag_run_id} if dag_run_id else {},
        status=old["completeness"],
        files=files,
        created_at=old.get("created_at") or "",
        updated_at=old.get("last_modified"),
        problems=list(old.get("problems") or []),
        extra={k: old[k] for k in keep if k in old},
        legacy=True,
    )


def read_dataset_manifest(storage: Storage, run_id: str) -> Manifest | None:
    """The manifest of the dataset of ``run_id``: ``_manifest.json``, else the legacy
    ``manifest.json`` (:func:`legacy_manifest`), else None.

    :raises InvalidArgument: not a run id. :raises ManifestError: an unreadable manifest.
    """
    return read_manifest(storage, dataset_prefix(run_id), legacy=legacy_manifest)


@dataclass
class StoredDataset:
    """One run's stored objects (from a listing) and its manifest (None when missing)."""

    run_id: str
    objects: list[ObjectInfo] = field(default_factory=list)
    manifest: Manifest | None = None
    #: Where it is stored (for :attr:`path` and counting rows); None in tests of the shapes.
    storage: Storage | None = field(default=None, repr=False)

    def _rel(self, obj: ObjectInfo) -> str:
        return obj.key[len(DATASETS_PREFIX) + len(self.run_id) + 2 :]

    def _under(self, folder: str) -> list[ObjectInfo]:
        return [o for o in self.objects if self._rel(o).startswith(folder + "/")]

    def _file(self, name: str) -> ObjectInfo | None:
        return next((o for o in self.objects if self._rel(o) == name), None)

    @property
    def size_bytes(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def created_at(self) -> datetime:
        """When the download started (manifest), else the oldest object's date."""
        stamp = _parse(self.manifest.created_at) if self.manifest else None
        return stamp or min(o.last_modified for o in self.objects)

    @property
    def last_modified(self) -> datetime:
        stamp = _parse(self.manifest.updated_at) if self.manifest else None
        newest = max(o.last_modified for o in self.objects)
        return max(stamp, newest) if stamp else newest

    @property
    def completeness(self) -> str:
        """``complete``, ``partial``, ``in_progress`` (manifest) or ``unknown`` (no manifest)."""
        return self.manifest.status if self.manifest else "unknown"

    def in_progress(self, now: datetime) -> bool:
        """A download is writing this dataset: ``in_progress`` and updated within
        :data:`STALE_IN_PROGRESS`."""
        return self.completeness == IN_PROGRESS and now - self.last_modified < STALE_IN_PROGRESS

    def media(self) -> tuple[list[ObjectInfo], list[ObjectInfo]]:
        """(images, videos) in ``media/``."""
        files = self._under(MEDIA)
        images = [o for o in files if o.key.lower().endswith(_IMAGE_EXTS)]
        videos = [o for o in files if o.key.lower().endswith(_VIDEO_EXTS)]
        return images, videos

    @property
    def path(self) -> str:
        """Where the dataset is: its folder's URI (a local path or ``s3://bucket/...``), else
        ``datasets/facebook/{run_id}`` below the storage root."""
        prefix = f"{DATASETS_PREFIX}/{self.run_id}"
        return self.storage.uri(prefix) if self.storage is not None else prefix

    def summary(self) -> dict:
        """The ``GET /runs/list`` entry (seed 000): ``{"run_id", "path", "has_csv", "has_jsonl",
        "has_media", "media_count", "created_at", "size_bytes"}`` plus ``last_modified`` and
        ``completeness``."""
        images, videos = self.media()
        return {
            "run_id": self.run_id,
            "path": self.path,
            "has_csv": self._file(f"{self.run_id}.csv") is not None,
            "has_jsonl": self._file(f"{self.run_id}.jsonl") is not None,
            "has_media": bool(images or videos),
            "media_count": len(images) + len(videos),
            "created_at": _iso(self.created_at),
            "last_modified": _iso(self.last_modified),
            "size_bytes": self.size_bytes,
            "completeness": self.completeness,
        }

    def _records(self, kind: str, obj: ObjectInfo) -> int | None:
        """CSV rows (header excluded) or JSONL lines of ``{run_id}.{kind}``: from the manifest,
        else counted in the file (a folder of the old service); None if neither can tell."""
        if self.manifest is not None:
            entry = self.manifest.file(f"{self.run_id}.{kind}")
            if entry is not None and entry.rows is not None:
                return entry.rows
            counted = (self.manifest.extra.get("counts") or {}).get(
                "csv_rows" if kind == "csv" else "jsonl_lines"
            )
            if counted is not None:
                return counted
        if self.storage is None:
            return None
        return count_records(self.storage, obj.key, kind)

    def details(self) -> dict:
        """The ``GET /runs/{run_id}`` answer (seed 000), field for field::

            {"run_id", "exists": true, "path", "created_at", "last_modified",
             "files": {"csv": {"exists", "path", "size_bytes", "rows"},
                       "jsonl": {"exists", "path", "size_bytes", "lines"},
                       "media": {"exists", "path", "count", "size_bytes", "images", "videos"},
                       "video_frames": {"exists", "path", "count", "size_bytes"},
                       "reports": {"exists", "path", "files": [names]}},
             "total_size_bytes"}

        plus ``dataset_id``, ``completeness``, ``files.media.failed`` and
        ``files.video_frames.videos_failed`` (from the manifest; 0 without one). Paths inside
        ``files`` are relative to the dataset's folder; ``rows``/``lines`` come from the
        manifest, or are counted in the files when there is none (None if a file is absent)."""
        extra = self.manifest.extra if self.manifest else {}
        counts = extra.get("counts") or {}
        files: dict[str, dict] = {}
        for kind, measure in (("csv", "rows"), ("jsonl", "lines")):
            name = f"{self.run_id}.{kind}"
            obj = self._file(name)
            files[kind] = {
                "exists": obj is not None,
                "path": name,
                "size_bytes": obj.size if obj else 0,
                measure: self._records(kind, obj) if obj else None,
            }
        images, videos = self.media()
        frames = self._under(FRAMES)
        reports = self._under(REPORTS)
        files[MEDIA] = {
            "exists": bool(self._under(MEDIA)),
            "path": f"{MEDIA}/",
            "count": len(images) + len(videos),
            "size_bytes": sum(o.size for o in images + videos),
            "images": len(images),
            "videos": len(videos),
            "failed": counts.get("media_failed", 0),
        }
        files[FRAMES] = {
            "exists": bool(frames),
            "path": f"{FRAMES}/",
            "count": len(frames),
            "size_bytes": sum(o.size for o in frames),
            "videos_failed": counts.get("videos_failed", 0),
        }
        files[REPORTS] = {
            "exists": bool(reports),
            "path": f"{REPORTS}/",
            "files": [self._rel(o)[len(REPORTS) + 1 :] for o in reports],
        }
        return {
            "run_id": self.run_id,
            "exists": True,
            "path": self.path,
            "dataset_id": extra.get("dataset_id"),
            "created_at": _iso(self.created_at),
            "last_modified": _iso(self.last_modified),
            "completeness": self.completeness,
            "files": files,
            "total_size_bytes": self.size_bytes,
        }


def count_records(storage: Storage, key: str, kind: str) -> int | None:
    """Rows of a CSV file (RFC 4180 records after the header; quoted newlines stay inside their
    record) or lines of a JSONL file (non-empty lines), read as a stream in 1 MiB blocks.

    :param kind: ``csv`` or ``jsonl``.
    :returns: the count, or None when the CSV cannot be parsed (``csv.Error``: a field above the
        csv module's size limit, a NUL byte). Undecodable bytes are replaced, never an error."""
    with contextlib.closing(storage.open_read(key)) as raw:
        if kind == "jsonl":
            lines, carry = 0, b""
            while block := raw.read(1 << 20):
                parts = (carry + block).split(b"\n")
                carry = parts.pop()  # the line still open at the block's end
                lines += sum(1 for line in parts if line.strip())
            return lines + (1 if carry.strip() else 0)
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        try:
            return max(sum(1 for _ in csv.reader(text)) - 1, 0)
        except csv.Error as exc:
            log.warning("%s: rows not counted: %s", storage.uri(key), exc)
            return None


def _group(objects: Iterable[ObjectInfo]) -> dict[str, list[ObjectInfo]]:
    runs: dict[str, list[ObjectInfo]] = {}
    cut = len(DATASETS_PREFIX) + 1
    for obj in objects:
        run_id, sep, rest = obj.key[cut:].partition("/")
        if not sep or not rest or obj.key.endswith(_TEMP_SUFFIXES):
            continue
        try:
            check_run_id(run_id)
        except ValueError:  # some other folder: not a dataset
            continue
        runs.setdefault(run_id, []).append(obj)
    return runs


def _manifest_keys(run_id: str) -> tuple[str, str]:
    prefix = f"{DATASETS_PREFIX}/{run_id}/"
    return prefix + MANIFEST, prefix + LEGACY_MANIFEST


def list_datasets(storage: Storage) -> list[StoredDataset]:
    """Every stored dataset, newest first (by ``created_at``). One listing of
    ``datasets/facebook/`` plus one read per manifest (``_manifest.json`` or legacy
    ``manifest.json``).

    :raises ManifestError: a dataset's manifest is unreadable."""
    runs = _group(storage.list_objects(DATASETS_PREFIX + "/"))
    datasets = []
    for run_id, objects in runs.items():
        keys = _manifest_keys(run_id)
        manifest = read_dataset_manifest(storage, run_id) if any(o.key in keys for o in objects) else None
        datasets.append(StoredDataset(run_id, objects, manifest, storage))
    datasets.sort(key=lambda d: (d.created_at, d.run_id), reverse=True)
    return datasets


def get_dataset(storage: Storage, run_id: str) -> StoredDataset:
    """The dataset of ``run_id``. :raises ValueError: not a run id.
    :raises DatasetNotFound: nothing stored."""
    prefix = dataset_prefix(run_id) + "/"
    objects = [o for o in storage.list_objects(prefix) if not o.key.endswith(_TEMP_SUFFIXES)]
    if not objects:
        raise DatasetNotFound(f"no dataset stored for run {run_id} under {DATASETS_PREFIX}/")
    return StoredDataset(run_id, objects, read_dataset_manifest(storage, run_id), storage)


def runs_list(storage: Storage) -> dict:
    """The ``GET /runs/list`` answer (seed 000): ``{"status": "success", "total_runs", "runs":
    [summary...], "total_size_bytes"}``, newest first (:meth:`StoredDataset.summary`)."""
    runs = [d.summary() for d in list_datasets(storage)]
    return {
        "status": "success",
        "total_runs": len(runs),
        "runs": runs,
        "total_size_bytes": sum(r["size_bytes"] for r in runs),
    }


def prune_empty_folders(storage: Storage, prefix: str) -> None:
    """On a local root, remove the folders left empty below (and at) ``prefix`` (S3 has none)."""
    if not isinstance(storage, LocalStorage):
        return
    top = Path(storage.uri(prefix))
    if not top.is_dir():
        return
    for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: something new arrived
            folder.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()


def delete_dataset(storage: Storage, run_id: str, *, force: bool = False, reason: str = "delete") -> dict:
    """Delete every object of the dataset (manifests last, so an interrupted delete still shows),
    then record the deletion in the ledger (:func:`record_deletion`).

    :param reason: what deleted it, kept in the ledger: ``delete`` (one dataset, by hand) or
        ``cleanup`` (the retention rule).
    :returns: the ``DELETE /runs/{run_id}`` answer (seed 000): ``{"status": "success",
        "message", "deleted_path", "freed_space_bytes"}`` plus ``run_id``, ``deleted`` (true) and
        ``files_deleted``.
    :raises DatasetNotFound: nothing stored. :raises DatasetBusy: a download is in progress
        (unless ``force``).
    """
    dataset = get_dataset(storage, run_id)
    now = datetime.now(UTC)
    if not force and dataset.in_progress(now):
        raise DatasetBusy(
            f"run {run_id}: a download is in progress (manifest updated {_iso(dataset.last_modified)})"
        )
    keys = _manifest_keys(run_id)
    ordered = sorted(dataset.objects, key=lambda o: o.key in keys)
    for obj in ordered:
        storage.delete(obj.key)
    prune_empty_folders(storage, dataset_prefix(run_id))
    log.info("deleted dataset %s: %d files, %d bytes", run_id, len(ordered), dataset.size_bytes)
    record_deletion(
        storage,
        run_id,
        reason=reason,
        created_at=dataset.created_at,
        deleted_at=now,
        files_deleted=len(ordered),
        freed_space_bytes=dataset.size_bytes,
    )
    return {
        "status": "success",
        "message": f"Run {run_id} deleted",
        "deleted_path": dataset.path,
        "freed_space_bytes": dataset.size_bytes,
        "run_id": run_id,
        "deleted": True,
        "files_deleted": len(ordered),
    }


def record_deletion(
    storage: Storage,
    run_id: str,
    *,
    reason: str,
    created_at: datetime,
    deleted_at: datetime,
    files_deleted: int,
    freed_space_bytes: int,
) -> str:
    """Write one ledger record ``datasets/_deletions/facebook/{YYYY-MM-DD}/{run_id}_{HHMMSSffffff}
    .json`` (created only if absent): ``{"run_id", "reason", "created_at", "deleted_at",
    "files_deleted", "freed_space_bytes"}`` (UTC ISO 8601, bytes). A failure to write it is
    logged, never raised: the dataset is already gone. :returns: the record's key."""
    key = f"{DELETIONS_PREFIX}/{deleted_at:%Y-%m-%d}/{run_id}_{deleted_at:%H%M%S%f}.json"
    record = {
        "run_id": run_id,
        "reason": reason,
        "created_at": _iso(created_at),
        "deleted_at": deleted_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "files_deleted": files_deleted,
        "freed_space_bytes": freed_space_bytes,
    }
    try:
        storage.create(key, orjson.dumps(record))
    except Exception:  # noqa: BLE001 - the ledger is for metrics; the deletion itself is done
        log.exception("dataset %s deleted, but its ledger record %s was not written", run_id, key)
    return key


def deletions(storage: Storage, since: datetime | None = None) -> list[dict]:
    """The ledger's records (:func:`record_deletion`), oldest first; only those deleted on or
    after ``since``'s day when given (one listing of the ledger, one read per record)."""
    records = []
    day = f"{since:%Y-%m-%d}" if since else ""
    cut = len(DELETIONS_PREFIX) + 1
    for obj in storage.list_objects(DELETIONS_PREFIX + "/"):
        if obj.key[cut : cut + 10] < day or not obj.key.endswith(".json"):
            continue
        with contextlib.suppress(ValueError, TypeError):  # a damaged record counts as nothing
            record = read_json(storage, obj.key)
            if isinstance(record, dict) and isinstance(record.get("freed_space_bytes"), int):
                records.append(record)
    records.sort(key=lambda r: str(r.get("deleted_at")))
    return records


def storage_metrics(storage: Storage, *, now: datetime | None = None) -> dict:
    """The storage metrics of seed 000's "Métricas y Monitoreo": datasets, space used, space
    available, growth per day and space freed by deletions and cleanups.

    :returns: ``{"status": "success", "as_of", "total_runs", "total_size_bytes",
        "avg_size_bytes", "by_completeness": {state: count}, "oldest_run_days",
        "newest_run_days", "space_available_bytes", "space_total_bytes",
        "growth_bytes_per_day": {"7d", "30d"}, "freed_space_bytes": {"7d", "30d"},
        "cleanups": {"7d", "30d"}, "deletions": {"7d", "30d"}, "freed_space_bytes_total",
        "ledger_since"}``. Growth per day is the bytes of the datasets created in the window
        (those deleted since included, from the ledger) over the window's days; freed space and
        counts come from the ledger. ``space_available_bytes``/``space_total_bytes`` are the
        file system's on a local root and null on S3 (no API tells a bucket's capacity);
        ``oldest_run_days``/``newest_run_days`` are null with no dataset.
    """
    now = now or datetime.now(UTC)
    datasets = list_datasets(storage)
    ledger = deletions(storage)
    sizes = [d.size_bytes for d in datasets]
    by_state: dict[str, int] = {}
    for d in datasets:
        by_state[d.completeness] = by_state.get(d.completeness, 0) + 1
    available = total = None
    if isinstance(storage, LocalStorage):
        with contextlib.suppress(OSError):
            usage = shutil.disk_usage(storage.uri(""))
            available, total = usage.free, usage.total
    growth, freed, cleanups, deleted = {}, {}, {}, {}
    for days in METRIC_WINDOWS:
        start = now - timedelta(days=days)
        recent = [r for r in ledger if (_parse(r.get("deleted_at")) or now) >= start]
        created = sum(d.size_bytes for d in datasets if d.created_at >= start) + sum(
            r["freed_space_bytes"] for r in ledger if (_parse(r.get("created_at")) or now) >= start
        )
        label = f"{days}d"
        growth[label] = round(created / days)
        freed[label] = sum(r["freed_space_bytes"] for r in recent)
        cleanups[label] = sum(r.get("reason") == "cleanup" for r in recent)
        deleted[label] = len(recent)
    ages = [(now - d.created_at).days for d in datasets]
    return {
        "status": "success",
        "as_of": _iso(now),
        "total_runs": len(datasets),
        "total_size_bytes": sum(sizes),
        "avg_size_bytes": round(sum(sizes) / len(sizes)) if sizes else 0,
        "by_completeness": by_state,
        "oldest_run_days": max(ages) if ages else None,
        "newest_run_days": min(ages) if ages else None,
        "space_available_bytes": available,
        "space_total_bytes": total,
        "growth_bytes_per_day": growth,
        "freed_space_bytes": freed,
        "cleanups": cleanups,
        "deletions": deleted,
        "freed_space_bytes_total": sum(r["freed_space_bytes"] for r in ledger),
        "ledger_since": ledger[0]["deleted_at"] if ledger else None,
    }


def cleanup_datasets(
    storage: Storage,
    *,
    days_old: float = 30,
    keep_recent: int = 10,
    dry_run: bool = True,
    now: datetime | None = None,
) -> dict:
    """Delete datasets older than ``days_old`` days, always keeping the ``keep_recent`` newest and
    any whose download is in progress (the old ``POST /runs/cleanup``).

    :returns: the ``POST /runs/cleanup`` answer (seed 000): ``{"status": "success", "dry_run",
        "criteria": {"days_old", "keep_recent"}, "runs_checked", "runs_to_delete",
        "runs_deleted", "runs_kept", "freed_space_bytes", "deleted_runs": [{"run_id",
        "days_old", "size_bytes", "created_at"}]}`` plus ``space_to_free_bytes``,
        ``in_progress`` (run ids kept because a download is writing them), ``days_old`` and
        ``keep_recent``; ``runs_deleted`` and ``freed_space_bytes`` are 0 on a dry run
        (``runs_to_delete``, ``space_to_free_bytes`` and ``deleted_runs`` say what would go).
    :raises InvalidArgument: ``days_old`` is not a finite number in 0..:data:`MAX_DAYS_OLD` or
        ``keep_recent`` not an integer in 0..:data:`MAX_KEEP_RECENT` (checked before any listing).
    """
    _bounded_count("days_old", days_old, MAX_DAYS_OLD, integer=False)
    _bounded_count("keep_recent", keep_recent, MAX_KEEP_RECENT, integer=True)
    now = now or datetime.now(UTC)
    datasets = list_datasets(storage)  # newest first
    cutoff = now - timedelta(days=days_old)
    busy = [d.run_id for d in datasets if d.in_progress(now)]
    doomed = [d for d in datasets[keep_recent:] if d.created_at < cutoff and d.run_id not in busy]
    deleted_runs = [
        {
            "run_id": d.run_id,
            "days_old": (now - d.created_at).days,
            "size_bytes": d.size_bytes,
            "created_at": _iso(d.created_at),
        }
        for d in doomed
    ]
    freed = 0
    if not dry_run:
        for d in list(doomed):
            try:
                freed += delete_dataset(storage, d.run_id, reason="cleanup")["freed_space_bytes"]
            except DatasetBusy:  # a download started since the listing: keep it
                doomed.remove(d)
                busy.append(d.run_id)
                deleted_runs = [r for r in deleted_runs if r["run_id"] != d.run_id]
    report = {
        "status": "success",
        "dry_run": dry_run,
        "criteria": {"days_old": days_old, "keep_recent": keep_recent},
        "runs_checked": len(datasets),
        "runs_to_delete": len(doomed),
        "runs_deleted": 0 if dry_run else len(doomed),
        "runs_kept": len(datasets) - len(doomed),
        "freed_space_bytes": freed,
        "space_to_free_bytes": sum(d.size_bytes for d in doomed),
        "deleted_runs": deleted_runs,
        "in_progress": busy,
        "days_old": days_old,
        "keep_recent": keep_recent,
    }
    log.info(
        "dataset cleanup%s: %d checked, %d to delete, %d kept, %d bytes freed",
        " (dry run)" if dry_run else "",
        report["runs_checked"],
        report["runs_to_delete"],
        report["runs_kept"],
        freed,
    )
    return report
