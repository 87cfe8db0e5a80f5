"""Storage API on a local folder and on S3 over HTTP (moto server)."""

from __future__ import annotations

import io

import pytest

from dataset_ops.storage import open_storage, read_json, write_json


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
    assert storage.exists("a/b/data.bin") and storage.size("a/b/data.bin") == len(payload)
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
        storage.size("nope.bin")


def test_local_keys_cannot_escape_the_root(tmp_path):
    with pytest.raises(ValueError, match="escapes the storage root"):
        open_storage(str(tmp_path / "root")).exists("../outside")
