"""Training datasets from a process folder: one class folder per label, one image per record.

A process folder (:mod:`dataset_ops.inference.process`) holds ``data/records.parquet`` (the
columns of :func:`dataset_ops.inference.extract.extract_records`) and
``data/reference_data.json`` (``{"model", "references", "labels", "devices"}``, rows as dicts).
The records' images are in an *image store*: a storage root (the Variable
``inference_images_root``, e.g. ``s3://bucket/images/``, or a local folder), the image of a
record at the key ``image_key`` below it.

:func:`create_dataset` lays the dataset out below the process folder::

    dataset/
        {label_id}_{label_name}/{transaction_id}.jpg   one image per record, in its true class
        _manifest.json                                  written LAST: no manifest = incomplete
    reports/
        summary_dataset.csv                             summary_dataset()
        folder_structure.csv                            folder_structure()

A record's class is the label whose ``reference_id`` is the record's ``reference_id`` (the
product really shown, not the model's prediction). Every name put in a key is sanitized
(:func:`safe_name`: only ``[A-Za-z0-9_.-]``, no ``..``, no leading dot), every source key is
checked (no ``..``, no empty part, not absolute) and nothing is written outside the given prefix.

``_manifest.json`` is the suite's dataset manifest (:mod:`dataset_ops.storage.manifest`, format
version 1): ``files`` lists every image (``path`` relative to the dataset folder, ``bytes``,
``sha256``; ``rows`` null), sorted by path; ``producer`` is the DAG run given by the caller;
``status`` is ``complete``, or ``partial`` when selected images were missing from the image
store (``problems`` says how many). The inference fields are in ``extra``::

    transactions   {path: {"transaction_id", "label_id", "reference_id", "device_id",
                           "image_key" (key in the image store)[, "source" (merged datasets)]}}
    classes        {class folder: images in it}          (folders holding at least one image)
    labels         {class folder: {"label_id", "label_name", "reference_id"}}
    skipped        {reason: records}                     (reasons: :data:`SKIP_REASONS`, non-zero only)
    missing        [image_key, ...]                      selected records whose image is not in the store
    params         the arguments (effective limits), "records" read, "images_root"
    process_name, deployment_id                          (created datasets; deployment from the model row)

Datasets written before this format (a ``_manifest.json`` whose ``files`` entries carry the
transaction fields themselves, see :func:`legacy_manifest`) are read as they are.

:func:`merge_datasets` joins complete datasets into one with the same layout (its transactions
carry their ``source`` too) plus ``_merge_report.json``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import re
import tempfile
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataset_ops.storage import HashingReader, LocalStorage, open_storage, read_json, write_json
from dataset_ops.storage.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    ManifestFile,
    manifest_key,
    read_manifest,
    write_manifest,
)

if TYPE_CHECKING:
    import pandas as pd

    from dataset_ops.storage import Storage

log = logging.getLogger(__name__)

RECORDS = "data/records.parquet"
REFERENCE_DATA = "data/reference_data.json"
DATASET_FOLDER = "dataset"
#: The dataset's manifest (:data:`dataset_ops.storage.manifest.MANIFEST_NAME`).
MANIFEST = MANIFEST_NAME
MERGE_REPORT = "_merge_report.json"
REPORTS_FOLDER = "reports"
SUMMARY_CSV = "summary_dataset.csv"
FOLDER_STRUCTURE_CSV = "folder_structure.csv"
#: Fast-mode defaults: the references with most records, and images per reference.
FAST_MAX_REFERENCES = 10
FAST_MAX_IMAGES_PER_REFERENCE = 20
#: Suffix of the dataset's image files (the image store holds JPEGs).
IMAGE_SUFFIX = ".jpg"
#: What :func:`folder_structure` counts as an image (lower-cased file suffixes).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: Longest sanitized name (characters) of a class folder's label part or an image file's stem.
MAX_NAME = 120
#: Lists in a returned summary (XCom) are cut to this many items; the files hold all of them.
MAX_LISTED = 1000

#: Why a record is not in the dataset, in the order they are checked (the first that applies):
#: ``no_transaction_id``; ``duplicate_transaction`` (a transaction id, after sanitizing, seen in
#: an earlier row: the first row is kept); ``no_reference`` (null ``reference_id``);
#: ``not_requested`` (not in ``references``); ``unknown_reference`` (not in the reference data,
#: i.e. unknown to MySQL); ``no_label`` (no label of the model names the reference);
#: ``excluded`` (in ``exclude_transactions``); ``no_image_key``; ``bad_image_key`` (absolute,
#: or with an empty, ``.`` or ``..`` part); ``over_reference_limit`` / ``over_image_limit``
#: (left out by ``max_references`` / ``max_images_per_reference``).
SKIP_REASONS = (
    "no_transaction_id",
    "duplicate_transaction",
    "no_reference",
    "not_requested",
    "unknown_reference",
    "no_label",
    "excluded",
    "no_image_key",
    "bad_image_key",
    "over_reference_limit",
    "over_image_limit",
)
#: Columns of ``summary_dataset.csv``, in order.
SUMMARY_COLUMNS = (
    "transaction_id",
    "class_folder",
    "label_id",
    "label_name",
    "reference_id",
    "device_id",
    "result",
    "top1_label",
    "top1_conf",
    "timestamp",
    "image_path",
    "image_key",
    "bytes",
    "sha256",
)
#: The per-image fields of the manifest's ``extra["transactions"]`` (merged datasets add ``source``).
TRANSACTION_FIELDS = ("transaction_id", "label_id", "reference_id", "device_id", "image_key")
#: Columns of ``folder_structure.csv``, in order.
FOLDER_COLUMNS = ("folder", "leaf", "images", "bytes")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_DOTS = re.compile(r"\.{2,}")


class IncompleteDataset(ValueError):
    """A dataset folder has no usable ``_manifest.json`` (its creation did not finish)."""


# --- names and keys ------------------------------------------------------------------------------
def safe_name(text: object) -> str:
    """``text`` as one safe path part: characters outside ``[A-Za-z0-9_.-]`` become ``_``, runs
    of dots (``..``) become underscores, a leading dot becomes ``_``; at most :data:`MAX_NAME`
    characters; ``"_"`` for an empty result. ``"Crème 1/2"`` -> ``"Cr_me_1_2"``."""
    name = _DOTS.sub(lambda m: "_" * len(m.group()), _UNSAFE.sub("_", str(text)))
    if name.startswith("."):
        name = "_" + name[1:]
    return name[:MAX_NAME] or "_"


def class_folder(label_id: int, label_name: object) -> str:
    """The class folder of a label: ``{label_id}_{safe_name(label_name)}``."""
    return f"{int(label_id)}_{safe_name(label_name if label_name is not None else '')}"


def _clean_prefix(prefix: str, what: str) -> str:
    """``prefix`` without surrounding ``/``. :raises ValueError: empty, or a part that is empty,
    ``.`` or ``..``, or a backslash (it could leave the intended folder)."""
    cleaned = str(prefix).strip("/")
    parts = cleaned.split("/")
    if not cleaned or "\\" in cleaned or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{what} {prefix!r} is not a safe storage prefix (no '..', '.', '//' or '\\')")
    return cleaned


def _safe_key(key: object) -> str | None:
    """``key`` if it is a relative key with no empty, ``.`` or ``..`` part and no backslash."""
    if not isinstance(key, str) or not key or key.startswith("/") or "\\" in key:
        return None
    return key if all(p not in ("", ".", "..") for p in key.split("/")) else None


def _safe_relpath(path: object) -> bool:
    """A dataset-relative file path whose every part is already a :func:`safe_name`."""
    return isinstance(path, str) and bool(path) and all(p and safe_name(p) == p for p in path.split("/"))


def _reports_key(dataset_prefix: str, name: str) -> str:
    """``{parent of dataset_prefix}/reports/{name}`` (``reports/{name}`` at the top level)."""
    parent = dataset_prefix.rpartition("/")[0]
    return f"{parent}/{REPORTS_FOLDER}/{name}" if parent else f"{REPORTS_FOLDER}/{name}"


def _int(value: Any) -> int | None:
    """A plain ``int`` (JSON-safe) of a numpy/pandas integer, None for null/NA."""
    import pandas as pd

    return None if value is None or pd.isna(value) else int(value)


# --- reading -------------------------------------------------------------------------------------
def _read_records(storage: Storage, source: str | os.PathLike, columns: list[str]) -> pd.DataFrame:
    """The ``columns`` of a records Parquet file as a DataFrame (integer columns as nullable
    ``Int64``, ``timestamp`` as UTC datetimes).

    :param source: a local file (a :class:`~pathlib.Path`, or an absolute path of an existing
        file) or a key in ``storage`` (downloaded to a temporary file when the storage is remote).
    :raises FileNotFoundError: no such file / object.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    def load(path) -> pd.DataFrame:
        table = pq.read_table(path, columns=columns)
        return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)

    local = isinstance(source, os.PathLike) or (os.path.isabs(str(source)) and os.path.isfile(str(source)))
    if local:
        return load(os.fspath(source))
    key = str(source)
    if isinstance(storage, LocalStorage):
        path = storage.uri(key)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no records file at {path}")
        return load(path)
    if not storage.exists(key):
        raise FileNotFoundError(f"no records file at {storage.uri(key)}")
    with tempfile.TemporaryDirectory(prefix="dataset-ops-records-") as tmp:
        path = Path(tmp) / "records.parquet"
        with contextlib.closing(storage.open_read(key)) as src, open(path, "wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
        return load(path)


def legacy_manifest(storage: Storage, prefix: str) -> Manifest | None:
    """The ``_manifest.json`` that :func:`create_dataset` and :func:`merge_datasets` wrote before
    the format-1 manifest, as a :class:`~dataset_ops.storage.manifest.Manifest` (``legacy=True``);
    None when there is no such file. The reader for ``read_manifest(..., legacy=...)``.

    The old JSON object: ``{"files": [{"path", "transaction_id", "label_id", "reference_id",
    "device_id", "image_key", "bytes", "sha256"[, "source"]}], "classes", "labels", "skipped",
    "missing", "params", "total_bytes", "created_at"}``. Each entry's fields other than
    ``path``/``bytes``/``sha256`` go to ``extra["transactions"][path]``, the other top-level keys
    to ``extra``; the status is ``complete`` (the old file was written last). An entry without
    ``bytes`` gets the object's current size (0 if there is none: then it is reported missing),
    one without ``sha256`` an empty digest (not checked). Paths are not checked here.

    :raises ManifestError: ``files`` is not a list of objects with string paths.
    """
    data = read_json(storage, manifest_key(prefix))
    if data is None:
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        raise ManifestError(f"{manifest_key(prefix)} has no 'files' list")
    prefix = prefix.strip("/")
    sizes: dict[str, int] | None = None
    entries, transactions = [], {}
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ManifestError(f"{manifest_key(prefix)}: file entry without a path: {entry!r}")
        path, size = entry["path"], entry.get("bytes")
        if size is None:
            if sizes is None:
                sizes = {o.key[len(prefix) + 1 :]: o.size for o in storage.list_objects(f"{prefix}/")}
            size = sizes.get(path, 0)
        entries.append(ManifestFile(path, int(size), str(entry.get("sha256") or "")))
        transactions[path] = {k: v for k, v in entry.items() if k not in ("path", "bytes", "sha256")}
    extra = {k: v for k, v in data.items() if k not in ("files", "total_bytes", "created_at")}
    return Manifest(
        dataset=prefix,
        status="complete",
        files=entries,
        created_at=str(data.get("created_at") or ""),
        extra={**extra, "transactions": transactions},
        legacy=True,
    )


def read_dataset_manifest(storage: Storage, dataset_prefix: str) -> Manifest:
    """The dataset's manifest, format 1 or :func:`legacy_manifest`.

    :raises IncompleteDataset: there is none, it is unreadable, or its status is ``in_progress``.
    """
    try:
        manifest = read_manifest(storage, dataset_prefix, legacy=legacy_manifest)
    except ManifestError as exc:
        raise IncompleteDataset(f"dataset {dataset_prefix!r}: {exc}") from exc
    if manifest is None or manifest.status == "in_progress":
        raise IncompleteDataset(
            f"dataset {dataset_prefix!r} is incomplete: no {MANIFEST} at {storage.uri(dataset_prefix)} "
            "(it is written last; create the dataset again)"
        )
    return manifest


def manifest_images(manifest: Manifest) -> list[dict]:
    """The manifest's images as flat dicts, sorted by path: ``path``, ``bytes``, ``sha256`` and
    the image's ``extra["transactions"]`` fields (:data:`TRANSACTION_FIELDS`, ``source``)."""
    transactions = manifest.extra.get("transactions") or {}
    return [
        {**(transactions.get(f.path) or {}), "path": f.path, "bytes": f.bytes, "sha256": f.sha256}
        for f in sorted(manifest.files, key=lambda f: f.path)
    ]


def _count_classes(paths) -> dict[str, int]:
    """``{class folder: files}`` of dataset-relative ``paths``, sorted by folder."""
    classes: dict[str, int] = {}
    for path in paths:
        folder = path.split("/", 1)[0]
        classes[folder] = classes.get(folder, 0) + 1
    return dict(sorted(classes.items()))


def _write_images_manifest(
    storage: Storage,
    prefix: str,
    images: list[dict],
    *,
    producer: dict | None,
    problems: list[str],
    extra: dict,
) -> Manifest:
    """Write the format-1 manifest of the dataset at ``prefix`` (last): ``images`` (dicts with
    ``path``, ``bytes``, ``sha256`` and the transaction fields) as ``files`` plus
    ``extra["transactions"]``, status ``partial`` when there are ``problems``."""
    transactions = {
        e["path"]: {k: v for k, v in e.items() if k not in ("path", "bytes", "sha256")} for e in images
    }
    manifest = Manifest(
        dataset=prefix,
        producer=dict(producer or {}),
        status="partial" if problems else "complete",
        files=[ManifestFile(e["path"], int(e["bytes"]), e["sha256"]) for e in images],
        problems=problems,
        extra={**extra, "transactions": transactions},
    )
    return write_manifest(storage, manifest)


# --- writing -------------------------------------------------------------------------------------
def _copy_image(storage: Storage, images: Storage, src: str, dst: str) -> tuple[int, str] | None:
    """Stream ``images:src`` to ``storage:dst`` hashing it: ``(bytes, sha256)``, None when the
    image store has no ``src`` (nothing written)."""
    try:
        body = images.open_read(src)
    except FileNotFoundError:
        return None
    with contextlib.closing(body):
        reader = HashingReader(body)
        storage.write_stream(dst, reader)
    return reader.size, reader.sha256.hexdigest()


def _run_parallel(fn, items: list, workers: int) -> list:
    """``[fn(item) for item in items]`` on ``workers`` threads, results in ``items`` order; the
    first exception cancels what has not started and is raised."""
    if not items:
        return []
    with ThreadPoolExecutor(max(1, min(workers, len(items))), thread_name_prefix="dataset") as pool:
        futures = [pool.submit(fn, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f.done() and not f.cancelled() and f.exception()), None)
        if failed is not None:
            for f in futures:
                f.cancel()
            raise failed.exception()
        return [f.result() for f in futures]


def _remove_stale(storage: Storage, prefix: str, keep: set[str]) -> int:
    """Delete the objects below ``prefix/`` whose key is not in ``keep``; returns how many."""
    stale = [o.key for o in storage.list_objects(f"{prefix}/") if o.key not in keep]
    for key in stale:
        storage.delete(key)
    return len(stale)


def _write_csv(storage: Storage, key: str, header, rows) -> int:
    """Write a UTF-8 CSV (header then ``rows``) to ``key``; returns the rows written."""
    count = 0
    with tempfile.TemporaryFile() as tmp:
        text = io.TextIOWrapper(tmp, encoding="utf-8", newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
            count += 1
        text.flush()
        tmp.seek(0)
        storage.write_stream(key, tmp)
        text.detach()
    return count


# --- create --------------------------------------------------------------------------------------
def _labels_by_reference(labels: list[dict]) -> dict[int, dict]:
    """``{reference_id: label row}``; when several labels name one reference, the lowest
    ``label_id`` wins."""
    out: dict[int, dict] = {}
    for lab in sorted(labels, key=lambda r: int(r["label_id"])):
        if lab.get("reference_id") is not None:
            out.setdefault(int(lab["reference_id"]), lab)
    return out


def create_dataset(
    storage: Storage,
    process_prefix: str,
    images_root: str | Storage,
    *,
    fast: bool = False,
    max_references: int | None = None,
    max_images_per_reference: int | None = None,
    exclude_transactions: set[str] | frozenset[str] = frozenset(),
    references: list[int] | None = None,
    workers: int = 8,
    producer: dict | None = None,
) -> dict:
    """Build ``{process_prefix}/dataset/``: each usable record's image copied from the image
    store to ``{label_id}_{label_name}/{transaction_id}.jpg``, then ``_manifest.json`` (last).

    Records come from ``{process_prefix}/data/records.parquet``, labels and references from
    ``{process_prefix}/data/reference_data.json``. A record is skipped, and counted under the
    first reason of :data:`SKIP_REASONS` that applies, when it cannot be placed in a class or
    is not wanted. Selection order (deterministic): per reference, newest ``timestamp`` first,
    then ``transaction_id``; with a reference limit, the references with most usable records
    (ties: lowest ``reference_id``). A selected record whose image is not in the store is listed
    in ``missing`` (not fatal; no other record takes its place).

    Re-running on the same process rebuilds the dataset: the old manifest is removed first,
    files no longer selected are deleted before the new manifest is written.

    Steps: check the limits, read the process's records and reference data, find each record's
    skip reason, select (limits), plan one copy per record, copy the images in parallel, remove
    stale files, write the manifest (module docstring) last.

    :param storage: storage holding the process folder (the dataset is written there).
    :param process_prefix: the process folder's key prefix, e.g. ``processes/dataset_7_201126_v1``.
    :param images_root: the image store: a storage root URI (``s3://bucket/images/``, a local
        path) or a :class:`~dataset_ops.storage.Storage`; images are read at ``image_key``.
    :param fast: a small dataset quickly: ``max_references`` defaults to
        :data:`FAST_MAX_REFERENCES` (10) and ``max_images_per_reference`` to
        :data:`FAST_MAX_IMAGES_PER_REFERENCE` (20). The limits apply without ``fast`` too when given.
    :param exclude_transactions: transaction ids to leave out (already in a registered dataset).
    :param references: only these reference ids (e.g. the reviewed ones); None: all.
    :param workers: threads copying images (>= 1).
    :param producer: ``{"dag_id", "run_id"}`` of the DAG run creating it, for the manifest.
    :returns: ``{"prefix": f"{process_prefix}/dataset", "manifest": key, "records": rows read,
        "selected": records selected, "images": files written, "bytes": their total size,
        "classes": {folder: images}, "skipped": {reason: records}, "missing": [image_key, ...]
        (at most :data:`MAX_LISTED`), "missing_count", "seconds"}``.
    :raises ValueError: an unsafe ``process_prefix`` or a limit / ``workers`` below 1.
    :raises FileNotFoundError: no records file or no reference data in the process folder.
    :raises Exception: a storage error other than a missing image (e.g. access denied) is
        raised as it is; the dataset then has no manifest (incomplete).
    """
    started = time.monotonic()
    process_prefix = _clean_prefix(process_prefix, "process_prefix")
    max_references, max_images_per_reference = _effective_limits(
        fast, max_references, max_images_per_reference, workers
    )
    images = open_storage(images_root) if isinstance(images_root, str) else images_root
    prefix = f"{process_prefix}/{DATASET_FOLDER}"
    reference_data, df = _read_process(storage, process_prefix)
    label_of = _labels_by_reference(reference_data.get("labels") or [])
    known = {int(r["reference_id"]) for r in reference_data.get("references") or []}
    reason, names = _skip_reasons(df, label_of, known, references, exclude_transactions)
    usable = _select(df, reason, names, max_references, max_images_per_reference)
    skipped = _skipped_counts(reason)
    tasks, labels_meta = _plan_images(usable, label_of)

    storage.delete(manifest_key(prefix))  # from here until the end the dataset is incomplete
    files, missing = _copy_images(storage, images, prefix, tasks, workers)
    stale = _remove_stale(storage, prefix, {f"{prefix}/{f['path']}" for f in files})

    classes = _count_classes(f["path"] for f in files)
    total_bytes = sum(f["bytes"] for f in files)
    params = {
        "process_prefix": process_prefix,
        "images_root": images_root if isinstance(images_root, str) else images.uri(""),
        "fast": bool(fast),
        "max_references": max_references,
        "max_images_per_reference": max_images_per_reference,
        "references": None if references is None else sorted({int(r) for r in references}),
        "exclude_transactions": len(exclude_transactions),
        "records": len(df),
        "workers": int(workers),
    }
    _write_created_manifest(
        storage, prefix, reference_data, files, missing, labels_meta, skipped, params, producer
    )
    log.info(
        "dataset %s: %d images in %d classes (%d bytes) from %d records; skipped %s; %d missing "
        "images; %d stale files removed",
        storage.uri(prefix),
        len(files),
        len(classes),
        total_bytes,
        len(df),
        skipped,
        len(missing),
        stale,
    )
    return {
        "prefix": prefix,
        "manifest": manifest_key(prefix),
        "records": len(df),
        "selected": len(tasks),
        "images": len(files),
        "bytes": total_bytes,
        "classes": classes,
        "skipped": skipped,
        "missing": missing[:MAX_LISTED],
        "missing_count": len(missing),
        "seconds": round(time.monotonic() - started, 3),
    }


def _write_created_manifest(
    storage: Storage,
    prefix: str,
    reference_data: dict,
    files: list[dict],
    missing: list[str],
    labels_meta: dict[str, dict],
    skipped: dict[str, int],
    params: dict,
    producer: dict | None,
) -> Manifest:
    """The new dataset's manifest (written last, layout in the module docstring): ``partial``
    when selected images were missing from the image store, ``complete`` otherwise."""
    classes = _count_classes(f["path"] for f in files)
    model = (reference_data.get("model") or [{}])[0]
    problems = []
    if missing:
        problems.append(f"{len(missing)} selected image(s) not in the image store, e.g. {missing[:5]}")
    return _write_images_manifest(
        storage,
        prefix,
        files,
        producer=producer,
        problems=problems,
        extra={
            "process_name": params["process_prefix"].rpartition("/")[2],
            "deployment_id": model.get("deployment_id"),
            "classes": classes,
            "labels": {k: labels_meta[k] for k in classes},
            "skipped": skipped,
            "missing": missing,
            "params": params,
        },
    )


def _effective_limits(
    fast: bool, max_references: int | None, max_images_per_reference: int | None, workers: int
) -> tuple[int | None, int | None]:
    """``(max_references, max_images_per_reference)`` as ints or None, with the fast-mode
    defaults filled in. :raises ValueError: a limit or ``workers`` below 1."""
    if fast:
        max_references = FAST_MAX_REFERENCES if max_references is None else max_references
        if max_images_per_reference is None:
            max_images_per_reference = FAST_MAX_IMAGES_PER_REFERENCE
    for name, value in (
        ("max_references", max_references),
        ("max_images_per_reference", max_images_per_reference),
        ("workers", workers),
    ):
        if value is not None and int(value) < 1:
            raise ValueError(f"{name} must be at least 1, not {value!r}")
    return (
        None if max_references is None else int(max_references),
        None if max_images_per_reference is None else int(max_images_per_reference),
    )


def _read_process(storage: Storage, process_prefix: str) -> tuple[dict, pd.DataFrame]:
    """The process's reference data (``data/reference_data.json``) and the records columns a
    dataset needs (``data/records.parquet``). :raises FileNotFoundError: either is missing."""
    reference_data = read_json(storage, f"{process_prefix}/{REFERENCE_DATA}")
    if reference_data is None:
        raise FileNotFoundError(f"no reference data at {storage.uri(f'{process_prefix}/{REFERENCE_DATA}')}")
    df = _read_records(
        storage,
        f"{process_prefix}/{RECORDS}",
        ["transaction_id", "device_id", "reference_id", "timestamp", "image_key"],
    )
    return reference_data, df


def _skip_reasons(
    df: pd.DataFrame,
    label_of: dict[int, dict],
    known: set[int],
    references: list[int] | None,
    exclude_transactions: set[str] | frozenset[str],
) -> tuple[pd.Series, pd.Series]:
    """Why each record is left out, before the limits: a Series aligned with ``df`` holding the
    first reason of :data:`SKIP_REASONS` that applies (None: usable), and the records' sanitized
    transaction ids (the image file stems; None where there is no id)."""
    import pandas as pd

    reason = pd.Series([None] * len(df), index=df.index, dtype=object)

    def mark(mask, why: str) -> None:
        reason.loc[mask.fillna(False).astype(bool) & reason.isna()] = why

    names = df["transaction_id"].map(lambda t: safe_name(t) if isinstance(t, str) and t else None)
    mark(names.isna(), "no_transaction_id")
    mark(names.duplicated() & names.notna(), "duplicate_transaction")
    refs = df["reference_id"]
    mark(refs.isna(), "no_reference")
    if references is not None:
        wanted = {int(r) for r in references}
        mark(~refs.isin(wanted), "not_requested")
    mark(~refs.isin(known), "unknown_reference")
    mark(~refs.isin(set(label_of)), "no_label")
    if exclude_transactions:
        mark(df["transaction_id"].isin(set(exclude_transactions)), "excluded")
    mark(df["image_key"].isna(), "no_image_key")
    mark(df["image_key"].map(lambda k: _safe_key(k) is None), "bad_image_key")
    return reason, names


def _select(
    df: pd.DataFrame,
    reason: pd.Series,
    names: pd.Series,
    max_references: int | None,
    max_images_per_reference: int | None,
) -> pd.DataFrame:
    """The usable records (``reason`` None) with their file ``stem``, newest first then by
    transaction id, cut to the limits: the ``max_references`` references with most records
    (ties: lowest id), then ``max_images_per_reference`` per reference. Records left out by a
    limit get ``over_reference_limit`` / ``over_image_limit`` in ``reason`` (changed in place)."""
    usable = df[reason.isna()].assign(stem=names[reason.isna()])
    usable = usable.sort_values(
        ["timestamp", "transaction_id"], ascending=[False, True], na_position="last", kind="stable"
    )
    if max_references is not None:
        counts = usable.groupby("reference_id").size()
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], int(kv[0])))
        chosen = {int(ref) for ref, _ in ranked[:max_references]}
        out = ~usable["reference_id"].isin(chosen)
        reason.loc[usable.index[out.to_numpy()]] = "over_reference_limit"
        usable = usable[~out]
    if max_images_per_reference is not None:
        rank = usable.groupby("reference_id").cumcount()
        out = rank >= max_images_per_reference
        reason.loc[usable.index[out.to_numpy()]] = "over_image_limit"
        usable = usable[~out]
    return usable


def _skipped_counts(reason: pd.Series) -> dict[str, int]:
    """``{reason: records}`` in :data:`SKIP_REASONS` order, non-zero counts only."""
    counts = {why: int(n) for why, n in reason.value_counts().items()}
    return {why: counts[why] for why in SKIP_REASONS if counts.get(why)}


def _plan_images(usable: pd.DataFrame, label_of: dict[int, dict]) -> tuple[list[dict], dict[str, dict]]:
    """One copy task per selected record (``path`` in its class folder plus the
    :data:`TRANSACTION_FIELDS`), and ``{class folder: {"label_id", "label_name", "reference_id"}}``."""
    labels_meta: dict[str, dict] = {}
    tasks = []
    for row in usable.itertuples(index=False):
        lab = label_of[int(row.reference_id)]
        folder = class_folder(lab["label_id"], lab.get("label_name"))
        labels_meta[folder] = {
            "label_id": int(lab["label_id"]),
            "label_name": lab.get("label_name"),
            "reference_id": int(lab["reference_id"]),
        }
        tasks.append(
            {
                "path": f"{folder}/{row.stem}{IMAGE_SUFFIX}",
                "transaction_id": row.transaction_id,
                "label_id": int(lab["label_id"]),
                "reference_id": int(row.reference_id),
                "device_id": _int(row.device_id),
                "image_key": row.image_key,
            }
        )
    return tasks, labels_meta


def _copy_images(
    storage: Storage, images: Storage, prefix: str, tasks: list[dict], workers: int
) -> tuple[list[dict], list[str]]:
    """Copy each task's image to ``{prefix}/{path}`` on ``workers`` threads: the files written
    (the task plus ``bytes`` and ``sha256``, sorted by path) and the sorted image keys the image
    store does not have."""
    results = _run_parallel(
        lambda t: _copy_image(storage, images, t["image_key"], f"{prefix}/{t['path']}"), tasks, workers
    )
    files, missing = [], []
    for task, result in zip(tasks, results, strict=True):
        if result is None:
            missing.append(task["image_key"])
        else:
            files.append({**task, "bytes": result[0], "sha256": result[1]})
    files.sort(key=lambda f: f["path"])
    missing.sort()
    return files, missing


# --- reports -------------------------------------------------------------------------------------
def summary_dataset(
    storage: Storage,
    dataset_prefix: str,
    records_path_or_key: str | os.PathLike,
    *,
    report_key: str | None = None,
) -> dict:
    """Write a CSV crossing every image of the dataset (from its ``_manifest.json``) with its
    record: one row per image, columns :data:`SUMMARY_COLUMNS`, sorted by ``image_path``.

    ``image_path`` is relative to the dataset folder; ``top1_label``/``top1_conf`` are the
    record's ``label_1``/``conf_1`` (confidence 0..1); ``timestamp`` is ISO 8601 UTC with
    milliseconds; ``bytes`` is the image's size. An image whose transaction is not in the
    records file keeps the manifest's columns and leaves the record's empty (counted in
    ``without_record``).

    :param dataset_prefix: the dataset folder, e.g. ``processes/p/dataset``.
    :param records_path_or_key: the records Parquet file: a local path (a ``Path``, or an
        absolute path of an existing file) or a key in ``storage``.
    :param report_key: where to write; default ``{parent of dataset_prefix}/reports/summary_dataset.csv``
        (the process's ``reports/`` folder for a dataset made by :func:`create_dataset`).
    :returns: ``{"rows", "key", "without_record"}``.
    :raises IncompleteDataset: the dataset has no manifest.
    :raises FileNotFoundError: no records file.
    """
    import pandas as pd

    dataset_prefix = _clean_prefix(dataset_prefix, "dataset_prefix")
    key = _clean_prefix(report_key, "report_key") if report_key else _reports_key(dataset_prefix, SUMMARY_CSV)
    manifest = read_dataset_manifest(storage, dataset_prefix)
    files = manifest_images(manifest)
    records = _read_records(
        storage,
        records_path_or_key,
        ["transaction_id", "device_id", "reference_id", "result", "timestamp", "label_1", "conf_1"],
    )
    wanted = {f["transaction_id"] for f in files}
    records = records[records["transaction_id"].isin(wanted)].drop_duplicates("transaction_id")
    by_tx = {row.transaction_id: row for row in records.itertuples(index=False)}
    labels = manifest.extra.get("labels") or {}
    without = 0

    def rows():
        nonlocal without
        for f in files:
            folder = f["path"].split("/", 1)[0]
            rec = by_tx.get(f["transaction_id"])
            if rec is None:
                without += 1
            ts = None if rec is None or pd.isna(rec.timestamp) else rec.timestamp
            conf = None if rec is None or pd.isna(rec.conf_1) else float(rec.conf_1)
            device = f.get("device_id")
            if device is None and rec is not None:
                device = _int(rec.device_id)
            yield (
                f["transaction_id"],
                folder,
                f.get("label_id"),
                (labels.get(folder) or {}).get("label_name", folder.partition("_")[2]),
                f.get("reference_id"),
                device,
                None if rec is None or pd.isna(rec.result) else rec.result,
                None if rec is None else _int(rec.label_1),
                conf,
                None if ts is None else ts.isoformat(timespec="milliseconds"),
                f["path"],
                f.get("image_key"),
                f.get("bytes"),
                f.get("sha256"),
            )

    count = _write_csv(storage, key, SUMMARY_COLUMNS, rows())
    log.info("dataset %s: %s (%d rows, %d without record)", dataset_prefix, key, count, without)
    return {"rows": count, "key": key, "without_record": without}


def folder_structure(storage: Storage, dataset_prefix: str, *, report_key: str | None = None) -> dict:
    """Write a CSV of the dataset's folders from a listing of the storage (not the manifest):
    one row per folder that directly holds images (files whose suffix is in
    :data:`IMAGE_SUFFIXES`), columns :data:`FOLDER_COLUMNS`: ``folder`` relative to the dataset
    folder (``.`` for the dataset folder itself), ``leaf`` (true: no sub-folder holds files; in
    the class layout every class folder), ``images`` and their ``bytes``; sorted by folder.
    Other files (``_manifest.json``, ``_merge_report.json``) are not counted.

    :param report_key: default ``{parent of dataset_prefix}/reports/folder_structure.csv``.
    :returns: ``{"folders": rows, "images": total images, "key"}``.
    """
    dataset_prefix = _clean_prefix(dataset_prefix, "dataset_prefix")
    key = (
        _clean_prefix(report_key, "report_key")
        if report_key
        else _reports_key(dataset_prefix, FOLDER_STRUCTURE_CSV)
    )
    cut = len(dataset_prefix) + 1
    counts: dict[str, list[int]] = {}
    folders_with_files: set[str] = set()
    for obj in storage.list_objects(f"{dataset_prefix}/"):
        rel = obj.key[cut:]
        folder, _, name = rel.rpartition("/")
        folder = folder or "."
        folders_with_files.add(folder)
        if name.startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        entry = counts.setdefault(folder, [0, 0])
        entry[0] += 1
        entry[1] += obj.size
    parents = set()
    for folder in folders_with_files - {"."}:
        parts = folder.split("/")
        parents |= {"/".join(parts[:i]) for i in range(1, len(parts))}
        parents.add(".")
    rows = [(f, f not in parents, n, size) for f, (n, size) in sorted(counts.items())]
    _write_csv(storage, key, FOLDER_COLUMNS, rows)
    total = sum(r[2] for r in rows)
    log.info("dataset %s: %s (%d folders, %d images)", dataset_prefix, key, len(rows), total)
    return {"folders": len(rows), "images": total, "key": key}


# --- merge ---------------------------------------------------------------------------------------
def merge_datasets(
    storage: Storage,
    sources: list[str],
    target_prefix: str,
    *,
    workers: int = 8,
    producer: dict | None = None,
) -> dict:
    """Join complete datasets into ``target_prefix`` (same class-folder layout, server-side
    copies), then ``_merge_report.json``, then ``_manifest.json`` (last).

    Sources are taken in the given order, each one's files in path order; a file is compared
    with what is already kept for its ``transaction_id``:

    * same class folder and same sha256: a *duplicate*, kept once (counted);
    * another class folder (``different_class``) or the same path with other bytes
      (``different_content``): a *conflict*: the first source's file is kept, the other is not
      copied, and both are listed (source, path, label_id, bytes, sha256) in the report;
    * a different transaction at an already used path (``same_path``, sanitized names that
      collide): a conflict too.

    A manifest entry whose file is absent from its source is listed in ``missing_in_source``
    (not copied). Files already in ``target_prefix`` that the merge does not produce are deleted.
    The target manifest's transactions carry their ``source``; ``extra["skipped"]`` counts
    ``duplicate``, ``conflict`` and ``missing_in_source``; ``extra["missing"]`` joins the sources'
    missing images; the status is ``partial`` when a file was missing in its source or an image
    is missing. Sources may be in the format-1 manifest or the legacy one (:func:`legacy_manifest`).

    Steps: check the prefixes, read the sources' manifests, plan (duplicates, conflicts), copy
    and check sizes, remove stale files, write the report, write the manifest.

    :param sources: dataset folders (each with ``_manifest.json``), e.g. ``processes/p/dataset``.
    :param target_prefix: the merged dataset's folder; not a source, not inside one, not holding one.
    :param producer: ``{"dag_id", "run_id"}`` of the DAG run merging, for the manifest.
    :returns: ``{"prefix", "manifest", "report", "files", "bytes", "classes", "duplicates",
        "conflicts": [...] (at most :data:`MAX_LISTED`), "conflict_count", "missing_in_source",
        "sources": [{"prefix", "files", "copied", "duplicates", "conflicts"}], "seconds"}``.
    :raises IncompleteDataset: (a ValueError) a source has no manifest: names the source; nothing
        is written.
    :raises ValueError: no sources, a source given twice, overlapping prefixes, an unsafe
        prefix, or a manifest path that is not a safe relative path.
    :raises RuntimeError: a copied file's size differs from its source manifest's ``bytes``.
    """
    started = time.monotonic()
    target, srcs = _merge_prefixes(sources, target_prefix)
    manifests = [_read_source(storage, src) for src in srcs]
    plan = _plan_merge(srcs, manifests)

    key, report_key = manifest_key(target), f"{target}/{MERGE_REPORT}"
    storage.delete(key)  # incomplete from here on
    storage.delete(report_key)
    files, missing_in_source = _copy_merged(storage, target, plan, workers)
    for e in missing_in_source:
        plan.per_source[srcs.index(e["source"])]["copied"] -= 1

    write_json(storage, report_key, _merge_report(target, plan, files, missing_in_source))
    manifest = _write_merged_manifest(
        storage, target, srcs, manifests, plan, files, missing_in_source, workers=workers, producer=producer
    )
    classes = manifest.extra["classes"]
    total_bytes = sum(e["bytes"] for e in files)
    log.info(
        "merged %s into %s: %d files, %d duplicates, %d conflicts, %d missing in their source",
        srcs,
        target,
        len(files),
        plan.duplicates,
        len(plan.conflicts),
        len(missing_in_source),
    )
    return {
        "prefix": target,
        "manifest": key,
        "report": report_key,
        "files": len(files),
        "bytes": total_bytes,
        "classes": classes,
        "duplicates": plan.duplicates,
        "conflicts": plan.conflicts[:MAX_LISTED],
        "conflict_count": len(plan.conflicts),
        "missing_in_source": len(missing_in_source),
        "sources": plan.per_source,
        "seconds": round(time.monotonic() - started, 3),
    }


def _merge_prefixes(sources: list[str], target_prefix: str) -> tuple[str, list[str]]:
    """``(target, sources)`` cleaned. :raises ValueError: an unsafe prefix, no sources, a source
    given twice, or a source and the target inside one another."""
    target = _clean_prefix(target_prefix, "target_prefix")
    srcs = [_clean_prefix(s, "source") for s in sources]
    if not srcs:
        raise ValueError("merge_datasets needs at least one source dataset")
    if len(set(srcs)) != len(srcs):
        raise ValueError(f"a source is given twice: {srcs}")
    for src in srcs:
        if src == target or target.startswith(src + "/") or src.startswith(target + "/"):
            raise ValueError(f"target {target!r} and source {src!r} overlap")
    return target, srcs


def _read_source(storage: Storage, src: str) -> Manifest:
    """A source's manifest. :raises IncompleteDataset: it has none. :raises ValueError: a path
    that is not ``{class folder}/{file}`` of safe names."""
    manifest = read_dataset_manifest(storage, src)
    for f in manifest.files:
        if not _safe_relpath(f.path) or "/" not in f.path:
            raise ValueError(f"source {src!r}: manifest path {f.path!r} is not a safe class/file path")
    return manifest


@dataclass
class _MergePlan:
    """What :func:`merge_datasets` keeps: ``kept`` (``{path: image dict with source}``), the
    conflicts, duplicates, ``{class folder: label}`` and per-source counts."""

    kept: dict[str, dict] = field(default_factory=dict)
    conflicts: list[dict] = field(default_factory=list)
    labels: dict[str, dict] = field(default_factory=dict)
    per_source: list[dict] = field(default_factory=list)
    duplicates: int = 0


def _conflict_side(entry: dict) -> dict:
    """The fields of a conflict's ``kept`` / ``other`` image in the merge report."""
    return {k: entry.get(k) for k in ("source", "path", "label_id", "reference_id", "bytes", "sha256")}


def _plan_merge(srcs: list[str], manifests: list[Manifest]) -> _MergePlan:
    """Walk the sources in order, each one's images by path, and decide per image (see
    :func:`merge_datasets`): keep, count as a duplicate, or record a conflict."""
    plan = _MergePlan()
    kept_by_tx: dict[str, dict] = {}
    for src, manifest in zip(srcs, manifests, strict=True):
        stats = {"prefix": src, "files": 0, "copied": 0, "duplicates": 0, "conflicts": 0}
        src_labels = manifest.extra.get("labels") or {}
        for f in manifest_images(manifest):
            stats["files"] += 1
            entry = {**f, "source": src}
            first = kept_by_tx.get(f["transaction_id"])
            kind = None
            if first is not None:
                if first["path"].split("/")[0] != f["path"].split("/")[0]:
                    kind = "different_class"
                elif first["sha256"] != f["sha256"] or first["bytes"] != f["bytes"]:
                    kind = "different_content"
                else:
                    plan.duplicates += 1
                    stats["duplicates"] += 1
                    continue
            elif f["path"] in plan.kept:
                first, kind = plan.kept[f["path"]], "same_path"
            if kind:
                plan.conflicts.append(
                    {
                        "kind": kind,
                        "transaction_id": f["transaction_id"],
                        "kept": _conflict_side(first),
                        "other": _conflict_side(entry),
                    }
                )
                stats["conflicts"] += 1
                continue
            kept_by_tx[f["transaction_id"]] = plan.kept[f["path"]] = entry
            folder = f["path"].split("/")[0]
            if folder in src_labels:
                plan.labels.setdefault(folder, src_labels[folder])
            stats["copied"] += 1
        plan.per_source.append(stats)
    return plan


def _copy_merged(
    storage: Storage, target: str, plan: _MergePlan, workers: int
) -> tuple[list[dict], list[dict]]:
    """Copy the kept images into ``target`` (server-side, ``workers`` threads), check their sizes
    against the manifests and delete the target's other files: ``(images copied, sorted by path;
    conflict sides of those missing in their source)``.

    :raises RuntimeError: a copied file's size differs from its source manifest's ``bytes``."""
    chosen = sorted(plan.kept.values(), key=lambda e: e["path"])

    def copy(entry: dict) -> bool:
        try:
            storage.copy(f"{entry['source']}/{entry['path']}", f"{target}/{entry['path']}")
        except FileNotFoundError:
            return False
        return True

    copied = _run_parallel(copy, chosen, workers)
    files = [e for e, ok in zip(chosen, copied, strict=True) if ok]
    missing_in_source = [_conflict_side(e) for e, ok in zip(chosen, copied, strict=True) if not ok]
    keep = {f"{target}/{e['path']}" for e in files}
    sizes = {o.key: o.size for o in storage.list_objects(f"{target}/")}
    wrong = [e["path"] for e in files if sizes.get(f"{target}/{e['path']}") != e["bytes"]]
    if wrong:
        raise RuntimeError(
            f"merge into {target}: {len(wrong)} copied files differ in size from their source manifest, "
            f"e.g. {wrong[:5]}"
        )
    for key in set(sizes) - keep:
        storage.delete(key)
    return files, missing_in_source


def _merge_report(target: str, plan: _MergePlan, files: list[dict], missing_in_source: list[dict]) -> dict:
    """The ``_merge_report.json`` object: ``target``, per-source counts, files copied,
    duplicates, every conflict, the images missing in their source and ``created_at``."""
    return {
        "target": target,
        "sources": plan.per_source,
        "files": len(files),
        "duplicates": plan.duplicates,
        "conflicts": plan.conflicts,
        "missing_in_source": missing_in_source,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _write_merged_manifest(
    storage: Storage,
    target: str,
    srcs: list[str],
    manifests: list[Manifest],
    plan: _MergePlan,
    files: list[dict],
    missing_in_source: list[dict],
    *,
    workers: int,
    producer: dict | None,
) -> Manifest:
    """The merged dataset's manifest (written last): its images with their ``source``, classes,
    labels, skip counts, the sources' missing images not copied from elsewhere, the parameters,
    the deployment when all sources name the same one; ``partial`` with the reasons when files
    were missing in their source or images are missing."""
    classes = _count_classes(e["path"] for e in files)
    present = {e.get("image_key") for e in files}
    missing = sorted({k for m in manifests for k in m.extra.get("missing") or []} - present)
    skipped = {
        "duplicate": plan.duplicates,
        "conflict": len(plan.conflicts),
        "missing_in_source": len(missing_in_source),
    }
    problems = []
    if missing_in_source:
        problems.append(f"{len(missing_in_source)} file(s) listed by a source are missing there")
    if missing:
        problems.append(f"{len(missing)} image(s) of the sources were missing from the image store")
    deployments = {m.extra.get("deployment_id") for m in manifests}
    deployment = deployments.pop() if len(deployments) == 1 else None
    return _write_images_manifest(
        storage,
        target,
        files,
        producer=producer,
        problems=problems,
        extra={
            **({} if deployment is None else {"deployment_id": deployment}),
            "classes": classes,
            "labels": {k: plan.labels[k] for k in classes if k in plan.labels},
            "skipped": {k: v for k, v in skipped.items() if v},
            "missing": missing,
            "params": {"sources": srcs, "target_prefix": target, "workers": int(workers)},
        },
    )
