"""The ``docker`` runner of ``microservice_ingest``: one container of the ingest image per entity.

:class:`IngestDockerOperator` is the provider's ``DockerOperator`` with three things added:

* The Connections the container needs (the service's and ``aws_default``) go in as
  ``AIRFLOW_CONN_<ID>`` URIs through ``private_environment``, resolved in ``execute`` on the
  worker. ``private_environment`` is not a template field, so the URIs never reach the rendered
  fields (UI "Rendered Templates", REST ``rendered_fields``, the metadata DB); the provider merges
  it into the container's environment at ``create_container``. Each URI and the URL-encoded
  password are also registered with Airflow's secrets masker, which knows only the raw password.
  The rendered ``environment`` holds nothing secret (the lake root).
* An entity left out of the Param ``entities`` is skipped before any Docker call.
* The command is ``python -m dataset_ops.ingest ENTITY --start ... --end ...`` with the interval
  of the task ``data_interval`` (:func:`dataset_ops.ingest.interval.resolve_interval`), the same
  one the in-process tasks use, so a run without a logical date works here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from airflow.providers.docker.operators.docker import DockerOperator

from dataset_ops.storage.s3 import AWS_CONN_ID

#: task id of the task whose XCom is the run's ingest interval (``IngestInterval.as_dict()``)
INTERVAL_TASK_ID = "data_interval"
DEFAULT_IMAGE = "dataset-ops-ingest:latest"


def env_name(conn_id: str) -> str:
    """``AIRFLOW_CONN_<ID>``: the variable Airflow reads the Connection ``conn_id`` from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def connection_environment(conn_ids: Iterable[str]) -> dict[str, str]:
    """``{AIRFLOW_CONN_<ID>: URI}`` for each Connection that exists (inside a task), every URI and
    URL-encoded password registered with the secrets masker.

    :param conn_ids: Connection ids; a missing one is left out (the container then behaves like
        the in-process task without it, e.g. the local lake fallback without ``aws_default``).
    :raises Exception: any lookup error other than "not found" (a secrets backend that fails).
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.log import mask_secret

    environment = {}
    for conn_id in conn_ids:
        try:
            connection = BaseHook.get_connection(conn_id)
        except Exception as exc:  # AirflowNotFoundException (its import path moved between versions)
            if type(exc).__name__ != "AirflowNotFoundException":
                raise
            continue
        uri = connection.get_uri()
        mask_secret(uri)
        if connection.password:
            mask_secret(connection.password)
            mask_secret(quote(connection.password, safe=""))
            mask_secret(quote(connection.password))
        environment[env_name(conn_id)] = uri
    return environment


def ingest_command(entity: str) -> list[str]:
    """The container's command for ``entity``: templated with the ``data_interval`` task's XCom,
    the Param ``layout`` and the run id (nothing secret, it is a rendered field)."""
    interval = f"ti.xcom_pull(task_ids={INTERVAL_TASK_ID!r})"
    return [
        "python",
        "-m",
        "dataset_ops.ingest",
        entity,
        "--start",
        "{{ " + interval + "['start'] }}",
        "--end",
        "{{ " + interval + "['end'] }}",
        "--layout",
        "{{ params.layout }}",
        "--run-id",
        "{{ run_id }}",
    ]


class IngestDockerOperator(DockerOperator):
    """``DockerOperator`` running ``python -m dataset_ops.ingest`` for one entity (see the module).

    :param entity: entity name from ``include/microservices.yaml`` (map over it with ``expand``).
    :param conn_id: the service's HTTP Connection, passed to the container privately.
    :param aws_conn_id: the lake's AWS Connection, passed privately when it exists.
    :param kwargs: ``DockerOperator`` arguments (``image``, ``network_mode``, ...); ``command``
        defaults to :func:`ingest_command`; ``environment`` must hold nothing secret.
    """

    def __init__(self, *, entity: str, conn_id: str, aws_conn_id: str = AWS_CONN_ID, **kwargs) -> None:
        kwargs.setdefault("command", ingest_command(entity))
        super().__init__(**kwargs)
        self.entity = entity
        self.conn_id = conn_id
        self.aws_conn_id = aws_conn_id

    def execute(self, context):
        """Skip an entity not asked for; else add the Connections privately and run the container.

        :raises AirflowSkipException: the Param ``entities`` is set and leaves this entity out.
        """
        from airflow.sdk.exceptions import AirflowSkipException

        context["entity"] = self.entity  # for map_index_template
        wanted = (context.get("params") or {}).get("entities") or []
        if wanted and self.entity not in wanted:
            raise AirflowSkipException(f"{self.entity} is not in the Param entities")
        self._private_environment = {
            **self._private_environment,
            **connection_environment([self.conn_id, self.aws_conn_id]),
        }
        return super().execute(context)
