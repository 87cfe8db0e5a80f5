"""Verified publication: write under ``_tmp/``, check size and sha256, move into place."""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import IO

from dataset_ops.storage.base import TMP_PREFIX, HashingReader, Storage


class PublishError(RuntimeError):
    """Verification before publishing failed; nothing was published."""


def publish(
    storage: Storage,
    key: str,
    source: IO[bytes],
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
) -> dict:
    """Atomically publish ``source`` at ``key``: write under ``_tmp/``, verify, move into place.

    :param expected_size: bytes the source must have, if known.
    :param expected_sha256: hex sha256 the content must have, if known.
    :returns: ``{"key", "bytes", "sha256"}`` of the published object.
    :raises PublishError: the stored temporary object's size, or the content's size or sha256,
        differs from what was expected; the temporary object is removed and ``key`` untouched.
    """
    tmp = f"{TMP_PREFIX}/{uuid.uuid4().hex}/{key.rsplit('/', 1)[-1]}"
    reader = HashingReader(source)
    try:
        storage.write_stream(tmp, reader)
        digest = reader.sha256.hexdigest()
        stored = storage.stat(tmp).size
        problems = []
        if stored != reader.size:
            problems.append(f"stored {stored:,} bytes but sent {reader.size:,}")
        if expected_size is not None and reader.size != expected_size:
            problems.append(f"{reader.size:,} bytes, expected {expected_size:,}")
        if expected_sha256 is not None and digest != expected_sha256:
            problems.append(f"sha256 {digest}, expected {expected_sha256}")
        if problems:
            raise PublishError(f"{storage.uri(key)} not published: " + "; ".join(problems))
        storage.move(tmp, key)
    finally:
        if storage.exists(tmp):
            storage.delete(tmp)
    return {"key": key, "bytes": reader.size, "sha256": digest}


def publish_file(storage: Storage, key: str, path: str | os.PathLike) -> dict:
    """Atomically publish the local file ``path`` at ``key``, like :func:`publish`: its size and
    sha256 are taken from the file first, it is written under ``_tmp/`` with
    :meth:`Storage.write_file` (bounded memory for any size), the stored size is checked, then
    it is moved into place.

    :returns: ``{"key", "bytes", "sha256"}``.
    :raises PublishError: the stored size differs; the temporary object is removed.
    """
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    tmp = f"{TMP_PREFIX}/{uuid.uuid4().hex}/{key.rsplit('/', 1)[-1]}"
    try:
        storage.write_file(tmp, path)
        stored = storage.stat(tmp).size
        if stored != size:
            raise PublishError(f"{storage.uri(key)} not published: stored {stored:,} bytes of {size:,}")
        storage.move(tmp, key)
    finally:
        if storage.exists(tmp):
            storage.delete(tmp)
    return {"key": key, "bytes": size, "sha256": digest.hexdigest()}


def file_sha256(storage: Storage, key: str) -> str:
    """Hex sha256 of the object at ``key``, read as a stream (1 MiB blocks)."""
    digest = hashlib.sha256()
    with storage.open_read(key) as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
