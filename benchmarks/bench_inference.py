"""Benchmark (issue 6): a deployment's Elasticsearch records to the finished report workbook,
``dataset_ops.inference`` against the straightforward pandas path.

Run: ``make bench-inference`` or ``.venv/bin/python benchmarks/bench_inference.py [--records 100000]
[--repeat 3] [--methods ours pandas-openpyxl pandas-xlsxwriter [ours-sequential]]
[--reference-data mysql|world] [--profile METHOD] [--keep DIR]``. Prints figures only; never asserts.

Setup (untimed, once): the inference test world of ``tests/helpers/inference_data.py``
(``make_world(n_records=--records)``: ``--records`` records of deployment 7 in the world's 30-day
window, plus older records, another deployment's and a decoy index) is bulk-loaded into a
``noida-db`` Elasticsearch (``tests/helpers/es_server.py``) started by the benchmark, in the
monthly ``inferences-YYYY.MM`` indices with the explicit ``ES_MAPPINGS``. Reference data: with
``--reference-data mysql`` (the default, the full path) the world's rows are loaded into a
throwaway MariaDB database ``dataset_ops_bench_inference`` on 127.0.0.1:3306 (root, no password;
dropped at the end) and every method reads them with
:func:`dataset_ops.inference.extract.read_reference_data` through the Airflow Connection
``inference_mysql`` (``AIRFLOW_CONN_INFERENCE_MYSQL``); with ``--reference-data world`` the
same dict (``World.reference_data()``) is read from a JSON file (no MySQL needed).

Methods, each run in its own subprocess, ``--repeat`` rounds in rotating order; the median is
reported:

* ``ours``: what the DAG's ``extract_and_report`` task does, after ``read_reference_data``:
  :class:`~dataset_ops.inference.extract.RecordExtraction` (point in time + ``search_after`` on
  ``_shard_doc``, the mapping's page size, the next page fetched while the current one is
  written, pages parsed into Arrow with ``pyarrow.json``: the client has
  ``extract.search_serializers()``, as ``extract.es_client()`` gives it) feeding
  :func:`~dataset_ops.inference.report.write_report` (each batch to the Parquet file, the
  one-pass ``Analyser`` and the data sheet, then all seven sheets: Resumen with its chart,
  Datos_Elasticsearch (one row per record x 15 columns), References, Devices, Labels,
  Model_Data, Consistencia), with the DAG's defaults (confidence 0.78, min_appearances 20), the
  mapping's ``ok_results`` and ``report.use_lean_allocators()``.
* ``pandas-openpyxl``: what one writes by hand: the same ``read_reference_data``;
  ``elasticsearch.helpers.scan(es, index="inferences-*", query=<the same filter: term deployment_id
  + range @timestamp>, _source=<the same fields>, size=5000)`` (scroll; it works against noida) into
  a list of ``_source`` dicts -> ``pd.DataFrame`` -> the same derived columns
  (top1_reference_id, model_ok, below_threshold; timestamps made naive UTC, as Excel needs) ->
  ``df.to_excel(writer, sheet_name="Datos_Elasticsearch", index=False)`` with
  ``pd.ExcelWriter(path, engine="openpyxl")``, plus the small sheets done the obvious pandas way
  (``groupby`` per reference, device and top-1 label, merged with the MySQL rows; KPI, model and
  consistency tables), each written with ``to_excel``; same sheet names and order, no chart.
* ``pandas-xlsxwriter``: the same code with ``engine="xlsxwriter"`` (informational, no target).

Diagnostic (only with ``--methods``): ``ours-sequential`` is ours without the overlap: the whole
extraction to the Parquet file first, then the report from the file (what the DAG did until
session 4, in two tasks).

Every worker runs with ``ARROW_DEFAULT_MEMORY_POOL=system`` (unless the caller's environment
sets it otherwise), the setting README gives for the workers that run ``inference_report``.

Timed (``time.perf_counter`` in the worker): reference data + Elasticsearch read + analysis +
workbook closed on disk. Before the clock, for every method alike: its imports (every method:
``elasticsearch`` and, with MySQL, the Airflow MySQL hook of ``read_reference_data``; ours:
``dataset_ops.inference`` with pandas, pyarrow and xlsxwriter; pandas: pandas and the engine), the
Elasticsearch client and one ``info()`` call. Peak RSS: the worker's ``VmHWM``, imports
included; the worker resets it (``/proc/self/clear_refs``) at each phase boundary to report a
peak per phase, and the process peak is the largest of them. The CPU seconds the noida-db server
used during each run are sampled from ``/proc`` (its process group). Afterwards (untimed) the
driver opens every workbook, lists its sheets and counts the rows of each sheet's XML (``<row``
elements, header excluded), checking Datos_Elasticsearch against the number of records.

Reported: a table (method, median seconds, the runs, the ES read phase, noida CPU, peak RSS MiB,
RSS after imports, workbook bytes, sheets, rows in Datos_Elasticsearch), the phases, and the ratio
pandas-openpyxl / ours with the issue's targets (>= 2x faster; peak RSS < 300 MB, i.e. 286 MiB),
plus informational ratios (pandas-xlsxwriter; diagnostics).
``--profile METHOD`` runs that method once more under cProfile and prints the top functions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("ours", "pandas-openpyxl", "pandas-xlsxwriter")
#: Diagnostic variant of ours (not run by default): extraction, then the report from the file.
DIAGNOSTICS = ("ours-sequential",)
DATA_SHEET = "Datos_Elasticsearch"
SHEETS = ("Resumen", DATA_SHEET, "References", "Devices", "Labels", "Model_Data", "Consistencia")
DB_NAME = "dataset_ops_bench_inference"
CONFIDENCE, MIN_APPEARANCES = 0.78, 20  # the inference_report DAG's Param defaults
#: Columns of the pandas path's data sheet: the same 15 as ours' RECORD_COLUMNS.
DATA_COLUMNS = [
    "transaction_id", "timestamp", "device_id", "reference_id", "result", "label_1", "conf_1", "label_2",
    "conf_2", "label_3", "conf_3", "top1_reference_id", "model_ok", "below_threshold", "image_key",
]  # fmt: skip


# -- measuring -----------------------------------------------------------------------------------
def _status_mib(field: str) -> float:
    """``VmHWM`` (peak RSS since the last reset) or ``VmRSS`` of this process, MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Phases:
    """Seconds and peak RSS per phase of the timed section."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.resettable = _reset_peak()
        self.seconds: dict[str, float] = {}
        self.peak_mib: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.last
        self.peak_mib[name] = max(self.peak_mib.get(name, 0.0), _status_mib("VmHWM"))
        if self.resettable:
            _reset_peak()
        self.last = time.perf_counter()

    @property
    def total(self) -> float:
        return self.last - self.start


# -- workers ---------------------------------------------------------------------------------------
def _imports(method: str, reference_json: str) -> None:
    """What the method uses, imported before the clock. Every method reading Elasticsearch:
    ``elasticsearch``; every method reading MySQL: the Airflow MySQL hook of
    ``read_reference_data``; ours: ``dataset_ops.inference`` (pandas, pyarrow, xlsxwriter);
    pandas: pandas, ``elasticsearch.helpers`` and the engine."""
    import elasticsearch  # noqa: F401

    import dataset_ops.inference.config  # noqa: F401

    if not reference_json:
        import MySQLdb  # noqa: F401
        from airflow.providers.mysql.hooks.mysql import MySqlHook  # noqa: F401

        import dataset_ops.inference.extract  # noqa: F401
    if method.startswith("ours"):
        import pyarrow.parquet  # noqa: F401

        import dataset_ops.inference.extract  # noqa: F401, F811
        import dataset_ops.inference.report  # noqa: F401
    if method.startswith("pandas"):
        import elasticsearch.helpers  # noqa: F401
        import pandas  # noqa: F401

        if method == "pandas-openpyxl":
            import openpyxl  # noqa: F401
            import pandas.io.excel._openpyxl  # noqa: F401
        else:
            import pandas.io.excel._xlsxwriter  # noqa: F401
            import xlsxwriter  # noqa: F401


def _reference_data(cfg: dict) -> dict:
    if cfg["reference_json"]:
        return json.loads(Path(cfg["reference_json"]).read_text())
    from dataset_ops.inference.extract import read_reference_data

    return read_reference_data(cfg["deployment_id"])


def _report(cfg: dict, phases: Phases, parquet: Path, reference_data: dict, batches=None) -> None:
    """``write_report``, its data sheet from ``batches`` (as they are extracted) or the file;
    phases split at the analysis (data sheet | analysis | the other sheets)."""
    from dataset_ops.inference import report
    from dataset_ops.inference.config import load_mapping

    result = report.Analyser.result

    def timed_result(self, *args, **kwargs):  # the records are analysed and written by then
        phases.mark("es read + data sheet" if batches is not None else "workbook: data sheet")
        out = result(self, *args, **kwargs)
        phases.mark("analysis tables")
        return out

    report.Analyser.result = timed_result
    report.write_report(
        Path(cfg["out"]),
        parquet,
        reference_data,
        confidence=CONFIDENCE,
        min_appearances=MIN_APPEARANCES,
        ok_results=load_mapping(cfg["deployment_id"]).ok_results,
        window=(cfg["since"], cfg["until"]),
        record_batches=batches,
    )
    phases.mark("workbook: other sheets")


def work_ours(cfg: dict, es, phases: Phases) -> dict:
    """``ours``: what the DAG's ``extract_and_report`` task does (the data sheet written while
    the next page is fetched); ``ours-sequential``: the whole extraction to Parquet first, then
    the report from the file."""
    from dataset_ops.inference.config import load_mapping
    from dataset_ops.inference.extract import RecordExtraction
    from dataset_ops.inference.report import use_lean_allocators

    use_lean_allocators()  # as the DAG's extract_and_report task does
    since, until = datetime.fromisoformat(cfg["since"]), datetime.fromisoformat(cfg["until"])
    mapping = load_mapping(cfg["deployment_id"])
    parquet = Path(cfg["out"]).with_suffix(".parquet")
    phases.mark("setup")
    reference_data = _reference_data(cfg)
    phases.mark("reference data")
    with RecordExtraction(es, mapping, cfg["deployment_id"], since, until, parquet) as extraction:
        if cfg["method"] == "ours":
            _report(cfg, phases, parquet, reference_data, extraction.batches())
        else:
            for _ in extraction.batches():
                pass
            phases.mark("es read")
            _report(cfg, phases, parquet, reference_data)
    summary = extraction.summary
    parquet.unlink()
    return {"records": summary["records"], "pages": summary["pages"], "parquet_bytes": summary["bytes"]}


def work_pandas(cfg: dict, es, phases: Phases, engine: str) -> dict:
    import pandas as pd
    from elasticsearch.helpers import scan

    from dataset_ops.inference.config import load_mapping

    out = Path(cfg["out"])
    mapping = load_mapping(cfg["deployment_id"])
    phases.mark("setup")
    ref = _reference_data(cfg)
    phases.mark("reference data")

    query = {
        "bool": {
            "filter": [
                {"term": {"deployment_id": cfg["deployment_id"]}},
                {"range": {"@timestamp": {"gte": cfg["since"], "lt": cfg["until"]}}},
            ]
        }
    }
    hits = scan(es, index="inferences-*", query={"query": query}, _source=mapping.source_paths(), size=5000)
    rows = [hit["_source"] for hit in hits]
    df = pd.DataFrame(rows)
    del rows
    phases.mark("es read")

    # the derived columns of the data sheet, and the tables of the small sheets
    df = df.rename(columns={"@timestamp": "timestamp"})
    df = df.rename(columns={f"pred_label_{k}": f"label_{k}" for k in (1, 2, 3)})
    df = df.rename(columns={f"pred_conf_{k}": f"conf_{k}" for k in (1, 2, 3)})
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True).dt.tz_localize(None)  # Excel: naive
    label_ref = {r["label_id"]: r["reference_id"] for r in ref["labels"] if r["reference_id"] is not None}
    tops = [df[f"label_{k}"].map(label_ref) for k in (1, 2, 3)]
    df["top1_reference_id"] = tops[0].astype("Int64")
    df["model_ok"] = tops[0].eq(df["reference_id"])
    df["top2_hit"] = df["model_ok"] | tops[1].eq(df["reference_id"])
    df["top3_hit"] = df["top2_hit"] | tops[2].eq(df["reference_id"])
    df["ok"] = df["result"].isin(list(mapping.ok_results)).astype(float).where(df["result"].notna())
    df["below_threshold"] = df["conf_1"] < CONFIDENCE

    def rates(key: str):
        return df.groupby(key).agg(
            transactions=("transaction_id", "size"),
            ok_pct=("ok", "mean"),
            model_ok_pct=("model_ok", "mean"),
            top2_hit_rate=("top2_hit", "mean"),
            top3_hit_rate=("top3_hit", "mean"),
            confidence_mean=("conf_1", "mean"),
            below_threshold=("below_threshold", "sum"),
        )

    refs_db = pd.DataFrame(ref["references"])
    by_ref = rates("reference_id")
    by_ref["appearances"] = pd.concat(tops).value_counts().reindex(by_ref.index).fillna(0).astype(int)
    by_ref["meets_min_appearances"] = by_ref["appearances"] >= MIN_APPEARANCES
    references = refs_db.merge(by_ref, left_on="reference_id", right_index=True, how="right")
    references["known_in_mysql"] = references["reference_id"].isin(refs_db["reference_id"])
    references["revisar_imagenes"] = ""
    references = references.sort_values("transactions", ascending=False)

    by_dev = rates("device_id")
    grouped = df.groupby("device_id")
    by_dev["references"] = grouped["reference_id"].nunique()
    by_dev["first_seen"] = grouped["timestamp"].min()
    by_dev["last_seen"] = grouped["timestamp"].max()
    devices = pd.DataFrame(ref["devices"]).merge(by_dev, left_on="device_id", right_index=True, how="outer")
    devices["transactions"] = devices["transactions"].fillna(0).astype(int)
    devices["revisar_imagenes"] = ""

    top1 = df.groupby("label_1").agg(predicted_top1=("model_ok", "size"), top1_correct=("model_ok", "sum"))
    labels = pd.DataFrame(ref["labels"]).merge(top1, left_on="label_id", right_index=True, how="left")
    labels[["predicted_top1", "top1_correct"]] = labels[["predicted_top1", "top1_correct"]].fillna(0)
    labels["precision"] = labels["top1_correct"] / labels["predicted_top1"]
    labels = labels.merge(refs_db[["reference_id", "reference_name"]], on="reference_id", how="left")

    checks = []
    for ref_id, n in (
        df.loc[~df["reference_id"].isin(refs_db["reference_id"]), "reference_id"].value_counts().items()
    ):
        checks.append(("reference in Elasticsearch unknown to MySQL", ref_id, f"{n} records", n))
    for row in ref["labels"]:
        if row["reference_id"] is None:
            checks.append(("label without reference", row["label_id"], row["label_name"], 1))
    for row in devices[devices["transactions"] == 0].itertuples():
        checks.append(("device without data", row.device_id, row.device_code, 0))
    for column, n in df[DATA_COLUMNS[:11]].isna().sum().items():
        if n:
            checks.append(("field missing in records", column, f"{n / len(df):.2%}", n))
    for row in references[~references["meets_min_appearances"]].itertuples():
        checks.append(("reference below min_appearances", row.reference_id, "", row.appearances))
    consistency = pd.DataFrame(checks, columns=["check", "item", "detail", "count"])
    model = pd.DataFrame(list(ref["model"][0].items()), columns=["field", "value"])
    kpis = pd.DataFrame(
        [
            ("From (UTC)", cfg["since"]),
            ("To (UTC)", cfg["until"]),
            ("Records", len(df)),
            ("Devices with data", int((devices["transactions"] > 0).sum())),
            ("References seen", df["reference_id"].nunique()),
            ("OK transactions", df["ok"].mean()),
            ("Model OK (top-1)", df["model_ok"].mean()),
            ("Top-3 hit rate", df["top3_hit"].mean()),
            (f"Below confidence {CONFIDENCE:.2f}", df["below_threshold"].mean()),
            ("Consistency findings", len(consistency)),
        ],
        columns=["kpi", "value"],
    )
    phases.mark("analysis")

    with pd.ExcelWriter(out, engine=engine) as writer:
        kpis.to_excel(writer, sheet_name="Resumen", index=False)
        df[DATA_COLUMNS].to_excel(writer, sheet_name=DATA_SHEET, index=False)
        phases.mark("workbook: data sheet")
        references.to_excel(writer, sheet_name="References", index=False)
        devices.to_excel(writer, sheet_name="Devices", index=False)
        labels.to_excel(writer, sheet_name="Labels", index=False)
        model.to_excel(writer, sheet_name="Model_Data", index=False)
        consistency.to_excel(writer, sheet_name="Consistencia", index=False)
    phases.mark("workbook: small sheets + save")
    return {"records": len(df)}


def worker(cfg: dict) -> dict:
    sys.path.insert(0, str(REPO / "plugins"))
    method = cfg["method"]
    _imports(method, cfg["reference_json"])
    from elasticsearch import Elasticsearch

    options = {}
    if method.startswith("ours"):  # the client of extract.es_client(): pages stay bytes
        from dataset_ops.inference.extract import search_serializers

        options["serializers"] = search_serializers()
    es = Elasticsearch(cfg["es_url"], request_timeout=300, **options)
    es.info()
    rss_after_imports = _status_mib("VmRSS")
    peak_imports = _status_mib("VmHWM")
    profiler = None
    if cfg.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    phases = Phases()
    if method.startswith("ours"):
        out = work_ours(cfg, es, phases)
    else:
        out = work_pandas(cfg, es, phases, method.split("-", 1)[1])
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(cfg["profile"])
    es.close()
    return {
        **out,
        "seconds": phases.total,
        "phases": phases.seconds,
        "phase_peak_mib": phases.peak_mib,
        "rss_after_imports_mib": rss_after_imports,
        "peak_rss_mib": max([peak_imports, *phases.peak_mib.values()]),
        "peak_reset": phases.resettable,
    }


# -- verification --------------------------------------------------------------------------------
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_ROW = re.compile(rb"<row[ >]")


def sheet_rows(path: Path) -> dict[str, dict]:
    """``{sheet name: {"rows": data rows (<row> elements minus the header), "dimension": ref}}`` in
    the workbook's order, read from the sheets' XML without loading the cells."""
    out: dict[str, dict] = {}
    with zipfile.ZipFile(path) as z:
        book = ET.fromstring(z.read("xl/workbook.xml"))
        rels = ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))
        targets = {rel.get("Id"): rel.get("Target") for rel in rels}
        for sheet in book.iter(f"{_MAIN}sheet"):
            target = targets[sheet.get(f"{_REL}id")]
            member = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
            rows, tail, dimension = 0, b"", None
            with z.open(member) as fh:
                while chunk := fh.read(1 << 20):
                    data = tail + chunk
                    if dimension is None and (m := re.search(rb'<dimension ref="([^"]+)"', data)):
                        dimension = m.group(1).decode()
                    # a row start lying wholly in the carried-over tail was counted with the last chunk
                    rows += len(_ROW.findall(data)) - len(_ROW.findall(tail))
                    tail = data[-5:]
            out[sheet.get("name")] = {"rows": max(rows - 1, 0), "dimension": dimension}
    return out


# -- driver ----------------------------------------------------------------------------------------
def load_mysql(world) -> str:
    """Create ``DB_NAME`` (dropped first if left over) with the world's rows; return the
    Connection as ``AIRFLOW_CONN_INFERENCE_MYSQL`` JSON."""
    import pymysql

    admin = pymysql.connect(host="127.0.0.1", port=3306, user="root")
    with admin, admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
        cur.execute(f"CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4")
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=DB_NAME, charset="utf8mb4")
    with conn:
        world.load_mysql(conn)
    return json.dumps(
        {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "root", "schema": DB_NAME}
    )


def drop_mysql() -> None:
    import pymysql

    admin = pymysql.connect(host="127.0.0.1", port=3306, user="root")
    with admin, admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")


def run_worker(cfg: dict, env: dict) -> dict:
    home = tempfile.mkdtemp(prefix="bench-inference-home-")
    cfg_path = Path(home) / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", str(cfg_path)],
            capture_output=True,
            text=True,
            env={**env, "AIRFLOW_HOME": home, "PYTHONPATH": str(REPO / "plugins")},
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if proc.returncode != 0:
        return {"method": cfg["method"], "error": proc.stderr.strip()[-1500:]}
    return {"method": cfg["method"], **json.loads(proc.stdout.strip().splitlines()[-1])}


def _versions() -> str:
    from importlib.metadata import version

    names = ("pandas", "openpyxl", "xlsxwriter", "pyarrow", "elasticsearch", "noida-db", "apache-airflow")
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {version(name)}")
        except Exception:
            parts.append(f"{name} ?")
    return ", ".join(parts)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the processes of group ``pgid`` (the noida-db
    server runs in its own group)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        print(json.dumps(worker(json.loads(Path(argv[1]).read_text()))))
        return
    ap = argparse.ArgumentParser(description="ES records -> report workbook: dataset_ops.inference vs pandas")
    ap.add_argument("--records", type=int, default=100_000, help="records of the deployment in the window")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported")
    ap.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS + DIAGNOSTICS,
        default=list(METHODS),
        help=f"default: {' '.join(METHODS)}; diagnostics: {' '.join(DIAGNOSTICS)}",
    )
    ap.add_argument(
        "--reference-data",
        choices=("mysql", "world"),
        default="mysql",
        help="mysql: MariaDB on 127.0.0.1:3306 via read_reference_data (full path); world: a JSON file",
    )
    ap.add_argument(
        "--profile", choices=METHODS + DIAGNOSTICS, help="run this method once more under cProfile"
    )
    ap.add_argument("--profile-top", type=int, default=35)
    ap.add_argument("--keep", type=Path, help="keep the workbooks (and profile) in this folder")
    args = ap.parse_args(argv)

    sys.path[:0] = [str(REPO / "tests"), str(REPO / "scripts")]  # scripts/: ports.py
    from helpers.es_server import NoidaElasticsearch, bulk_load, create_index
    from helpers.inference_data import ES_MAPPINGS, make_world

    load_start = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} cores ({_cpu()}), Python {platform.python_version()}, "
        f"load {load_start:.2f}"
    )
    print(f"libraries: {_versions()}", flush=True)
    t = time.perf_counter()
    world = make_world(n_records=args.records)
    expected = len(world.window_records)
    print(
        f"world: {len(world.records):,} records, {expected:,} in the window ({time.perf_counter() - t:.1f} s)"
    )

    work = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    keep = args.keep.resolve() if args.keep else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # the deployment setting README recommends for the workers that run inference_report (Arrow's
    # C++ default pool is chosen when pyarrow loads; set_memory_pool later does not reach it)
    env.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    print(f"workers: ARROW_DEFAULT_MEMORY_POOL={env['ARROW_DEFAULT_MEMORY_POOL']} (every method)")
    server = NoidaElasticsearch()
    mysql_loaded = False
    results: dict[str, list[dict]] = {m: [] for m in args.methods}
    try:
        server.start()
        t = time.perf_counter()
        for index in [*world.index_names, world.decoy_index]:
            create_index(server.url, index, ES_MAPPINGS)
        n = bulk_load(server.url, None, world.es_actions())
        print(
            f"elasticsearch: noida-db at {server.url}, {n:,} documents loaded "
            f"in {time.perf_counter() - t:.1f} s"
        )
        reference_json = ""
        if args.reference_data == "mysql":
            t = time.perf_counter()
            env["AIRFLOW_CONN_INFERENCE_MYSQL"] = load_mysql(world)
            mysql_loaded = True
            print(f"mysql: database {DB_NAME} on 127.0.0.1:3306 loaded in {time.perf_counter() - t:.1f} s")
        else:
            reference_json = str(work / "reference_data.json")
            Path(reference_json).write_text(json.dumps(world.reference_data()))
            print("reference data: built from the World, read from a JSON file")
        base = {
            "es_url": server.url,
            "deployment_id": world.deployment_id,
            "since": world.window_start.isoformat(),
            "until": world.now.isoformat(),
            "reference_json": reference_json,
        }

        def run_one(cfg: dict) -> dict:
            cpu = _group_cpu(server.proc.pid)
            r = run_worker(cfg, env)
            r["server_cpu"] = _group_cpu(server.proc.pid) - cpu
            return r

        def run(method: str, label: str, profile: str | None = None) -> dict:
            out = work / f"{label}.xlsx"
            cfg = {**base, "method": method, "out": str(out), "profile": profile}
            r = run_one(cfg)
            if "error" not in r:
                r["bytes"] = out.stat().st_size
                sheets = sheet_rows(out)
                r["sheets"] = {name: s["rows"] for name, s in sheets.items()}
                data = sheets.get(DATA_SHEET, {})
                r["data_rows"] = data.get("rows")
                r["data_dimension"] = data.get("dimension")
                r["sheet_order_ok"] = list(sheets) == list(SHEETS)
                if keep:
                    shutil.copy(out, keep / out.name)
            out.unlink(missing_ok=True)
            return r

        for round_no in range(args.repeat):
            k = round_no % len(args.methods)
            for method in args.methods[k:] + args.methods[:k]:
                r = run(method, f"{method}-{round_no + 1}")
                results[method].append(r)
                if "error" in r:
                    print(f"round {round_no + 1} {method}: FAILED\n{r['error']}", flush=True)
                else:
                    phases = ", ".join(f"{p} {s:.2f}" for p, s in r["phases"].items())
                    print(
                        f"round {round_no + 1} {method}: {r['seconds']:.2f} s ({phases}); peak RSS "
                        f"{r['peak_rss_mib']:.0f} MiB; {r['bytes']:,} bytes; {DATA_SHEET} "
                        f"{r['data_rows']:,} rows ({r['data_dimension']}); noida CPU {r['server_cpu']:.1f} s",
                        flush=True,
                    )
        profile_report = None
        if args.profile:
            stats_path = (keep or work) / f"profile-{args.profile}.pstats"
            r = run(args.profile, f"{args.profile}-profile", str(stats_path))
            if "error" in r:
                print(f"profile run of {args.profile}: FAILED\n{r['error']}")
            else:
                import io
                import pstats

                buf = io.StringIO()
                stats = pstats.Stats(str(stats_path), stream=buf).strip_dirs()
                stats.sort_stats("tottime").print_stats(args.profile_top)
                stats.sort_stats("cumulative").print_stats(args.profile_top)
                profile_report = (r, buf.getvalue(), stats_path)
    finally:
        server.stop()
        if mysql_loaded:
            drop_mysql()
        shutil.rmtree(work, ignore_errors=True)

    print_report(args, results, expected, os.getloadavg()[0], load_start)
    if profile_report:
        r, text, stats_path = profile_report
        print(f"\n## cProfile of {args.profile} ({r['seconds']:.2f} s under the profiler; {stats_path})\n")
        print(text)


def _es_read(m: dict) -> float:
    """Median seconds of the method's Elasticsearch read phase (ours: with the data sheet written
    meanwhile)."""
    return sum(v for p, v in m["phases"].items() if p.startswith("es read"))


def print_report(
    args, results: dict[str, list[dict]], expected: int, load_end: float, load_start: float
) -> None:
    print(
        f"\n{args.records:,} records of deployment 7 in the 30-day window (15 columns in {DATA_SHEET}); "
        f"reference data: {args.reference_data}; median of {args.repeat}; "
        f"load {load_start:.2f} -> {load_end:.2f}\n"
    )
    print(
        "| method | seconds (median) | runs (s) | of which ES read | noida CPU | peak RSS MiB "
        f"| RSS after imports MiB | workbook bytes | sheets | rows in {DATA_SHEET} |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---|---:|")
    medians: dict[str, dict] = {}
    for method, runs in results.items():
        ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["seconds"])
        if not ok:
            print(f"| {method} | failed | | | | | | | | |")
            continue
        med = ok[(len(ok) - 1) // 2]
        m = medians[method] = {
            "seconds": statistics.median(r["seconds"] for r in ok),
            "peak": max(r["peak_rss_mib"] for r in ok),
            "runs": [r["seconds"] for r in runs if "error" not in r],
            "server_cpu": statistics.median(r["server_cpu"] for r in ok),
            "phases": {p: statistics.median(r["phases"][p] for r in ok) for p in ok[0]["phases"]},
            "phase_peak": {p: max(r["phase_peak_mib"][p] for r in ok) for p in ok[0]["phase_peak_mib"]},
        }
        rows = {r["data_rows"] for r in ok}
        rows_text = ", ".join(f"{n:,}" for n in sorted(rows)) + (" ok" if rows == {expected} else " MISMATCH")
        sheets_ok = all(r["sheet_order_ok"] for r in ok)
        print(
            f"| {method} | {m['seconds']:.2f} s | {' / '.join(f'{s:.1f}' for s in m['runs'])} | "
            f"{_es_read(m):.1f} s | {m['server_cpu']:.1f} s | {m['peak']:.0f} | "
            f"{max(r['rss_after_imports_mib'] for r in ok):.0f} | {med['bytes']:,} | "
            f"{len(ok[0]['sheets'])}{' (order ok)' if sheets_ok else ' (ORDER DIFFERS)'} | {rows_text} |"
        )
        failed = len(runs) - len(ok)
        if failed:
            print(f"  ({method}: {failed} failed runs)")
    print(
        "\n(ES read: the method's Elasticsearch phase, JSON decoding and conversion included; for ours "
        "it includes the data sheet, written while the next page is fetched; noida CPU: "
        "CPU seconds of the noida-db server during the run)"
    )

    print("\nphases (median seconds / peak RSS MiB within the phase):\n")
    for method, m in medians.items():
        parts = [f"{p} {s:.2f} s / {m['phase_peak'][p]:.0f} MiB" for p, s in m["phases"].items()]
        print(f"- {method}: " + "; ".join(parts))

    ours = medians.get("ours")
    base = medians.get("pandas-openpyxl")
    print()
    if ours and base:
        ratio = base["seconds"] / ours["seconds"]
        print(f"pandas-openpyxl / ours: {ratio:.2f}x (target >= 2x: {'met' if ratio >= 2 else 'NOT met'})")
    for name in ("pandas-xlsxwriter",):
        if ours and name in medians:
            print(
                f"{name} / ours: {medians[name]['seconds'] / ours['seconds']:.2f}x (informational, no target)"
            )
    for name in DIAGNOSTICS:
        if base and name in medians:
            print(
                f"pandas-openpyxl / {name}: {base['seconds'] / medians[name]['seconds']:.2f}x "
                "(diagnostic, no target)"
            )
    for name in ("ours", *DIAGNOSTICS):
        if name in medians:
            m = medians[name]
            mb = m["peak"] * 1.048576
            print(
                f"{name} peak RSS: {m['peak']:.0f} MiB = {mb:.0f} MB (peak RSS < 300 MB: "
                f"{'met' if mb < 300 else 'NOT met'})"
            )
    for name in ("pandas-openpyxl", "pandas-xlsxwriter"):
        if name in medians:
            print(f"{name} peak RSS: {medians[name]['peak']:.0f} MiB (no target)")


if __name__ == "__main__":
    main()
