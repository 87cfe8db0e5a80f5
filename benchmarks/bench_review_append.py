"""Benchmark: adding the review log sheets to a report workbook, spliced into its zip package
(``review.append_log_sheets`` -> ``xlsx_append.append_sheets``) against loading and saving the
workbook with openpyxl (what ``append_log_sheets`` did until session 4).

Run: ``.venv/bin/python benchmarks/bench_review_append.py [--records 100000] [--log-rows 200]``.
Prints figures only; never asserts.

Setup (untimed): the inference test world (``tests/helpers/inference_data.py``,
``make_world(n_records=--records)``), its window records written to Parquet, and the report
workbook written from them with ``report.write_report`` (all seven sheets). Each method then runs
in its own subprocess on its own copy of the workbook: ``splice`` calls ``append_log_sheets``
with ``--log-rows`` log rows (half reference, half device); ``openpyxl`` does
``openpyxl.load_workbook`` + the two sheets with the same rows + ``save``. Timed: that call, after
the imports. Peak RSS: the subprocess's ``VmHWM`` (reset when it starts; imports included).
Afterwards the result is opened read-only with openpyxl and its sheets and data rows are counted.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _log_rows(n: int) -> list[dict]:
    from dataset_ops.inference.review import LOG_COLUMNS

    return [
        {c: None for c in LOG_COLUMNS}
        | {
            "scope": "reference" if i % 2 else "device",
            "item_id": i,
            "kind": "correct",
            "transaction_id": f"t{i}",
            "timestamp": "2026-11-05T08:12:33+00:00",
            "conf_1": 0.5,
            "status": "downloaded",
            "bytes": 1000,
        }
        for i in range(n)
    ]


def _peak_mib() -> float:
    """``VmHWM`` of this process, MiB (reset at the worker's start: a child's high-water mark
    starts from its parent's at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(method: str, book: Path, log_rows: int) -> dict:
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM
    sys.path.insert(0, str(REPO / "plugins"))
    rows = _log_rows(log_rows)
    if method == "splice":
        from dataset_ops.inference.review import append_log_sheets

        started = time.perf_counter()
        append_log_sheets(book, rows)
    else:
        import openpyxl

        from dataset_ops.inference.review import DEVICE_LOG_SHEET, LOG_COLUMNS, REFERENCE_LOG_SHEET

        started = time.perf_counter()
        workbook = openpyxl.load_workbook(book)
        for sheet, scope in ((REFERENCE_LOG_SHEET, "reference"), (DEVICE_LOG_SHEET, "device")):
            ws = workbook.create_sheet(sheet)
            ws.append(list(LOG_COLUMNS))
            for row in rows:
                if row["scope"] == scope:
                    ws.append([row[c] for c in LOG_COLUMNS])
        workbook.save(book)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_rss_mib": _peak_mib()}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))))
        return
    ap = argparse.ArgumentParser(description="review log sheets: zip splice vs openpyxl load/save")
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--log-rows", type=int, default=200)
    args = ap.parse_args()
    sys.path[:0] = [str(REPO / "plugins"), str(REPO / "tests")]
    import openpyxl
    import pyarrow.parquet as pq
    from helpers.inference_data import make_world

    from dataset_ops.inference.config import load_mapping
    from dataset_ops.inference.report import write_report

    work = Path(tempfile.mkdtemp(prefix="bench-review-append-"))
    try:
        world = make_world(n_records=args.records)
        pq.write_table(world.records_table(world.window_records), work / "records.parquet")
        report = write_report(
            work / "report.xlsx",
            work / "records.parquet",
            world.reference_data(),
            confidence=0.78,
            min_appearances=20,
            ok_results=load_mapping(world.deployment_id).ok_results,
        )
        print(
            f"report: {report['sheets']['Datos_Elasticsearch']:,} data rows, {report['bytes']:,} bytes; "
            f"{args.log_rows} log rows"
        )
        for method in ("splice", "openpyxl"):
            book = work / f"{method}.xlsx"
            shutil.copy(work / "report.xlsx", book)
            out = subprocess.run(
                [sys.executable, __file__, "--worker", method, str(book), str(args.log_rows)],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            check = openpyxl.load_workbook(book, read_only=True)
            data_rows = sum(1 for _ in check["Datos_Elasticsearch"].iter_rows()) - 1
            print(
                f"{method}: {r['seconds']:.2f} s, peak RSS {r['peak_rss_mib']:.0f} MiB; sheets "
                f"{len(check.sheetnames)} (last {check.sheetnames[-2:]}), data rows {data_rows:,}"
            )
            check.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
