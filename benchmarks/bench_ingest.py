"""Benchmark: REST pages -> files in S3, ``dataset_ops.ingest`` against dlt's ``rest_api`` source.

Run: ``make bench-ingest`` (builds dlt 1.31.0 in its own venv, ``.data/bench/dlt``), or
``.venv/bin/python benchmarks/bench_ingest.py [--records 200000] [--latency 0.005] [--repeat 2]
--dlt-python .data/bench/dlt/bin/python``. Prints figures only; never asserts.

Setup, the same for every method: the inventory test server (``tests/helpers/inventory_server.py``)
in its own process serves ``/api/ordenes`` (cursor pagination, 500 records a page) with
``--latency`` seconds of delay per request; each run gets a fresh SeaweedFS S3 server
(``scripts/seaweedfs.py``) in its own process. Each method runs in its own subprocess; the
time is the extraction and landing only (interpreter start and imports excluded for every
method); peak RSS is the worker's ``VmHWM`` (imports included).

Methods:

* ``ours``: :func:`dataset_ops.ingest.extract.ingest_entity` for ``ordenes`` (as a full
  snapshot) with the shipped config: schema validation, primary-key de-duplication, CSV + JSONL
  + Parquet, each published to S3 with a verified atomic publish, plus the metrics object.
* ``dlt rest_api -> filesystem (parquet)`` and ``(jsonl)``: dlt's ``rest_api_source`` with its
  cursor paginator, ``pipeline.run(..., loader_file_format=...)`` into the ``filesystem``
  destination on the same SeaweedFS server (s3fs). jsonl is dlt's default format.
* ``requests loop -> CSV``: a bare ``requests`` loop following the cursor and writing a local
  CSV file: no validation, no S3, no Parquet (the floor).

``ours`` also runs at a quarter of the records to show that its peak RSS does not grow with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_upload import start_s3  # noqa: E402  (same folder)

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "tests" / "helpers" / "inventory_server.py"
BUCKET = "bench-ingest"
PAGE = 500


def _status_mib(field: str = "VmHWM") -> float:
    """``VmHWM`` (peak RSS) or ``VmRSS`` (now) of this process, MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _s3_env(endpoint: str) -> dict:
    return {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {
                "conn_type": "aws",
                "login": "bench",
                "password": "bench",
                "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            }
        ),
    }


# -- workers -------------------------------------------------------------------------------------
def work_ours(base_url: str, endpoint: str) -> dict:
    sys.path.insert(0, str(REPO / "plugins"))
    from datetime import UTC, datetime

    import pyarrow.parquet  # noqa: F401  (imported before the clock, like every method's imports)

    from dataset_ops.ingest.config import load_config
    from dataset_ops.ingest.extract import ingest_entity
    from dataset_ops.ingest.http import make_session
    from dataset_ops.storage import open_storage

    entity = load_config().entity("ordenes").with_overrides(incremental=None, page_size=PAGE)
    storage = open_storage(f"s3://{BUCKET}/ours")
    storage.exists("warm-up")  # creates the S3 client (Airflow Connection lookup) before the clock
    session = make_session(base_url, entity.http)
    start = datetime(2026, 11, 20, 2, tzinfo=UTC)
    before = _status_mib("VmRSS")
    t = time.perf_counter()
    metrics = ingest_entity(entity, session, storage, start, start)
    seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "records": metrics["rows"],
        "pages": metrics["pages"],
        "files": len(metrics["files"]),
        "rss_after_imports_mib": before,
    }


def work_dlt(base_url: str, endpoint: str, fmt: str) -> dict:
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {
                "base_url": base_url,
                "paginator": {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"},
            },
            "resource_defaults": {"write_disposition": "append"},
            "resources": [
                {
                    "name": "ordenes",
                    "endpoint": {"path": "api/ordenes", "data_selector": "data", "params": {"limit": PAGE}},
                }
            ],
        }
    )
    destination = dlt.destinations.filesystem(
        bucket_url=f"s3://{BUCKET}/dlt",
        credentials={
            "aws_access_key_id": "bench",
            "aws_secret_access_key": "bench",
            "endpoint_url": endpoint,
        },
    )
    work = tempfile.mkdtemp(prefix="bench-dlt-")
    pipeline = dlt.pipeline(
        pipeline_name="bench_ingest", destination=destination, dataset_name="inventario", pipelines_dir=work
    )
    t = time.perf_counter()
    info = pipeline.run(source, loader_file_format=fmt)
    seconds = time.perf_counter() - t
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("ordenes", 0)
    shutil.rmtree(work, ignore_errors=True)
    return {"seconds": seconds, "records": rows, "loaded": not info.has_failed_jobs}


def work_requests(base_url: str, endpoint: str) -> dict:
    import csv

    import requests

    rows = 0
    out = tempfile.NamedTemporaryFile("w", suffix=".csv", newline="", encoding="utf-8", delete=False)
    t = time.perf_counter()
    with requests.Session() as http, out:
        writer = csv.writer(out)
        params = {"limit": PAGE}
        header = None
        while True:
            body = http.get(f"{base_url}/api/ordenes", params=params, timeout=(5, 30)).json()
            for record in body["data"]:
                if header is None:
                    header = list(record)
                    writer.writerow(header)
                writer.writerow([record.get(k) for k in header])
                rows += 1
            if not body.get("next_cursor"):
                break
            params = {"limit": PAGE, "cursor": body["next_cursor"]}
    seconds = time.perf_counter() - t
    os.unlink(out.name)
    return {"seconds": seconds, "records": rows}


# -- driver --------------------------------------------------------------------------------------
def _start_server(records: int, latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--orders", str(records), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError(f"inventory server did not start: {url!r}")
    return proc, url


def _run(method: str, python: str, base_url: str, extra_env: dict) -> dict:
    server = start_s3()
    endpoint = server.endpoint
    try:
        server.create_bucket(BUCKET)
        home = tempfile.mkdtemp(prefix="bench-ingest-home-")
        env = {
            **os.environ,
            **_s3_env(endpoint),
            **extra_env,
            "AIRFLOW_HOME": home,
            "PYTHONPATH": str(REPO / "plugins"),
        }
        proc = subprocess.run(
            [python, __file__, "--worker", method, base_url, endpoint],
            capture_output=True,
            text=True,
            env=env,
        )
        shutil.rmtree(home, ignore_errors=True)
        if proc.returncode != 0:
            return {"method": method, "error": proc.stderr.strip()[-600:]}
        return {"method": method, **json.loads(proc.stdout.strip().splitlines()[-1])}
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        method, base_url, endpoint = argv[1:4]
        if method == "ours":
            out = work_ours(base_url, endpoint)
        elif method.startswith("dlt-"):
            out = work_dlt(base_url, endpoint, method.split("-", 1)[1])
        else:
            out = work_requests(base_url, endpoint)
        out["peak_rss_mib"] = _status_mib()
        print(json.dumps(out))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--latency", type=float, default=0.005, help="seconds per request (server side)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dlt-python", help="interpreter with dlt[filesystem,parquet,s3] (skipped without)")
    args = ap.parse_args(argv)

    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}"
    )
    methods = [("ours", sys.executable), ("requests loop -> CSV", sys.executable)]
    if args.dlt_python:
        methods[1:1] = [("dlt-parquet", args.dlt_python), ("dlt-jsonl", args.dlt_python)]
    results: dict[str, list[dict]] = {}
    server, url = _start_server(args.records, args.latency)
    try:
        for round_no in range(args.repeat):
            for name, python in methods[round_no % len(methods) :] + methods[: round_no % len(methods)]:
                r = _run(name if name != "requests loop -> CSV" else "requests", python, url, {})
                results.setdefault(name, []).append(r)
                print(f"round {round_no + 1} {name}: {json.dumps(r)}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    small = args.records // 4
    server, url = _start_server(small, args.latency)
    try:
        r = _run("ours", sys.executable, url, {})
        print(f"ours at {small:,} records: {json.dumps(r)}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(
        f"\n{args.records:,} orders, {PAGE} a page, {args.latency * 1000:.0f} ms latency per request; "
        f"median of {args.repeat}\n"
    )
    print("| method | records | median time | records/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    rates = {}
    for name, runs in results.items():
        ok = sorted((r for r in runs if "seconds" in r), key=lambda r: r["seconds"])
        if not ok:
            print(f"| {name} | failed | - | - | - |  ({runs[-1].get('error', '')[:200]})")
            continue
        med = ok[len(ok) // 2]
        rates[name] = med["records"] / med["seconds"]
        rss = max(r["peak_rss_mib"] for r in ok)
        print(f"| {name} | {med['records']:,} | {med['seconds']:.2f} s | {rates[name]:,.0f} | {rss:.0f} |")
    if "ours" in rates:
        for name in ("dlt-parquet", "dlt-jsonl"):
            if name in rates:
                ratio = rates["ours"] / rates[name]
                print(f"ours vs {name}: {ratio:.2f}x (target >= 2x: {'met' if ratio >= 2 else 'NOT met'})")
        if "seconds" in r:
            big = max(x["peak_rss_mib"] for x in results["ours"] if "seconds" in x)
            base = max(x["rss_after_imports_mib"] for x in results["ours"] if "seconds" in x)
            print(
                f"ours peak RSS: {big:.0f} MiB at {args.records:,} records, {r['peak_rss_mib']:.0f} MiB at "
                f"{small:,} (target < 150 MB, flat); {base:.0f} MiB of it is the process after its imports "
                f"(Airflow for the S3 Connection, boto3, pyarrow), before the first request"
            )


if __name__ == "__main__":
    main()
