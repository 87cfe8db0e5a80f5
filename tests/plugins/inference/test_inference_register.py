"""Dataset registration (``dataset_ops.inference.register``) on a local folder and on S3 over
HTTP: ZIP contents and compression, refusals (incomplete dataset, escaping paths), registry rows,
duplicate names, claims, and concurrent registrations losing no row."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import uuid
import zipfile

import boto3
import pytest
from botocore.exceptions import ClientError
from helpers.concurrency import at_once

from dataset_ops.inference.register import (
    REGISTRY_COLUMNS,
    AlreadyRegistered,
    DatasetIncomplete,
    RegistrationInProgress,
    RegistryBusy,
    UnsafeZipPath,
    _update_object,
    check_member_path,
    read_registry,
    register_dataset,
    registered_transactions,
    zip_dataset,
)
from dataset_ops.storage import file_sha256, open_storage, write_json

CLASSES = {1: "cola", 2: "water", 17: "chips"}


def jpeg(seed: str, size: int = 600) -> bytes:
    """Small JPEG-framed bytes (SOI, JFIF APP0, pseudo-random payload, EOI)."""
    payload = b""
    block = seed.encode()
    while len(payload) < size:
        block = hashlib.sha256(block).digest()
        payload += block
    return (
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + payload[:size] + b"\xff\xd9"
    )


def make_dataset(storage, process: str, per_class: int = 2, tag: str = "", extra_files=None) -> dict:
    """Write ``processes/{process}/dataset/`` and return ``{relative path: bytes}`` of its files
    (manifest included). ``extra_files`` are manifest entries whose object is not written."""
    prefix = f"processes/{process}/dataset"
    files, entries = {}, []
    for label_id, label in CLASSES.items():
        for n in range(per_class):
            tid = f"{tag or process}-{label_id}-{n}"
            path = f"{label_id}_{label}/{tid}.jpg"
            files[path] = jpeg(path)
            storage.write_stream(f"{prefix}/{path}", io.BytesIO(files[path]))
            entries.append(
                {
                    "path": path,
                    "transaction_id": tid,
                    "label_id": label_id,
                    "bytes": len(files[path]),
                    "sha256": hashlib.sha256(files[path]).hexdigest(),
                }
            )
    entries += extra_files or []
    manifest = {
        "files": entries,
        "classes": {f"{k}_{v}": per_class for k, v in CLASSES.items()},
    }
    files["_manifest.json"] = json.dumps(manifest, indent=2).encode()
    storage.write_stream(f"{prefix}/_manifest.json", io.BytesIO(files["_manifest.json"]))
    return files


@pytest.fixture(params=["local", "s3"])
def world(request, tmp_path):
    """(kind, dataset storage, registry root URI). Opening an S3 root costs ~0.4 s (a boto3
    client): tests pass :func:`opened` (opened once) where the URI itself is not the point."""
    if request.param == "local":
        return "local", open_storage(str(tmp_path / "store")), str(tmp_path / "registry")
    bucket = request.getfixturevalue("s3_bucket")
    return "s3", open_storage(f"s3://{bucket}/root"), f"s3://{bucket}/registry/"


_OPENED: dict[str, object] = {}


def opened(root: str):
    """The registry storage of ``root``, opened once per test."""
    if root not in _OPENED:
        _OPENED.clear()
        _OPENED[root] = open_storage(root)
    return _OPENED[root]


def registry_keys(root: str) -> list[str]:
    return list(opened(root).list())


# --- ZIP -----------------------------------------------------------------------------------------
def test_zip_holds_every_file_byte_for_byte_stored_or_deflated(world, tmp_path, caplog):
    _, storage, _ = world
    files = make_dataset(storage, "p1")
    storage.write_stream("processes/p1/dataset/labels.csv", io.BytesIO(b"label_id,name\n1,cola\n" * 50))
    files["labels.csv"] = b"label_id,name\n1,cola\n" * 50
    storage.write_stream("processes/p1/dataset/1_cola/stray.jpg", io.BytesIO(jpeg("stray")))  # not listed
    out = tmp_path / "out" / "p1.zip"
    with caplog.at_level(logging.INFO, logger="dataset_ops.inference.register"):
        result = zip_dataset(storage, "processes/p1/dataset/", out, log_every=2)

    assert result["path"] == str(out) and out.is_file()
    assert not out.with_name("p1.zip.partial").exists()
    assert result["files"] == len(files) == 8
    assert result["bytes"] == out.stat().st_size
    assert result["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert result["source_bytes"] == sum(len(b) for b in files.values())
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert names[-1] == "_manifest.json" and sorted(names) == sorted(files)
        for info in zf.infolist():
            assert zf.read(info.filename) == files[info.filename]
            expected = zipfile.ZIP_STORED if info.filename.endswith(".jpg") else zipfile.ZIP_DEFLATED
            assert info.compress_type == expected, info.filename
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("zipped")]
    assert progress[0].startswith("zipped 2/8 files") and progress[-1].startswith("zipped 8/8 files")
    assert len(progress) == 4


def test_zip_refuses_a_dataset_without_manifest(world, tmp_path):
    _, storage, _ = world
    make_dataset(storage, "p1")
    storage.delete("processes/p1/dataset/_manifest.json")
    with pytest.raises(DatasetIncomplete, match="_manifest.json"):
        zip_dataset(storage, "processes/p1/dataset", tmp_path / "p1.zip")
    assert list(tmp_path.glob("p1.zip*")) == []


def test_zip_refuses_a_missing_manifest_file(world, tmp_path):
    _, storage, _ = world
    make_dataset(storage, "p1", extra_files=[{"path": "2_water/gone.jpg", "transaction_id": "gone"}])
    with pytest.raises(DatasetIncomplete, match="missing.*2_water/gone.jpg"):
        zip_dataset(storage, "processes/p1/dataset", tmp_path / "p1.zip")
    assert list(tmp_path.glob("p1.zip*")) == []


def test_zip_refuses_content_differing_from_the_manifest(world, tmp_path):
    _, storage, _ = world
    files = make_dataset(storage, "p1")
    path = next(p for p in files if p.endswith(".jpg"))
    tampered = bytearray(files[path])
    tampered[30] ^= 0xFF  # same size, other content
    storage.write_stream(f"processes/p1/dataset/{path}", io.BytesIO(bytes(tampered)))
    with pytest.raises(DatasetIncomplete, match="sha256 differs"):
        zip_dataset(storage, "processes/p1/dataset", tmp_path / "p1.zip")
    assert list(tmp_path.glob("p1.zip*")) == []


@pytest.mark.parametrize(
    "path", ["../evil.jpg", "1_cola/../../evil.jpg", "/etc/evil.jpg", "1_cola\\evil.jpg", "C:/evil.jpg"]
)
def test_zip_refuses_a_manifest_path_escaping_the_archive(world, tmp_path, path):
    _, storage, _ = world
    storage.write_stream("processes/evil.jpg", io.BytesIO(jpeg("evil")))  # what ".." would reach
    make_dataset(storage, "p1", extra_files=[{"path": path, "transaction_id": "evil"}])
    with pytest.raises(ValueError, match="ZIP path that would escape its folder"):
        zip_dataset(storage, "processes/p1/dataset", tmp_path / "p1.zip")
    assert list(tmp_path.glob("p1.zip*")) == []


# on moto: AWS S3 stores a key with a ``..`` segment as given, SeaweedFS refuses it
# (InvalidRequest), so only a mock of AWS can hold the object this test needs
def test_zip_refuses_an_s3_key_with_dot_dot_in_the_folder(moto_bucket, moto_s3_endpoint, tmp_path):
    storage = open_storage(f"s3://{moto_bucket}/root")
    make_dataset(storage, "p1")
    client = boto3.client("s3", endpoint_url=moto_s3_endpoint, region_name="us-east-1")
    client.put_object(Bucket=moto_bucket, Key="root/processes/p1/dataset/../evil.jpg", Body=b"x")
    assert "processes/p1/dataset/../evil.jpg" in list(storage.list("processes/p1/dataset/"))
    with pytest.raises(UnsafeZipPath, match=r"'\.\./evil\.jpg'"):
        zip_dataset(storage, "processes/p1/dataset", tmp_path / "p1.zip")


@pytest.mark.parametrize("path", ["", ".", "a//b.jpg", "a/./b.jpg", "a/..", "x\x00.jpg", None, 3])
def test_check_member_path_refuses(path):
    with pytest.raises(UnsafeZipPath):
        check_member_path(path)


def test_check_member_path_accepts():
    assert check_member_path("17_chips/abc-1..2.jpg") == "17_chips/abc-1..2.jpg"


# --- registry ------------------------------------------------------------------------------------
def test_register_uploads_the_zip_and_appends_one_row(world, tmp_path):
    kind, storage, root = world
    files = make_dataset(storage, "dataset_7_010126_v1")
    # deployment_id comes from the process's metadata (the manifest has none)
    write_json(storage, "processes/dataset_7_010126_v1/process_metadata.json", {"deployment_id": 7})
    row = register_dataset(
        storage,
        "processes/dataset_7_010126_v1/dataset",
        root,
        name="retail-7-v1",
        metadata={"dag_run_id": "manual__1", "description": "first", "model": "yolo-s"},
    )
    registry = opened(root)
    assert sorted(registry.list()) == sorted(
        ["datasets/retail-7-v1.transactions.txt", "datasets/retail-7-v1.zip", "registry.csv"]
        + (["registry.csv.lock"] if kind == "local" else [])
    )
    local_zip = tmp_path / "back.zip"
    with registry.open_read("datasets/retail-7-v1.zip") as fh:
        local_zip.write_bytes(fh.read())
    with zipfile.ZipFile(local_zip) as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == files
    assert row["zip_sha256"] == hashlib.sha256(local_zip.read_bytes()).hexdigest()
    assert row["zip_bytes"] == local_zip.stat().st_size
    with registry.open_read("datasets/retail-7-v1.transactions.txt") as fh:
        lines = fh.read().decode().splitlines()
    assert lines == sorted(f"dataset_7_010126_v1-{k}-{n}" for k in CLASSES for n in range(2))

    (stored,) = read_registry(root)
    assert list(stored) == list(REGISTRY_COLUMNS)
    assert stored == {
        "name": "retail-7-v1",
        "registered_at": stored["registered_at"],
        "process_name": "dataset_7_010126_v1",
        "deployment_id": "7",
        "classes": 3,
        "images": 6,
        "zip_key": "datasets/retail-7-v1.zip",
        "zip_bytes": row["zip_bytes"],
        "zip_sha256": row["zip_sha256"],
        "transactions_key": "datasets/retail-7-v1.transactions.txt",
        "source": storage.uri("processes/dataset_7_010126_v1/dataset"),
        "dag_run_id": "manual__1",
        "description": "first",
        "extra": '{"model": "yolo-s"}',
    }
    assert stored["registered_at"].endswith("+00:00") and row["registered_at"] == stored["registered_at"]
    assert row["zip_uri"] == registry.uri("datasets/retail-7-v1.zip") and row["files"] == 7
    assert registered_transactions(root) == set(lines)


def test_a_name_is_registered_once(world):
    _, storage, root = world
    make_dataset(storage, "p1")
    make_dataset(storage, "p2")
    first = register_dataset(storage, "processes/p1/dataset", opened(root), name="ds", metadata={})
    with pytest.raises(AlreadyRegistered, match="'ds' is registered already"):
        register_dataset(storage, "processes/p2/dataset", opened(root), name="ds", metadata={})
    assert [r["name"] for r in read_registry(opened(root))] == ["ds"]
    assert file_sha256(opened(root), "datasets/ds.zip") == first["zip_sha256"]  # not overwritten
    assert registered_transactions(opened(root)) == {f"p1-{k}-{n}" for k in CLASSES for n in range(2)}


def test_an_incomplete_dataset_uploads_nothing(world):
    _, storage, root = world
    make_dataset(storage, "p1", extra_files=[{"path": "1_cola/gone.jpg", "transaction_id": "gone"}])
    with pytest.raises(DatasetIncomplete):
        register_dataset(storage, "processes/p1/dataset", opened(root), name="ds", metadata={})
    assert [k for k in registry_keys(root) if not k.endswith(".lock")] == []
    assert read_registry(opened(root)) == [] and registered_transactions(opened(root)) == set()


def test_an_escaping_path_uploads_nothing(world):
    _, storage, root = world
    make_dataset(storage, "p1", extra_files=[{"path": "1_cola/../../../evil.jpg", "transaction_id": "e"}])
    with pytest.raises(ValueError, match="escape"):
        register_dataset(storage, "processes/p1/dataset", opened(root), name="ds", metadata={})
    assert [k for k in registry_keys(root) if not k.endswith(".lock")] == []


def test_bad_names_are_refused(world):
    _, storage, root = world
    make_dataset(storage, "p1")
    for name in ["", "../x", "a/b", ".hidden", "a..b", "x" * 121]:
        with pytest.raises(ValueError, match="not a dataset name"):
            register_dataset(storage, "processes/p1/dataset", opened(root), name=name, metadata={})
    assert registry_keys(root) == []


def test_a_fresh_claim_blocks_and_a_stale_one_is_taken_over(world):
    _, storage, root = world
    make_dataset(storage, "p1")
    reg = opened(root)
    reg.write_stream("datasets/ds.claim", io.BytesIO(b"{}"))
    with pytest.raises(RegistrationInProgress):
        register_dataset(storage, "processes/p1/dataset", opened(root), name="ds", metadata={})
    assert reg.exists("datasets/ds.claim") and not reg.exists("datasets/ds.zip")
    time.sleep(0.6)  # S3's LastModified has whole seconds (truncated): the age is at least 0.6 s
    register_dataset(
        storage, "processes/p1/dataset", opened(root), name="ds", metadata={}, claim_ttl_seconds=0.5
    )
    assert [r["name"] for r in read_registry(opened(root))] == ["ds"]
    assert not reg.exists("datasets/ds.claim")


def test_a_row_that_cannot_be_written_leaves_no_zip(tmp_path):
    storage = open_storage(str(tmp_path / "store"))
    make_dataset(storage, "p1")
    root = tmp_path / "registry"
    (root / "registry.csv").mkdir(parents=True)  # the CSV cannot be replaced
    with pytest.raises(OSError):
        register_dataset(storage, "processes/p1/dataset", str(root), name="ds", metadata={})
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == ["registry.csv.lock"]


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_concurrent_registrations_lose_no_row(kind, request, tmp_path, caplog):
    if kind == "local":
        storage, root = open_storage(str(tmp_path / "store")), str(tmp_path / "registry")
    else:
        bucket = request.getfixturevalue("s3_bucket")
        storage, root = open_storage(f"s3://{bucket}/root"), f"s3://{bucket}/registry/"
    expected = set()
    for i in range(8):
        expected |= _tids(make_dataset(storage, f"p{i}", per_class=1))
    owns = {i: open_storage(root) for i in range(8)}  # each "worker" its own client, as separate tasks

    def run(i: int) -> None:
        register_dataset(storage, f"processes/p{i}/dataset", owns[i], name=f"ds-{i}", metadata={"i": i})

    with caplog.at_level(logging.INFO, logger="dataset_ops.inference.register"):
        at_once(run, range(8), timeout=60)
    rows = read_registry(root)  # by URI
    assert sorted(r["name"] for r in rows) == [f"ds-{i}" for i in range(8)]
    assert sorted(json.loads(r["extra"])["i"] for r in rows) == list(range(8))
    assert all(r["images"] == 3 and r["classes"] == 3 for r in rows)
    assert registered_transactions(opened(root)) == expected and len(expected) == 24
    leftovers = [k for k in opened(root).list() if k.endswith(".claim") or k.startswith("_tmp")]
    assert leftovers == []
    retries = sum("changed meanwhile" in r.getMessage() for r in caplog.records)
    print(f"{kind}: {retries} conditional-write retries")


def test_a_lost_race_on_s3_is_retried_not_lost(s3_bucket, caplog):
    """A writer changes registry.csv between our read and our conditional write: our PutObject
    (IfMatch) gets 412, we re-read and append to the new content."""
    reg = open_storage(f"s3://{s3_bucket}/registry")
    calls = []

    def change(data):
        calls.append(data)
        if len(calls) == 1:  # the other writer gets in first
            reg.write_stream("registry.csv", io.BytesIO(b"name\nother\n"))
        return (data or b"name\n") + b"mine\n"

    reg.write_stream("registry.csv", io.BytesIO(b"name\n"))
    with caplog.at_level(logging.INFO, logger="dataset_ops.inference.register"):
        _update_object(reg, "registry.csv", change, tries=3)
    assert calls == [b"name\n", b"name\nother\n"]
    with reg.open_read("registry.csv") as fh:
        assert fh.read() == b"name\nother\nmine\n"
    assert any("changed meanwhile" in r.getMessage() for r in caplog.records)

    calls.clear()
    reg.delete("registry.csv")  # creation: IfNoneMatch="*" loses to a writer creating it first
    _update_object(reg, "registry.csv", change, tries=3)
    assert calls == [None, b"name\nother\n"]


def test_registry_busy_after_max_tries(s3_bucket):
    reg = open_storage(f"s3://{s3_bucket}/registry")

    def change(data):  # someone always writes in between
        reg.write_stream("registry.csv", io.BytesIO(uuid.uuid4().hex.encode()))
        return b"mine\n"

    with pytest.raises(RegistryBusy, match="3 conditional writes"):
        _update_object(reg, "registry.csv", change, tries=3)


def _tids(files: dict) -> set[str]:
    return {os.path.splitext(p.split("/")[-1])[0] for p in files if p != "_manifest.json"}


# --- what the S3 code relies on: the S3 server honours conditional PutObject ----------------------
def test_the_s3_server_honours_if_match_and_if_none_match_on_put_object(s3_bucket, s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    key = f"cond-{uuid.uuid4().hex}"
    client.put_object(Bucket=s3_bucket, Key=key, Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"2", IfNoneMatch="*")
    assert exc.value.response["Error"]["Code"] == "PreconditionFailed"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    etag = client.head_object(Bucket=s3_bucket, Key=key)["ETag"]
    client.put_object(Bucket=s3_bucket, Key=key, Body=b"3", IfMatch=etag)
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"4", IfMatch=etag)  # stale ETag
    assert exc.value.response["Error"]["Code"] == "PreconditionFailed"
    assert client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == b"3"
