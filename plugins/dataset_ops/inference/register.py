"""Registration of a finished training dataset: one ZIP in the dataset registry and one row in
its CSV, so a model can be trained from it and later datasets can leave its transactions out.

A training dataset is the folder ``processes/{process_name}/dataset/`` of a storage::

    {label_id}_{label_name}/{transaction_id}.jpg   one folder per class
    _manifest.json   written last: the suite's dataset manifest (format 1, files with bytes and
                     sha256, relative to the dataset folder; the transaction of each image in
                     ``extra["transactions"]``), see :mod:`dataset_ops.inference.dataset`;
                     the manifest of datasets written before format 1 is read too
                     (:func:`dataset_ops.inference.dataset.legacy_manifest`)

The registry is a storage root of its own (``registry_root``, typically ``s3://bucket/registry/``;
a local folder works too)::

    registry.csv                      one row per dataset (:data:`REGISTRY_COLUMNS`)
    datasets/{name}.zip               the dataset (:func:`zip_dataset`)
    datasets/{name}.transactions.txt  its transaction ids, one a line, sorted
    datasets/{name}.claim             only while ``name`` is being registered

Concurrency: the CSV is read, extended by one row and written back as one object. On S3 the write
is conditional (``PutObject`` with ``IfMatch=<ETag read>``, or ``IfNoneMatch="*"`` when the CSV
does not exist yet); a lost race (412 ``PreconditionFailed`` / 409 ``ConditionalRequestConflict``)
re-reads and retries after a jittered exponential backoff. On a local root an exclusive
``fcntl.flock`` on ``registry.csv.lock`` serialises the update and the new CSV replaces the old
one atomically (``os.replace``); ``flock`` is per host (not for a root on NFS shared by hosts).

A name is registered once: :func:`register_dataset` first claims it (``datasets/{name}.claim``
created with ``IfNoneMatch="*"`` on S3, under the ``flock`` locally), so two runs never upload to
the same ``datasets/{name}.zip``; the row is appended only after the ZIP and the transaction list
are uploaded and verified, and if appending fails both are deleted again. A run that dies leaves
its claim; it is taken over after ``claim_ttl_seconds`` (default 24 h).
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import logging
import os
import random
import re
import shutil
import tempfile
import time
import uuid
import zipfile
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dataset_ops.errors import InputError
from dataset_ops.inference.dataset import legacy_manifest, manifest_images
from dataset_ops.inference.process import read_metadata
from dataset_ops.storage import LocalStorage, S3Storage, open_storage, publish, publish_file
from dataset_ops.storage.manifest import MANIFEST_NAME, ManifestError, read_manifest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from dataset_ops.storage import Manifest, ObjectInfo, Storage

log = logging.getLogger(__name__)

#: The dataset's manifest (:data:`dataset_ops.storage.manifest.MANIFEST_NAME`).
MANIFEST = MANIFEST_NAME
REGISTRY_CSV = "registry.csv"
REGISTRY_LOCK = "registry.csv.lock"
DATASETS_FOLDER = "datasets"
#: Columns of ``registry.csv``, in order. ``classes``/``images``/``zip_bytes`` are integers;
#: ``registered_at`` is UTC ISO 8601 (seconds); ``zip_key``/``transactions_key`` are keys below
#: the registry root; ``source`` is the URI of the dataset folder; ``process_name``,
#: ``deployment_id``, ``dag_run_id``, ``description`` come from ``metadata`` (the first two also
#: from the manifest or ``process_metadata.json``); ``extra`` is a JSON object of every other
#: ``metadata`` key.
REGISTRY_COLUMNS = (
    "name",
    "registered_at",
    "process_name",
    "deployment_id",
    "classes",
    "images",
    "zip_key",
    "zip_bytes",
    "zip_sha256",
    "transactions_key",
    "source",
    "dag_run_id",
    "description",
    "extra",
)
METADATA_COLUMNS = ("process_name", "deployment_id", "dag_run_id", "description")
_INT_COLUMNS = ("classes", "images", "zip_bytes")
#: Suffixes stored uncompressed (``ZIP_STORED``): their content is compressed already.
STORED_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".gz", ".zip", ".parquet", ".mp4")
#: Bytes per read/write while copying an object into the ZIP.
CHUNK = 1 << 20
#: Conditional-write attempts on the S3 registry CSV before :class:`RegistryBusy`.
MAX_TRIES = 16
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,119}")
_CONFLICT_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


class DatasetIncomplete(InputError):
    """The dataset folder is not a finished dataset: no ``_manifest.json``, a file the manifest
    names is missing, or a file's size differs from the manifest or changed while zipping."""


class UnsafeZipPath(InputError):
    """A member path that would escape the archive's folder (absolute, ``..``, backslash...)."""


class AlreadyRegistered(InputError):
    """The dataset name is in the registry already."""


class RegistrationInProgress(RuntimeError):
    """Another run holds the claim on the name (and it is not older than the claim TTL)."""


class RegistryBusy(RuntimeError):
    """The S3 registry CSV kept changing under us: every conditional write lost its race."""


# --- ZIP -----------------------------------------------------------------------------------------
def check_member_path(path: object) -> str:
    """``path`` if it is a safe relative ZIP member path: ``/``-separated, not absolute, no
    backslash, NUL or drive letter, no empty, ``.`` or ``..`` segment.

    :raises UnsafeZipPath: (a ValueError) "ZIP path that would escape its folder", naming it.
    """
    if (
        not isinstance(path, str)
        or not path
        or "\\" in path
        or "\x00" in path
        or path.startswith("/")
        or re.match(r"[A-Za-z]:", path)
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise UnsafeZipPath(f"ZIP path that would escape its folder: {path!r}")
    return path


def _compression(name: str) -> int:
    return zipfile.ZIP_STORED if name.lower().endswith(STORED_SUFFIXES) else zipfile.ZIP_DEFLATED


def _zip_info(name: str, obj: ObjectInfo) -> zipfile.ZipInfo:
    modified = obj.last_modified.astimezone(UTC) if obj.last_modified.tzinfo else obj.last_modified
    stamp = max(modified.timetuple()[:6], (1980, 1, 1, 0, 0, 0))
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = _compression(name)
    info.external_attr = 0o644 << 16
    info.file_size = obj.size
    return info


def _load_manifest(storage: Storage, prefix: str) -> tuple[Manifest, dict[str, ObjectInfo]]:
    """The manifest (format 1 or legacy) and ``{relative path: ObjectInfo}`` of the folder, after
    every check that needs no file content (paths, presence, sizes).

    :raises DatasetIncomplete: no or an unreadable manifest, status ``in_progress``, a listed
        file missing or of another size. :raises UnsafeZipPath: a path escaping the folder.
    """
    objects: dict[str, ObjectInfo] = {}
    for obj in storage.list_objects(prefix + "/"):
        rel = obj.key[len(prefix) + 1 :]
        if rel.endswith("/") or rel.endswith((".partial", ".part")):  # folder marker, unfinished write
            continue
        objects[check_member_path(rel)] = obj
    if MANIFEST not in objects:
        raise DatasetIncomplete(f"{storage.uri(prefix)} has no {MANIFEST}: the dataset is incomplete")
    try:
        manifest = read_manifest(storage, prefix, legacy=legacy_manifest)
    except json.JSONDecodeError as exc:
        raise DatasetIncomplete(f"{storage.uri(prefix)}/{MANIFEST} is not JSON: {exc}") from None
    except ManifestError as exc:
        raise DatasetIncomplete(f"{storage.uri(prefix)}/{MANIFEST}: {exc}") from None
    if manifest is None or manifest.status == "in_progress":
        raise DatasetIncomplete(f"{storage.uri(prefix)}/{MANIFEST}: the dataset is still being written")
    missing, wrong_size = [], []
    for entry in manifest.files:
        path = check_member_path(entry.path)
        if path not in objects:
            missing.append(path)
        elif entry.bytes != objects[path].size:
            wrong_size.append(f"{path} ({objects[path].size:,} bytes, manifest {entry.bytes:,})")
    if missing:
        raise DatasetIncomplete(
            f"{storage.uri(prefix)}: {len(missing)} file(s) of the manifest missing, e.g. {missing[:5]}"
        )
    if wrong_size:
        raise DatasetIncomplete(f"{storage.uri(prefix)}: size differs from the manifest: {wrong_size[:5]}")
    return manifest, objects


def _members(manifest: Manifest, objects: dict[str, ObjectInfo]) -> list[str]:
    """The manifest's files (sorted), then the folder's other top-level files, ``_manifest.json``
    last. Files in sub-folders the manifest does not name are left out (logged)."""
    listed = sorted({e.path for e in manifest.files} - {MANIFEST})
    top = sorted(p for p in objects if "/" not in p and p != MANIFEST and p not in set(listed))
    members = [*listed, *top, MANIFEST]
    stray = len(objects) - len(members)
    if stray:
        log.warning("%d file(s) in class folders are not in the manifest and stay out of the ZIP", stray)
    return members


def _zip(storage: Storage, prefix: str, out: Path, log_every: int) -> tuple[dict, Manifest]:
    """:func:`zip_dataset`, returning the manifest read too."""
    prefix = prefix.strip("/")
    manifest, objects = _load_manifest(storage, prefix)
    members = _members(manifest, objects)
    expected_sha = {e.path: e.sha256 for e in manifest.files if e.sha256}
    total_files, total_bytes = len(members), sum(objects[m].size for m in members)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    done_bytes = 0
    log.info(
        "zipping %s: %d files, %s bytes -> %s", storage.uri(prefix), total_files, f"{total_bytes:,}", out
    )
    try:
        with zipfile.ZipFile(partial, "w", allowZip64=True) as zf:
            for n, name in enumerate(members, 1):
                obj = objects[name]
                copied, file_digest = 0, hashlib.sha256()
                with (
                    storage.open_read(f"{prefix}/{name}") as src,
                    zf.open(_zip_info(name, obj), "w", force_zip64=obj.size >= zipfile.ZIP64_LIMIT) as dst,
                ):
                    while block := src.read(CHUNK):
                        dst.write(block)
                        file_digest.update(block)
                        copied += len(block)
                if copied != obj.size:
                    raise DatasetIncomplete(
                        f"{storage.uri(prefix)}/{name}: read {copied:,} bytes, listed {obj.size:,} "
                        "(changed while zipping)"
                    )
                if name in expected_sha and file_digest.hexdigest() != expected_sha[name]:
                    raise DatasetIncomplete(f"{storage.uri(prefix)}/{name}: sha256 differs from the manifest")
                done_bytes += copied
                if n % log_every == 0 or n == total_files:
                    log.info(
                        "zipped %d/%d files, %s/%s bytes",
                        n,
                        total_files,
                        f"{done_bytes:,}",
                        f"{total_bytes:,}",
                    )
        digest = hashlib.sha256()
        with open(partial, "rb") as fh:
            while block := fh.read(CHUNK):
                digest.update(block)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    result = {
        "path": str(out),
        "files": total_files,
        "bytes": out.stat().st_size,
        "sha256": digest.hexdigest(),
        "source_bytes": total_bytes,
    }
    return result, manifest


def zip_dataset(storage: Storage, dataset_prefix: str, out: Path, *, log_every: int = 500) -> dict:
    """Write the dataset folder ``dataset_prefix`` of ``storage`` as the ZIP file ``out``.

    Members are paths relative to the folder (``{label_id}_{label_name}/{transaction_id}.jpg``,
    ``_manifest.json``): the manifest's files, sorted, then the folder's top-level files with
    ``_manifest.json`` last; files in class folders the manifest does not name are left out.
    JPEG/PNG (:data:`STORED_SUFFIXES`) are ``ZIP_STORED``, everything else (``.json``, ``.csv``)
    ``ZIP_DEFLATED``. Each object is streamed into the archive in :data:`CHUNK` blocks (memory
    bounded whatever the dataset's size); progress is logged every ``log_every`` files (files
    done/total, bytes done/total). The file is written as ``out.partial`` and renamed to ``out``
    when complete; on any error the partial file is removed.

    :param dataset_prefix: key of the dataset folder, e.g. ``processes/p1/dataset``.
    :param out: local path of the ZIP; its folder is created.
    :returns: ``{"path": str, "files": int, "bytes": int (ZIP size), "sha256": hex of the ZIP,
        "source_bytes": int (sum of the members' sizes)}``.
    :raises UnsafeZipPath: (ValueError) a file of the folder or of the manifest whose path would
        escape the archive root (absolute, ``..``, backslash); checked before anything is written.
    :raises DatasetIncomplete: (ValueError) no ``_manifest.json``, a manifest file missing, a size
        or sha256 different from the manifest's ``bytes``/``sha256`` (checked when present), or
        an object changing while read.
    """
    result, _ = _zip(storage, dataset_prefix, Path(out), max(1, int(log_every)))
    return result


# --- registry CSV --------------------------------------------------------------------------------
def check_dataset_name(name: object) -> str:
    """``name`` if it is a safe registry name (letters, digits, ``_.-``; at most 120; not starting
    with ``.``/``-``/``_``; no ``..``). :raises dataset_ops.errors.InputError: otherwise (a
    ``ValueError``; the task fails without retries)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise InputError(f"{name!r} is not a dataset name (letters, digits, '_', '.', '-'; at most 120)")
    return name


def _parse(data: bytes | None) -> tuple[list[str], list[dict]]:
    if not data:
        return list(REGISTRY_COLUMNS), []
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    return list(reader.fieldnames or REGISTRY_COLUMNS), list(reader)


def _serialise(header: list[str], rows: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _appender(row: dict) -> Callable[[bytes | None], bytes]:
    """``old CSV bytes -> new CSV bytes`` with ``row`` appended; raises AlreadyRegistered when the
    name is there already. Existing rows and columns are kept as they are."""

    def append(data: bytes | None) -> bytes:
        header, rows = _parse(data)
        if any(r.get("name") == row["name"] for r in rows):
            raise AlreadyRegistered(f"dataset {row['name']!r} is registered already")
        header += [c for c in REGISTRY_COLUMNS if c not in header]
        return _serialise(header, [*rows, row])

    return append


def _error_code(exc: Exception) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    return (
        str(response.get("Error", {}).get("Code", "")),
        int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0),
    )


def _is_conflict(exc: Exception) -> bool:
    code, status = _error_code(exc)
    return code in _CONFLICT_CODES or status in (409, 412)


def _is_missing(exc: Exception) -> bool:
    code, status = _error_code(exc)
    return code in ("NoSuchKey", "404", "NotFound") or status == 404


def _backoff(attempt: int) -> None:
    """Full jitter: a uniform wait in [0, min(2 s, 50 ms x 2^attempt))."""
    time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))


@contextmanager
def _local_lock(registry: LocalStorage) -> Iterator[None]:
    """Exclusive ``flock`` on ``registry.csv.lock`` (kept in place; released on close/exit)."""
    path = Path(registry.uri(REGISTRY_LOCK))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _update_object(registry: Storage, key: str, change: Callable[[bytes | None], bytes], tries: int) -> None:
    """Replace the object ``key`` by ``change(current bytes or None)``, safely against concurrent
    updaters (conditional writes on S3, ``flock`` + atomic replace locally)."""
    if isinstance(registry, S3Storage):
        client, bucket, s3_key = registry.client, registry.bucket, registry._key(key)
        for attempt in range(tries):
            try:
                obj = client.get_object(Bucket=bucket, Key=s3_key)
                data, etag = obj["Body"].read(), obj["ETag"]
            except Exception as exc:
                if not _is_missing(exc):
                    raise
                data, etag = None, None
            body = change(data)
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                client.put_object(Bucket=bucket, Key=s3_key, Body=body, **condition)
                return
            except Exception as exc:
                # lost the race; NoSuchKey: deleted between our read and our IfMatch write
                if not (_is_conflict(exc) or (etag and _is_missing(exc))):
                    raise
                log.info("%s changed meanwhile (attempt %d/%d)", registry.uri(key), attempt + 1, tries)
                if attempt + 1 < tries:
                    _backoff(attempt)
        raise RegistryBusy(f"{registry.uri(key)}: {tries} conditional writes all lost their race")
    with _local_lock(registry):
        data = None
        if registry.exists(key):
            with registry.open_read(key) as fh:
                data = fh.read()
        registry.write_stream(key, io.BytesIO(change(data)))  # temp file + os.replace


# --- name claims ---------------------------------------------------------------------------------
def _claim(registry: Storage, key: str, ttl: float) -> None:
    """Create the claim object ``key``; take it over if it is older than ``ttl`` seconds.

    :raises RegistrationInProgress: someone else holds a fresh claim."""
    body = json.dumps({"owner": uuid.uuid4().hex, "claimed_at": datetime.now(UTC).isoformat()}).encode()
    if isinstance(registry, S3Storage):
        client, bucket, s3_key = registry.client, registry.bucket, registry._key(key)
        try:
            client.put_object(Bucket=bucket, Key=s3_key, Body=body, IfNoneMatch="*")
            return
        except Exception as exc:
            if not _is_conflict(exc):
                raise
        try:
            head = client.head_object(Bucket=bucket, Key=s3_key)
            age = time.time() - head["LastModified"].timestamp()
            if age > ttl:
                client.put_object(Bucket=bucket, Key=s3_key, Body=body, IfMatch=head["ETag"])
                log.warning("took over the claim %s (%.0f s old)", registry.uri(key), age)
                return
        except Exception as exc:
            if not (_is_conflict(exc) or _is_missing(exc)):
                raise
        raise RegistrationInProgress(f"{registry.uri(key)}: another run is registering this name")
    with _local_lock(registry):
        if registry.exists(key):
            age = time.time() - registry.stat(key).last_modified.timestamp()
            if age <= ttl:
                raise RegistrationInProgress(f"{registry.uri(key)}: another run is registering this name")
            log.warning("took over the claim %s (%.0f s old)", registry.uri(key), age)
        registry.write_stream(key, io.BytesIO(body))


# --- public API ----------------------------------------------------------------------------------
def _open_registry(registry_root: str | Storage) -> Storage:
    """The registry's storage: ``registry_root`` opened, or used as it is when already a Storage
    (opening an S3 root costs a boto3 client, about 0.4 s)."""
    return open_storage(registry_root) if isinstance(registry_root, str) else registry_root


def _registry_keys(name: str) -> tuple[str, str, str]:
    base = f"{DATASETS_FOLDER}/{check_dataset_name(name)}"
    return f"{base}.zip", f"{base}.transactions.txt", f"{base}.claim"


def _transactions(manifest: Manifest) -> list[str]:
    """The sorted unique transaction ids of the manifest's images.

    :raises DatasetIncomplete: an image without a usable transaction id (missing, empty or
        with a line break)."""
    ids = set()
    for entry in manifest_images(manifest):
        tid = entry.get("transaction_id")
        if tid is None or str(tid) == "" or any(c in str(tid) for c in "\r\n"):
            raise DatasetIncomplete(f"manifest entry without a usable transaction_id: {entry!r}")
        ids.add(str(tid))
    return sorted(ids)


def _describe(storage: Storage, prefix: str, manifest: Manifest, metadata: dict) -> dict:
    """``process_name``, ``deployment_id`` (metadata, else the manifest's ``extra``, else the
    process's ``process_metadata.json`` when the prefix is ``processes/{name}/...``), classes
    (``extra["classes"]``, else the distinct label ids) and images."""
    extra = manifest.extra
    match = re.fullmatch(r"processes/([^/]+)/.*", prefix)
    process_name = metadata.get("process_name") or extra.get("process_name") or (match and match[1]) or ""
    deployment_id = metadata.get("deployment_id", extra.get("deployment_id"))
    if deployment_id is None and process_name and match:
        try:
            deployment_id = (read_metadata(storage, process_name) or {}).get("deployment_id")
        except ValueError:  # not a process name
            deployment_id = None
    classes = extra.get("classes")
    n_classes = len(classes) if classes else len({e.get("label_id") for e in manifest_images(manifest)})
    return {
        "process_name": process_name,
        "deployment_id": "" if deployment_id is None else deployment_id,
        "classes": n_classes,
        "images": len(manifest.files),
    }


def register_dataset(
    storage: Storage,
    dataset_prefix: str,
    registry_root: str | Storage,
    *,
    name: str,
    metadata: dict,
    workdir: str | os.PathLike | None = None,
    log_every: int = 500,
    claim_ttl_seconds: float = 24 * 3600,
    max_tries: int = MAX_TRIES,
) -> dict:
    """Zip the dataset, upload it to the registry and append its row to ``registry.csv``.

    Steps: claim ``name`` -> :func:`zip_dataset` into a temporary folder (``workdir`` or the
    system's) -> :func:`~dataset_ops.storage.publish_file` to ``datasets/{name}.zip`` (written
    under ``_tmp/``, size checked, moved into place) -> ``datasets/{name}.transactions.txt``
    (sorted unique transaction ids of the manifest, one a line; published the same way) -> one
    row appended to ``registry.csv`` (conditional write on S3 / ``flock`` locally, see the
    module docstring) -> claim released. Nothing is listed before it is uploaded and verified;
    when appending fails, the ZIP and the transaction list are deleted again.

    :param storage: where the dataset folder is. :param dataset_prefix: its key, e.g.
        ``processes/p1/dataset``.
    :param registry_root: storage root URI of the registry (``s3://bucket/registry/`` or a path),
        or that storage opened already.
    :param name: dataset name (:func:`check_dataset_name`); also the ZIP's file name.
    :param metadata: ``process_name``, ``deployment_id``, ``dag_run_id``, ``description`` fill
        their columns; any other key goes into the JSON column ``extra``.
    :param workdir: folder for the temporary ZIP (default: the system's temporary folder).
    :param log_every: progress log interval of the zipping, in files.
    :param claim_ttl_seconds: age after which another run's claim on ``name`` counts as dead.
    :param max_tries: conditional-write attempts on S3 before :class:`RegistryBusy`.
    :returns: the row appended (``classes``, ``images``, ``zip_bytes`` as ints) plus
        ``zip_uri`` and ``files`` (ZIP members, manifest included).
    :raises ValueError: an invalid ``name``; :class:`AlreadyRegistered` (name in the registry);
        :class:`UnsafeZipPath` / :class:`DatasetIncomplete` (nothing uploaded).
    :raises RegistrationInProgress: another run is registering ``name``.
    :raises RegistryBusy: the S3 CSV could not be updated in ``max_tries`` attempts (ZIP deleted).
    :raises PublishError: an upload failed verification (nothing registered).
    """
    zip_key, transactions_key, claim_key = _registry_keys(name)
    prefix = dataset_prefix.strip("/")
    registry = _open_registry(registry_root)
    if any(r["name"] == name for r in read_registry(registry)):
        raise AlreadyRegistered(f"dataset {name!r} is registered already")
    _claim(registry, claim_key, claim_ttl_seconds)
    tmp = Path(tempfile.mkdtemp(prefix="dataset-register-", dir=workdir))
    uploaded: list[str] = []
    try:
        if any(r["name"] == name for r in read_registry(registry)):  # registered before our claim
            raise AlreadyRegistered(f"dataset {name!r} is registered already")
        zipped, manifest = _zip(storage, prefix, tmp / f"{name}.zip", max(1, int(log_every)))
        transactions = _transactions(manifest)
        described = _describe(storage, prefix, manifest, metadata)
        uploaded.append(zip_key)
        published = publish_file(registry, zip_key, zipped["path"])
        if published["sha256"] != zipped["sha256"]:  # the local file changed under us
            raise RuntimeError(f"{registry.uri(zip_key)}: sha256 differs from the ZIP written")
        uploaded.append(transactions_key)
        publish(registry, transactions_key, io.BytesIO("".join(f"{t}\n" for t in transactions).encode()))
        extra = {k: v for k, v in metadata.items() if k not in METADATA_COLUMNS}
        row = {
            "name": name,
            "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **described,
            "zip_key": zip_key,
            "zip_bytes": published["bytes"],
            "zip_sha256": published["sha256"],
            "transactions_key": transactions_key,
            "source": storage.uri(prefix),
            "dag_run_id": metadata.get("dag_run_id", ""),
            "description": metadata.get("description", ""),
            "extra": json.dumps(extra, sort_keys=True, default=str) if extra else "",
        }
        _update_object(registry, REGISTRY_CSV, _appender(row), max_tries)
        uploaded.clear()  # listed: keep
        log.info(
            "registered %s: %d images, %d classes, %s bytes at %s",
            name,
            row["images"],
            row["classes"],
            f"{row['zip_bytes']:,}",
            registry.uri(zip_key),
        )
        return {**row, "zip_uri": registry.uri(zip_key), "files": zipped["files"]}
    finally:
        for key in uploaded:  # failed after uploading: nothing of it stays unlisted
            try:
                registry.delete(key)
            except Exception:  # the original error matters more
                log.exception("could not delete %s", registry.uri(key))
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            registry.delete(claim_key)
        except Exception:
            log.exception("could not release the claim %s", registry.uri(claim_key))


def read_registry(registry_root: str | Storage) -> list[dict]:
    """Rows of ``{registry_root}/registry.csv`` in registration order (empty if there is none):
    dicts keyed by the CSV's columns (:data:`REGISTRY_COLUMNS`), values strings except
    ``classes``, ``images`` and ``zip_bytes`` (ints). ``registry_root``: URI or opened Storage."""
    registry = _open_registry(registry_root)
    if not registry.exists(REGISTRY_CSV):
        return []
    with registry.open_read(REGISTRY_CSV) as fh:
        _, rows = _parse(fh.read())
    for row in rows:
        for column in _INT_COLUMNS:
            if str(row.get(column) or "").isdigit():
                row[column] = int(row[column])
    return rows


def registered_transactions(registry_root: str | Storage) -> set[str]:
    """Union of the transaction ids of every registered dataset: the
    ``datasets/*.transactions.txt`` of the rows of ``registry.csv`` (a list whose dataset never
    got its row is not counted). For ``create_dataset``'s ``exclude_transactions``.
    ``registry_root``: URI or opened Storage.

    :raises FileNotFoundError: a registered dataset's transaction list is missing.
    """
    registry = _open_registry(registry_root)
    ids: set[str] = set()
    for row in read_registry(registry):
        key = row.get("transactions_key") or _registry_keys(row["name"])[1]
        with registry.open_read(key) as fh:
            ids.update(line.strip() for line in fh.read().decode("utf-8").splitlines() if line.strip())
    return ids
