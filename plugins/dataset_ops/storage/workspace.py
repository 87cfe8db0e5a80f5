"""A local working folder for a folder of the storage (see :class:`FolderWorkspace`)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from dataset_ops.storage import LocalStorage

if TYPE_CHECKING:
    from dataset_ops.storage import Storage


class FolderWorkspace:
    """Local files of the storage folder ``prefix``: that folder itself on a local storage root,
    else a temporary local folder whose files :meth:`publish` uploads (so any worker can run any
    task, nothing shared on local disk). Use as a context manager; the temporary folder goes at
    exit.

    :param storage: where the folder lives. :param prefix: the folder's key prefix (no ``/`` at
        the end), e.g. ``datasets/facebook/HG7ML7M8z78YcAPEB``.
    """

    def __init__(self, storage: Storage, prefix: str):
        self.storage = storage
        self.prefix = prefix.rstrip("/")
        self.in_place = isinstance(storage, LocalStorage)
        if self.in_place:
            self.path = Path(storage.uri(self.prefix))
            self._tmp = None
        else:
            self._tmp = tempfile.mkdtemp(prefix="dataset-ops-work-")
            self.path = Path(self._tmp)
        self.path.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> FolderWorkspace:
        return self

    def __exit__(self, *exc) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def key(self, rel: str) -> str:
        """The storage key of ``rel`` (a path relative to the folder)."""
        return f"{self.prefix}/{rel}"

    def local(self, rel: str) -> Path:
        """The local path of ``rel``, fetched from the storage first when it is only there.

        :raises FileNotFoundError: in neither place."""
        path = self.path / rel
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with self.storage.open_read(self.key(rel)) as src, open(path, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        return path

    def publish(self, rel: str) -> None:
        """Make ``rel`` (a finished local file) visible in the storage (upload when remote)."""
        if not self.in_place:
            self.storage.write_file(self.key(rel), self.path / rel)

    def stored(self, folder: str) -> dict[str, int]:
        """``{name: bytes}`` of the files in the storage under ``folder/``."""
        cut = len(self.prefix) + len(folder) + 2
        return {
            o.key[cut:]: o.size
            for o in self.storage.list_objects(self.key(folder) + "/")
            if not o.key.endswith((".part", ".partial"))
        }
