"""The dataset manifest type (:mod:`dataset_ops.storage.manifest`) on both storage backends."""

from __future__ import annotations

import hashlib
import io

import pytest

from dataset_ops.storage import open_storage, read_json, write_json
from dataset_ops.storage.manifest import (
    FORMAT_VERSION,
    Manifest,
    ManifestError,
    ManifestFile,
    entries,
    read_manifest,
    verify,
    write_manifest,
)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return open_storage(str(tmp_path / "root"))
    return open_storage(f"s3://{request.getfixturevalue('s3_bucket')}/root")


def test_a_manifest_lists_each_file_with_bytes_sha256_rows_and_its_producer(storage):
    storage.write_stream("ds/b.csv", io.BytesIO(b"h\n1\n"))
    storage.write_stream("ds/sub/a.png", io.BytesIO(b"\x89PNG"))
    manifest = Manifest("ds/", {"dag_id": "d", "run_id": "r"})
    for entry in entries(storage, "ds", ["sub/a.png", "b.csv"], rows={"b.csv": 1}):
        manifest.add(entry)
    manifest.status = "complete"
    write_manifest(storage, manifest)

    raw = read_json(storage, "ds/_manifest.json")
    assert raw["format_version"] == FORMAT_VERSION and raw["status"] == "complete"
    assert raw["producer"] == {"dag_id": "d", "run_id": "r"}
    assert raw["files"] == [
        {"path": "b.csv", "bytes": 4, "sha256": hashlib.sha256(b"h\n1\n").hexdigest(), "rows": 1},
        {"path": "sub/a.png", "bytes": 4, "sha256": hashlib.sha256(b"\x89PNG").hexdigest(), "rows": None},
    ]
    assert raw["total_bytes"] == 8 and raw["created_at"].endswith("+00:00")
    again = read_manifest(storage, "ds")
    assert again.complete and again.total_bytes == 8 and again.file("b.csv").rows == 1 and not again.legacy
    assert verify(storage, again, checksums=True) == []


def test_verify_names_missing_resized_and_changed_files(storage):
    for name in ("a", "b", "c"):
        storage.write_stream(f"ds/{name}.txt", io.BytesIO(b"12345"))
    manifest = write_manifest(
        storage, Manifest("ds", status="complete", files=entries(storage, "ds", ["a.txt", "b.txt", "c.txt"]))
    )
    storage.delete("ds/a.txt")
    storage.write_stream("ds/b.txt", io.BytesIO(b"123"))
    storage.write_stream("ds/c.txt", io.BytesIO(b"54321"))
    assert verify(storage, manifest) == [
        "a.txt: listed in the manifest but missing",
        "b.txt: 3 bytes, the manifest says 5",
    ]
    assert verify(storage, manifest, checksums=True)[-1] == "c.txt: sha256 differs from the manifest"


def test_a_dataset_without_a_manifest_is_read_through_the_workflows_legacy_reader(storage):
    storage.write_stream("old/x.csv", io.BytesIO(b"a\n"))
    assert read_manifest(storage, "old") is None

    def legacy(st, prefix):
        return Manifest(prefix, status="complete", files=entries(st, prefix, ["x.csv"]), legacy=True)

    found = read_manifest(storage, "old", legacy=legacy)
    assert found.legacy and found.files[0] == ManifestFile("x.csv", 2, hashlib.sha256(b"a\n").hexdigest())


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"files": []}, "no format_version"),
        ({"format_version": FORMAT_VERSION + 1, "files": [], "status": "complete"}, "reads up to"),
        ({"format_version": 1, "files": [], "status": "done"}, "status 'done'"),
        ({"format_version": 1, "files": [{"path": "x"}], "status": "complete"}, "'bytes'"),
    ],
)
def test_a_manifest_that_cannot_be_read_says_why(storage, doc, reason):
    write_json(storage, "ds/_manifest.json", doc)
    with pytest.raises(ManifestError, match=reason):
        read_manifest(storage, "ds")


def test_writers_sharing_a_prefix_take_turns_and_a_stale_lock_is_taken_over(storage):
    """``update_manifest``: eight writers adding one file each to the same manifest at once all
    end up listed (none lost to a read-modify-write race); an abandoned lock does not block."""
    import json
    import time
    from concurrent.futures import ThreadPoolExecutor

    from dataset_ops.storage.manifest import STALE_LOCK_SECONDS, update_manifest

    def add(i: int) -> None:
        storage.write_stream(f"ds/f{i}.txt", io.BytesIO(b"x" * i))

        def change(current):
            manifest = current or Manifest("ds", status="complete")
            manifest.add(entries(storage, "ds", [f"f{i}.txt"])[0])
            return manifest

        update_manifest(storage, "ds", change, timeout=60)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(add, range(8)))
    manifest = read_manifest(storage, "ds")
    assert sorted(f.path for f in manifest.files) == [f"f{i}.txt" for i in range(8)]
    assert not storage.exists("ds/_manifest.json.lock") and verify(storage, manifest) == []

    old = {"owner": "lost-worker", "at": time.time() - STALE_LOCK_SECONDS - 1}
    storage.write_stream("ds/_manifest.json.lock", io.BytesIO(json.dumps(old).encode()))
    update_manifest(storage, "ds", lambda m: m, timeout=5)
    assert not storage.exists("ds/_manifest.json.lock")
    live = json.dumps({**old, "at": time.time()}).encode()
    storage.write_stream("ds/_manifest.json.lock", io.BytesIO(live))
    with pytest.raises(TimeoutError, match="_manifest.json.lock"):
        update_manifest(storage, "ds", lambda m: m, timeout=0.5)
