"""Concurrent, resumable media downloads for an Apify dataset's items.

Each distinct URL is fetched once by a pool of ``workers`` threads (one ``requests`` session per
thread, so one kept-alive connection each; urllib3 retries with backoff for connection errors,
timeouts, 429 and 5xx, as in :func:`dataset_ops.httpclient.make_session`), streamed to
``<name>.part`` and renamed when it is complete, so a file under its final name is always whole.
A rerun finds those files and fetches only what is missing. Checked per file: the HTTP status,
the ``Content-Type`` (an image must be ``image/*``, a video ``video/*`` or
``application/octet-stream``), the size against ``max_bytes`` (from ``Content-Length`` before
reading and while streaming), and the announced length against the bytes received. A failed file
is recorded with its reason and never stops the others.

Per request the work is kept small, as all threads share one GIL (``benchmarks/README.md``, media
section): ``requests`` is imported with this module, not by the first download; media are asked
for with ``Accept-Encoding: identity`` (the bytes counted are the bytes announced, nothing to
decompress); and when the environment holds no proxies and no netrc file, the sessions do not
scan it again for every request (``trust_env`` off, with a ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``
applied as the session's ``verify`` instead: the same outcome).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from dataset_ops.apify.media import MediaRef
from dataset_ops.httpclient import HttpSettings, make_session

MiB = 1 << 20
#: Largest media file accepted (bytes).
DEFAULT_MAX_BYTES = 512 * MiB
_CHUNK = 256 << 10


@dataclass
class MediaResult:
    """What happened to one media file.

    :param status: ``downloaded``, ``present`` (already there from an earlier run) or ``failed``.
    :param bytes: size in bytes (0 when failed). :param sha256: hex digest (None when failed).
    :param error: why it failed.
    """

    name: str
    url: str
    kind: str
    ad_id: str
    status: str
    bytes: int = 0
    sha256: str | None = None
    content_type: str | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a local file (1 MiB reads)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _environment_needed() -> bool:
    """True when ``requests``' ``trust_env`` would find proxies (variables or system settings) or a
    netrc file (``NETRC``, ``~/.netrc``, ``~/_netrc``) to apply per request. A CA bundle variable
    (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) needs no per-request look: see :func:`_ca_bundle`."""
    if requests.utils.getproxies() or "NETRC" in os.environ:
        return True
    return any(os.path.exists(os.path.expanduser(f"~/{name}")) for name in requests.utils.NETRC_FILES)


def _ca_bundle() -> str | None:
    """The CA bundle ``trust_env`` would verify with (``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def _type_ok(kind: str, content_type: str) -> bool:
    main = content_type.split(";", 1)[0].strip().lower()
    if kind == "image":
        return main.startswith("image/")
    return main.startswith("video/") or main == "application/octet-stream"


class MediaDownloader:
    """Download :class:`MediaRef` files into ``folder`` (see the module docstring).

    :param workers: threads (concurrent downloads). :param max_bytes: size cap per file.
    :param connect_timeout, read_timeout: seconds. :param retries: tries after the first.
    """

    def __init__(
        self,
        folder: Path,
        *,
        workers: int = 16,
        max_bytes: int = DEFAULT_MAX_BYTES,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        retries: int = 3,
        backoff_factor: float = 0.5,
    ):
        self.folder = Path(folder)
        self.workers = workers
        self.max_bytes = max_bytes
        self.settings = HttpSettings(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries=retries,
            backoff_factor=backoff_factor,
            backoff_jitter=backoff_factor,
        )
        self._timeout = (connect_timeout, read_timeout)
        # the environment, read once: per request it costs ~0.15 ms of GIL-held CPU (see module doc)
        self._trust_env, self._ca_bundle = _environment_needed(), _ca_bundle()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[requests.Session] = []

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = make_session("http://unused/", self.settings)
            session.headers.update({"Accept": "*/*", "Accept-Encoding": "identity"})
            if not self._trust_env:
                session.trust_env = False
                if self._ca_bundle:
                    session.verify = self._ca_bundle  # what trust_env would have applied
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close the threads' sessions (their kept-alive connections); :meth:`run` does it at the end."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
            self._local = threading.local()
        for session in sessions:
            session.close()

    def run(self, refs: Iterable[MediaRef]) -> list[MediaResult]:
        """Fetch every distinct URL of ``refs``; results in the order of first appearance."""
        self.folder.mkdir(parents=True, exist_ok=True)
        unique: dict[str, MediaRef] = {}
        for ref in refs:
            unique.setdefault(ref.url, ref)
        try:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="media") as pool:
                return list(pool.map(self.fetch, unique.values()))
        finally:
            self.close()

    def fetch(self, ref: MediaRef) -> MediaResult:
        """One file: present already, downloaded, or failed with a reason."""
        target = self.folder / ref.name
        result = MediaResult(ref.name, ref.url, ref.kind, ref.ad_id, "failed")
        if target.is_file():
            result.status, result.bytes, result.sha256 = (
                "present",
                target.stat().st_size,
                sha256_file(target),
            )
            return result
        part = target.with_name(target.name + ".part")
        try:
            with self._session().get(ref.url, stream=True, timeout=self._timeout) as response:
                if response.status_code != 200:
                    result.error = f"HTTP {response.status_code} {response.reason}"
                    return result
                content_type = response.headers.get("Content-Type", "")
                result.content_type = content_type
                if not _type_ok(ref.kind, content_type):
                    result.error = f"Content-Type {content_type!r} is not a {ref.kind}"
                    return result
                announced = response.headers.get("Content-Length")
                if announced is not None and int(announced) > self.max_bytes:
                    result.error = (
                        f"{int(announced):,} bytes announced, more than the cap of {self.max_bytes:,}"
                    )
                    return result
                digest, size = hashlib.sha256(), 0
                with open(part, "wb") as out:
                    for chunk in response.iter_content(_CHUNK):
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise ValueError(f"more than the cap of {self.max_bytes:,} bytes")
                        digest.update(chunk)
                        out.write(chunk)
                if announced is not None and size != int(announced):
                    raise ValueError(f"{size:,} bytes received of {int(announced):,} announced")
            os.replace(part, target)
            result.status, result.bytes, result.sha256 = "downloaded", size, digest.hexdigest()
        except (requests.RequestException, OSError, ValueError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            if part.exists():
                part.unlink()
        return result
