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
* ``pandera-polars`` (both formats): the same rule set written as a pandera ``DataFrameSchema``
  for polars (:func:`pandera_schema`), the file read whole with ``polars.read_csv`` (every column
  a string, the numeric ones cast by pandera, ``coerce=True``) or ``polars.read_ndjson``, then
  ``schema.validate(df, lazy=True)``, which collects every failure case. Time = read + validate.
* ``frictionless`` (both formats): ``frictionless.validate(file, schema=<Table Schema>)`` with the
  same rules as a Table Schema (:func:`frictionless_schema`): types, ``required``, ``enum``,
  ``minimum``/``maximum``, ``pattern``, ``minLength``, the date format. It reads a few MB/s, so
  it runs on a prefix of whole repetitions of the source file (at most
  ``--frictionless-prefix-mb``, default 50 MB; exact record boundaries, also for the CSV's
  multi-line records), and its MB/s is labelled as measured on that prefix.

What each competitor cannot express of the rule set is printed with the results (the "gaps");
``tests/plugins/validation/test_bench_schemas.py`` checks on small bad files that the pandera
and frictionless schemas report the bad rows.

``--pandas2-python PY`` runs the two pandas methods once more with another interpreter (``make
bench-validation`` makes one with pandas 2.3.3 in ``.data/bench/pandas2``): the figures the
issue's targets were derived from (``read_json`` about 25 MB/s, ``read_csv`` about 70 MB/s) are
pandas 2 figures; pandas 3 reads strings into Arrow and is several times faster on these files.
Ratios are printed against every pandas present, as information; the targets are ours against
pandera-polars (at least as fast, at most a tenth of its peak RSS) and against frictionless (at
least 10x its MB/s).

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

JSONL_METHODS = [
    "ours",
    "pandera-polars",
    "frictionless",
    "pandas.read_json",
    "pyarrow.json.read_json",
    "orjson loop",
]
CSV_METHODS = [
    "ours",
    "pandera-polars",
    "frictionless",
    "pandas.read_csv",
    'pandas.read_csv(engine="pyarrow")',
    "pyarrow.csv.read_csv",
    "csv.reader loop",
    "pyarrow.csv.open_csv",
]
#: The rule set (``include/validation/<name>.yaml``) of each input.
RULE_SETS = {"jsonl": "training_jsonl", "csv": "tweets_csv"}
#: Earlier targets against pandas (printed as information) and ours' own MB/s target.
TARGETS = {
    "jsonl": {"baseline": "pandas.read_json", "ratio": 5.0, "mb_s": 125.0},
    "csv": {"baseline": "pandas.read_csv", "ratio": 2.0, "mb_s": 140.0},
}
RSS_TARGET_MIB = 200
#: Targets against the validators: ours at least as fast as pandera-polars at no more than a
#: tenth of its peak RSS, and at least 10x frictionless' MB/s.
PANDERA_SPEED_TARGET = 1.0
PANDERA_RSS_TARGET = 10.0
FRICTIONLESS_SPEED_TARGET = 10.0


# -- inputs ------------------------------------------------------------------------------------
def _source(kind: str) -> tuple[bytes, bytes]:
    """The header (empty for JSONL) and the body of the real source file of ``kind``."""
    src = (GSM8K if kind == "jsonl" else TWEETS).read_bytes()
    if kind == "jsonl":
        return b"", src
    cut = src.index(b"\n") + 1
    return src[:cut], src[cut:]


def _generate(kind: str, size_gb: float | None = None, repeats: int | None = None) -> Path:
    """Build (or reuse) the scaled file: the header, then the body ``repeats`` times (or as many
    times as make at least ``size_gb`` GiB); returns its path."""
    head, body = _source(kind)
    if repeats is None:
        target = int((size_gb or 0) * (1 << 30))
        n = -(-(target - len(head)) // len(body))
    else:
        n = max(1, repeats)
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


def _prefix(kind: str, path: Path, prefix_mb: float) -> Path:
    """The longest file of whole repetitions (header + the body k times, k >= 1) no larger than
    ``prefix_mb`` MB, or ``path`` itself when that is not smaller: every record boundary is exact,
    also for the CSV's quoted multi-line records."""
    head, body = _source(kind)
    k = max(1, int((prefix_mb * MB - len(head)) // len(body)))
    if len(head) + k * len(body) >= path.stat().st_size:
        return path
    return _generate(kind, repeats=k)


# -- the competitors' schemas ------------------------------------------------------------------
def _whole(pattern: str) -> str:
    """``pattern`` anchored to match a whole value (the rule sets' CSV ``pattern`` semantics)."""
    return f"^(?:{pattern})$"


#: JSON Schema keywords the translations below understand (others raise ValueError).
_JSON_OBJECT_KEYS = {
    "type",
    "required",
    "additionalProperties",
    "properties",
    "$schema",
    "title",
    "description",
}
_JSON_PROPERTY_KEYS = {
    "type",
    "minLength",
    "maxLength",
    "pattern",
    "enum",
    "minimum",
    "maximum",
    "description",
}


def _json_properties(schema: dict) -> list[tuple[str, dict, bool]]:
    """``(name, property schema, required)`` of a JSONL rule set's object schema.

    :raises ValueError: a keyword outside :data:`_JSON_OBJECT_KEYS` / :data:`_JSON_PROPERTY_KEYS`,
        or a property type other than string/integer/number/boolean (not translated).
    """
    unknown = set(schema) - _JSON_OBJECT_KEYS
    if unknown:
        raise ValueError(f"JSON Schema keywords not translated: {sorted(unknown)}")
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        unknown = set(prop) - _JSON_PROPERTY_KEYS
        if unknown or prop.get("type") not in ("string", "integer", "number", "boolean"):
            raise ValueError(f"property {name!r}: not translated: {prop}")
        out.append((name, prop, name in required))
    return out


def pandera_schema(kind: str, rules: dict):
    """The rule set as a pandera ``DataFrameSchema`` for polars (``pandera.polars``).

    :param kind: ``"csv"`` or ``"jsonl"``.
    :param rules: the rule set in plain form, ``load_rules(name).to_dict()``
        (``plugins/dataset_ops/validation/rules.py``; format: ``include/validation/README.md``).
    :returns: ``(schema, gaps)``: the schema for the frame :func:`run_pandera` reads, and the rules
        it does not check, in words.

    CSV (every column read as a string): ``integer``/``number`` are ``Int64``/``Float64`` columns
    with ``coerce=True`` (a value that does not cast is a failure case); ``date``/``datetime`` stay
    strings with a check that ``str.strptime(format)`` parses them; ``boolean`` is an ``isin`` of
    the true/false spellings; ``enum`` is ``isin``, ``pattern`` is ``str_matches`` anchored at
    both ends, ``minimum``/``maximum`` are ``ge``/``le``; ``nullable`` as is; ``header: exact`` is
    ``strict=True, ordered=True``. JSONL: each property a column of its JSON type; ``required``
    makes it required and not nullable; ``minLength``/``maxLength`` are ``str_length``;
    ``pattern`` is ``str_contains`` (searched, as JSON Schema does); ``additionalProperties:
    false`` is ``strict=True``.

    :raises ValueError: a rule the translation does not know (so nothing is dropped silently).
    """
    import pandera.polars as pa
    import polars as pl

    dtypes = {"string": pl.String, "integer": pl.Int64, "number": pl.Float64, "boolean": pl.Boolean}
    gaps: list[str] = []
    columns = {}
    if kind == "csv":
        csv = rules["csv"]
        for col in csv["columns"]:
            ctype = col["type"]
            checks = []
            if ctype == "boolean":
                checks.append(pa.Check.isin(list(csv["true_values"]) + list(csv["false_values"])))
            elif ctype in ("date", "datetime"):
                checks.append(_pandera_strptime_check(ctype, col.get("format")))
            if col.get("enum") is not None:
                checks.append(pa.Check.isin(list(col["enum"])))
            if col.get("pattern") is not None:
                checks.append(pa.Check.str_matches(_whole(col["pattern"])))
            if col.get("minimum") is not None:
                checks.append(pa.Check.ge(col["minimum"]))
            if col.get("maximum") is not None:
                checks.append(pa.Check.le(col["maximum"]))
            numeric = ctype in ("integer", "number")
            columns[col["name"]] = pa.Column(
                dtypes[ctype] if numeric else pl.String,
                checks=checks,
                nullable=col.get("nullable", True),
                required=col.get("required", True),
                coerce=numeric,
            )
        exact = csv["header"] == "exact"
        schema = pa.DataFrameSchema(
            columns, strict=exact or not csv["allow_extra_columns"], ordered=exact, name=rules.get("name")
        )
        gaps.append(
            "a record with too few fields is read with nulls (a failure only in a non-nullable column)"
        )
        gaps.append("a structural error (too many fields, bad quoting, bad UTF-8) stops polars.read_csv")
        return schema, gaps
    schema = rules["jsonl"]["schema"] or {}
    for name, prop, required in _json_properties(schema):
        checks = []
        if "minLength" in prop or "maxLength" in prop:
            checks.append(pa.Check.str_length(prop.get("minLength"), prop.get("maxLength")))
        if "pattern" in prop:
            checks.append(pa.Check.str_contains(prop["pattern"]))
        if "enum" in prop:
            checks.append(pa.Check.isin(list(prop["enum"])))
        if "minimum" in prop:
            checks.append(pa.Check.ge(prop["minimum"]))
        if "maximum" in prop:
            checks.append(pa.Check.le(prop["maximum"]))
        columns[name] = pa.Column(
            dtypes[prop["type"]], checks=checks, nullable=not required, required=required
        )
    strict = schema.get("additionalProperties", True) is False
    gaps.append("polars.read_ndjson turns a number into a string in a string column (no type error)")
    gaps.append("a line that is not JSON (or not an object) stops polars.read_ndjson")
    return pa.DataFrameSchema(columns, strict=strict, name=rules.get("name")), gaps


def _pandera_strptime_check(ctype: str, fmt: str | None):
    """A pandera check that each non-null string parses with ``fmt`` (polars ``str.strptime``;
    ISO 8601 when ``fmt`` is None)."""
    import pandera.polars as pa
    import polars as pl

    target = pl.Date if ctype == "date" else pl.Datetime

    def parses(data):
        col = pl.col(data.key)
        if fmt is None:
            parsed = col.str.to_date(strict=False) if ctype == "date" else col.str.to_datetime(strict=False)
        else:
            parsed = col.str.strptime(target, fmt, strict=False)
        return data.lazyframe.select(col.is_null() | parsed.is_not_null())

    return pa.Check(parses, name="strptime", error=f"strptime({fmt or 'ISO 8601'!r})")


def run_pandera(path: str | Path, kind: str, rules: dict) -> dict:
    """Read ``path`` with polars and validate it with :func:`pandera_schema` (``lazy=True``).

    :returns: ``rows``, ``read_seconds``, ``validate_seconds``, ``seconds`` (their sum),
        ``valid``, ``failure_cases`` (count), ``failed_rows`` (sorted 0-based row indexes with a
        failure case), ``failed_columns`` (``"column: check"`` of the failures without a row, e.g.
        a wrong dtype or an unexpected column); or ``error`` when polars could not read the file.
    """
    import pandera.polars as pa
    import polars as pl

    schema, _ = pandera_schema(kind, rules)
    out: dict = {}
    t = time.perf_counter()
    try:
        if kind == "csv":
            csv = rules["csv"]
            df = pl.read_csv(
                path, infer_schema=False, separator=csv["delimiter"], null_values=list(csv["null_values"])
            )
        else:
            df = pl.read_ndjson(path)
    except Exception as exc:  # a structural error: polars stops at the first one
        return {
            "seconds": time.perf_counter() - t,
            "valid": False,
            "error": f"{type(exc).__name__}: {exc}"[:300],
        }
    out.update(read_seconds=time.perf_counter() - t, rows=df.height)
    t = time.perf_counter()
    try:
        schema.validate(df, lazy=True)
        out.update(valid=True, failure_cases=0, failed_rows=[], failed_columns=[])
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        rows = cases.filter(pl.col("index").is_not_null())["index"].unique().sort().to_list()
        no_row = cases.filter(pl.col("index").is_null())
        failed_columns = sorted({f"{c}: {k}" for c, k in zip(no_row["column"], no_row["check"], strict=True)})
        out.update(valid=False, failure_cases=cases.height, failed_rows=rows, failed_columns=failed_columns)
    out["validate_seconds"] = time.perf_counter() - t
    out["seconds"] = out["read_seconds"] + out["validate_seconds"]
    return out


def frictionless_schema(kind: str, rules: dict) -> tuple[dict, list[str]]:
    """The rule set as a Frictionless Table Schema descriptor (https://specs.frictionlessdata.io/
    table-schema/, as frictionless 5.21 reads it).

    :param kind: ``"csv"`` or ``"jsonl"``.
    :param rules: ``load_rules(name).to_dict()``.
    :returns: ``(descriptor, gaps)``: the descriptor for ``frictionless.Schema.from_descriptor``,
        and the rules it does not check, in words.

    CSV: each column a field of the same type (``datetime``/``date`` with the strptime
    ``format``, ``boolean`` with ``trueValues``/``falseValues``), ``required = not nullable``,
    ``enum``, ``pattern`` (frictionless anchors it), ``minimum``/``maximum``; ``missingValues`` =
    the rule set's null values; the header is compared with the field names in order (frictionless
    does that by default). JSONL: each property a field, ``required``, ``minLength``/``maxLength``,
    ``pattern`` wrapped in ``[\\s\\S]*(?:...)[\\s\\S]*`` (JSON Schema searches, Table Schema
    matches the whole value), ``enum``, ``minimum``/``maximum``.

    :raises ValueError: a rule the translation does not know.
    """
    gaps: list[str] = []
    fields = []
    if kind == "csv":
        csv = rules["csv"]
        for col in csv["columns"]:
            field: dict = {"name": col["name"], "type": col["type"]}
            constraints: dict = {}
            if col["type"] in ("date", "datetime"):
                field["format"] = col.get("format") or "default"
            if col["type"] == "boolean":
                field["trueValues"] = list(csv["true_values"])
                field["falseValues"] = list(csv["false_values"])
            if not col.get("nullable", True):
                constraints["required"] = True
            if col.get("enum") is not None:
                constraints["enum"] = list(col["enum"])
            if col.get("pattern") is not None:
                if col["type"] == "string":
                    constraints["pattern"] = col["pattern"]
                else:  # frictionless supports "pattern" on string fields only
                    gaps.append(f"{col['name']}: pattern (not supported on a {col['type']} field)")
            for key in ("minimum", "maximum"):
                if col.get(key) is not None:
                    constraints[key] = col[key]
            if constraints:
                field["constraints"] = constraints
            fields.append(field)
        if csv["header"] != "exact":
            gaps.append("header by_name (the descriptor expects the exact header)")
        return {"fields": fields, "missingValues": list(csv["null_values"])}, gaps
    schema = rules["jsonl"]["schema"] or {}
    for name, prop, required in _json_properties(schema):
        constraints = {"required": True} if required else {}
        for key in ("minLength", "maxLength", "enum", "minimum", "maximum"):
            if key in prop:
                constraints[key] = prop[key]
        if "pattern" in prop:
            constraints["pattern"] = f"[\\s\\S]*(?:{prop['pattern']})[\\s\\S]*"
        fields.append(
            {"name": name, "type": prop["type"], **({"constraints": constraints} if constraints else {})}
        )
    if schema.get("additionalProperties", True) is False:
        gaps.append(
            "additionalProperties: false only for the first line (frictionless takes the header from "
            "its keys and drops other keys of later lines)"
        )
    return {"fields": fields}, gaps


def run_frictionless(path: str | Path, kind: str, rules: dict) -> dict:
    """``frictionless.validate(path, schema=...)`` with :func:`frictionless_schema` (UTF-8; the
    CSV with ``,`` and ``"``; the default checks and ``limit_errors`` of 1000).

    :returns: ``seconds``, ``rows``, ``valid``, ``errors`` (count), ``error_rows`` (sorted 0-based
        data row indexes with an error: frictionless' row number minus 2, the header being row 1),
        ``error_types`` (``"type: field"`` of the errors without a row).
    """
    import frictionless

    descriptor, _ = frictionless_schema(kind, rules)
    schema = frictionless.Schema.from_descriptor(descriptor)
    options: dict = {"encoding": "utf-8"}
    if kind == "csv":
        options["control"] = frictionless.formats.CsvControl(
            delimiter=rules["csv"]["delimiter"], quote_char='"'
        )
    t = time.perf_counter()
    # a relative path under basepath: frictionless refuses absolute paths as "not safe"
    path = Path(path).resolve()
    report = frictionless.validate(path.name, basepath=str(path.parent), schema=schema, **options)
    seconds = time.perf_counter() - t
    task = report.tasks[0] if report.tasks else None
    errors = list(task.errors) if task else list(report.errors)
    rows = sorted({e.row_number - 2 for e in errors if getattr(e, "row_number", None)})
    other = sorted(
        {
            f"{e.type}: {getattr(e, 'field_name', '') or getattr(e, 'label', '')}"
            for e in errors
            if not getattr(e, "row_number", None)
        }
    )
    return {
        "seconds": seconds,
        "rows": task.stats.get("rows") if task else 0,
        "valid": report.valid,
        "errors": len(errors),
        "error_rows": rows,
        "error_types": other,
    }


# -- workers (run in a subprocess) ---------------------------------------------------------------
def _work(spec: dict) -> dict:
    """Run one method (``spec``: method, path, kind, prefix_mb, rules, full_bytes); returns what
    it measured."""
    method, path, kind, prefix_mb = spec["method"], spec["path"], spec["kind"], spec.get("prefix_mb")
    sys.path.insert(0, str(REPO / "plugins"))
    out: dict = {"method": method}
    # each method imports only what it uses, so that peak RSS is its own
    if method == "pandera-polars":
        import pandera.polars  # noqa: F401  (imports before the clock, as for every method)
        import polars

        out["polars_threads"] = polars.thread_pool_size()
        res = run_pandera(path, kind, spec["rules"])
        res["failed_rows"] = res.get("failed_rows", [])[:20]
        out.update(res)
    elif method == "frictionless":
        import frictionless  # noqa: F401

        out.update(run_frictionless(path, kind, spec["rules"]))
        out["error_rows"] = out["error_rows"][:20]
        if spec.get("full_bytes") and os.path.getsize(path) < spec["full_bytes"]:
            out["bytes"] = os.path.getsize(path)  # measured on a prefix: labelled in the table
    elif method == "ours":
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


def _run_worker(spec: dict, python: str | None = None) -> dict:
    """Run :func:`_work` in a fresh interpreter (``python`` or this one); its last stdout line."""
    cmd = [python or sys.executable, __file__, "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"method": spec["method"], "error": f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"}
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
    from importlib.metadata import version

    import fastjsonschema

    return [
        f"machine: {os.cpu_count()} cores ({cpu}), {mem:.1f} GiB RAM, {platform.platform()}",
        f"python {platform.python_version()}, pyarrow {pyarrow.__version__}, pandas {pandas.__version__}, "
        f"numpy {numpy.__version__}, orjson {orjson.__version__}, fastjsonschema {fastjsonschema.VERSION}, "
        f"polars {version('polars')}, pandera {version('pandera')}, frictionless {version('frictionless')}",
    ]


def _fmt_row(r: dict, nbytes: int) -> tuple[str, str, str, str, str]:
    if "seconds" not in r or "error" in r and r.get("rows") is None:
        return r["method"], "failed", "-", f"{r.get('max_rss_mib', 0):.0f}", r.get("error", "")
    size = r.get("bytes", nbytes)
    rate = size / r["seconds"] / MB
    label = r["method"] + (f" (first {size / MB:.0f} MB)" if "bytes" in r else "")
    note = f"{r['rows']:,}" if isinstance(r.get("rows"), int) else ""
    if r["method"] in ("pandera-polars", "frictionless"):
        failures = r.get("failure_cases", r.get("errors", 0))
        note += ", valid" if r.get("valid") else f", INVALID ({failures} failures)"
        if "read_seconds" in r:
            note += f" (read {r['read_seconds']:.2f} s + validate {r['validate_seconds']:.2f} s)"
    if len(r.get("runs") or ()) > 1:
        note += "; median of " + ", ".join(f"{x:.2f}" for x in r["runs"]) + " s"
    return label, f"{r['seconds']:.2f} s", f"{rate:.1f}", f"{r['max_rss_mib']:.0f}", note


def _rate(r: dict | None, nbytes: int) -> float | None:
    """MB/s of a result (on its prefix if it ran on one), None if it did not complete."""
    if not r or "seconds" not in r or r.get("rows") is None:
        return None
    return r.get("bytes", nbytes) / r["seconds"] / MB


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        print(json.dumps(_work(json.loads(argv[1]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=1.0, help="input size in GiB (default 1)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of ours (median reported)")
    ap.add_argument("--others-repeat", type=int, default=1, help="runs of every other method")
    ap.add_argument("--only", choices=["jsonl", "csv"], help="one format only")
    ap.add_argument("--pandas-json-prefix-mb", type=float, help="pandas.read_json on a prefix only")
    ap.add_argument(
        "--frictionless-prefix-mb",
        type=float,
        default=50.0,
        help="frictionless on at most this many MB of whole repetitions of the source (default 50)",
    )
    ap.add_argument("--skip", action="append", default=[], help="skip a method (repeatable)")
    ap.add_argument(
        "--pandas2-python", help="also run the pandas methods with this interpreter (e.g. one with pandas 2)"
    )
    args = ap.parse_args(argv)

    sys.path.insert(0, str(REPO / "plugins"))
    from dataset_ops.validation import load_rules

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
        rules = load_rules(RULE_SETS[kind]).to_dict()
        results = {}
        methods = [(m, None) for m in (JSONL_METHODS if kind == "jsonl" else CSV_METHODS)]
        if args.pandas2_python:
            methods.append((TARGETS[kind]["baseline"], args.pandas2_python))
        planned = []  # (method, python, spec, runs wanted)
        for method, python in methods:
            if method in args.skip:
                continue
            spec = {"method": method, "path": str(path), "kind": kind, "rules": rules, "full_bytes": nbytes}
            if method == "pandas.read_json":
                spec["prefix_mb"] = args.pandas_json_prefix_mb
            if method == "frictionless":
                spec["path"] = str(_prefix(kind, path, args.frictionless_prefix_mb))
            planned.append((method, python, spec, args.repeat if method == "ours" else args.others_repeat))
        # in rounds (every method once per round), so a busy spell of the machine hits all alike
        all_runs: dict[tuple, list] = {(m, py): [] for m, py, _, _ in planned}
        for round_no in range(max((n for *_, n in planned), default=0)):
            for method, python, spec, wanted in planned:
                if round_no >= wanted:
                    continue
                r = _run_worker(spec, python)
                if python:
                    r["method"] = f"{method} [pandas {r.get('pandas', '?')}]"
                all_runs[(method, python)].append(r)
                print(f"  {kind} {method} (round {round_no + 1}): {json.dumps(r)}", flush=True)
        for runs in all_runs.values():
            ok = [r for r in runs if "seconds" in r and r.get("rows") is not None]
            if ok:
                best = sorted(ok, key=lambda r: r["seconds"])[len(ok) // 2]  # median run
                best = dict(
                    best, max_rss_mib=max(r["max_rss_mib"] for r in ok), runs=[r["seconds"] for r in ok]
                )
            else:
                best = runs[-1]
            results[best["method"]] = best
        summary.append((kind, path, nbytes, results, rules))
    lines.append(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    lines.append(f"wall time of the benchmark: {time.perf_counter() - started:.0f} s")

    print("\n## Results\n")
    for line in lines:
        print(line)
    for kind, path, nbytes, results, rules in summary:
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
                + (
                    f"{ours.get('workers', 0)} worker process(es) "
                    f"(their peak RSS {ours.get('worker_rss_mib', 0):.0f} MiB, included in the peak RSS)"
                    if ours.get("worker_rss_mib")
                    else f"{ours.get('workers', 0)} checking thread(s) beside the reading one"
                )
            )
            print("\ntargets, against validators that check the same rules:")
            pandera = results.get("pandera-polars")
            p_rate = _rate(pandera, nbytes)
            if p_rate is not None and pandera.get("valid"):
                ratio = rate / p_rate
                rss = pandera["max_rss_mib"] / ours["max_rss_mib"]
                print(
                    f"ours vs pandera-polars: {ratio:.2f}x the speed "
                    f"(target >= {PANDERA_SPEED_TARGET:.0f}x: {_verdict(ratio >= PANDERA_SPEED_TARGET)}); "
                    f"peak RSS {ours['max_rss_mib']:.0f} vs {pandera['max_rss_mib']:.0f} MiB, "
                    f"{rss:.1f}x less "
                    f"(target >= {PANDERA_RSS_TARGET:.0f}x: {_verdict(rss >= PANDERA_RSS_TARGET)})"
                )
            elif pandera:
                print(
                    "ours vs pandera-polars: no ratio, pandera-polars did not pass: "
                    f"{pandera.get('error', '')}"
                )
            fl = results.get("frictionless")
            f_rate = _rate(fl, nbytes)
            if f_rate is not None and fl.get("valid"):
                where = f"the first {fl['bytes'] / MB:.0f} MB" if "bytes" in fl else "the whole file"
                ratio = rate / f_rate
                print(
                    f"ours vs frictionless: {ratio:.1f}x the speed "
                    f"(frictionless {f_rate:.2f} MB/s measured on {where}; "
                    f"target >= {FRICTIONLESS_SPEED_TARGET:.0f}x: "
                    f"{_verdict(ratio >= FRICTIONLESS_SPEED_TARGET)}); peak RSS {fl['max_rss_mib']:.0f} MiB"
                )
            elif fl:
                print(f"ours vs frictionless: no ratio, frictionless did not pass: {fl.get('error', '')}")
            for name in ("pandera-polars", "frictionless"):
                try:
                    build = pandera_schema if name == "pandera-polars" else frictionless_schema
                    gaps = build(kind, rules)[1]
                except ValueError as exc:
                    gaps = [f"not translated: {exc}"]
                print(f"rules {name} does not check here: " + "; ".join(gaps))

            print("\ninformation (readers without the rules; the earlier targets against pandas):")
            target = TARGETS[kind]
            for name, base in results.items():
                base_rate = _rate(base, nbytes)
                if not name.startswith(target["baseline"]) or base_rate is None:
                    continue
                ratio = rate / base_rate
                goal = f"earlier target >= {target['ratio']:.0f}x"
                version = f" (pandas {base['pandas']})" if "[" not in name and "pandas" in base else ""
                print(f"ours vs {name}{version}: {ratio:.2f}x ({goal}: {_verdict(ratio >= target['ratio'])})")
            verdict = _verdict(rate >= target["mb_s"])
            print(f"ours throughput: {rate:.1f} MB/s (target >= {target['mb_s']:.0f} MB/s: {verdict})")
            verdict = _verdict(ours["max_rss_mib"] < RSS_TARGET_MIB)
            print(f"ours peak RSS: {ours['max_rss_mib']:.0f} MiB (target < {RSS_TARGET_MIB} MiB: {verdict})")
            for name in ("pyarrow.json.read_json", "pyarrow.csv.read_csv"):
                other_rate = _rate(results.get(name), nbytes)
                if other_rate is not None:
                    print(
                        f"ours vs {name}: {rate / other_rate:.2f}x the speed, "
                        f"{results[name]['max_rss_mib'] / ours['max_rss_mib']:.1f}x less peak RSS"
                    )


if __name__ == "__main__":
    main()
