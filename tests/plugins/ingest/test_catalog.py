"""The lake's table definitions (dataset_ops.ingest.catalog).

* Every Athena statement parses in sqlglot's Athena and Hive dialects, keeps its columns, types,
  partition key, SerDe, formats, location and table properties (the parsed tree, rebuilt as a
  Glue request, is the Glue request written beside it), and survives a print/parse round trip.
* The Glue requests pass botocore's parameter validation for ``glue.CreateTable`` and the
  service model's patterns and lengths (which botocore does not check), offline.
* A real engine reads the lake: the entities ingested from the local inventory services into
  SeaweedFS S3, the tables' partition projection evaluated, the files read with DuckDB as each
  table's SerDe says: the rows equal what the services served (both copies, every entity). So do
  odd values written by the real writer (quotes, commas, backslashes, unicode, nulls, empty
  strings), except that a CSV field with a line break splits the row, as Athena's CSV SerDe
  does (documented); the Parquet table reads it whole.
* Writing: the same content again is a no-op; a changed one is a new version, never an overwrite,
  also under concurrent writers.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import boto3
import pytest
import sqlglot
from helpers.inventory_server import InventoryServer
from helpers.lake_tables import SplitRows, comparable, expected_rows, read_table, sort_key
from sqlglot import exp

from dataset_ops.ingest.catalog import (
    CatalogError,
    athena_name,
    check_database,
    entity_tables,
    location_uri,
    place,
    sql_literal,
    table_columns,
)
from dataset_ops.ingest.config import EntityConfig, load_config
from dataset_ops.ingest.extract import ingest_entity, lake_key
from dataset_ops.ingest.flatten import columns_for, flatten
from dataset_ops.ingest.http import make_session
from dataset_ops.ingest.tasks import write_lake_catalog
from dataset_ops.ingest.writers import EntityFiles
from dataset_ops.storage import LocalStorage, S3Storage, open_storage

FIRST_DAY = date(2026, 1, 1)
START = datetime(2026, 11, 15, 2, 0, tzinfo=UTC)
END = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
ENTITIES = ["productos", "categorias", "ordenes", "clientes", "proveedores"]


def _offline_s3_lake() -> S3Storage:
    """An S3 lake root for its URIs only (a real boto3 client; nothing is sent)."""
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="example"
    )
    return S3Storage("inventario-datalake", "", client=client)


def _all_tables(lake, database="inventario_datalake"):
    config = load_config()
    return [
        t
        for name in ENTITIES
        for t in entity_tables(config.entity(name), lake, first_day=FIRST_DAY, database=database)
    ]


# --- the statements parse and say what the Glue requests say ------------------------------------
def _request_from_ddl(tree: exp.Create) -> dict:
    """The Glue CreateTable request a parsed CREATE EXTERNAL TABLE stands for."""

    def literal(node) -> str:
        assert isinstance(node, exp.Literal) and node.is_string, node
        return node.this

    def column(defn: exp.ColumnDef) -> dict:
        out = {"Name": defn.this.name, "Type": defn.kind.sql(dialect="hive").lower()}
        for constraint in defn.args.get("constraints") or []:
            assert isinstance(constraint.kind, exp.CommentColumnConstraint), constraint
            out["Comment"] = literal(constraint.kind.this)
        return out

    assert isinstance(tree, exp.Create) and tree.kind == "TABLE" and tree.args.get("exists")
    table = tree.this.this
    request = {"DatabaseName": table.db, "TableInput": {"Name": table.name}}
    info = request["TableInput"]
    sd = {"Columns": [column(c) for c in tree.this.expressions]}
    params = {}
    for prop in tree.args["properties"].expressions:
        if isinstance(prop, exp.ExternalProperty):
            info["TableType"], params["EXTERNAL"] = "EXTERNAL_TABLE", "TRUE"
        elif isinstance(prop, exp.SchemaCommentProperty):
            info["Description"] = literal(prop.this)
        elif isinstance(prop, exp.PartitionedByProperty):
            info["PartitionKeys"] = [column(c) for c in prop.this.expressions]
        elif isinstance(prop, exp.RowFormatSerdeProperty):
            serde = prop.args.get("serde_properties")
            sd["SerdeInfo"] = {
                "SerializationLibrary": literal(prop.this),
                "Parameters": {
                    literal(p.this): literal(p.args["value"]) for p in (serde.expressions if serde else [])
                },
            }
        elif isinstance(prop, exp.FileFormatProperty):
            sd["InputFormat"] = literal(prop.this.args["input_format"])
            sd["OutputFormat"] = literal(prop.this.args["output_format"])
        elif isinstance(prop, exp.LocationProperty):
            sd["Location"] = literal(prop.this)
        elif type(prop) is exp.Property:
            params[literal(prop.this)] = literal(prop.args["value"])
        else:
            raise AssertionError(f"unexpected property {prop!r}")
    info["Parameters"] = params
    info["StorageDescriptor"] = sd
    return request


def _canonical(request: dict) -> str:
    return json.dumps(request, sort_keys=True)


@pytest.mark.parametrize("dialect", ["athena", "hive"])
@pytest.mark.parametrize("where", ["s3", "local"])
def test_every_statement_parses_and_holds_the_glue_request_written_beside_it(dialect, where, tmp_path):
    lake = _offline_s3_lake() if where == "s3" else LocalStorage(tmp_path / "lake")
    tables = _all_tables(lake)
    assert sorted(t.name for t in tables) == sorted(ENTITIES + [f"{e}_parquet" for e in ENTITIES])
    for table in tables:
        sql = table.athena_sql()
        [tree] = sqlglot.parse(sql, read=dialect)
        assert _canonical(_request_from_ddl(tree)) == _canonical(table.glue_request()), table.name
        again = sqlglot.parse_one(tree.sql(dialect=dialect, pretty=True), read=dialect)
        assert again == tree, f"{table.name}: printing and parsing again changed the statement"
        # and what each table says, spelled out once
        info = table.glue_request()["TableInput"]
        assert info["PartitionKeys"][0]["Name"] == "dt" and info["PartitionKeys"][0]["Type"] == "string"
        params = info["Parameters"]
        assert params["projection.dt.range"] == "2026-01-01,NOW"
        assert params["storage.location.template"] == info["StorageDescriptor"]["Location"] + "dt=${dt}/"
        root = "s3://inventario-datalake/" if where == "s3" else (tmp_path / "lake").resolve().as_uri() + "/"
        prefix = "" if table.fmt == "csv" else "parquet/"
        assert info["StorageDescriptor"]["Location"] == f"{root}{prefix}{table.entity}/"


def test_the_ddl_parser_is_strict_enough_to_catch_a_broken_statement():
    """The round trip above can fail: a statement cut short or with a property of another kind
    does not come back as its Glue request."""
    table = _all_tables(_offline_s3_lake())[0]
    with pytest.raises(sqlglot.errors.ParseError):
        sqlglot.parse_one(
            table.athena_sql().replace("PARTITIONED BY (", "PARTITIONED BY ((", 1), read="athena"
        )
    tree = sqlglot.parse_one(table.athena_sql().replace("'quoteChar'='\"'", "'quoteChar'='`'"), read="athena")
    assert _canonical(_request_from_ddl(tree)) != _canonical(table.glue_request())


def test_the_types_are_the_written_ones():
    config = load_config()
    productos, proveedores = config.entity("productos"), config.entity("proveedores")
    parquet = {c.name: c.type for c in table_columns(productos, "parquet")}
    assert parquet == {
        "id": "bigint", "sku": "string", "nombre": "string", "categoria_id": "bigint",
        "proveedor_id": "string", "precio": "double", "stock": "bigint", "activo": "boolean",
        "actualizado": "timestamp",
    }  # fmt: skip
    csv = {c.name: c.type for c in table_columns(productos, "csv")}
    assert csv == {**parquet, "actualizado": "string"}  # ISO 8601 text: OpenCSVSerde reads epoch ms only
    columns = table_columns(proveedores, "parquet")
    assert [c.name for c in columns] == [
        athena_name(c.name) for c in columns_for(proveedores.schema, "productos")
    ]
    assert [(c.name, c.comment) for c in columns[:4]] == [
        ("_id", None), ("nombre", None), ("contacto_email", "contacto.email"),
        ("contacto_telefono", "contacto.telefono"),
    ]  # fmt: skip
    assert {c.name: c.type for c in columns}["etiquetas"] == "string"  # a list, as JSON text


def test_parquet_is_read_by_position_only_where_names_changed():
    tables = {t.name: t for t in _all_tables(_offline_s3_lake())}
    access = {
        n: t.serde_parameters["parquet.column.index.access"] for n, t in tables.items() if t.fmt == "parquet"
    }
    assert access == {
        "productos_parquet": "false",
        "categorias_parquet": "false",
        "ordenes_parquet": "false",
        "clientes_parquet": "false",
        "proveedores_parquet": "true",
    }
    csv = tables["productos"]
    assert csv.serde_parameters == {"separatorChar": ",", "quoteChar": '"', "escapeChar": "\x00"}
    assert csv.parameters["skip.header.line.count"] == "1"
    assert csv.parameters["use.null.for.invalid.data"] == "true"


def _entity(
    properties: dict, name: str = "cosas", explode: str | None = None, gzip: bool = False
) -> EntityConfig:
    return EntityConfig(
        name=name,
        service="cosas_service",
        conn_id="cosas_service",
        endpoint="api/cosas",
        primary_key=("id",),
        pagination={"style": "page_number"},
        schema={"type": "object", "properties": properties},
        explode=explode,
        gzip=gzip,
    )


@pytest.mark.parametrize(
    "properties, clash",
    [
        ({"id": {"type": "integer"}, "a.b": {"type": "string"},
          "a": {"type": "object", "properties": {"b": {}}}}, "'a.b'"),
        ({"id": {"type": "integer"}, "Nombre": {"type": "string"}, "nombre": {"type": "string"}}, "'Nombre'"),
        ({"id": {"type": "integer"}, "dt": {"type": "string"}}, "partition key"),
    ],
    ids=["dotted-and-nested", "case", "dt"],
)  # fmt: skip
def test_columns_that_would_share_an_athena_name_are_refused(properties, clash):
    with pytest.raises(CatalogError, match=re.escape(clash)):
        table_columns(_entity(properties), "csv")


@pytest.mark.parametrize("name", ["", "Inventario", "1lake", "lake-test", "lake.test", "a" * 256, None])
def test_a_bad_database_name_is_refused(name):
    with pytest.raises(CatalogError, match="database name"):
        check_database(name)
    with pytest.raises(CatalogError):
        entity_tables(
            load_config().entity("categorias"), _offline_s3_lake(), first_day=FIRST_DAY, database=name
        )


@pytest.mark.parametrize("dialect", ["athena", "hive"])
def test_string_literals_with_quotes_backslashes_and_control_characters_read_back(dialect):
    """In DDL (Athena takes Hive's there: a backslash escapes), as a column comment and a location."""
    for value in ["s3://b/it's/", "C:\\dir\\", "tab\there", "nul\x00", "ñandú 💾", "'", "\\'", "${dt}"]:
        literal = sql_literal(value)
        tree = sqlglot.parse_one(
            f"CREATE EXTERNAL TABLE t (a string COMMENT {literal}) LOCATION {literal}", read=dialect
        )
        assert tree.find(exp.CommentColumnConstraint).this.this == value, (value, literal)
        assert tree.find(exp.LocationProperty).this.this == value, (value, literal)


# --- the Glue requests are valid CreateTable input ----------------------------------------------
def _operation():
    import botocore.session

    return botocore.session.get_session().get_service_model("glue").operation_model("CreateTable")


def _python_pattern(java: str) -> str:
    """A Glue model pattern for Python's re: the Java surrogate-pair range as code points."""
    return java.replace("\\uD800\\uDC00-\\uDBFF\\uDFFF", "\\U00010000-\\U0010FFFF")


def _model_problems(shape, value, where: str) -> list[str]:
    """What botocore's validator leaves out: ``max`` lengths and ``pattern`` of strings."""
    problems = []
    if shape.type_name == "structure":
        for key, item in value.items():
            problems += _model_problems(shape.members[key], item, f"{where}.{key}")
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            problems += _model_problems(shape.member, item, f"{where}[{i}]")
    elif shape.type_name == "map":
        for key, item in value.items():
            problems += _model_problems(shape.key, key, f"{where} key {key!r}")
            problems += _model_problems(shape.value, item, f"{where}[{key!r}]")
    elif shape.type_name == "string":
        meta = shape.metadata
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{where}: {len(value)} characters, at most {meta['max']}")
        if "pattern" in meta and not re.fullmatch(_python_pattern(meta["pattern"]), value):
            problems.append(f"{where}: {value!r} does not match {meta['pattern']}")
    return problems


def test_every_glue_request_passes_botocores_validation_and_the_models_patterns():
    from botocore.validate import ParamValidator

    shape = _operation().input_shape
    for table in _all_tables(_offline_s3_lake()):
        request = json.loads(table.files()[f"glue/{table.name}.json"])  # the file as written
        assert request == table.glue_request()
        report = ParamValidator().validate(request, shape)
        assert not report.has_errors(), report.generate_report()
        assert _model_problems(shape, request, "CreateTable") == []


def test_the_validators_reject_a_broken_request():
    from botocore.validate import ParamValidator

    shape = _operation().input_shape
    request = _all_tables(_offline_s3_lake())[0].glue_request()
    columns = request["TableInput"]["StorageDescriptor"]["Columns"]
    columns[0] = {"Nme": "id", "Type": "bigint"}
    report = ParamValidator().validate(request, shape)
    assert report.has_errors() and "Nme" in report.generate_report()
    columns[0] = {"Name": "id\x01", "Type": "bigint"}
    assert _model_problems(shape, request, "CreateTable") != []


# --- the catalog files: no-op or a new version --------------------------------------------------
@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "lake")
    bucket = request.getfixturevalue("s3_bucket")
    return open_storage(f"s3://{bucket}/lake")


def test_the_same_catalog_again_is_a_noop_and_a_change_a_new_version(lake):
    first = write_lake_catalog(lake, first_day=FIRST_DAY)
    assert first["database"] == "inventario_datalake" and len(first["files"]) == 20
    assert all(f["written"] and f["version"] == 1 for f in first["files"])
    keys = sorted(lake.list("_catalog/"))
    assert keys == sorted(
        f"_catalog/inventario_datalake/{kind}/{e}{suffix}.{ext}"
        for e in ENTITIES
        for suffix in ("", "_parquet")
        for kind, ext in (("athena", "sql"), ("glue", "json"))
    )
    bodies = {k: lake.open_read(k).read() for k in keys}
    again = write_lake_catalog(lake, first_day=FIRST_DAY)
    assert [(f["key"], f["written"]) for f in again["files"]] == [(f["key"], False) for f in first["files"]]
    assert {k: lake.open_read(k).read() for k in sorted(lake.list("_catalog/"))} == bodies

    changed = write_lake_catalog(lake, first_day=date(2025, 6, 1))  # another projection range
    assert all(f["written"] and f["version"] == 2 and ".v2." in f["key"] for f in changed["files"])
    assert {k: lake.open_read(k).read() for k in keys} == bodies  # version 1 untouched
    with lake.open_read("_catalog/inventario_datalake/athena/ordenes.v2.sql") as fh:
        assert "'projection.dt.range'='2025-06-01,NOW'" in fh.read().decode()
    back = write_lake_catalog(lake, first_day=FIRST_DAY)  # the first content again: the newest version
    assert all(f["written"] and f["version"] == 3 for f in back["files"])
    other = write_lake_catalog(lake, first_day=FIRST_DAY, database="otra_base")
    assert all(f["key"].startswith("_catalog/otra_base/") and f["version"] == 1 for f in other["files"])


def test_concurrent_writers_never_overwrite_and_each_ends_on_its_content(s3_bucket):
    lake = open_storage(f"s3://{s3_bucket}/lake")
    key = "_catalog/db/athena/t.sql"
    bodies = [b"A\n", b"B\n", b"A\n", b"C\n", b"B\n", b"A\n"]
    results: list = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = place(lake, key, bodies[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (placed, _version, _written), body in zip(results, bodies, strict=True):
        assert lake.open_read(placed).read() == body  # each call ends on a version holding its bytes
    versions = sorted(v for _k, v, written in results if written)
    assert versions == list(range(1, len(versions) + 1))  # one writer per version, none replaced
    stored = sorted(lake.list("_catalog/db/athena/"))
    assert len(stored) == len(versions)


# --- a real engine reads the lake with the definitions ------------------------------------------
def _served(server, entity: str) -> list[dict]:
    if entity == "ordenes":
        return server.records(
            "ordenes", updated_since="2026-11-15T02:00:00Z", updated_before="2026-11-16T02:00:00Z"
        )
    return server.records(entity)


def _check_table(lake, request: dict, records: list[dict], explode, workdir: Path, dt="2026-11-15") -> int:
    rows = read_table(lake, location_uri(lake, ""), request, workdir)
    expected = expected_rows(records, request, dt, explode)
    got = comparable(rows, expected)
    assert sorted(got, key=sort_key) == sorted(expected, key=sort_key), request["TableInput"]["Name"]
    return len(rows)


def test_duckdb_reads_what_the_services_served_through_every_definition(s3_bucket, tmp_path):
    """Every entity ingested from the inventory services into SeaweedFS S3, the catalog written;
    each table read through its projection and SerDe: the rows are the served records."""
    lake = open_storage(f"s3://{s3_bucket}/lake")
    config = load_config()
    with InventoryServer(seed=7, orders=3_000) as server:
        for name in ENTITIES:
            entity = config.entity(name)
            session = make_session(server.base_url, entity.http)
            try:
                ingest_entity(entity, session, lake, START, END)
            finally:
                session.close()
        written = write_lake_catalog(lake, first_day=FIRST_DAY)
        counts = {}
        for f in written["files"]:
            if f["file"] != "glue":
                continue
            request = json.loads(lake.open_read(f["key"]).read())  # what a user would download
            table = request["TableInput"]["Name"]
            entity = config.entity(table.removesuffix("_parquet"))
            counts[table] = _check_table(
                lake, request, _served(server, entity.name), entity.explode, tmp_path / table
            )
    served_orders = len(_served(server, "ordenes"))
    assert 0 < served_orders < 3_000
    assert counts["ordenes"] == counts["ordenes_parquet"] == served_orders
    assert counts["productos"] == counts["productos_parquet"] == 2_400
    assert counts["proveedores"] == counts["proveedores_parquet"] > 180  # one row per listed product

    # the definitions are what makes it work: by name, the Parquet table of the nested documents
    # finds none of its dotted columns; a template off the layout finds no partition
    request = json.loads(lake.open_read("_catalog/inventario_datalake/glue/proveedores_parquet.json").read())
    request["TableInput"]["StorageDescriptor"]["SerdeInfo"]["Parameters"]["parquet.column.index.access"] = (
        "false"
    )
    with pytest.raises(AssertionError, match="no column named"):
        read_table(lake, location_uri(lake, ""), request, tmp_path / "by-name")
    request = json.loads(lake.open_read("_catalog/inventario_datalake/glue/ordenes.json").read())
    params = request["TableInput"]["Parameters"]
    params["storage.location.template"] = params["storage.location.template"].replace("dt=${dt}", "${dt}")
    assert read_table(lake, location_uri(lake, ""), request, tmp_path / "template") == []


#: Odd values through the real writer: quotes, commas, backslashes (before a quote too), unicode,
#: nulls, missing fields, empty strings and lists, JSON text with escapes, extreme numbers.
ODD = [
    {"id": 1, "texto": 'dice "hola", y se va', "n": 1.5, "ok": True, "cuando": "2026-11-15T03:04:05Z",
     "tags": ['a"b', "c,d"], "sub": {"x": "ñandú, 💾"}},
    {"id": 2, "texto": "C:\\carpeta\\", "n": None, "ok": None, "cuando": "2026-11-15T23:59:59.123+00:00",
     "tags": [], "sub": {"x": None}},
    {"id": 3, "texto": '\\"', "n": -0.0001, "ok": False, "cuando": None, "tags": None, "sub": None},
    {"id": 4, "texto": "", "n": 1e300, "cuando": "2026-11-15T05:00:00+02:00", "tags": ["\\n no es salto"]},
    {"id": 2**53 + 1, "texto": " espacios ", "n": 3, "ok": True, "sub": {"x": ""}},
]  # fmt: skip
BREAKS = [
    {"id": 10, "texto": "línea 1\nlínea 2", "n": 0.5, "ok": True},
    {"id": 11, "texto": "retorno\r\nde carro", "n": 2.0, "ok": False},
]
ODD_SCHEMA = {
    "id": {"type": "integer"},
    "texto": {"type": ["string", "null"]},
    "n": {"type": ["number", "null"]},
    "ok": {"type": ["boolean", "null"]},
    "cuando": {"type": ["string", "null"], "format": "date-time"},
    "tags": {"type": ["array", "null"], "items": {"type": "string"}},
    "sub": {"type": "object", "properties": {"x": {"type": ["string", "null"]}}},
}


def _land(lake, entity: EntityConfig, records: list[dict], day: datetime, workdir: Path) -> None:
    """The real writer's CSV and Parquet files of ``records`` at the lake keys of ``day``."""
    columns = columns_for(entity.schema, entity.explode)
    base = lake_key(entity.name, "csv", day).rsplit("/", 1)[1].split(".")[0]
    files = EntityFiles(workdir, base, columns, ("csv", "parquet"), entity.gzip)
    files.add_rows([row for r in records for row in flatten(r, columns, entity.explode)])
    for fmt, path in files.close().items():
        lake.write_file(lake_key(entity.name, fmt, day, gz=entity.gzip), path)


@pytest.mark.parametrize("gz", [False, True], ids=["csv", "csv.gz"])
def test_odd_values_read_back_and_a_line_break_splits_only_the_csv_row(tmp_path, gz):
    lake = LocalStorage(tmp_path / "lake")
    entity = _entity(ODD_SCHEMA, gzip=gz)
    day1, day2 = START, START.replace(day=16)
    (tmp_path / "w1").mkdir(), (tmp_path / "w2").mkdir()
    _land(lake, entity, ODD, day1, tmp_path / "w1")
    lake.write_file("cosas/dt=2026-11-15/_manifest.json", Path(__file__))  # hidden: "_" first
    csv, parquet = (t.glue_request() for t in entity_tables(entity, lake, first_day=FIRST_DAY))
    base = location_uri(lake, "")
    for request in (csv, parquet):
        _check_table(lake, request, ODD, None, tmp_path / request["TableInput"]["Name"])
    rows = {r["id"]: r for r in read_table(lake, base, parquet, tmp_path / "p")}
    assert rows[2]["cuando"] == datetime(2026, 11, 15, 23, 59, 59, 123000)
    assert rows[4]["cuando"] == datetime(2026, 11, 15, 3, 0)  # +02:00 converted to UTC
    rows = {r["id"]: r for r in read_table(lake, base, csv, tmp_path / "c")}
    assert (rows[2]["texto"], rows[3]["texto"]) == ("C:\\carpeta\\", '\\"')  # no escape character
    assert (rows[2]["n"], rows[2]["ok"], rows[4]["texto"]) == (None, None, "")  # empty field: NULL / ''
    assert rows[4]["cuando"] == "2026-11-15T05:00:00+02:00"  # the text as served

    _land(lake, entity, BREAKS, day2, tmp_path / "w2")
    expected = expected_rows(ODD, parquet, "2026-11-15") + expected_rows(BREAKS, parquet, "2026-11-16")
    got = comparable(read_table(lake, base, parquet, tmp_path / "p2"), expected)
    assert sorted(got, key=sort_key) == sorted(expected, key=sort_key)
    with pytest.raises(SplitRows, match="dt=2026-11-16"):
        read_table(lake, base, csv, tmp_path / "c2")
