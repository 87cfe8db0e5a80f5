"""Read a lake table the way Athena would, from its Glue ``CreateTable`` request, with DuckDB.

:func:`read_table` takes a request written by :mod:`dataset_ops.ingest.catalog` and

* evaluates its partition projection like Athena: one partition per day of
  ``projection.dt.range`` (``<first day>,NOW``, ``NOW`` being today in UTC), each at
  ``storage.location.template`` with the day put in; the files directly in such a folder are the
  partition's, except names starting with ``_`` or ``.`` (hidden to Hive and Athena);
* reads those files with DuckDB as the table's SerDe would: Parquet by name (case-insensitive)
  or, with ``parquet.column.index.access``, by position, after checking that every file's type
  is the declared one; CSV with the SerDe's separator and quote (RFC 4180: only doubled quotes,
  the escape character must be U+0000, i.e. none), the header lines skipped, string columns
  ``''`` where the field is empty (OpenCSVSerde has no null for strings), other columns NULL
  where the field does not parse when ``use.null.for.invalid.data`` is set (an error
  otherwise), booleans only ``true``/``false``, integers only digits;
* refuses, like Athena's line-based reader would split them, CSV files whose records span lines
  (:class:`SplitRows`), which DuckDB alone would read whole.

:func:`expected_rows` gives the rows such a table must hold for records as a service served them.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

DUCKDB_TYPES = {
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "string": "VARCHAR",
    "timestamp": "TIMESTAMP",
}


class SplitRows(AssertionError):
    """A CSV file has records with line breaks inside a field: Athena's CSV table would read
    each line as a row of its own."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def projected_partitions(table_input: dict, today: date | None = None) -> dict[str, str]:
    """``{dt: location URI}`` of every partition the projection of ``table_input`` gives."""
    params = table_input["Parameters"]
    assert params["projection.enabled"] == "true"
    [key] = [k["Name"] for k in table_input["PartitionKeys"]]
    assert params[f"projection.{key}.type"] == "date"
    assert params[f"projection.{key}.format"] == "yyyy-MM-dd", "only this format is modelled"
    assert (
        params.get(f"projection.{key}.interval", "1"),
        params.get(f"projection.{key}.interval.unit", "DAYS"),
    ) == (
        "1",
        "DAYS",
    )
    first, last = (part.strip() for part in params[f"projection.{key}.range"].split(","))
    end = (today or datetime.now(UTC).date()) if last == "NOW" else date.fromisoformat(last)
    day = date.fromisoformat(first)
    template = params["storage.location.template"]
    out = {}
    while day <= end:
        value = f"{day:%Y-%m-%d}"
        out[value] = template.replace("${" + key + "}", value)
        day += timedelta(days=1)
    return out


def visible_files(lake, base_uri: str, table_input: dict, today: date | None = None) -> dict[str, list[str]]:
    """``{dt: [lake keys]}``: the files each projected partition holds (hidden names skipped).

    :param base_uri: the lake root's URI with a trailing ``/`` (as the definitions spell it)."""
    location = table_input["StorageDescriptor"]["Location"]
    assert location.startswith(base_uri) and location.endswith("/"), (location, base_uri)
    folders = {uri[len(base_uri) :]: dt for dt, uri in projected_partitions(table_input, today).items()}
    found: dict[str, list[str]] = {}
    for key in lake.list(location[len(base_uri) :]):
        folder, _, name = key.rpartition("/")
        if folder + "/" in folders and not name.startswith(("_", ".")):
            found.setdefault(folders[folder + "/"], []).append(key)
    return found


def _athena_type(arrow_type) -> str:
    import pyarrow as pa

    if pa.types.is_int64(arrow_type):
        return "bigint"
    if pa.types.is_float64(arrow_type):
        return "double"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz in (None, "UTC", "+00:00"):
        return "timestamp"
    return f"<{arrow_type}>"


def _download(lake, key: str, workdir: Path) -> Path:
    path = workdir / key
    path.parent.mkdir(parents=True, exist_ok=True)
    with lake.open_read(key) as src:
        path.write_bytes(src.read())
    return path


def _rows(cursor) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _read_parquet(con, path: Path, dt: str, table_input: dict) -> list[dict]:
    import pyarrow.parquet as pq

    sd = table_input["StorageDescriptor"]
    columns = sd["Columns"]
    by_index = sd["SerdeInfo"].get("Parameters", {}).get("parquet.column.index.access") == "true"
    schema = pq.read_schema(path)
    if by_index:
        assert len(schema.names) >= len(columns), f"{path}: {schema.names} has fewer columns than the table"
        sources = schema.names[: len(columns)]
    else:
        lower = {n.lower(): n for n in schema.names}
        missing = [c["Name"] for c in columns if c["Name"].lower() not in lower]
        assert not missing, f"{path}: no column named {missing} (the file has {schema.names})"
        sources = [lower[c["Name"].lower()] for c in columns]
    for column, source in zip(columns, sources, strict=True):
        written = _athena_type(schema.field(source).type)
        assert written == column["Type"], f"{path}: {source!r} is {written}, the table says {column['Type']}"
    select = ", ".join(
        f"CAST({_q(s)} AS {DUCKDB_TYPES[c['Type']]}) AS {_q(c['Name'])}"
        for c, s in zip(columns, sources, strict=True)
    )
    rows = _rows(
        con.execute(
            f"SELECT {select}, dt FROM read_parquet(?, hive_partitioning = true, "
            "hive_types = {'dt': 'VARCHAR'})",
            [str(path)],
        )
    )
    assert all(r["dt"] == dt for r in rows), f"{path}: dt from the path is not the projected {dt}"
    return rows


def _csv_value(name: str, kind: str, null_invalid: bool) -> str:
    col = _q(name)
    if kind == "string":
        return f"COALESCE({col}, '') AS {col}"
    parsed = {
        "bigint": f"CASE WHEN regexp_full_match({col}, '[+-]?[0-9]+') THEN CAST({col} AS BIGINT) END",
        "double": f"TRY_CAST({col} AS DOUBLE)",
        "boolean": f"CASE {col} WHEN 'true' THEN true WHEN 'false' THEN false END",
    }.get(kind)
    assert parsed is not None, f"OpenCSVSerde reads no {kind} here"
    if null_invalid:
        return f"{parsed} AS {col}"
    return f"CASE WHEN ({parsed}) IS NULL THEN error('invalid ' || {col}) ELSE {parsed} END AS {col}"


def _read_csv(con, path: Path, dt: str, table_input: dict) -> list[dict]:
    sd = table_input["StorageDescriptor"]
    serde = sd["SerdeInfo"]
    assert serde["SerializationLibrary"] == "org.apache.hadoop.hive.serde2.OpenCSVSerde"
    props = serde.get("Parameters", {})
    separator, quote = props.get("separatorChar", ","), props.get("quoteChar", '"')
    assert props.get("escapeChar") == "\x00", "only CSV without an escape character (RFC 4180) is modelled"
    params = table_input["Parameters"]
    skip = int(params.get("skip.header.line.count", "0"))
    null_invalid = params.get("use.null.for.invalid.data") == "true"
    columns = sd["Columns"]
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.name.endswith(".gz") else raw).decode("utf-8")
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    as_text = ", ".join(f"{_q(c['Name'])}: 'VARCHAR'" for c in columns)
    select = ", ".join(_csv_value(c["Name"], c["Type"], null_invalid) for c in columns)
    rows = _rows(
        con.execute(
            f"SELECT {select}, dt FROM read_csv(?, delim = ?, quote = ?, escape = ?, header = false, "
            f"skip = {skip}, auto_detect = false, columns = {{{as_text}}}, hive_partitioning = true, "
            "hive_types = {'dt': 'VARCHAR'})",
            [str(path), separator, quote, quote],
        )
    )
    if len(rows) != len(lines) - skip:
        raise SplitRows(
            f"{path}: {len(rows)} records on {len(lines) - skip} lines: a field holds a line break, "
            "which Athena's CSV table reads as the start of another row"
        )
    assert all(r["dt"] == dt for r in rows), f"{path}: dt from the path is not the projected {dt}"
    return rows


def read_table(lake, base_uri: str, request: dict, workdir: Path, today: date | None = None) -> list[dict]:
    """Every row the table of ``request`` (``{"DatabaseName", "TableInput"}``) shows over
    ``lake``: dicts by column name, plus ``dt``. See the module docstring.

    :param base_uri: the lake root's URI with a trailing ``/``. :param workdir: where the files
        are copied to for DuckDB (which reads them locally here).
    :raises SplitRows: a CSV record spans lines. :raises AssertionError: a file does not fit
        the definition (column missing, another type, dt not the projected one)."""
    import duckdb

    table_input = request["TableInput"]
    library = table_input["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
    reader = _read_parquet if library.endswith("ParquetHiveSerDe") else _read_csv
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows = []
    for dt, keys in sorted(visible_files(lake, base_uri, table_input, today).items()):
        for key in keys:
            rows += reader(con, _download(lake, key, workdir), dt, table_input)
    con.close()
    return rows


def _get(record, path: list[str]):
    for step in path:
        if not isinstance(record, dict):
            return None
        record = record.get(step)
    return record


def expected_rows(records: list[dict], request: dict, dt: str, explode: str | None = None) -> list[dict]:
    """The rows the table of ``request`` must show for ``records`` (as served) in partition
    ``dt``: nested fields by the column's name in the files (its comment, else its name, split
    at dots); one row per item of the list ``explode`` (one row with its columns null when the
    list is empty); lists and objects as they were (compare them with the JSON text parsed);
    ``timestamp`` columns as naive UTC datetimes; CSV ``string`` columns ``''`` for null."""
    table_input = request["TableInput"]
    csv = table_input["Parameters"].get("classification") == "csv"
    columns = [
        (c["Name"], c.get("Comment") or c["Name"], c["Type"])
        for c in table_input["StorageDescriptor"]["Columns"]
    ]
    out = []
    for record in records:
        items = record.get(explode) if explode else None
        for item in (items or [None]) if explode else [None]:
            row = {}
            for name, source, kind in columns:
                path = source.split(".")
                if explode and path[0] == explode:
                    value = _get(item, path[1:]) if item is not None else None
                else:
                    value = _get(record, path)
                if kind == "timestamp" and value is not None:
                    value = (
                        datetime.fromisoformat(value.replace("Z", "+00:00"))
                        .astimezone(UTC)
                        .replace(tzinfo=None)
                    )
                if csv and kind == "string" and value is None:
                    value = ""
                row[name] = value
            row["dt"] = dt
            out.append(row)
    return out


def comparable(rows: list[dict], expected: list[dict]) -> list[dict]:
    """``rows`` with JSON text parsed where ``expected`` (same order) holds a list or object."""
    json_columns = {k for r in expected for k, v in r.items() if isinstance(v, list | dict)}
    return [{k: (json.loads(v) if k in json_columns and v else v) for k, v in r.items()} for r in rows]


def sort_key(row: dict) -> str:
    """An order for rows of mixed types (sort both sides before comparing them)."""
    return repr(sorted(row.items()))
