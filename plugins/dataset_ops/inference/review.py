"""Image review of a process: the references and devices marked in the report workbook -> a few
images of each, downloaded into the process folder, and a log of them in the workbook.

Flow (:func:`review`): the report workbook ``reports/dataset_*.xlsx`` of the process (the newest
by name unless named) -> :func:`marked_selection` (rows of ``References``/``Devices`` whose
``revisar_imagenes`` cell is not blank) or an explicit selection -> :func:`check_selection`
(every id known to the process, before anything is downloaded) -> :func:`pick_images` ->
:func:`download_images` -> :func:`append_log_sheets` (sheets ``revisar_imagenes_bajadas`` and
``devices_imagenes_bajadas``) -> the workbook published back, the step recorded in
``process_metadata.json`` and ``logs/review_images.json``.

Where the images go, below ``processes/{process_name}/``::

    images/productos/{reference_id}_{reference_code}/{correct|incorrect}/{transaction_id}.jpg
    images/devices/{device_id}_{device_code}/{correct|incorrect}/{transaction_id}.jpg

``correct``: the top-1 label's reference (MySQL ``labels.reference_id``) is the record's
reference; ``incorrect``: anything else (a wrong reference, a label without reference, no
label). A reference MySQL does not know gets the code ``unknown``. Folder and file names keep
only ``[A-Za-z0-9_.-]`` (anything else, and ``..``, becomes ``_``), never start with a dot and
are at most 100 characters, so a code can never reach outside its folder. The file extension
is the image key's when it is a usual image one (``.jpg .jpeg .png .webp .bmp .gif .tif
.tiff``), else ``.jpg``.

Images are read from the images root (``s3://bucket/images/`` or a local folder, opened with
:func:`dataset_ops.storage.open_storage`) at their record's ``image_key`` below it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from dataset_ops.inference.analysis import label_references
from dataset_ops.inference.process import process_prefix, record_step

if TYPE_CHECKING:
    from dataset_ops.storage import Storage

log = logging.getLogger(__name__)

RECORDS = "data/records.parquet"
REFERENCE_DATA = "data/reference_data.json"
REPORTS = "reports"
#: The mark column of the ``References`` and ``Devices`` sheets.
MARK_COLUMN = "revisar_imagenes"
#: Selection key -> (sheet, id column) of the report workbook.
SHEETS = {"references": ("References", "reference_id"), "devices": ("Devices", "device_id")}
#: The log sheets: reference picks, device picks.
REFERENCE_LOG_SHEET = "revisar_imagenes_bajadas"
DEVICE_LOG_SHEET = "devices_imagenes_bajadas"
#: Columns of the log sheets (and keys of a log row), in order.
LOG_COLUMNS = (
    "scope",
    "item_id",
    "kind",
    "transaction_id",
    "timestamp",
    "reference_id",
    "device_id",
    "top1_label",
    "conf_1",
    "image_key",
    "target",
    "status",
    "bytes",
    "sha256",
    "error",
)
KINDS = ("correct", "incorrect", "both")
STATUSES = ("downloaded", "missing", "failed", "dry_run")
UNKNOWN_CODE = "unknown"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_UNSAFE = re.compile(r"(?:[^A-Za-z0-9_.-]|\.{2,})+")
_MAX_NAME = 100


# --- selection -----------------------------------------------------------------------------------
def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _as_id(value: Any) -> int | None:
    """``value`` as an integer id (int, integral float, digits text), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return None


def marked_selection(workbook: Path) -> dict[str, list[int]]:
    """The references and devices marked for review in the report workbook.

    Reads the sheets ``References`` and ``Devices`` (openpyxl, read-only); columns are found by
    their header (row 1): ``reference_id`` / ``device_id`` and ``revisar_imagenes``. A row is
    marked when its ``revisar_imagenes`` cell holds anything but blanks (``x``, ``1``, ``sí``...).
    Only marked rows are checked.

    :returns: ``{"references": [id, ...], "devices": [id, ...]}``, in sheet order, no duplicates
        (empty lists when nothing is marked).
    :raises ValueError: a missing sheet or column, or a marked row whose id is not an integer
        (the message names the file, the sheet and the Excel row number).
    :raises FileNotFoundError: no such file.
    """
    import openpyxl

    path = Path(workbook)
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        selection: dict[str, list[int]] = {}
        for key, (sheet, id_column) in SHEETS.items():
            if sheet not in book.sheetnames:
                raise ValueError(f"{path}: no sheet {sheet!r} (sheets: {', '.join(book.sheetnames)})")
            rows = book[sheet].iter_rows(values_only=True)
            header = [str(v).strip() if v is not None else "" for v in next(rows, ())]
            missing = [c for c in (id_column, MARK_COLUMN) if c not in header]
            if missing:
                raise ValueError(
                    f"{path}: sheet {sheet!r}: no column {' or '.join(map(repr, missing))} in row 1"
                )
            id_at, mark_at = header.index(id_column), header.index(MARK_COLUMN)
            ids: list[int] = []
            for number, row in enumerate(rows, 2):
                mark = row[mark_at] if mark_at < len(row) else None
                if _blank(mark):
                    continue
                value = row[id_at] if id_at < len(row) else None
                item = _as_id(value)
                if item is None:
                    raise ValueError(
                        f"{path}: sheet {sheet!r}, row {number}: {id_column} {value!r} is not an integer "
                        f"(the row is marked {MARK_COLUMN}={mark!r})"
                    )
                if item not in ids:
                    ids.append(item)
            selection[key] = ids
        return selection
    finally:
        book.close()


def normalize_selection(selection: Mapping[str, Iterable[Any]]) -> dict[str, list[int]]:
    """``{"references": [int], "devices": [int]}`` from a selection whose ids may be integer
    text (DAG Params); a missing key is an empty list; duplicates are dropped, order kept.

    :raises ValueError: another key, or an id that is not an integer.
    """
    if not isinstance(selection, Mapping):
        raise ValueError(
            f"a selection is a mapping {{'references': [...], 'devices': [...]}}, not {selection!r}"
        )
    extra = set(selection) - set(SHEETS)
    if extra:
        raise ValueError(f"selection: unknown keys {sorted(extra)} (expected 'references' and 'devices')")
    out: dict[str, list[int]] = {}
    for key in SHEETS:
        values = selection.get(key) or []
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise ValueError(f"selection[{key!r}] must be a list of ids, not {values!r}")
        ids: list[int] = []
        for value in values:
            item = _as_id(value)
            if item is None:
                raise ValueError(f"selection[{key!r}]: {value!r} is not an integer id")
            if item not in ids:
                ids.append(item)
        out[key] = ids
    return out


def _read_records(records_path: Path, columns: Sequence[str]):
    import pyarrow.parquet as pq

    return pq.read_table(records_path, columns=list(columns)).to_pandas()


def check_selection(
    selection: Mapping[str, Iterable[Any]], reference_data: Mapping[str, list[dict]], records_path: Path
) -> None:
    """Check that the process knows every selected reference and device: it is in the records
    (``data/records.parquet``) or in the MySQL reference data (``data/reference_data.json``).
    Call it before downloading anything.

    :raises ValueError: unknown ids (all of them listed, references and devices), or a malformed
        selection (see :func:`normalize_selection`).
    """
    wanted = normalize_selection(selection)
    df = _read_records(records_path, ["reference_id", "device_id"])
    known = {
        "references": set(df["reference_id"].dropna().astype("int64"))
        | {int(r["reference_id"]) for r in reference_data.get("references") or ()},
        "devices": set(df["device_id"].dropna().astype("int64"))
        | {int(d["device_id"]) for d in reference_data.get("devices") or ()},
    }
    problems = [
        f"{key} {', '.join(map(str, unknown))}"
        for key in SHEETS
        if (unknown := [i for i in wanted[key] if i not in known[key]])
    ]
    if problems:
        raise ValueError(
            "selection names items this process does not know (not in its records nor in its MySQL "
            f"reference data): {'; '.join(problems)}; nothing was downloaded"
        )


# --- picking ------------------------------------------------------------------------------------
def safe_name(text: Any, default: str = "x") -> str:
    """``text`` as one safe path segment: each run of characters outside ``[A-Za-z0-9_.-]`` or
    of two or more dots becomes one ``_``, leading dots are dropped, at most 100 characters;
    ``default`` when nothing but ``_`` is left (``..`` -> ``x``, ``../a b`` -> ``_a_b``)."""
    name = _UNSAFE.sub("_", str(text if text is not None else "")).lstrip(".")[:_MAX_NAME]
    return name if name.strip("_") else default


def _suffix(image_key: str) -> str:
    suffix = PurePosixPath(image_key).suffix.lower()
    return suffix if suffix in IMAGE_SUFFIXES else ".jpg"


def _iso(value: Any) -> str | None:
    if value is None or value != value:  # None, NaT
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None or value != value else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None or value != value else float(value)


def pick_images(
    records_path: Path,
    reference_data: Mapping[str, list[dict]],
    selection: Mapping[str, Iterable[Any]],
    *,
    per_item: int = 5,
    kind: str = "both",
) -> list[dict]:
    """Choose the images to review: for each selected reference (its records: ``reference_id``)
    and each selected device (its records: ``device_id``), up to ``per_item`` records of each
    wanted kind (``kind="both"``: ``per_item`` correct and ``per_item`` incorrect ones).

    Records without ``image_key`` are skipped. The choice is deterministic: newest first
    (``timestamp`` descending, records without timestamp last), then ``transaction_id``.

    :param records_path: ``data/records.parquet``. :param reference_data: the dict of
        :func:`dataset_ops.inference.extract.read_reference_data` (labels, references, devices).
    :param kind: ``"correct"``, ``"incorrect"`` or ``"both"``. :param per_item: at least 1.
    :returns: one dict per image, references first (selection order, correct then incorrect),
        then devices: ``scope`` (``"reference"``/``"device"``), ``item_id``, ``transaction_id``,
        ``timestamp`` (ISO 8601, UTC), ``image_key``, ``kind``, ``reference_id``, ``device_id``,
        ``top1_label``, ``conf_1`` (0..1), ``target`` (path relative to the process folder, see
        the module docstring; unique within the result).
    :raises ValueError: a bad ``kind``/``per_item``/selection.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if isinstance(per_item, bool) or not isinstance(per_item, int) or per_item < 1:
        raise ValueError(f"per_item must be an integer >= 1, not {per_item!r}")
    wanted = normalize_selection(selection)
    kinds = ("correct", "incorrect") if kind == "both" else (kind,)
    df = _read_records(
        records_path,
        ["transaction_id", "reference_id", "device_id", "timestamp", "image_key", "label_1", "conf_1"],
    )
    df = df[df["image_key"].notna() & (df["image_key"].astype(str).str.strip() != "")]
    top1_ref = df["label_1"].map(label_references(reference_data.get("labels") or []))
    df = df.assign(_correct=top1_ref.eq(df["reference_id"]).fillna(False).astype(bool))
    df = df.sort_values(
        ["timestamp", "transaction_id"], ascending=[False, True], na_position="last", kind="stable"
    )
    codes = {
        "reference": {
            int(r["reference_id"]): r.get("reference_code") for r in reference_data.get("references") or ()
        },
        "device": {int(d["device_id"]): d.get("device_code") for d in reference_data.get("devices") or ()},
    }
    roots = {"reference": "images/productos", "device": "images/devices"}
    picks: list[dict] = []
    used: set[str] = set()
    for scope, key, column in (
        ("reference", "references", "reference_id"),
        ("device", "devices", "device_id"),
    ):
        for item in wanted[key]:
            rows = df[df[column] == item]
            folder = safe_name(f"{item}_{codes[scope].get(item) or UNKNOWN_CODE}")
            for want in kinds:
                chosen = rows[rows["_correct"] == (want == "correct")].head(per_item)
                for rec in chosen.itertuples(index=False):
                    stem = safe_name(rec.transaction_id, default="transaction")
                    target = f"{roots[scope]}/{folder}/{want}/{stem}{_suffix(str(rec.image_key))}"
                    n = 2
                    while target in used:  # two ids that only differ in unsafe characters
                        target = f"{roots[scope]}/{folder}/{want}/{stem}_{n}{_suffix(str(rec.image_key))}"
                        n += 1
                    used.add(target)
                    picks.append(
                        {
                            "scope": scope,
                            "item_id": int(item),
                            "transaction_id": str(rec.transaction_id),
                            "timestamp": _iso(rec.timestamp),
                            "image_key": str(rec.image_key),
                            "kind": want,
                            "reference_id": _opt_int(rec.reference_id),
                            "device_id": _opt_int(rec.device_id),
                            "top1_label": _opt_int(rec.label_1),
                            "conf_1": _opt_float(rec.conf_1),
                            "target": target,
                        }
                    )
    return picks


# --- downloading --------------------------------------------------------------------------------
def _check_target(target: str) -> str:
    parts = target.split("/")
    if target.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] != "images":
        raise ValueError(f"target {target!r} is not a path below images/ of the process folder")
    return target


def _temp_next_to(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")


class _Missing(LookupError):
    """No object at the image key."""


def _fetch(source: Storage, key: str, dest: Path) -> tuple[int, str]:
    """Stream ``key`` of ``source`` to ``dest`` (temporary file, then ``os.replace``); returns
    (bytes, sha256 hex). :raises _Missing: no such object."""
    try:
        reader = source.open_read(key)
    except FileNotFoundError as exc:
        raise _Missing(str(exc)) from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_next_to(dest)
    digest, size = hashlib.sha256(), 0
    try:
        with reader as src, open(tmp, "wb") as out:
            while block := src.read(1 << 20):
                digest.update(block)
                size += len(block)
                out.write(block)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return size, digest.hexdigest()


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_next_to(dest)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def download_images(
    storage: Storage,
    process_prefix: str,
    picks: Sequence[Mapping[str, Any]],
    images_root: str,
    *,
    dry_run: bool = False,
    workers: int = 8,
) -> list[dict]:
    """Copy each pick's image (``image_key`` below ``images_root``) to its ``target`` in the
    process folder ``process_prefix`` of ``storage``, through a
    :class:`~dataset_ops.storage.workspace.FolderWorkspace`: written to the local path (a
    temporary file, then ``os.replace``), then published (uploaded when the storage is remote;
    the local copy is then removed, so local disk holds a few images at a time).

    An image picked twice (for a reference and for a device) is read once. ``workers`` images
    are read at a time. A failing image never stops the others.

    :param images_root: ``s3://bucket/prefix/`` or a local folder (see
        :func:`dataset_ops.storage.open_storage`); S3 through the Connection ``aws_default``.
    :param dry_run: read and write nothing; every row gets the status ``dry_run``.
    :returns: one row per pick, in order: the pick plus ``status`` (``downloaded``; ``missing``:
        no object at the key; ``failed``: any other error; ``dry_run``), ``bytes`` and ``sha256``
        (hex) of the image (None unless downloaded), ``error`` (text, None when downloaded).
    """
    from dataset_ops.storage import open_storage
    from dataset_ops.storage.workspace import FolderWorkspace

    if dry_run:
        return [{**p, "status": "dry_run", "bytes": None, "sha256": None, "error": None} for p in picks]
    rows = [{**p, "status": "failed", "bytes": None, "sha256": None, "error": "not attempted"} for p in picks]
    if not rows:
        return rows
    source = open_storage(images_root)
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(str(row["image_key"]), []).append(row)

    with FolderWorkspace(storage, process_prefix) as ws:

        def one(key: str, group: list[dict]) -> None:
            done: Path | None = None  # the local file of the first target written
            size = digest = None
            for at, row in enumerate(group):
                try:
                    target = _check_target(str(row["target"]))
                    path = ws.path / target
                    if done is None:
                        size, digest = _fetch(source, key, path)
                    else:
                        _copy(done, path)
                    ws.publish(target)
                    row.update(status="downloaded", bytes=size, sha256=digest, error=None)
                    if done is None:
                        done = path
                    elif not ws.in_place:
                        path.unlink(missing_ok=True)
                except _Missing as exc:
                    row.update(status="missing", error=f"no image at {exc}")
                    for other in group[at + 1 :]:  # the source is missing for every target
                        other.update(status="missing", error=row["error"])
                    break
                except Exception as exc:  # logged per image; the others go on
                    row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            if done is not None and not ws.in_place:
                done.unlink(missing_ok=True)

        with ThreadPoolExecutor(max(1, int(workers))) as pool:
            for future in [pool.submit(one, key, group) for key, group in groups.items()]:
                future.result()
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    log.info("review images into %s: %s", storage.uri(process_prefix), counts)
    return rows


# --- the workbook ---------------------------------------------------------------------------------
#: Kinds and widths of the log sheets' columns (others: text, width from the values).
_LOG_KINDS = {"item_id": "int", "timestamp": "datetime", "reference_id": "int", "device_id": "int",
              "top1_label": "int", "conf_1": "percent", "bytes": "int"}  # fmt: skip
_LOG_WIDTHS = {
    "transaction_id": 38,
    "image_key": 60,
    "target": 70,
    "sha256": 66,
    "error": 50,
    "timestamp": 20,
}


def append_log_sheets(workbook: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Add (or replace, on a second review) the sheets ``revisar_imagenes_bajadas`` (the
    reference rows) and ``devices_imagenes_bajadas`` (the device rows) at the end of the
    workbook: a header of :data:`LOG_COLUMNS` (bold, frozen, autofilter) and one row per image
    (``timestamp`` as a UTC date-time, ``conf_1`` as a percentage; text is never a formula).

    The workbook is not loaded: the two sheets are spliced into its zip package
    (:func:`dataset_ops.inference.xlsx_append.append_sheets`), written next to it and moved over
    it with ``os.replace``, so memory stays small and the file is never half written.

    :raises FileNotFoundError: no such workbook.
    :raises dataset_ops.inference.xlsx_append.UnsupportedPackage: a workbook laid out in a way
        the splice does not handle (names the file and why).
    """
    from dataset_ops.inference.workbook import Column, SheetSpec
    from dataset_ops.inference.xlsx_append import append_sheets

    rows = list(rows)
    columns = [
        Column(name, _LOG_KINDS.get(name, "text"), width=_LOG_WIDTHS.get(name)) for name in LOG_COLUMNS
    ]
    specs = [
        SheetSpec(
            sheet, columns, [[row.get(c) for c in LOG_COLUMNS] for row in rows if row.get("scope") == scope]
        )
        for sheet, scope in ((REFERENCE_LOG_SHEET, "reference"), (DEVICE_LOG_SHEET, "device"))
    ]
    append_sheets(workbook, specs)


# --- the step --------------------------------------------------------------------------------------
def newest_workbook(names: Iterable[str]) -> str | None:
    """The last by name of the ``.xlsx`` files in ``names`` (Excel's ``~$`` lock files and hidden
    files ignored); None when there is none. Report names end with the window's end
    ``YYYYmmdd_HHMMSS``, so the last by name is the newest."""
    found = [
        n for n in names if n.lower().endswith(".xlsx") and "/" not in n and not n.startswith((".", "~$"))
    ]
    return max(found, default=None)


def review(
    storage: Storage,
    process_name: str,
    *,
    images_root: str,
    selection: Mapping[str, Iterable[Any]] | None = None,
    workbook_name: str | None = None,
    per_item: int = 5,
    kind: str = "both",
    dry_run: bool = False,
    workers: int = 8,
) -> dict:
    """Review images of the process ``process_name`` (see the module docstring): pick, download
    into ``images/``, log in the workbook (published back to ``reports/``), record the step
    ``review_images``.

    :param selection: ``{"references": [ids], "devices": [ids]}``; None: the rows marked in the
        workbook (:func:`marked_selection`).
    :param workbook_name: a file name in ``reports/``; None: the newest ``.xlsx`` there by name.
    :param per_item, kind: see :func:`pick_images`. :param dry_run: see :func:`download_images`
        (the log sheets are still written, with the status ``dry_run``).
    :returns: ``{"references": n selected, "devices": n selected, "picked", "downloaded",
        "missing", "failed", "dry_run" (counts of images), "bytes" (downloaded), "workbook"
        (storage key), "kind", "per_item", "selection": {"references", "devices"} (ids),
        "seconds"}``.
    :raises FileNotFoundError: no such process, workbook or data files.
    :raises ValueError: a bad process or workbook name, a malformed workbook, an empty selection,
        or selected ids the process does not know (nothing is downloaded then).
    """
    import orjson

    from dataset_ops.storage.workspace import FolderWorkspace

    started = time.monotonic()
    prefix = process_prefix(process_name)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if workbook_name is not None and (
        not isinstance(workbook_name, str)
        or re.search(r"[/\\\x00]", workbook_name)
        or workbook_name.startswith(".")
        or not workbook_name.lower().endswith(".xlsx")
    ):
        raise ValueError(f"workbook_name {workbook_name!r} is not the name of a .xlsx file in reports/")
    if not storage.exists(f"{prefix}/{RECORDS}"):  # before a workspace makes the folder
        raise FileNotFoundError(
            f"process {process_name}: no {RECORDS} in {storage.uri(prefix)} "
            "(no such process, or its inference_report run did not finish)"
        )
    with FolderWorkspace(storage, prefix) as ws:
        if workbook_name is None:
            workbook_name = newest_workbook(ws.stored(REPORTS))
            if workbook_name is None:
                raise FileNotFoundError(
                    f"process {process_name}: no .xlsx workbook in {storage.uri(prefix)}/{REPORTS}/"
                )
        rel = f"{REPORTS}/{workbook_name}"
        try:
            book = ws.local(rel)
            records = ws.local(RECORDS)
            reference_data = orjson.loads(ws.local(REFERENCE_DATA).read_bytes())
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"process {process_name} ({storage.uri(prefix)}) lacks a file: {exc} "
                "(did inference_report finish for it?)"
            ) from None
        if selection is None:
            chosen = marked_selection(book)
            if not any(chosen.values()):
                raise ValueError(
                    f"{rel}: no row of References or Devices is marked in {MARK_COLUMN}: nothing to review"
                )
        else:
            chosen = normalize_selection(selection)
            if not any(chosen.values()):
                raise ValueError("the selection names no reference and no device: nothing to review")
        check_selection(chosen, reference_data, records)
        picks = pick_images(records, reference_data, chosen, per_item=per_item, kind=kind)
        rows = download_images(storage, prefix, picks, images_root, dry_run=dry_run, workers=workers)
        append_log_sheets(book, rows)
        ws.publish(rel)
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    summary = {
        "references": len(chosen["references"]),
        "devices": len(chosen["devices"]),
        "picked": len(rows),
        **counts,
        "bytes": sum(r["bytes"] or 0 for r in rows if r["status"] == "downloaded"),
        "workbook": f"{prefix}/{rel}",
        "kind": kind,
        "per_item": per_item,
        "selection": {"references": list(chosen["references"]), "devices": list(chosen["devices"])},
        "seconds": round(time.monotonic() - started, 3),
    }
    record_step(storage, process_name, "review_images", summary)
    log.info("process %s: image review %s", process_name, summary)
    return summary
