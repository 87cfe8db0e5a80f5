"""Benchmark: the same DAG runs on one Celery worker against two (distributed Airflow, 2 cores).

What it measures: the wall time of two workloads on :class:`scripts.airflow_stack.AirflowStack`
(CeleryExecutor, PostgreSQL metadata DB, Redis broker, api-server + scheduler + dag-processor,
task logs on S3), with **one worker** (the baseline) and with **two workers**. A worker is one
``airflow celery worker`` process with ``--concurrency 1`` (one task at a time) in its own UTS
namespace (host name ``worker-N``), own ``AIRFLOW_HOME``, ``TMPDIR`` and working directory.
The figure is the ratio (one worker's time / two workers' time) per workload; the issue's target
is at least 1.6x on this 2-core machine. Everything (Airflow, PostgreSQL, SeaweedFS) shares the cores.

* **IMDb load**: ``imdb_load`` (``plan`` -> seven mapped ``stage`` tasks in the pool
  ``imdb_postgres``, 4 slots -> ``publish``) with conf ``{"force": true}``, from the trigger to the
  run's end. Before it, timed apart and informational only: ``imdb_download`` fetches the seven
  dumps from a local HTTP file server (``tests/helpers/http_server.py``, Variable
  ``imdb_base_url``) into S3 (Variable ``dataset_ops_storage_root``). Target: a fresh PostgreSQL
  database ``dataset_ops_bench_distributed_imdb`` (Connection ``imdb_postgres``) per stack; the
  row count of every ``imdb.<table>`` is checked after each run.
* **Staged batch**: ``staged_upload_validation`` over 20 JSON Lines files put into
  ``uploads/`` of the Variable ``staging_root`` (untimed), from the trigger to the run's end;
  every file's data type is inferred from its name (``.jsonl`` -> rule set ``jsonl``). All 20
  must be in ``fresh/`` with their sizes and ``uploads/`` empty afterwards.

The time of a run is from just before the trigger request to the run's ``end_date`` (same clock).
Each round starts a stack per setup (start-up, about 25 s, is never timed), runs the workloads and
stops it; setups alternate order from round to round; ``--repeat N`` rounds, medians reported.
Printed per run: the time, the checks, CPU seconds used meanwhile by the workers (their process
trees), the scheduler, the api-server, the dag-processor, the SeaweedFS S3 server and PostgreSQL (the
whole server, other databases included) and by the rest of the machine (other people's work),
the load average, the Execution API requests of the tasks (from the api-server's access log),
for the staged batch the median validate/promote seconds of the files' status records, and
where the tasks ran: per worker host name (task instances' ``hostname``) the tasks in order with
durations, seconds inside tasks and the mean gap between them. The summary gives medians, the
ratio, the verdict, and how many cores our processes kept busy with one worker (2 cores / that is
the most two workers can gain). Figures are printed, never asserted.

Settings for both setups (``SETTINGS``; ``--airflow-defaults`` leaves them out):
``[workers] min_heartbeat_interval = 1`` (default 5): the task supervisor otherwise often idles
up to 5 s after a task, in ``select()`` with no sockets left once the task process has closed
them but not yet exited; ``[dag_processor] min_file_process_interval = 600``: no DAG file changes
during a run, so the DAG files are not parsed again every 30 s.

Data (prepared before any timing, cached in ``.data/bench/distributed/data``; provenance in
``../shared/data/PROVENANCE.md``):

* IMDb: the real slices the tests use (``tests/helpers/imdb_data.slice_path``: title.principals
  from ``head-2025-04/``, the other six from ``head-2025-08/``), each scaled to about
  ``--imdb-mb`` MB uncompressed (default 100) so the seven ``stage`` tasks are of comparable
  size: ``title.basics`` by :func:`bench_imdb_copy.generate_basics` (rows repeated, ``tconst`` =
  ``tt`` + unique counter); the six others by repeating the slice's data rows with the first
  field (the key: ``tconst``/``titleId``/``nconst``) rewritten per repetition, ``tt0000001`` ->
  ``tt<3-digit repetition>0000001``; every other byte unchanged. Gzip level 6.
* Uploads: real JSON Lines, ``ml/gsm8k_train.jsonl`` (7,473 records) and
  ``ml/newsgroups6_train.jsonl.gz`` decompressed (3,441 records), each repeated whole to about
  ``--upload-mb`` MB (default 150, about 2 s of task each): 10 files of each,
  ``gsm8k/part-NN.jsonl`` and ``newsgroups/part-NN.jsonl``.

Services: PostgreSQL on 127.0.0.1:5432 (user ``postgres``, trust), Redis on 127.0.0.1:6379 (database
8), a SeaweedFS S3 server started here (``scripts/seaweedfs.py``), ``unshare`` as root. The metadata
database is ``dataset_ops_bench_distributed`` (dropped at the end with the target database);
stack homes and component logs are in ``.data/bench/distributed/stack`` (emptied at each start).

Run: ``make bench-distributed [BENCH_ARGS=...]`` or
``.venv/bin/python benchmarks/bench_distributed.py [--repeat 3] [--imdb-mb 100] [--upload-mb 150]
[--workloads imdb staged] [--setups 1 2] [--airflow-defaults] [--env AIRFLOW__SECTION__KEY=value]``.
About 6 minutes a round.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import math
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
for _sub in ("plugins", "scripts", "tests", "benchmarks"):
    sys.path.insert(0, str(REPO / _sub))

import psycopg  # noqa: E402
from airflow_stack import AirflowStack, StackError, recreate_database  # noqa: E402
from bench_imdb_copy import _read_meta, _write_meta, generate_basics  # noqa: E402
from helpers.http_server import FileServer  # noqa: E402
from helpers.imdb_data import SHARED_DATA, slice_path  # noqa: E402
from seaweedfs import SeaweedFS, SeaweedFSError  # noqa: E402

from dataset_ops.imdb.datasets import IMDB_FILE_NAMES, imdb_file  # noqa: E402

BENCH = REPO / ".data" / "bench" / "distributed"
DATA = BENCH / "data"
STACK_BASE = BENCH / "stack"
METADATA_DB = "dataset_ops_bench_distributed"
TARGET_DB = "dataset_ops_bench_distributed_imdb"
REDIS_DB = 8
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BUCKET = "dataset-ops-bench-distributed"
GENERATOR_VERSION = 1
UPLOADS = 20
TARGET_RATIO = 1.6
#: Given to every component in both setups unless --airflow-defaults (see the module doc).
SETTINGS = {
    # The task supervisor waits up to this long (default 5 s) in select() once the task process
    # has closed its sockets but not yet exited: ~5 s of idle worker after many tasks.
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
    # No DAG file changes during a benchmark: re-parse every 10 min instead of every 30 s.
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
}
MB = 1_000_000
TICK = os.sysconf("SC_CLK_TCK")


# --- inputs -------------------------------------------------------------------------------------


def scale_dump(name: str, target_bytes: int) -> tuple[Path, int]:
    """``<name>.tsv.gz`` of about ``target_bytes`` uncompressed, from the real slice, cached.

    ``title.basics`` comes from :func:`bench_imdb_copy.generate_basics`. For the others the slice's
    data rows are repeated whole; in repetition ``r`` the first field (the key) gets ``%03d % r``
    after its two-letter prefix, so keys stay unique (the slices' ids have 7 or 8 digits).

    :returns: the gzipped file and its data rows.
    """
    src = slice_path(name)
    if name == "title.basics":
        rows_in_slice = src.read_bytes().count(b"\n")  # header + data rows (the slice ends with \n)
        per_row = src.stat().st_size / rows_in_slice
        bf = generate_basics(max(1, round(target_bytes / per_row)))
        return bf.gz, bf.rows
    data = src.read_bytes()
    lines = data.splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    if not rows[-1].endswith(b"\n"):
        rows[-1] += b"\n"
    reps = max(1, math.ceil(target_bytes / len(data)))
    if reps > 1000:
        raise SystemExit(f"--imdb-mb too large for {name}: {reps} repetitions of the slice (at most 1000)")
    gz = DATA / f"{name}.x{reps}.tsv.gz"
    meta_path = gz.with_name(gz.name + ".meta.json")
    key = {"generator": GENERATOR_VERSION, "source": str(src), "source_bytes": len(data), "reps": reps}
    meta = _read_meta(meta_path)
    if meta and all(meta.get(k) == v for k, v in key.items()) and gz.exists():
        if gz.stat().st_size == meta.get("gz_bytes"):
            return gz, meta["rows"]
    print(f"prepare: {gz.relative_to(REPO)} ({reps} x {len(rows):,} rows of {src.name})", flush=True)
    expected = imdb_file(name).header
    if header.rstrip(b"\r\n") != expected:
        raise SystemExit(f"{src}: unexpected header {header[:200]!r}")
    pairs = [(line[:2], line[2:]) for line in rows]
    tmp = gz.with_name(gz.name + ".tmp")
    with gzip.open(tmp, "wb", compresslevel=6) as out:
        out.write(header)
        for r in range(reps):
            tag = b"%03d" % r
            out.write(b"".join(head + tag + tail for head, tail in pairs))
    tmp.replace(gz)
    meta = {**key, "rows": reps * len(rows), "gz_bytes": gz.stat().st_size}
    _write_meta(meta_path, meta)
    return gz, meta["rows"]


def prepare_imdb(target_bytes: int) -> tuple[Path, dict[str, int]]:
    """The folder the file server serves (``<name>.tsv.gz`` symlinks) and the rows per dump."""
    DATA.mkdir(parents=True, exist_ok=True)
    www = DATA / "www"
    shutil.rmtree(www, ignore_errors=True)
    www.mkdir()
    rows = {}
    for name in IMDB_FILE_NAMES:
        gz, rows[name] = scale_dump(name, target_bytes)
        (www / f"{name}.tsv.gz").symlink_to(gz.resolve())
    return www, rows


def prepare_uploads(target_bytes: int) -> dict[str, bytes]:
    """The 20 staged files: name -> content (real JSON Lines repeated whole to ~target_bytes)."""
    sources = {
        "gsm8k": (SHARED_DATA / "ml" / "gsm8k_train.jsonl").read_bytes(),
        "newsgroups": gzip.decompress((SHARED_DATA / "ml" / "newsgroups6_train.jsonl.gz").read_bytes()),
    }
    contents = {key: data * max(1, round(target_bytes / len(data))) for key, data in sources.items()}
    keys = list(sources)
    return {f"{keys[i % 2]}/part-{i:02d}.jsonl": contents[keys[i % 2]] for i in range(UPLOADS)}


# --- services -----------------------------------------------------------------------------------


class S3Server(SeaweedFS):
    """The SeaweedFS S3 server (:class:`seaweedfs.SeaweedFS`; :attr:`pid` for CPU accounting)
    with the listing and clean-up the benchmark needs."""

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object below ``prefix`` (keeps the server's memory and disk small)."""
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                self.s3.delete_objects(Bucket=BUCKET, Delete={"Objects": objects, "Quiet": True})

    def objects(self, prefix: str) -> dict[str, int]:
        """Key (below ``prefix``) -> size."""
        out = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for o in page.get("Contents", []):
                out[o["Key"][len(prefix) :]] = o["Size"]
        return out


def recreate_target_db() -> None:
    """A fresh, empty IMDb target database (before each stack; untimed)."""
    recreate_database(PG_ADMIN, TARGET_DB)


def drop_databases() -> None:
    """Drop the IMDb target and the metadata database at the end."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        for db in (TARGET_DB, METADATA_DB):
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def postmaster_pid() -> int | None:
    """PID of the PostgreSQL server's main process (a ``postgres`` whose parent is not one)."""
    procs = _read_procs()
    for pid, (ppid, comm, _) in procs.items():
        if comm == "postgres" and procs.get(ppid, (0, "", 0))[1] != "postgres":
            return pid
    return None


# --- CPU accounting -----------------------------------------------------------------------------


def _read_procs() -> dict[int, tuple[int, str, int]]:
    """pid -> (ppid, comm, CPU ticks of the process and its reaped children)."""
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2 :].split()
        procs[int(entry)] = (int(rest[1]), comm, sum(int(x) for x in rest[11:15]))
    return procs


def tree_cpu(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each root process and its descendants (live ones, plus what reaped
    ones used: ``cutime``/``cstime``), by label."""
    procs = _read_procs()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for label, root in roots.items():
        total, todo = 0, [root]
        while todo:
            pid = todo.pop()
            if pid in procs:
                total += procs[pid][2]
                todo.extend(children.get(pid, []))
        out[label] = total / TICK
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine since boot, from ``/proc/stat``."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return (total - idle) / TICK, total / TICK


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- runs ---------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """One timed DAG run.

    ``seconds``: from just before the trigger request (this machine's clock) to the run's
    ``end_date`` (the same clock: the api-server runs here), i.e. trigger to final state.
    """

    workload: str
    workers: int
    round: int
    state: str
    seconds: float
    run_seconds: float | None  # the run's own start_date -> end_date
    tis: list[dict]
    cpu: dict[str, float]  # CPU seconds per component while the run went on
    busy_cores: float  # the whole machine's average busy cores meanwhile
    machine_busy: float  # CPU seconds the whole machine used meanwhile
    load_before: str
    load_after: str
    triggered: datetime
    ended: datetime | None
    checks: list[str] = field(default_factory=list)
    ok: bool = True
    steps: dict[str, float] = field(default_factory=dict)  # median seconds per step inside the tasks
    api_requests: int = 0  # Execution API requests the api-server finished during the run
    api_seconds: float = 0.0  # their summed server-side durations
    informational: bool = False  # not a workload of the target (imdb_download)


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def timed_run(
    stack: AirflowStack, dag_id: str, conf: dict, roots: dict[str, int], workers: int, rnd: int
) -> RunResult:
    """Trigger ``dag_id``, wait for its final state (polled every second: the time itself comes
    from the run's ``end_date``), and collect its task instances and the CPU used meanwhile."""
    load_before = loadavg()
    cpu0, (busy0, total0) = tree_cpu(roots), machine_cpu()
    triggered = datetime.now(UTC)
    run_id = stack.trigger(dag_id, conf)
    state = stack.wait_for_run(dag_id, run_id, timeout=3600)
    cpu1, (busy1, total1) = tree_cpu(roots), machine_cpu()
    run = stack.get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
    start, end = _ts(run.get("start_date")), _ts(run.get("end_date"))
    cores = os.cpu_count() or 1
    api_requests, api_seconds = execution_api_stats(stack, triggered, end)
    return RunResult(
        workload=dag_id,
        workers=workers,
        round=rnd,
        state=state,
        seconds=(end - triggered).total_seconds() if end else float("nan"),
        run_seconds=(end - start).total_seconds() if start and end else None,
        tis=stack.task_instances(dag_id, run_id),
        cpu=summarise_cpu({k: cpu1[k] - cpu0[k] for k in cpu0}),
        busy_cores=(busy1 - busy0) / (total1 - total0) * cores if total1 > total0 else float("nan"),
        machine_busy=busy1 - busy0,
        load_before=load_before,
        load_after=loadavg(),
        triggered=triggered,
        ended=end,
        api_requests=api_requests,
        api_seconds=api_seconds,
    )


def execution_api_stats(stack: AirflowStack, start: datetime, end: datetime | None) -> tuple[int, float]:
    """Requests to ``/execution/`` (the tasks' calls) the api-server's access log shows finished
    between ``start`` and ``end``, and the sum of their ``duration_us``."""
    count, seconds = 0, 0.0
    with contextlib.suppress(OSError), open(stack.base / "logs" / "api-server.log", errors="replace") as log:
        for line in log:
            if "duration_us=" not in line or " path=/execution/" not in line:
                continue
            try:
                at = datetime.fromisoformat(line.split(" ", 1)[0])
            except ValueError:
                continue
            if at >= start and (end is None or at <= end):
                count += 1
                seconds += int(line.split("duration_us=", 1)[1].split(" ", 1)[0]) / 1e6
    return count, seconds


def component_roots(stack: AirflowStack, s3: S3Server, postmaster: int | None) -> dict[str, int]:
    """Label -> root PID of every process tree whose CPU is reported."""
    roots = {component.name: component.proc.pid for component in stack.components}
    roots["seaweedfs"] = s3.pid
    if postmaster:
        roots["postgres"] = postmaster
    return roots


def summarise_cpu(cpu: dict[str, float]) -> dict[str, float]:
    """Worker entries summed into ``workers``."""
    out = {"workers": sum(v for k, v in cpu.items() if k.startswith("worker-"))}
    out.update({k: v for k, v in cpu.items() if not k.startswith("worker-")})
    return out


def run_imdb(
    stack: AirflowStack, s3: S3Server, roots, rows: dict[str, int], workers: int, rnd: int
) -> tuple[RunResult, RunResult]:
    """``imdb_download`` (timed apart, informational), then the timed ``imdb_load``; row counts of
    the seven tables checked in the target database."""
    dl = timed_run(stack, "imdb_download", {}, roots, workers, rnd)
    dl.informational = True
    downloaded = sum(t["state"] == "success" for t in dl.tis if t["task_id"] == "download")
    dl.checks.append(f"{downloaded} of 7 files downloaded")
    print(
        f"  imdb_download (informational): {dl.state} in {dl.seconds:.1f} s, {downloaded} of 7 files",
        flush=True,
    )
    if dl.state != "success" or downloaded != 7:
        raise StackError(f"imdb_download ended {dl.state}; logs in {STACK_BASE / 'logs'}")
    result = timed_run(stack, "imdb_load", {"force": True}, roots, workers, rnd)
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{TARGET_DB}", autocommit=True) as conn:
        for name, expected in rows.items():
            table = imdb_file(name).table
            try:
                got = conn.execute(f"SELECT count(*) FROM imdb.{table}").fetchone()[0]
            except psycopg.Error as exc:
                got = f"error: {exc}".strip()
            if got != expected:
                result.ok = False
                result.checks.append(f"imdb.{table}: {got} rows, expected {expected:,}")
    if result.ok:
        result.checks.append(f"row counts of all 7 tables right ({sum(rows.values()):,} rows)")
    s3.delete_prefix(f"{stack_prefix(workers, rnd)}/datasets/")
    return dl, result


def run_staged(
    stack: AirflowStack, s3: S3Server, roots, uploads: dict[str, bytes], workers: int, rnd: int
) -> RunResult:
    """Put the 20 files into uploads/ (untimed), then the timed ``staged_upload_validation``;
    checks that all 20 are in fresh/ with their sizes and uploads/ is empty."""
    root = f"{stack_prefix(workers, rnd)}/staging"
    for name, content in uploads.items():
        s3.s3.upload_fileobj(io.BytesIO(content), BUCKET, f"{root}/uploads/{name}")
    result = timed_run(stack, "staged_upload_validation", {}, roots, workers, rnd)
    fresh, left = s3.objects(f"{root}/fresh/"), s3.objects(f"{root}/uploads/")
    wrong = [n for n, c in uploads.items() if fresh.get(n) != len(c)]
    if wrong or left or len(fresh) != UPLOADS:
        result.ok = False
        result.checks.append(
            f"fresh/ has {len(fresh)} files ({len(wrong)} missing or of the wrong size), uploads/ {len(left)}"
        )
    else:
        total = sum(len(c) for c in uploads.values())
        result.checks.append(
            f"all {UPLOADS} files in fresh/ with their sizes ({total / MB:,.0f} MB), uploads/ empty"
        )
    timings: dict[str, list[float]] = {}
    for key in s3.objects(f"{root}/_status/"):
        body = s3.s3.get_object(Bucket=BUCKET, Key=f"{root}/_status/{key}")["Body"].read()
        for step, secs in (json.loads(body).get("timings") or {}).items():
            timings.setdefault(step, []).append(secs)
    result.steps = {step: statistics.median(v) for step, v in timings.items()}
    s3.delete_prefix(f"{root}/")
    return result


def stack_prefix(workers: int, rnd: int) -> str:
    """Key prefix of one stack's storage and staging roots in the bucket."""
    return f"r{rnd}-w{workers}"


# --- report -------------------------------------------------------------------------------------


def print_run(r: RunResult) -> None:
    """The run's time, checks, CPU per component, and where and when its tasks ran."""
    print(
        f"  {r.workload}: {r.state} in {r.seconds:.1f} s from the trigger (run start to end "
        f"{r.run_seconds:.1f} s); load {r.load_before} -> {r.load_after}; machine "
        f"{r.busy_cores:.2f} of {os.cpu_count()} cores busy on average",
        flush=True,
    )
    for check in r.checks:
        print(f"    check: {check}")
    if r.steps:
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in r.steps.items())
        print(f"    inside each task (median of the status records' timings): {steps}")
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r.cpu.items(), key=lambda kv: -kv[1]))
    ours = sum(r.cpu.values())
    print(
        f"    CPU seconds meanwhile: {cpu} (postgres: the whole server); sum {ours:.1f}, rest of the "
        f"machine {r.machine_busy - ours:.1f}, of {r.seconds * (os.cpu_count() or 1):.0f} available"
    )
    tis = [t for t in r.tis if t.get("start_date") and t.get("end_date")]
    if not tis:
        return
    print(
        f"    Execution API: {r.api_requests} requests from the tasks "
        f"({r.api_requests / len(tis):.0f} per task), {r.api_seconds:.1f} s of summed server time"
    )
    hosts: dict[str, list[dict]] = {}
    for ti in sorted(tis, key=lambda t: t["start_date"]):
        hosts.setdefault(ti.get("hostname") or "?", []).append(ti)
    for host, mine in sorted(hosts.items()):
        busy = sum(t.get("duration") or 0 for t in mine)
        gaps = [
            (_ts(b["start_date"]) - _ts(a["end_date"])).total_seconds()
            for a, b in zip(mine, mine[1:], strict=False)
        ]
        gap = f"; between its tasks {statistics.mean(gaps):.1f} s on average" if gaps else ""
        print(
            f"    {host}: {len(mine)} tasks, {busy:.1f} s inside tasks "
            f"({busy / r.seconds:.0%} of the time){gap}"
        )
        print(f"      {', '.join(_label(t) for t in mine)}")
    first = min(_ts(t["start_date"]) for t in tis)
    last = max(_ts(t["end_date"]) for t in tis)
    waits = [
        (_ts(t["start_date"]) - _ts(t["queued_when"])).total_seconds() for t in tis if t.get("queued_when")
    ]
    durations = [t.get("duration") or 0 for t in tis]
    print(
        f"    trigger -> first task start {(first - r.triggered).total_seconds():.1f} s; "
        f"last task end -> run end "
        f"{(r.ended - last).total_seconds() if r.ended else float('nan'):.1f} s; task durations min "
        f"{min(durations):.1f} median {statistics.median(durations):.1f} max {max(durations):.1f} s; "
        f"queued -> started median {statistics.median(waits) if waits else float('nan'):.1f} s; "
        f"tries > 1: {sum((t.get('try_number') or 1) > 1 for t in tis)}"
    )


def _label(ti: dict) -> str:
    mapped = ti.get("rendered_map_index") or (str(ti["map_index"]) if ti.get("map_index", -1) >= 0 else "")
    name = f"{ti['task_id']}[{mapped}]" if mapped else ti["task_id"]
    return f"{name} {ti.get('duration') or 0:.1f}s"


def print_summary(results: list[RunResult], setups: list[int]) -> None:
    """Median seconds per workload and setup, the ratio against the target, and every run with the
    CPU the rest of the machine used meanwhile (other sessions' work slows a run down)."""
    print("\n=== summary: median seconds from the trigger to the run's end (stack start-up excluded) ===")
    print(
        "worker = one `airflow celery worker --concurrency 1` process (one task at a time); "
        f"{os.cpu_count()} cores; all runs below, in order, in brackets"
    )
    head = " | ".join(f"{w} worker{'s' if w > 1 else ''}" for w in setups)
    print(
        f"| workload | {head} | ratio {setups[0]} / {setups[-1]} | target {TARGET_RATIO}x "
        f"| cores our processes kept busy with {setups[0]} | ceiling {os.cpu_count()} / that |"
    )
    print("|---|" + "---:|" * len(setups) + "---:|---|---:|---:|")
    for workload in dict.fromkeys(r.workload for r in results):
        med, runs = {}, {}
        for w in setups:
            mine = [r for r in results if r.workload == workload and r.workers == w]
            secs = [r.seconds for r in mine if r.ok and r.state == "success"]
            runs[w] = " / ".join(f"{r.seconds:.1f}" for r in mine)
            med[w] = statistics.median(secs) if secs else None
        cells = " | ".join(f"{med[w]:.1f} ({runs[w]})" if med[w] else "failed" for w in setups)
        base, best = med.get(setups[0]), med.get(setups[-1])
        ratio = base / best if base and best else None
        informational = any(r.informational for r in results if r.workload == workload)
        if informational:
            verdict = "(informational)"
        else:
            verdict = ("met" if ratio >= TARGET_RATIO else "NOT met") if ratio else "n/a"
        busy = [
            sum(r.cpu.values()) / r.seconds
            for r in results
            if r.workload == workload and r.workers == setups[0] and r.seconds > 0
        ]
        used = statistics.median(busy) if busy else float("nan")
        print(
            f"| {workload} | {cells} | {f'{ratio:.2f}x' if ratio else 'n/a'} | {verdict} "
            f"| {used:.2f} | {(os.cpu_count() or 1) / used:.2f}x |"
        )
    print("\nruns: | round | workers | workload | seconds | our CPU-s | other CPU-s | load before |")
    for r in results:
        ours = sum(r.cpu.values())
        print(
            f"| {r.round + 1} | {r.workers} | {r.workload} | {r.seconds:.1f} | {ours:.1f} | "
            f"{r.machine_busy - ours:.1f} | {r.load_before} |"
        )
    bad = [r for r in results if not r.ok or r.state != "success"]
    if bad:
        print(
            "failed checks: "
            + "; ".join(f"{r.workload} w{r.workers} r{r.round + 1}: {r.state} {r.checks}" for r in bad)
        )


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="rounds (a stack per setup and round); medians")
    parser.add_argument("--imdb-mb", type=float, default=100, help="uncompressed MB per IMDb dump (about)")
    parser.add_argument("--upload-mb", type=float, default=150, help="MB per staged file (about)")
    parser.add_argument("--workloads", nargs="+", choices=["imdb", "staged"], default=["imdb", "staged"])
    parser.add_argument(
        "--setups", nargs="+", type=int, default=[1, 2], help="worker counts (first is the baseline)"
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra setting for every component"
    )
    parser.add_argument(
        "--airflow-defaults", action="store_true", help="leave out the benchmark's SETTINGS (module doc)"
    )
    args = parser.parse_args(argv)
    extra_env = {
        **({} if args.airflow_defaults else SETTINGS),
        **dict(item.split("=", 1) for item in args.env),
    }

    print(f"load average at start: {loadavg()}; {os.cpu_count()} cores", flush=True)
    print(f"settings for both setups: {extra_env or 'Airflow defaults'}")
    rows: dict[str, int] = {}
    www = None
    if "imdb" in args.workloads:
        www, rows = prepare_imdb(int(args.imdb_mb * MB))
        for name in IMDB_FILE_NAMES:
            f = www / f"{name}.tsv.gz"
            print(f"  {name}: {rows[name]:,} rows, {f.stat().st_size / MB:.1f} MB gzipped")
    uploads = prepare_uploads(int(args.upload_mb * MB)) if "staged" in args.workloads else {}
    if uploads:
        sizes = sorted({len(c) for c in uploads.values()})
        print(f"  uploads: {len(uploads)} files of {' / '.join(f'{s / MB:.1f}' for s in sizes)} MB")

    BENCH.mkdir(parents=True, exist_ok=True)
    s3 = S3Server(log=BENCH / "seaweedfs.log")
    try:
        s3.start()
    except SeaweedFSError as exc:
        print(f"\nSTOPPED: {exc}", flush=True)
        return 1
    server = FileServer(www) if www else None
    postmaster = postmaster_pid()
    results: list[RunResult] = []
    failed = False
    try:
        s3.create_bucket(BUCKET)
        conn_aws = json.dumps(
            {
                "conn_type": "aws",
                "login": "bench",
                "password": "bench",
                "extra": {"endpoint_url": s3.endpoint, "region_name": "us-east-1"},
            }
        )
        for rnd in range(args.repeat):
            order = args.setups if rnd % 2 == 0 else list(reversed(args.setups))
            for workers in order:
                prefix = stack_prefix(workers, rnd)
                env = {
                    "AIRFLOW_CONN_AWS_DEFAULT": conn_aws,
                    "AWS_ACCESS_KEY_ID": "bench",
                    "AWS_SECRET_ACCESS_KEY": "bench",
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "AIRFLOW_CONN_IMDB_POSTGRES": f"postgresql://postgres@127.0.0.1:5432/{TARGET_DB}",
                    "AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT": f"s3://{BUCKET}/{prefix}/datasets",
                    "AIRFLOW_VAR_STAGING_ROOT": f"s3://{BUCKET}/{prefix}/staging",
                    **({"AIRFLOW_VAR_IMDB_BASE_URL": server.url} if server else {}),
                    **extra_env,
                }
                recreate_target_db()
                print(f"\nround {rnd + 1}, {workers} worker(s): starting the stack (untimed)", flush=True)
                t0 = time.monotonic()
                stack = AirflowStack(
                    STACK_BASE,
                    env=env,
                    log_bucket=BUCKET,
                    workers=workers,
                    concurrency=1,
                    redis_db=REDIS_DB,
                    database=METADATA_DB,
                )
                with stack:
                    print(
                        f"  stack ready in {time.monotonic() - t0:.1f} s "
                        f"(hosts {', '.join(stack.hostnames)})",
                        flush=True,
                    )
                    roots = component_roots(stack, s3, postmaster)
                    if "imdb" in args.workloads:
                        results.extend(run_imdb(stack, s3, roots, rows, workers, rnd))
                        print_run(results[-1])
                    if "staged" in args.workloads:
                        results.append(run_staged(stack, s3, roots, uploads, workers, rnd))
                        print_run(results[-1])
                s3.delete_prefix("airflow-logs/")
    except StackError as exc:
        print(f"\nSTOPPED: {exc}", flush=True)
        failed = True
    finally:
        if server:
            server.close()
        s3.stop()
        with contextlib.suppress(psycopg.Error):
            drop_databases()
    print_summary(results, args.setups)
    print(f"load average at end: {loadavg()}")
    return 0 if not failed and all(r.ok and r.state == "success" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
