"""Benchmark: media downloads of an Apify dataset, ``MediaDownloader`` against a sequential
``requests`` loop (what the ads team's old code did).

Run: ``make bench-media`` or ``.venv/bin/python benchmarks/bench_media.py [--files 500]
[--latency 0.05] [--workers 16] [--repeat 2]``. Prints figures only; never asserts.

The local Apify API server (``tests/helpers/apify_server.py``, its own process) serves the run's
items with ``--files`` distinct image URLs, every media request delayed by ``--latency``
seconds. Each method runs in its own subprocess, downloads every file into an empty folder,
and reports files/s (work only, imports excluded) and its peak RSS (``VmHWM``). Ours verifies
every file (status, Content-Type, size against Content-Length, sha256 recorded); the loop only
writes what it gets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "tests" / "helpers" / "apify_server.py"
RUN_ID, TOKEN = "HG7ML7M8z78YcAPEB", "test-token"


def _peak_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _refs(base_url: str):
    sys.path.insert(0, str(REPO / "plugins"))
    from apify_client import ApifyClient

    from dataset_ops.apify.media import media_refs

    client = ApifyClient(token=TOKEN, api_url=base_url)
    dataset_id = client.run(RUN_ID).get().default_dataset_id
    refs = {}
    for item in client.dataset(dataset_id).iterate_items():
        for ref in media_refs(item):
            refs.setdefault(ref.url, ref)
    return list(refs.values())


def work(method: str, base_url: str, files: int, workers: int) -> dict:
    refs = _refs(base_url)[:files]
    folder = Path(tempfile.mkdtemp(prefix="bench-media-"))
    if method == "ours":
        from dataset_ops.apify.download import MediaDownloader

        downloader = MediaDownloader(folder, workers=workers)
        t = time.perf_counter()
        results = downloader.run(refs)
        seconds = time.perf_counter() - t
        ok = sum(1 for r in results if r.status == "downloaded" and r.sha256)
    else:
        import requests

        t = time.perf_counter()
        ok = 0
        with requests.Session() as http:
            for ref in refs:
                response = http.get(ref.url, timeout=(5, 30))
                if response.status_code == 200:
                    (folder / ref.name).write_bytes(response.content)
                    ok += 1
        seconds = time.perf_counter() - t
    stored = sum(f.stat().st_size for f in folder.iterdir())
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    return {"seconds": seconds, "files": len(refs), "ok": ok, "bytes": stored, "peak_rss_mib": _peak_mib()}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        print(json.dumps(work(argv[1], argv[2], int(argv[3]), int(argv[4]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per media request (server side)")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    server = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--media-latency", str(args.latency),
         "--media-count", str(args.files)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = server.stdout.readline().strip()
    results: dict[str, list[dict]] = {}
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    try:
        for round_no in range(args.repeat):
            for method in ["ours", "sequential"] if round_no % 2 == 0 else ["sequential", "ours"]:
                proc = subprocess.run(
                    [sys.executable, __file__, "--worker", method, url, str(args.files), str(args.workers)],
                    capture_output=True, text=True, env=env,
                )  # fmt: skip
                r = (
                    json.loads(proc.stdout.strip().splitlines()[-1])
                    if proc.returncode == 0
                    else {"error": proc.stderr[-500:]}
                )
                results.setdefault(method, []).append(r)
                print(f"round {round_no + 1} {method}: {json.dumps(r)}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"\n{args.files} files, {args.latency * 1000:.0f} ms latency per request, {args.workers} workers\n")
    print("| method | files ok | median time | files/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    rates = {}
    for method, runs in results.items():
        ok = sorted((r for r in runs if "seconds" in r), key=lambda r: r["seconds"])
        if not ok:
            print(f"| {method} | failed | - | - | - |")
            continue
        med = ok[len(ok) // 2]
        rates[method] = med["files"] / med["seconds"]
        print(
            f"| {method} | {med['ok']}/{med['files']} | {med['seconds']:.2f} s | {rates[method]:.1f} | "
            f"{max(r['peak_rss_mib'] for r in ok):.0f} |"
        )
    if "ours" in rates and "sequential" in rates:
        ratio = rates["ours"] / rates["sequential"]
        print(f"ours vs sequential: {ratio:.1f}x (target >= 10x: {'met' if ratio >= 10 else 'NOT met'})")


if __name__ == "__main__":
    main()
