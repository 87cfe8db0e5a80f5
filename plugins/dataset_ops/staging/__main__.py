"""List staged files by status: ``python -m dataset_ops.staging list [--state failed] [--root R]``.

Prints one line per kept file: state, upload name, version (``v1`` is the bare name, ``v2`` is
``<stem>.v2<ext>``), the file's key, size in bytes, records, time, and the first error (or that
the latest upload of the name was a duplicate), plus one line for a name still uploading or
validating. With ``--json``: the status records (each with its ``versions``) as a JSON array.
The root defaults to the Variable ``staging_root`` (``AIRFLOW_VAR_STAGING_ROOT``), else
``s3://training-data/``; a local folder or ``file://`` root works the same; S3 is reached
through the Airflow Connection ``aws_default``, which must exist (else exit code 1 naming it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from dataset_ops.staging.status import (
    UploadState,
    UploadStatus,
    list_statuses,
    quiet_airflow_logs,
)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    quiet_airflow_logs()
    parser = argparse.ArgumentParser(
        prog="python -m dataset_ops.staging", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="list status records")
    ls.add_argument("--state", choices=[s.value for s in UploadState], help="only files in this state")
    ls.add_argument("--root", help="staging root (s3://bucket/prefix/ or a folder)")
    ls.add_argument("--json", action="store_true", help="print JSON records")
    args = parser.parse_args(argv)

    from dataset_ops import settings

    root = settings.staging_root(args.root)
    try:
        statuses = list_statuses(root.open())  # kept versions have their own state
    except Exception as exc:  # unreachable endpoint, missing bucket, bad credentials
        print(f"error: cannot read status records under {root}: {exc}", file=sys.stderr)
        return 1
    if args.json:  # records in that state, or keeping a file in that state
        chosen = [
            s
            for s in statuses
            if not args.state or args.state in {s.state, *(v.get("state") for v in s.versions)}
        ]
        json.dump([asdict(s) for s in chosen], sys.stdout, indent=2)
        print()
        return 0
    rows = [row for s in statuses for row in rows_of(s) if not args.state or row["state"] == args.state]
    if not rows:
        print("no files" + (f" in state {args.state}" if args.state else ""))
    for row in rows:
        size = f"{row['size']:,}" if row["size"] is not None else "-"
        records = f"{row['records']:,}" if row["records"] is not None else "-"
        version = f"v{row['version']}" if row["version"] else "-"
        print(
            f"{row['state']:<10} {row['name']:<40} {version:>4} {row['key'] or '-':<48} {size:>15} B "
            f"{records:>12} rec  {row['at']}" + (f"  {row['note']}" if row["note"] else "")
        )
    return 0


def rows_of(status: UploadStatus) -> list[dict]:
    """The listing's lines for one status record: one per kept version (``state``, ``name``,
    ``version``, ``key``, ``size`` in bytes, ``records``, ``at``, ``note``), and one for the
    record itself when its file is not among them (uploading, uploaded, validating, or a record
    written before versions existed)."""
    rows = []
    for v in status.versions:
        note = None
        if v.get("key") == status.key:
            if status.duplicate_of:
                note = f"latest upload ({status.updated_at}) was a duplicate of this file: skipped"
            elif status.state == "failed":
                note = status.error_summary
        rows.append(
            {
                "state": v.get("state"),
                "name": status.name,
                "version": v.get("version"),
                "key": v.get("key"),
                "size": v.get("size"),
                "records": v.get("records"),
                "at": v.get("at"),
                "note": note,
            }
        )
    if not any(v.get("key") == status.key for v in status.versions) or status.state not in (
        "fresh",
        "failed",
    ):
        rows.append(
            {
                "state": status.state,
                "name": status.name,
                "version": status.version if status.state in ("fresh", "failed") else None,
                "key": status.key if status.state in ("fresh", "failed") else None,
                "size": status.size,
                "records": status.records,
                "at": status.updated_at,
                "note": status.error_summary,
            }
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
