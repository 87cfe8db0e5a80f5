#!/usr/bin/env python3
"""``make distributed``: three DAGs on a CeleryExecutor Airflow with two workers, checked against a
single-machine run.

1. **S3**: a SeaweedFS server (``scripts/seaweedfs.py``) started as its own process
   (``.data/distributed/seaweedfs.log``), bucket ``dataset-ops``; it holds every root the DAGs
   write (``datasets/``, ``staging/``, ``lake/``) and the task logs (``airflow-logs/``).
2. **Sources**: the bundled IMDb sample (``include/imdb_sample``, real IMDb slices) over HTTP, and
   the three inventory microservices (``tests/helpers/inventory_server.py``, seed 11), both in
   threads of this process; PostgreSQL databases ``imdb_distributed`` and ``imdb_single`` on
   127.0.0.1:5432 as IMDb targets.
3. **Airflow**: :class:`airflow_stack.AirflowStack` (``scripts/airflow_stack.py``): api-server,
   scheduler, dag-processor and ``--workers`` (default 2) ``airflow celery worker`` processes, each
   in its own UTS namespace (host name ``worker-N``) with its own home, working directory and
   ``TMPDIR``; metadata in the PostgreSQL database ``dataset_ops_distributed``, broker Redis
   database 6.
4. **Runs**, each triggered through the REST API and waited for: ``imdb_download`` then
   ``imdb_load``; ``staged_upload_validation`` on a batch of 20 files put in ``staging/uploads/``
   (18 JSON Lines files made from the IMDb sample's rows, one with a broken line, one empty);
   ``microservice_ingest`` for the interval 2026-11-15 02:00 .. 2026-11-16 02:00 UTC. For each
   run: its state, wall time and which worker ran which task (the task instances' host names).
5. **Single-machine reference**: the same runs with ``airflow dags test`` (one process, no
   executor) on a throwaway SQLite home, writing to ``single/`` roots and ``imdb_single``; then the
   results are compared: IMDb tables (rows and an md5 over the sorted rows), the staging outcome
   (state, size, sha256, records, errors, first error and the error report of every file), and
   every key and byte of the data lake (manifests aside).

Prints a summary; exit status 0 when every run succeeded, both workers ran tasks and the results
match, 1 otherwise. ``--keep`` leaves the stack running afterwards (URL and admin password
printed) until Ctrl-C. Took 4 min 12 s and 4 min 32 s here (2 cores, `make distributed`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO / "tests"), str(REPO / "scripts")]

from airflow_stack import (  # noqa: E402
    AIRFLOW,
    AirflowStack,
    StackError,
    aws_connection,
    http_connection,
    recreate_database,
)
from seaweedfs import SeaweedFS, SeaweedFSError  # noqa: E402

BASE = REPO / ".data" / "distributed"
BUCKET = "dataset-ops"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
SAMPLE_DIR = REPO / "include" / "imdb_sample"
INGEST_DATE = "2026-11-16T02:00:00+00:00"  # the run for 2026-11-15 02:00 .. 2026-11-16 02:00 UTC
STAGED_FILES = 20


def out(message: str = "") -> None:
    print(message, flush=True)


# --- inputs ------------------------------------------------------------------------------------
def staged_batch(files: int = STAGED_FILES) -> dict[str, bytes]:
    """``files`` uploads made from the bundled IMDb sample: name -> content.

    The rows of ``title.basics`` and ``name.basics`` (real IMDb slices, ``include/imdb_sample``)
    become JSON objects keyed by IMDb's column names, split into ``files - 2`` JSON Lines files
    of about equal size (``imdb/part-NN.jsonl``); ``bad/broken-line.jsonl`` has one truncated line
    among good ones and ``bad/empty.jsonl`` is empty, so both are quarantined.
    """
    rows: list[bytes] = []
    for name in ("title.basics", "name.basics"):
        with gzip.open(SAMPLE_DIR / f"{name}.tsv.gz", "rt", encoding="utf-8") as fh:
            header = fh.readline().rstrip("\n").split("\t")
            for line in fh:
                values = line.rstrip("\n").split("\t")
                rows.append(json.dumps(dict(zip(header, values, strict=False)), ensure_ascii=False).encode())
    good = files - 2
    batch = {f"imdb/part-{i:02d}.jsonl": b"".join(r + b"\n" for r in rows[i::good]) for i in range(good)}
    batch["bad/broken-line.jsonl"] = rows[0] + b"\n" + rows[1][: len(rows[1]) // 2] + b"\n" + rows[2] + b"\n"
    batch["bad/empty.jsonl"] = b""
    return batch


def put_batch(root: str, batch: dict[str, bytes]) -> None:
    """Put each file of ``batch`` under ``<root>/uploads/``, as from ``aws s3 cp``."""
    import io

    from dataset_ops.storage import open_storage

    storage = open_storage(root)
    for name, content in batch.items():
        storage.write_stream(f"uploads/{name}", io.BytesIO(content))


# --- results -----------------------------------------------------------------------------------
def staging_outcome(root: str) -> dict[str, dict]:
    """What staging made of every file under ``root``: name -> state, data_type, size, sha256,
    records, errors, error_summary, the sha256 of its ``fresh/`` copy and its error report
    (without ``checked_at`` and ``elapsed_seconds``). Timings and timestamps differ between runs
    and are left out."""
    from dataset_ops.staging.status import FRESH, list_statuses
    from dataset_ops.staging.tasks import report_key
    from dataset_ops.storage import file_sha256, open_storage, read_json

    storage = open_storage(root)
    outcome = {}
    for status in list_statuses(storage):
        report = read_json(storage, report_key(status.name)) if status.report_key else None
        for timing in ("checked_at", "elapsed_seconds"):
            (report or {}).pop(timing, None)
        fresh = f"{FRESH}/{status.name}"
        outcome[status.name] = {
            "state": status.state,
            "data_type": status.data_type,
            "size": status.size,
            "sha256": status.sha256,
            "records": status.records,
            "errors": status.errors,
            "error_summary": status.error_summary,
            "fresh_sha256": file_sha256(storage, fresh) if storage.exists(fresh) else None,
            "report": report,
        }
    return outcome


def lake_snapshot(root: str) -> dict[str, str]:
    """Every key of the data lake under ``root`` (the run-specific ``_metrics/`` and
    ``_manifest.json`` aside) -> sha256 of its bytes."""
    from dataset_ops.storage import file_sha256, open_storage

    lake = open_storage(root)
    return {
        key: file_sha256(lake, key)
        for key in sorted(lake.list(""))
        if not key.startswith("_metrics/") and not key.endswith("_manifest.json")
    }


def imdb_tables(url: str) -> dict[str, tuple[int, str]]:
    """Tables of schema ``imdb`` (``load_history`` aside) -> (rows, md5 of the sorted row texts)."""
    import psycopg

    with psycopg.connect(url) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'imdb' "
                "AND table_name <> 'load_history' ORDER BY table_name"
            )
        ]
        return {
            t: conn.execute(
                "SELECT count(*), md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), ''))"
                f" FROM imdb.{t} r"
            ).fetchone()
            for t in tables
        }


def placement(task_instances: list[dict]) -> dict[str, list[str]]:
    """Host name -> labels (``task`` or ``task[map_index]``) of the task instances it ran."""
    hosts: dict[str, list[str]] = defaultdict(list)
    for ti in task_instances:
        if ti.get("hostname"):
            label = ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]"
            hosts[ti["hostname"]].append(label)
    return dict(sorted(hosts.items()))


def compare(name: str, distributed, single) -> bool:
    """Print whether ``distributed`` equals ``single`` (and the first keys that differ)."""
    if distributed == single:
        out(f"  {name}: same ({len(distributed)} entries)")
        return True
    if isinstance(distributed, dict) and isinstance(single, dict):
        keys = sorted(k for k in distributed.keys() | single.keys() if distributed.get(k) != single.get(k))
        out(f"  {name}: DIFFERENT for {len(keys)} entries, e.g. {keys[:5]}")
        first_d, first_s = distributed.get(keys[0]), single.get(keys[0])
        out(f"    {keys[0]}: distributed {str(first_d)[:600]}\n    single-machine {str(first_s)[:600]}")
    else:
        out(f"  {name}: DIFFERENT")
    return False


# --- runs --------------------------------------------------------------------------------------
RUNS = (  # (dag_id, logical date, conf)
    ("imdb_download", None, {}),
    ("imdb_load", None, {}),
    ("staged_upload_validation", None, {}),
    ("microservice_ingest", INGEST_DATE, {}),
)


def run_distributed(stack: AirflowStack) -> tuple[bool, set[str]]:
    """Trigger each of :data:`RUNS` in turn and wait for it; print state, time and placement."""
    ok, hosts_used = True, set()
    for dag_id, logical_date, conf in RUNS:
        started = time.monotonic()
        run_id = stack.trigger(dag_id, conf, logical_date)
        state = stack.wait_for_run(dag_id, run_id, timeout=900)
        elapsed = time.monotonic() - started
        where = placement(stack.task_instances(dag_id, run_id))
        hosts_used |= where.keys()
        ok &= state == "success"
        out(f"  {dag_id}: {state} in {elapsed:.1f} s")
        for host, labels in where.items():
            out(f"    {host}: {len(labels)} tasks: {', '.join(labels)}")
    return ok, hosts_used


def run_single(env: dict[str, str], home: Path) -> bool:
    """The same runs with ``airflow dags test`` on a SQLite home (one process per run)."""
    env = {
        **env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "False",
    }
    migrated = subprocess.run(
        [AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    if migrated.returncode != 0:
        raise StackError(f"airflow db migrate of the single-machine home failed:\n{migrated.stderr[-3000:]}")
    ok = True
    for dag_id, logical_date, conf in RUNS:
        started = time.monotonic()
        argv = [
            AIRFLOW,
            "dags",
            "test",
            dag_id,
            *([logical_date] if logical_date else []),
            "-c",
            json.dumps(conf),
        ]
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        state = "success" if result.returncode == 0 else f"failed (exit {result.returncode})"
        out(f"  {dag_id}: {state} in {time.monotonic() - started:.1f} s (airflow dags test)")
        if result.returncode != 0:
            out(result.stdout[-2000:] + result.stderr[-2000:])
            ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (default 2)")
    parser.add_argument("--concurrency", type=int, default=1, help="task slots per worker (default 1)")
    parser.add_argument("--skip-single", action="store_true", help="no single-machine reference run")
    parser.add_argument("--keep", action="store_true", help="leave the stack running until Ctrl-C")
    args = parser.parse_args(argv)

    from helpers.http_server import FileServer
    from helpers.inventory_server import InventoryServer

    shutil.rmtree(BASE, ignore_errors=True)
    BASE.mkdir(parents=True)
    s3_server = SeaweedFS(log=BASE / "seaweedfs.log")
    try:
        s3_server.start()
    except SeaweedFSError as exc:
        out(f"error: {exc}")
        return 1
    endpoint = s3_server.endpoint
    # this process reads the results through the same Connection; Airflow's INFO lines stay out
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
    )
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = aws_connection(endpoint)  # for this process's checks
    samples, inventory = FileServer(SAMPLE_DIR), InventoryServer(seed=11, orders=6_000)
    inventory.start()
    try:
        s3_server.create_bucket(BUCKET)
        batch = staged_batch()
        common = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(endpoint),
            "AIRFLOW_VAR_IMDB_BASE_URL": samples.url,
            **{
                f"AIRFLOW_CONN_{c.upper()}": http_connection(inventory.base_url)
                for c in ("productos_service", "ordenes_service", "proveedores_service")
            },
        }

        def roots(prefix: str, database: str) -> dict[str, str]:
            return {
                "AIRFLOW_CONN_IMDB_POSTGRES": recreate_database(f"{PG_SERVER}/postgres", database),
                "AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT": f"s3://{BUCKET}/{prefix}datasets",
                "AIRFLOW_VAR_STAGING_ROOT": f"s3://{BUCKET}/{prefix}staging",
                "AIRFLOW_VAR_DATALAKE_ROOT": f"s3://{BUCKET}/{prefix}lake",
            }

        dist_env, single_env = (
            {**common, **roots("", "imdb_distributed")},
            {**common, **roots("single/", "imdb_single")},
        )
        put_batch(dist_env["AIRFLOW_VAR_STAGING_ROOT"], batch)
        out(
            f"Starting Airflow (CeleryExecutor, {args.workers} workers x {args.concurrency} slots); "
            f"logs in {BASE / 'stack' / 'logs'}"
        )
        stack = AirflowStack(
            BASE / "stack",
            env=dist_env,
            log_bucket=BUCKET,
            workers=args.workers,
            concurrency=args.concurrency,
        )
        started = time.monotonic()
        with stack:
            out(
                f"  ready in {time.monotonic() - started:.0f} s: {stack.api_url} "
                f"(user admin, password {stack.password})"
            )
            ok, hosts = run_distributed(stack)
            if args.keep:
                out(
                    f"\nThe stack keeps running: {stack.api_url} (admin / {stack.password}). Ctrl-C stops it."
                )
                signal.signal(signal.SIGINT, signal.default_int_handler)
                try:
                    signal.pause()
                except KeyboardInterrupt:
                    pass
        out(f"  workers that ran tasks: {', '.join(sorted(hosts))}")
        ok &= len(hosts) == args.workers
        if not args.skip_single:
            out("Single-machine reference run")
            put_batch(single_env["AIRFLOW_VAR_STAGING_ROOT"], batch)
            with tempfile.TemporaryDirectory(prefix="dataset-ops-single-") as home:
                ok &= run_single(single_env, Path(home))
            out("Distributed vs single-machine results")
            ok &= compare(
                "IMDb tables",
                imdb_tables(dist_env["AIRFLOW_CONN_IMDB_POSTGRES"]),
                imdb_tables(single_env["AIRFLOW_CONN_IMDB_POSTGRES"]),
            )
            ok &= compare(
                "staging outcome",
                staging_outcome(dist_env["AIRFLOW_VAR_STAGING_ROOT"]),
                staging_outcome(single_env["AIRFLOW_VAR_STAGING_ROOT"]),
            )
            ok &= compare(
                "data lake",
                lake_snapshot(dist_env["AIRFLOW_VAR_DATALAKE_ROOT"]),
                lake_snapshot(single_env["AIRFLOW_VAR_DATALAKE_ROOT"]),
            )
        out("OK" if ok else "FAILED")
        return 0 if ok else 1
    except StackError as exc:
        out(f"error: {exc}")
        return 1
    finally:
        inventory.stop()
        samples.close()
        s3_server.stop()


if __name__ == "__main__":
    sys.exit(main())
