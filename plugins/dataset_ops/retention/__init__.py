"""Retention: what the ``dataset_retention`` DAG removes, each part with its own setting.

* Apify datasets (:func:`dataset_ops.apify.inventory.cleanup_datasets`): older than ``days_old``
  days, always keeping the ``keep_recent`` newest and any download in progress (a dataset's age
  and state come from its manifest, ``_manifest.json`` or the legacy ``manifest.json``; a
  folder without one by its files' dates).
* Staged uploads (:func:`dataset_ops.staging.tasks.cleanup`): quarantined files older than
  ``failed_older_than_hours`` and incomplete multipart uploads older than
  ``multipart_older_than_hours``.
* Working folders (:func:`.work_folders.cleanup_work_folders`): each folder directly below
  ``work/inference/`` of the storage root (the inference workflow's scratch space) whose newest
  file is older than ``work_older_than_days`` days.

Every part honours ``dry_run`` (report only; :func:`.tasks.effective_dry_run` says when a run
deletes) and reports sizes in bytes. Modules: :mod:`.work_folders`, :mod:`.tasks`.
"""

from __future__ import annotations

from dataset_ops.retention.tasks import effective_dry_run
from dataset_ops.retention.work_folders import INFERENCE_WORK_PREFIX, cleanup_work_folders

__all__ = ["INFERENCE_WORK_PREFIX", "cleanup_work_folders", "effective_dry_run"]
