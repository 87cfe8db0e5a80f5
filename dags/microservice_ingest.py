"""
### Microservice ingest to the S3 data lake

Every day at 02:00 UTC, each entity of the inventory microservices (products and categories,
orders and customers, suppliers) is pulled page by page from its REST service and landed in the
data lake (Variable `datalake_root`, default `s3://inventario-datalake/`) for Glue and Athena:

* `<entity>/dt=YYYY-MM-DD/<entity>_YYYYMMDD_HHMMSS.csv`: header, UTF-8, RFC 4180 quoting;
* `parquet/<entity>/dt=.../...parquet` (typed columns) and `raw/<entity>/dt=.../...jsonl` (the
  records as received); `_metrics/<entity>/dt=.../...json`: rows, pages, bytes, duplicates,
  invalid rows, seconds.

The date and time in the names are the run's data interval start, so a rerun replaces its own
files; `airflow backfill create --dag-id microservice_ingest --from-date ... --to-date ...` gives
one partition per day. Entities with an `updated_at` filter ask only for the data interval;
the others take a full snapshot. Records are checked against the entity's JSON Schema; invalid
ones and duplicates by primary key are dropped and counted. Services, endpoints, pagination,
keys and schemas: `include/microservices.yaml`. One Connection (HTTP) and one pool per service;
one mapped task per entity.

Param `runner`: `in_process` (default) runs the ingest in the task; `docker` runs the same code
in the ingest image (`include/docker/ingest/`, Variable `ingest_image`) with `DockerOperator`.
Param `layout`: `partitioned` (default) or `flat` (the old containers' `<entity>/<file>` keys).
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk import Param, dag, get_current_context, task
from airflow.timetables.trigger import CronTriggerTimetable

from dataset_ops.dag_defaults import DEFAULT_ARGS, START_DATE
from dataset_ops.ingest.config import services_overview

SERVICES = services_overview()
ENTITIES = [name for _, _, _, names in SERVICES for name in names]
#: Docker network of the ingest containers (they must reach the services and S3); set when the
#: scheduler starts, as DockerOperator does not template it.
DOCKER_NETWORK = os.environ.get("DATASET_OPS_INGEST_NETWORK", "bridge")
DEFAULT_IMAGE = "dataset-ops-ingest:latest"


def conn_uri(conn_id: str) -> str:
    """The Connection ``conn_id`` as an ``AIRFLOW_CONN_*`` URI, or "" when it does not exist
    (a template macro: the container gets the same Connections as the in-process task)."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id).get_uri()
    except Exception as exc:
        if type(exc).__name__ != "AirflowNotFoundException":
            raise
        return ""


def docker_environment(conn_id: str) -> dict[str, str]:
    """Environment of an ingest container: the service's and the AWS Connection, the lake root."""
    return {
        f"AIRFLOW_CONN_{conn_id.upper()}": f"{{{{ conn_uri({conn_id!r}) }}}}",
        "AIRFLOW_CONN_AWS_DEFAULT": "{{ conn_uri('aws_default') }}",
        "AIRFLOW_VAR_DATALAKE_ROOT": "{{ var.value.get('datalake_root', 's3://inventario-datalake/') }}",
    }


def docker_command(entity: str) -> list[str]:
    """The container's command for ``entity`` (templated with the run's data interval)."""
    return [
        "python",
        "-m",
        "dataset_ops.ingest",
        entity,
        "--start",
        "{{ data_interval_start.isoformat() }}",
        "--end",
        "{{ data_interval_end.isoformat() }}",
        "--layout",
        "{{ params.layout }}",
        "--run-id",
        "{{ run_id }}",
    ]


@dag(
    dag_id="microservice_ingest",
    schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC", interval=timedelta(days=1)),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=3,
    default_args=DEFAULT_ARGS,
    tags=["ingest", "s3", "datalake", "rest"],
    doc_md=__doc__,
    user_defined_macros={"conn_uri": conn_uri},
    params={
        "runner": Param(
            "in_process",
            enum=["in_process", "docker"],
            title="Runner",
            description="in_process: in the Airflow task; docker: DockerOperator with the ingest image.",
        ),
        "layout": Param(
            "partitioned",
            enum=["partitioned", "flat"],
            title="Key layout",
            description="partitioned: <entity>/dt=YYYY-MM-DD/<file>; flat: <entity>/<file> (old containers).",
        ),
        "entities": Param(
            [],
            type="array",
            items={"type": "string", "enum": ENTITIES},
            title="Entities",
            description="Only these entities (empty: all). The others are skipped.",
        ),
    },
)
def microservice_ingest():
    @task.branch
    def choose_runner(params=None) -> list[str]:
        """The in-process or the Docker tasks of every service."""
        suffix = "_docker" if params["runner"] == "docker" else ""
        return [f"ingest_{service}{suffix}" for service, _, _, _ in SERVICES]

    @task(multiple_outputs=False, map_index_template="{{ entity }}")
    def ingest(
        entity: str, params=None, data_interval_start=None, data_interval_end=None, dag_run=None
    ) -> dict:
        """Pull one entity for the data interval and land its files (see the DAG docs)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from dataset_ops.ingest.runner import run_entity

        get_current_context()["entity"] = entity
        if params["entities"] and entity not in params["entities"]:
            raise AirflowSkipException(f"{entity} is not in the Param entities")
        producer = {"dag_id": dag_run.dag_id, "run_id": dag_run.run_id, "runner": "in_process"}
        return run_entity(
            entity, data_interval_start, data_interval_end, layout=params["layout"], producer=producer
        )

    @task(trigger_rule="none_failed_min_one_success")
    def summary(ti=None) -> list[dict]:
        """One line per entity: rows, pages, duplicates, invalid rows, seconds (also logged)."""
        import json
        import logging

        log = logging.getLogger(__name__)
        rows = []
        keep = ("entity", "rows", "records", "pages", "duplicates", "invalid_rows", "seconds")
        for service, _, _, entities in SERVICES:
            for task_id in (f"ingest_{service}", f"ingest_{service}_docker"):
                for index in range(len(entities)):
                    value = ti.xcom_pull(task_ids=task_id, map_indexes=index)
                    if isinstance(value, str):  # the container's last stdout line
                        try:
                            value = json.loads(value)
                        except ValueError:
                            continue
                    if isinstance(value, dict):
                        rows.append({k: value.get(k) for k in keep})
        for row in rows:
            log.info("%s", row)
        return rows

    runner = choose_runner()
    done = []
    for service, pool, conn_id, entities in SERVICES:
        in_process = ingest.override(task_id=f"ingest_{service}", pool=pool).expand(entity=entities)
        in_docker = DockerOperator.partial(
            task_id=f"ingest_{service}_docker",
            pool=pool,
            image="{{ var.value.get('ingest_image', '" + DEFAULT_IMAGE + "') }}",
            environment=docker_environment(conn_id),
            network_mode=DOCKER_NETWORK,
            auto_remove="success",
            mount_tmp_dir=False,
            retrieve_output=False,
        ).expand(command=[docker_command(entity) for entity in entities])
        runner >> [in_process, in_docker]
        done += [in_process, in_docker]
    done >> summary()


microservice_ingest()
