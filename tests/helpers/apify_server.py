"""A local HTTP server that speaks the part of the Apify API v2 that reads an Actor run and its dataset.

It answers what ``apify-client`` 3.4.0 calls for ``ApifyClient(token=..., api_url=server.api_url)``
(the client appends ``/v2`` to ``api_url`` itself, so :attr:`ApifyServer.api_url` is the bare base
URL) and also plays the CDN that the dataset items' media URLs point at. Endpoints (Apify API v2
reference, https://docs.apify.com/api/v2):

* ``GET /v2/actor-runs/{runId}`` (https://docs.apify.com/api/v2/actor-run-get): ``{"data": <run>}``
  with the Run object's fields (id, actId, userId, startedAt, finishedAt, status, statusMessage,
  meta, stats, options, buildId, buildNumber, exitCode, defaultDatasetId, defaultKeyValueStoreId,
  defaultRequestQueueId, storageIds, usage...); ``waitForFinish=<seconds>`` holds the answer until
  the run is in a terminal status or that long has passed (capped at 60 s like the real API).
* ``GET /v2/datasets/{datasetId}`` (https://docs.apify.com/api/v2/dataset-get): ``{"data": <dataset>}``
  with itemCount, cleanItemCount, createdAt, modifiedAt, accessedAt, consoleUrl, stats...
* ``GET|HEAD /v2/datasets/{datasetId}/items`` (https://docs.apify.com/api/v2/dataset-items-get): a
  bare JSON array (no ``data`` envelope) with ``offset``, ``limit``, ``desc``, ``clean``,
  ``skipHidden``, ``skipEmpty``, ``fields``, ``omit`` and ``format`` (``json``, ``jsonl``, ``csv``),
  and the pagination headers (https://docs.apify.com/api/v2#/introduction/pagination):
  ``X-Apify-Pagination-Offset`` (the offset asked for), ``-Limit`` (the limit applied), ``-Count``
  (dataset rows scanned for this page, before ``clean``/``skipEmpty`` drop any), ``-Total`` (the
  dataset's item count) and ``-Desc`` (``true``/``false``).
* ``GET /v2/actor-runs/{runId}/dataset`` and ``.../dataset/items``: the same for the run's default
  dataset (https://docs.apify.com/api/v2#/reference/actor-runs/run-object-and-its-storages).
* ``GET|HEAD /media/<name>``: the media files, with Content-Type, Content-Length, ETag,
  Last-Modified, ``Accept-Ranges: bytes`` and single-range ``Range`` requests (206 + Content-Range,
  416 when unsatisfiable, ``If-Range`` honoured), so resumable downloads can be tested.

Authentication: every ``/v2`` request needs ``Authorization: Bearer <token>`` (what the client sends)
or ``?token=<token>``; without it, or with another token, the answer is 401 with Apify's error shape
``{"error": {"type": "user-or-token-not-found", "message": "..."}}``. An unknown run or dataset is
404 ``record-not-found`` (the client's ``.get()`` turns that 404 into ``None``; ``list_items`` and the
run's ``dataset()`` client raise ``NotFoundError``). Deviations from the real API: ``limit`` is capped
at ``page_limit`` (the real API has no cap; ``X-Apify-Pagination-Limit`` reports the capped limit, or
999999999999 like the real API when ``page_limit`` is None and no limit was asked for); the formats
html/xlsx/xml/rss and the ``unwind``/``flatten``/``view`` parameters answer 400; the real API lets
some GETs through without a token (ID-authenticated), this server does not.

Data: the dataset items are REAL Facebook Ad Library items (``shared/data/apify_fb_ads``, see
``shared/data/PROVENANCE.md``): the 30 items of ``fb_ad_library_keyword_search.ads.json`` and the 30
of ``fb_ad_library_page_ads.page_ads.json`` (their ``results`` are lists of collation groups,
flattened here) and the README sample item of the curious_coder actor: 61 items. Every media URL in
them (keys :data:`IMAGE_KEYS` and :data:`VIDEO_KEYS`, at any depth: ``snapshot.images[]``,
``snapshot.videos[]``, ``snapshot.cards[]``, profile pictures) is rewritten to
``<base_url>/media/<sha256 of the original URL, 20 hex>.<jpg|png|mp4>?<original query>``, so
downloads hit this server. The files are real and deterministic per original URL: 64x48 JPEG/PNG
images made with OpenCV (colour from the URL's hash) and 3 s, 10 fps, 64x48 MP4 videos (fourcc
``mp4v``, 30 frames, colour changing per frame) written with ``cv2.VideoWriter`` into a temporary
folder (deleted at :meth:`ApifyServer.stop`); bytes are cached per process.

Like :mod:`helpers.inventory_server`, it can be told to misbehave per path
(:meth:`ApifyServer.fault`): answer a status, stall, drop the connection, or answer an HTML page.

In tests it runs in a background thread::

    with ApifyServer() as apify:
        client = ApifyClient(token=apify.token, api_url=apify.api_url)
        items = list(client.dataset(DATASET_ID).iterate_items())

For benchmarks it runs as a process; the base URL is the first line on stdout::

    python tests/helpers/apify_server.py --port 0 --media-latency 0.05 --media-count 500
"""

from __future__ import annotations

import argparse
import copy as copylib
import csv
import fnmatch
import hashlib
import io
import os
import re
import shutil
import socket
import string
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from functools import lru_cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import cv2
import numpy as np
import orjson

try:  # imported as tests' helpers.<module>, or run as a script from tests/helpers/
    from helpers.serving import (
        BackgroundServer,
        LocalHTTPServer,
        QuietHandler,
        serve_until_signalled,
        take_fault,
    )
except ImportError:  # pragma: no cover
    from serving import BackgroundServer, LocalHTTPServer, QuietHandler, serve_until_signalled, take_fault


#: Real public data (``shared/data`` beside the checkout, or ``$DATASET_OPS_SHARED_DATA``).
SHARED_DATA = Path(
    os.environ.get("DATASET_OPS_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)
FB_ADS = SHARED_DATA / "apify_fb_ads"
#: The real item files, in serving order (the first two hold ``{"results": [[item, ...], ...]}``).
SOURCE_FILES = (
    "fb_ad_library_keyword_search.ads.json",
    "fb_ad_library_page_ads.page_ads.json",
    "curious_coder_actor_README.sample_item.json",
)

# --- Apify ids and statuses ---------------------------------------------------------------------
RUN_ID = "HG7ML7M8z78YcAPEB"  # 17 letters/digits, like real Apify ids (the API docs' example run)
DATASET_ID = "WkzbQMuFYuamGv3YF"  # the API docs' example dataset id
RUN_STATUSES = ("READY", "RUNNING", "SUCCEEDED", "FAILED", "ABORTED", "TIMED-OUT")
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "ABORTED", "TIMED-OUT"})
MAX_WAIT_FOR_FINISH = 60.0  # seconds: the real API holds a waitForFinish request at most this long
NO_LIMIT = 999_999_999_999  # X-Apify-Pagination-Limit of the real API when no limit was asked for

# --- media ----------------------------------------------------------------------------------------
#: Item keys (at any depth) whose http(s) value is an image URL.
IMAGE_KEYS = frozenset(
    {
        "original_image_url",
        "resized_image_url",
        "watermarked_resized_image_url",
        "video_preview_image_url",
        "page_profile_picture_url",
        "instagram_profile_pic_url",
    }
)
#: Item keys (at any depth) whose http(s) value is a video URL.
VIDEO_KEYS = frozenset(
    {"video_hd_url", "video_sd_url", "watermarked_video_hd_url", "watermarked_video_sd_url"}
)
MEDIA_KEYS = IMAGE_KEYS | VIDEO_KEYS
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "mp4": "video/mp4"}
IMAGE_SIZE = (64, 48)  # width, height in pixels
VIDEO_FPS = 10
VIDEO_FRAMES = 30  # 3 seconds
MEDIA_LAST_MODIFIED = formatdate(1_705_132_800, usegmt=True)  # 2024-01-13, like the ads' endDate

FAULT_KINDS = ("status", "timeout", "drop", "wrong_type")
_WRONG_TYPE_BODY = (
    b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Error</title></head>'
    b"<body><h1>Sorry, this content isn't available right now</h1>"
    b"<p>The link you followed may have expired.</p></body></html>\n"
)
_INT = re.compile(r"\d{1,15}")
_ROUTES = (
    ("run", re.compile(r"/v2/actor-runs/([^/]+)")),
    ("run_dataset", re.compile(r"/v2/actor-runs/([^/]+)/dataset")),
    ("run_items", re.compile(r"/v2/actor-runs/([^/]+)/dataset/items")),
    ("dataset", re.compile(r"/v2/datasets/([^/]+)")),
    ("items", re.compile(r"/v2/datasets/([^/]+)/items")),
)
_ALPHABET = string.ascii_letters + string.digits


def apify_id(seed: str) -> str:
    """A deterministic 17-character id of ``[A-Za-z0-9]`` (the shape of real Apify ids) for ``seed``."""
    n = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    chars = []
    for _ in range(17):
        n, r = divmod(n, 62)
        chars.append(_ALPHABET[r])
    return "".join(chars)


USER_ID = apify_id("dataset-ops/user")
ACT_ID = apify_id("dataset-ops/act/facebook-ads-library-scraper")
BUILD_ID = apify_id("dataset-ops/build")


def iso(dt: datetime) -> str:
    """``2024-01-13T08:00:00.000Z``: ISO 8601 in UTC with milliseconds, as the Apify API writes times."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- items ----------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _real_items_json() -> bytes:
    if not (SHARED_DATA / "PROVENANCE.md").is_file():
        raise RuntimeError(
            f"the Apify test server reads real data from {SHARED_DATA}, which is missing: check out "
            "the project beside shared/ or set DATASET_OPS_SHARED_DATA"
        )
    items: list[dict] = []
    for name in SOURCE_FILES:
        data = orjson.loads((FB_ADS / name).read_bytes())
        if isinstance(data, dict) and "results" in data:
            for group in data["results"]:
                items.extend(group if isinstance(group, list) else [group])
        elif isinstance(data, list):
            items.extend(data)
        else:
            items.append(data)
    return orjson.dumps(items)


def load_real_items() -> list[dict]:
    """The 61 real ad items (fresh copies, original fbcdn media URLs), in serving order."""
    return orjson.loads(_real_items_json())


def media_fields(item) -> Iterator[tuple[dict, str, str]]:
    """``(container, key, url)`` for every media URL in ``item`` (any depth), in document order.

    A media URL is an ``http://`` or ``https://`` string under a key of :data:`MEDIA_KEYS`; empty
    strings (the real items carry ``"watermarked_resized_image_url": ""``) are not media.
    """
    stack = [item]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            children = []
            for key, value in node.items():
                if key in MEDIA_KEYS and isinstance(value, str) and value.startswith(("http://", "https://")):
                    yield node, key, value
                elif isinstance(value, dict | list):
                    children.append(value)
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed([v for v in node if isinstance(v, dict | list)]))


def scale_items(items: list[dict], media_count: int) -> list[dict]:
    """Copies of ``items`` that reference exactly ``media_count`` distinct image URLs.

    The items come first as they are; when they hold fewer distinct images, copies of them follow
    (cycling) whose image URLs get a ``dsops_copy=<k>`` query parameter (new distinct URLs) and
    whose ``adArchiveID`` gets a ``<k:03d>`` suffix (still unique). Once the count is reached, any
    further image URL in the item being filled is pointed at an image already referenced (so a
    ``media_count`` below the real number of images also comes out exact). Videos are shared.
    """
    if media_count < 1:
        raise ValueError("media_count must be >= 1")
    seen: dict[str, None] = {}
    out: list[dict] = []
    copy = 0
    while len(seen) < media_count:
        before = len(seen)
        for item in items:
            if len(seen) >= media_count:
                break
            clone = copylib.deepcopy(item)
            if copy and "adArchiveID" in clone:
                clone["adArchiveID"] = f"{clone['adArchiveID']}{copy:03d}"
            for container, key, url in list(media_fields(clone)):
                if key not in IMAGE_KEYS:
                    continue
                if copy:
                    url = f"{url}{'&' if '?' in url else '?'}dsops_copy={copy}"
                if url not in seen:
                    if len(seen) < media_count:
                        seen[url] = None
                    else:
                        url = next(iter(seen))
                container[key] = url
            out.append(clone)
        if len(seen) == before:
            raise ValueError("the items reference no image")
        copy += 1
    return out


# --- media files ----------------------------------------------------------------------------------
_MEDIA_CACHE: dict[tuple[str, str], bytes] = {}
_MEDIA_LOCK = threading.Lock()


def _colour(seed: int, shift: int = 0) -> tuple[int, int, int]:
    """A saturated BGR colour for ``seed`` (hue from the seed, rotated by ``shift`` degrees/2)."""
    hsv = np.uint8([[[(seed + shift) % 180, 200, 230]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _frame(seed: int, shift: int = 0) -> np.ndarray:
    width, height = IMAGE_SIZE
    img = np.empty((height, width, 3), np.uint8)
    img[:] = _colour(seed, shift)
    ramp = np.linspace(0, 60, width, dtype=np.uint8)
    img[:, :, 1] = np.clip(img[:, :, 1].astype(np.int16) - ramp[None, :], 0, 255).astype(np.uint8)
    x = (seed >> 8) % (width - 20)
    y = (seed >> 16) % (height - 16)
    cv2.rectangle(img, (x, y), (x + 19, y + 15), _colour(seed, 90 + shift), thickness=-1)
    return img


def render_image(digest: str, fmt: str) -> bytes:
    """A 64x48 JPEG (``fmt="jpg"``) or PNG image for ``digest`` (hex), deterministic, cached."""
    key = (digest, fmt)
    with _MEDIA_LOCK:
        if key in _MEDIA_CACHE:
            return _MEDIA_CACHE[key]
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if fmt == "jpg" else []
    ok, buf = cv2.imencode(f".{fmt}", _frame(int(digest[:12], 16)), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {fmt} image")
    data = buf.tobytes()
    with _MEDIA_LOCK:
        _MEDIA_CACHE[key] = data
    return data


def render_video(digest: str, folder: Path) -> bytes:
    """A 3 s, 10 fps, 64x48 MP4 (fourcc mp4v, 30 frames) for ``digest``, written in ``folder``, cached."""
    key = (digest, "mp4")
    with _MEDIA_LOCK:
        if key in _MEDIA_CACHE:
            return _MEDIA_CACHE[key]
    path = folder / f"{digest}.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, IMAGE_SIZE)
    if not writer.isOpened():
        raise RuntimeError("OpenCV could not open an mp4v VideoWriter")
    seed = int(digest[:12], 16)
    try:
        for i in range(VIDEO_FRAMES):
            writer.write(_frame(seed, shift=6 * i))
    finally:
        writer.release()
    data = path.read_bytes()
    with _MEDIA_LOCK:
        _MEDIA_CACHE[key] = data
    return data


def _media_ext(key: str, url: str) -> str:
    ext = urlsplit(url).path.rsplit("/", 1)[-1].rpartition(".")[2].lower()
    if ext in ("jpg", "jpeg", "png", "mp4"):
        return "jpg" if ext == "jpeg" else ext
    return "mp4" if key in VIDEO_KEYS else "jpg"


def _parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """``(first, last)`` byte positions for one ``bytes=`` range; None: ignore the header (serve
    everything: not bytes, several ranges or bad syntax); ``"unsatisfiable"``: answer 416."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or (first and not first.isdigit()) or (last and not last.isdigit()) or not (first or last):
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(size - n, 0), size - 1
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if last and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, end


# --- server ---------------------------------------------------------------------------------------
@dataclass
class Fault:
    """Misbehaviour for one path (see :meth:`ApifyServer.fault`).

    :param kind: one of :data:`FAULT_KINDS`.
    :param status: HTTP status for ``kind="status"``.
    :param seconds: how long ``kind="timeout"`` stalls before answering normally.
    """

    kind: str
    status: int = 500
    seconds: float = 5.0


@dataclass
class _Run:
    id: str
    dataset_id: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    created: float  # time.monotonic() at add_run
    finish_after: float | None


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] | None = None
    content_type: str = "application/json; charset=utf-8"


def _error(status: int, type_: str, message: str) -> _Reply:
    return _Reply(status, orjson.dumps({"error": {"type": type_, "message": message}}))


class _BadRequest(Exception):
    pass


def _bool_param(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "").strip().lower()
    if value in ("", "0", "false"):
        return False
    if value in ("1", "true"):
        return True
    raise _BadRequest(f"Parameter '{name}' must be a boolean (true, false, 1 or 0), got {value!r}")


def _int_param(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not _INT.fullmatch(raw.strip()):
        raise _BadRequest(f"Parameter '{name}' must be a non-negative integer, got {raw!r}")
    return int(raw)


def _list_param(params: dict[str, str], name: str) -> list[str]:
    return [f.strip() for f in params.get(name, "").split(",") if f.strip()]


def _flatten(value, prefix: str, out: dict) -> None:
    """Apify's CSV flattening: nested keys joined with ``/``, list elements by index."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(v, f"{prefix}/{k}" if prefix else str(k), out)
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}/{i}" if prefix else str(i), out)
    elif isinstance(value, dict | list):
        out[prefix] = ""
    else:
        out[prefix] = "" if value is None else (str(value).lower() if isinstance(value, bool) else value)


class ApifyServer(BackgroundServer):
    """Serve the Apify API v2 run/dataset endpoints and the media files on ``host``.

    :param token: the API token requests must carry (``Authorization: Bearer <token>`` or ``?token=``).
    :param items: the default dataset's items (list of JSON-able dicts); None: the 61 real ad items
        (:func:`load_real_items`). Copied; media URLs in them are rewritten to this server (see
        :meth:`add_run`), already-rewritten ones (pointing at this server) are kept.
    :param page_limit: most items one ``/items`` request returns (``limit`` is capped at it); None:
        no cap, like the real API.
    :param media_latency: seconds slept before answering each ``/media/`` request.
    :param host: interface to bind; ``port``: 0 picks a free port.

    The socket is bound and the media rendered at construction, so :attr:`base_url`
    (``"http://127.0.0.1:PORT"``, no trailing slash), :attr:`items` and :attr:`media` are ready
    before :meth:`start`. The run :data:`RUN_ID` (SUCCEEDED, default dataset :data:`DATASET_ID`)
    exists from the start.

    Attributes: :attr:`api_url` (pass to ``ApifyClient(api_url=...)``: the client appends ``/v2``),
    :attr:`token`, :attr:`items` (the default dataset's items as served), :attr:`media` (path
    ``"/media/<name>"`` -> bytes), :attr:`media_sources` (path -> original URL), :attr:`url_map`
    (original URL -> served absolute URL), :attr:`requests` (``(path, query params as {str: str},
    status)`` per request, appended under a lock once the answer is decided; status 0 for a
    dropped connection or a stall cut short by :meth:`stop`).
    """

    def __init__(
        self,
        *,
        token: str = "test-token",
        items: list[dict] | None = None,
        page_limit: int | None = 1000,
        media_latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        if page_limit is not None and page_limit < 1:
            raise ValueError("page_limit must be >= 1 or None")
        self.token = token
        self.page_limit = page_limit
        self.media_latency = media_latency
        self.requests: list[tuple[str, dict[str, str], int]] = []
        self.media: dict[str, bytes] = {}
        self.media_sources: dict[str, str] = {}
        self.url_map: dict[str, str] = {}
        self._lock = threading.RLock()
        self._faults: dict[str, list[list]] = {}  # path or glob -> [[Fault, remaining or None], ...]
        self._stopping = threading.Event()
        self._runs: dict[str, _Run] = {}
        self._datasets: dict[str, list[dict]] = {}
        self._dataset_meta: dict[str, tuple[str | None, datetime]] = {}  # id -> (run id, created)
        self._conns: set[socket.socket] = set()
        self._tmp = Path(tempfile.mkdtemp(prefix="apify-server-media-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._tmp), ignore_errors=True)

        server = self

        class Handler(QuietHandler):
            def setup(self):
                super().setup()
                with server._lock:
                    server._conns.add(self.connection)

            def finish(self):
                with server._lock:
                    server._conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def do_GET(self):  # noqa: N802 (http.server API)
                server._handle(self, "GET")

            def do_HEAD(self):  # noqa: N802
                server._handle(self, "HEAD")

            def do_POST(self):  # noqa: N802
                server._handle(self, "POST")

            def do_PUT(self):  # noqa: N802
                server._handle(self, "PUT")

            def do_DELETE(self):  # noqa: N802
                server._handle(self, "DELETE")

        self._httpd = LocalHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://{host}:{self._httpd.server_address[1]}"
        self.api_url = self.base_url

        self.items: list[dict] = self._adopt(load_real_items() if items is None else items)
        self._add_dataset(DATASET_ID, self.items, RUN_ID)
        self.add_run(RUN_ID, status="SUCCEEDED", dataset_id=DATASET_ID)

    # --- lifecycle (start/stop/with: BackgroundServer) ---------------------------------------
    def _after_stop(self) -> None:
        """Cut open connections (stalls end at once) and delete the temporary media folder."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._cleanup()

    # --- runs and datasets -------------------------------------------------------------------
    def add_run(
        self,
        run_id: str,
        *,
        status: str = "SUCCEEDED",
        dataset_id: str | None = None,
        items: list[dict] | None = None,
        finish_after: float | None = None,
    ) -> None:
        """Create (or replace) the run ``run_id``.

        :param status: one of :data:`RUN_STATUSES`. Terminal runs started 42.5 s before now and
            finished now; READY/RUNNING runs start now and have no ``finishedAt``.
        :param dataset_id: its default dataset; None: ``apify_id(run_id + "/dataset")``. An existing
            dataset is shared unless ``items`` is given.
        :param items: the dataset's items (copied, media URLs rewritten to this server and their
            files rendered); None for a new dataset: the default dataset's items (:attr:`items`).
        :param finish_after: seconds (float) after which a READY/RUNNING run reports SUCCEEDED (with
            ``finishedAt`` = start + finish_after); None: it never finishes.
        """
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}; one of {RUN_STATUSES}")
        if finish_after is not None and (status in TERMINAL_STATUSES or finish_after < 0):
            raise ValueError("finish_after needs a READY or RUNNING run and seconds >= 0")
        dataset_id = dataset_id or apify_id(f"{run_id}/dataset")
        with self._lock:
            if items is not None:
                self._add_dataset(dataset_id, self._adopt(items), run_id)
            elif dataset_id not in self._datasets:
                self._add_dataset(dataset_id, self.items, run_id)
            now = datetime.now(UTC)
            done = status in TERMINAL_STATUSES
            self._runs[run_id] = _Run(
                id=run_id,
                dataset_id=dataset_id,
                status=status,
                started_at=now - timedelta(seconds=42.5) if done else now,
                finished_at=now if done else None,
                created=time.monotonic(),
                finish_after=finish_after,
            )

    def dataset_items(self, dataset_id: str = DATASET_ID) -> list[dict]:
        """The items of dataset ``dataset_id`` as served (KeyError if unknown)."""
        with self._lock:
            return self._datasets[dataset_id]

    def run(self, run_id: str = RUN_ID) -> dict:
        """The run object (``data`` of GET /v2/actor-runs/{run_id}) as it reads now; KeyError if unknown."""
        with self._lock:
            return self._run_object(self._runs[run_id])

    def media_urls(self, *, dataset_id: str = DATASET_ID, keys: Iterable[str] | None = None) -> list[str]:
        """Every distinct media URL (absolute, on this server) in a dataset's items, in item order.

        :param keys: only URLs under these keys (e.g. :data:`VIDEO_KEYS`); None: all media keys.
        """
        wanted = MEDIA_KEYS if keys is None else frozenset(keys)
        seen: dict[str, None] = {}
        for item in self.dataset_items(dataset_id):
            for _, key, url in media_fields(item):
                if key in wanted:
                    seen.setdefault(url, None)
        return list(seen)

    def _add_dataset(self, dataset_id: str, items: list[dict], run_id: str | None) -> None:
        with self._lock:
            self._datasets[dataset_id] = items
            self._dataset_meta[dataset_id] = (run_id, datetime.now(UTC))

    def _adopt(self, items: list[dict]) -> list[dict]:
        """Deep-copy ``items`` and rewrite their media URLs to this server, rendering the files."""
        items = orjson.loads(orjson.dumps(items))
        own = self.base_url + "/media/"
        with self._lock:
            for item in items:
                for container, key, url in list(media_fields(item)):
                    if url.startswith(own) and urlsplit(url).path in self.media:
                        continue
                    served = self.url_map.get(url)
                    if served is None:
                        digest = hashlib.sha256(url.encode()).hexdigest()
                        ext = _media_ext(key, url)
                        path = f"/media/{digest[:20]}.{ext}"
                        if path not in self.media:
                            if ext == "mp4":
                                self.media[path] = render_video(digest, self._tmp)
                            else:
                                self.media[path] = render_image(digest, ext)
                            self.media_sources[path] = url
                        query = urlsplit(url).query
                        served = self.base_url + path + (f"?{query}" if query else "")
                        self.url_map[url] = served
                    container[key] = served
        return items

    def _run_state(self, run: _Run) -> tuple[str, datetime | None]:
        if run.finish_after is not None and run.status not in TERMINAL_STATUSES:
            if time.monotonic() >= run.created + run.finish_after:
                return "SUCCEEDED", run.started_at + timedelta(seconds=run.finish_after)
        return run.status, run.finished_at

    def _run_object(self, run: _Run) -> dict:
        status, finished_at = self._run_state(run)
        end = finished_at or datetime.now(UTC)
        secs = max((end - run.started_at).total_seconds(), 0.0)
        n_items = len(self._datasets.get(run.dataset_id, ()))
        messages = {
            "READY": "Starting the Actor run",
            "RUNNING": "Scraping the Facebook Ad Library...",
            "SUCCEEDED": f"Finished! Scraped {n_items} ads.",
            "FAILED": "The Actor process exited with code 1",
            "ABORTED": "Actor was aborted",
            "TIMED-OUT": "The Actor run timed out",
        }
        kvs_id = apify_id(f"{run.id}/key-value-store")
        rq_id = apify_id(f"{run.id}/request-queue")
        compute_units = round(secs * 4 / 3600, 6)  # 4 GB of memory
        return {
            "id": run.id,
            "actId": ACT_ID,
            "userId": USER_ID,
            "startedAt": iso(run.started_at),
            "finishedAt": iso(finished_at) if finished_at else None,
            "status": status,
            "statusMessage": messages[status],
            "isStatusMessageTerminal": status in TERMINAL_STATUSES,
            "meta": {"origin": "API", "userAgent": "ApifyClient/3.4.0 (linux; Python/3.11)"},
            "stats": {
                "inputBodyLen": 187,
                "migrationCount": 0,
                "rebootCount": 0,
                "restartCount": 0,
                "resurrectCount": 0,
                "memAvgBytes": 267874071.9,
                "memMaxBytes": 404713472,
                "memCurrentBytes": 0 if finished_at else 301989888,
                "cpuAvgUsage": 33.75,
                "cpuMaxUsage": 169.65,
                "cpuCurrentUsage": 0 if finished_at else 12.5,
                "netRxBytes": 103508042,
                "netTxBytes": 4854600,
                "durationMillis": int(secs * 1000),
                "runTimeSecs": round(secs, 3),
                "metamorph": 0,
                "computeUnits": compute_units,
            },
            "options": {"build": "latest", "timeoutSecs": 3600, "memoryMbytes": 4096, "diskMbytes": 8192},
            "buildId": BUILD_ID,
            "buildNumber": "1.0.12",
            "exitCode": {"SUCCEEDED": 0, "FAILED": 1}.get(status),
            "generalAccess": "FOLLOW_USER_SETTING",
            "defaultKeyValueStoreId": kvs_id,
            "defaultDatasetId": run.dataset_id,
            "defaultRequestQueueId": rq_id,
            "storageIds": {
                "datasets": {"default": run.dataset_id},
                "keyValueStores": {"default": kvs_id},
                "requestQueues": {"default": rq_id},
            },
            "containerUrl": f"https://{run.id.lower()}.runs.apify.net",
            "isContainerServerReady": False,
            "gitBranchName": "master",
            "usage": {"ACTOR_COMPUTE_UNITS": compute_units, "DATASET_WRITES": n_items},
            "usageTotalUsd": round(compute_units * 0.4 + n_items * 0.000005, 6),
        }

    def _dataset_object(self, dataset_id: str) -> dict:
        items = self._datasets[dataset_id]
        run_id, created = self._dataset_meta[dataset_id]
        now = datetime.now(UTC)
        clean = sum(1 for it in items if any(not k.startswith("#") for k in it))
        return {
            "id": dataset_id,
            "name": None,
            "userId": USER_ID,
            "createdAt": iso(created),
            "modifiedAt": iso(created),
            "accessedAt": iso(now),
            "itemCount": len(items),
            "cleanItemCount": clean,
            "actId": ACT_ID,
            "actRunId": run_id,
            "consoleUrl": f"https://console.apify.com/storage/datasets/{dataset_id}",
            "generalAccess": "FOLLOW_USER_SETTING",
            "stats": {"readCount": 0, "writeCount": len(items), "storageBytes": len(orjson.dumps(items))},
        }

    # --- faults ------------------------------------------------------------------------------
    def fault(
        self, path: str, kind: str, *, times: int | None = 1, status: int = 500, seconds: float = 5.0
    ) -> None:
        """Make the next ``times`` requests to ``path`` misbehave.

        ``path`` is a request path (``"/v2/datasets/WkzbQMuFYuamGv3YF/items"``,
        ``"/media/<name>.jpg"``), a full URL (its path is used, the query ignored), or a glob with
        ``*`` (``"/media/*.mp4"``). Faults for a path are consumed in the order added; ``times=None``
        means forever. An exact path's faults apply before any glob's. Kinds:

        * ``"status"``: answer ``status`` (API paths with Apify's error JSON, media with text).
        * ``"timeout"``: stall ``seconds`` (float), then answer normally (cut short by :meth:`stop`).
        * ``"drop"``: close the connection without answering.
        * ``"wrong_type"``: answer 200 with ``Content-Type: text/html`` and an HTML error page (what
          a CDN answers for an expired link).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {FAULT_KINDS}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        if path.startswith(("http://", "https://")):
            path = urlsplit(path).path
        with self._lock:
            self._faults.setdefault(path, []).append([Fault(kind, status, seconds), times])

    def clear_faults(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            self._faults.clear()

    def count(self, path: str, status: int | None = None) -> int:
        """Requests seen for ``path`` (optionally only those answered with ``status``)."""
        with self._lock:
            return sum(1 for p, _, s in self.requests if p == path and (status is None or s == status))

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            keys = [path] if self._faults.get(path) else []
            keys += [k for k in self._faults if "*" in k and k != path and fnmatch.fnmatchcase(path, k)]
            for key in keys:
                fault = take_fault(self._faults.get(key))
                if fault is not None:
                    return fault
            return None

    # --- HTTP --------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        path = url.path
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)
        is_media = path.startswith("/media/")
        if is_media and self.media_latency > 0 and self._stopping.wait(self.media_latency):
            return self._drop(h, path, params)
        fault = self._take_fault(path)
        kind = fault.kind if fault else None
        if kind == "drop":
            return self._drop(h, path, params)
        if kind == "timeout":
            assert fault is not None
            if self._stopping.wait(fault.seconds):
                return self._drop(h, path, params)
        if kind == "status":
            assert fault is not None
            if is_media:
                reply = _Reply(fault.status, f"{fault.status} injected\n".encode(), content_type="text/plain")
            else:
                reply = _error(fault.status, "injected-fault", f"Injected fault: HTTP {fault.status}")
        elif kind == "wrong_type":
            reply = _Reply(200, _WRONG_TYPE_BODY, content_type="text/html; charset=utf-8")
        else:
            try:
                reply = self._route(method, path, params, h)
            except _BadRequest as exc:
                reply = _error(400, "invalid-parameter", str(exc))
            except Exception as exc:  # a bug here must not hang the client
                reply = _error(500, "internal-server-error", f"internal: {exc!r}")
        if reply is None:  # the server stopped during a waitForFinish
            return self._drop(h, path, params)
        self._log(path, params, reply.status)
        try:
            h.send_response(reply.status)
            h.send_header("Content-Type", reply.content_type)
            h.send_header("Content-Length", str(len(reply.body)))
            for name, value in (reply.headers or {}).items():
                h.send_header(name, value)
            if method not in ("GET", "HEAD"):
                h.send_header("Connection", "close")
                h.close_connection = True
            h.end_headers()
            if method != "HEAD" and reply.status != 304:
                h.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    def _drop(self, h: BaseHTTPRequestHandler, path: str, params: dict[str, str]) -> None:
        self._log(path, params, 0)
        h.close_connection = True

    def _log(self, path: str, params: dict[str, str], status: int) -> None:
        with self._lock:
            self.requests.append((path, params, status))

    def _route(
        self, method: str, path: str, params: dict[str, str], h: BaseHTTPRequestHandler
    ) -> _Reply | None:
        if path.startswith("/media/"):
            if method not in ("GET", "HEAD"):
                return _Reply(405, b"method not allowed\n", {"Allow": "GET, HEAD"}, "text/plain")
            return self._media_reply(path, h)
        if not path.startswith("/v2/"):
            return _error(404, "page-not-found", "We have bad news: there is no API endpoint at this URL.")
        auth = h.headers.get("Authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else params.get("token")
        if given != self.token:
            return _error(
                401, "user-or-token-not-found", "User was not found or authentication token is not valid"
            )
        route, ident = None, ""
        for name, pattern in _ROUTES:
            m = pattern.fullmatch(path)
            if m:
                route, ident = name, m.group(1)
                break
        if route is None:
            return _error(404, "page-not-found", "We have bad news: there is no API endpoint at this URL.")
        if method not in ("GET", "HEAD"):
            return _error(405, "method-not-allowed", f"This test server only answers GET and HEAD on {path}")
        if route.startswith("run"):
            with self._lock:
                run = self._runs.get(ident)
            if run is None:
                return _error(404, "record-not-found", "Actor run was not found")
            if route == "run":
                return self._run_reply(run, params)
            dataset_id = run.dataset_id
        else:
            dataset_id = ident
        with self._lock:
            items = self._datasets.get(dataset_id)
            if items is None:
                return _error(404, "record-not-found", "Dataset was not found")
            if route in ("run_dataset", "dataset"):
                return _Reply(200, orjson.dumps({"data": self._dataset_object(dataset_id)}))
        return self._items_reply(items, params)

    def _run_reply(self, run: _Run, params: dict[str, str]) -> _Reply | None:
        raw = params.get("waitForFinish")
        if raw:
            try:
                wait = min(max(float(raw), 0.0), MAX_WAIT_FOR_FINISH)
            except ValueError:
                raise _BadRequest(f"Parameter 'waitForFinish' must be a number, got {raw!r}") from None
            deadline = time.monotonic() + wait
            while self._run_state(run)[0] not in TERMINAL_STATUSES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self._stopping.wait(min(left, 0.02)):
                    return None
        with self._lock:
            return _Reply(200, orjson.dumps({"data": self._run_object(run)}))

    def _items_reply(self, items: list[dict], params: dict[str, str]) -> _Reply:
        fmt = params.get("format", "json").strip().lower() or "json"
        if fmt not in ("json", "jsonl", "csv"):
            raise _BadRequest(
                f"Parameter 'format' must be json, jsonl or csv on this test server, got {fmt!r}"
            )
        for name in ("unwind", "flatten", "view"):
            if params.get(name):
                raise _BadRequest(f"Parameter '{name}' is not supported by this test server")
        offset = _int_param(params, "offset") or 0
        limit = _int_param(params, "limit") or 0  # 0 or absent: no limit (the API contract)
        desc = _bool_param(params, "desc")
        clean = _bool_param(params, "clean")
        skip_hidden = clean or _bool_param(params, "skipHidden")
        skip_empty = clean or _bool_param(params, "skipEmpty")
        fields, omit = _list_param(params, "fields"), _list_param(params, "omit")
        applied = limit or NO_LIMIT
        if self.page_limit is not None:
            applied = min(applied, self.page_limit)
        rows = items[::-1] if desc else items
        page = rows[offset : offset + applied]
        out = []
        for item in page:
            if skip_hidden:
                item = {k: v for k, v in item.items() if not k.startswith("#")}
            if fields:
                item = {k: item[k] for k in fields if k in item}
            if omit:
                item = {k: v for k, v in item.items() if k not in omit}
            if skip_empty and not item:
                continue
            out.append(item)
        headers = {
            "X-Apify-Pagination-Offset": str(offset),
            "X-Apify-Pagination-Limit": str(applied),
            "X-Apify-Pagination-Count": str(len(page)),
            "X-Apify-Pagination-Total": str(len(items)),
            "X-Apify-Pagination-Desc": "true" if desc else "false",
        }
        if fmt == "json":
            return _Reply(200, orjson.dumps(out), headers)
        if fmt == "jsonl":
            body = b"".join(orjson.dumps(it) + b"\n" for it in out)
            return _Reply(200, body, headers, "application/jsonl; charset=utf-8")
        return _Reply(200, self._csv(out, params), headers, "text/csv; charset=utf-8")

    @staticmethod
    def _csv(items: list[dict], params: dict[str, str]) -> bytes:
        flat = []
        for item in items:
            row: dict = {}
            _flatten(item, "", row)
            flat.append(row)
        columns: dict[str, None] = {}
        for row in flat:
            for key in row:
                columns.setdefault(key, None)
        buf = io.StringIO(newline="")
        delimiter = params.get("delimiter") or ","
        writer = csv.DictWriter(buf, fieldnames=list(columns), delimiter=delimiter[0], lineterminator="\r\n")
        if not _bool_param(params, "skipHeaderRow"):
            writer.writeheader()
        writer.writerows(flat)
        bom = "bom" not in params or _bool_param(params, "bom")  # csv carries a BOM by default
        return (b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode()

    def _media_reply(self, path: str, h: BaseHTTPRequestHandler) -> _Reply:
        with self._lock:
            body = self.media.get(path)
        if body is None:
            return _Reply(404, b"404 Not Found\n", content_type="text/plain")
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Last-Modified": MEDIA_LAST_MODIFIED,
            "Cache-Control": "max-age=1209600, no-transform",
        }
        ctype = CONTENT_TYPES[path.rsplit(".", 1)[-1]]
        if h.headers.get("If-None-Match") == etag:
            return _Reply(304, b"", headers, ctype)
        rng = h.headers.get("Range")
        if_range = h.headers.get("If-Range")
        if rng and (if_range is None or if_range in (etag, MEDIA_LAST_MODIFIED)):
            parsed = _parse_range(rng, len(body))
            if parsed == "unsatisfiable":
                return _Reply(416, b"", {**headers, "Content-Range": f"bytes */{len(body)}"}, ctype)
            if isinstance(parsed, tuple):
                first, last = parsed
                headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
                return _Reply(206, body[first : last + 1], headers, ctype)
        return _Reply(200, body, headers, ctype)


def main(argv: list[str] | None = None) -> int:
    """CLI: serve until SIGTERM/SIGINT (exit 0); prints the base URL as the first stdout line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--token", default="test-token")
    parser.add_argument("--media-latency", type=float, default=0.0, help="seconds slept per media request")
    parser.add_argument(
        "--media-count",
        type=int,
        default=None,
        help="the default run's items reference this many distinct images",
    )
    parser.add_argument("--page-limit", type=int, default=1000, help="most items per /items request")
    args = parser.parse_args(argv)
    items = scale_items(load_real_items(), args.media_count) if args.media_count else None
    server = ApifyServer(
        token=args.token,
        items=items,
        page_limit=args.page_limit,
        media_latency=args.media_latency,
        host=args.host,
        port=args.port,
    )

    note = f"run {RUN_ID}, dataset {DATASET_ID}: {len(server.items)} items, {len(server.media)} media files"
    return serve_until_signalled(server, note)


if __name__ == "__main__":
    sys.exit(main())
