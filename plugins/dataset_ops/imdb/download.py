"""Download IMDb dumps into object storage with conditional HTTP GETs.

Each file is fetched from ``<base_url><name>.tsv.gz`` (https://datasets.imdbws.com/ by
default; https://developer.imdb.com/non-commercial-datasets/ documents the files). The ETag and
Last-Modified of the stored copy are sent back as ``If-None-Match`` / ``If-Modified-Since``
(RFC 9110, section 13.1): a ``304 Not Modified``, or a 200 with the same ETag, means unchanged
and nothing is transferred or written. A changed file streams into storage through
:class:`~dataset_ops.streams.VerifyingReader`, which checks gzip completeness and the header
line while the bytes pass; only a complete, valid file replaces the stored one.

Layout: every dump at ``imdb/raw/<name>.tsv.gz`` (the key the Assets and their events name), and
one manifest for the folder, ``imdb/raw/_manifest.json`` (the suite's manifest type,
:mod:`dataset_ops.storage.manifest`), written after each new dump: one file entry per dump
(``<name>.tsv.gz``: bytes, sha256, rows) and, in ``extra["dumps"][<name>]``, what the next
conditional GET needs (URL, ETag, Last-Modified, decompressed bytes, the producing DAG run).
Status ``complete`` once all seven dumps are there, ``partial`` (problems name the missing ones)
before. The mapped download tasks update it in turn
(:func:`~dataset_ops.storage.manifest.update_manifest`). Earlier versions wrote one JSON per dump,
``imdb/raw/<name>.tsv.gz.json``; :func:`legacy_manifest` reads those, and each is removed when its
dump is next written.

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
from dataset_ops.imdb.datasets import IMDB_FILE_NAMES, ImdbFile, InvalidDump, imdb_file
from dataset_ops.progress import ProgressLog
from dataset_ops.storage import Storage, read_json
from dataset_ops.storage.manifest import Manifest, ManifestFile, read_manifest, update_manifest, utc_now
from dataset_ops.streams import StreamFormatError, VerifyingReader

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


def legacy_manifest_key(spec: ImdbFile) -> str:
    """Storage key of the per-dump JSON of earlier versions, ``imdb/raw/<name>.tsv.gz.json``."""
    return f"{raw_key(spec)}.json"


def legacy_manifest(storage: Storage, prefix: str = RAW_PREFIX) -> Manifest | None:
    """The per-dump JSONs of earlier versions as one :class:`Manifest` (``legacy=True``) of
    ``imdb/raw``; None when there is none.

    The old file, beside each dump (bytes; ``dag_id``/``run_id`` when a DAG wrote it)::

        {"file", "url", "etag", "last_modified", "bytes", "sha256", "rows",
         "decompressed_bytes", "dag_id", "run_id"}

    Only dumps whose data object exists are listed (``bytes`` from the stored object when the
    JSON lacks it). :raises ValueError: a JSON that is not JSON.
    """
    manifest = Manifest(prefix.strip("/"), legacy=True)
    stamps = []
    for name in IMDB_FILE_NAMES:
        spec = imdb_file(name)
        old = read_json(storage, legacy_manifest_key(spec))
        if not old or not old.get("sha256") or not storage.exists(raw_key(spec)):
            continue
        stored = storage.stat(raw_key(spec))
        size = old.get("bytes")
        manifest.add(
            ManifestFile(
                spec.file_name, int(size if size is not None else stored.size), old["sha256"], old.get("rows")
            )
        )
        manifest.extra.setdefault("dumps", {})[spec.name] = _dump_extra(
            old, {k: old[k] for k in ("dag_id", "run_id") if k in old}
        )
        stamps.append(stored.last_modified.isoformat(timespec="seconds"))
    if not manifest.files:
        return None
    manifest.created_at = min(stamps)
    manifest.updated_at = max(stamps)
    _set_status(manifest)
    return manifest


def read_raw_manifest(storage: Storage) -> Manifest | None:
    """The manifest of ``imdb/raw`` (``_manifest.json``, else the legacy per-dump JSONs through
    :func:`legacy_manifest`); None when nothing was downloaded.

    :raises dataset_ops.storage.ManifestError: ``_manifest.json`` is unreadable."""
    return read_manifest(storage, RAW_PREFIX, legacy=legacy_manifest)


def stored_dump(manifest: Manifest | None, spec: ImdbFile) -> dict | None:
    """What the manifest records of one dump: ``{"file", "url", "etag", "last_modified",
    "bytes", "sha256", "rows", "decompressed_bytes"}`` (the legacy per-dump shape), or None."""
    entry = manifest.file(spec.file_name) if manifest else None
    if entry is None:
        return None
    dump = (manifest.extra.get("dumps") or {}).get(spec.name) or {}
    return {
        "file": spec.name,
        "url": dump.get("url"),
        "etag": dump.get("etag"),
        "last_modified": dump.get("last_modified"),
        "bytes": entry.bytes,
        "sha256": entry.sha256,
        "rows": entry.rows,
        "decompressed_bytes": dump.get("decompressed_bytes"),
    }


def _dump_extra(d: dict, producer: dict) -> dict:
    return {
        "url": d.get("url"),
        "etag": d.get("etag"),
        "last_modified": d.get("last_modified"),
        "decompressed_bytes": d.get("decompressed_bytes"),
        "producer": producer,
    }


def _set_status(manifest: Manifest) -> None:
    missing = [n for n in IMDB_FILE_NAMES if manifest.file(imdb_file(n).file_name) is None]
    manifest.status = "partial" if missing else "complete"
    manifest.problems = [f"{n}: not downloaded yet" for n in missing]


def http_session(retries: int = 5, backoff_factor: float = 2.0) -> requests.Session:
    """The suite's session (:func:`dataset_ops.httpclient.new_session`) with the IMDb download's
    policy: connection errors, read timeouts, 429 and 5xx retried with exponential backoff
    (no jitter), ``Retry-After`` honoured; ``User-Agent: dataset-ops imdb_download``.

    :param retries: attempts after the first.
    :param backoff_factor: seconds; waits are ``backoff_factor * 2 ** (n - 1)`` (or Retry-After).
    """
    from dataset_ops.httpclient import HttpSettings, new_session

    policy = HttpSettings(retries=retries, backoff_factor=backoff_factor, backoff_jitter=0.0)
    return new_session(policy, headers={"User-Agent": "dataset-ops imdb_download"})


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
    :param producer: the DAG run writing it, ``{"dag_id", "run_id"}`` (the manifest's producer).
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
    previous = stored_dump(read_raw_manifest(storage), spec) if storage.exists(key) else None
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
        }
        record_dump(storage, spec, manifest, producer or {})
        log.info(
            "%s: stored %s (%s bytes, %s rows)",
            url,
            storage.uri(key),
            f"{written:,}",
            f"{manifest['rows']:,}",
        )
        return _result(spec, "downloaded", url, key, storage, manifest)


def record_dump(storage: Storage, spec: ImdbFile, dump: dict, producer: dict) -> Manifest:
    """List a dump just written in ``imdb/raw/_manifest.json`` (under the manifest's lock, as
    the mapped downloads run side by side), then remove its legacy JSON.

    :param dump: ``{"url", "etag", "last_modified", "bytes", "sha256", "rows",
        "decompressed_bytes"}``. :param producer: ``{"dag_id", "run_id"}``.
    :returns: the manifest written.
    """

    def change(current: Manifest | None) -> Manifest:
        manifest = current or Manifest(RAW_PREFIX)
        manifest.legacy = False
        manifest.dataset = RAW_PREFIX
        manifest.producer = dict(producer)
        manifest.created_at = manifest.created_at or utc_now()
        manifest.add(ManifestFile(spec.file_name, dump["bytes"], dump["sha256"], dump["rows"]))
        manifest.extra.setdefault("dumps", {})[spec.name] = _dump_extra(dump, producer) | {
            "downloaded_at": utc_now()
        }
        _set_status(manifest)
        return manifest

    written = update_manifest(storage, RAW_PREFIX, change, legacy=legacy_manifest)
    if storage.exists(legacy_manifest_key(spec)):
        storage.delete(legacy_manifest_key(spec))
    return written


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
