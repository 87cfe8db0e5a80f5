"""Compatibility entry point: ``python -m dataset_ops.upload FILE ...`` is the documented command
and what users' scripts run; the uploader itself is :mod:`dataset_ops.staging.upload` (also
``python -m dataset_ops.staging.upload``). This module only re-exports its :func:`main` and
:func:`upload_file` and runs the command; new code imports ``dataset_ops.staging.upload``.
"""

from __future__ import annotations

import sys

from dataset_ops.staging.upload import NameTaken, UploadError, UploadInterrupted, upload_file
from dataset_ops.staging.upload.cli import main as _main

__all__ = ["NameTaken", "UploadError", "UploadInterrupted", "main", "upload_file"]


def main(argv: list[str] | None = None) -> int:
    """:func:`dataset_ops.staging.upload.cli.main` under this module's name (in the usage and
    the resume command it prints); returns the exit code."""
    return _main(argv, module="dataset_ops.upload")


if __name__ == "__main__":
    sys.exit(main())
