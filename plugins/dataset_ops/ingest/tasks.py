"""What a task (or the Docker container) runs for one entity: resolve the lake, the Connection
and the config, then :func:`~dataset_ops.ingest.extract.ingest_entity`.

The lake is the Variable ``datalake_root`` (default ``s3://inventario-datalake/``). Without the
AWS Connection (``aws_default``) an ``s3://`` root falls back to the local storage folder
(``$AIRFLOW_HOME/dataset-ops-storage/<bucket>/...``), the old containers' ``/data`` fallback.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

from dataset_ops.storage import AWS_CONN_ID, Storage, default_storage_root, open_storage

log = logging.getLogger(__name__)

DATALAKE_VARIABLE = "datalake_root"
DEFAULT_DATALAKE_ROOT = "s3://inventario-datalake/"


def datalake_root() -> str:
    """The Variable ``datalake_root`` (inside a task, or ``AIRFLOW_VAR_DATALAKE_ROOT``), else the default."""
    from airflow.sdk import Variable

    return Variable.get(DATALAKE_VARIABLE, default=DEFAULT_DATALAKE_ROOT)


def _aws_connection_exists(conn_id: str) -> bool:
    from airflow.sdk import BaseHook

    try:
        BaseHook.get_connection(conn_id)
        return True
    except Exception as exc:  # AirflowNotFoundException (its import path moved between versions)
        if type(exc).__name__ != "AirflowNotFoundException":
            raise
        return False


def lake_storage(root: str | None = None, aws_conn_id: str = AWS_CONN_ID) -> Storage:
    """Storage for the lake ``root`` (default :func:`datalake_root`); see the module docstring."""
    root = root or datalake_root()
    if root.startswith("s3://") and not _aws_connection_exists(aws_conn_id):
        local = os.path.join(default_storage_root(), root[5:].strip("/"))
        log.warning("no Connection %r: the lake %s goes to the local folder %s", aws_conn_id, root, local)
        return open_storage(local)
    return open_storage(root, aws_conn_id)


def run_entity(
    entity_name: str,
    interval_start: datetime,
    interval_end: datetime,
    *,
    layout: str = "partitioned",
    root: str | None = None,
    config_path: str | Path | None = None,
    producer: dict | None = None,
) -> dict:
    """Ingest one entity for one data interval; returns its metrics (see ``ingest_entity``).

    :raises KeyError: unknown entity. :raises dataset_ops.ingest.config.ConfigError: bad config.
    """
    from dataset_ops.ingest.config import load_config
    from dataset_ops.ingest.extract import ingest_entity
    from dataset_ops.ingest.http import session_from_connection

    entity = load_config(config_path).entity(entity_name)
    storage = lake_storage(root)
    session = session_from_connection(entity.conn_id, entity.http)
    try:
        return ingest_entity(
            entity, session, storage, interval_start, interval_end, layout=layout, producer=producer
        )
    finally:
        session.close()
