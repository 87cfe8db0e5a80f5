"""The storage protocol (:class:`Storage`), what listing returns (:class:`ObjectInfo`) and JSON
objects (:func:`read_json`, :func:`write_json`)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator


#: Folder below the root for temporary objects of :func:`publish`.
TMP_PREFIX = "_tmp"


@dataclass(frozen=True)
class ObjectInfo:
    """What :meth:`Storage.stat` reports: size in bytes, last modification (UTC), S3 ETag."""

    key: str
    size: int
    last_modified: datetime
    etag: str | None = None


class Storage(Protocol):
    """Object storage operations every workflow uses."""

    def uri(self, key: str) -> str:
        """Full URI (``s3://...`` or an absolute path) of ``key``."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored at ``key``."""

    def stat(self, key: str) -> ObjectInfo:
        """Size, modification time and ETag. :raises FileNotFoundError: no such object."""

    def copy(self, src: str, dst: str) -> None:
        """Copy ``src`` to ``dst`` inside the storage (server-side on S3, any size).

        :raises FileNotFoundError: no object at ``src``.
        """

    def move(self, src: str, dst: str) -> None:
        """Move ``src`` to ``dst``: a rename locally, copy then delete on S3 (so an interruption
        leaves the object in both places, never in none)."""

    def abort_incomplete_writes(
        self, older_than_seconds: float, prefix: str = "", dry_run: bool = False
    ) -> list[str]:
        """Remove writes that never finished (S3 multipart uploads, local ``.partial`` files)
        started more than ``older_than_seconds`` ago; returns their keys (with ``dry_run``: the
        keys it would remove, removing nothing)."""

    def open_read(self, key: str) -> BinaryIO:
        """Open the object for streaming binary reads. :raises FileNotFoundError: no object."""

    def write_stream(self, key: str, source: IO[bytes]) -> int:
        """Stream ``source`` to ``key`` until EOF; all-or-nothing. Returns bytes written."""

    def write_file(self, key: str, path: str | os.PathLike) -> int:
        """Upload the local file ``path`` to ``key``; all-or-nothing. Returns bytes written.

        Unlike :meth:`write_stream` it can read the file again, so an S3 upload never holds a
        whole part in memory."""

    def delete(self, key: str) -> None:
        """Delete the object at ``key`` (no error if it is absent)."""

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys below ``prefix``, sorted."""

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object below ``prefix`` with its size and last modification, sorted by key (one
        listing, no request per object)."""

    def children(self, folder: str = "") -> set[str]:
        """Names of the files and sub-folders directly in ``folder`` (no deeper listing)."""

    def create(self, key: str, data: bytes) -> bool:
        """Write ``data`` at ``key`` only if nothing is there, atomically (of two concurrent
        callers exactly one wins); returns whether this call created it."""

    def copy_new(self, src: str, dst: str) -> bool:
        """Copy ``src`` to ``dst`` only if nothing is at ``dst``, atomically (of two concurrent
        callers exactly one wins, an existing object is never replaced); returns whether this
        call created ``dst``. :raises FileNotFoundError: no object at ``src``."""


def read_json(storage: Storage, key: str) -> dict | None:
    """The JSON object stored at ``key``, or None when there is none."""
    if not storage.exists(key):
        return None
    with storage.open_read(key) as fh:
        return json.load(fh)


def write_json(storage: Storage, key: str, obj: dict) -> None:
    """Store ``obj`` as indented UTF-8 JSON at ``key`` (all-or-nothing)."""
    import io

    storage.write_stream(key, io.BytesIO(json.dumps(obj, indent=2, sort_keys=True).encode()))


class HashingReader:
    """A read-through wrapper: passes ``source``'s bytes on while counting them (``size``,
    bytes) and computing their sha256 (``sha256``, a ``hashlib`` object)."""

    def __init__(self, source: IO[bytes]):
        self._source, self.size, self.sha256 = source, 0, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.size += len(data)
        self.sha256.update(data)
        return data

    def readable(self) -> bool:
        return True
