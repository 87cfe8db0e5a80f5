"""Items and media of an actor run from the local Apify API server (tests/helpers/apify_server.py):
every item, every media file verified; failures recorded, not fatal; a rerun fetches nothing."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
from helpers.apify_server import DATASET_ID, RUN_ID, ApifyServer

from dataset_ops.apify.download import MediaDownloader
from dataset_ops.apify.items import download_items
from dataset_ops.apify.media import media_refs


@pytest.fixture
def apify():
    with ApifyServer() as server:
        yield server


def test_items_arrive_whole_even_with_a_short_last_page(apify, tmp_path):
    from apify_client import ApifyClient

    client = ApifyClient(token=apify.token, api_url=apify.api_url)
    run = client.run(RUN_ID).get()
    assert str(run.status.value if hasattr(run.status, "value") else run.status) == "SUCCEEDED"
    assert run.default_dataset_id == DATASET_ID
    got = download_items(client, DATASET_ID, tmp_path, RUN_ID, chunk_size=7)
    assert got["items"] == len(apify.items) and len(apify.items) % 7  # a short last page
    assert got["jsonl"].name == f"{RUN_ID}.jsonl" and got["csv"].name == f"{RUN_ID}.csv"


def test_media_downloads_are_verified_and_a_rerun_fetches_nothing(apify, tmp_path):
    refs = [ref for item in apify.items for ref in media_refs(item)]
    assert refs
    downloader = MediaDownloader(tmp_path / "media", workers=8, backoff_factor=0.01)
    results = downloader.run(refs)
    assert len(results) == len({r.url for r in refs})
    assert {r.status for r in results} == {"downloaded"}, [r.error for r in results if r.error]
    for r in results:
        data = (tmp_path / "media" / r.name).read_bytes()
        assert r.sha256 == hashlib.sha256(data).hexdigest() and r.bytes == len(data)
        assert data == apify.media[urlsplit(r.url).path]
        if r.kind == "image":
            assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    before = len(apify.requests)
    again = downloader.run(refs)
    assert {r.status for r in again} == {"present"} and len(apify.requests) == before
    assert [r.sha256 for r in again] == [r.sha256 for r in results]


def test_failed_media_are_recorded_and_do_not_stop_the_others(apify, tmp_path):
    refs = [ref for item in apify.items for ref in media_refs(item)]
    images = [r for r in refs if r.kind == "image"]
    missing, broken, slow, html = (urlsplit(r.url).path for r in images[:4])
    apify.fault(missing, "status", status=404, times=None)
    apify.fault(broken, "status", status=500, times=None)
    apify.fault(slow, "timeout", seconds=3.0, times=None)
    apify.fault(html, "wrong_type", times=None)
    downloader = MediaDownloader(
        tmp_path / "media", workers=8, read_timeout=0.5, retries=1, backoff_factor=0.01
    )
    results = {urlsplit(r.url).path: r for r in downloader.run(refs)}
    assert results[missing].status == "failed" and "404" in results[missing].error
    assert results[broken].status == "failed" and "500" in results[broken].error
    assert results[slow].status == "failed" and "Timeout" in results[slow].error
    assert results[html].status == "failed" and "Content-Type" in results[html].error
    others = [r for path, r in results.items() if path not in {missing, broken, slow, html}]
    assert others and {r.status for r in others} == {"downloaded"}
    assert not list((tmp_path / "media").glob("*.part"))
    for path in (missing, broken, slow, html):
        assert not (tmp_path / "media" / results[path].name).exists()


def test_an_oversized_file_is_refused(apify, tmp_path):
    refs = [ref for item in apify.items for ref in media_refs(item) if ref.kind == "video"][:1]
    if not refs:
        pytest.skip("no video in the items")
    result = MediaDownloader(tmp_path, max_bytes=100).run(refs)[0]
    assert result.status == "failed" and "cap" in result.error


def test_results_keep_first_appearance_order_and_transient_errors_are_retried(apify, tmp_path):
    refs = [ref for item in apify.items for ref in media_refs(item)]
    images = [r for r in refs if r.kind == "image"]
    busy, dropped = (urlsplit(r.url).path for r in images[:2])
    apify.fault(busy, "status", status=503, times=2)
    apify.fault(dropped, "drop", times=1)
    downloader = MediaDownloader(tmp_path, workers=4, retries=3, backoff_factor=0.01)
    results = downloader.run(refs + refs[::-1])  # duplicates: one result per URL, first order
    assert [r.url for r in results] == list(dict.fromkeys(r.url for r in refs))
    assert {r.status for r in results} == {"downloaded"}, [r.error for r in results if r.error]
    assert apify.count(busy) == 3 and apify.count(busy, 200) == 1
    assert apify.count(dropped) == 2 and apify.count(dropped, 200) == 1
    assert not downloader._sessions  # run() closed its threads' sessions


def test_media_are_asked_for_unencoded_and_the_environment_is_read_only_when_it_holds_something(
    apify, tmp_path, monkeypatch
):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "NETRC"):
        for variant in (name, name.lower()):
            monkeypatch.delenv(variant, raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    session = MediaDownloader(tmp_path)._session()
    assert session.trust_env is False and session.verify is True
    assert session.headers["Accept-Encoding"] == "identity" and session.headers["Accept"] == "*/*"
    assert session.get_adapter("http://x/").max_retries.total == 3  # the retry policy is mounted
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    session = MediaDownloader(tmp_path)._session()
    assert session.trust_env is False and session.verify == "/etc/ssl/certs/ca-certificates.crt"
    monkeypatch.delenv("CURL_CA_BUNDLE")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert MediaDownloader(tmp_path)._session().trust_env is True
    monkeypatch.delenv("HTTPS_PROXY")
    (tmp_path / ".netrc").write_text("machine example.com login a password b\n")
    assert MediaDownloader(tmp_path)._session().trust_env is True
