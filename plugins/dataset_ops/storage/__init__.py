"""One small API over the object storage the suite keeps datasets in: a local folder or S3.

The root comes from the Airflow Variable ``dataset_ops_storage_root``: a local path (the embedded
default) or ``s3://bucket/prefix``, reached through the Airflow Connection ``aws_default``
(its extra ``endpoint_url`` points at MinIO or any S3-compatible server); tasks resolve and open
it through :mod:`dataset_ops.settings` (``settings.storage()``), this package only opens the
root it is given (:func:`open_storage`). Keys are ``/``-separated
paths below the root, e.g. ``imdb/raw/title.basics.tsv.gz``.

Writes are all-or-nothing: :meth:`Storage.write_stream` publishes the object only when the
source stream ended cleanly; if reading the source raises, nothing appears at the key and a
previous object there stays as it was. :func:`publish` adds verification: it writes under a
temporary key (``_tmp/``), checks size and sha256, then moves the object into place.
Datasets carry a manifest, ``_manifest.json``, written last (:mod:`.manifest`).
"""

from __future__ import annotations

from dataset_ops.storage.base import TMP_PREFIX, HashingReader, ObjectInfo, Storage, read_json, write_json
from dataset_ops.storage.local import LocalStorage
from dataset_ops.storage.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    ManifestFile,
    read_manifest,
    write_manifest,
)
from dataset_ops.storage.publish import PublishError, file_sha256, publish, publish_file
from dataset_ops.storage.roots import open_storage
from dataset_ops.storage.s3 import (
    AWS_CONN_ID,
    S3_COPY_PART_SIZE,
    S3_MULTIPART_COPY_THRESHOLD,
    S3_PART_SIZE,
    S3Storage,
)

__all__ = [
    "AWS_CONN_ID",
    "S3_COPY_PART_SIZE",
    "S3_MULTIPART_COPY_THRESHOLD",
    "S3_PART_SIZE",
    "TMP_PREFIX",
    "MANIFEST_NAME",
    "HashingReader",
    "Manifest",
    "ManifestError",
    "ManifestFile",
    "LocalStorage",
    "ObjectInfo",
    "PublishError",
    "S3Storage",
    "Storage",
    "file_sha256",
    "open_storage",
    "publish",
    "publish_file",
    "read_json",
    "read_manifest",
    "write_json",
    "write_manifest",
]
