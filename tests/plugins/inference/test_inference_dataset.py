"""Training datasets from a process folder (``dataset_ops.inference.dataset``), on real storage.

A process folder is built without Airflow: ``data/records.parquet`` from the inference world's
review candidates (whose images exist) plus planted rows (unknown references 9001, a reference
without label, a duplicate, a null reference, an unsafe image key), and
``data/reference_data.json`` from the world's MySQL rows. The image store is a local folder of
the world's JPEGs (fast) or, in one test, the moto S3 bucket of ``inference_images``. Expected
classes, counts and skips are computed here from the records and labels.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import threading
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.inference_data import UNKNOWN_REFERENCES

from dataset_ops.inference.dataset import (
    FOLDER_COLUMNS,
    MANIFEST,
    MERGE_REPORT,
    SUMMARY_COLUMNS,
    IncompleteDataset,
    create_dataset,
    folder_structure,
    manifest_images,
    merge_datasets,
    read_dataset_manifest,
    summary_dataset,
)
from dataset_ops.inference.extract import record_schema
from dataset_ops.inference.register import read_registry, register_dataset
from dataset_ops.storage import LocalStorage, ManifestFile, open_storage, write_manifest

PROCESS = "processes/dataset_7_201126_v1"
SAFE = re.compile(r"[A-Za-z0-9_.-]+")
NO_LABEL_REFERENCE = 3  # a catalogue reference that no label of model 1 names
WEIRD_LABEL_NAME = "Crème fraîche/../20cl"


# --- the process folder --------------------------------------------------------------------------
def _row(record, **overrides) -> dict:
    preds = list(record.preds) + [(None, None)] * (3 - len(record.preds))
    row = {
        "transaction_id": record.transaction_id,
        "deployment_id": record.deployment_id,
        "device_id": record.device_id,
        "reference_id": record.reference_id,
        "result": record.result,
        "timestamp": record.timestamp,
        "image_key": record.image_key,
    }
    for k, (label, conf) in enumerate(preds, 1):
        row[f"label_{k}"], row[f"conf_{k}"] = label, conf
    row.update(overrides)
    return row


def _records(world) -> list[dict]:
    """The review candidates, then planted rows (each skipped for a known reason)."""
    rows = [_row(r) for r in world.review_candidates]
    taken = {r["transaction_id"] for r in rows}
    others = [r for r in world.window_records if r.transaction_id not in taken]
    unknown = [r for r in others if r.reference_id == UNKNOWN_REFERENCES[0]][:5]
    plain = [r for r in others if r.reference_id not in UNKNOWN_REFERENCES]
    rows += [_row(r) for r in unknown]
    rows += [_row(r, reference_id=NO_LABEL_REFERENCE) for r in plain[:4]]
    rows.append(_row(plain[4], reference_id=None))
    rows.append(_row(plain[5], image_key="../../outside.jpg"))
    rows.append(dict(rows[0]))  # the same transaction twice
    return rows


def _reference_data(world) -> dict:
    model = world.model_for()
    labels = [
        {"label_id": lab.id, "label_name": lab.name, "reference_id": lab.reference_id}
        for lab in world.labels_for()
    ]
    weird = next(lab for lab in labels if lab["reference_id"] == world.review_references[0])
    weird["label_name"] = WEIRD_LABEL_NAME  # the label of a reference with many records
    return {
        "model": [{"deployment_id": world.deployment_id, "model_id": model.id, "model_name": model.name}],
        "references": [
            {
                "reference_id": r.id,
                "reference_code": r.code,
                "reference_name": r.name,
                "category": r.category,
                "active": r.active,
            }
            for r in world.references
        ],
        "labels": labels,
        "devices": [{"device_id": d.id, "device_code": d.code} for d in world.devices_for()],
    }


def _write_process(storage, prefix: str, rows: list[dict], reference_data: dict) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=record_schema()), buf)
    buf.seek(0)
    storage.write_stream(f"{prefix}/data/records.parquet", buf)
    storage.write_stream(
        f"{prefix}/data/reference_data.json", io.BytesIO(json.dumps(reference_data).encode())
    )


class RecordingStorage(LocalStorage):
    """A LocalStorage that remembers the order of the keys it wrote."""

    def __init__(self, root):
        super().__init__(root)
        self.written: list[str] = []
        self._lock = threading.Lock()

    def write_stream(self, key, source):
        n = super().write_stream(key, source)
        with self._lock:
            self.written.append(key)
        return n


class DeniedImages(LocalStorage):
    """An image store that refuses one key (an error that is not "missing")."""

    def __init__(self, root, denied: str):
        super().__init__(root)
        self.denied = denied

    def open_read(self, key):
        if key == self.denied:
            raise PermissionError(f"access denied to {key}")
        return super().open_read(key)


@pytest.fixture(scope="module")
def image_store(tmp_path_factory, inference_world) -> Path:
    """A local image store with the images ``inference_images`` uploads (the review candidates'
    minus ``missing_images``)."""
    root = tmp_path_factory.mktemp("image-store")
    for key in inference_world.uploaded_image_keys():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(inference_world.image_bytes(key))
    return root


@pytest.fixture
def world(inference_world):
    return inference_world


@pytest.fixture
def process(tmp_path, world):
    storage = RecordingStorage(tmp_path / "storage")
    rows = _records(world)
    reference_data = _reference_data(world)
    _write_process(storage, PROCESS, rows, reference_data)
    storage.written.clear()
    return storage, rows, reference_data


# --- what the test expects -----------------------------------------------------------------------
def _folder(label: dict) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", label["label_name"])
    name = re.sub(r"\.{2,}", lambda m: "_" * len(m.group()), name)
    return f"{label['label_id']}_{name}"


def _expect(
    rows, reference_data, missing, *, exclude=frozenset(), references=None, max_refs=None, max_imgs=None
):
    """(selected rows by class folder, skipped counts, missing keys) computed from the records."""
    known = {r["reference_id"] for r in reference_data["references"]}
    label_of = {
        lab["reference_id"]: lab for lab in reference_data["labels"] if lab["reference_id"] is not None
    }
    skipped: Counter = Counter()
    seen, usable = set(), []
    for row in rows:
        ref = row["reference_id"]
        if row["transaction_id"] in seen:
            why = "duplicate_transaction"
        elif ref is None:
            why = "no_reference"
        elif references is not None and ref not in references:
            why = "not_requested"
        elif ref not in known:
            why = "unknown_reference"
        elif ref not in label_of:
            why = "no_label"
        elif row["transaction_id"] in exclude:
            why = "excluded"
        elif ".." in row["image_key"].split("/"):
            why = "bad_image_key"
        else:
            why = None
        seen.add(row["transaction_id"])
        if why:
            skipped[why] += 1
        else:
            usable.append(row)
    per_ref: dict[int, list[dict]] = {}
    for row in sorted(usable, key=lambda r: r["transaction_id"]):
        per_ref.setdefault(row["reference_id"], []).append(row)
    for group in per_ref.values():
        group.sort(key=lambda r: r["timestamp"], reverse=True)  # stable: ties stay in tx order
    if max_refs is not None:
        ranked = sorted(per_ref, key=lambda ref: (-len(per_ref[ref]), ref))
        for ref in ranked[max_refs:]:
            skipped["over_reference_limit"] += len(per_ref.pop(ref))
    if max_imgs is not None:
        for ref, group in per_ref.items():
            skipped["over_image_limit"] += max(0, len(group) - max_imgs)
            per_ref[ref] = group[:max_imgs]
    classes: dict[str, list[dict]] = {}
    lost = []
    for ref, group in per_ref.items():
        for row in group:
            if row["image_key"] in missing:
                lost.append(row["image_key"])
            else:
                classes.setdefault(_folder(label_of[ref]), []).append(row)
    return classes, dict(skipped), sorted(lost)


def _files_on_disk(storage: LocalStorage, prefix: str) -> dict[str, bytes]:
    root = Path(storage.uri(prefix))
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _manifest(storage, prefix: str) -> dict:
    """The raw ``_manifest.json`` (format 1)."""
    with storage.open_read(f"{prefix}/{MANIFEST}") as fh:
        return json.load(fh)


def _images(manifest: dict) -> list[dict]:
    """A raw format-1 manifest's images: each file joined with its ``extra["transactions"]``."""
    transactions = manifest["extra"]["transactions"]
    assert set(transactions) == {f["path"] for f in manifest["files"]}
    return [{**transactions[f["path"]], **f} for f in manifest["files"]]


def _csv(storage, key: str) -> list[dict]:
    with storage.open_read(key) as fh:
        return list(csv.DictReader(io.StringIO(fh.read().decode())))


# --- create_dataset ------------------------------------------------------------------------------
def test_dataset_has_one_folder_per_true_class_skips_by_reason_and_writes_the_manifest_last(
    process, world, image_store
):
    storage, rows, reference_data = process
    missing = set(world.missing_images)
    exclude = {
        r.transaction_id for r in world.review_candidates[10:] if r.reference_id not in UNKNOWN_REFERENCES
    }
    exclude = set(sorted(exclude)[:5])
    classes, skipped, lost = _expect(rows, reference_data, missing, exclude=exclude)
    assert skipped == {
        "unknown_reference": sum(r.reference_id in UNKNOWN_REFERENCES for r in world.review_candidates) + 5,
        "no_label": 4,
        "excluded": 5,
        "no_reference": 1,
        "bad_image_key": 1,
        "duplicate_transaction": 1,
    }
    assert lost == sorted(
        r.image_key
        for r in world.review_candidates
        if r.image_key in missing and r.reference_id not in UNKNOWN_REFERENCES
    )
    assert lost

    producer = {"dag_id": "inference_dataset", "run_id": "manual__2026-11-20"}
    result = create_dataset(
        storage, PROCESS, str(image_store), exclude_transactions=exclude, workers=4, producer=producer
    )

    prefix = f"{PROCESS}/dataset"
    assert result["prefix"] == prefix
    assert result["classes"] == {folder: len(group) for folder, group in sorted(classes.items())}
    assert result["skipped"] == skipped
    assert result["missing"] == lost and result["missing_count"] == len(lost)
    assert result["records"] == len(rows)
    assert result["images"] == sum(map(len, classes.values())) == result["selected"] - len(lost)

    # the files: exactly the expected ones, each the image-store image of its record
    on_disk = _files_on_disk(storage, prefix)
    expected_paths = {
        f"{folder}/{r['transaction_id']}.jpg" for folder, group in classes.items() for r in group
    }
    assert set(on_disk) == expected_paths | {MANIFEST}
    by_tx = {r["transaction_id"]: r for r in rows}
    for path, data in on_disk.items():
        if path != MANIFEST:
            assert data == (image_store / by_tx[Path(path).stem]["image_key"]).read_bytes()
    # no class for the labels without reference, no class for the reference without label
    folders = {p.split("/")[0] for p in expected_paths}
    no_ref_labels = {lab["label_id"] for lab in reference_data["labels"] if lab["reference_id"] is None}
    assert {int(f.split("_")[0]) for f in folders}.isdisjoint(no_ref_labels)
    assert no_ref_labels == set(world.labels_without_references())

    # the manifest: written last, the suite's format 1 (partial: images were missing), sha256
    # and sizes of the stored files, the records' fields per image in extra["transactions"]
    assert storage.written[-1] == f"{prefix}/{MANIFEST}"
    manifest = _manifest(storage, prefix)
    assert (manifest["format_version"], manifest["dataset"], manifest["producer"]) == (1, prefix, producer)
    assert manifest["status"] == "partial" and manifest["problems"][0].startswith(f"{len(lost)} selected")
    assert [f["path"] for f in manifest["files"]] == sorted(expected_paths)
    assert all(f["rows"] is None for f in manifest["files"])
    for f in _images(manifest):
        data = on_disk[f["path"]]
        record = by_tx[f["transaction_id"]]
        assert f["bytes"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
        assert (f["reference_id"], f["device_id"], f["image_key"]) == (
            record["reference_id"],
            record["device_id"],
            record["image_key"],
        )
        assert f["path"].startswith(f"{f['label_id']}_")
    extra = manifest["extra"]
    assert extra["classes"] == result["classes"]
    assert extra["skipped"] == skipped and extra["missing"] == lost
    assert extra["params"]["exclude_transactions"] == 5 and extra["params"]["fast"] is False
    assert (extra["process_name"], extra["deployment_id"]) == (PROCESS.split("/")[1], world.deployment_id)
    assert manifest["total_bytes"] == sum(len(d) for p, d in on_disk.items() if p != MANIFEST)
    assert manifest["created_at"].endswith("+00:00")


def test_class_folder_names_are_sanitized_and_prefixes_checked(process, image_store):
    storage, rows, reference_data = process
    result = create_dataset(storage, PROCESS, str(image_store))
    weird = next(lab for lab in reference_data["labels"] if lab["label_name"] == WEIRD_LABEL_NAME)
    folder = f"{weird['label_id']}_Cr_me_fra_che____20cl"
    assert result["classes"][folder] > 0
    for path in _files_on_disk(storage, result["prefix"]):
        assert all(SAFE.fullmatch(part) and part != ".." for part in path.split("/"))
    manifest = _manifest(storage, result["prefix"])
    assert manifest["extra"]["labels"][folder] == {
        "label_id": weird["label_id"],
        "label_name": WEIRD_LABEL_NAME,
        "reference_id": weird["reference_id"],
    }
    for bad in ("../elsewhere", "processes/../x", "/", "processes//x"):
        with pytest.raises(ValueError, match="not a safe storage prefix"):
            create_dataset(storage, bad, str(image_store))
    # the planted "../../outside.jpg" was skipped, nothing was read or written outside
    assert result["skipped"]["bad_image_key"] == 1
    assert not (image_store.parent / "outside.jpg").exists()


def test_fast_mode_takes_the_biggest_references_and_newest_images(process, world, image_store):
    storage, rows, reference_data = process
    missing = set(world.missing_images)

    result = create_dataset(storage, PROCESS, str(image_store), fast=True)
    classes, skipped, lost = _expect(rows, reference_data, missing, max_refs=10, max_imgs=20)
    assert len(classes) <= 10 and all(len(g) <= 20 for g in classes.values())
    assert result["classes"] == {f: len(g) for f, g in sorted(classes.items())}
    assert result["skipped"] == skipped and result["missing"] == lost
    assert skipped["over_reference_limit"] > 0 and skipped["over_image_limit"] > 0
    manifest = _manifest(storage, result["prefix"])
    params = manifest["extra"]["params"]
    assert (params["max_references"], params["max_images_per_reference"]) == (10, 20)
    expected = sorted(f"{folder}/{r['transaction_id']}.jpg" for folder, g in classes.items() for r in g)
    assert [f["path"] for f in manifest["files"]] == expected
    assert set(_files_on_disk(storage, result["prefix"])) == {*expected, MANIFEST}

    # explicit limits and a reference restriction; the same call gives the same dataset
    big = sorted(world.review_references[:2])
    again = [create_dataset(storage, PROCESS, str(image_store), references=big, max_images_per_reference=7)]
    again.append(
        create_dataset(storage, PROCESS, str(image_store), references=big, max_images_per_reference=7)
    )
    classes, skipped, lost = _expect(rows, reference_data, missing, references=set(big), max_imgs=7)
    assert again[0]["classes"] == again[1]["classes"] == {f: len(g) for f, g in sorted(classes.items())}
    assert again[0]["skipped"] == skipped and skipped["not_requested"] > 0
    assert len(classes) == 2 and again[0]["missing"] == lost
    expected = sorted(f"{folder}/{r['transaction_id']}.jpg" for folder, g in classes.items() for r in g)
    assert [f["path"] for f in _manifest(storage, again[1]["prefix"])["files"]] == expected
    # the previous (fast) dataset's other files are gone
    assert set(_files_on_disk(storage, again[1]["prefix"])) == {*expected, MANIFEST}


def test_a_failed_copy_leaves_no_manifest_and_a_rerun_completes(process, world, image_store):
    storage, rows, reference_data = process
    ref = world.review_references[0]
    denied = next(
        r.image_key
        for r in world.review_candidates
        if r.reference_id == ref and r.image_key not in set(world.missing_images)
    )
    before = create_dataset(storage, PROCESS, str(image_store), references=[ref])  # complete
    with pytest.raises(PermissionError, match="access denied"):
        create_dataset(storage, PROCESS, DeniedImages(image_store, denied), references=[ref])
    assert not storage.exists(f"{PROCESS}/dataset/{MANIFEST}")
    with pytest.raises(IncompleteDataset, match="incomplete"):
        summary_dataset(storage, f"{PROCESS}/dataset", f"{PROCESS}/data/records.parquet")

    # a rerun (smaller) completes: manifest back, files of the previous selection removed
    result = create_dataset(storage, PROCESS, str(image_store), references=[ref], max_images_per_reference=25)
    assert result["images"] <= 25 < before["images"]
    manifest = _manifest(storage, result["prefix"])
    assert len(manifest["files"]) == result["images"]
    on_disk = set(_files_on_disk(storage, result["prefix"]))
    assert on_disk == {f["path"] for f in manifest["files"]} | {MANIFEST}


# --- reports -------------------------------------------------------------------------------------
def test_summary_csv_and_folder_structure(process, world, image_store):
    storage, rows, reference_data = process
    result = create_dataset(storage, PROCESS, str(image_store), fast=True)
    prefix = result["prefix"]
    manifest = _manifest(storage, prefix)
    by_tx = {r["transaction_id"]: r for r in rows}
    names = {lab["label_id"]: lab["label_name"] for lab in reference_data["labels"]}

    for source in (f"{PROCESS}/data/records.parquet", Path(storage.uri(f"{PROCESS}/data/records.parquet"))):
        summary = summary_dataset(storage, prefix, source)
        assert summary == {
            "rows": result["images"],
            "key": f"{PROCESS}/reports/summary_dataset.csv",
            "without_record": 0,
        }
    table = _csv(storage, summary["key"])
    assert list(table[0]) == list(SUMMARY_COLUMNS)
    assert [r["image_path"] for r in table] == [f["path"] for f in manifest["files"]]
    for line, f in zip(table, _images(manifest), strict=True):
        record = by_tx[line["transaction_id"]]
        assert line["class_folder"] == f["path"].split("/")[0]
        assert int(line["label_id"]) == f["label_id"] and line["label_name"] == names[f["label_id"]]
        assert int(line["reference_id"]) == record["reference_id"]
        assert int(line["device_id"]) == record["device_id"]
        assert line["result"] == (record["result"] or "")
        assert int(line["top1_label"]) == record["label_1"]
        assert float(line["top1_conf"]) == pytest.approx(record["conf_1"])
        assert line["timestamp"] == record["timestamp"].isoformat(timespec="milliseconds")
        assert (int(line["bytes"]), line["sha256"]) == (f["bytes"], f["sha256"])
        assert line["image_key"] == record["image_key"]

    structure = folder_structure(storage, prefix)
    assert structure == {
        "folders": len(manifest["extra"]["classes"]),
        "images": result["images"],
        "key": f"{PROCESS}/reports/folder_structure.csv",
    }
    table = _csv(storage, structure["key"])
    assert list(table[0]) == list(FOLDER_COLUMNS)
    assert {r["folder"]: int(r["images"]) for r in table} == manifest["extra"]["classes"]
    assert all(r["leaf"] == "True" for r in table)
    sizes = Counter()
    for f in manifest["files"]:
        sizes[f["path"].split("/")[0]] += f["bytes"]
    assert {r["folder"]: int(r["bytes"]) for r in table} == dict(sizes)

    # the listing, not the manifest: a stray image in a sub-folder shows up
    storage.write_stream(f"{prefix}/extra/nested/a.jpg", io.BytesIO(b"x" * 10))
    table = _csv(storage, folder_structure(storage, prefix)["key"])
    assert {"folder": "extra/nested", "leaf": "True", "images": "1", "bytes": "10"} in table


# --- merge ---------------------------------------------------------------------------------------
def test_merge_keeps_duplicates_once_and_reports_conflicts(tmp_path, world, image_store):
    storage = LocalStorage(tmp_path / "storage")
    rows, reference_data = _records(world), _reference_data(world)
    ref_a, ref_b = world.review_references[:2]
    p1, p2 = "processes/p1", "processes/p2"
    for p in (p1, p2):
        _write_process(storage, p, rows, reference_data)
    a = create_dataset(storage, p1, str(image_store), references=[ref_a, ref_b], max_images_per_reference=12)
    b = create_dataset(storage, p2, str(image_store), references=[ref_b], max_images_per_reference=30)
    ma, mb = read_dataset_manifest(storage, a["prefix"]), read_dataset_manifest(storage, b["prefix"])
    in_a = {f["transaction_id"]: f for f in manifest_images(ma)}
    files_b = manifest_images(mb)
    shared = [f for f in files_b if f["transaction_id"] in in_a]
    assert len(shared) >= 3

    # plant two conflicts in b: other bytes under the same name, and another class folder
    changed, moved = shared[0], shared[1]
    data = b"not the same image"
    storage.write_stream(f"{b['prefix']}/{changed['path']}", io.BytesIO(data))
    changed.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    mb.add(ManifestFile(changed["path"], len(data), changed["sha256"]))
    other_folder = next(f for f in ma.extra["classes"] if f != moved["path"].split("/")[0])
    new_path = f"{other_folder}/{moved['transaction_id']}.jpg"
    storage.move(f"{b['prefix']}/{moved['path']}", f"{b['prefix']}/{new_path}")
    mb.files = [f for f in mb.files if f.path != moved["path"]]
    mb.add(ManifestFile(new_path, moved["bytes"], moved["sha256"]))
    mb.extra["transactions"][new_path] = mb.extra["transactions"].pop(moved["path"])
    moved["path"] = new_path
    write_manifest(storage, mb)

    target = "datasets/merged"
    result = merge_datasets(storage, [a["prefix"], b["prefix"]], target, workers=4)

    union = set(in_a) | {f["transaction_id"] for f in files_b}
    assert result["files"] == len(union)
    assert result["duplicates"] == len(shared) - 2 and result["conflict_count"] == 2
    kinds = {c["kind"]: c for c in result["conflicts"]}
    assert set(kinds) == {"different_content", "different_class"}
    assert kinds["different_content"]["transaction_id"] == changed["transaction_id"]
    assert kinds["different_content"]["kept"]["source"] == a["prefix"]
    assert kinds["different_content"]["other"] == {
        "source": b["prefix"],
        "path": changed["path"],
        "label_id": changed["label_id"],
        "reference_id": changed["reference_id"],
        "bytes": len(data),
        "sha256": changed["sha256"],
    }
    assert kinds["different_class"]["other"]["path"] == new_path
    assert kinds["different_class"]["kept"]["path"] == in_a[moved["transaction_id"]]["path"]

    # the merged folder: one file per transaction, the first source's version of each conflict
    merged = _files_on_disk(storage, target)
    manifest = _manifest(storage, target)
    assert set(merged) == {f["path"] for f in manifest["files"]} | {MANIFEST, MERGE_REPORT}
    assert Counter(Path(p).stem for p in merged if p.endswith(".jpg")) == Counter(union)
    assert manifest["format_version"] == 1 and manifest["dataset"] == target
    for f in _images(manifest):
        assert hashlib.sha256(merged[f["path"]]).hexdigest() == f["sha256"]
        expected_source = a["prefix"] if f["transaction_id"] in in_a else b["prefix"]
        assert f["source"] == expected_source
    assert merged[changed["path"]] != data
    assert new_path not in merged
    assert manifest["extra"]["skipped"] == {"duplicate": len(shared) - 2, "conflict": 2}
    assert sum(manifest["extra"]["classes"].values()) == len(union)
    report = json.loads(merged[MERGE_REPORT])
    assert report["conflicts"] == result["conflicts"]
    assert [s["prefix"] for s in report["sources"]] == [a["prefix"], b["prefix"]]
    assert report["sources"][1]["duplicates"] == len(shared) - 2 and report["sources"][1]["conflicts"] == 2

    # a source without manifest: ValueError naming it, the merged dataset untouched
    storage.delete(f"{b['prefix']}/{MANIFEST}")
    with pytest.raises(ValueError, match=re.escape(f"dataset {b['prefix']!r} is incomplete")):
        merge_datasets(storage, [a["prefix"], b["prefix"]], target)
    assert _manifest(storage, target) == manifest
    # unsafe paths in a manifest and overlapping prefixes are refused
    storage.write_stream(
        f"{b['prefix']}/{MANIFEST}",
        io.BytesIO(json.dumps({"files": [{**shared[2], "path": "../../evil.jpg"}]}).encode()),
    )
    with pytest.raises(ValueError, match="not a safe class/file path"):
        merge_datasets(storage, [b["prefix"]], "datasets/other")
    with pytest.raises(ValueError, match="overlap"):
        merge_datasets(storage, [a["prefix"]], f"{a['prefix']}/inner")


# --- S3: the image store of the inference world and a process folder in a bucket ---------------
def test_dataset_from_the_s3_image_store_into_s3(world, inference_images, s3_bucket):
    storage = open_storage(f"s3://{s3_bucket}/root")
    rows, reference_data = _records(world), _reference_data(world)
    _write_process(storage, PROCESS, rows, reference_data)
    # the reference with fewest records among those with a missing image (a quick copy)
    per_ref = Counter(r.reference_id for r in world.review_candidates)
    ref = min(
        {
            r.reference_id
            for r in world.review_candidates
            if r.image_key in set(world.missing_images) and r.reference_id not in UNKNOWN_REFERENCES
        },
        key=lambda ref: (per_ref[ref], ref),
    )
    wanted = [ref, UNKNOWN_REFERENCES[1]]
    result = create_dataset(storage, PROCESS, inference_images, references=wanted)

    classes, skipped, lost = _expect(rows, reference_data, set(world.missing_images), references=set(wanted))
    assert result["classes"] == {f: len(g) for f, g in classes.items()} and len(classes) == 1
    assert result["skipped"] == skipped and skipped["unknown_reference"] > 0
    assert result["missing"] == lost and lost
    manifest = _manifest(storage, result["prefix"])
    keys = [o.key for o in storage.list_objects(f"{result['prefix']}/")]
    assert keys == sorted(
        [f"{result['prefix']}/{f['path']}" for f in manifest["files"]] + [f"{result['prefix']}/{MANIFEST}"]
    )
    for f in _images(manifest)[:5]:
        with storage.open_read(f"{result['prefix']}/{f['path']}") as fh:
            data = fh.read()
        assert data == world.image_bytes(f["image_key"])
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
    summary = summary_dataset(storage, result["prefix"], f"{PROCESS}/data/records.parquet")
    assert summary["rows"] == result["images"]
    assert len(_csv(storage, summary["key"])) == result["images"]
    structure = folder_structure(storage, result["prefix"])
    assert (structure["folders"], structure["images"]) == (1, result["images"])


# --- datasets written before the format-1 manifest -----------------------------------------------
#: A ``_manifest.json`` exactly as create_dataset wrote it before the suite's manifest type.
LEGACY_MANIFEST = """{
  "classes": {"1_cola": 1, "2_water": 1},
  "created_at": "2026-11-20T10:00:00+00:00",
  "files": [
    {"bytes": 17, "device_id": 3, "image_key": "2026/11/20/tx-1.jpg", "label_id": 1,
     "path": "1_cola/tx-1.jpg", "reference_id": 101,
     "sha256": "37e305e762747a321346925ffa18136a87025f42966f044a2fa9ae1221afb8e1",
     "transaction_id": "tx-1"},
    {"bytes": 18, "device_id": null, "image_key": "2026/11/20/tx-2.jpg", "label_id": 2,
     "path": "2_water/tx-2.jpg", "reference_id": 102,
     "sha256": "5b1da785373b10ba90b013e141e5e4a706343df5516522a001695b81ad25f153",
     "transaction_id": "tx-2"}
  ],
  "labels": {
    "1_cola": {"label_id": 1, "label_name": "cola", "reference_id": 101},
    "2_water": {"label_id": 2, "label_name": "water", "reference_id": 102}
  },
  "missing": ["2026/11/20/tx-3.jpg"],
  "params": {"exclude_transactions": 0, "fast": false, "images_root": "s3://b/images/",
             "max_images_per_reference": null, "max_references": null,
             "process_prefix": "processes/old_7_201126_v1", "records": 4, "references": null,
             "workers": 8},
  "skipped": {"no_label": 1},
  "total_bytes": 35
}"""


def test_a_dataset_written_before_the_manifest_type_is_read_merged_and_registered(tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    old = "processes/old_7_201126_v1/dataset"
    storage.write_stream(f"{old}/1_cola/tx-1.jpg", io.BytesIO(b"legacy cola image"))
    storage.write_stream(f"{old}/2_water/tx-2.jpg", io.BytesIO(b"legacy water image"))
    storage.write_stream(f"{old}/{MANIFEST}", io.BytesIO(LEGACY_MANIFEST.encode()))

    manifest = read_dataset_manifest(storage, old)
    assert manifest.legacy and manifest.complete and manifest.dataset == old
    assert [(f.path, f.bytes) for f in manifest.files] == [("1_cola/tx-1.jpg", 17), ("2_water/tx-2.jpg", 18)]
    assert manifest.total_bytes == 35 and manifest.created_at == "2026-11-20T10:00:00+00:00"
    assert manifest_images(manifest)[1] == {
        "path": "2_water/tx-2.jpg",
        "bytes": 18,
        "sha256": hashlib.sha256(b"legacy water image").hexdigest(),
        "transaction_id": "tx-2",
        "label_id": 2,
        "reference_id": 102,
        "device_id": None,
        "image_key": "2026/11/20/tx-2.jpg",
    }
    assert manifest.extra["missing"] == ["2026/11/20/tx-3.jpg"] and manifest.extra["skipped"] == {
        "no_label": 1
    }

    # merged into a format-1 dataset (partial: the old dataset's missing image is still missing)
    producer = {"dag_id": "inference_merge", "run_id": "manual__1"}
    result = merge_datasets(storage, [old], "processes/new/dataset", producer=producer)
    assert result["files"] == 2 and result["classes"] == {"1_cola": 1, "2_water": 1}
    merged = _manifest(storage, "processes/new/dataset")
    assert (merged["format_version"], merged["status"], merged["producer"]) == (1, "partial", producer)
    assert merged["extra"]["missing"] == ["2026/11/20/tx-3.jpg"]
    assert [f["source"] for f in _images(merged)] == [old, old]

    # both register, the old one through the legacy reader
    registry = str(tmp_path / "registry")
    row = register_dataset(storage, old, registry, name="old", metadata={"deployment_id": 7})
    assert (row["process_name"], row["classes"], row["images"]) == ("old_7_201126_v1", 2, 2)
    register_dataset(storage, "processes/new/dataset", registry, name="new", metadata={})
    assert [(r["name"], r["images"]) for r in read_registry(registry)] == [("old", 2), ("new", 2)]

    # a file the old manifest lists but the folder lacks makes it incomplete for the registry
    storage.delete(f"{old}/2_water/tx-2.jpg")
    with pytest.raises(ValueError, match="missing"):
        register_dataset(storage, old, registry, name="old-again", metadata={})


def test_a_manifest_of_an_unknown_shape_is_an_incomplete_dataset(tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    storage.write_stream(f"{PROCESS}/dataset/{MANIFEST}", io.BytesIO(b'{"classes": {}}'))
    with pytest.raises(IncompleteDataset, match="no 'files' list"):
        merge_datasets(storage, [f"{PROCESS}/dataset"], "processes/other/dataset")
