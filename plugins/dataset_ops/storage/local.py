"""The local-folder backend: objects as files below a folder, written to a temporary file then
renamed (``os.replace``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

from dataset_ops.storage.base import ObjectInfo


class LocalStorage:
    """Objects as files below a local folder; writes go to a temporary file then ``os.replace``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents and path != self.root:
            raise ValueError(f"key {key!r} escapes the storage root {self.root}")
        return path

    def path(self, key: str) -> Path:
        """The file of ``key`` (resolved). :raises ValueError: the key escapes the root."""
        return self._path(key)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def stat(self, key: str) -> ObjectInfo:
        st = self._path(key).stat()
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def copy(self, src: str, dst: str) -> None:
        with open(self._path(src), "rb") as fh:
            self.write_stream(dst, fh)

    def move(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        if not source.is_file():
            raise FileNotFoundError(str(source))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)

    def abort_incomplete_writes(
        self, older_than_seconds: float, prefix: str = "", dry_run: bool = False
    ) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        cutoff = time.time() - older_than_seconds
        removed = []
        for path in base.rglob("*.partial") if base.exists() else ():
            if path.stat().st_mtime < cutoff:
                if not dry_run:
                    path.unlink(missing_ok=True)
                removed.append(str(path.relative_to(self.root)))
        return sorted(removed)

    def open_read(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def write_stream(self, key: str, source: IO[bytes]) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
                written = out.tell()
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return written

    def write_file(self, key: str, path: str | os.PathLike) -> int:
        with open(path, "rb") as fh:
            return self.write_stream(key, fh)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return iter(())
        return iter(
            sorted(
                str(p.relative_to(self.root))
                for p in base.rglob("*")
                if p.is_file() and not p.name.endswith(".partial")
            )
        )

    def create(self, key: str, data: bytes) -> bool:
        """A temporary file hard-linked to the key: ``link`` fails when the key exists."""
        return _link_new(self._path(key), lambda out: out.write(data))

    def copy_new(self, src: str, dst: str) -> bool:
        """Copy into a temporary file beside ``dst``, then ``link`` it to ``dst`` (which fails,
        replacing nothing, when ``dst`` exists)."""
        source, path = self._path(src), self._path(dst)
        if not source.is_file():
            raise FileNotFoundError(str(source))

        def write(out: IO[bytes]) -> None:
            with open(source, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())

        return _link_new(path, write)

    def children(self, folder: str = "") -> set[str]:
        base = self._path(folder) if folder else self.root
        return {p.name for p in base.iterdir() if not p.name.endswith(".partial")} if base.is_dir() else set()

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for key in self.list(prefix):
            try:
                st = self._path(key).stat()
            except FileNotFoundError:  # removed while listing
                continue
            yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))


def _link_new(path: Path, write: Callable[[IO[bytes]], object]) -> bool:
    """Create ``path`` only if it does not exist: ``write`` fills a temporary file beside it, which
    is then hard-linked to ``path`` (``link`` fails, replacing nothing, when ``path`` exists).

    :returns: True if this call created ``path``, False if it existed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)
