"""List staged files by status: ``python -m dataset_ops.staging list [--state failed] [--root R]``.

Prints one line per kept file: state, upload name, version (``v1`` is the bare name, ``v2`` is
``<stem>.v2<ext>``), the file's key, size in bytes, records, time, and the first error (or that
the latest upload of the name was a duplicate), plus one line for a name still uploading or
validating. Files in ``fresh/`` are read from ``fresh/_manifest.json`` (size and records from
its entries; a file the status records name but the manifest does not list says so, and a
listed file without a status record gets its own line). With ``--json``: the status records
(each with its ``versions``) as a JSON array.

``python -m dataset_ops.staging verify [--checksums] [--root R]`` checks ``fresh/`` against its
manifest (:func:`dataset_ops.storage.manifest.verify`: every listed file present with its size;
``--checksums`` re-reads each sha256) and names files in ``fresh/`` the manifest does not list;
exit code 0 when clean, 2 with problems (one line each), 1 when the area cannot be read. A
``fresh/`` written before the manifest existed is checked against the one its status records
give (:func:`dataset_ops.staging.tasks.legacy_fresh_manifest`).

The root defaults to the Variable ``staging_root`` (``AIRFLOW_VAR_STAGING_ROOT``), else
``s3://training-data/``; a local folder or ``file://`` root works the same; S3 is reached
through the Airflow Connection ``aws_default``, which must exist (else exit code 1 naming it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from dataset_ops.staging.status import (
    UploadState,
    UploadStatus,
    list_statuses,
    quiet_airflow_logs,
)

if TYPE_CHECKING:
    from dataset_ops.storage import Manifest


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
    vf = sub.add_parser("verify", help="check fresh/ against fresh/_manifest.json")
    vf.add_argument("--root", help="staging root (s3://bucket/prefix/ or a folder)")
    vf.add_argument("--checksums", action="store_true", help="also re-read every file's sha256")
    args = parser.parse_args(argv)

    from dataset_ops import settings
    from dataset_ops.staging.tasks import read_fresh_manifest

    root = settings.staging_root(args.root)
    if args.command == "verify":
        return verify_fresh(root, checksums=args.checksums)
    try:
        storage = root.open()
        statuses = list_statuses(storage)  # kept versions have their own state
        manifest = read_fresh_manifest(storage)
    except Exception as exc:  # unreachable endpoint, missing bucket, bad credentials, bad manifest
        print(f"error: cannot read status records and fresh/ manifest under {root}: {exc}", file=sys.stderr)
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
    rows = with_manifest([row for s in statuses for row in rows_of(s)], manifest)
    rows = [row for row in rows if not args.state or row["state"] == args.state]
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


def with_manifest(rows: list[dict], manifest: Manifest | None) -> list[dict]:
    """``rows`` (of :func:`rows_of`) with the ``fresh`` ones read from ``manifest`` (the one of
    ``fresh/``): size and records from the file's entry, or a note when it is not listed; plus
    one row per listed file that no row names (name, version from the entry's ``extra``)."""
    if manifest is None:
        return rows
    from dataset_ops.staging.status import FRESH
    from dataset_ops.staging.tasks import FRESH_MANIFEST, fresh_path

    seen = set()
    for row in rows:
        if row["state"] != FRESH or not row["key"]:
            continue
        seen.add(row["key"])
        entry = manifest.file(fresh_path(row["key"]))
        if entry is None:
            missing = f"not listed in {FRESH_MANIFEST}"
            row["note"] = f"{row['note']}; {missing}" if row["note"] else missing
        else:
            row["size"], row["records"] = entry.bytes, entry.rows
    files = manifest.extra.get("files") or {}
    for entry in manifest.files:
        key = f"{FRESH}/{entry.path}"
        if key in seen:
            continue
        info = files.get(entry.path) or {}
        rows.append(
            {
                "state": FRESH,
                "name": info.get("name") or entry.path,
                "version": info.get("version"),
                "key": key,
                "size": entry.bytes,
                "records": entry.rows,
                "at": info.get("listed_at") or manifest.updated_at,
                "note": "listed in the manifest, no status record",
            }
        )
    return rows


def verify_fresh(root, checksums: bool = False) -> int:
    """The ``verify`` command on the staging root ``root`` (a ``settings`` root with ``open()``):
    prints the manifest's summary and one line per problem; returns the exit code (0 clean,
    2 problems, 1 unreadable)."""
    from dataset_ops.staging.status import FRESH
    from dataset_ops.staging.tasks import FRESH_MANIFEST, read_fresh_manifest
    from dataset_ops.storage import MANIFEST_NAME
    from dataset_ops.storage.manifest import verify

    try:
        storage = root.open()
        manifest = read_fresh_manifest(storage)
        present = {info.key for info in storage.list_objects(FRESH)}
        if manifest is None:
            problems = []
            listed = set()
        else:
            problems = verify(storage, manifest, checksums=checksums)
            listed = {f"{FRESH}/{f.path}" for f in manifest.files}
    except Exception as exc:  # unreachable endpoint, missing bucket, bad credentials, bad manifest
        print(f"error: cannot check {FRESH}/ under {root}: {exc}", file=sys.stderr)
        return 1
    own = {FRESH_MANIFEST, f"{FRESH}/{MANIFEST_NAME}.lock"}
    problems += [
        f"{key.removeprefix(FRESH + '/')}: in {FRESH}/ but not listed in the manifest"
        for key in sorted(present - listed - own)
    ]
    if manifest is None:
        print(f"{FRESH_MANIFEST}: none (no promoted file)")
    else:
        kind = " (legacy: built from the status records)" if manifest.legacy else ""
        print(
            f"{FRESH_MANIFEST}{kind}: {len(manifest.files)} files, {manifest.total_bytes:,} B, "
            f"{manifest.status}, updated {manifest.updated_at or manifest.created_at}"
        )
    for problem in problems:
        print(f"problem: {problem}")
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
