"""HTTP for the ingest: the page loop over a :class:`~dataset_ops.ingest.pagination.Paginator`,
on a session from :mod:`dataset_ops.httpclient` (an Airflow HTTP Connection, urllib3 retries with
backoff, jitter and ``Retry-After``; other 4xx fail at once). Every request has a connect and a
read timeout. When retries run out, or on a 4xx, :class:`IngestHTTPError` names the URL and the
status.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from queue import Queue
from typing import Any
from urllib.parse import urljoin

import orjson

from dataset_ops.errors import HTTPClientError, is_permanent_http_status
from dataset_ops.httpclient import RETRY_STATUSES, HttpSettings, make_session, session_from_connection
from dataset_ops.ingest.pagination import PaginationError, Paginator, Request


class IngestHTTPError(RuntimeError):
    """A request failed for good; the message has the method, URL, status or error, and tries."""


class IngestClientError(HTTPClientError, IngestHTTPError):
    """A 4xx other than 408/425/429 (404, 400, 401, 403, ...): permanent, the task fails without
    retries (:mod:`dataset_ops.errors`)."""


@dataclass
class Page:
    """One page: its ``records`` (JSON objects as dicts), the ``url`` asked, ``number`` from 1,
    ``bytes`` of body and ``seconds`` the request took (retries included)."""

    records: list[dict]
    url: str
    number: int
    bytes: int
    seconds: float


def fetch_json(session, request: Request, settings: HttpSettings) -> tuple[Any, dict, str, int]:
    """GET ``request`` and parse its JSON body.

    :returns: ``(body, links, url, bytes)``: ``links`` is the parsed ``Link`` header.
    :raises IngestHTTPError: no answer after the retries, a non-2xx answer, or a body that is
        not JSON (the message has the URL and, for JSON, the parser's position).
    """
    import requests

    url = urljoin(session.base_url, request.url)
    try:
        response = session.get(
            url, params=request.params, timeout=(settings.connect_timeout, settings.read_timeout)
        )
    except requests.RequestException as exc:
        raise IngestHTTPError(f"GET {url} {request.params}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 300:
        retried = " after retries" if response.status_code in RETRY_STATUSES else ""
        message = (
            f"GET {response.url}: HTTP {response.status_code} {response.reason}{retried}: "
            f"{response.text[:200]!r}"
        )
        if is_permanent_http_status(response.status_code):
            raise IngestClientError(message, response.status_code)
        raise IngestHTTPError(message)
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise IngestHTTPError(f"GET {response.url}: the body is not JSON: {exc}") from None
    return body, response.links, response.url, len(response.content)


def fetch_pages(
    session,
    paginator: Paginator,
    endpoint: str,
    params: dict[str, str],
    settings: HttpSettings,
    *,
    max_pages: int = 10_000,
    prefetch: bool = True,
) -> Iterator[Page]:
    """Every page of ``endpoint``, in order.

    With ``prefetch`` the next page is requested in a background thread while the caller works
    on the current one (at most one page ahead).

    :raises PaginationError: a page's body repeats an earlier page, a request repeats an
        earlier one (a cursor or link loop), or there are more than ``max_pages`` pages.
    :raises IngestHTTPError: see :func:`fetch_json`.
    """
    pages = _page_loop(session, paginator, endpoint, params, settings, max_pages)
    if not prefetch:
        yield from pages
        return
    queue: Queue = Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for page in pages:
                if stop.is_set():
                    return
                queue.put(page)
            queue.put(done)
        except BaseException as exc:  # handed to the consumer
            queue.put(exc)

    thread = threading.Thread(target=produce, name=f"fetch {endpoint}", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                queue.get(timeout=0.1)
            except Exception:
                pass


def _page_loop(session, paginator, endpoint, params, settings, max_pages) -> Iterator[Page]:
    request: Request | None = paginator.first(endpoint, params)
    seen_requests: set[str] = set()
    seen_bodies: dict[bytes, int] = {}
    number = 0
    while request is not None:
        number += 1
        if number > max_pages:
            raise PaginationError(
                f"{endpoint}: more than max_pages={max_pages:,} pages; the listing does not end"
            )
        key = paginator.state(request)
        if key in seen_requests:
            raise PaginationError(
                f"{endpoint}: page {number} asks for {request.url} {request.params} again "
                "(a cursor or link that loops)"
            )
        seen_requests.add(key)
        started = time.monotonic()
        body, links, url, size = fetch_json(session, request, settings)
        records = paginator.records(body)
        if records:
            digest = hashlib.blake2b(orjson.dumps(records), digest_size=16).digest()
            if digest in seen_bodies:
                raise PaginationError(
                    f"{endpoint}: page {number} ({url}) repeats the records of page {seen_bodies[digest]}"
                )
            seen_bodies[digest] = number
        yield Page(records, url, number, size, time.monotonic() - started)
        request = paginator.next(request, body, links, records)


__all__ = [
    "RETRY_STATUSES",
    "HttpSettings",
    "IngestHTTPError",
    "Page",
    "fetch_json",
    "fetch_pages",
    "make_session",
    "session_from_connection",
]
