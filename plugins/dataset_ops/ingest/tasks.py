"""What a task (or the Docker container) runs for one entity: the service's Connection and the
config, then :func:`~dataset_ops.ingest.extract.ingest_entity` into the lake it is given; and what
the DAG's ``catalog`` task runs: :func:`write_lake_catalog`, the lake's table definitions.

The lake is resolved by the caller at the task boundary: ``settings.datalake_root().open()``
(the Variable ``datalake_root``, default ``datalake/`` below the storage root; an ``s3://`` lake
needs the Connection ``aws_default``, see :mod:`dataset_ops.settings`).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dataset_ops.storage import Storage


def run_entity(
    entity_name: str,
    interval_start: datetime,
    interval_end: datetime,
    lake: Storage,
    *,
    layout: str = "partitioned",
    config_path: str | Path | None = None,
    producer: dict | None = None,
) -> dict:
    """Ingest one entity for one data interval into ``lake``; returns its metrics (see
    ``ingest_entity``).

    :param lake: the opened lake root (e.g. ``settings.datalake_root().open()``).
    :param layout: ``partitioned`` (``<entity>/dt=YYYY-MM-DD/<file>``) or ``flat``.
    :param config_path: the services file (default ``include/microservices.yaml``).
    :param producer: recorded in the metrics (``dag_id``, ``run_id``, ``runner``).
    :raises KeyError: unknown entity. :raises dataset_ops.ingest.config.ConfigError: bad config.
    """
    from dataset_ops.ingest.config import load_config
    from dataset_ops.ingest.extract import ingest_entity
    from dataset_ops.ingest.http import session_from_connection

    entity = load_config(config_path).entity(entity_name)
    session = session_from_connection(entity.conn_id, entity.http)
    try:
        return ingest_entity(
            entity, session, lake, interval_start, interval_end, layout=layout, producer=producer
        )
    finally:
        session.close()


def write_lake_catalog(
    lake: Storage,
    *,
    first_day: date,
    database: str | None = None,
    config_path: str | Path | None = None,
) -> dict:
    """Write the lake's table definitions for every entity of the config: Athena ``CREATE
    EXTERNAL TABLE`` statements and Glue ``CreateTable`` requests for its CSV and Parquet copies,
    below ``_catalog/<database>/`` of ``lake`` (see :mod:`dataset_ops.ingest.catalog`). They
    depend on the config and the lake root only, not on a run's data: the same content again is
    a no-op, a changed one a new version.

    :param lake: the opened lake root. :param first_day: the first day partition projection
        shows (``projection.dt.range`` is ``<first_day>,NOW``).
    :param database: the Glue/Athena database (None: ``inventario_datalake``).
    :param config_path: the services file (default ``include/microservices.yaml``).
    :returns: ``{"database", "files": [{"table", "format", "file", "key", "version",
        "written"}, ...]}``.
    :raises dataset_ops.ingest.catalog.CatalogError: a bad database name, or an entity whose
        columns have no valid Athena names or types.
    :raises dataset_ops.ingest.config.ConfigError: bad config.
    """
    from dataset_ops.ingest.catalog import DEFAULT_DATABASE, entity_tables, write_catalog
    from dataset_ops.ingest.config import load_config

    database = database or DEFAULT_DATABASE
    tables = [
        table
        for service in load_config(config_path).services
        for entity in service.entities
        for table in entity_tables(entity, lake, first_day=first_day, database=database)
    ]
    return {"database": database, "files": write_catalog(lake, tables)}
