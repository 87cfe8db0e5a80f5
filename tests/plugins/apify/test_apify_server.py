"""Tests for :class:`helpers.apify_server.ApifyServer`, the local Apify API v2 + media CDN.

The run and dataset endpoints are read with the real ``apify-client`` 3.4.0 (and with ``requests``
to check the raw answers: envelopes, error shapes, pagination headers), the media files are
downloaded and decoded with OpenCV, then every fault kind, runs that finish later, the item scaler
and the CLI used by the media benchmark.
"""

from __future__ import annotations

import csv
import io
import re
import select
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import orjson
import pytest
import requests
from apify_client import ApifyClient
from apify_client.errors import (
    ApifyApiError,
    InvalidResponseBodyError,
    NotFoundError,
    UnauthorizedError,
)
from helpers.apify_server import (
    DATASET_ID,
    IMAGE_KEYS,
    NO_LIMIT,
    RUN_ID,
    VIDEO_FRAMES,
    VIDEO_KEYS,
    ApifyServer,
    apify_id,
    load_real_items,
    media_fields,
    scale_items,
)

HELPER = Path(__file__).resolve().parents[2] / "helpers" / "apify_server.py"
APIFY_ID = re.compile(r"[A-Za-z0-9]{17}")
APIFY_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TIMEOUT = 10  # seconds, for every request that should answer
ITEMS_PATH = f"/v2/datasets/{DATASET_ID}/items"


@pytest.fixture
def apify():
    with ApifyServer() as server:
        yield server


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def client_for(server: ApifyServer, token: str | None = None, retries: int = 0) -> ApifyClient:
    return ApifyClient(
        token=server.token if token is None else token,
        api_url=server.api_url,
        max_retries=retries,
        min_delay_between_retries=timedelta(milliseconds=10),
    )


def auth(server: ApifyServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


def item_pages(server: ApifyServer, path: str = ITEMS_PATH) -> list[tuple[str, str]]:
    return [(q.get("offset"), q.get("limit")) for p, q, _ in server.requests if p == path]


# --- runs -------------------------------------------------------------------------------------------
def test_ids_look_like_apify_ids():
    assert APIFY_ID.fullmatch(RUN_ID) and APIFY_ID.fullmatch(DATASET_ID)
    assert APIFY_ID.fullmatch(apify_id("anything")) and apify_id("a") == apify_id("a") != apify_id("b")


def test_client_gets_the_default_run(apify, http):
    run = client_for(apify).run(RUN_ID).get()
    assert run is not None
    assert (run.id, run.status, run.default_dataset_id) == (RUN_ID, "SUCCEEDED", DATASET_ID)
    assert run.started_at.tzinfo is not None and run.finished_at > run.started_at
    assert all(APIFY_ID.fullmatch(i) for i in (run.act_id, run.default_key_value_store_id, run.build_id))
    assert run.exit_code == 0 and run.stats.duration_millis > 0 and run.options.build == "latest"
    assert apify.requests[-1] == (f"/v2/actor-runs/{RUN_ID}", {}, 200)

    resp = http.get(f"{apify.api_url}/v2/actor-runs/{RUN_ID}", headers=auth(apify), timeout=TIMEOUT)
    assert resp.headers["Content-Type"].startswith("application/json")
    data = resp.json()["data"]
    assert APIFY_TIME.fullmatch(data["startedAt"]) and APIFY_TIME.fullmatch(data["finishedAt"])
    assert data["storageIds"]["datasets"]["default"] == DATASET_ID == data["defaultDatasetId"]


def test_unknown_run_or_dataset_is_404_record_not_found(apify, http):
    client = client_for(apify)
    assert client.run("AAAAAAAAAAAAAAAAA").get() is None  # the client turns a 404 on .get() into None
    with pytest.raises(NotFoundError) as err:
        client.run("AAAAAAAAAAAAAAAAA").dataset().list_items()
    assert isinstance(err.value, ApifyApiError)
    assert (err.value.status_code, err.value.type) == (404, "record-not-found")
    with pytest.raises(NotFoundError, match="Dataset was not found"):
        client.dataset("BBBBBBBBBBBBBBBBB").list_items()
    assert apify.count("/v2/actor-runs/AAAAAAAAAAAAAAAAA", 404) == 1

    resp = http.get(f"{apify.api_url}/v2/actor-runs/AAAAAAAAAAAAAAAAA", headers=auth(apify), timeout=TIMEOUT)
    assert resp.status_code == 404
    assert resp.json() == {"error": {"type": "record-not-found", "message": "Actor run was not found"}}
    resp = http.get(f"{apify.api_url}/v2/no-such-thing", headers=auth(apify), timeout=TIMEOUT)
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "page-not-found"


def test_wrong_or_missing_token_is_401(apify, http):
    with pytest.raises(UnauthorizedError) as err:
        client_for(apify, token="not-the-token", retries=3).run(RUN_ID).get()
    assert (err.value.status_code, err.value.type) == (401, "user-or-token-not-found")
    assert apify.count(f"/v2/actor-runs/{RUN_ID}", 401) == 1  # a 4xx is not retried

    url = f"{apify.api_url}/v2/datasets/{DATASET_ID}/items"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "test-token"}):
        resp = http.get(url, headers=headers, timeout=TIMEOUT)
        assert resp.status_code == 401
        assert set(resp.json()["error"]) == {"type", "message"}
    assert http.get(url, params={"token": "test-token"}, timeout=TIMEOUT).status_code == 200
    assert http.get(url, params={"token": "nope"}, timeout=TIMEOUT).status_code == 401


def test_running_run_turns_succeeded_after_the_delay(apify, http):
    client = client_for(apify)
    added = time.monotonic()
    apify.add_run("RUNNINGrun0000001", status="RUNNING", finish_after=0.6)
    run = client.run("RUNNINGrun0000001").get()
    assert (run.status, run.finished_at, run.exit_code) == ("RUNNING", None, None)
    assert run.default_dataset_id == apify_id("RUNNINGrun0000001/dataset")
    assert client.dataset(run.default_dataset_id).list_items().items == apify.items

    done = client.run("RUNNINGrun0000001").wait_for_finish()
    assert time.monotonic() - added >= 0.6
    assert done.status == "SUCCEEDED" and done.exit_code == 0
    assert done.finished_at - done.started_at == timedelta(seconds=0.6)
    assert any("waitForFinish" in q for p, q, _ in apify.requests if p == "/v2/actor-runs/RUNNINGrun0000001")

    apify.add_run("READYrun000000002", status="READY")  # never finishes: waitForFinish=0 answers at once
    resp = http.get(
        f"{apify.api_url}/v2/actor-runs/READYrun000000002",
        params={"waitForFinish": "0"},
        headers=auth(apify),
        timeout=TIMEOUT,
    )
    assert resp.json()["data"]["status"] == "READY" and resp.json()["data"]["finishedAt"] is None


def test_raw_wait_for_finish_holds_the_answer(apify, http):
    apify.add_run("RUNNINGrun0000003", status="RUNNING", finish_after=0.4)
    started = time.monotonic()
    resp = http.get(
        f"{apify.api_url}/v2/actor-runs/RUNNINGrun0000003",
        params={"waitForFinish": "30"},
        headers=auth(apify),
        timeout=TIMEOUT,
    )
    assert resp.json()["data"]["status"] == "SUCCEEDED"
    assert time.monotonic() - started >= 0.3  # added a little before `started`


@pytest.mark.parametrize("status", ["FAILED", "ABORTED", "TIMED-OUT"])
def test_finished_runs_report_their_status(apify, status):
    run_id = f"{status.replace('-', '')}run".ljust(17, "0")
    apify.add_run(run_id, status=status)
    client = client_for(apify)
    run = client.run(run_id).get()
    assert run.status == status and run.finished_at is not None
    assert run.exit_code == (1 if status == "FAILED" else None)
    assert client.run(run_id).wait_for_finish().status == status


def test_add_run_with_its_own_items_and_bad_arguments(apify):
    items = load_real_items()[:3]
    apify.add_run("OWNITEMSrun000001", dataset_id="OwnDataset0000001", items=items)
    client = client_for(apify)
    served = client.dataset("OwnDataset0000001").list_items().items
    assert served == apify.dataset_items("OwnDataset0000001") and len(served) == 3
    assert [i["adArchiveID"] for i in served] == [i["adArchiveID"] for i in items]
    assert all(
        u.startswith(apify.base_url + "/media/") for u in apify.media_urls(dataset_id="OwnDataset0000001")
    )
    assert "fbcdn" in orjson.dumps(items).decode()  # the caller's items are not rewritten in place
    assert list(client.run("OWNITEMSrun000001").iterate_dataset_items()) == served
    with pytest.raises(ValueError, match="unknown run status"):
        apify.add_run("BADrun00000000001", status="DONE")
    with pytest.raises(ValueError, match="finish_after"):
        apify.add_run("BADrun00000000001", status="SUCCEEDED", finish_after=1.0)


# --- dataset items ----------------------------------------------------------------------------------
def test_iterate_items_returns_every_real_item(apify):
    client = client_for(apify)
    items = list(client.dataset(DATASET_ID).iterate_items())
    assert items == apify.items and len(items) == 61
    assert len({i["adArchiveID"] for i in items}) == 61
    assert all("snapshot" in i for i in items)
    assert item_pages(apify) == [("0", "1000"), ("61", "1000")]
    dataset = client.dataset(DATASET_ID).get()
    assert (dataset.id, dataset.item_count, dataset.clean_item_count) == (DATASET_ID, 61, 61)
    assert list(client.run(RUN_ID).iterate_dataset_items()) == apify.items


def test_small_chunks_leave_a_short_last_page():
    with ApifyServer(items=load_real_items()[:45]) as server:
        client = client_for(server)
        items = list(client.dataset(DATASET_ID).iterate_items(chunk_size=20))
        assert items == server.items and len(items) == 45
        assert item_pages(server) == [("0", "20"), ("20", "20"), ("40", "20"), ("45", "20")]
        page = client.dataset(DATASET_ID).list_items(offset=40, limit=20)
        assert (page.total, page.offset, page.limit, page.count, page.desc) == (45, 40, 20, 5, False)
        assert page.items == server.items[40:]


def test_page_limit_caps_each_request():
    with ApifyServer(page_limit=25) as server:
        client = client_for(server)
        page = client.dataset(DATASET_ID).list_items()
        assert (len(page.items), page.limit, page.count, page.total) == (25, 25, 25, 61)
        assert list(client.dataset(DATASET_ID).iterate_items()) == server.items
        assert item_pages(server)[1:] == [("0", "1000"), ("25", "1000"), ("50", "1000"), ("61", "1000")]
    with ApifyServer(page_limit=None) as server:
        page = client_for(server).dataset(DATASET_ID).list_items()
        assert (len(page.items), page.limit, page.count) == (61, NO_LIMIT, 61)


def test_pagination_headers_and_parameters(apify, http):
    url = f"{apify.api_url}{ITEMS_PATH}"

    def get(**params):
        return http.get(url, params=params, headers=auth(apify), timeout=TIMEOUT)

    resp = get(offset=10, limit=5)
    assert resp.headers["Content-Type"].startswith("application/json")
    assert [
        resp.headers[f"X-Apify-Pagination-{h}"] for h in ("Offset", "Limit", "Count", "Total", "Desc")
    ] == [
        "10",
        "5",
        "5",
        "61",
        "false",
    ]
    assert resp.json() == apify.items[10:15]
    resp = get(desc="1", limit=3)
    assert resp.json() == apify.items[::-1][:3] and resp.headers["X-Apify-Pagination-Desc"] == "true"
    resp = get(offset=60, limit=10)
    assert len(resp.json()) == 1 and resp.headers["X-Apify-Pagination-Count"] == "1"
    resp = get(offset=100)
    assert resp.json() == [] and resp.headers["X-Apify-Pagination-Count"] == "0"
    assert get(fields="adArchiveID,pageName", limit=2).json() == [
        {"adArchiveID": i["adArchiveID"], "pageName": i["pageName"]} for i in apify.items[:2]
    ]
    assert all("snapshot" not in i for i in get(omit="snapshot", limit=3).json())

    resp = get(format="jsonl", limit=2)
    assert resp.headers["Content-Type"].startswith("application/jsonl")
    assert [orjson.loads(line) for line in resp.content.splitlines()] == apify.items[:2]
    resp = get(format="csv", limit=2)
    assert resp.headers["Content-Type"].startswith("text/csv") and resp.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(resp.content.decode("utf-8-sig"))))
    assert [r["adArchiveID"] for r in rows] == [i["adArchiveID"] for i in apify.items[:2]]
    assert (
        rows[0]["snapshot/cards/0/original_image_url"]
        == apify.items[0]["snapshot"]["cards"][0]["original_image_url"]
    )

    head = http.head(url, params={"limit": 7}, headers=auth(apify), timeout=TIMEOUT)
    assert head.status_code == 200 and head.content == b"" and head.headers["X-Apify-Pagination-Count"] == "7"

    for bad in ({"format": "xml"}, {"limit": "abc"}, {"offset": "-1"}, {"desc": "maybe"}, {"unwind": "x"}):
        resp = get(**bad)
        assert resp.status_code == 400, bad
        assert resp.json()["error"]["type"] == "invalid-parameter"


def test_clean_skips_hidden_fields_and_empty_items(http):
    items = [{"#debug": {"url": "x"}}, {"a": 1, "#hidden": 2}, {}, {"b": None}]
    with ApifyServer(items=items) as server:
        url = f"{server.api_url}{ITEMS_PATH}"
        resp = http.get(url, params={"clean": "true"}, headers=auth(server), timeout=TIMEOUT)
        assert resp.json() == [{"a": 1}, {"b": None}]
        assert (resp.headers["X-Apify-Pagination-Count"], resp.headers["X-Apify-Pagination-Total"]) == (
            "4",
            "4",
        )
        assert http.get(url, headers=auth(server), timeout=TIMEOUT).json() == items
        client = client_for(server)
        assert list(client.dataset(DATASET_ID).iterate_items(clean=True)) == [{"a": 1}, {"b": None}]
        dataset = client.dataset(DATASET_ID).get()
        assert (dataset.item_count, dataset.clean_item_count) == (4, 2)


def test_api_faults(apify):
    path = f"/v2/actor-runs/{RUN_ID}"
    apify.fault(path, "status", status=500)
    assert client_for(apify, retries=2).run(RUN_ID).get().status == "SUCCEEDED"  # retried once
    assert (apify.count(path, 500), apify.count(path, 200)) == (1, 1)

    apify.fault(
        f"{apify.api_url}{ITEMS_PATH}?offset=0", "status", status=503, times=None
    )  # full URL: its path
    with pytest.raises(ApifyApiError) as err:
        client_for(apify, retries=1).dataset(DATASET_ID).list_items()
    assert err.value.status_code == 503 and err.value.type == "injected-fault"
    assert apify.count(ITEMS_PATH, 503) == 2
    apify.clear_faults()

    apify.fault(ITEMS_PATH, "wrong_type")
    with pytest.raises(InvalidResponseBodyError):
        client_for(apify).dataset(DATASET_ID).list_items()

    apify.fault(ITEMS_PATH, "drop")
    assert client_for(apify, retries=2).dataset(DATASET_ID).list_items().items == apify.items
    assert apify.count(ITEMS_PATH, 0) == 1

    with pytest.raises(ValueError, match="unknown fault kind"):
        apify.fault(ITEMS_PATH, "explode")


# --- media ------------------------------------------------------------------------------------------
def test_media_urls_download_and_decode(apify, http, tmp_path):
    urls = apify.media_urls()
    assert len(urls) == len(apify.media) > 300
    assert all(u.startswith(apify.base_url + "/media/") for u in urls)
    assert b"fbcdn" not in orjson.dumps(apify.items)  # nothing points at the real CDN any more
    assert set(apify.url_map.values()) == set(urls) and all("fbcdn" in u for u in apify.url_map)
    videos = set(apify.media_urls(keys=VIDEO_KEYS))
    images = set(apify.media_urls(keys=IMAGE_KEYS))
    assert videos and images and videos | images == set(urls) and not videos & images
    for url in urls:
        resp = http.get(url, timeout=TIMEOUT)
        assert resp.status_code == 200, url
        path = urlsplit(url).path
        assert resp.content == apify.media[path]
        assert int(resp.headers["Content-Length"]) == len(resp.content)
        if url in videos:
            assert path.endswith(".mp4") and resp.headers["Content-Type"] == "video/mp4"
            file = tmp_path / "v.mp4"
            file.write_bytes(resp.content)
            cap = cv2.VideoCapture(str(file))
            frames = 0
            while cap.read()[0]:
                frames += 1
            assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == frames == VIDEO_FRAMES == 30
            cap.release()
        else:
            assert path.endswith(".jpg") and resp.headers["Content-Type"] == "image/jpeg"
            img = cv2.imdecode(np.frombuffer(resp.content, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None and img.shape == (48, 64, 3)


def test_media_type_by_extension_or_key_and_deterministic(http):
    items = [
        {
            "adArchiveID": "1",
            "snapshot": {
                "images": [
                    {"original_image_url": "https://cdn.example/a/b.png?x=1", "resized_image_url": ""}
                ],
                "videos": [
                    {
                        "video_hd_url": "https://video.example/v/123_n.?oh=1",
                        "video_preview_image_url": "https://cdn.example/p/123",
                    }
                ],
            },
        }
    ]
    with ApifyServer(items=items) as one, ApifyServer(items=items) as two:
        snap = one.items[0]["snapshot"]
        png, video = snap["images"][0]["original_image_url"], snap["videos"][0]["video_hd_url"]
        preview = snap["videos"][0]["video_preview_image_url"]
        assert snap["images"][0]["resized_image_url"] == ""  # not a URL: left alone
        assert urlsplit(png).path.endswith(".png") and urlsplit(png).query == "x=1"
        assert urlsplit(video).path.endswith(".mp4") and urlsplit(preview).path.endswith(".jpg")
        resp = http.get(png, timeout=TIMEOUT)
        assert resp.headers["Content-Type"] == "image/png" and resp.content.startswith(b"\x89PNG")
        assert cv2.imdecode(np.frombuffer(resp.content, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
        assert http.get(video, timeout=TIMEOUT).headers["Content-Type"] == "video/mp4"
        assert one.media == two.media and one.media_sources == two.media_sources  # same bytes, same names
        assert one.media[urlsplit(png).path] != one.media[urlsplit(preview).path]
        assert items[0]["snapshot"]["images"][0]["original_image_url"] == "https://cdn.example/a/b.png?x=1"
        # items already on this server keep their URLs
        with pytest.raises(KeyError):
            one.dataset_items("nope")
        one.add_run("AGAINrun000000001", items=one.items)
        assert one.dataset_items(apify_id("AGAINrun000000001/dataset")) == one.items
        assert http.get(f"{one.base_url}/media/unknown.jpg", timeout=TIMEOUT).status_code == 404


def test_head_and_range_requests(apify, http):
    url = apify.media_urls(keys=VIDEO_KEYS)[0]
    full = apify.media[urlsplit(url).path]
    size = len(full)
    head = http.head(url, timeout=TIMEOUT)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) == size and head.headers["Accept-Ranges"] == "bytes"
    etag = head.headers["ETag"]

    first = http.get(url, headers={"Range": "bytes=0-99"}, timeout=TIMEOUT)
    assert first.status_code == 206 and first.headers["Content-Range"] == f"bytes 0-99/{size}"
    rest = http.get(url, headers={"Range": "bytes=100-", "If-Range": etag}, timeout=TIMEOUT)
    assert rest.status_code == 206 and rest.headers["Content-Range"] == f"bytes 100-{size - 1}/{size}"
    assert first.content + rest.content == full and int(rest.headers["Content-Length"]) == size - 100
    tail = http.get(url, headers={"Range": "bytes=-10"}, timeout=TIMEOUT)
    assert tail.status_code == 206 and tail.content == full[-10:]
    past = http.get(url, headers={"Range": f"bytes={size}-"}, timeout=TIMEOUT)
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{size}"
    changed = http.get(url, headers={"Range": "bytes=100-", "If-Range": '"other"'}, timeout=TIMEOUT)
    assert changed.status_code == 200 and changed.content == full  # the file changed: all of it
    assert http.get(url, headers={"If-None-Match": etag}, timeout=TIMEOUT).status_code == 304


def test_media_faults(apify, http):
    url = apify.media_urls(keys=IMAGE_KEYS)[0]
    path = urlsplit(url).path

    apify.fault(url, "status", status=404)
    assert http.get(url, timeout=TIMEOUT).status_code == 404
    assert http.get(url, timeout=TIMEOUT).status_code == 200
    apify.fault(path, "status", status=500, times=2)
    assert [http.get(url, timeout=TIMEOUT).status_code for _ in range(3)] == [500, 500, 200]

    apify.fault(path, "timeout", seconds=2.0)
    with pytest.raises(requests.exceptions.Timeout):
        requests.get(url, timeout=0.3)
    assert requests.get(url, timeout=TIMEOUT).status_code == 200

    apify.fault(path, "drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=TIMEOUT)
    assert apify.count(path, 0) == 1

    apify.fault(path, "wrong_type")
    resp = http.get(url, timeout=TIMEOUT)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert b"<html" in resp.content
    assert cv2.imdecode(np.frombuffer(resp.content, np.uint8), cv2.IMREAD_COLOR) is None
    assert http.get(url, timeout=TIMEOUT).content == apify.media[path]

    apify.fault("/media/*.mp4", "status", status=503, times=None)
    assert {http.get(u, timeout=TIMEOUT).status_code for u in apify.media_urls(keys=VIDEO_KEYS)} == {503}
    assert http.get(url, timeout=TIMEOUT).status_code == 200
    apify.clear_faults()
    assert http.get(apify.media_urls(keys=VIDEO_KEYS)[0], timeout=TIMEOUT).status_code == 200
    assert (apify.count(path, 404), apify.count(path, 500)) == (1, 2)


def test_media_latency_is_applied(http):
    with ApifyServer(items=load_real_items()[:1], media_latency=0.25) as server:
        url = server.media_urls()[0]
        started = time.monotonic()
        assert http.get(url, timeout=TIMEOUT).status_code == 200
        assert time.monotonic() - started >= 0.25


# --- scaling and the CLI ----------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 7, 150, 500])
def test_scale_items_references_exactly_n_images(n):
    real = load_real_items()
    items = scale_items(real, n)
    images = {u for item in items for _, key, u in media_fields(item) if key in IMAGE_KEYS}
    assert len(images) == n
    assert len({i["adArchiveID"] for i in items}) == len(items)
    assert real == load_real_items()  # the input is not modified
    real_images = {u for item in real for _, key, u in media_fields(item) if key in IMAGE_KEYS}
    if n > len(real_images):  # the real items as they are, then copies with new image URLs
        assert items[: len(real)] == real and len(items) > len(real)
        assert items[len(real)]["adArchiveID"] == real[0]["adArchiveID"] + "001"
        assert "dsops_copy=1" in next(u for _, k, u in media_fields(items[len(real)]) if k in IMAGE_KEYS)
    else:  # a prefix of the real items
        assert [i["adArchiveID"] for i in items] == [i["adArchiveID"] for i in real[: len(items)]]


def test_cli_prints_url_and_serves():
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), "--port", "0", "--media-latency", "0.01", "--media-count", "500"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "no URL printed within 60 s"
        base_url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        client = ApifyClient(token="test-token", api_url=base_url, max_retries=0)
        assert client.run(RUN_ID).get().status == "SUCCEEDED"
        items = list(client.dataset(DATASET_ID).iterate_items())
        images = {u for item in items for _, key, u in media_fields(item) if key in IMAGE_KEYS}
        assert len(images) == 500 and all(u.startswith(base_url + "/media/") for u in images)
        assert requests.get(next(iter(images)), timeout=TIMEOUT).headers["Content-Type"] == "image/jpeg"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
