"""HTTP sessions shared by the workflows: ``requests`` with urllib3 retries and timeouts.

Retries are urllib3's ``Retry`` mounted on the session (https://urllib3.readthedocs.io, "Retry"):
connection errors, read timeouts, 429 and 5xx answers are tried again with exponential backoff
(``backoff_factor * 2**(n-1)`` seconds, capped at ``backoff_max``) plus random jitter up to
``backoff_jitter`` seconds, and a ``Retry-After`` header (429, 503) is honoured. Any other 4xx
is not retried. GET and HEAD are retried (both idempotent); nothing else is.

The suite's one session factory: :func:`new_session` (any host: the IMDb dump downloads through
:func:`dataset_ops.imdb.download.http_session`), :func:`make_session` (with a base URL and
``Accept: application/json``: the microservice ingest, the Apify media downloads) and
:func:`session_from_connection` (the same for an Airflow HTTP Connection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

#: Statuses retried with backoff (429 Too Many Requests and the 5xx a proxy or service sends).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Methods retried (idempotent ones only).
RETRY_METHODS = frozenset({"GET", "HEAD"})


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


def new_session(
    settings: HttpSettings | None = None, *, headers: dict | None = None, auth: Any = None
) -> requests.Session:
    """A ``requests.Session`` with the retry policy of ``settings`` (default :class:`HttpSettings`)
    mounted for ``http://`` and ``https://``.

    Timeouts are not a session setting in ``requests``: pass ``(settings.connect_timeout,
    settings.read_timeout)`` (seconds) as ``timeout=`` to each request.

    :param headers: sent with every request (``User-Agent``, ``Accept``, API keys).
    :param auth: ``requests`` auth (e.g. a ``(login, password)`` tuple for basic auth).
    :returns: the session; the last answer of a retried request comes back (no exception for a
        status, ``raise_on_status=False``), so callers name the status themselves.
    """
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util import Retry

    settings = settings or HttpSettings()
    retry = Retry(
        total=settings.retries,
        connect=settings.retries,
        read=settings.retries,
        status=settings.retries,
        other=0,
        allowed_methods=RETRY_METHODS,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=settings.backoff_factor,
        backoff_jitter=settings.backoff_jitter,
        backoff_max=settings.backoff_max,
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer comes back; callers name its status
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=2, pool_maxsize=4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if headers:
        session.headers.update(headers)
    if auth is not None:
        session.auth = auth
    return session


def make_session(
    base_url: str, settings: HttpSettings, *, headers: dict | None = None, auth: Any = None
) -> requests.Session:
    """A :func:`new_session` for the JSON API at ``base_url`` (``Accept: application/json``
    unless ``headers`` says otherwise).

    :returns: the session; its ``base_url`` attribute is ``base_url`` with a trailing ``/``.
    """
    session = new_session(settings, headers={"Accept": "application/json", **(headers or {})}, auth=auth)
    session.base_url = base_url.rstrip("/") + "/"
    return session


def session_from_connection(conn_id: str, settings: HttpSettings) -> requests.Session:
    """A session for the Airflow Connection ``conn_id`` (HTTP type: host, schema, port, login and
    password as basic auth, ``extra`` as headers), via the http provider's ``HttpHook``."""
    from airflow.providers.http.hooks.http import HttpHook

    hook = HttpHook(method="GET", http_conn_id=conn_id)
    configured = hook.get_conn()  # resolves base_url, auth and headers from the Connection
    return make_session(hook.base_url, settings, headers=dict(configured.headers), auth=configured.auth)
