"""Nothing in ``fresh/`` or ``failed/`` is ever replaced (issue 14, point 2), on S3 (moto server)
and a local folder: different content under a taken name becomes a new version that the status
record and the listing name; the same content is a duplicate (nothing written); concurrent
writers never take the same version name; an upload replaced during its validation is kept."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime, timedelta

import pytest
from helpers.concurrency import at_once

from dataset_ops.staging import tasks
from dataset_ops.staging.status import (
    UploadState,
    UploadStatus,
    read_status,
    version_of,
    versioned_name,
    write_status,
)
from dataset_ops.storage import file_sha256, open_storage, read_json

GOOD_A = b'{"q": "a"}\n{"q": "b"}\n'
GOOD_B = b'{"q": "c"}\n{"q": "d"}\n{"q": "e"}\n'
BAD_A = b'{"q": "a"}\nnot json\n'
BAD_B = b'[1, 2]\n{"q": \n'


@pytest.fixture(params=["s3", "local"])
def area(request, tmp_path):
    if request.param == "s3":
        return open_storage(f"s3://{request.getfixturevalue('s3_bucket')}/training-data")
    return open_storage(str(tmp_path / "staging"))


def upload(storage, name: str, data: bytes) -> None:
    """As the uploader leaves it: the object in uploads/ and an `uploaded` record with its sha256."""
    storage.write_stream(f"uploads/{name}", io.BytesIO(data))
    previous = read_status(storage, name)
    fields = dict(size=len(data), sha256=hashlib.sha256(data).hexdigest(), data_type="jsonl")
    write_status(
        storage,
        previous.moved_to(UploadState.UPLOADED, **fields)
        if previous
        else UploadStatus(name=name, state=UploadState.UPLOADED, **fields),
    )


def read(storage, key: str) -> bytes:
    with storage.open_read(key) as fh:
        return fh.read()


@pytest.mark.parametrize(
    ("name", "version", "expected"),
    [
        ("x.jsonl", 1, "x.jsonl"),
        ("x.jsonl", 2, "x.v2.jsonl"),
        ("a/t.jsonl.gz", 3, "a/t.v3.jsonl.gz"),
        ("data.2024.csv", 2, "data.2024.v2.csv"),
        ("README", 12, "README.v12"),
        (".env", 2, ".env.v2"),
    ],
)
def test_version_names(name, version, expected):
    assert versioned_name(name, version) == expected
    assert version_of(name, expected.rpartition("/")[2]) == version
    assert version_of(name, name.rpartition("/")[2] + ".report.json") is None


def test_different_content_under_a_fresh_name_is_a_new_version_and_the_same_is_a_no_op(area, caplog):
    caplog.set_level("INFO", logger="dataset_ops.staging.tasks")
    upload(area, "x.jsonl", GOOD_A)
    first = tasks.process_upload(area, "x.jsonl", "jsonl")
    assert (first.state, first.version, first.key) == ("fresh", 1, "fresh/x.jsonl")
    assert "-> new: fresh/x.jsonl" in caplog.text

    upload(area, "x.jsonl", GOOD_B)
    second = tasks.process_upload(area, "x.jsonl", "jsonl")
    assert (second.state, second.version, second.key, second.duplicate_of) == (
        "fresh",
        2,
        "fresh/x.v2.jsonl",
        None,
    )
    assert read(area, "fresh/x.jsonl") == GOOD_A and read(area, "fresh/x.v2.jsonl") == GOOD_B
    assert "new version v2 of x.jsonl: fresh/x.v2.jsonl" in caplog.text
    record = read_status(area, "x.jsonl")
    assert [(v["version"], v["key"], v["sha256"]) for v in record.versions] == [
        (1, "fresh/x.jsonl", hashlib.sha256(GOOD_A).hexdigest()),
        (2, "fresh/x.v2.jsonl", hashlib.sha256(GOOD_B).hexdigest()),
    ]

    # The first content again: a duplicate, nothing written, the upload removed.
    upload(area, "x.jsonl", GOOD_A)
    third = tasks.process_upload(area, "x.jsonl", "jsonl")
    assert (third.state, third.version, third.duplicate_of) == ("fresh", 1, "fresh/x.jsonl")
    assert sorted(area.list("fresh")) == ["fresh/_manifest.json", "fresh/x.jsonl", "fresh/x.v2.jsonl"]
    assert list(area.list("uploads")) == []
    assert "duplicate of fresh/x.jsonl" in caplog.text and "skipped" in caplog.text
    assert len(read_status(area, "x.jsonl").versions) == 2


def test_different_bad_files_of_one_name_keep_both_files_and_both_reports(area):
    upload(area, "d/bad.jsonl", BAD_A)
    one = tasks.process_upload(area, "d/bad.jsonl", "jsonl")
    upload(area, "d/bad.jsonl", BAD_B)
    two = tasks.process_upload(area, "d/bad.jsonl", "jsonl")
    assert (one.key, one.report_key) == ("failed/d/bad.jsonl", "failed/d/bad.jsonl.report.json")
    assert (two.key, two.version, two.report_key) == (
        "failed/d/bad.v2.jsonl",
        2,
        "failed/d/bad.v2.jsonl.report.json",
    )
    assert read(area, one.key) == BAD_A and read(area, two.key) == BAD_B
    for status, data in ((one, BAD_A), (two, BAD_B)):
        report = read_json(area, status.report_key)
        assert report["sha256"] == hashlib.sha256(data).hexdigest() and report["key"] == status.key
        assert report["valid"] is False and report["errors"]

    upload(area, "d/bad.jsonl", BAD_B)  # the same bad bytes again: nothing new
    again = tasks.process_upload(area, "d/bad.jsonl", "jsonl")
    assert again.duplicate_of == "failed/d/bad.v2.jsonl"
    assert sorted(area.list("failed")) == [
        "failed/d/bad.jsonl",
        "failed/d/bad.jsonl.report.json",
        "failed/d/bad.v2.jsonl",
        "failed/d/bad.v2.jsonl.report.json",
    ]


def test_a_quarantined_version_retried_is_promoted_and_the_other_stays(area):
    upload(area, "bad.jsonl", BAD_A)
    tasks.process_upload(area, "bad.jsonl", "jsonl")
    upload(area, "bad.jsonl", GOOD_A[:-1] + b"\n{oops\n")
    tasks.process_upload(area, "bad.jsonl", "jsonl")
    (target,) = tasks.retry_targets(area, ["bad.v2.jsonl"])
    assert (target["name"], target["key"]) == ("bad.jsonl", "failed/bad.v2.jsonl")
    final = tasks.process_upload(
        area, target["name"], target["data_type"], {"max_errors": 5}, "failed", target["key"]
    )
    # max_errors does not make a file valid: still failed, in place, report refreshed, nothing new
    assert final.state == "failed" and final.key == "failed/bad.v2.jsonl"
    assert sorted(area.list("failed")) == [
        "failed/bad.jsonl",
        "failed/bad.jsonl.report.json",
        "failed/bad.v2.jsonl",
        "failed/bad.v2.jsonl.report.json",
    ]
    # A quarantined version whose content is valid passes on retry and leaves failed/.
    area.write_stream("failed/bad.v3.jsonl", io.BytesIO(GOOD_B))
    area.write_stream("failed/bad.v3.jsonl.report.json", io.BytesIO(b"{}"))
    status = read_status(area, "bad.jsonl")
    status.versions.append({"version": 3, "state": "failed", "key": "failed/bad.v3.jsonl", "sha256": "x"})
    write_status(area, status)
    (target,) = tasks.retry_targets(area, ["bad.v3.jsonl"])
    assert target["name"] == "bad.jsonl"
    final = tasks.process_upload(area, "bad.jsonl", "jsonl", None, "failed", target["key"])
    assert (final.state, final.key) == ("fresh", "fresh/bad.jsonl")
    assert read(area, "fresh/bad.jsonl") == GOOD_B
    assert not area.exists("failed/bad.v3.jsonl") and not area.exists("failed/bad.v3.jsonl.report.json")
    assert area.exists("failed/bad.jsonl") and area.exists("failed/bad.v2.jsonl")


# S3 on moto: SeaweedFS 4.48 checks If-None-Match on CompleteMultipartUpload (copy_new's claim)
# without a lock, so several concurrent completes of one key can all succeed; AWS S3 (and moto)
# let one win. Its PutObject If-None-Match is atomic (tests/plugins/test_storage.py).
@pytest.fixture(params=["s3-moto", "local"])
def race_area(request, tmp_path):
    if request.param == "s3-moto":
        return open_storage(f"s3://{request.getfixturevalue('moto_bucket')}/training-data")
    return open_storage(str(tmp_path / "staging"))


def test_concurrent_writers_never_take_the_same_version(race_area):
    """Eight threads put different content under one name at once: eight versions, each intact."""
    contents = {i: b'{"n": %d}\n' % i * (i + 1) for i in range(8)}
    for i, data in contents.items():
        race_area.write_stream(f"src/{i}.jsonl", io.BytesIO(data))

    def run(i: int):
        sha = hashlib.sha256(contents[i]).hexdigest()
        return tasks.place(
            race_area, "fresh", "x.jsonl", sha, {}, lambda key: race_area.copy_new(f"src/{i}.jsonl", key)
        )

    placed = at_once(run, contents)
    assert sorted(p.version for p in placed.values()) == list(range(1, 9))
    for i, p in placed.items():
        assert not p.duplicate and read(race_area, p.key) == contents[i]


def test_copy_new_never_replaces(area):
    area.write_stream("a", io.BytesIO(b"first"))
    area.write_stream("b", io.BytesIO(b"second"))
    assert area.copy_new("a", "dst") is True
    assert area.copy_new("b", "dst") is False
    assert read(area, "dst") == b"first"
    with pytest.raises(FileNotFoundError):
        area.copy_new("missing", "other")


def test_s3_copy_new_in_several_parts(s3_bucket):
    area = open_storage(f"s3://{s3_bucket}/p")
    data = hashlib.sha256(b"seed").digest() * (12 * 1024 * 1024 // 32 + 5)
    area.write_stream("big", io.BytesIO(data))
    assert area.copy_new("big", "copy", part_size=5 << 20) is True
    assert area.copy_new("big", "copy", part_size=5 << 20) is False
    assert file_sha256(area, "copy") == hashlib.sha256(data).hexdigest()
    assert area.client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_an_upload_replaced_during_validation_is_kept_and_never_promoted_unchecked(area, monkeypatch):
    upload(area, "x.jsonl", GOOD_A)
    real = tasks.validate_file

    def validate_then_replace(storage, key, data_type, overrides, rules=None):
        result = real(storage, key, data_type, overrides, rules)
        storage.write_stream(key, io.BytesIO(b"not json at all\n"))  # replaced behind our back
        return result

    monkeypatch.setattr(tasks, "validate_file", validate_then_replace)
    status = tasks.process_upload(area, "x.jsonl", "jsonl")
    assert status.state == "uploaded" and "replaced while it was validated" in status.error_summary
    assert list(area.list("fresh")) == []  # the unchecked bytes never reached fresh/
    assert read(area, "uploads/x.jsonl") == b"not json at all\n"  # and the new upload is kept
    monkeypatch.undo()
    assert tasks.process_upload(area, "x.jsonl", "jsonl").state == "failed"


def test_a_copy_of_the_validated_bytes_is_kept_when_the_upload_is_replaced_after_it(area, monkeypatch):
    upload(area, "x.jsonl", GOOD_A)
    real_place = tasks.place

    def place_then_replace(storage, folder, name, sha256, known, claim):
        placed = real_place(storage, folder, name, sha256, known, claim)
        storage.write_stream("uploads/x.jsonl", io.BytesIO(GOOD_B))  # a new upload lands now
        return placed

    monkeypatch.setattr(tasks, "place", place_then_replace)
    status = tasks.process_upload(area, "x.jsonl", "jsonl")
    assert (status.state, status.key) == ("fresh", "fresh/x.jsonl")
    assert read(area, "fresh/x.jsonl") == GOOD_A and read(area, "uploads/x.jsonl") == GOOD_B
    monkeypatch.undo()
    upload(area, "x.jsonl", GOOD_B)  # (its record, as the uploader would write it)
    assert tasks.process_upload(area, "x.jsonl", "jsonl").key == "fresh/x.v2.jsonl"


def test_cleanup_removes_old_failed_versions_only(area):
    upload(area, "bad.jsonl", BAD_A)
    tasks.process_upload(area, "bad.jsonl", "jsonl")
    upload(area, "bad.jsonl", GOOD_A)
    tasks.process_upload(area, "bad.jsonl", "jsonl")  # fresh v1, the failed v1 stays
    upload(area, "bad.jsonl", BAD_B)
    tasks.process_upload(area, "bad.jsonl", "jsonl")  # failed v2
    status = read_status(area, "bad.jsonl")
    status.versions[0]["at"] = (datetime.now(UTC) - timedelta(hours=30)).isoformat(timespec="seconds")
    write_status(area, status)
    assert tasks.cleanup(area, dry_run=True)["failed"] == ["bad.jsonl"]
    assert tasks.cleanup(area)["failed"] == ["bad.jsonl"]
    assert not area.exists("failed/bad.jsonl") and not area.exists("failed/bad.jsonl.report.json")
    assert area.exists("failed/bad.v2.jsonl") and area.exists("fresh/bad.jsonl")
    assert [v["key"] for v in read_status(area, "bad.jsonl").versions] == [
        "fresh/bad.jsonl",
        "failed/bad.v2.jsonl",
    ]


def test_listing_names_every_version(tmp_path, capsys):
    from dataset_ops.staging.__main__ import main

    area = open_storage(str(tmp_path))
    for data in (GOOD_A, GOOD_B, BAD_A, GOOD_A):
        upload(area, "x.jsonl", data)
        tasks.process_upload(area, "x.jsonl", "jsonl")
    assert main(["list", "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:4] for line in lines] == [
        ["fresh", "x.jsonl", "v1", "fresh/x.jsonl"],
        ["fresh", "x.jsonl", "v2", "fresh/x.v2.jsonl"],
        ["failed", "x.jsonl", "v1", "failed/x.jsonl"],
    ]
    assert "was a duplicate of this file" in lines[0]
    assert main(["list", "--root", str(tmp_path), "--state", "failed"]) == 0
    assert [line.split()[3] for line in capsys.readouterr().out.splitlines()] == ["failed/x.jsonl"]
