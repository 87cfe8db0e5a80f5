"""``fresh/_manifest.json`` (issue 15: every workflow writes and reads the one manifest type), on
the SeaweedFS S3 server and a local folder: each promotion lists its file with bytes, sha256,
rows and producer; a duplicate adds nothing; versions are separate entries; concurrent
promotions all end in it; a run stopped after its copy is finished by the next; a ``fresh/``
written before the manifest is read from the status records; the reserved names are refused."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from helpers.concurrency import at_once

from dataset_ops.errors import InputError
from dataset_ops.staging import tasks
from dataset_ops.staging.status import (
    UploadState,
    UploadStatus,
    check_name,
    read_status,
    write_status,
)
from dataset_ops.storage import open_storage, read_json
from dataset_ops.storage.manifest import verify

GOOD_A = b'{"q": "a"}\n{"q": "b"}\n'
GOOD_B = b'{"q": "c"}\n{"q": "d"}\n{"q": "e"}\n'
PRODUCER = {"dag_id": "staged_upload_validation", "run_id": "manual__2026-12-07T17:00:00+00:00"}


@pytest.fixture(params=["s3", "local"])
def area(request, tmp_path):
    if request.param == "s3":
        return open_storage(f"s3://{request.getfixturevalue('s3_bucket')}/training-data")
    return open_storage(str(tmp_path / "staging"))


def upload(storage, name: str, data: bytes, data_type: str = "jsonl") -> None:
    """As the uploader leaves it: the object in uploads/ and an `uploaded` record with its sha256."""
    storage.write_stream(f"uploads/{name}", io.BytesIO(data))
    previous = read_status(storage, name)
    fields = dict(size=len(data), sha256=hashlib.sha256(data).hexdigest(), data_type=data_type)
    write_status(
        storage,
        previous.moved_to(UploadState.UPLOADED, **fields)
        if previous
        else UploadStatus(name=name, state=UploadState.UPLOADED, **fields),
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_promotion_lists_its_file_with_bytes_sha256_rows_and_producer(area):
    upload(area, "gsm8k/train.jsonl", GOOD_A)
    status = tasks.process_upload(area, "gsm8k/train.jsonl", "jsonl", producer=PRODUCER)
    assert (status.state, status.key) == ("fresh", "fresh/gsm8k/train.jsonl")

    raw = read_json(area, "fresh/_manifest.json")
    assert raw["format_version"] == 1 and raw["dataset"] == "fresh" and raw["status"] == "complete"
    assert raw["producer"] == PRODUCER
    assert raw["files"] == [
        {"path": "gsm8k/train.jsonl", "bytes": len(GOOD_A), "sha256": sha(GOOD_A), "rows": 2}
    ]
    info = raw["extra"]["files"]["gsm8k/train.jsonl"]
    assert (info["name"], info["version"], info["data_type"], info["producer"]) == (
        "gsm8k/train.jsonl",
        1,
        "jsonl",
        PRODUCER,
    )
    manifest = tasks.read_fresh_manifest(area)
    assert not manifest.legacy and verify(area, manifest, checksums=True) == []
    assert not area.exists("fresh/_manifest.json.lock")  # the lock is released


def test_versions_are_separate_entries_and_a_duplicate_adds_nothing(area):
    upload(area, "gsm8k/train.jsonl", GOOD_A)
    tasks.process_upload(area, "gsm8k/train.jsonl", "jsonl", producer=PRODUCER)
    upload(area, "gsm8k/train.jsonl", GOOD_B)
    second = {**PRODUCER, "run_id": "scheduled__2"}
    tasks.process_upload(area, "gsm8k/train.jsonl", "jsonl", producer=second)
    manifest = tasks.read_fresh_manifest(area)
    assert [(f.path, f.bytes, f.sha256, f.rows) for f in manifest.files] == [
        ("gsm8k/train.jsonl", len(GOOD_A), sha(GOOD_A), 2),
        ("gsm8k/train.v2.jsonl", len(GOOD_B), sha(GOOD_B), 3),
    ]
    assert manifest.extra["files"]["gsm8k/train.v2.jsonl"]["version"] == 2
    assert manifest.extra["files"]["gsm8k/train.v2.jsonl"]["producer"] == second
    assert manifest.extra["files"]["gsm8k/train.jsonl"]["producer"] == PRODUCER
    before = read_json(area, "fresh/_manifest.json")

    upload(area, "gsm8k/train.jsonl", GOOD_A)  # the same bytes again
    third = tasks.process_upload(area, "gsm8k/train.jsonl", "jsonl", producer={**PRODUCER, "run_id": "3"})
    assert third.duplicate_of == "fresh/gsm8k/train.jsonl"
    assert read_json(area, "fresh/_manifest.json") == before  # not rewritten (updated_at too)
    assert verify(area, tasks.read_fresh_manifest(area), checksums=True) == []


def test_concurrent_promotions_of_different_names_all_end_in_the_manifest(area):
    names = [f"batch/part-{i}.jsonl" for i in range(6)]
    contents = {name: b'{"n": %d}\n' % i * (i + 1) for i, name in enumerate(names)}
    for name, data in contents.items():
        upload(area, name, data)
    results = at_once(lambda name: tasks.process_upload(area, name, "jsonl", producer=PRODUCER), names)
    assert {n: s.state for n, s in results.items()} == {n: "fresh" for n in names}
    manifest = tasks.read_fresh_manifest(area)
    assert {f.path: (f.sha256, f.rows) for f in manifest.files} == {
        name: (sha(data), data.count(b"\n")) for name, data in contents.items()
    }
    assert verify(area, manifest, checksums=True) == []
    assert not area.exists("fresh/_manifest.json.lock")


def test_a_run_stopped_after_its_copy_is_finished_by_the_next(area):
    upload(area, "a.jsonl", GOOD_A)
    tasks.process_upload(area, "a.jsonl", "jsonl", producer=PRODUCER)
    # The crashed run: validated, copied into fresh/ (place + copy_new), then stopped.
    upload(area, "x.jsonl", GOOD_B)
    placed = tasks.place(
        area, "fresh", "x.jsonl", sha(GOOD_B), {}, lambda key: area.copy_new("uploads/x.jsonl", key)
    )
    assert (placed.key, placed.duplicate) == ("fresh/x.jsonl", False)
    assert tasks.read_fresh_manifest(area).file("x.jsonl") is None
    assert area.exists("uploads/x.jsonl")

    nxt = {**PRODUCER, "run_id": "next"}
    status = tasks.process_upload(area, "x.jsonl", "jsonl", producer=nxt)
    assert (status.state, status.key, status.duplicate_of) == ("fresh", "fresh/x.jsonl", None)
    assert [v["key"] for v in status.versions] == ["fresh/x.jsonl"]
    assert not area.exists("uploads/x.jsonl")
    manifest = tasks.read_fresh_manifest(area)
    entry = manifest.file("x.jsonl")
    assert (entry.bytes, entry.sha256, entry.rows) == (len(GOOD_B), sha(GOOD_B), 3)
    assert manifest.extra["files"]["x.jsonl"]["producer"] == nxt
    assert [f.path for f in manifest.files] == ["a.jsonl", "x.jsonl"]
    assert verify(area, manifest, checksums=True) == []
    assert tasks.promotion_event_extra(area, status)["sha256"] == sha(GOOD_B)

    # Once listed, the same bytes again are a plain duplicate: nothing written.
    before = read_json(area, "fresh/_manifest.json")
    upload(area, "x.jsonl", GOOD_B)
    again = tasks.process_upload(area, "x.jsonl", "jsonl", producer=PRODUCER)
    assert again.duplicate_of == "fresh/x.jsonl"
    assert read_json(area, "fresh/_manifest.json") == before


def test_a_fresh_folder_without_a_manifest_is_read_from_the_status_records(area):
    # As promoted before the manifest existed: files, versions in the records, no _manifest.json.
    for name, data in (("x.jsonl", GOOD_A), ("x.jsonl", GOOD_B), ("d/y.jsonl", GOOD_B)):
        upload(area, name, data)
        tasks.process_upload(area, name, "jsonl")
    area.delete("fresh/_manifest.json")
    # and a record older than `versions` (state fresh, no key, no sha256)
    area.write_stream("fresh/old.jsonl", io.BytesIO(GOOD_A))
    write_status(area, UploadStatus(name="old.jsonl", state="fresh", size=len(GOOD_A), records=2))
    # a failed file is not part of fresh/
    upload(area, "bad.jsonl", b"not json\n")
    tasks.process_upload(area, "bad.jsonl", "jsonl")

    legacy = tasks.read_fresh_manifest(area)
    assert legacy.legacy and legacy.status == "complete" and legacy.producer == {}
    assert [(f.path, f.bytes, f.sha256, f.rows) for f in legacy.files] == [
        ("d/y.jsonl", len(GOOD_B), sha(GOOD_B), 3),
        ("old.jsonl", len(GOOD_A), sha(GOOD_A), 2),
        ("x.jsonl", len(GOOD_A), sha(GOOD_A), 2),
        ("x.v2.jsonl", len(GOOD_B), sha(GOOD_B), 3),
    ]
    assert legacy.extra["files"]["x.v2.jsonl"]["name"] == "x.jsonl"
    assert legacy.extra["files"]["x.v2.jsonl"]["version"] == 2
    assert verify(area, legacy, checksums=True) == []
    assert not area.exists("fresh/_manifest.json")  # reading writes nothing

    # The next promotion writes the manifest with the old files and the new one.
    upload(area, "z.jsonl", GOOD_A)
    tasks.process_upload(area, "z.jsonl", "jsonl", producer=PRODUCER)
    written = tasks.read_fresh_manifest(area)
    assert not written.legacy
    assert [f.path for f in written.files] == ["d/y.jsonl", "old.jsonl", "x.jsonl", "x.v2.jsonl", "z.jsonl"]
    assert verify(area, written, checksums=True) == []


def test_an_empty_fresh_folder_has_no_manifest(area):
    assert tasks.read_fresh_manifest(area) is None


def test_a_user_file_at_fresh_manifest_json_is_never_replaced(area):
    """Promoted before the name was reserved: the first promotion fails loudly, the file stays."""
    area.write_stream("fresh/_manifest.json", io.BytesIO(b'{"mine": true}'))
    upload(area, "x.jsonl", GOOD_A)
    with pytest.raises(ValueError, match="is not a dataset manifest.*move it out of fresh/"):
        tasks.process_upload(area, "x.jsonl", "jsonl", producer=PRODUCER)
    with area.open_read("fresh/_manifest.json") as fh:
        assert json.loads(fh.read()) == {"mine": True}
    assert area.exists("uploads/x.jsonl")  # kept for a run after the file is moved


@pytest.mark.parametrize("name", ["_manifest.json", "_manifest.json.lock"])
def test_the_manifest_names_are_reserved_at_the_top(name):
    with pytest.raises(InputError, match=r"reserved upload name .*fresh/_manifest.json is the manifest"):
        check_name(name)
    assert check_name(f"data/{name}") == f"data/{name}"  # only the top level collides


def test_an_upload_named_like_the_manifest_is_quarantined_not_promoted(tmp_path):
    area = open_storage(str(tmp_path))
    area.write_stream("uploads/_manifest.json", io.BytesIO(b'{"q": 1}\n'))
    assert tasks.find_uploads(area) == []
    assert not area.exists("fresh/_manifest.json") and list(area.list("uploads")) == []
    (report,) = [k for k in area.list("failed/_unsafe") if k.endswith(".report.json")]
    assert "reserved upload name" in read_json(area, report)["errors"][0]["reason"]


def test_the_uploader_refuses_the_manifest_name(tmp_path):
    from dataset_ops.staging.upload import upload_file

    source = tmp_path / "_manifest.json"
    source.write_bytes(b'{"q": 1}\n')
    with pytest.raises(InputError, match="reserved upload name"):
        upload_file(source, str(tmp_path / "staging" / "uploads"), progress=False)
    assert not (tmp_path / "staging" / "uploads" / "_manifest.json").exists()


def test_listing_and_verify_read_the_manifest(tmp_path, capsys):
    from dataset_ops.staging.__main__ import main

    area = open_storage(str(tmp_path))
    upload(area, "x.jsonl", GOOD_A)
    tasks.process_upload(area, "x.jsonl", "jsonl", producer={"tool": "test"})
    assert main(["verify", "--root", str(tmp_path), "--checksums"]) == 0
    out = capsys.readouterr().out
    assert "fresh/_manifest.json: 1 files, 22 B, complete" in out and "problem" not in out

    # A copy left by a stopped run: listed as not in the manifest; verify names it.
    area.write_stream("uploads/y.jsonl", io.BytesIO(GOOD_B))
    tasks.place(area, "fresh", "y.jsonl", sha(GOOD_B), {}, lambda k: area.copy_new("uploads/y.jsonl", k))
    assert main(["verify", "--root", str(tmp_path)]) == 2
    assert "problem: y.jsonl: in fresh/ but not listed in the manifest" in capsys.readouterr().out
    # A listed file that went missing or changed size.
    (tmp_path / "fresh" / "x.jsonl").write_bytes(GOOD_B)
    assert main(["verify", "--root", str(tmp_path)]) == 2
    assert f"x.jsonl: {len(GOOD_B)} bytes, the manifest says {len(GOOD_A)}" in capsys.readouterr().out

    # The listing takes size and records of fresh files from the manifest.
    status = read_status(area, "x.jsonl")
    status.versions[0]["records"] = 999  # the record disagrees; the manifest wins
    write_status(area, status)
    assert main(["list", "--root", str(tmp_path), "--state", "fresh"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.split()[:4] == ["fresh", "x.jsonl", "v1", "fresh/x.jsonl"] and " 2 rec" in line
