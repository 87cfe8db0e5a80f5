"""Stored Apify datasets for inventory and retention tests: the layout of
``dataset_ops.apify.inventory`` written straight into a local storage root, with chosen ages,
with the current ``_manifest.json`` or (``legacy=True``) the ``manifest.json`` of earlier
versions, written literally in the shape those versions wrote."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path


def make_dataset(
    root: Path,
    run_id: str,
    *,
    days_ago: float,
    completeness: str | None = "complete",
    touched_days_ago: float | None = None,
    now: datetime | None = None,
    media: int = 2,
    legacy: bool = False,
) -> int:
    """Write a dataset created ``days_ago`` days before ``now``; returns its size in bytes.

    :param completeness: the manifest's value; None writes no manifest (age from file dates).
    :param touched_days_ago: date of every file and of ``last_modified`` (default: ``days_ago``).
    :param now: the reference time (default: now).
    :param legacy: write the earlier ``manifest.json`` instead of ``_manifest.json``.
    """
    now = now or datetime.now(UTC)
    folder = root / "datasets" / "facebook" / run_id
    (folder / "media").mkdir(parents=True, exist_ok=True)
    (folder / "reports").mkdir(exist_ok=True)
    created = now - timedelta(days=days_ago)
    touched = now - timedelta(days=days_ago if touched_days_ago is None else touched_days_ago)
    (folder / f"{run_id}.jsonl").write_text('{"adArchiveID": "1"}\n{"adArchiveID": "2"}\n')
    (folder / f"{run_id}.csv").write_text("adArchiveID\n1\n2\n")
    for i in range(media):
        (folder / "media" / f"1_{i:012d}.jpg").write_bytes(b"\xff\xd8" + bytes(100 * (i + 1)))
    (folder / "reports" / "download_report.json").write_text("{}")
    if completeness is not None and legacy:
        manifest = {
            "run_id": run_id,
            "completeness": completeness,
            "created_at": created.isoformat(timespec="seconds"),
            "last_modified": touched.isoformat(timespec="seconds"),
            "counts": {"items": 2, "csv_rows": 2, "jsonl_lines": 2},
        }
        (folder / "manifest.json").write_text(json.dumps(manifest))
    elif completeness is not None:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        manifest = {
            "format_version": 1,
            "dataset": f"datasets/facebook/{run_id}",
            "status": completeness,
            "created_at": created.isoformat(timespec="seconds"),
            "updated_at": touched.isoformat(timespec="seconds"),
            "producer": {"dag_id": "apify_dataset_download", "run_id": "manual__test"},
            "files": [
                {
                    "path": str(p.relative_to(folder)),
                    "bytes": p.stat().st_size,
                    "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                    "rows": 2 if p.suffix in (".csv", ".jsonl") else None,
                }
                for p in files
            ],
            "total_bytes": sum(p.stat().st_size for p in files),
            "problems": [],
            "extra": {"run_id": run_id, "counts": {"items": 2, "csv_rows": 2, "jsonl_lines": 2}},
        }
        (folder / "_manifest.json").write_text(json.dumps(manifest))
    stamp = touched.timestamp()
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (stamp, stamp))
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
