"""List staged files by status: ``python -m dataset_ops.staging list [--state failed] [--root R]``.

Prints one line per file (name, state, size in bytes, records, last update, first error) or, with
``--json``, the status records as a JSON array. The root defaults to the Variable ``staging_root``
(``AIRFLOW_VAR_STAGING_ROOT``), else ``s3://training-data/``; S3 is reached through the Airflow
Connection ``aws_default``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from dataset_ops.staging.status import UploadState, list_statuses, quiet_airflow_logs, staging_root
from dataset_ops.storage import open_storage


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

    root = staging_root(args.root)
    try:
        statuses = list_statuses(open_storage(root), args.state)
    except Exception as exc:  # unreachable endpoint, missing bucket, bad credentials
        print(f"error: cannot read status records under {root}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump([asdict(s) for s in statuses], sys.stdout, indent=2)
        print()
        return 0
    if not statuses:
        print("no files" + (f" in state {args.state}" if args.state else ""))
    for s in statuses:
        size = f"{s.size:,}" if s.size is not None else "-"
        records = f"{s.records:,}" if s.records is not None else "-"
        print(
            f"{s.state:<10} {s.name:<40} {size:>15} B {records:>12} rec  {s.updated_at}"
            + (f"  {s.error_summary}" if s.error_summary else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
