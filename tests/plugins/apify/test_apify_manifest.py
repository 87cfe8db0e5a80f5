"""The Apify dataset's manifest: the DAG's steps write ``_manifest.json`` (the suite's one
manifest type), the inventory reads it, and datasets of earlier versions (``manifest.json`` in
the exact shape those versions wrote) stay listable, resumable and deletable."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from dataset_ops.apify.inventory import delete_dataset, get_dataset, legacy_manifest, list_datasets
from dataset_ops.apify.tasks import finalize, prepare, read_manifest, satisfies, save_manifest
from dataset_ops.settings import ApifyDownloadParams
from dataset_ops.storage import open_storage, read_json
from dataset_ops.storage.manifest import ManifestError, entries, verify

RUN = "HG7ML7M8z78YcAPEB"
PREFIX = f"datasets/facebook/{RUN}"
PARAMS = ApifyDownloadParams(download_media=True, extract_video_frames=False, frame_interval_seconds=1.0)
APIFY_RUN = {"run_id": RUN, "dataset_id": "WkzbQMuFYuamGv3YF", "status": "SUCCEEDED", "finished_at": None}
FILES = {
    f"{RUN}.csv": b"adArchiveID\n1\n2\n",
    f"{RUN}.jsonl": b'{"adArchiveID": "1"}\n{"adArchiveID": "2"}\n',
    "media/1_aaaa.jpg": b"\xff\xd8" + b"a" * 100,
}


@pytest.fixture
def storage(tmp_path):
    root = tmp_path / "storage"
    for rel, data in FILES.items():
        path = root / PREFIX / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return open_storage(str(root))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_steps_write_the_one_manifest_type_and_the_inventory_reads_it(storage):
    producer = {"dag_id": "apify_dataset_download", "run_id": "manual__1"}
    plan = prepare(storage, APIFY_RUN, PARAMS, "manual__1", producer)
    raw = read_json(storage, f"{PREFIX}/_manifest.json")
    assert raw["status"] == "in_progress" and raw["producer"] == producer and raw["files"] == []
    assert get_dataset(storage, RUN).completeness == "in_progress"

    manifest = read_manifest(storage, RUN)  # what download_items and download_media record
    for entry in entries(
        storage, PREFIX, [f"{RUN}.csv", f"{RUN}.jsonl"], {f"{RUN}.csv": 2, f"{RUN}.jsonl": 2}
    ):
        manifest.add(entry)
    manifest.extra["counts"].update(items=2, csv_rows=2, jsonl_lines=2, media_failed=0)
    manifest.extra["media"] = [
        {
            "name": "1_aaaa.jpg",
            "status": "downloaded",
            "kind": "image",
            "bytes": 102,
            "sha256": _sha(FILES["media/1_aaaa.jpg"]),
        }
    ]
    manifest.add(entries(storage, PREFIX, ["media/1_aaaa.jpg"])[0])
    save_manifest(storage, RUN, manifest)
    result = finalize(storage, plan, {"download_items": {"items": 2}, "download_media": {"media": 1}})

    raw = read_json(storage, f"{PREFIX}/_manifest.json")
    assert raw["status"] == result["completeness"] == "complete" and raw["problems"] == []
    assert result["manifest"].endswith(f"{PREFIX}/_manifest.json")
    report = read_json(storage, f"{PREFIX}/reports/download_report.json")
    assert report["completeness"] == "complete" and report["dag_run_id"] == "manual__1"
    listed = {f["path"]: f for f in raw["files"]}
    assert set(listed) == set(FILES) | {"reports/download_report.json"}
    assert listed[f"{RUN}.csv"] == {
        "path": f"{RUN}.csv",
        "bytes": len(FILES[f"{RUN}.csv"]),
        "sha256": _sha(FILES[f"{RUN}.csv"]),
        "rows": 2,
    }
    assert result["total_size_bytes"] == raw["total_bytes"] == sum(f["bytes"] for f in raw["files"])
    assert raw["extra"]["dataset_id"] == "WkzbQMuFYuamGv3YF" and raw["extra"]["download"]["finished_at"]
    assert verify(storage, read_manifest(storage, RUN), checksums=True) == []
    assert not storage.exists(f"{PREFIX}/.download.lock")

    dataset = get_dataset(storage, RUN)
    assert dataset.completeness == "complete" and not dataset.manifest.legacy
    details = dataset.details()
    assert details["files"]["csv"]["rows"] == 2 and details["files"]["jsonl"]["lines"] == 2
    assert details["dataset_id"] == "WkzbQMuFYuamGv3YF" and details["created_at"] == raw["created_at"]
    assert satisfies(read_manifest(storage, RUN), PARAMS)
    assert prepare(storage, APIFY_RUN, PARAMS, "manual__2")["skip"] is True

    gone = delete_dataset(storage, RUN)
    assert gone["files_deleted"] == len(FILES) + 2  # the report and the manifest
    assert list(storage.list(PREFIX + "/")) == []


def _old_manifest(completeness: str) -> dict:
    """``manifest.json`` exactly as the earlier ``apify/tasks.py`` wrote it."""
    created = datetime.now(UTC) - timedelta(days=3)
    return {
        "run_id": RUN,
        "dataset_id": "WkzbQMuFYuamGv3YF",
        "completeness": completeness,
        "created_at": created.isoformat(timespec="seconds"),
        "last_modified": (created + timedelta(minutes=4)).isoformat(timespec="seconds"),
        "run": {"status": "SUCCEEDED", "finished_at": None},
        "params": {"download_media": True, "extract_video_frames": False, "frame_interval_seconds": 1.0},
        "download": {
            "dag_run_id": "manual__old",
            "started_at": created.isoformat(timespec="seconds"),
            "finished_at": (created + timedelta(minutes=4)).isoformat(timespec="seconds"),
        },
        "counts": {
            "items": 2,
            "csv_rows": 2,
            "jsonl_lines": 2,
            "columns": 1,
            "images": 1,
            "videos": 0,
            "media_failed": 1,
        },
        "files": {
            kind: {
                "name": f"{RUN}.{kind}",
                "bytes": len(FILES[f"{RUN}.{kind}"]),
                "sha256": _sha(FILES[f"{RUN}.{kind}"]),
            }
            for kind in ("jsonl", "csv")
        },
        "media": [
            {
                "name": "1_aaaa.jpg",
                "url": "https://x/a.jpg",
                "kind": "image",
                "ad_id": "1",
                "status": "downloaded",
                "bytes": 102,
                "sha256": _sha(FILES["media/1_aaaa.jpg"]),
                "content_type": "image/jpeg",
                "error": None,
                "source": "snapshot",
            },
            {
                "name": "1_bbbb.jpg",
                "url": "https://x/b.jpg",
                "kind": "image",
                "ad_id": "1",
                "status": "failed",
                "bytes": 0,
                "sha256": None,
                "content_type": None,
                "error": "HTTP 404",
                "source": "snapshot",
            },
        ],
        "video_frames": [],
        "total_size_bytes": sum(len(v) for v in FILES.values()),
        "problems": ["media 1_bbbb.jpg (https://x/b.jpg): HTTP 404"],
    }


def test_a_legacy_manifest_is_listed_resumed_and_replaced(storage):
    old = _old_manifest("partial")
    storage.write_stream(f"{PREFIX}/manifest.json", io.BytesIO(json.dumps(old).encode()))

    legacy = legacy_manifest(storage, PREFIX)
    assert legacy.legacy and legacy.status == "partial" and legacy.problems == old["problems"]
    assert legacy.producer == {"dag_id": "apify_dataset_download", "run_id": "manual__old"}
    assert sorted(f.path for f in legacy.files) == sorted(FILES)  # the failed media is not a file
    assert legacy.file(f"{RUN}.csv").rows == 2 and legacy.updated_at == old["last_modified"]
    assert verify(storage, legacy, checksums=True) == []
    (dataset,) = list_datasets(storage)
    assert dataset.completeness == "partial" and dataset.details()["files"]["media"]["failed"] == 1
    assert dataset.details()["created_at"] == old["created_at"]
    assert not satisfies(legacy, PARAMS)

    plan = prepare(storage, APIFY_RUN, PARAMS, "manual__new")  # resumes: keeps what was recorded
    assert plan["skip"] is False and not storage.exists(f"{PREFIX}/manifest.json")
    now = read_manifest(storage, RUN)
    assert not now.legacy and now.status == "in_progress" and now.created_at == old["created_at"]
    assert now.extra["media"] == old["media"] and now.file("media/1_aaaa.jpg") is not None
    assert now.producer == {"dag_id": "apify_dataset_download", "run_id": "manual__new"}


def test_a_legacy_manifest_that_is_no_manifest_is_an_error(storage):
    storage.write_stream(f"{PREFIX}/manifest.json", io.BytesIO(b'{"run_id": "x"}'))
    with pytest.raises(ManifestError, match="completeness"):
        get_dataset(storage, RUN)


def test_a_folder_without_any_manifest_is_listed_and_deletable(storage):
    (dataset,) = list_datasets(storage)
    assert dataset.manifest is None and dataset.completeness == "unknown"
    files = dataset.details()["files"]
    assert (files["csv"]["rows"], files["jsonl"]["lines"]) == (2, 2)  # counted in the files
    assert delete_dataset(storage, RUN)["files_deleted"] == len(FILES)
