"""Storage API on a local folder and on S3 over HTTP (the session's SeaweedFS server)."""

from __future__ import annotations

import io

import pytest

from dataset_ops.storage import LocalStorage, open_storage, read_json, write_json


class Broken(io.RawIOBase):
    """A source that yields some bytes, then fails like a dropped connection."""

    def __init__(self, good: bytes):
        self.good = io.BytesIO(good)

    def readable(self):
        return True

    def read(self, size=-1):
        data = self.good.read(size)
        if not data:
            raise ConnectionResetError("peer went away")
        return data


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return open_storage(str(tmp_path / "root"))
    bucket = request.getfixturevalue("s3_bucket")
    return open_storage(f"s3://{bucket}/prefix")


def test_write_read_list_delete(storage):
    payload = bytes(range(256)) * 40_000  # 10 MB: a multipart upload on S3 above 8 MiB
    assert storage.write_stream("a/b/data.bin", io.BytesIO(payload)) == len(payload)
    assert storage.exists("a/b/data.bin") and storage.stat("a/b/data.bin").size == len(payload)
    with storage.open_read("a/b/data.bin") as fh:
        assert fh.read() == payload
    write_json(storage, "a/manifest.json", {"rows": 3})
    assert read_json(storage, "a/manifest.json") == {"rows": 3}
    assert list(storage.list("a")) == ["a/b/data.bin", "a/manifest.json"]
    storage.delete("a/b/data.bin")
    assert not storage.exists("a/b/data.bin")
    assert read_json(storage, "missing.json") is None


def test_failed_write_keeps_the_previous_object(storage):
    storage.write_stream("f.bin", io.BytesIO(b"old generation"))
    with pytest.raises(ConnectionResetError):
        storage.write_stream("f.bin", Broken(b"x" * (9 << 20)))
    with storage.open_read("f.bin") as fh:
        assert fh.read() == b"old generation"
    assert list(storage.list()) == ["f.bin"]


def test_missing_object_raises_file_not_found(storage):
    with pytest.raises(FileNotFoundError):
        storage.open_read("nope.bin")
    with pytest.raises(FileNotFoundError):
        storage.stat("nope.bin")


def test_local_keys_cannot_escape_the_root(tmp_path):
    with pytest.raises(ValueError, match="escapes the storage root"):
        open_storage(str(tmp_path / "root")).exists("../outside")


def test_stat_copy_and_move(storage):
    payload = b"0123456789" * 100_000
    storage.write_stream("src/a.bin", io.BytesIO(payload))
    info = storage.stat("src/a.bin")
    assert info.size == len(payload) and info.last_modified.tzinfo is not None
    storage.copy("src/a.bin", "dst/b.bin")
    storage.move("src/a.bin", "dst/c.bin")
    assert not storage.exists("src/a.bin")
    for key in ("dst/b.bin", "dst/c.bin"):
        with storage.open_read(key) as fh:
            assert fh.read() == payload
    with pytest.raises(FileNotFoundError):
        storage.copy("src/a.bin", "x.bin")


def test_s3_multipart_copy_above_the_threshold_keeps_every_byte(s3_bucket):
    import hashlib
    import random

    storage = open_storage(f"s3://{s3_bucket}")
    payload = random.Random(7).randbytes(12 << 20)
    storage.write_stream("big.bin", io.BytesIO(payload))
    storage.copy("big.bin", "copy.bin", multipart_threshold=5 << 20)  # 3 UploadPartCopy parts
    assert storage.stat("copy.bin").etag.strip('"').endswith("-3")
    with storage.open_read("copy.bin") as fh:
        assert hashlib.sha256(fh.read()).digest() == hashlib.sha256(payload).digest()


def test_publish_verifies_then_moves_into_place(storage):
    import hashlib

    from dataset_ops.storage import PublishError, file_sha256, publish

    data = b"line\n" * 50_000
    digest = hashlib.sha256(data).hexdigest()
    result = publish(
        storage, "fresh/x.txt", io.BytesIO(data), expected_size=len(data), expected_sha256=digest
    )
    assert result == {"key": "fresh/x.txt", "bytes": len(data), "sha256": digest}
    assert file_sha256(storage, "fresh/x.txt") == digest
    with pytest.raises(PublishError, match=r"fresh/x\.txt not published: sha256 .*, expected 00"):
        publish(storage, "fresh/x.txt", io.BytesIO(b"other"), expected_sha256="00")
    with pytest.raises(PublishError, match="5 bytes, expected 6"):
        publish(storage, "fresh/x.txt", io.BytesIO(b"other"), expected_size=6)
    assert file_sha256(storage, "fresh/x.txt") == digest  # untouched
    assert list(storage.list("_tmp")) == []  # no leftovers


def test_publish_file_uploads_a_local_file_in_parts_and_moves_it_into_place(storage, tmp_path, monkeypatch):
    """Above the part size an S3 upload is multipart, read part by part from the file."""
    import hashlib

    import dataset_ops.storage as st

    monkeypatch.setattr("dataset_ops.storage.s3.S3_PART_SIZE", 5 << 20)  # 3 parts for 12 MiB
    data = hashlib.sha256(b"seed").digest() * (12 * (1 << 20) // 32) + b"tail"
    path = tmp_path / "out.csv"
    path.write_bytes(data)
    result = st.publish_file(storage, "lake/x/out.csv", path)
    assert result == {"key": "lake/x/out.csv", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert st.file_sha256(storage, "lake/x/out.csv") == result["sha256"]
    assert list(storage.list("_tmp")) == []
    assert storage.write_file("raw/out.csv", path) == len(data)
    if storage.uri("k").startswith("s3://"):  # a multipart upload of 3 parts (the move copies it)
        assert storage.stat("raw/out.csv").etag.strip('"').endswith("-3")


def test_abort_incomplete_writes_only_touches_old_ones(s3_bucket, tmp_path):
    import os
    import time

    s3 = open_storage(f"s3://{s3_bucket}/root")
    s3.client.create_multipart_upload(Bucket=s3_bucket, Key="root/uploads/abandoned.jsonl")
    s3.client.create_multipart_upload(Bucket=s3_bucket, Key="root/elsewhere.bin")
    # the server reports when each upload was initiated (to the second): both are recent, so an
    # hour's threshold keeps them; "older than 0 s" takes every upload started before now
    assert s3.abort_incomplete_writes(3600) == []
    assert len(s3.client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]) == 2
    assert s3.abort_incomplete_writes(0, "uploads", dry_run=True) == ["uploads/abandoned.jsonl"]
    assert len(s3.client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]) == 2  # untouched
    assert s3.abort_incomplete_writes(0, "uploads") == ["uploads/abandoned.jsonl"]
    (left,) = s3.client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]
    assert left["Key"] == "root/elsewhere.bin"
    s3.abort_incomplete_writes(0)
    assert s3.client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []

    local = open_storage(str(tmp_path))
    (tmp_path / "uploads").mkdir()
    old, new = tmp_path / "uploads" / ".a.partial", tmp_path / "uploads" / ".b.partial"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert local.abort_incomplete_writes(3600) == ["uploads/.a.partial"]
    assert new.exists() and not old.exists()


def test_children_and_list_objects(storage):
    for key in ("p/a/x.bin", "p/a/y/z.bin", "p/b.json", "p2/c.bin"):
        storage.write_stream(key, io.BytesIO(b"12345"))
    assert storage.children("p") == {"a", "b.json"}
    assert storage.children("p/a/") == {"x.bin", "y"}
    assert storage.children("nothing") == set()
    assert "p" in storage.children("") and "p2" in storage.children("")
    objects = list(storage.list_objects("p/"))
    assert [o.key for o in objects] == ["p/a/x.bin", "p/a/y/z.bin", "p/b.json"]
    assert all(o.size == 5 and o.last_modified.tzinfo is not None for o in objects)


def test_create_writes_only_once_even_when_raced(storage):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: storage.create("claims/x.json", f"{i}".encode()), range(8)))
    assert won.count(True) == 1
    with storage.open_read("claims/x.json") as fh:
        assert fh.read() == str(won.index(True)).encode()
    assert storage.create("claims/x.json", b"again") is False
    assert list(storage.list("claims")) == ["claims/x.json"]  # no temporary file left


@pytest.mark.parametrize("root", ["http://host/data", "gs://bucket/x", "HTTPS://user:pw@host/"])
def test_a_root_with_another_scheme_is_refused_not_taken_for_a_folder(root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"scheme '\w+' is not supported"):
        open_storage(root)
    assert list(tmp_path.iterdir()) == []
    assert isinstance(open_storage(f"file://{tmp_path}/root"), LocalStorage)
