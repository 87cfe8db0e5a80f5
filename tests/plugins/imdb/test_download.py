"""imdb download against a local HTTP server: conditional GET, failures, retries, stalls."""

from __future__ import annotations

import gzip
import hashlib
import shutil

import pytest
from helpers.http_server import Fault
from helpers.imdb_data import FULL_RATINGS, FULL_RATINGS_ROWS, gzip_file, slice_path

from dataset_ops.imdb.datasets import imdb_file
from dataset_ops.imdb.download import (
    DownloadError,
    download_file,
    http_session,
    legacy_manifest_key,
    raw_key,
    read_raw_manifest,
)
from dataset_ops.storage import open_storage, read_json
from dataset_ops.storage.manifest import verify
from dataset_ops.streams import StreamFormatError

RATINGS = imdb_file("title.ratings")
PATH = "title.ratings.tsv.gz"


@pytest.fixture
def storage(tmp_path):
    return open_storage(str(tmp_path / "storage"))


def fast_session():
    return http_session(retries=2, backoff_factor=0.05)


def fetch(server, storage, **kw):
    return download_file(RATINGS, server.url, storage, session=fast_session(), **kw)


def test_download_stores_file_and_manifest_then_skips_unchanged(file_server, storage):
    shutil.copyfile(FULL_RATINGS, file_server.root / PATH)
    first = fetch(file_server, storage, producer={"dag_id": "d", "run_id": "r"})
    assert first.status == "downloaded" and first.rows == FULL_RATINGS_ROWS
    assert storage.stat(raw_key(RATINGS)).size == FULL_RATINGS.stat().st_size == first.bytes
    raw = read_json(storage, "imdb/raw/_manifest.json")
    assert raw["format_version"] == 1 and raw["dataset"] == "imdb/raw"
    assert raw["files"] == [
        {"path": PATH, "bytes": first.bytes, "sha256": first.sha256, "rows": FULL_RATINGS_ROWS}
    ]
    assert raw["extra"]["dumps"]["title.ratings"]["etag"] == first.etag
    assert raw["producer"] == {"dag_id": "d", "run_id": "r"}
    assert raw["status"] == "partial" and "title.basics: not downloaded yet" in raw["problems"]
    assert verify(storage, read_raw_manifest(storage), checksums=True) == []

    second = fetch(file_server, storage)
    assert second.status == "unchanged" and second.sha256 == first.sha256
    assert file_server.count(PATH, 304) == 1


def test_changed_file_is_downloaded_again(file_server, storage):
    gzip_file(slice_path("title.ratings"), file_server.root / PATH)
    assert fetch(file_server, storage).rows == 50_001
    shutil.copyfile(FULL_RATINGS, file_server.root / PATH)
    again = fetch(file_server, storage)
    assert again.status == "downloaded" and again.rows == FULL_RATINGS_ROWS


def test_404_names_the_url(file_server, storage):
    with pytest.raises(DownloadError, match=r"title\.ratings\.tsv\.gz: HTTP 404"):
        fetch(file_server, storage)
    assert not storage.exists(raw_key(RATINGS))


def test_transient_500_is_retried_with_backoff(file_server, storage):
    shutil.copyfile(FULL_RATINGS, file_server.root / PATH)
    file_server.faults[PATH] = Fault(status=503, times=2)
    assert fetch(file_server, storage).status == "downloaded"
    assert file_server.count(PATH, 503) == 2 and file_server.count(PATH, 200) == 1


def test_persistent_500_fails_and_keeps_the_stored_file(file_server, storage):
    gzip_file(slice_path("title.ratings"), file_server.root / PATH)
    good = fetch(file_server, storage)
    shutil.copyfile(FULL_RATINGS, file_server.root / PATH)  # a new version exists...
    file_server.faults[PATH] = Fault(status=500)  # ...but the host keeps failing
    with pytest.raises(DownloadError, match=r"title\.ratings\.tsv\.gz: HTTP 500"):
        fetch(file_server, storage)
    assert file_server.count(PATH, 500) == 3  # first try + 2 retries
    assert read_raw_manifest(storage).file(PATH).sha256 == good.sha256


def test_stalled_download_fails_after_the_read_timeout(file_server, storage):
    shutil.copyfile(FULL_RATINGS, file_server.root / PATH)
    file_server.faults[PATH] = Fault(stall_after=100_000, stall_seconds=5)
    with pytest.raises(
        DownloadError,
        match=r"title\.ratings\.tsv\.gz: download broke off after [\d,]+ bytes: .*Read timed out",
    ):
        fetch(file_server, storage, read_timeout=1)
    assert not storage.exists(raw_key(RATINGS))


def test_body_shorter_than_content_length_fails(file_server, storage):
    shutil.copyfile(FULL_RATINGS, file_server.root / PATH)
    file_server.faults[PATH] = Fault(short_by=5000)
    with pytest.raises((DownloadError, StreamFormatError), match=r"title\.ratings\.tsv\.gz"):
        fetch(file_server, storage)
    assert not storage.exists(raw_key(RATINGS))


def test_truncated_gzip_is_rejected_and_not_stored(file_server, storage):
    (file_server.root / PATH).write_bytes(FULL_RATINGS.read_bytes()[:1_000_000])
    with pytest.raises(StreamFormatError, match=r"title\.ratings\.tsv\.gz: line \d+: truncated gzip"):
        fetch(file_server, storage)
    assert not storage.exists(raw_key(RATINGS))


def test_wrong_header_is_rejected(file_server, storage):
    gzip_file(slice_path("title.basics"), file_server.root / PATH)
    with pytest.raises(StreamFormatError, match="line 1: wrong header"):
        fetch(file_server, storage)
    assert not storage.exists(raw_key(RATINGS))


# -- which failures are permanent (the task fails at once) and which are retried ---------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 451])
def test_4xx_is_permanent_and_asked_once(file_server, storage, status):
    from dataset_ops.errors import HTTPClientError, is_permanent
    from dataset_ops.imdb.download import DownloadRefused

    shutil.copyfile(FULL_RATINGS, file_server.root / PATH)
    file_server.faults[PATH] = Fault(status=status)
    with pytest.raises(DownloadRefused, match=rf"title\.ratings\.tsv\.gz: HTTP {status}") as exc:
        fetch(file_server, storage)
    assert is_permanent(exc.value) and isinstance(exc.value, HTTPClientError | DownloadError)
    assert exc.value.status == status
    assert file_server.count(PATH) == 1  # the session does not retry it either


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_408_429_and_5xx_stay_transient(file_server, storage, status):
    from dataset_ops.errors import is_permanent

    shutil.copyfile(FULL_RATINGS, file_server.root / PATH)
    file_server.faults[PATH] = Fault(status=status)
    with pytest.raises(DownloadError, match=rf"HTTP {status}") as exc:
        fetch(file_server, storage)
    assert not is_permanent(exc.value)


def test_connection_refused_is_transient(storage):
    import socket

    from dataset_ops.errors import is_permanent

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="request failed") as exc:
        download_file(RATINGS, f"http://127.0.0.1:{port}/", storage, session=fast_session())
    assert not is_permanent(exc.value)


def test_bad_content_is_permanent_a_cut_body_is_not(file_server, storage):
    from dataset_ops.errors import is_permanent
    from dataset_ops.imdb.datasets import InvalidDump

    gzip_file(slice_path("title.basics"), file_server.root / PATH)  # wrong header
    with pytest.raises(InvalidDump, match="line 1: wrong header") as exc:
        fetch(file_server, storage)
    assert is_permanent(exc.value) and isinstance(exc.value, StreamFormatError)

    # the whole announced body arrived, but the gzip in it ends early: the host serves a bad file
    (file_server.root / PATH).write_bytes(FULL_RATINGS.read_bytes()[:1_000_000])
    with pytest.raises(InvalidDump, match="truncated gzip") as exc:
        fetch(file_server, storage)
    assert is_permanent(exc.value)

    (file_server.root / PATH).write_bytes(b"\x1f\x8b\x08\x00" + b"\xff" * 5000)  # corrupt deflate
    with pytest.raises(InvalidDump, match="not a valid gzip stream"):
        fetch(file_server, storage)

    # fewer bytes than announced: the connection broke, a retry may work
    shutil.copyfile(FULL_RATINGS, file_server.root / PATH)
    file_server.faults[PATH] = Fault(short_by=5000)
    with pytest.raises(DownloadError) as exc:
        fetch(file_server, storage)
    assert not is_permanent(exc.value)
    assert not storage.exists(raw_key(RATINGS))


def test_a_dump_of_the_earlier_per_file_json_is_read_and_its_json_replaced(file_server, storage, tmp_path):
    """Dumps downloaded by earlier versions carry ``<file>.json`` beside them (the exact shape
    those versions wrote): the manifest reader converts them, the conditional GET uses their
    ETag, and the next new download lists every dump in ``_manifest.json`` and drops the JSON."""
    import io
    import json

    shutil.copyfile(FULL_RATINGS, file_server.root / PATH)
    data = FULL_RATINGS.read_bytes()
    storage.write_stream(raw_key(RATINGS), io.BytesIO(data))
    crew = imdb_file("title.crew")
    storage.write_stream(raw_key(crew), io.BytesIO(b"crew"))
    etag = fetch(file_server, open_storage(str(tmp_path / "probe"))).etag  # the server's ETag
    old = {
        "file": "title.ratings",
        "url": file_server.url + PATH,
        "etag": etag,
        "last_modified": "Mon, 07 Dec 2026 17:00:00 GMT",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "rows": FULL_RATINGS_ROWS,
        "decompressed_bytes": 123,
        "dag_id": "imdb_download",
        "run_id": "manual__old",
    }
    crew_old = {
        **old,
        "file": "title.crew",
        "bytes": 4,
        "sha256": hashlib.sha256(b"crew").hexdigest(),
        "rows": 0,
    }
    for spec, body in ((RATINGS, old), (crew, crew_old)):  # as write_json wrote them
        text = json.dumps(body, indent=2, sort_keys=True)
        storage.write_stream(legacy_manifest_key(spec), io.BytesIO(text.encode()))

    legacy = read_raw_manifest(storage)
    assert legacy.legacy and legacy.status == "partial"
    assert sorted(f.path for f in legacy.files) == ["title.crew.tsv.gz", PATH]
    assert legacy.file(PATH).rows == FULL_RATINGS_ROWS
    assert legacy.extra["dumps"]["title.ratings"]["etag"] == etag
    assert verify(storage, legacy, checksums=True) == []

    assert fetch(file_server, storage).status == "unchanged"  # the old ETag went out
    assert file_server.count(PATH, 304) == 1
    (file_server.root / PATH).write_bytes(gzip.compress(slice_path("title.ratings").read_bytes()))
    assert fetch(file_server, storage).status == "downloaded"
    now = read_raw_manifest(storage)
    assert not now.legacy and sorted(f.path for f in now.files) == ["title.crew.tsv.gz", PATH]
    assert now.file(PATH).rows == 50_001 and now.file("title.crew.tsv.gz").sha256 == crew_old["sha256"]
    assert not storage.exists(legacy_manifest_key(RATINGS)) and storage.exists(legacy_manifest_key(crew))
