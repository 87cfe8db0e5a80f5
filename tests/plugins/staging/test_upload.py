"""``dataset_ops.staging.upload`` (and its documented entry point ``python -m dataset_ops.upload``)
against the S3 server over HTTP: single put, parallel multipart,
status records, resume after a crash (a real process killed by the fault-injection hook), restart
when the file changed or the upload vanished, unsafe names."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from dataset_ops import upload as legacy_entry  # `python -m dataset_ops.upload`, the documented command
from dataset_ops.staging import upload as up
from dataset_ops.staging.status import UploadState, read_status, status_key
from dataset_ops.staging.upload import plan, transfer
from dataset_ops.staging.upload import s3 as s3_upload
from dataset_ops.storage import open_storage, read_json

MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
GSM8K = Path("/work/shared/data/ml/gsm8k_train.jsonl")
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def s3(s3_endpoint):
    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def random_file(path: Path, size: int, seed: int = 0) -> bytes:
    data = hashlib.sha256(str(seed).encode()).digest() + os.urandom(size - 32)
    path.write_bytes(data)
    return data


def download(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def exists(s3, bucket: str, key: str) -> bool:
    return "Contents" in s3.list_objects_v2(Bucket=bucket, Prefix=key)


def pending_uploads(s3, bucket: str) -> list[str]:
    return [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def run_cli(
    *args: str, env_extra: dict | None = None, module: str = "dataset_ops.upload"
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins"), **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


# --- pure functions ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "part"),
    [
        (0, 16 * MiB),
        (1, 16 * MiB),
        (40 * MiB, 16 * MiB),
        (100 * MiB, 16 * MiB),
        (1 * GiB - 1, 16 * MiB),
        (1 * GiB, 64 * MiB),
        (8 * GiB - 1, 64 * MiB),
        (8 * GiB, 128 * MiB),
        (10_000 * 128 * MiB, 128 * MiB),  # exactly 10,000 parts
        (10_000 * 128 * MiB + 1, 129 * MiB),  # one byte more: the part size grows
        (2 * TiB, 210 * MiB),  # ceil(2 TiB / 10,000) = 209.7 MiB -> whole MiB
        (5 * TiB, 525 * MiB),  # S3's largest object
    ],
)
def test_choose_part_size(size, part):
    assert up.choose_part_size(size) == part
    assert plan.MIN_PART_SIZE <= part <= plan.MAX_PART_SIZE
    assert -(-size // part) <= plan.MAX_PARTS


@pytest.mark.parametrize("size", [-1, 5 * TiB + 1])
def test_choose_part_size_rejects_impossible_sizes(size):
    with pytest.raises(ValueError):
        up.choose_part_size(size)


def test_plan_and_part_size_checks():
    assert up.plan_parts(40 * MiB, 16 * MiB) == [
        (1, 0, 16 * MiB),
        (2, 16 * MiB, 16 * MiB),
        (3, 32 * MiB, 8 * MiB),
    ]
    assert up.plan_parts(0, 16 * MiB) == []
    for bad in (4 * MiB, 5 * GiB + 1):
        with pytest.raises(ValueError, match="5 MiB .. 5 GiB"):
            up.check_part_size(100 * MiB, bad)
    with pytest.raises(ValueError, match="10,000 parts"):
        up.check_part_size(10_001 * 5 * MiB, 5 * MiB)


def test_destination_and_staging_root():
    assert up.parse_destination("s3://b/pre/uploads/") == ("b", "pre/uploads/")
    assert up.parse_destination("s3://b/pre/uploads") == ("b", "pre/uploads/")
    assert up.parse_destination("s3://b") == ("b", "")
    assert up.staging_root_of("b", "pre/uploads/") == "s3://b/pre/"
    assert up.staging_root_of("b", "uploads/") == "s3://b/"
    assert up.staging_root_of("b", "elsewhere/") == "s3://b/elsewhere/"
    assert up.staging_root_of("b", "my-uploads/") == "s3://b/my-uploads/"
    for bad in ("/local/path", "s3:///key", "s3://b//x/", "gs://b/x/"):
        with pytest.raises(ValueError):
            up.parse_destination(bad)


# --- uploads ----------------------------------------------------------------------------------
def test_single_put_of_real_file_to_default_destination(s3_bucket, s3, monkeypatch, capsys):
    """gsm8k (4 MB) goes up with one PutObject to uploads/ under AIRFLOW_VAR_STAGING_ROOT."""
    monkeypatch.setenv("AIRFLOW_VAR_STAGING_ROOT", f"s3://{s3_bucket}/staging/")
    data = GSM8K.read_bytes()
    assert len(data) < plan.SINGLE_PUT_LIMIT

    status = up.upload_file(GSM8K, name="gsm8k/train.jsonl", data_type="jsonl")

    key = "staging/uploads/gsm8k/train.jsonl"
    assert download(s3, s3_bucket, key) == data
    head = s3.head_object(Bucket=s3_bucket, Key=key)
    assert head["Metadata"]["sha256"] == sha256_of(data)
    assert "-" not in head["ETag"]  # a PutObject, not a multipart upload
    assert status.state == UploadState.UPLOADED and status.size == len(data)
    assert status.sha256 == sha256_of(data) and status.data_type == "jsonl" and status.upload_id is None
    assert [h[0] for h in status.history] == ["uploading"]
    assert set(status.timings) == {"hash", "upload"}
    storage = open_storage(f"s3://{s3_bucket}/staging")
    assert read_status(storage, "gsm8k/train.jsonl") == status
    assert "uploaded s3://" in capsys.readouterr().err

    # The same content again: recognised, nothing sent, the record is unchanged.
    assert up.upload_file(GSM8K, name="gsm8k/train.jsonl", progress=False) == status


def test_parallel_multipart_upload_round_trip(s3_bucket, s3, tmp_path, capsys):
    """40 MiB of random bytes -> 3 parts of 16 MiB sent by 4 threads; the download is identical."""
    path = tmp_path / "random.bin"
    data = random_file(path, 40 * MiB)

    status = up.upload_file(path, f"s3://{s3_bucket}/uploads/", parallel=4)

    err = capsys.readouterr().err
    assert "in 3 parts of 16.0 MiB, 4 in parallel" in err
    assert "3 part(s) sent, 0 reused" in err
    back = download(s3, s3_bucket, "uploads/random.bin")
    assert sha256_of(back) == sha256_of(data) == status.sha256
    head = s3.head_object(Bucket=s3_bucket, Key="uploads/random.bin")
    assert head["ETag"].strip('"').endswith("-3")
    assert "sha256" not in head["Metadata"]  # hashed while the parts went out: it is in the record
    assert status.etag == head["ETag"]
    assert status.state == "uploaded" and status.size == 40 * MiB and status.upload_id is None
    assert [h[0] for h in status.history] == ["uploading"]
    record = read_json(open_storage(f"s3://{s3_bucket}"), status_key("random.bin"))
    assert record["state"] == "uploaded" and record[plan.MULTIPART_BLOCK] is None  # cleared once complete
    assert pending_uploads(s3, s3_bucket) == []

    # The same content again: the ETag and sha256 of the record match, nothing is sent.
    assert up.upload_file(path, f"s3://{s3_bucket}/uploads/", parallel=4) == status
    assert "already holds this file" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../escape.bin", "/etc/passwd", "a/../../b", "a//b", "dir/"])
def test_unsafe_names_are_rejected(s3_bucket, s3, name, capsys):
    with pytest.raises(ValueError, match="unsafe upload name"):
        up.upload_file(GSM8K, f"s3://{s3_bucket}/uploads/", name=name, progress=False)
    code = up.main([str(GSM8K), "--to", f"s3://{s3_bucket}/uploads/", "--name", name])
    assert code == 2
    assert "unsafe upload name" in capsys.readouterr().err
    assert "Contents" not in s3.list_objects_v2(Bucket=s3_bucket)  # nothing written, no status


def test_bad_arguments_exit_2(s3_bucket, tmp_path, capsys):
    assert up.main([str(tmp_path / "missing.bin"), "--to", f"s3://{s3_bucket}/uploads/"]) == 2
    assert up.main([str(GSM8K), "--to", "gs://bucket/uploads/"]) == 2
    assert up.main([str(GSM8K), "--to", f"s3://{s3_bucket}/uploads/", "--part-size-mib", "4"]) == 2
    err = capsys.readouterr().err
    assert "No such file" in err and "scheme 'gs' is not supported" in err and "5 MiB .. 5 GiB" in err
    assert not list(tmp_path.iterdir())  # nothing written anywhere


def test_resume_after_crash(s3_bucket, s3, tmp_path):
    """A process killed after 2 parts leaves no object and an `uploading` record; the rerun of the
    same command sends only the 4 missing parts and completes."""
    path = tmp_path / "crash.bin"
    data = random_file(path, 28 * MiB)  # 5 parts of 5 MiB + 3 MiB
    args = [
        str(path),
        "--to",
        f"s3://{s3_bucket}/stage/uploads/",
        "--name",
        "crash/it.bin",
        "--part-size-mib",
        "5",
    ]

    crashed = run_cli(*args, "--parallel", "1", env_extra={plan.CRASH_ENV: "2"})
    assert crashed.returncode == 137, crashed.stderr
    assert "simulated crash after 2 parts" in crashed.stderr

    key = "stage/uploads/crash/it.bin"
    assert not exists(s3, s3_bucket, key)  # an abandoned upload never looks complete
    storage = open_storage(f"s3://{s3_bucket}/stage")
    record = read_json(storage, status_key("crash/it.bin"))
    assert record["state"] == "uploading" and record["upload_id"]
    assert record["size"] == len(data) and record["sha256"] is None  # known once all of it was read
    block = record[plan.MULTIPART_BLOCK]
    assert block["part_size"] == 5 * MiB and block["parts"] == 6 and block["key"] == key
    assert block["source"]["mtime_ns"] == path.stat().st_mtime_ns
    listed = s3.list_parts(Bucket=s3_bucket, Key=key, UploadId=record["upload_id"])["Parts"]
    assert [p["PartNumber"] for p in listed] == [1, 2]

    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert (
        f"resuming: 2 of 6 parts already uploaded (10.0 MiB); upload id {record['upload_id']}"
        in resumed.stderr
    )
    assert "4 part(s) sent, 2 reused" in resumed.stderr
    final = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert final["state"] == "uploaded" and final["upload_id"] is None
    assert final["sha256"] == sha256_of(data) and final["size"] == len(data)
    assert [h[0] for h in final["history"]] == ["uploading"]
    assert sha256_of(download(s3, s3_bucket, key)) == sha256_of(data)
    assert pending_uploads(s3, s3_bucket) == []


def fail_parts_from(monkeypatch, first_failing_offset: int) -> None:
    """Make every read of a part at or after ``first_failing_offset`` fail (a dead network)."""
    real_read = transfer.FileRegion.read

    def read(self, size=-1):
        if self._offset >= first_failing_offset:
            raise RuntimeError("injected network failure")
        return real_read(self, size)

    monkeypatch.setattr(transfer.FileRegion, "read", read)


def interrupted_upload(s3_bucket, s3, path, monkeypatch) -> dict:
    """Upload ``path`` as `name.bin` in 5 MiB parts with a failure from part 3; the record."""
    with monkeypatch.context() as m:
        fail_parts_from(m, 2 * 5 * MiB)
        with pytest.raises(up.UploadError, match="injected network failure"):
            up.upload_file(path, f"s3://{s3_bucket}/uploads/", name="name.bin", parallel=1, part_size=5 * MiB)
    record = read_json(open_storage(f"s3://{s3_bucket}"), status_key("name.bin"))
    assert record["state"] == "uploading"
    parts = up.list_uploaded_parts(s3, s3_bucket, "uploads/name.bin", record["upload_id"])
    assert sorted(parts) == [1, 2]
    assert not exists(s3, s3_bucket, "uploads/name.bin")
    return record


def test_failure_leaves_resumable_record_and_cli_says_how_to_resume(
    s3_bucket, s3, tmp_path, monkeypatch, capsys
):
    path = tmp_path / "f.bin"
    data = random_file(path, 18 * MiB)
    dest = f"s3://{s3_bucket}/uploads/"
    with monkeypatch.context() as m:
        fail_parts_from(m, 2 * 5 * MiB)
        args = [str(path), "--to", dest, "--name", "name.bin", "--part-size-mib", "5", "--parallel", "1"]
        assert legacy_entry.main(args) == 1  # the documented command names itself in the hint
        err = capsys.readouterr().err
        assert f"-m dataset_ops.upload {path} --to {dest} --name name.bin" in err
        assert up.main(args) == 1  # the new module's command names the new module
    err = capsys.readouterr().err
    assert "injected network failure" in err and "rerun the same command to resume" in err
    assert f"-m dataset_ops.staging.upload {path} --to {dest} --name name.bin" in err
    record = read_json(open_storage(f"s3://{s3_bucket}"), status_key("name.bin"))
    assert record["state"] == "uploading" and record["upload_id"]

    status = up.upload_file(path, dest, name="name.bin")
    assert "resuming: 2 of 4 parts already uploaded" in capsys.readouterr().err
    assert status.sha256 == sha256_of(download(s3, s3_bucket, "uploads/name.bin")) == sha256_of(data)


def test_changed_file_restarts_the_upload(s3_bucket, s3, tmp_path, monkeypatch, capsys):
    path = tmp_path / "f.bin"
    random_file(path, 18 * MiB, seed=1)
    old = interrupted_upload(s3_bucket, s3, path, monkeypatch)
    capsys.readouterr()

    new_data = random_file(path, 18 * MiB, seed=2)  # same size, new content and mtime
    status = up.upload_file(path, f"s3://{s3_bucket}/uploads/", name="name.bin", part_size=5 * MiB)

    err = capsys.readouterr().err
    assert f"the interrupted upload {old['upload_id']} was of different content" in err
    assert "modification time changed" in err and "starting over" in err
    assert f"aborted the old multipart upload {old['upload_id']}" in err
    assert "resuming" not in err and "4 part(s) sent, 0 reused" in err
    assert status.sha256 == sha256_of(new_data) == sha256_of(download(s3, s3_bucket, "uploads/name.bin"))
    assert pending_uploads(s3, s3_bucket) == []  # the old upload was aborted
    assert [h[0] for h in status.history] == ["uploading", "uploading"]


def test_stored_parts_that_differ_from_the_file_are_sent_again(s3_bucket, s3, tmp_path, monkeypatch, capsys):
    """Same size and mtime, other bytes in part 2: its CRC32 on the server no longer matches, so
    only part 2 is sent again beside the missing parts 3 and 4; the object is the new file."""
    path = tmp_path / "f.bin"
    data = random_file(path, 18 * MiB)
    old = interrupted_upload(s3_bucket, s3, path, monkeypatch)
    st = path.stat()
    changed = bytearray(data)
    changed[7 * MiB : 7 * MiB + 4] = b"\x00\xff\x00\xff"
    path.write_bytes(changed)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    capsys.readouterr()

    status = up.upload_file(path, f"s3://{s3_bucket}/uploads/", name="name.bin", part_size=5 * MiB)

    err = capsys.readouterr().err
    assert "1 stored part(s) differ from the file (part 2): sending again" in err
    assert f"resuming: 1 of 4 parts already uploaded (5.0 MiB); upload id {old['upload_id']}" in err
    assert "3 part(s) sent, 1 reused" in err
    assert (
        status.sha256 == sha256_of(bytes(changed)) == sha256_of(download(s3, s3_bucket, "uploads/name.bin"))
    )


def test_touched_file_restarts_the_upload(s3_bucket, s3, tmp_path, monkeypatch, capsys):
    """Same bytes, new mtime: identity is size + mtime, so it starts over too."""
    path = tmp_path / "f.bin"
    data = random_file(path, 18 * MiB)
    interrupted_upload(s3_bucket, s3, path, monkeypatch)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    capsys.readouterr()
    status = up.upload_file(path, f"s3://{s3_bucket}/uploads/", name="name.bin", part_size=5 * MiB)
    err = capsys.readouterr().err
    assert "modification time changed" in err and "starting over" in err
    assert status.sha256 == sha256_of(data) == sha256_of(download(s3, s3_bucket, "uploads/name.bin"))


def test_vanished_upload_restarts(s3_bucket, s3, tmp_path, monkeypatch, capsys):
    """The multipart upload was aborted behind our back (lifecycle rule, staging cleanup)."""
    path = tmp_path / "f.bin"
    data = random_file(path, 18 * MiB)
    old = interrupted_upload(s3_bucket, s3, path, monkeypatch)
    s3.abort_multipart_upload(Bucket=s3_bucket, Key="uploads/name.bin", UploadId=old["upload_id"])
    capsys.readouterr()

    status = up.upload_file(path, f"s3://{s3_bucket}/uploads/", name="name.bin", part_size=5 * MiB)

    err = capsys.readouterr().err
    assert f"the interrupted upload {old['upload_id']} no longer exists on the server" in err
    assert "4 part(s) sent, 0 reused" in err
    assert status.sha256 == sha256_of(data) == sha256_of(download(s3, s3_bucket, "uploads/name.bin"))


def test_list_parts_paginates(s3_bucket, s3, tmp_path):
    """ListParts answers at most 1,000 parts a page; every page is read (here 3 of 1 part each)."""
    key = "uploads/paged.bin"
    upload_id = s3.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]
    for number in (1, 2, 3):
        s3.upload_part(Bucket=s3_bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=b"x" * 10)
    pages = list(
        s3.get_paginator("list_parts").paginate(
            Bucket=s3_bucket, Key=key, UploadId=upload_id, PaginationConfig={"PageSize": 1}
        )
    )
    assert len(pages) == 3
    assert sorted(up.list_uploaded_parts(s3, s3_bucket, key, upload_id)) == [1, 2, 3]


def test_missing_connection_falls_back_to_boto3_chain(s3_bucket, s3, s3_endpoint, tmp_path, monkeypatch):
    """No Connection `nowhere`: the S3Hook uses boto3's chain (env credentials, AWS_ENDPOINT_URL_S3)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    path = tmp_path / "small.txt"
    path.write_bytes(b"hello\n")
    status = up.upload_file(path, f"s3://{s3_bucket}/uploads/", aws_conn_id="nowhere", progress=False)
    assert download(s3, s3_bucket, "uploads/small.txt") == b"hello\n"
    assert status.state == "uploaded" and status.size == 6


def test_file_region_is_a_bounded_seekable_view(tmp_path):
    path = tmp_path / "r.bin"
    path.write_bytes(bytes(range(256)) * 4)
    counted = []
    with open(path, "rb") as fh:
        region = transfer.FileRegion(fh.fileno(), 100, 50, on_progress=counted.append)
        assert len(region) == 50
        assert region.read(10) == bytes(range(100, 110)) and counted == []  # not transferring yet
        region.signal_transferring()
        assert region.read() == bytes(range(110, 150)) and region.read() == b""
        assert region.seek(0) == 0 and counted == [40, -50]  # a retry rewinds the progress
        assert region.seek(0, os.SEEK_END) == 50 and region.tell() == 50


# --- local staging root (issue 14, point 10) and no replacing (point 2) -------------------------
def test_cli_uploads_to_a_local_staging_root_as_the_readme_shows(tmp_path):
    """`AIRFLOW_VAR_STAGING_ROOT=<folder> python -m dataset_ops.upload FILE --data-type T`, and the
    same with `--root`: the file is in uploads/ with an `uploaded` record holding its sha256."""
    root = tmp_path / "staging"
    result = run_cli(
        str(GSM8K), "--data-type", "training_jsonl", env_extra={"AIRFLOW_VAR_STAGING_ROOT": str(root)}
    )
    assert result.returncode == 0, result.stderr
    data = GSM8K.read_bytes()
    assert (root / "uploads" / GSM8K.name).read_bytes() == data
    status = read_status(open_storage(str(root)), GSM8K.name)
    assert json.loads(result.stdout.splitlines()[-1])["sha256"] == status.sha256 == sha256_of(data)
    assert status.state == "uploaded" and status.data_type == "training_jsonl" and status.size == len(data)
    assert f"uploaded {root / 'uploads' / GSM8K.name}" in result.stderr
    assert [p.name for p in (root / "uploads").iterdir()] == [GSM8K.name]  # no partial file left

    other = tmp_path / "other"
    result = run_cli(str(GSM8K), "--root", f"file://{other}", "--name", "g/train.jsonl")
    assert result.returncode == 0, result.stderr
    assert (other / "uploads" / "g" / "train.jsonl").read_bytes() == data


def test_the_new_module_runs_the_same_command(tmp_path):
    """`python -m dataset_ops.staging.upload` is the same command as `python -m dataset_ops.upload`."""
    root = tmp_path / "staging"
    result = run_cli(
        str(GSM8K), "--root", str(root), "--name", "n/t.jsonl", module="dataset_ops.staging.upload"
    )
    assert result.returncode == 0, result.stderr
    assert (root / "uploads" / "n" / "t.jsonl").read_bytes() == GSM8K.read_bytes()
    assert json.loads(result.stdout.splitlines()[-1])["state"] == "uploaded"
    usage = run_cli("--help", module="dataset_ops.staging.upload").stdout
    assert usage.startswith("usage: python -m dataset_ops.staging.upload")
    assert run_cli("--help").stdout.startswith("usage: python -m dataset_ops.upload")


def test_local_upload_resumes_after_a_crash_and_restarts_for_a_changed_file(tmp_path):
    root = tmp_path / "staging"
    path = tmp_path / "big.bin"
    data = random_file(path, 20 * MiB)
    crashed = run_cli(str(path), "--root", str(root), env_extra={plan.CRASH_ENV: "1"})
    assert crashed.returncode == 137
    assert not (root / "uploads" / "big.bin").exists()  # never visible half-written
    assert (root / "uploads" / ".big.bin.upload.partial").stat().st_size == 8 * MiB
    storage = open_storage(str(root))
    assert read_status(storage, "big.bin").state == "uploading"

    resumed = run_cli(str(path), "--root", str(root))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: 8.0 MiB of 20.0 MiB already copied" in resumed.stderr
    assert (root / "uploads" / "big.bin").read_bytes() == data
    assert read_status(storage, "big.bin").sha256 == sha256_of(data)
    assert not (root / "uploads" / ".big.bin.upload.partial").exists()

    # Interrupted again with another file of that name, then the file changes: starts over.
    (root / "uploads" / "big.bin").unlink()
    path2 = tmp_path / "v2" / "big.bin"
    path2.parent.mkdir()
    random_file(path2, 20 * MiB, seed=1)
    assert run_cli(str(path2), "--root", str(root), env_extra={plan.CRASH_ENV: "1"}).returncode == 137
    data2 = random_file(path2, 20 * MiB, seed=2)
    again = run_cli(str(path2), "--root", str(root))
    assert again.returncode == 0, again.stderr
    assert "starting over" in again.stderr
    assert (root / "uploads" / "big.bin").read_bytes() == data2


@pytest.mark.parametrize("backend", ["s3", "local"])
def test_a_waiting_upload_is_never_replaced(backend, request, tmp_path, capsys):
    """uploads/<name> holds a file not validated yet: different content is refused (exit 3) and
    changes nothing; the same content is a no-op."""
    if backend == "s3":
        dest = f"s3://{request.getfixturevalue('s3_bucket')}/st/uploads/"
        storage = open_storage(dest.removesuffix("uploads/"))
    else:
        dest = str(tmp_path / "st" / "uploads")
        storage = open_storage(str(tmp_path / "st"))
    first, second = tmp_path / "a" / "x.jsonl", tmp_path / "b" / "x.jsonl"
    first.parent.mkdir()
    second.parent.mkdir()
    first.write_bytes(b'{"a": 1}\n')
    second.write_bytes(b'{"b": 2}\n')
    status = up.upload_file(first, dest, progress=False)
    assert up.main([str(second), "--to", dest]) == 3
    err = capsys.readouterr().err
    assert "holds a different file" in err and "nothing was replaced" in err
    with storage.open_read("uploads/x.jsonl") as fh:
        assert fh.read() == b'{"a": 1}\n'
    assert read_status(storage, "x.jsonl") == status
    assert up.main([str(first), "--to", dest]) == 0
    assert "already holds this file" in capsys.readouterr().err
    assert read_status(storage, "x.jsonl").sha256 == status.sha256


def test_a_multipart_upload_never_replaces_a_file_that_appeared_meanwhile(
    s3_bucket, s3, tmp_path, monkeypatch
):
    """CompleteMultipartUpload carries If-None-Match: *: a file put at the key while the parts went
    out stays; the uploader stops with NameTaken and keeps its parts for a later rerun."""
    path = tmp_path / "big.bin"
    random_file(path, 20 * MiB)
    real = transfer.send_parts

    def send_then_someone_uploads(*args, **kwargs):
        sent = real(*args, **kwargs)
        s3.put_object(Bucket=s3_bucket, Key="uploads/big.bin", Body=b"other")
        return sent

    monkeypatch.setattr(s3_upload, "send_parts", send_then_someone_uploads)
    with pytest.raises(up.NameTaken, match="nothing was replaced"):
        up.upload_file(path, f"s3://{s3_bucket}/uploads/", progress=False)
    assert download(s3, s3_bucket, "uploads/big.bin") == b"other"
    assert len(pending_uploads(s3, s3_bucket)) == 1
