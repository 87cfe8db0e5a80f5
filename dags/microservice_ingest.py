"""
### Microservice ingest to the S3 data lake

Every day at 02:00 UTC, each entity of the inventory microservices (products and categories,
orders and customers, suppliers) is pulled page by page from its REST service and landed in the
data lake (Variable `datalake_root`, e.g. `s3://inventario-datalake/`, which goes through the
Connection `aws_default`; unset: `datalake/` below the storage root) for Glue and Athena:

* `<entity>/dt=YYYY-MM-DD/<entity>_YYYYMMDD_HHMMSS.csv`: header, UTF-8, RFC 4180 quoting;
* `parquet/<entity>/dt=.../...parquet` (typed columns) and `raw/<entity>/dt=.../...jsonl` (the
  records as received); each of these partitions has a `_manifest.json` (every file with bytes,
  sha256 and rows, the producing run, and per run: pages, bytes, duplicates, invalid rows,
  seconds). Partitions written by earlier versions keep their `_metrics/<entity>/dt=.../...json`.

The date and time in the names are the start of the interval the run ingests (UTC), so a rerun
replaces its own files and `dt=` is the day the data covers. The task `data_interval` picks that
interval from the DAG's timetable (`dataset_ops.ingest.interval`), for both runners:

* scheduled and backfill runs: their data interval (02:00 to 02:00; the logical date is its start);
* a manual run with a logical date: the schedule's interval that ended last at or before it
  (not Airflow's 24 hours before the moment, which would overlap two partitions);
* a manual run without a logical date (REST `"logical_date": null`, the trigger form with the
  date cleared): the last complete interval before the run's `run_after`;
* Param `day` (`YYYY-MM-DD`, optional, wins): the interval that starts on that day, `dt=<day>`;
  a day not complete yet fails the run at once.

`airflow backfill create` selects runs by their 02:00 start, both ends included, and each run
ingests the day before: `--from-date 2026-11-11T02:00:00+00:00 --to-date 2026-11-13T02:00:00+00:00`
lands `dt=2026-11-10`, `dt=2026-11-11` and `dt=2026-11-12`. Entities with an `updated_at` filter
ask only for the interval; the others take a full snapshot. Records are checked against the
entity's JSON Schema; invalid ones and duplicates by primary key are dropped and counted.
Services, endpoints, pagination, keys and schemas: `include/microservices.yaml`. One Connection
(HTTP) and one pool per service; one mapped task per entity.

Param `runner`: `in_process` (default) runs the ingest in the task; `docker` runs the same code
in the ingest image (`include/docker/ingest/`, Variable `ingest_image`) with `DockerOperator`,
one container per entity asked for. The container gets the Connections through the operator's
`private_environment`, filled when the task runs, so no password shows in Rendered Templates.
Param `layout`: `partitioned` (default) or `flat` (the old containers' `<entity>/<file>` keys).
Param `entities`: only these (empty: all); the others' tasks are skipped.

The task `catalog` then writes the lake's table definitions beside the data
(`dataset_ops.ingest.catalog`): for every entity an Athena `CREATE EXTERNAL TABLE` statement and a
Glue `CreateTable` request for its CSV copy (table `<entity>`) and its Parquet copy
(`<entity>_parquet`), partitioned by `dt` with partition projection (no crawler, no
`MSCK REPAIR TABLE`), at `_catalog/<database>/athena/<table>.sql` and
`_catalog/<database>/glue/<table>.json`. The same content again is a no-op; a changed schema or
lake root gives a new version (`<table>.v2.sql`, ...). Param `catalog_database`: the Glue/Athena
database (default `inventario_datalake`; empty: no definitions are written). Not written for
`layout: flat` (no `dt=` folders there).
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task
from airflow.timetables.trigger import CronTriggerTimetable

from dataset_ops.dag_defaults import DEFAULT_ARGS, START_DATE
from dataset_ops.ingest.config import services_overview
from dataset_ops.ingest.docker_runner import DEFAULT_IMAGE, INTERVAL_TASK_ID, IngestDockerOperator

SERVICES = services_overview()
ENTITIES = [name for _, _, _, names in SERVICES for name in names]
#: Docker network of the ingest containers (they must reach the services and S3); set when the
#: scheduler starts, as DockerOperator does not template it.
DOCKER_NETWORK = os.environ.get("DATASET_OPS_INGEST_NETWORK", "bridge")


def datalake_root() -> str:
    """The lake root for the Docker runner's container (the macro ``datalake_root()``, rendered in
    the worker): :func:`dataset_ops.settings.datalake_root`, its ``s3://`` Connection checked.

    :raises dataset_ops.settings.MissingConnection: an ``s3://`` lake and no ``aws_default``."""
    from dataset_ops import settings

    return settings.datalake_root().check().uri


@dag(
    dag_id="microservice_ingest",
    schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC", interval=timedelta(days=1)),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=3,
    default_args=DEFAULT_ARGS,
    tags=["ingest", "s3", "datalake", "rest"],
    doc_md=__doc__,
    user_defined_macros={"datalake_root": datalake_root},
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
            type=["array", "null"],
            items={"type": "string", "enum": ENTITIES},
            examples=ENTITIES,  # the form lists them to choose from
            title="Entities",
            description="Only these entities (empty: all). The others are skipped.",
        ),
        "catalog_database": Param(
            "inventario_datalake",
            type=["null", "string"],
            pattern=r"^[a-z][a-z0-9_]{0,254}$",
            title="Catalog database",
            description="Glue/Athena database named in the table definitions the task catalog writes "
            "under _catalog/<database>/ of the lake (lower-case letters, digits, _); empty: write none.",
        ),
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            title="Day",
            description="Ingest the interval that starts on this UTC day (dt=YYYY-MM-DD) instead of "
            "the run's own; empty: the run's interval, or for a run without a logical date the "
            "last complete one.",
        ),
    },
)
def microservice_ingest():
    @task(task_id=INTERVAL_TASK_ID, multiple_outputs=False)
    def data_interval(params=None, dag=None, dag_run=None) -> dict[str, str]:
        """The interval every ingest task of this run covers (both runners read this XCom)."""
        import logging

        from dataset_ops.dag_defaults import fail_without_retry
        from dataset_ops.ingest.interval import IntervalError, resolve_interval

        with fail_without_retry(IntervalError):
            interval = resolve_interval(
                dag.timetable,
                data_interval_start=dag_run.data_interval_start,
                data_interval_end=dag_run.data_interval_end,
                run_after=dag_run.run_after,
                day=params.get("day"),
            )
        logging.getLogger(__name__).info(
            "ingesting %s .. %s (from %s; logical date %s, run_after %s)",
            interval.start.isoformat(),
            interval.end.isoformat(),
            interval.source,
            dag_run.logical_date,
            dag_run.run_after,
        )
        return interval.as_dict()

    @task.branch
    def choose_runner(params=None) -> list[str]:
        """The in-process or the Docker tasks of every service."""
        suffix = "_docker" if params["runner"] == "docker" else ""
        return [f"ingest_{service}{suffix}" for service, _, _, _ in SERVICES]

    @task(multiple_outputs=False, map_index_template="{{ entity }}")
    def ingest(entity: str, interval: dict, params=None, dag_run=None) -> dict:
        """Pull one entity for the run's interval and land its files (see the DAG docs)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from dataset_ops import settings
        from dataset_ops.ingest.interval import IngestInterval
        from dataset_ops.ingest.tasks import run_entity

        get_current_context()["entity"] = entity
        if params["entities"] and entity not in params["entities"]:
            raise AirflowSkipException(f"{entity} is not in the Param entities")
        window = IngestInterval.from_dict(interval)
        producer = {"dag_id": dag_run.dag_id, "run_id": dag_run.run_id, "runner": "in_process"}
        lake = settings.datalake_root().open()
        return run_entity(entity, window.start, window.end, lake, layout=params["layout"], producer=producer)

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

    @task(trigger_rule="none_failed_min_one_success", multiple_outputs=False)
    def catalog(params=None) -> dict:
        """Write the lake's table definitions (Athena SQL, Glue CreateTable JSON) for every entity
        under `_catalog/<database>/` of the lake (see the DAG docs)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from dataset_ops import settings
        from dataset_ops.ingest.tasks import write_lake_catalog

        if not params.get("catalog_database"):
            raise AirflowSkipException("the Param catalog_database is empty: no table definitions")
        if params["layout"] != "partitioned":
            raise AirflowSkipException("the tables describe the partitioned layout; this run wrote flat keys")
        lake = settings.datalake_root().open()
        return write_lake_catalog(lake, first_day=START_DATE.date(), database=params["catalog_database"])

    interval = data_interval()
    runner = choose_runner()
    interval >> runner
    done = []
    for service, pool, conn_id, entities in SERVICES:
        in_process = (
            ingest.override(task_id=f"ingest_{service}", pool=pool)
            .partial(interval=interval)
            .expand(entity=entities)
        )
        in_docker = IngestDockerOperator.partial(
            task_id=f"ingest_{service}_docker",
            pool=pool,
            conn_id=conn_id,
            image="{{ var.value.get('ingest_image', '" + DEFAULT_IMAGE + "') }}",
            environment={"AIRFLOW_VAR_DATALAKE_ROOT": "{{ datalake_root() }}"},
            network_mode=DOCKER_NETWORK,
            auto_remove="success",
            mount_tmp_dir=False,
            retrieve_output=False,
            map_index_template="{{ entity }}",
        ).expand(entity=entities)
        runner >> [in_process, in_docker]
        done += [in_process, in_docker]
    done >> summary()
    done >> catalog()


microservice_ingest()
