"""Retention of working folders: the scratch space of the inference workflow.

Each folder directly below ``work/inference/`` of the storage root whose newest file is older
than ``work_older_than_days`` days is removed (:func:`cleanup_work_folders`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dataset_ops.storage import Storage

log = logging.getLogger(__name__)

#: The inference workflow's working folders, below the storage root.
INFERENCE_WORK_PREFIX = "work/inference"


def cleanup_work_folders(
    storage: Storage,
    prefix: str = INFERENCE_WORK_PREFIX,
    *,
    older_than_days: float = 7,
    dry_run: bool = True,
    now: datetime | None = None,
) -> dict:
    """Delete each folder directly below ``prefix`` whose newest file is older than
    ``older_than_days`` days (one listing; a folder still being written has a recent file).

    :returns: ``{"prefix", "folders_checked", "folders_to_delete", "folders_deleted",
        "freed_space_bytes", "space_to_free_bytes", "deleted_folders": [{"folder", "days_old",
        "size_bytes", "files"}], "dry_run"}``.
    :raises ValueError: a negative age.
    """
    from dataset_ops.apify.inventory import prune_empty_folders

    if older_than_days < 0:
        raise ValueError(f"older_than_days ({older_than_days}) must be >= 0")
    now = now or datetime.now(UTC)
    base = prefix.strip("/") + "/"
    folders: dict[str, list] = {}
    for obj in storage.list_objects(base):
        name, sep, _ = obj.key[len(base) :].partition("/")
        if sep:  # files lying directly in the prefix are not working folders
            folders.setdefault(name, []).append(obj)
    cutoff = now - timedelta(days=older_than_days)
    doomed = []
    for name, objects in sorted(folders.items()):
        newest = max(o.last_modified for o in objects)
        if newest < cutoff:
            doomed.append(
                {
                    "folder": base + name,
                    "days_old": (now - newest).days,
                    "size_bytes": sum(o.size for o in objects),
                    "files": len(objects),
                    "_keys": [o.key for o in objects],
                }
            )
    if not dry_run:
        for entry in doomed:
            for key in entry["_keys"]:
                storage.delete(key)
            prune_empty_folders(storage, entry["folder"])
    for entry in doomed:
        del entry["_keys"]
    space = sum(e["size_bytes"] for e in doomed)
    log.info(
        "work folders under %s%s: %d checked, %d to delete (%d bytes)",
        base,
        " (dry run)" if dry_run else "",
        len(folders),
        len(doomed),
        space,
    )
    return {
        "prefix": base,
        "folders_checked": len(folders),
        "folders_to_delete": len(doomed),
        "folders_deleted": 0 if dry_run else len(doomed),
        "freed_space_bytes": 0 if dry_run else space,
        "space_to_free_bytes": space,
        "deleted_folders": doomed,
        "dry_run": dry_run,
    }
