"""The dataset manifest (``manifest.json``) written beside a dataset's files."""

from __future__ import annotations

from datetime import UTC, datetime

from dataset_ops.storage.base import Storage, write_json


def write_manifest(storage: Storage, prefix: str, files: list[dict], producer: dict) -> dict:
    """Write ``<prefix>/manifest.json`` describing a dataset and return it.

    :param files: one dict per file: ``key`` (below the storage root), ``bytes``, ``sha256`` and,
        where known, ``rows``.
    :param producer: who made it, e.g. ``{"dag_id": ..., "run_id": ...}``.
    :returns: ``{"files": [...], "total_bytes", "created_at" (UTC ISO 8601), "producer"}``.
    """
    manifest = {
        "files": sorted(files, key=lambda f: f["key"]),
        "total_bytes": sum(f["bytes"] for f in files),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "producer": producer,
    }
    write_json(storage, f"{prefix.rstrip('/')}/manifest.json", manifest)
    return manifest
