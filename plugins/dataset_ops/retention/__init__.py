"""Retention: what the ``dataset_retention`` DAG removes, each part with its own setting.

* Apify datasets (:func:`dataset_ops.apify.inventory.cleanup_datasets`): older than ``days_old``
  days, always keeping the ``keep_recent`` newest and any download in progress.
* Staged uploads (:func:`dataset_ops.staging.tasks.cleanup`): quarantined files older than
  ``failed_older_than_hours`` and incomplete multipart uploads older than
  ``multipart_older_than_hours``.
* Working folders (:func:`cleanup_work_folders`): each folder directly below
  ``work/inference/`` of the storage root (the inference workflow's scratch space) whose newest
  file is older than ``work_older_than_days`` days.

Every part honours ``dry_run`` (report only) and reports sizes in bytes.
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


def effective_dry_run(requested: bool, run_type) -> bool:
    """Scheduled runs delete (they run with the Params' defaults, whose ``dry_run`` is true for
    the people triggering by hand); every other run type does what ``dry_run`` says.

    :param run_type: the DAG run's ``run_type`` (the Task SDK's ``DagRunType`` str enum, whose
        ``str()`` is ``"DagRunType.SCHEDULED"``, or its value ``"scheduled"``).
    """
    return False if getattr(run_type, "value", run_type) == "scheduled" else bool(requested)
