"""Download IMDb dumps into object storage with conditional HTTP GETs.

Each file is fetched from ``<base_url><name>.tsv.gz`` (https://datasets.imdbws.com/ by
default; https://developer.imdb.com/non-commercial-datasets/ documents the files). The ETag and
Last-Modified of the stored copy are sent back as ``If-None-Match`` / ``If-Modified-Since``
(RFC 9110, section 13.1): a ``304 Not Modified``, or a 200 with the same ETag, means unchanged
and nothing is transferred or written. A changed file streams into storage through
:class:`~dataset_ops.streams.VerifyingReader`, which checks gzip completeness and the header
line while the bytes pass; only a complete, valid file replaces the stored one. Its manifest
(``<key>.json``: URL, ETag, Last-Modified, bytes, sha256, rows) is written after the data.

Transient HTTP failures (connection errors, 429, 5xx) are retried with exponential backoff that
honours ``Retry-After`` (urllib3 ``Retry``); a stalled body fails after ``read_timeout`` seconds
without a byte. When those retries run out, :class:`DownloadError` (transient: the task is
retried). Answers that a retry cannot change fail as permanent errors
(:mod:`dataset_ops.errors`), so the task fails after one try: :class:`DownloadRefused` for a
4xx other than 408/425/429 (404, 410, 403, ...), :class:`~dataset_ops.imdb.datasets.InvalidDump`
for a complete body that is not the dump (wrong header line, corrupt gzip, gzip cut off although
the announced length arrived).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from dataset_ops.errors import HTTPClientError, is_permanent_http_status
from dataset_ops.imdb.datasets import ImdbFile, InvalidDump
from dataset_ops.storage import Storage, read_json, write_json
from dataset_ops.streams import ProgressLog, StreamFormatError, VerifyingReader

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

RAW_PREFIX = "imdb/raw"


class DownloadError(RuntimeError):
    """A download failed for a reason that may pass (connection, timeout, 429/5xx after the
    session's retries, a body that broke off); the message names the URL (file) and the reason."""


class DownloadRefused(HTTPClientError, DownloadError):
    """The host answered a 4xx that a retry does not change (404, 410, 401, 403, ...): permanent.

    :param message: URL, status and reason. :param status: the HTTP status.
    """


@dataclass
class DownloadResult:
    """Outcome of :func:`download_file` (sizes in bytes)."""

    file: str
    status: str  # "downloaded" or "unchanged"
    url: str
    key: str
    uri: str
    etag: str | None
    last_modified: str | None
    bytes: int | None
    sha256: str | None
    rows: int | None

    def to_dict(self) -> dict:
        """Plain dict for XCom and Asset event extras."""
        return asdict(self)


def raw_key(spec: ImdbFile) -> str:
    """Storage key of the downloaded dump, e.g. ``imdb/raw/title.basics.tsv.gz``."""
    return f"{RAW_PREFIX}/{spec.file_name}"


def manifest_key(spec: ImdbFile) -> str:
    """Storage key of the dump's manifest (JSON beside the data)."""
    return f"{raw_key(spec)}.json"


def http_session(retries: int = 5, backoff_factor: float = 2.0) -> requests.Session:
    """A ``requests`` session retrying connection errors, 429 and 5xx with exponential backoff.

    :param retries: attempts after the first.
    :param backoff_factor: seconds; waits are ``backoff_factor * 2 ** (n - 1)`` (or Retry-After).
    """
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(
        total=retries,
        backoff_factor=backoff_factor,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "dataset-ops imdb_download"
    return session


def download_file(
    spec: ImdbFile,
    base_url: str,
    storage: Storage,
    *,
    session: requests.Session | None = None,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    producer: dict | None = None,
) -> DownloadResult:
    """Fetch one IMDb dump into ``storage`` unless it is unchanged since the stored copy.

    :param spec: which file.
    :param base_url: folder URL ending in ``/``, e.g. ``https://datasets.imdbws.com/``.
    :param storage: destination; the file goes to :func:`raw_key`.
    :param session: HTTP session (default :func:`http_session`).
    :param connect_timeout: seconds to connect.
    :param read_timeout: seconds without a byte before the download counts as stalled.
    :param producer: extra fields for the manifest (DAG id, run id).
    :returns: status ``downloaded`` (with size, sha256, rows) or ``unchanged``.
    :raises DownloadRefused: a 4xx other than 408/425/429 (permanent; names URL and status).
    :raises InvalidDump: the complete body is not the dump: wrong header line, corrupt gzip, or
        gzip cut off although the announced Content-Length arrived (permanent; a
        :class:`~dataset_ops.streams.StreamFormatError`, names the URL, line and reason).
    :raises DownloadError: connection failure, stall, 429/5xx after the retries, a body shorter
        than announced (transient; names URL and bytes).
    """
    import requests
    import urllib3

    session = session or http_session()
    url = urljoin(base_url if base_url.endswith("/") else base_url + "/", spec.file_name)
    key = raw_key(spec)
    previous = read_json(storage, manifest_key(spec)) if storage.exists(key) else None
    headers = {"Accept-Encoding": "identity"}
    if previous and previous.get("etag"):
        headers["If-None-Match"] = previous["etag"]
    if previous and previous.get("last_modified"):
        headers["If-Modified-Since"] = previous["last_modified"]

    try:
        resp = session.get(url, headers=headers, stream=True, timeout=(connect_timeout, read_timeout))
    except requests.RequestException as exc:
        raise DownloadError(f"{url}: request failed: {exc}") from exc
    with resp:
        etag = resp.headers.get("ETag")
        unchanged = resp.status_code == 304 or (
            resp.status_code == 200 and previous is not None and etag and etag == previous.get("etag")
        )
        if unchanged:
            log.info("%s unchanged (ETag %s): nothing to download", url, previous.get("etag"))
            return _result(spec, "unchanged", url, key, storage, previous)
        if resp.status_code != 200:
            message = f"{url}: HTTP {resp.status_code} {resp.reason}"
            if is_permanent_http_status(resp.status_code):
                raise DownloadRefused(message, resp.status_code)
            raise DownloadError(message)
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        reader = VerifyingReader(
            resp.raw, url, spec.header, total, ProgressLog(f"GET {spec.file_name}", total)
        )
        try:
            written = storage.write_stream(key, reader)
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            raise DownloadError(
                f"{url}: download broke off after {reader.bytes_read:,} bytes: {exc}"
            ) from exc
        except StreamFormatError as exc:
            raise _classify_stream_error(exc, reader) from exc
        manifest = {
            "file": spec.name,
            "url": url,
            "etag": etag,
            "last_modified": resp.headers.get("Last-Modified"),
            "bytes": written,
            "sha256": reader.sha256.hexdigest(),
            "rows": reader.gunzip.rows,
            "decompressed_bytes": reader.gunzip.decompressed_bytes,
            **(producer or {}),
        }
        write_json(storage, manifest_key(spec), manifest)
        log.info(
            "%s: stored %s (%s bytes, %s rows)",
            url,
            storage.uri(key),
            f"{written:,}",
            f"{manifest['rows']:,}",
        )
        return _result(spec, "downloaded", url, key, storage, manifest)


def _classify_stream_error(exc: StreamFormatError, reader: VerifyingReader) -> Exception:
    """Permanent when the whole body arrived and is bad; transient when it may have been cut
    off on the way (shorter than its Content-Length, or no length announced and the gzip ends
    early: a connection closed early looks the same)."""
    announced = reader.expected_bytes
    if announced is not None and reader.bytes_read != announced:
        return DownloadError(f"{exc} (the body broke off; try again)")
    if announced is None and exc.reason.startswith("truncated gzip"):
        return DownloadError(f"{exc} (no Content-Length: the connection may have closed early)")
    return InvalidDump.from_stream_error(exc)


def _result(spec: ImdbFile, status: str, url: str, key: str, storage: Storage, m: dict) -> DownloadResult:
    return DownloadResult(
        file=spec.name,
        status=status,
        url=url,
        key=key,
        uri=storage.uri(key),
        etag=m.get("etag"),
        last_modified=m.get("last_modified"),
        bytes=m.get("bytes"),
        sha256=m.get("sha256"),
        rows=m.get("rows"),
    )
