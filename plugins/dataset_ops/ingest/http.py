"""HTTP for the ingest: a ``requests`` session from an Airflow HTTP Connection, with retries, and
the page loop over a :class:`~dataset_ops.ingest.pagination.Paginator`.

Retries are urllib3's ``Retry`` mounted on the session (https://urllib3.readthedocs.io, "Retry"):
connection errors, read timeouts, 429 and 5xx answers are tried again with exponential backoff
(``backoff_factor * 2**(n-1)`` seconds, capped at ``backoff_max``) plus random jitter up to
``backoff_jitter`` seconds, and a ``Retry-After`` header (429, 503) is honoured. Any other 4xx
fails at once. Every request has a connect and a read timeout. When retries run out, or on a
4xx, :class:`IngestHTTPError` names the URL and the status.
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

from dataset_ops.ingest.pagination import PaginationError, Paginator, Request

#: Statuses retried with backoff (429 Too Many Requests and the 5xx a proxy or service sends).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class IngestHTTPError(RuntimeError):
    """A request failed for good; the message has the method, URL, status or error, and tries."""


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts (seconds) and retry policy of one service.

    :param retries: tries after the first for connection errors, read timeouts, 429 and 5xx.
    """

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    retries: int = 5
    backoff_factor: float = 0.5
    backoff_jitter: float = 0.5
    backoff_max: float = 60.0


def make_session(base_url: str, settings: HttpSettings, *, headers: dict | None = None, auth: Any = None):
    """A ``requests.Session`` for ``base_url`` with the retry policy of ``settings`` mounted.

    :returns: the session; its ``base_url`` attribute is ``base_url`` with a trailing ``/``.
    """
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util import Retry

    retry = Retry(
        total=settings.retries,
        connect=settings.retries,
        read=settings.retries,
        status=settings.retries,
        other=0,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=settings.backoff_factor,
        backoff_jitter=settings.backoff_jitter,
        backoff_max=settings.backoff_max,
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer comes back; fetch_json names its status
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=2, pool_maxsize=4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["Accept"] = "application/json"
    if headers:
        session.headers.update(headers)
    if auth is not None:
        session.auth = auth
    session.base_url = base_url.rstrip("/") + "/"
    return session


def session_from_connection(conn_id: str, settings: HttpSettings):
    """A session for the Airflow Connection ``conn_id`` (HTTP type: host, schema, port, login and
    password as basic auth, ``extra`` as headers), via the http provider's ``HttpHook``."""
    from airflow.providers.http.hooks.http import HttpHook

    hook = HttpHook(method="GET", http_conn_id=conn_id)
    configured = hook.get_conn()  # resolves base_url, auth and headers from the Connection
    return make_session(hook.base_url, settings, headers=dict(configured.headers), auth=configured.auth)


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
        raise IngestHTTPError(
            f"GET {response.url}: HTTP {response.status_code} {response.reason}{retried}: "
            f"{response.text[:200]!r}"
        )
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
