"""Airflow Assets that link ``imdb_download`` (producer) to ``imdb_load`` (consumer).

One Asset per dump, e.g. ``x-dataset-ops://imdb/raw/title.basics.tsv.gz`` (``x-``: a custom
scheme Airflow leaves as is, so parsing loads no provider); the URI names the key
below the storage root (the Variable ``dataset_ops_storage_root``), and each event's extra holds
the full URI, ETag, size in bytes, sha256 and row count. The download task is mapped over the
files, so it declares the alias :data:`IMDB_RAW_ALIAS` and attaches an event only for the file it
actually downloaded; unchanged files emit nothing.
"""

from __future__ import annotations

from functools import reduce
from operator import or_

from airflow.sdk import Asset, AssetAlias

from dataset_ops.imdb.datasets import IMDB_FILE_NAMES, imdb_file

IMDB_RAW_ALIAS = AssetAlias("imdb_raw_dumps", group="imdb")


def imdb_raw_asset(name: str) -> Asset:
    """The Asset of one downloaded dump (``name`` as IMDb spells it, e.g. ``title.basics``)."""
    spec = imdb_file(name)
    return Asset(
        name=f"imdb_raw_{spec.table}",
        uri=f"x-dataset-ops://imdb/raw/{spec.file_name}",
        group="imdb",
    )


IMDB_RAW_ASSETS: tuple[Asset, ...] = tuple(imdb_raw_asset(n) for n in IMDB_FILE_NAMES)

#: Schedule of ``imdb_load``: a run as soon as any dump has a new version.
ANY_IMDB_RAW_UPDATE = reduce(or_, IMDB_RAW_ASSETS)
