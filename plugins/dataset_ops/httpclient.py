"""HTTP sessions shared by the workflows: ``requests`` with urllib3 retries and timeouts.

Retries are urllib3's ``Retry`` mounted on the session (https://urllib3.readthedocs.io, "Retry"):
connection errors, read timeouts, 429 and 5xx answers are tried again with exponential backoff
(``backoff_factor * 2**(n-1)`` seconds, capped at ``backoff_max``) plus random jitter up to
``backoff_jitter`` seconds, and a ``Retry-After`` header (429, 503) is honoured. Any other 4xx
is not retried. Used by the microservice ingest and the Apify media downloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Statuses retried with backoff (429 Too Many Requests and the 5xx a proxy or service sends).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


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
