"""Concurrent, resumable media downloads for an Apify dataset's items.

Each distinct URL is fetched once by a pool of ``workers`` threads (one ``requests`` session per
thread, urllib3 retries with backoff for connection errors, timeouts, 429 and 5xx, as in
:func:`dataset_ops.httpclient.make_session`), streamed to ``<name>.part`` and renamed when it
is complete, so a file under its final name is always whole. A rerun finds those files and
fetches only what is missing. Checked per file: the HTTP status, the ``Content-Type`` (an image
must be ``image/*``, a video ``video/*`` or ``application/octet-stream``), the size against
``max_bytes`` (from ``Content-Length`` before reading and while streaming), and the announced
length against the bytes received. A failed file is recorded with its reason and never stops the
others.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from dataset_ops.apify.media import MediaRef

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


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


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
        from dataset_ops.httpclient import HttpSettings

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
        self._local = threading.local()

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            from dataset_ops.httpclient import make_session

            session = self._local.session = make_session("http://unused/", self.settings)
        return session

    def run(self, refs: Iterable[MediaRef]) -> list[MediaResult]:
        """Fetch every distinct URL of ``refs``; results in the order of first appearance."""
        self.folder.mkdir(parents=True, exist_ok=True)
        unique: dict[str, MediaRef] = {}
        for ref in refs:
            unique.setdefault(ref.url, ref)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="media") as pool:
            return list(pool.map(self.fetch, unique.values()))

    def fetch(self, ref: MediaRef) -> MediaResult:
        """One file: present already, downloaded, or failed with a reason."""
        import requests

        target = self.folder / ref.name
        result = MediaResult(ref.name, ref.url, ref.kind, ref.ad_id, "failed")
        if target.is_file():
            result.status, result.bytes, result.sha256 = (
                "present",
                target.stat().st_size,
                _sha256_file(target),
            )
            return result
        part = target.with_name(target.name + ".part")
        try:
            with self._session().get(
                ref.url, stream=True, timeout=(self.settings.connect_timeout, self.settings.read_timeout)
            ) as response:
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
