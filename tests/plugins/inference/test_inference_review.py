"""dataset_ops.inference.review: marked workbook -> picked images downloaded into the process
folder -> log sheets in the workbook.

The process folder is built without Airflow: ``data/records.parquet`` from the world's window
records (every record of the review references and devices, plus every 100th other record so
the workbook stays small and fast to load), ``data/reference_data.json`` shaped like
``extract.read_reference_data``, the workbook from ``report.write_report``, marked with openpyxl
as a user would. Images come from the moto bucket of ``inference_images`` (real S3 API calls);
expectations are computed from the world (``Record.top1_right``, ``image_bytes``), not from the
code under test.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import openpyxl
import pyarrow.parquet as pq
import pytest

from dataset_ops.inference.config import load_mapping
from dataset_ops.inference.process import read_metadata
from dataset_ops.inference.report import write_report
from dataset_ops.inference.review import (
    DEVICE_LOG_SHEET,
    LOG_COLUMNS,
    REFERENCE_LOG_SHEET,
    append_log_sheets,
    check_selection,
    download_images,
    marked_selection,
    pick_images,
    review,
    safe_name,
)
from dataset_ops.storage import LocalStorage, open_storage

NAME = "dataset_7_201126_v1"
PREFIX = f"processes/{NAME}"
WORKBOOK = "dataset_7_20261120_120000.xlsx"
SAFE_TARGET = re.compile(
    r"images/(productos|devices)/[A-Za-z0-9_][A-Za-z0-9_.-]*/(correct|incorrect)/[A-Za-z0-9_][A-Za-z0-9_.-]*\.jpg"
)


# --- building the process folder -------------------------------------------------------------------
def mark(path: Path, references=(), devices=(), extra_rows: dict | None = None) -> None:
    """Put ``x`` in ``revisar_imagenes`` of the given rows, like a user in Excel."""
    book = openpyxl.load_workbook(path)
    for sheet, id_column, ids in (
        ("References", "reference_id", references),
        ("Devices", "device_id", devices),
    ):
        ws = book[sheet]
        header = [c.value for c in ws[1]]
        id_col, mark_col = header.index(id_column) + 1, header.index("revisar_imagenes") + 1
        for row in range(2, ws.max_row + 1):
            if ws.cell(row, id_col).value in ids:
                ws.cell(row, mark_col).value = "x"
        for values in (extra_rows or {}).get(sheet, []):
            row = ws.max_row + 1
            for name, value in values.items():
                ws.cell(row, header.index(name) + 1).value = value
    book.save(path)


@pytest.fixture(scope="module")
def process_files(inference_world, tmp_path_factory) -> Path:
    """The process folder's files, built once: records, reference data, the workbook marked for
    ``review_references`` and ``review_devices``."""
    w = inference_world
    folder = tmp_path_factory.mktemp("process")
    (folder / "data").mkdir()
    (folder / "reports").mkdir()
    wanted = {r.transaction_id for r in w.review_candidates}
    records = [r for i, r in enumerate(w.window_records) if r.transaction_id in wanted or i % 100 == 0]
    pq.write_table(w.records_table(records), folder / "data" / "records.parquet")
    data = w.reference_data()
    (folder / "data" / "reference_data.json").write_text(json.dumps(data))
    book = folder / "reports" / WORKBOOK
    write_report(
        book,
        folder / "data" / "records.parquet",
        data,
        confidence=0.78,
        min_appearances=20,
        ok_results=load_mapping(w.deployment_id).ok_results,
        window=(w.window_start.isoformat(), w.now.isoformat()),
    )
    mark(book, w.review_references, w.review_devices)
    return folder


def put_process(storage, files: Path, name: str = NAME) -> None:
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        storage.write_file(f"processes/{name}/{path.relative_to(files)}", path)


@pytest.fixture
def local(tmp_path, process_files):
    storage = LocalStorage(tmp_path / "storage")
    put_process(storage, process_files)
    return storage


def expected_records(world, scope: str, item: int, kind: str | None = None) -> list:
    """The world's window records of a reference/device, newest first then transaction id."""
    attr = "reference_id" if scope == "reference" else "device_id"
    recs = [r for r in world.window_records if getattr(r, attr) == item]
    if kind:
        recs = [r for r in recs if r.top1_right == (kind == "correct")]
    recs.sort(key=lambda r: r.transaction_id)
    recs.sort(key=lambda r: r.timestamp, reverse=True)
    return recs


def folder_of(world, scope: str, item: int) -> str:
    if scope == "reference":
        ref = world.reference_by_id.get(item)
        return f"images/productos/{item}_{ref.code if ref else 'unknown'}"
    return f"images/devices/{item}_{world.device_by_id[item].code}"


def sheet_rows(book, name: str) -> list[dict]:
    rows = book[name].iter_rows(values_only=True)
    header = next(rows)
    return [dict(zip(header, row, strict=True)) for row in rows]


def image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --- the selection -----------------------------------------------------------------------------------
def test_marked_selection_reads_the_marked_rows(inference_world, process_files, tmp_path):
    w = inference_world
    book = tmp_path / "b.xlsx"
    shutil.copy(process_files / "reports" / WORKBOOK, book)
    assert {k: sorted(v) for k, v in marked_selection(book).items()} == {
        "references": sorted(w.review_references),
        "devices": sorted(w.review_devices),
    }
    # blanks do not mark, any other value does; a duplicate row counts once; text ids are fine
    extra = {
        "References": [
            {"reference_id": 1, "revisar_imagenes": "   "},
            {"reference_id": w.review_references[0], "revisar_imagenes": 1},
            {"reference_id": "2", "revisar_imagenes": "sí"},
        ],
        "Devices": [{"device_id": 3.0, "revisar_imagenes": "x"}],
    }
    mark(book, extra_rows=extra)
    selection = marked_selection(book)
    assert sorted(selection["references"]) == sorted([*w.review_references, 2])
    assert sorted(selection["devices"]) == sorted([*w.review_devices, 3])


def test_marked_selection_errors_name_file_sheet_and_row(process_files, tmp_path):
    source = process_files / "reports" / WORKBOOK

    def variant(name: str, change) -> Path:
        path = tmp_path / name
        book = openpyxl.load_workbook(source)
        change(book)
        book.save(path)
        return path

    no_sheet = variant("no_sheet.xlsx", lambda b: b.remove(b["Devices"]))
    with pytest.raises(ValueError, match=r"no_sheet\.xlsx: no sheet 'Devices'"):
        marked_selection(no_sheet)

    def rename_mark(book):
        ws = book["References"]
        for cell in ws[1]:
            if cell.value == "revisar_imagenes":
                cell.value = "revisar"

    no_column = variant("no_column.xlsx", rename_mark)
    with pytest.raises(
        ValueError, match=r"no_column\.xlsx: sheet 'References': no column 'revisar_imagenes'"
    ):
        marked_selection(no_column)

    bad = tmp_path / "bad_id.xlsx"
    shutil.copy(source, bad)
    mark(bad, extra_rows={"Devices": [{"device_id": "DEV-0003", "revisar_imagenes": "x"}]})
    rows = openpyxl.load_workbook(bad)["Devices"].max_row
    with pytest.raises(ValueError, match=rf"bad_id\.xlsx: sheet 'Devices', row {rows}: device_id 'DEV-0003'"):
        marked_selection(bad)
    # an unmarked row with a bad id does not matter
    shutil.copy(source, bad)
    mark(bad, extra_rows={"Devices": [{"device_id": "total"}]})
    assert marked_selection(bad)["devices"]


def test_check_selection_lists_every_unknown_item(inference_world, process_files):
    w = inference_world
    data = w.reference_data()
    records = process_files / "data" / "records.parquet"
    # 9002 is unknown to MySQL but in the records; reference 60-ish and device 11 are only in MySQL
    check_selection({"references": [9002, 1], "devices": [11, *w.review_devices]}, data, records)
    with pytest.raises(ValueError) as err:
        check_selection({"references": [9002, 424242, 515151], "devices": ["777", 1]}, data, records)
    assert "references 424242, 515151" in str(err.value) and "devices 777" in str(err.value)
    with pytest.raises(ValueError, match="not an integer"):
        check_selection({"references": ["abc"]}, data, records)
    with pytest.raises(ValueError, match="unknown keys"):
        check_selection({"labels": [1]}, data, records)


# --- picking ---------------------------------------------------------------------------------------
def test_pick_images_per_item_kind_and_order(inference_world, process_files):
    w = inference_world
    data = w.reference_data()
    records = process_files / "data" / "records.parquet"
    selection = {"references": list(w.review_references), "devices": list(w.review_devices)}

    picks = pick_images(records, data, selection, per_item=3, kind="correct")
    assert {p["kind"] for p in picks} == {"correct"}
    for scope, key in (("reference", "references"), ("device", "devices")):
        for item in selection[key]:
            mine = [p for p in picks if p["scope"] == scope and p["item_id"] == item]
            want = expected_records(w, scope, item, "correct")[:3]
            assert [p["transaction_id"] for p in mine] == [r.transaction_id for r in want]
    assert not [p for p in picks if p["item_id"] == 9002]  # unknown to the labels: never correct
    assert all(w.record_by_transaction[p["transaction_id"]].top1_right for p in picks)

    both = pick_images(records, data, selection, per_item=2)
    per = Counter((p["scope"], p["item_id"], p["kind"]) for p in both)
    for (scope, item, kind), n in per.items():
        assert n == min(2, len(expected_records(w, scope, item, kind)))
    assert per[("reference", 9002, "incorrect")] == 2 and ("reference", 9002, "correct") not in per
    assert both == pick_images(records, data, selection, per_item=2)  # deterministic

    first = both[0]
    rec = w.record_by_transaction[first["transaction_id"]]
    assert first == {
        "scope": "reference",
        "item_id": w.review_references[0],
        "transaction_id": rec.transaction_id,
        "timestamp": rec.timestamp.isoformat(),
        "image_key": rec.image_key,
        "kind": "correct",
        "reference_id": rec.reference_id,
        "device_id": rec.device_id,
        "top1_label": rec.top1_label,
        "conf_1": rec.top1_conf,
        "target": f"{folder_of(w, 'reference', rec.reference_id)}/correct/{rec.transaction_id}.jpg",
    }
    for bad in ({"kind": "all"}, {"per_item": 0}, {"per_item": True}):
        with pytest.raises(ValueError):
            pick_images(records, data, selection, **bad)


def test_folder_and_file_names_are_safe(inference_world, tmp_path):
    w = inference_world
    data = w.reference_data()
    ref, dev = w.review_references[0], w.review_devices[0]
    for row in data["references"]:
        if row["reference_id"] == ref:
            row["reference_code"] = "../../etc/Crème fraîche 20cl"
    for row in data["devices"]:
        if row["device_id"] == dev:
            row["device_code"] = "..\\..\\C:"
    base = next(r for r in w.window_records if r.reference_id == ref)
    weird = [
        replace(base, transaction_id="../../escape"),
        replace(base, transaction_id="a/b", device_id=dev),
        replace(base, transaction_id="a:b", device_id=dev),
        replace(base, transaction_id=".hidden"),
    ]
    records = tmp_path / "records.parquet"
    pq.write_table(w.records_table(weird), records)
    picks = pick_images(records, data, {"references": [ref], "devices": [dev]}, per_item=10)
    targets = [p["target"] for p in picks]
    assert len(targets) == 6 and len(set(targets)) == 6
    for target in targets:
        assert SAFE_TARGET.fullmatch(target), target
        assert ".." not in target.split("/")
    kind = "correct" if base.top1_right else "incorrect"
    assert targets[0] == f"images/productos/{ref}__etc_Cr_me_fra_che_20cl/{kind}/_escape.jpg"
    assert targets[-1] == f"images/devices/{dev}__C_/{kind}/a_b_2.jpg"
    assert any(t.endswith("/hidden.jpg") for t in targets)
    assert safe_name("..") == "x" and safe_name("../a b") == "_a_b" and safe_name(None) == "x"
    assert safe_name("REF-0001.v2") == "REF-0001.v2" and safe_name("a..b") == "a_b"
    assert len(safe_name("y" * 500)) == 100

    # downloaded from a local images root: every file lands at its target, nothing elsewhere
    images = tmp_path / "images_root"
    for rec in weird:
        path = images / rec.image_key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rec.transaction_id.encode())
    storage = LocalStorage(tmp_path / "storage")
    rows = download_images(storage, PREFIX, picks, str(images), workers=2)
    assert [r["status"] for r in rows] == ["downloaded"] * 6
    for row in rows:
        assert (tmp_path / "storage" / PREFIX / row["target"]).read_bytes() == row["transaction_id"].encode()
    keys = list(storage.list())
    assert len(keys) == 6 and all(k.startswith(f"{PREFIX}/images/") for k in keys)


# --- the whole review --------------------------------------------------------------------------------
def test_review_downloads_the_marked_items_images_and_logs_them(inference_world, inference_images, local):
    w = inference_world
    missing = set(w.missing_images)
    # per_item just large enough to pick two of the missing images (moto serves ~50 images/s)
    items = [("reference", i) for i in w.review_references] + [("device", i) for i in w.review_devices]
    ranks = sorted(
        rank
        for scope, item in items
        for kind in ("correct", "incorrect")
        for rank, r in enumerate(expected_records(w, scope, item, kind))
        if r.image_key in missing
    )
    per_item = ranks[1] + 1
    summary = review(local, NAME, images_root=inference_images, per_item=per_item)
    folder = Path(local.uri(PREFIX))

    expected = [
        (scope, item, r)
        for scope, item in items
        for kind in ("correct", "incorrect")
        for r in expected_records(w, scope, item, kind)[:per_item]
    ]
    n_missing = sum(r.image_key in missing for _, _, r in expected)
    assert n_missing >= 2
    assert set(summary["selection"]["references"]) == set(w.review_references)
    assert set(summary["selection"]["devices"]) == set(w.review_devices)
    assert {k: v for k, v in summary.items() if k not in ("seconds", "selection")} == {
        "references": len(w.review_references),
        "devices": len(w.review_devices),
        "picked": len(expected),
        "downloaded": len(expected) - n_missing,
        "missing": n_missing,
        "failed": 0,
        "dry_run": 0,
        "bytes": summary["bytes"],
        "workbook": f"{PREFIX}/reports/{WORKBOOK}",
        "kind": "both",
        "per_item": per_item,
    }

    files = {str(p.relative_to(folder)) for p in image_files(folder / "images")}
    wanted = set()
    for scope, item, r in expected:
        kind = "correct" if r.top1_right else "incorrect"
        target = f"{folder_of(w, scope, item)}/{kind}/{r.transaction_id}.jpg"
        if r.image_key in missing:
            assert not (folder / target).exists()
        else:
            wanted.add(target)
            assert (folder / target).read_bytes() == w.image_bytes(r.image_key), target
    assert files == wanted and summary["bytes"] == sum((folder / t).stat().st_size for t in wanted)

    book = openpyxl.load_workbook(folder / "reports" / WORKBOOK)
    assert book.sheetnames[-2:] == [REFERENCE_LOG_SHEET, DEVICE_LOG_SHEET]
    assert "References" in book.sheetnames and book["Resumen"]._charts  # the report is intact
    refs, devs = sheet_rows(book, REFERENCE_LOG_SHEET), sheet_rows(book, DEVICE_LOG_SHEET)
    assert list(next(book[REFERENCE_LOG_SHEET].iter_rows(values_only=True))) == list(LOG_COLUMNS)
    assert len(refs) == sum(s == "reference" for s, _, _ in expected)
    assert len(devs) == sum(s == "device" for s, _, _ in expected)
    for row in refs + devs:
        rec = w.record_by_transaction[row["transaction_id"]]
        assert row["image_key"] == rec.image_key and row["top1_label"] == rec.top1_label
        assert row["timestamp"] == rec.timestamp.replace(tzinfo=None)
        if rec.image_key in missing:
            assert row["status"] == "missing" and rec.image_key in row["error"] and row["bytes"] is None
        else:
            data = w.image_bytes(rec.image_key)
            assert row["status"] == "downloaded" and row["error"] is None
            assert row["bytes"] == len(data) and row["sha256"] == hashlib.sha256(data).hexdigest()
    ws = book[DEVICE_LOG_SHEET]
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == f"A1:O{len(devs) + 1}"

    metadata = read_metadata(local, NAME)
    assert metadata["steps"]["review_images"] == summary
    assert json.loads((folder / "logs" / "review_images.json").read_text()) == summary
    assert not [p for p in folder.rglob("*") if p.name.endswith(".partial")]


def test_second_review_replaces_the_log_sheets_and_kind_correct_only_picks_correct(
    inference_world, inference_images, local
):
    w = inference_world
    review(local, NAME, images_root=inference_images, per_item=4)
    folder = Path(local.uri(PREFIX))
    first = image_files(folder / "images")
    assert {p.parent.name for p in first} == {"correct", "incorrect"}

    selection = {"references": [w.review_references[0]], "devices": []}
    summary = review(
        local, NAME, images_root=inference_images, selection=selection, per_item=3, kind="correct"
    )
    assert summary["picked"] == 3 and summary["references"] == 1 and summary["devices"] == 0
    book = openpyxl.load_workbook(folder / "reports" / WORKBOOK)
    assert book.sheetnames.count(REFERENCE_LOG_SHEET) == 1 and book.sheetnames.count(DEVICE_LOG_SHEET) == 1
    rows = sheet_rows(book, REFERENCE_LOG_SHEET)
    assert [r["kind"] for r in rows] == ["correct"] * 3 and sheet_rows(book, DEVICE_LOG_SHEET) == []
    want = expected_records(w, "reference", w.review_references[0], "correct")[:3]
    assert [r["transaction_id"] for r in rows] == [r.transaction_id for r in want]
    assert all(w.record_by_transaction[r["transaction_id"]].top1_right for r in rows)


def test_dry_run_lists_without_writing_images(inference_world, inference_images, local):
    summary = review(local, NAME, images_root=inference_images, per_item=2, dry_run=True)
    folder = Path(local.uri(PREFIX))
    assert summary["dry_run"] == summary["picked"] > 0
    assert summary["downloaded"] == summary["missing"] == summary["failed"] == 0
    assert image_files(folder / "images") == []
    rows = sheet_rows(openpyxl.load_workbook(folder / "reports" / WORKBOOK), REFERENCE_LOG_SHEET)
    assert rows and {r["status"] for r in rows} == {"dry_run"}


def test_unknown_marked_reference_fails_before_any_download(inference_world, inference_images, local):
    w = inference_world
    folder = Path(local.uri(PREFIX))
    book = folder / "reports" / WORKBOOK
    mark(book, extra_rows={"References": [{"reference_id": 424242, "revisar_imagenes": "x"}]})
    before = book.read_bytes()
    with pytest.raises(ValueError, match=r"references 424242.*nothing was downloaded"):
        review(local, NAME, images_root=inference_images)
    with pytest.raises(ValueError, match="devices 99"):
        review(local, NAME, images_root=inference_images, selection={"devices": [99, *w.review_devices]})
    assert image_files(folder / "images") == [] and book.read_bytes() == before
    assert "review_images" not in (read_metadata(local, NAME) or {}).get("steps", {})


def test_review_refuses_empty_selections_and_missing_processes(inference_images, local, tmp_path):
    with pytest.raises(ValueError, match="nothing to review"):
        review(local, NAME, images_root=inference_images, selection={"references": [], "devices": []})
    with pytest.raises(FileNotFoundError, match="no data/records.parquet"):
        review(local, "no_such_process", images_root=inference_images)
    assert not Path(local.uri("processes/no_such_process")).exists()
    with pytest.raises(ValueError, match="workbook_name"):
        review(local, NAME, images_root=inference_images, workbook_name="../x.xlsx")
    with pytest.raises(FileNotFoundError):
        review(local, NAME, images_root=inference_images, workbook_name="other.xlsx")


def test_review_with_the_process_folder_on_s3(
    inference_world, inference_images, s3_bucket, process_files, tmp_path
):
    w = inference_world
    storage = open_storage(f"s3://{s3_bucket}/root")
    put_process(storage, process_files)
    summary = review(storage, NAME, images_root=inference_images, per_item=2)
    assert summary["picked"] > 0 and summary["failed"] == 0
    assert summary["downloaded"] + summary["missing"] == summary["picked"]

    keys = list(storage.list(f"{PREFIX}/images/"))
    assert len(keys) == summary["downloaded"] and all(
        SAFE_TARGET.fullmatch(k[len(PREFIX) + 1 :]) for k in keys
    )
    for key in keys:
        rec = w.record_by_transaction[key.rsplit("/", 1)[1].removesuffix(".jpg")]
        with storage.open_read(key) as fh:
            assert fh.read() == w.image_bytes(rec.image_key)
    with storage.open_read(f"{PREFIX}/reports/{WORKBOOK}") as fh:
        local_copy = tmp_path / "from_s3.xlsx"
        local_copy.write_bytes(fh.read())
    book = openpyxl.load_workbook(local_copy)
    rows = sheet_rows(book, REFERENCE_LOG_SHEET) + sheet_rows(book, DEVICE_LOG_SHEET)
    assert len(rows) == summary["picked"]
    assert read_metadata(storage, NAME)["steps"]["review_images"] == summary


def test_log_sheets_keep_text_as_text_and_are_replaced(tmp_path):
    path = tmp_path / "w.xlsx"
    book = openpyxl.Workbook()
    book.active.title = "References"
    book.active.append(["reference_id", "revisar_imagenes"])
    book.save(path)
    row = {c: None for c in LOG_COLUMNS} | {
        "scope": "device",
        "item_id": 3,
        "transaction_id": "=1+1",
        "timestamp": "2026-11-05T08:12:33.123000+01:00",
        "status": "failed",
        "error": '=HYPERLINK("http://x")',
    }
    append_log_sheets(path, [row])
    append_log_sheets(path, [row, {**row, "item_id": 4}])
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["References", REFERENCE_LOG_SHEET, DEVICE_LOG_SHEET]
    ws = book[DEVICE_LOG_SHEET]
    assert ws.max_row == 3 and sheet_rows(book, REFERENCE_LOG_SHEET) == []
    assert ws["D2"].value == "=1+1" and ws["D2"].data_type == "s" and ws["O2"].data_type == "s"
    assert ws["E2"].value == datetime(2026, 11, 5, 7, 12, 33, 123000)  # naive UTC
    assert [p.name for p in tmp_path.iterdir()] == ["w.xlsx"]  # no temporary file left
