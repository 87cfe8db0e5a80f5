""":func:`upload_file`: check the arguments and the file, then upload to S3 or a local root."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from dataset_ops.staging.status import UploadStatus, check_name
from dataset_ops.staging.upload.local import upload_local
from dataset_ops.staging.upload.plan import (
    DEFAULT_PARALLEL,
    default_destination,
    local_destination,
    parse_destination,
)
from dataset_ops.staging.upload.s3 import upload_s3
from dataset_ops.storage.s3 import AWS_CONN_ID

log = logging.getLogger(__name__)


def upload_file(
    path: str | os.PathLike,
    dest_uri: str | None = None,
    *,
    name: str | None = None,
    data_type: str | None = None,
    parallel: int = DEFAULT_PARALLEL,
    aws_conn_id: str = AWS_CONN_ID,
    progress: bool = True,
    part_size: int | None = None,
) -> UploadStatus:
    """Upload the local file ``path`` to ``<dest_uri><name>`` and record it as ``uploaded``.

    Below 16 MiB one ``PutObject``; otherwise a multipart upload (``CreateMultipartUpload``,
    ``UploadPart`` x N in ``parallel`` threads, ``CompleteMultipartUpload``) that resumes an
    interrupted upload of the same name and content (``ListParts``). See
    :mod:`dataset_ops.staging.upload`.

    :param path: the local file.
    :param dest_uri: ``s3://bucket/prefix/`` (normally ending in ``uploads/``), or a local folder
        or ``file://`` URI (then the copy of :func:`~dataset_ops.staging.upload.local.upload_local`,
        no S3 involved); default ``uploads/`` under the staging root
        (:func:`~dataset_ops.staging.upload.plan.default_destination`).
    :param name: key below ``dest_uri``; default the file's base name.
    :param data_type: rule set for validation, stored in the status record.
    :param parallel: parts in flight at once (threads), >= 1.
    :param aws_conn_id: Airflow Connection for credentials and ``endpoint_url``.
    :param progress: write progress and notices to stderr (else notices go to the log).
    :param part_size: part size in bytes instead of
        :func:`~dataset_ops.staging.upload.plan.choose_part_size` (5 MiB .. 5 GiB); a resumed
        upload keeps the part size it was started with.
    :returns: the ``uploaded`` status record (``size`` in bytes, ``sha256`` hex, ``timings``
        in seconds), or the existing record when the object already holds this content.
    :raises ValueError: unsafe ``name``, bad ``dest_uri``, ``part_size`` or ``parallel``, or a
        file above 5 TiB.
    :raises FileNotFoundError: ``path`` does not exist. :raises IsADirectoryError: it is a folder.
    :raises UploadError: S3 refused or failed (status left ``uploading``: call again to resume).
    :raises UploadInterrupted: KeyboardInterrupt while parts were going out (resumable).
    :raises NameTaken: the destination holds a different file not validated yet (nothing replaced).
    """

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)
        else:
            log.info("%s", message)

    started = time.monotonic()
    path = Path(path).expanduser().absolute()
    name = check_name(name if name is not None else path.name)
    dest = dest_uri or default_destination()
    if dest.startswith("s3://"):
        parse_destination(dest)  # ValueError for a bad bucket or prefix, before the file is opened
    else:
        local_destination(dest)  # ValueError for other schemes, before the file is opened
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    if not dest.startswith("s3://"):
        return upload_local(path, dest, name, data_type, progress, say, started)
    return upload_s3(
        path,
        dest,
        name,
        data_type=data_type,
        parallel=parallel,
        aws_conn_id=aws_conn_id,
        progress=progress,
        part_size=part_size,
        say=say,
        started=started,
    )
