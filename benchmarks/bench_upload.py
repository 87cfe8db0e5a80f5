"""Benchmark: ``python -m dataset_ops.upload`` vs boto3 ``upload_file`` (default TransferConfig).

Both upload the same generated file (default 2 GiB of random bytes, cached in
``.data/bench/``, git-ignored) to a SeaweedFS S3 server started as a separate process
(``scripts/seaweedfs.py``, ``weed server -s3``) on 127.0.0.1. Each method runs as its own
subprocess, ``--repeat`` times in rotating rounds; wall time and peak RSS (``ru_maxrss`` of that child, from
``os.wait4``) are measured per run, and the upload is verified (size; for ours also the sha256
of its status record against the file's and the record's ETag against the object's).
Every run gets a fresh server with an empty data folder, so no run pays for an earlier run's
data (with moto, the server used before, a shared server slowed later runs by up to 40%). A
third, diagnostic method runs ``dataset_ops.upload --part-size-mib 16`` to show the part-size
effect. ``--page`` adds the Uploads page (``benchmarks/upload_page.py``: an ``airflow api-server``
with the suite's plugin on the round's server, headless Chromium driven by Playwright; its figure
is the page's own time from the Upload click to Uppy's upload-success, peak RSS not measured).
It prints figures and never asserts.

    .venv/bin/python benchmarks/bench_upload.py [--size-mib 2048] [--repeat 2] [--parallel 4]
        [--diagnostic-part-size-mib 16 (0: skip)] [--page]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".data" / "bench"
MiB = 1 << 20
BUCKET = "bench-upload"
OURS = "dataset_ops.upload"
BOTO3 = "boto3 upload_file"
PAGE = "Uploads page (Chromium, Uppy)"

BOTO3_SCRIPT = """
import sys, time, boto3
from boto3.s3.transfer import TransferConfig
endpoint, path, bucket, key = sys.argv[1:5]
client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="bench", aws_secret_access_key="bench")
started = time.perf_counter()
client.upload_file(path, bucket, key, Config=TransferConfig())
print(time.perf_counter() - started)
"""


def prepare_file(size: int) -> tuple[Path, str]:
    """The cached random file of ``size`` bytes and its sha256 (reading it also warms the page cache)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"upload-{size // MiB}MiB.bin"
    meta = path.with_suffix(".bin.meta.json")
    if path.exists() and path.stat().st_size == size and meta.exists():
        recorded = json.loads(meta.read_text())
        if recorded.get("size") == size and recorded.get("mtime_ns") == path.stat().st_mtime_ns:
            started = time.perf_counter()
            with open(path, "rb") as fh:  # warm the page cache like the generation run does
                while fh.read(16 * MiB):
                    pass
            print(f"input: {path} (cached, read in {time.perf_counter() - started:.1f} s)")
            return path, recorded["sha256"]
    started = time.perf_counter()
    digest = hashlib.sha256()
    tmp = path.with_suffix(".bin.partial")
    with open(tmp, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(16 * MiB, left))
            digest.update(block)
            out.write(block)
            left -= len(block)
    os.replace(tmp, path)
    sha = digest.hexdigest()
    meta.write_text(json.dumps({"size": size, "sha256": sha, "mtime_ns": path.stat().st_mtime_ns}))
    print(f"input: {path} (generated in {time.perf_counter() - started:.1f} s)")
    return path, sha


def start_s3():
    """A fresh, started :class:`seaweedfs.SeaweedFS` (``scripts/seaweedfs.py``) in a temporary
    folder that its ``stop()`` deletes; :class:`seaweedfs.SeaweedFSError` if it does not start."""
    if str(REPO / "scripts") not in sys.path:
        sys.path.insert(0, str(REPO / "scripts"))
    from seaweedfs import SeaweedFS

    server = SeaweedFS(stop_grace=1)  # a throwaway: its data is deleted anyway
    server.start()
    return server


def s3_version() -> str:
    """SeaweedFS's version (``weed version``), for the printed versions line."""
    if str(REPO / "scripts") not in sys.path:
        sys.path.insert(0, str(REPO / "scripts"))
    from seaweedfs import weed_version

    return weed_version().removeprefix("version ")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_of(pid: int) -> float:
    """User + system CPU seconds the process ``pid`` used so far (``/proc/<pid>/stat``)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def run_child(cmd: list[str], env: dict, out: Path) -> tuple[int, float, float, str, float]:
    """Run ``cmd``; returns (exit code, wall seconds, peak RSS MiB of that child, stdout, its CPU
    seconds)."""
    with open(out, "w") as stdout, open(out.with_suffix(".err"), "w") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return proc.returncode, wall, usage.ru_maxrss / 1024, out.read_text(), cpu


def run_page(env: dict, path: Path, home: Path, out: Path) -> tuple[int, float, float, str, float]:
    """The Uploads page method: (0, seconds in the page, NaN, Chromium's CPU seconds by process
    kind as JSON, their sum) or (1, NaN, NaN, error, NaN) with the error also written to
    ``out``'s ``.err`` file."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from upload_page import PageServer, page_upload

    page_env = {**env, "AIRFLOW_VAR_STAGING_ROOT": f"s3://{BUCKET}/staging/"}
    try:
        with PageServer(home, page_env) as server:
            seconds, by_kind = page_upload(server, path)
            return 0, seconds, float("nan"), json.dumps(by_kind), sum(by_kind.values())
    except Exception as exc:
        out.with_suffix(".err").write_text(f"{type(exc).__name__}: {exc}")
        return 1, float("nan"), float("nan"), str(exc), float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048, help="file size in MiB (default 2048)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per method (default 2)")
    parser.add_argument("--parallel", type=int, default=4, help="dataset_ops.upload --parallel (default 4)")
    parser.add_argument(
        "--diagnostic-part-size-mib",
        type=int,
        default=16,
        help="also run dataset_ops.upload with this --part-size-mib, labelled diagnostic (0: skip)",
    )
    parser.add_argument("--page", action="store_true", help="also upload through the Uploads page")
    args = parser.parse_args()

    import boto3
    import botocore
    import s3transfer

    size = args.size_mib * MiB
    path, sha = prepare_file(size)
    home = tempfile.mkdtemp(prefix="bench-upload-airflow-")
    work = Path(tempfile.mkdtemp(prefix="bench-upload-out-"))
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"versions: boto3 {boto3.__version__}, botocore {botocore.__version__}, "
        f"s3transfer {s3transfer.__version__}; SeaweedFS {s3_version()} (server: separate process, HTTP)"
    )
    print(f"file: {size:,} bytes ({args.size_mib} MiB), random; page cache warm; MB = 10^6 bytes\n")

    def ours(endpoint: str, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "dataset_ops.upload", str(path), "--to", f"s3://{BUCKET}/uploads/",
            "--name", "ours.bin", "--parallel", str(args.parallel), *extra,
        ]  # fmt: skip

    methods = {
        OURS: (ours, "uploads/ours.bin"),
        BOTO3: (
            lambda endpoint: [sys.executable, "-c", BOTO3_SCRIPT, endpoint, str(path), BUCKET, "boto3.bin"],
            "boto3.bin",
        ),
    }
    if args.diagnostic_part_size_mib:
        diag = f"{OURS} --part-size-mib {args.diagnostic_part_size_mib} (diagnostic)"
        methods[diag] = (
            lambda endpoint: ours(endpoint, "--part-size-mib", str(args.diagnostic_part_size_mib)),
            "uploads/ours.bin",
        )
    if args.page:
        methods[PAGE] = (None, f"staging/uploads/{path.name}")
    results: dict[str, list[dict]] = {name: [] for name in methods}
    width = max(len(name) for name in methods)
    try:
        for round_no in range(args.repeat):
            names = list(methods)
            for name in names[round_no % len(names) :] + names[: round_no % len(names)]:
                make_cmd, key = methods[name]
                server = start_s3()
                endpoint = server.endpoint
                try:
                    client = boto3.client(
                        "s3",
                        endpoint_url=endpoint,
                        region_name="us-east-1",
                        aws_access_key_id="bench",
                        aws_secret_access_key="bench",
                    )
                    client.create_bucket(Bucket=BUCKET)
                    env = {
                        **os.environ,
                        "AIRFLOW_HOME": home,
                        "AWS_ACCESS_KEY_ID": "bench",
                        "AWS_SECRET_ACCESS_KEY": "bench",
                        "PYTHONPATH": str(REPO / "plugins"),
                        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                            {
                                "conn_type": "aws",
                                "login": "bench",
                                "password": "bench",
                                "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
                            }
                        ),
                    }
                    out = work / f"method{names.index(name)}-round{round_no}.out"
                    server_cpu = cpu_of(server.pid)
                    if name == PAGE:
                        code, wall, rss, stdout, cpu = run_page(env, path, Path(home) / "page", out)
                    else:
                        code, wall, rss, stdout, cpu = run_child(make_cmd(endpoint), env, out)
                    server_cpu = cpu_of(server.pid) - server_cpu
                    head = client.head_object(Bucket=BUCKET, Key=key) if code == 0 else {}
                    ok = code == 0 and head.get("ContentLength") == size
                    note = ""
                    if name.startswith(OURS) and ok:
                        record = json.loads(stdout.strip().splitlines()[-1])  # the status record
                        ok = record["sha256"] == sha and record["etag"] == head.get("ETag")
                        inner = record["timings"]
                        note = f"in-process {inner['upload']:.1f} s (sha256 {inner['hash']:.1f} s alongside)"
                    elif ok and name == PAGE:
                        note = f"click to upload-success, in the page; Chromium CPU by process {stdout}"
                    elif ok:
                        note = f"in-process upload_file {float(stdout.strip()):.1f} s"
                    server_rss = rss_mib(server.pid)
                finally:
                    server.stop()
                results[name].append({"wall": wall, "rss": rss, "ok": ok})
                print(
                    f"round {round_no + 1} {name:{width}s} exit {code}  {'verified' if ok else 'FAILED'}  "
                    f"wall {wall:6.1f} s  {size / 1e6 / wall:6.1f} MB/s  peak RSS {rss:6.1f} MiB  "
                    f"{note}; CPU: {'Chromium' if name == PAGE else 'uploader'} {cpu:.1f} s, "
                    f"SeaweedFS {server_cpu:.1f} s; SeaweedFS RSS after {server_rss:.0f} MiB",
                    flush=True,
                )
                if not ok:
                    print(f"  stderr: {out.with_suffix('.err').read_text()[-2000:]}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    print("\n| method | runs | median wall | median MB/s | best MB/s | peak RSS (max) |")
    print("|---|---:|---:|---:|---:|---:|")
    summary = {}
    for name, runs in results.items():
        good = [r for r in runs if r["ok"]]
        if not good:
            print(f"| {name} | 0 of {len(runs)} ok | | | | |")
            continue
        wall = statistics.median(r["wall"] for r in good)
        best = min(r["wall"] for r in good)
        rss = max(r["rss"] for r in good)
        summary[name] = (size / 1e6 / wall, rss)
        print(
            f"| {name} | {len(good)} | {wall:.1f} s | {size / 1e6 / wall:.1f} | {size / 1e6 / best:.1f} "
            f"| {rss:.0f} MiB |"
        )
    if BOTO3 in summary:
        boto_rate, boto_rss = summary[BOTO3]
        for name, (rate, rss) in summary.items():
            if name == BOTO3:
                continue
            target = " (target >= 1.0x; peak RSS target < 300 MB = 286 MiB)" if name == OURS else ""
            print(
                f"ratio {name} / {BOTO3}: throughput {rate / boto_rate:.2f}x, "
                f"peak RSS {rss / boto_rss:.2f}x ({rss:.0f} MiB){target}"
            )
    if PAGE in summary and OURS in summary:
        print(
            f"ratio {PAGE} / {OURS}: throughput {summary[PAGE][0] / summary[OURS][0]:.2f}x (target >= 0.9x)"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
