"""The command line: ``python -m dataset_ops.staging.upload`` (and its documented older name
``python -m dataset_ops.upload``, which runs the same :func:`main`). Usage, exit codes and
behaviour are in :mod:`dataset_ops.staging.upload`."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import asdict

from dataset_ops.staging.status import UPLOADS, quiet_airflow_logs
from dataset_ops.staging.upload.api import upload_file
from dataset_ops.staging.upload.errors import NameTaken, UploadError, UploadInterrupted
from dataset_ops.staging.upload.plan import DEFAULT_PARALLEL
from dataset_ops.storage.s3 import AWS_CONN_ID

MiB = 1 << 20
#: The module ``python -m`` runs; the resume hint repeats the one the user ran.
MODULE = "dataset_ops.staging.upload"


def parser(module: str = MODULE) -> argparse.ArgumentParser:
    """The argument parser (``prog`` is ``python -m <module>``)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}",
        description="Upload a file to the staging area's uploads/ (parallel, resumable multipart).",
    )
    parser.add_argument("file", help="local file to upload")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--to",
        dest="dest",
        default=None,
        help="destination prefix: s3://bucket/prefix/uploads/, file:///folder/uploads/ or a local "
        "folder (default: uploads/ under the staging root)",
    )
    where.add_argument(
        "--root",
        default=None,
        help="staging root (s3://bucket/prefix/, file:///folder or a local folder); the file goes "
        "to its uploads/ (default: the Variable staging_root, AIRFLOW_VAR_STAGING_ROOT, else "
        "s3://training-data/)",
    )
    parser.add_argument("--name", default=None, help="key below the destination (default: file's base name)")
    parser.add_argument("--data-type", default=None, help="validation rule set (include/validation/<T>.yaml)")
    parser.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL, help="parts in flight (default 4)")
    parser.add_argument("--aws-conn-id", default=AWS_CONN_ID, help="Airflow Connection (default aws_default)")
    parser.add_argument(
        "--part-size-mib",
        type=int,
        default=None,
        help="part size in MiB (5..5120) instead of the size-based choice (tests, tuning)",
    )
    return parser


def main(argv: list[str] | None = None, *, module: str = MODULE) -> int:
    """Command-line entry point; returns the exit code (0 uploaded or already there, 1 failed
    (resumable), 2 bad input, 3 the name is taken in uploads/ by a different file not validated
    yet, 130 Ctrl-C). The final status record is printed as JSON on the last line of stdout;
    messages and progress go to stderr.

    :param argv: arguments (default ``sys.argv[1:]``).
    :param module: the module name shown in the usage and in the resume command.
    """
    quiet_airflow_logs()
    args = parser(module).parse_args(argv)
    if args.root:
        args.dest = args.root.rstrip("/") + f"/{UPLOADS}/"
    resume_cmd = shlex.join(
        [sys.executable, "-m", module, os.path.abspath(args.file)]
        + (["--to", args.dest] if args.dest else [])
        + (["--name", args.name] if args.name else [])
        + (["--aws-conn-id", args.aws_conn_id] if args.aws_conn_id != AWS_CONN_ID else [])
    )
    part_size = args.part_size_mib * MiB if args.part_size_mib else None
    try:
        status = upload_file(
            args.file,
            args.dest,
            name=args.name,
            data_type=args.data_type,
            parallel=args.parallel,
            aws_conn_id=args.aws_conn_id,
            part_size=part_size,
        )
    except (ValueError, FileNotFoundError, IsADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NameTaken as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (UploadInterrupted, KeyboardInterrupt) as exc:
        detail = f" ({exc})" if isinstance(exc, UploadInterrupted) else ""
        print(
            f"\ninterrupted{detail}. The upload is resumable; "
            f"rerun the same command to resume:\n  {resume_cmd}",
            file=sys.stderr,
        )
        return 130
    except UploadError as exc:
        print(
            f"error: {exc}\nThe upload is resumable; rerun the same command to resume:\n  {resume_cmd}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(asdict(status), sort_keys=True))
    return 0
