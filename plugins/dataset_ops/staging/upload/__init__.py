"""Upload a local file to the staging area's ``uploads/``: parallel, resumable S3 multipart
upload, or a resumable copy into a local staging root (the embedded default).

Usage (``python -m dataset_ops.upload`` is the same command under its older, documented name)::

    python -m dataset_ops.staging.upload FILE [--root ROOT | --to DEST] [--name NAME]
        [--data-type T] [--parallel N] [--aws-conn-id aws_default] [--part-size-mib M]

The object key is ``<prefix><NAME>``; NAME defaults to the file's base name and may contain ``/``
but never ``..`` or a leading ``/`` (:func:`dataset_ops.staging.status.check_name`). ``--root``
is the staging root (``s3://bucket/prefix/``, ``file:///folder`` or a local folder) and the file
goes to its ``uploads/``; ``--to`` is the destination prefix itself (``s3://bucket/prefix/uploads/``
or a local ``.../uploads`` folder). With neither, the destination is ``uploads/`` under the
staging root: the Variable ``staging_root`` (``AIRFLOW_VAR_STAGING_ROOT``), else
``s3://training-data/``. The status record goes to ``_status/<NAME>.json`` under the staging
root, which is the destination prefix without its trailing ``uploads/`` (a prefix that does not
end in ``uploads/`` is itself the staging root).

**Nothing is replaced.** If ``uploads/<NAME>`` already holds a file (waiting for validation), the
same content is a no-op (recorded as ``uploaded``), and different content is refused with exit
code 3. Once validation has taken the waiting file, the same command uploads the new content,
which then becomes a new version of the name in ``fresh/`` or ``failed/``.

Exit codes: 0 uploaded (or already there), 1 upload failed (resumable: rerun the same command),
2 bad arguments (unsafe name, missing file, bad destination), 3 ``uploads/<NAME>`` holds a
different file not validated yet (nothing replaced), 130 interrupted (Ctrl-C, resumable).
The final status record is printed as JSON on the last line of stdout (Airflow's own log lines
may come before it); messages and progress go to stderr.

Fault injection (tests only): with ``DATASET_OPS_UPLOAD_CRASH_AFTER_PARTS=N`` in the
environment the process ends with ``os._exit(137)`` (like a SIGKILL) right after N parts (S3)
or 8 MiB blocks (local root) have completed in this run, leaving the partial upload and the
``uploading`` record behind.

Modules, one job each:

* :mod:`~dataset_ops.staging.upload.plan`: S3 limits, part sizes, the parts, destinations;
* :mod:`~dataset_ops.staging.upload.api`: :func:`upload_file`, checks then S3 or local;
* :mod:`~dataset_ops.staging.upload.s3`: single ``PutObject`` or multipart, complete, verify;
* :mod:`~dataset_ops.staging.upload.transfer`: the S3 client, part bodies, botocore hooks,
  parallel ``UploadPart``;
* :mod:`~dataset_ops.staging.upload.resume`: already uploaded, or an interrupted upload to resume;
* :mod:`~dataset_ops.staging.upload.local`: the local staging root;
* :mod:`~dataset_ops.staging.upload.hashing`: the sha256 pass beside the upload;
* :mod:`~dataset_ops.staging.upload.progress`: the progress line (the suite's
  :class:`dataset_ops.progress.ProgressLog`);
* :mod:`~dataset_ops.staging.upload.cli`: the command line; :mod:`~dataset_ops.staging.upload.errors`.
"""

from dataset_ops.staging.upload.api import upload_file
from dataset_ops.staging.upload.cli import main
from dataset_ops.staging.upload.errors import NameTaken, UploadCancelled, UploadError, UploadInterrupted
from dataset_ops.staging.upload.plan import (
    check_part_size,
    choose_part_size,
    default_destination,
    local_destination,
    parse_destination,
    plan_parts,
    staging_root_of,
)
from dataset_ops.staging.upload.transfer import list_uploaded_parts, s3_client

__all__ = [
    "NameTaken",
    "UploadCancelled",
    "UploadError",
    "UploadInterrupted",
    "check_part_size",
    "choose_part_size",
    "default_destination",
    "list_uploaded_parts",
    "local_destination",
    "main",
    "parse_destination",
    "plan_parts",
    "s3_client",
    "staging_root_of",
    "upload_file",
]
