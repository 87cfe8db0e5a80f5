"""Planning an upload: S3's limits, the part size, the parts, and where the file goes.

Files under 16 MiB go up with one ``PutObject``; larger ones as a multipart upload with the part
size of :func:`choose_part_size`. S3 API and limits
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html): at most 10,000 parts; parts
from 5 MiB to 5 GiB, except the last, which may be smaller; objects up to 5 TiB; ``PutObject``
up to 5 GiB.

Destinations: ``s3://bucket/prefix/`` (:func:`parse_destination`; its staging root is the prefix
without a trailing ``uploads/``, :func:`staging_root_of`), or a local folder or ``file://`` URI
(:func:`local_destination`); the default is ``uploads/`` under the staging root
(:func:`default_destination`).
"""

from __future__ import annotations

import re
from pathlib import Path

from dataset_ops import settings
from dataset_ops.staging.status import UPLOADS

MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

#: S3 limits (bytes / counts).
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_OBJECT_SIZE = 5 * TiB
#: Files smaller than this (bytes) are sent with one PutObject.
SINGLE_PUT_LIMIT = 16 * MiB
#: Part size tiers (bytes): (files smaller than, part size). The old service used 16 MiB below
#: 100 MiB, 64 MiB below 1 GiB and 128 MiB from 1 GiB. Measured on a 1 GiB file to SeaweedFS
#: (benchmarks/README.md, 2026-12-07), 4 threads: 128 MiB parts 7.5 to 7.7 s, 64 MiB 6.9 s,
#: 16 MiB 6.7 to 7.0 s (a last wave of a few big parts leaves threads idle), so 16 MiB goes on to
#: 1 GiB (64 parts; a 200 MB file gets 12, not 3, and the page has more than one wave to resume)
#: and 64 MiB to 8 GiB (128 parts).
PART_SIZE_TIERS = ((1 * GiB, 16 * MiB), (8 * GiB, 64 * MiB))
LARGE_PART_SIZE = 128 * MiB

DEFAULT_PARALLEL = 4
#: Test-only fault injection: ``os._exit(137)`` after this many parts (S3) or 8 MiB blocks
#: (local root) completed in one run.
CRASH_ENV = "DATASET_OPS_UPLOAD_CRASH_AFTER_PARTS"
#: Key of the resume block in the status record's JSON (next to ``UploadStatus`` fields).
MULTIPART_BLOCK = "multipart"
#: Read size (bytes) of the hashing and part-checking passes.
HASH_BLOCK = 8 * MiB


def choose_part_size(size: int) -> int:
    """Multipart part size in bytes for a file of ``size`` bytes.

    16 MiB below 1 GiB, 64 MiB below 8 GiB, 128 MiB from 8 GiB; grown (in whole MiB) when the
    file would otherwise need more than 10,000 parts, the ``UploadPart`` maximum (so above
    1.22 TiB). The result is always between 5 MiB and 5 GiB, S3's bounds for every part but the
    last.

    :param size: file size in bytes.
    :returns: part size in bytes.
    :raises ValueError: ``size`` is negative or above 5 TiB (S3's largest object).
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if size > MAX_OBJECT_SIZE:
        raise ValueError(f"{size:,} bytes is more than S3's largest object (5 TiB)")
    part = next((p for limit, p in PART_SIZE_TIERS if size < limit), LARGE_PART_SIZE)
    if -(-size // part) > MAX_PARTS:
        part = -(-size // MAX_PARTS)
        part = -(-part // MiB) * MiB
    return part


def check_part_size(size: int, part_size: int) -> int:
    """``part_size`` if S3 accepts it for a ``size``-byte file, in bytes.

    :raises ValueError: below 5 MiB, above 5 GiB, or more than 10,000 parts.
    """
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise ValueError(f"part size {part_size:,} bytes is outside S3's 5 MiB .. 5 GiB")
    if -(-size // part_size) > MAX_PARTS:
        raise ValueError(f"{size:,} bytes in parts of {part_size:,} bytes needs more than 10,000 parts")
    return part_size


def plan_parts(size: int, part_size: int) -> list[tuple[int, int, int]]:
    """``(part_number, offset, length)`` of every part (numbers from 1; all bytes)."""
    return [(i // part_size + 1, i, min(part_size, size - i)) for i in range(0, size, part_size)]


def parse_destination(uri: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix/``; the prefix is ``""`` or ends with ``/``.

    :raises ValueError: not ``s3://``, no bucket, or an empty path segment.
    """
    if not uri.startswith("s3://"):
        raise ValueError(f"destination {uri!r} must be an s3:// URI (e.g. s3://bucket/uploads/)")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"destination {uri!r} names no bucket")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if prefix.startswith("/") or "//" in prefix:
        raise ValueError(f"destination {uri!r} has an empty path segment")
    return bucket, prefix


def staging_root_of(bucket: str, prefix: str) -> str:
    """The staging root of a destination: the prefix without a trailing ``uploads/``."""
    tail = f"{UPLOADS}/"
    if prefix == tail or prefix.endswith(f"/{tail}"):
        prefix = prefix[: -len(tail)]
    return f"s3://{bucket}/{prefix}"


def local_destination(uri: str) -> tuple[str, str]:
    """``(staging root folder, key prefix)`` of a local destination: a folder path or a
    ``file://`` URI. Like :func:`staging_root_of`, a destination ending in ``uploads`` has its
    parent as the staging root (prefix ``uploads/``); any other folder is itself the root
    (prefix ``""``).

    :raises ValueError: another URL scheme (``gs://``, ``http://``), or an empty path.
    """
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", uri)
    if scheme and scheme[1].lower() != "file":
        raise ValueError(
            f"destination {uri!r}: scheme {scheme[1]!r} is not supported "
            "(s3://bucket/prefix/uploads/, file:///folder/uploads/ or a local folder)"
        )
    folder = uri.removeprefix("file://").rstrip("/")
    if not folder:
        raise ValueError(f"destination {uri!r} names no folder")
    path = Path(folder).expanduser().absolute()
    if path.name == UPLOADS:
        return str(path.parent), f"{UPLOADS}/"
    return str(path), ""


def default_destination() -> str:
    """``uploads/`` under the staging root (:func:`dataset_ops.settings.staging_root`: the
    Variable ``staging_root``, ``AIRFLOW_VAR_STAGING_ROOT``, else ``s3://training-data/``).

    :raises dataset_ops.settings.VariableUnavailable: outside a task, the metadata database
        cannot be read.
    """
    return settings.staging_root().uri.rstrip("/") + f"/{UPLOADS}/"
