"""Staging area mechanics on S3 (moto server) and a local folder: find, promote, quarantine,
retry targets, cleanup and the status CLI. Validation itself is tested in tests/plugins/validation."""

from __future__ import annotations

import io
import json
import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from dataset_ops.staging import tasks
from dataset_ops.staging.status import (
    UploadState,
    UploadStatus,
    check_name,
    list_statuses,
    read_status,
    write_status,
)
from dataset_ops.storage import open_storage, read_json

GSM8K = os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "..", "shared", "data", "ml", "gsm8k_train.jsonl"
)


@pytest.fixture(params=["s3", "local"])
def area(request, tmp_path):
    if request.param == "s3":
        return open_storage(f"s3://{request.getfixturevalue('s3_bucket')}/training-data")
    return open_storage(str(tmp_path / "staging"))


def put(storage, key, data: bytes):
    storage.write_stream(key, io.BytesIO(data))


@pytest.mark.parametrize("name", ["../x.jsonl", "/abs.jsonl", "a/../b.csv", "a//b", "a\\b", "", "dir/"])
def test_unsafe_names_are_rejected(name):
    with pytest.raises(ValueError, match="unsafe upload name"):
        check_name(name)


def test_find_lists_complete_uploads_and_skips_ones_in_progress(area):
    put(area, "uploads/a/train.jsonl", b'{"q": 1}\n')
    put(area, "uploads/tweets.csv", b"a,b\n1,2\n")
    put(area, "uploads/busy.jsonl", b"{}\n")
    write_status(area, UploadStatus(name="busy.jsonl", state=UploadState.UPLOADING))
    write_status(
        area, UploadStatus(name="a/train.jsonl", state=UploadState.UPLOADED, data_type="training_jsonl")
    )
    found = {f["name"]: f for f in tasks.find_uploads(area)}
    assert sorted(found) == ["a/train.jsonl", "tweets.csv"]
    assert found["a/train.jsonl"]["data_type"] == "training_jsonl"
    assert found["tweets.csv"] == {"name": "tweets.csv", "data_type": "csv", "size": 8, "rules": None}


def test_promote_copies_verifies_then_deletes_the_upload(area):
    data = open(GSM8K, "rb").read()
    put(area, "uploads/gsm8k.jsonl", data)
    status = UploadStatus(name="gsm8k.jsonl", state=UploadState.VALIDATING, data_type="training_jsonl")
    final = tasks.promote(
        area,
        "gsm8k.jsonl",
        "uploads/gsm8k.jsonl",
        status,
        {"valid": True, "records": 7473, "sha256": "ab"},
        {"validate": 1.0},
    )
    assert final.state == "fresh" and final.records == 7473 and final.size == len(data)
    assert [h[0] for h in final.history] == ["validating"]
    assert not area.exists("uploads/gsm8k.jsonl")
    with area.open_read("fresh/gsm8k.jsonl") as fh:
        assert fh.read() == data
    assert read_status(area, "gsm8k.jsonl").state == "fresh"


def test_a_crash_between_copy_and_delete_leaves_the_file_in_both_places(area, monkeypatch):
    put(area, "uploads/x.jsonl", b'{"a": 1}\n')
    status = UploadStatus(name="x.jsonl", state=UploadState.VALIDATING)
    monkeypatch.setattr(type(area), "delete", lambda self, key: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError, match="killed"):
        tasks.promote(area, "x.jsonl", "uploads/x.jsonl", status, {"valid": True, "records": 1}, {})
    monkeypatch.undo()
    assert area.exists("uploads/x.jsonl") and area.exists("fresh/x.jsonl")
    assert [f["name"] for f in tasks.find_uploads(area)] == ["x.jsonl"]  # the next run finishes it


def test_quarantine_writes_the_report_then_moves_the_file(area):
    put(area, "uploads/bad.csv", b'a,b\n"unclosed,2\n')
    status = UploadStatus(name="bad.csv", state=UploadState.VALIDATING, data_type="csv")
    result = {
        "valid": False,
        "records": 0,
        "errors_found": 1,
        "errors": [{"line": 2, "offset": 4, "reason": "unclosed quote"}],
    }
    final = tasks.quarantine(area, "bad.csv", "uploads/bad.csv", status, result, {"validate": 0.1})
    assert final.state == "failed" and final.errors == 1
    assert final.error_summary == "line 2, offset 4: unclosed quote"
    assert not area.exists("uploads/bad.csv") and area.exists("failed/bad.csv")
    report = read_json(area, "failed/bad.csv.report.json")
    assert report["errors"][0]["reason"] == "unclosed quote" and report["name"] == "bad.csv"
    assert tasks.retry_targets(area, ["bad.csv"]) == [
        {
            "name": "bad.csv",
            "key": "failed/bad.csv",
            "data_type": "csv",
            "source": "failed",
            "size": 16,
            "rules": None,
        }
    ]
    with pytest.raises(ValueError, match="no such file in failed/"):
        tasks.retry_targets(area, ["other.csv"])


def test_cleanup_removes_old_failed_files_and_abandoned_uploads(area):
    for name, age_hours in (("old.csv", 30), ("new.csv", 1)):
        put(area, f"failed/{name}", b"x")
        put(area, f"failed/{name}.report.json", b"{}")
        updated = (datetime.now(UTC) - timedelta(hours=age_hours)).isoformat(timespec="seconds")
        write_status(area, UploadStatus(name=name, state=UploadState.FAILED, updated_at=updated))
    assert tasks.cleanup(area, dry_run=True)["failed"] == ["old.csv"]
    assert area.exists("failed/old.csv")
    result = tasks.cleanup(area, failed_older_than_hours=24)
    assert result["failed"] == ["old.csv"]
    assert not area.exists("failed/old.csv") and not area.exists("failed/old.csv.report.json")
    assert [s.name for s in list_statuses(area)] == ["new.csv"]
    assert area.exists("failed/new.csv")


def test_cleanup_aborts_incomplete_local_writes(tmp_path):
    area = open_storage(str(tmp_path))
    (tmp_path / "uploads").mkdir()
    partial = tmp_path / "uploads" / ".big.jsonl.x.partial"
    partial.write_bytes(b"half")
    os.utime(partial, (time.time() - 48 * 3600,) * 2)
    assert tasks.cleanup(area, dry_run=True)["incomplete_uploads"] == ["uploads/.big.jsonl.x.partial"]
    assert partial.exists()  # a dry run only reports
    assert tasks.cleanup(area)["incomplete_uploads"] == ["uploads/.big.jsonl.x.partial"]
    assert not partial.exists()


def test_status_cli_lists_by_state(tmp_path, capsys):
    from dataset_ops.staging.__main__ import main

    area = open_storage(str(tmp_path))
    write_status(area, UploadStatus(name="a.jsonl", state="fresh", size=10, records=2))
    write_status(area, UploadStatus(name="b.csv", state="failed", error_summary="line 3: bad"))
    assert main(["list", "--root", str(tmp_path), "--state", "failed"]) == 0
    out = capsys.readouterr().out
    assert "b.csv" in out and "line 3: bad" in out and "a.jsonl" not in out
    main(["list", "--root", str(tmp_path), "--json"])
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["a.jsonl", "b.csv"]


# on moto: AWS S3 stores these keys as given, SeaweedFS refuses ``..`` and ``.`` segments
# (InvalidRequest) and turns ``//`` into ``/``, so only a mock of AWS can put them in uploads/
@pytest.mark.parametrize("bad_key", ["uploads/../escape.jsonl", "uploads//etc/passwd", "uploads/a/./b.csv"])
def test_unsafe_keys_on_s3_are_quarantined_under_a_safe_name(moto_bucket, bad_key):
    area = open_storage(f"s3://{moto_bucket}/training-data")
    area.client.put_object(Bucket=moto_bucket, Key=f"training-data/{bad_key}", Body=b"{}\n")
    assert tasks.find_uploads(area) == []
    (status,) = list_statuses(area, "failed")
    assert status.name.startswith("_unsafe/") and bad_key[len("uploads/") :] in status.error_summary
    assert read_json(area, status.report_key)["original_key"] == bad_key
    assert area.exists(f"failed/{status.name}") and list(area.list("uploads")) == []


@pytest.mark.parametrize("name", ["a/train.jsonl", "b.csv", "notes.txt", "c.jsonl.gz"])
def test_every_extension_default_has_a_rule_set(name):
    from dataset_ops.validation import load_rules

    assert load_rules(tasks.infer_data_type(name)).name == tasks.infer_data_type(name)


def test_files_without_data_type_validate_by_extension(tmp_path):
    area = open_storage(str(tmp_path))
    put(
        area,
        "uploads/tweets.csv",
        open(GSM8K.replace("ml/gsm8k_train.jsonl", "messy_csv/Tweets.airline-sentiment.csv"), "rb").read(),
    )
    put(area, "uploads/notes.bin", b"\x00\x01")
    results = {
        f["name"]: tasks.process_upload(area, f["name"], f["data_type"]) for f in tasks.find_uploads(area)
    }
    assert results["tweets.csv"].state == "fresh" and results["tweets.csv"].records == 14_640
    assert results["notes.bin"].state == "failed" and "unknown" in results["notes.bin"].error_summary


def test_an_object_changed_after_its_upload_is_quarantined(tmp_path):
    import hashlib

    area = open_storage(str(tmp_path))
    sent = open(GSM8K, "rb").read()
    put(area, "uploads/train.jsonl", sent[: len(sent) // 2].rsplit(b"\n", 1)[0] + b"\n")  # not what was sent
    write_status(
        area,
        UploadStatus(
            name="train.jsonl",
            state=UploadState.UPLOADED,
            data_type="training_jsonl",
            sha256=hashlib.sha256(sent).hexdigest(),
            size=len(sent),
        ),
    )
    final = tasks.process_upload(area, "train.jsonl", "training_jsonl")
    assert final.state == "failed" and "differs from the uploaded file's" in final.error_summary
    assert not area.exists("fresh/train.jsonl")
    # Re-validating it later (its record is no longer `uploaded`) judges the content alone.
    assert (
        tasks.process_upload(area, "train.jsonl", "training_jsonl", source_prefix="failed").state == "fresh"
    )


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_validation_with_workers_reads_the_s3_stream_once(area, monkeypatch, pool):
    """As for files of 256 MiB and more: two workers (threads on the Arrow path, else processes:
    forced by turning the Arrow path off) check the object's blocks while the task reads it (and
    hashes it) once; the result and sha256 are those of one thread."""
    import hashlib

    from dataset_ops.validation import jsonl, validator

    if pool == "processes":
        monkeypatch.setattr(jsonl, "compile_arrow_checker", lambda schema: None)

    with open(GSM8K, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    lines[4000] = b'{"question": "q"}'  # schema: the answer is missing
    data = b"\n".join(lines)
    put(area, "uploads/big/train.jsonl", data)

    one = tasks.validate_file(area, "uploads/big/train.jsonl", "training_jsonl", None)
    monkeypatch.setattr(validator, "default_workers", lambda fmt, size: 2)
    two = tasks.validate_file(area, "uploads/big/train.jsonl", "training_jsonl", None)

    assert (one["workers"], two["workers"]) == (0, 2)
    assert (
        (two["worker_peak_rss_bytes"] or 0) > 0
        if pool == "processes"
        else two["worker_peak_rss_bytes"] is None
    )
    assert two["sha256"] == one["sha256"] == hashlib.sha256(data).hexdigest()
    assert [(e["line"], e["code"]) for e in two["errors"]] == [(4001, "schema")]
    for key in ("valid", "records", "lines", "errors", "errors_found", "bytes"):
        assert two[key] == one[key], key
