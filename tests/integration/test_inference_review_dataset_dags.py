"""The common path after ``inference_report`` with ``dag.test()``: ``inference_review`` (Params
selection) downloads the review images from moto's S3, logs them in the workbook and triggers
``inference_dataset``, which builds the class folders, the summary and folder-structure CSVs,
and registers the ZIP with one row in the registry CSV on S3. Expected counts come from the
generated world, not from the code under test."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections import Counter

import openpyxl
import pytest
from helpers.dags import load_dag
from helpers.inference_data import NOW

from dataset_ops.storage import open_storage

pytestmark = pytest.mark.integration


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


@pytest.fixture
def setup(tmp_path, monkeypatch, inference_env):
    root = tmp_path / "storage"
    monkeypatch.setenv("AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT", str(root))
    registry = f"s3://{inference_env.bucket}/registry-{tmp_path.name[-8:]}/"
    monkeypatch.setenv("AIRFLOW_VAR_INFERENCE_REGISTRY_ROOT", registry)
    world = inference_env.world
    run = load_dag("inference_report", retries=0).test(
        logical_date=NOW, run_conf={"deployment_id": world.deployment_id}
    )
    assert str(run.state) == "success", _states(run)
    return root, registry, world, f"dataset_{world.deployment_id}_{NOW:%d%m%y}_v1"


def test_review_then_dataset_then_register(setup):
    from airflow.models import DagRun

    root, registry, world, name = setup
    folder = root / "processes" / name
    refs, devices = list(world.review_references), list(world.review_devices)
    conf = {
        "process_name": name,
        "selection": "params",
        "references": refs,
        "devices": devices,
        "images_per_item": 3,
    }
    review = load_dag("inference_review", retries=0).test(run_conf=conf)
    states = _states(review)
    assert str(review.state) == "success" and states["trigger_dataset"] == "success", states
    triggered = DagRun.find(dag_id="inference_dataset")
    assert any(r.conf == {"process_name": name, "references": refs} for r in triggered)

    # review images: 3 correct + 3 incorrect per reference and device where there are that many
    images = [p for p in (folder / "images").rglob("*.jpg")]
    assert images and all(p.read_bytes() == world.image_bytes(_key(world, p.stem)) for p in images)
    book = openpyxl.load_workbook(next((folder / "reports").glob("*.xlsx")), read_only=True)
    assert {"revisar_imagenes_bajadas", "devices_imagenes_bajadas"} <= set(book.sheetnames)
    book.close()

    dataset = load_dag("inference_dataset", retries=0).test(
        run_conf={"process_name": name, "references": refs}
    )
    assert str(dataset.state) == "success", _states(dataset)
    # classes: the label of each record's true reference, images present in the store
    label_of = {label.reference_id: label for label in world.labels_for() if label.reference_id is not None}
    missing = set(world.missing_images)
    expected = Counter(
        f"{label_of[r.reference_id].id}"
        for r in world.window_records
        if r.reference_id in refs and r.reference_id in label_of and r.image_key not in missing
    )
    got = Counter(p.parent.name.split("_", 1)[0] for p in (folder / "dataset").rglob("*.jpg"))
    assert got == expected and sum(got.values()) > 0
    with open(folder / "reports" / "summary_dataset.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == sum(expected.values())
    assert (folder / "reports" / "folder_structure.csv").is_file()
    manifest = json.loads((folder / "dataset" / "_manifest.json").read_text())  # the one format
    assert manifest["format_version"] == 1 and manifest["status"] in ("complete", "partial")
    assert manifest["producer"] == {"dag_id": "inference_dataset", "run_id": dataset.run_id}
    assert len(manifest["files"]) == sum(expected.values())

    # registration: the ZIP holds the dataset, the registry one row
    from dataset_ops.inference.register import read_registry

    rows = read_registry(registry)
    assert [r["name"] for r in rows] == [name] and rows[0]["images"] == sum(expected.values())
    assert rows[0]["dag_run_id"] == dataset.run_id and str(rows[0]["deployment_id"]) == str(
        world.deployment_id
    )
    storage = open_storage(registry)
    with storage.open_read(f"datasets/{name}.zip") as fh:
        members = zipfile.ZipFile(io.BytesIO(fh.read())).namelist()
    assert sum(m.endswith(".jpg") for m in members) == sum(expected.values())
    metadata = json.loads((folder / "process_metadata.json").read_text())
    assert metadata["status"] == "registered"

    # a second dataset of the same process leaves out what is registered now
    again = load_dag("inference_dataset", retries=0).test(
        run_conf={"process_name": name, "references": refs, "register": False}
    )
    assert str(again.state) == "success"
    created = again.get_task_instance("create_dataset").xcom_pull(task_ids="create_dataset")
    assert created["images"] == 0 and created["skipped"].get("excluded") == sum(expected.values())


def test_merge_two_processes_datasets(setup):
    root, registry, world, first = setup
    refs = list(world.review_references)
    second = first[:-1] + "2"
    report = load_dag("inference_report", retries=0).test(
        logical_date=NOW, run_conf={"deployment_id": world.deployment_id, "days_back": 10}
    )
    assert str(report.state) == "success"
    dataset = load_dag("inference_dataset", retries=0)
    for name, chosen in ((first, refs), (second, refs[:1])):
        conf = {"process_name": name, "references": chosen, "register": False, "exclude_registered": False}
        assert str(dataset.test(run_conf=conf).state) == "success"
    count = {n: len(list((root / "processes" / n / "dataset").rglob("*.jpg"))) for n in (first, second)}
    assert 0 < count[second] < count[first]  # the second: 10 days of one reference, all in the first

    merge = load_dag("inference_merge", retries=0).test(
        run_conf={"process_names": [first, second], "target_process_name": "merged_1", "register": True}
    )
    assert str(merge.state) == "success", _states(merge)
    merged = root / "processes" / "merged_1" / "dataset"
    assert len(list(merged.rglob("*.jpg"))) == count[first]
    report = json.loads((merged / "_merge_report.json").read_text())
    assert report["duplicates"] == count[second] and report["conflicts"] == []
    produced = json.loads((merged / "_manifest.json").read_text())["producer"]
    assert produced == {"dag_id": "inference_merge", "run_id": merge.run_id}
    from dataset_ops.inference.register import read_registry

    rows = read_registry(registry)
    assert [r["name"] for r in rows] == ["merged_1"] and rows[0]["dag_run_id"] == merge.run_id
    assert str(rows[0]["deployment_id"]) == str(world.deployment_id)  # both sources are of it


def _key(world, transaction_id: str) -> str:
    return world.record_by_transaction[transaction_id].image_key
