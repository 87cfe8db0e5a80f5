"""Benchmark: streaming validation (``dataset_ops.validation``) against reading the same file
with pandas and pyarrow.

Run: ``.venv/bin/python benchmarks/bench_validation.py [--size-gb 1] [--repeat 3]``. Prints
figures only; never asserts. See ``benchmarks/README.md`` for what each figure means.

Inputs (generated once, cached in ``<repo>/.data/bench/validation/``, reused while their size
matches):

* ``gsm8k.x<N>.jsonl``: the real ``../shared/data/ml/gsm8k_train.jsonl`` repeated N times
  (whole file, byte-identical records) until it is at least ``--size-gb`` GiB.
* ``tweets.x<N>.csv``: the header of the real ``Tweets.airline-sentiment.csv`` once, then its
  14,640 records (CRLF, 165 multi-line quoted fields, doubled quotes, emoji) repeated N times.

Methods, each in its own subprocess so that peak RSS is per method (``VmHWM`` of the worker:
interpreter, imports and work; not ``ru_maxrss``, which Linux carries over from the parent across
fork and exec); the time is the work only (interpreter start and imports excluded, for every
method):

* ``ours``: ``validate_path(file, load_rules("training_jsonl" | "tweets_csv"))``: full
  validation with the rules on (UTF-8, JSON Schema / CSV quoting, field count, header, column
  types, enums, bounds, date format), bounded memory.
* JSONL: ``pandas.read_json(lines=True)``; ``pyarrow.json.read_json``; and as a floor for a
  Python line loop, ``orjson.loads`` per line with no schema (``orjson loop``).
* CSV: ``pandas.read_csv`` (C engine); ``pandas.read_csv(engine="pyarrow")`` (fails on
  newlines inside quoted fields: the error is printed); ``pyarrow.csv.read_csv`` with
  ``newlines_in_values=True``; and as floors ``csv.reader`` (Python's csv module, parse only)
  and ``pyarrow.csv.open_csv`` (streaming, parse only).

``--pandas2-python PY`` runs the two pandas methods once more with another interpreter (``make
bench-validation`` makes one with pandas 2.3.3 in ``.data/bench/pandas2``): the figures the
issue's targets were derived from (``read_json`` about 25 MB/s, ``read_csv`` about 70 MB/s) are
pandas 2 figures; pandas 3 reads strings into Arrow and is several times faster on these files.
Ratios are printed against every pandas present.

``ours`` runs ``--repeat`` times (median reported), the others ``--others-repeat`` times
(default 1). ``--pandas-json-prefix-mb N`` runs ``pandas.read_json`` on the first N MB only
(its result is then labelled as such). MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
GSM8K = SHARED / "ml" / "gsm8k_train.jsonl"
TWEETS = SHARED / "messy_csv" / "Tweets.airline-sentiment.csv"
CACHE = REPO / ".data" / "bench" / "validation"
MB = 1e6

JSONL_METHODS = ["ours", "pandas.read_json", "pyarrow.json.read_json", "orjson loop"]
CSV_METHODS = [
    "ours",
    "pandas.read_csv",
    'pandas.read_csv(engine="pyarrow")',
    "pyarrow.csv.read_csv",
    "csv.reader loop",
    "pyarrow.csv.open_csv",
]
TARGETS = {
    "jsonl": {"baseline": "pandas.read_json", "ratio": 5.0, "mb_s": 125.0},
    "csv": {"baseline": "pandas.read_csv", "ratio": 2.0, "mb_s": 140.0},
}
RSS_TARGET_MIB = 200


# -- inputs ------------------------------------------------------------------------------------
def _generate(kind: str, size_gb: float) -> Path:
    """Build (or reuse) the scaled file; returns its path."""
    target = int(size_gb * (1 << 30))
    src = (GSM8K if kind == "jsonl" else TWEETS).read_bytes()
    if kind == "jsonl":
        head, body = b"", src
    else:
        cut = src.index(b"\n") + 1
        head, body = src[:cut], src[cut:]
    n = -(-(target - len(head)) // len(body))
    path = CACHE / (f"gsm8k.x{n}.jsonl" if kind == "jsonl" else f"tweets.x{n}.csv")
    expected = len(head) + n * len(body)
    if path.exists() and path.stat().st_size == expected:
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".partial")
    with open(tmp, "wb") as out:
        out.write(head)
        for _ in range(n):
            out.write(body)
    os.replace(tmp, path)
    return path


# -- workers (run in a subprocess) ---------------------------------------------------------------
def _work(method: str, path: str, kind: str, prefix_mb: float | None) -> dict:
    """Run one method on ``path``; returns what it measured."""
    sys.path.insert(0, str(REPO / "plugins"))
    out: dict = {"method": method}
    # each method imports only what it uses, so that peak RSS is its own
    if method == "ours":
        from dataset_ops.validation import load_rules, validate_path

        if kind == "csv":
            import dataset_ops.validation.csvfile  # noqa: F401  (imports pyarrow here, not in the timing)

        rules = load_rules("training_jsonl" if kind == "jsonl" else "tweets_csv")
        t = time.perf_counter()
        res = validate_path(path, rules)
        out.update(seconds=time.perf_counter() - t, rows=res.records, valid=res.valid, workers=res.workers)
        out["worker_rss_mib"] = (res.worker_peak_rss_bytes or 0) / (1 << 20)
        if not res.valid:
            out["error"] = str(res.errors[:3])
    elif method == "pandas.read_json":
        import pandas as pd

        out["pandas"] = pd.__version__
        source: object = path
        if prefix_mb:
            import io

            with open(path, "rb") as fh:
                data = fh.read(int(prefix_mb * MB))
            data = data[: data.rfind(b"\n") + 1]
            out["bytes"], source = len(data), io.BytesIO(data)
        t = time.perf_counter()
        df = pd.read_json(source, lines=True)
        out.update(seconds=time.perf_counter() - t, rows=len(df))
    elif method == "pyarrow.json.read_json":
        import pyarrow.json as pa_json

        t = time.perf_counter()
        table = pa_json.read_json(path)
        out.update(seconds=time.perf_counter() - t, rows=table.num_rows)
    elif method == "orjson loop":
        import orjson

        loads, rows = orjson.loads, 0
        t = time.perf_counter()
        with open(path, "rb", buffering=0) as fh:
            carry = b""
            while block := fh.read(4 << 20):
                lines = block.split(b"\n")
                lines[0] = carry + lines[0]
                carry = lines.pop()
                for line in lines:
                    loads(line)
                rows += len(lines)
        out.update(seconds=time.perf_counter() - t, rows=rows)
    elif method == "pandas.read_csv":
        import pandas as pd

        out["pandas"] = pd.__version__
        t = time.perf_counter()
        df = pd.read_csv(path)
        out.update(seconds=time.perf_counter() - t, rows=len(df))
    elif method == 'pandas.read_csv(engine="pyarrow")':
        import pandas as pd

        t = time.perf_counter()
        try:
            df = pd.read_csv(path, engine="pyarrow")
            out.update(seconds=time.perf_counter() - t, rows=len(df))
        except Exception as exc:  # the point of this method: it fails on this file
            out.update(seconds=time.perf_counter() - t, error=f"{type(exc).__name__}: {exc}"[:200])
    elif method == "pyarrow.csv.read_csv":
        import pyarrow.csv as pa_csv

        t = time.perf_counter()
        table = pa_csv.read_csv(path, parse_options=pa_csv.ParseOptions(newlines_in_values=True))
        out.update(seconds=time.perf_counter() - t, rows=table.num_rows)
    elif method == "csv.reader loop":
        import csv

        t = time.perf_counter()
        with open(path, newline="", encoding="utf-8") as fh:
            rows = sum(1 for _ in csv.reader(fh)) - 1
        out.update(seconds=time.perf_counter() - t, rows=rows)
    elif method == "pyarrow.csv.open_csv":
        import pyarrow.csv as pa_csv

        rows = 0
        t = time.perf_counter()
        for batch in pa_csv.open_csv(path, parse_options=pa_csv.ParseOptions(newlines_in_values=True)):
            rows += batch.num_rows
        out.update(seconds=time.perf_counter() - t, rows=rows)
    else:
        raise SystemExit(f"unknown method {method!r}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # JSONL worker processes of ours
    # peak RSS of ours with workers: this process's peak plus each worker's own peak (upper bound
    # of the sum at any one moment)
    out["max_rss_mib"] = _vm_hwm_kib() / 1024 + out.get("worker_rss_mib", 0)
    out["cpu_seconds"] = usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime
    return out


def _vm_hwm_kib() -> int:
    """Peak RSS of this process image (``VmHWM``). Not ``ru_maxrss``: Linux carries that across
    fork and exec, so a worker would start with the parent's peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _run_worker(
    method: str, path: Path, kind: str, prefix_mb: float | None, python: str | None = None
) -> dict:
    cmd = [python or sys.executable, __file__, "--worker", method, str(path), kind]
    if prefix_mb:
        cmd.append(str(prefix_mb))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"method": method, "error": f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- report ------------------------------------------------------------------------------------
def _machine() -> list[str]:
    import numpy
    import orjson
    import pandas
    import pyarrow

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    import fastjsonschema

    return [
        f"machine: {os.cpu_count()} cores ({cpu}), {mem:.1f} GiB RAM, {platform.platform()}",
        f"python {platform.python_version()}, pyarrow {pyarrow.__version__}, pandas {pandas.__version__}, "
        f"numpy {numpy.__version__}, orjson {orjson.__version__}, fastjsonschema {fastjsonschema.VERSION}",
    ]


def _fmt_row(r: dict, nbytes: int) -> tuple[str, str, str, str, str]:
    if "seconds" not in r or "error" in r and "rows" not in r:
        return r["method"], "failed", "-", f"{r.get('max_rss_mib', 0):.0f}", r.get("error", "")
    size = r.get("bytes", nbytes)
    rate = size / r["seconds"] / MB
    label = r["method"] + (f" (first {size / MB:.0f} MB)" if "bytes" in r else "")
    return label, f"{r['seconds']:.2f} s", f"{rate:.1f}", f"{r['max_rss_mib']:.0f}", f"{r.get('rows', ''):,}"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        method, path, kind = argv[1], argv[2], argv[3]
        prefix = float(argv[4]) if len(argv) > 4 else None
        print(json.dumps(_work(method, path, kind, prefix)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=1.0, help="input size in GiB (default 1)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of ours (median reported)")
    ap.add_argument("--others-repeat", type=int, default=1, help="runs of every other method")
    ap.add_argument("--only", choices=["jsonl", "csv"], help="one format only")
    ap.add_argument("--pandas-json-prefix-mb", type=float, help="pandas.read_json on a prefix only")
    ap.add_argument("--skip", action="append", default=[], help="skip a method (repeatable)")
    ap.add_argument(
        "--pandas2-python", help="also run the pandas methods with this interpreter (e.g. one with pandas 2)"
    )
    args = ap.parse_args(argv)

    lines = _machine()
    lines.append(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    started = time.perf_counter()
    summary = []
    for kind in ("jsonl", "csv"):
        if args.only and args.only != kind:
            continue
        t = time.perf_counter()
        path = _generate(kind, args.size_gb)
        nbytes = path.stat().st_size
        ready = time.perf_counter() - t
        print(f"input {kind}: {path.relative_to(REPO)} ({nbytes:,} bytes; ready in {ready:.1f} s)")
        results = {}
        methods = [(m, None) for m in (JSONL_METHODS if kind == "jsonl" else CSV_METHODS)]
        if args.pandas2_python:
            methods.append((TARGETS[kind]["baseline"], args.pandas2_python))
        for method, python in methods:
            if method in args.skip:
                continue
            runs = []
            for _ in range(args.repeat if method == "ours" else args.others_repeat):
                prefix = args.pandas_json_prefix_mb if method == "pandas.read_json" else None
                r = _run_worker(method, path, kind, prefix, python)
                if python:
                    r["method"] = f"{method} [pandas {r.get('pandas', '?')}]"
                runs.append(r)
                print(f"  {kind} {method}: {json.dumps(r)}", flush=True)
            ok = [r for r in runs if "seconds" in r and "rows" in r]
            if ok:
                best = sorted(ok, key=lambda r: r["seconds"])[len(ok) // 2]  # median run
                best = dict(
                    best, max_rss_mib=max(r["max_rss_mib"] for r in ok), runs=[r["seconds"] for r in ok]
                )
            else:
                best = runs[-1]
            results[best["method"]] = best
        summary.append((kind, path, nbytes, results))
    lines.append(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    lines.append(f"wall time of the benchmark: {time.perf_counter() - started:.0f} s")

    print("\n## Results\n")
    for line in lines:
        print(line)
    for kind, path, nbytes, results in summary:
        print(f"\n### {kind.upper()}: {path.name}, {nbytes / MB:,.0f} MB\n")
        print("| method | time | MB/s | peak RSS MiB | rows / note |")
        print("|---|---:|---:|---:|---|")
        for r in results.values():
            print("| " + " | ".join(_fmt_row(r, nbytes)) + " |")
        ours = results.get("ours")
        if ours and "seconds" in ours:
            rate = nbytes / ours["seconds"] / MB
            runs = ", ".join(f"{s:.2f}" for s in ours.get("runs", []))
            print(
                f"\nours: median of {len(ours.get('runs', []))} runs ({runs} s), valid={ours.get('valid')}, "
                f"CPU {ours['cpu_seconds']:.1f} s (user+sys incl. workers, median run), "
                f"{ours.get('workers', 0)} worker process(es) "
                f"(their peak RSS {ours.get('worker_rss_mib', 0):.0f} MiB, included in the peak RSS)"
            )
            target = TARGETS[kind]
            for name, base in results.items():
                if not name.startswith(target["baseline"]) or "seconds" not in base or "rows" not in base:
                    continue
                base_rate = base.get("bytes", nbytes) / base["seconds"] / MB
                ratio = rate / base_rate
                verdict = "met" if ratio >= target["ratio"] else "NOT met"
                goal = f"target >= {target['ratio']:.0f}x"
                version = f" (pandas {base['pandas']})" if "[" not in name and "pandas" in base else ""
                print(f"ours vs {name}{version}: {ratio:.2f}x ({goal}: {verdict})")
            verdict = "met" if rate >= target["mb_s"] else "NOT met"
            print(f"ours throughput: {rate:.1f} MB/s (target >= {target['mb_s']:.0f} MB/s: {verdict})")
            verdict = "met" if ours["max_rss_mib"] < RSS_TARGET_MIB else "NOT met"
            print(f"ours peak RSS: {ours['max_rss_mib']:.0f} MiB (target < {RSS_TARGET_MIB} MiB: {verdict})")
            for name in ("pyarrow.json.read_json", "pyarrow.csv.read_csv"):
                other = results.get(name)
                if other and "seconds" in other and "rows" in other:
                    print(
                        f"ours vs {name}: {rate / (nbytes / other['seconds'] / MB):.2f}x the speed, "
                        f"{other['max_rss_mib'] / ours['max_rss_mib']:.1f}x less peak RSS"
                    )


if __name__ == "__main__":
    main()
