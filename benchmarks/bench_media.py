"""Benchmark: media downloads of an Apify dataset, ``MediaDownloader`` against a sequential
``requests`` loop (what the ads team's old code did) and a plain ``requests`` thread pool.

Run: ``make bench-media`` or ``.venv/bin/python benchmarks/bench_media.py [--files 500]
[--latency 0.05] [--workers 16] [--repeat 3] [--dir DIR]``. Prints figures only; never asserts.

The local Apify API server (``tests/helpers/apify_server.py``, its own process) serves the run's
items and their media, every media request delayed by ``--latency`` seconds. Its
``--media-count`` counts every image key of the items (profile pictures, resized copies...), so it
is raised until ``dataset_ops.apify.media.media_refs`` finds at least ``--files`` distinct URLs;
every method then downloads the same first ``--files`` of them. Each method runs in its own
subprocess into an empty folder under ``--dir`` (default: the system temp folder), in rotating
order per round. Timed: the downloads only, the same way for every method (imports, including
``requests``, the item listing and the ``MediaDownloader`` constructor are before the clock;
sessions and threads are created inside it). Reported per run: seconds, files/s, peak RSS of the
subprocess (``VmHWM``), the server process's CPU seconds, and the kernel's listen-queue overflows
during the run (``TcpExt ListenOverflows`` of the whole machine's network namespace, so other
processes count too: a dropped connection attempt costs its client a 1 s SYN retransmission).

Methods:

* ``ours``: ``MediaDownloader(folder, workers=--workers).run(refs)``: status, Content-Type and
  size (``Content-Length``, cap) checked, sha256 recorded, ``.part`` then rename. Afterwards
  (untimed) every recorded sha256 and size is checked against the file on disk.
* ``dag_step``: the ``download_media`` task's own function
  (``dataset_ops.apify.tasks.download_media``) on a local storage root prepared as the DAG
  does (manifest, ``{run_id}.jsonl``; untimed), so every media file of the items (all distinct
  refs, a few more than ``--files``) is fetched by ``MediaDownloader`` and recorded in
  ``_manifest.json``; afterwards every manifest entry's sha256 and size is checked on disk.
  Its content digest covers the same first ``--files`` files as the other methods.
* ``pool``: a plain ``ThreadPoolExecutor(--workers)``, one ``requests.Session`` per thread,
  ``get`` + ``write_bytes`` when the status is 200; no other check.
* ``sequential``: one ``requests.Session``, ``get`` + ``write_bytes`` one file after the other.

Every method's files are hashed afterwards (untimed) and the set of digests compared across
methods, so all of them are known to have stored the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "tests" / "helpers" / "apify_server.py"
RUN_ID, TOKEN = "HG7ML7M8z78YcAPEB", "test-token"
METHODS = ("ours", "dag_step", "pool", "sequential")


def _peak_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _listen_overflows() -> int:
    """``TcpExt ListenOverflows`` of this network namespace (-1 when unreadable)."""
    try:
        with open("/proc/net/netstat") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return -1
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(values.split()[names.split().index("ListenOverflows")])
    return -1


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


def _digests(folder: Path) -> dict[str, tuple[int, str]]:
    return {f.name: (f.stat().st_size, hashlib.sha256(f.read_bytes()).hexdigest()) for f in folder.iterdir()}


def work(method: str, base_url: str, files: int, workers: int, parent: str | None) -> dict:
    import requests  # imported before the clock for every method

    from dataset_ops.apify.download import MediaDownloader

    refs = _refs(base_url)[:files]
    folder = Path(tempfile.mkdtemp(prefix=f"bench-media-{method}-", dir=parent))
    out: dict = {"method": method, "files": len(refs)}
    if method == "ours":
        downloader = MediaDownloader(folder, workers=workers)
        t = time.perf_counter()
        results = downloader.run(refs)
        seconds = time.perf_counter() - t
        ok = sum(1 for r in results if r.status == "downloaded")
        on_disk = _digests(folder)
        out["sha256_recorded"] = sum(1 for r in results if r.sha256)
        out["verified"] = sum(
            1
            for r in results
            if r.status == "downloaded"
            and r.sha256
            and r.content_type
            and on_disk.get(r.name) == (r.bytes, r.sha256)
        )
        out["failed"] = [r.error for r in results if r.status != "downloaded"][:5]
    elif method == "dag_step":
        from apify_client import ApifyClient

        from dataset_ops.apify.items import download_items
        from dataset_ops.apify.tasks import dataset_workspace, download_media, prepare, read_manifest
        from dataset_ops.settings import ApifyDownloadParams
        from dataset_ops.storage import LocalStorage

        storage = LocalStorage(folder)
        client = ApifyClient(token=TOKEN, api_url=base_url)
        run = {
            "run_id": RUN_ID,
            "dataset_id": client.run(RUN_ID).get().default_dataset_id,
            "status": "SUCCEEDED",
        }
        params = ApifyDownloadParams.from_params(
            {
                "download_media": True,
                "force_download": False,
                "extract_video_frames": False,
                "frame_interval_seconds": 1.0,
            }
        )
        plan = prepare(storage, run, params, "bench", {"dag_id": "bench_media", "run_id": "bench"})
        with dataset_workspace(storage, RUN_ID) as ws:
            download_items(client, plan["dataset_id"], ws.path, RUN_ID)
        t = time.perf_counter()
        summary = download_media(storage, plan, workers=workers)
        seconds = time.perf_counter() - t
        entries = read_manifest(storage, RUN_ID).extra["media"]
        every = _digests(folder / "datasets" / "facebook" / RUN_ID / "media")
        out["files"], ok = len(entries), summary["downloaded"]
        out["sha256_recorded"] = sum(1 for e in entries if e["sha256"])
        out["verified"] = sum(1 for e in entries if every.get(e["name"]) == (e["bytes"], e["sha256"]))
        names = {ref.name for ref in refs}
        on_disk = {name: v for name, v in every.items() if name in names}
    elif method == "pool":
        import threading
        from concurrent.futures import ThreadPoolExecutor

        local = threading.local()

        def get(ref) -> bool:
            http = getattr(local, "http", None)
            if http is None:
                http = local.http = requests.Session()
            response = http.get(ref.url, timeout=(5, 30))
            if response.status_code != 200:
                return False
            (folder / ref.name).write_bytes(response.content)
            return True

        t = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            ok = sum(pool.map(get, refs))
        seconds = time.perf_counter() - t
        on_disk = _digests(folder)
    else:
        t = time.perf_counter()
        ok = 0
        with requests.Session() as http:
            for ref in refs:
                response = http.get(ref.url, timeout=(5, 30))
                if response.status_code == 200:
                    (folder / ref.name).write_bytes(response.content)
                    ok += 1
        seconds = time.perf_counter() - t
        on_disk = _digests(folder)
    shutil.rmtree(folder)
    content = hashlib.sha256("".join(f"{n} {s} {d}\n" for n, (s, d) in sorted(on_disk.items())).encode())
    out.update(
        seconds=seconds,
        ok=ok,
        bytes=sum(size for size, _ in on_disk.values()),
        content=content.hexdigest()[:16],
        peak_rss_mib=round(_peak_mib(), 1),
    )
    return out


def _start_server(latency: float, media_count: int) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--media-latency", str(latency),
         "--media-count", str(media_count)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    return server, server.stdout.readline().strip()


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=30)


def _server_for(files: int, latency: float) -> tuple[subprocess.Popen, str, int, int]:
    """A server whose items give at least ``files`` distinct media refs: (process, url, count, refs)."""
    media_count = files
    for _ in range(6):
        server, url = _start_server(latency, media_count)
        found = len(_refs(url))
        if found >= files:
            return server, url, media_count, found
        _stop(server)
        media_count = -(-media_count * files // max(found, 1)) + 10
    raise RuntimeError(f"the server's items did not reach {files} media files")


def _rate(run: dict) -> float:
    return run["files"] / run["seconds"]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        parent = argv[5] if len(argv) > 5 else None
        print(json.dumps(work(argv[1], argv[2], int(argv[3]), int(argv[4]), parent)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per media request (server side)")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="parent of the download folders (default: temp folder)")
    args = ap.parse_args(argv)
    server, url, media_count, found = _server_for(args.files, args.latency)
    print(
        f"server {url} (--media-count {media_count}: {found} distinct media refs, "
        f"the first {args.files} downloaded); {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results: dict[str, list[dict]] = {m: [] for m in METHODS}
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    try:
        for round_no in range(args.repeat):
            shift = round_no % len(METHODS)
            for method in METHODS[shift:] + METHODS[:shift]:
                cpu, overflows = _cpu_seconds(server.pid), _listen_overflows()
                cmd = [sys.executable, __file__, "--worker", method, url, str(args.files), str(args.workers)]
                proc = subprocess.run(
                    cmd + ([args.dir] if args.dir else []), capture_output=True, text=True, env=env
                )
                if proc.returncode:
                    r = {"method": method, "error": proc.stderr[-800:]}
                else:
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    r["server_cpu_s"] = round(_cpu_seconds(server.pid) - cpu, 2)
                    r["listen_overflows"] = _listen_overflows() - overflows if overflows >= 0 else None
                results[method].append(r)
                if "seconds" in r:
                    print(
                        f"round {round_no + 1} {method:>10}: {r['seconds']:6.2f} s {_rate(r):7.1f} files/s "
                        f"ok {r['ok']}/{r['files']}"
                        + (f" verified {r['verified']}" if "verified" in r else "")
                        + f" peak RSS {r['peak_rss_mib']:.0f} MiB server CPU {r['server_cpu_s']:.2f} s "
                        f"listen overflows {r['listen_overflows']} content {r['content']}",
                        flush=True,
                    )
                else:
                    print(f"round {round_no + 1} {method}: FAILED {r['error']}", flush=True)
    finally:
        _stop(server)

    print(
        f"\n{args.files} files, {args.latency * 1000:.0f} ms latency per request, {args.workers} workers "
        f"(pool and ours), median of {args.repeat} runs; load average {os.getloadavg()[0]:.2f} at the end\n"
    )
    print("| method | files ok | median time | files/s (median) | files/s (best) | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    rates, contents = {}, set()
    for method, runs in results.items():
        ok = sorted((r for r in runs if "seconds" in r), key=lambda r: r["seconds"])
        if not ok:
            print(f"| {method} | failed | - | - | - | - |")
            continue
        contents |= {r["content"] for r in ok}
        med = ok[len(ok) // 2]
        rates[method] = _rate(med)
        print(
            f"| {method} | {min(r['ok'] for r in ok)}/{med['files']} | {med['seconds']:.2f} s | "
            f"{rates[method]:.1f} | {_rate(ok[0]):.1f} | {max(r['peak_rss_mib'] for r in ok):.0f} |"
        )
    for method in ("ours", "dag_step"):
        ours = [r for r in results[method] if "seconds" in r]
        if not ours:
            continue
        where = "in _manifest.json" if method == "dag_step" else "recorded"
        print(
            f"\n{method} verified: "
            + ", ".join(f"{r['verified']}/{r['files']} (sha256 {where} {r['sha256_recorded']})" for r in ours)
            + (
                " -- every file"
                if all(r["verified"] == r["sha256_recorded"] == r["files"] for r in ours)
                else ""
            )
        )
    print(f"same bytes stored by every run of every method: {'yes' if len(contents) == 1 else 'NO'}")
    overflows = [r.get("listen_overflows") for runs in results.values() for r in runs if "seconds" in r]
    print(
        f"listen-queue overflows during the runs (whole machine): {overflows}; each is a dropped "
        "connection attempt, retried by the kernel after 1 s"
    )
    if "ours" in rates and "sequential" in rates:
        ratio = rates["ours"] / rates["sequential"]
        print(f"ours vs sequential: {ratio:.1f}x (target >= 10x: {'met' if ratio >= 10 else 'NOT met'})")
    if "dag_step" in rates and "sequential" in rates:
        ratio = rates["dag_step"] / rates["sequential"]
        verdict = "met" if ratio >= 10 else "NOT met"
        print(f"dag_step (manifest) vs sequential: {ratio:.1f}x (target >= 10x: {verdict})")
    if "ours" in rates and "pool" in rates:
        print(f"ours vs plain {args.workers}-thread pool: {rates['ours'] / rates['pool']:.2f}x (no target)")
    if "pool" in rates and "sequential" in rates:
        print(f"plain pool vs sequential: {rates['pool'] / rates['sequential']:.1f}x")


if __name__ == "__main__":
    main()
