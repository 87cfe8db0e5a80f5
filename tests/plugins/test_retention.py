"""Retention rules on real storage (a local root and moto's S3 server): exactly the right Apify
datasets go (age, keep_recent, in-progress downloads, datasets without a manifest), a dry run
deletes nothing, old inference working folders go and recent ones stay."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from helpers.apify_datasets import make_dataset

from dataset_ops.apify.inventory import cleanup_datasets, list_datasets
from dataset_ops.retention import cleanup_work_folders, effective_dry_run
from dataset_ops.storage import open_storage

# run id -> (days since created, completeness, days since last touched)
AGES = {
    "AAAAAAAAAAAAAAAA1": (1, "complete", None),
    "AAAAAAAAAAAAAAAA2": (5, "partial", None),
    "AAAAAAAAAAAAAAAA3": (10, "complete", None),
    "AAAAAAAAAAAAAAAA4": (20, "complete", None),
    "AAAAAAAAAAAAAAAA5": (40, "complete", None),
    "AAAAAAAAAAAAAAAA9": (45, "in_progress", 3),  # its worker died 3 days ago: stale
    "AAAAAAAAAAAAAAAA6": (50, "complete", None),
    "AAAAAAAAAAAAAAAA7": (60, "in_progress", 0),  # downloading right now
    "AAAAAAAAAAAAAAAA8": (70, None, None),  # copied in by hand: no manifest
}


@pytest.fixture(params=["manifest", "legacy"])
def datasets(tmp_path, request):
    """The datasets of ``AGES`` with ``_manifest.json``, or with the ``manifest.json`` of
    earlier versions (the same rules hold for both)."""
    root = tmp_path / "storage"
    legacy = request.param == "legacy"
    sizes = {
        run_id: make_dataset(
            root, run_id, days_ago=age, completeness=state, touched_days_ago=touched, legacy=legacy
        )
        for run_id, (age, state, touched) in AGES.items()
    }
    return root, sizes


def _stored(root) -> set[str]:
    return {d.run_id for d in list_datasets(open_storage(str(root)))}


def test_a_dry_run_reports_and_deletes_nothing(datasets):
    root, sizes = datasets
    report = cleanup_datasets(open_storage(str(root)), days_old=30, keep_recent=3, dry_run=True)
    doomed = {"AAAAAAAAAAAAAAAA5", "AAAAAAAAAAAAAAAA9", "AAAAAAAAAAAAAAAA6", "AAAAAAAAAAAAAAAA8"}
    assert {r["run_id"] for r in report["deleted_runs"]} == doomed
    assert report["runs_checked"] == 9 and report["runs_to_delete"] == 4 and report["runs_kept"] == 5
    assert report["runs_deleted"] == 0 and report["freed_space_bytes"] == 0
    assert report["space_to_free_bytes"] == sum(sizes[r] for r in doomed)
    assert report["in_progress"] == ["AAAAAAAAAAAAAAAA7"]
    assert {r["run_id"]: r["days_old"] for r in report["deleted_runs"]} == {
        "AAAAAAAAAAAAAAAA5": 40,
        "AAAAAAAAAAAAAAAA9": 45,
        "AAAAAAAAAAAAAAAA6": 50,
        "AAAAAAAAAAAAAAAA8": 70,
    }
    assert _stored(root) == set(AGES)


def test_old_datasets_go_but_the_newest_and_those_in_progress_stay(datasets):
    root, sizes = datasets
    report = cleanup_datasets(open_storage(str(root)), days_old=30, keep_recent=6, dry_run=False)
    # the 6 newest (1..45 days) stay even when older than 30 days; 60 days is downloading
    assert {r["run_id"] for r in report["deleted_runs"]} == {"AAAAAAAAAAAAAAAA6", "AAAAAAAAAAAAAAAA8"}
    assert report["runs_deleted"] == 2 and report["runs_kept"] == 7
    assert report["freed_space_bytes"] == sizes["AAAAAAAAAAAAAAAA6"] + sizes["AAAAAAAAAAAAAAAA8"]
    assert _stored(root) == set(AGES) - {"AAAAAAAAAAAAAAAA6", "AAAAAAAAAAAAAAAA8"}
    assert not (root / "datasets/facebook/AAAAAAAAAAAAAAAA6").exists()  # no empty folders left
    again = cleanup_datasets(open_storage(str(root)), days_old=30, keep_recent=6, dry_run=False)
    assert again["runs_to_delete"] == 0 and again["runs_checked"] == 7


def test_keep_recent_zero_and_days_old_zero_delete_all_but_the_download_in_progress(datasets):
    root, _ = datasets
    report = cleanup_datasets(open_storage(str(root)), days_old=0, keep_recent=0, dry_run=False)
    assert report["runs_deleted"] == 8 and _stored(root) == {"AAAAAAAAAAAAAAAA7"}
    with pytest.raises(ValueError, match="must be >= 0"):
        cleanup_datasets(open_storage(str(root)), days_old=-1)


def test_the_rules_hold_on_s3(s3_bucket, tmp_path):
    local = tmp_path / "src"
    for run_id, (age, state, touched) in AGES.items():
        if state is not None:  # S3 sets its own object dates: the manifest carries the age
            make_dataset(local, run_id, days_ago=age, completeness=state, touched_days_ago=touched)
    storage = open_storage(f"s3://{s3_bucket}/root")
    for path in local.rglob("*"):
        if path.is_file():
            storage.write_file(str(path.relative_to(local)), path)
    report = cleanup_datasets(storage, days_old=30, keep_recent=3, dry_run=False)
    assert {r["run_id"] for r in report["deleted_runs"]} == {"AAAAAAAAAAAAAAAA5", "AAAAAAAAAAAAAAAA6"}
    # on S3 the stale in-progress download's objects are new (uploaded now): it counts as running
    assert set(report["in_progress"]) == {"AAAAAAAAAAAAAAAA7", "AAAAAAAAAAAAAAAA9"}
    left = {k.split("/")[2] for k in storage.list("datasets/facebook/")}
    assert left == {r for r, v in AGES.items() if v[1] is not None} - {
        "AAAAAAAAAAAAAAAA5",
        "AAAAAAAAAAAAAAAA6",
    }


def test_old_inference_work_folders_go(tmp_path):
    root = tmp_path / "storage"
    old_stamp = (datetime.now(UTC) - timedelta(days=9)).timestamp()
    for name, stamp in (("p_old", old_stamp), ("p_new", None)):
        folder = root / "work" / "inference" / name / "images"
        folder.mkdir(parents=True)
        (folder / "a.jpg").write_bytes(b"x" * 10)
        (folder.parent / "log.txt").write_bytes(b"y" * 5)
        if stamp:
            for p in folder.parent.rglob("*"):
                os.utime(p, (stamp, stamp))
    # a folder with one recent file is still being worked on
    mixed = root / "work" / "inference" / "p_mixed"
    mixed.mkdir()
    (mixed / "old.bin").write_bytes(b"z")
    os.utime(mixed / "old.bin", (old_stamp, old_stamp))
    (mixed / "new.bin").write_bytes(b"z")
    storage = open_storage(str(root))
    dry = cleanup_work_folders(storage, older_than_days=7, dry_run=True)
    assert [f["folder"] for f in dry["deleted_folders"]] == ["work/inference/p_old"]
    assert dry["deleted_folders"][0]["size_bytes"] == 15 and dry["deleted_folders"][0]["days_old"] == 9
    assert dry["folders_checked"] == 3 and (root / "work/inference/p_old/log.txt").exists()
    real = cleanup_work_folders(storage, older_than_days=7, dry_run=False)
    assert real["folders_deleted"] == 1 and real["freed_space_bytes"] == 15
    assert not (root / "work/inference/p_old").exists()
    assert (root / "work/inference/p_new/log.txt").exists() and (mixed / "old.bin").exists()


def test_scheduled_runs_delete_and_manual_runs_follow_the_param():
    from airflow.sdk.api.datamodels._generated import DagRunType

    assert effective_dry_run(True, DagRunType.SCHEDULED) is False  # what a task's context holds
    assert effective_dry_run(True, DagRunType.MANUAL) is True
    assert effective_dry_run(True, "scheduled") is False
    assert effective_dry_run(True, "manual") is True and effective_dry_run(False, "manual") is False
