"""The lake's table definitions: Athena ``CREATE EXTERNAL TABLE`` statements and AWS Glue
``CreateTable`` requests for the CSV and the Parquet copy of every entity, generated from the
entity schemas of ``include/microservices.yaml`` and written beside the data.

Tables, in the Glue/Athena database given (the DAG's Param ``catalog_database``, default
:data:`DEFAULT_DATABASE`), over the partitioned layout of :func:`~dataset_ops.ingest.extract.lake_key`::

    <entity>           the CSV copy      <lake>/<entity>/dt=YYYY-MM-DD/<entity>_*.csv[.gz]
    <entity>_parquet   the Parquet copy  <lake>/parquet/<entity>/dt=YYYY-MM-DD/<entity>_*.parquet

(``<entity>`` is the name the old Glue crawler gave the table over ``<entity>/``.) Both are
partitioned by ``dt`` (``string``, ``YYYY-MM-DD``: the UTC day the data covers) through Athena
partition projection: ``projection.dt.type`` ``date``, ``projection.dt.format`` ``yyyy-MM-dd``,
``projection.dt.range`` ``<first day>,NOW`` and ``storage.location.template``
``<table location>dt=${dt}/``, so no crawler, ``MSCK REPAIR TABLE`` or ``ALTER TABLE ADD
PARTITION`` is needed: a day is queryable as soon as its files land. Athena (like Hive) skips
files whose names start with ``_`` or ``.``, i.e. each partition's ``_manifest.json``.

Columns are the flattened columns of :func:`~dataset_ops.ingest.flatten.columns_for`, in that
order. Athena column names hold only lower-case letters, digits and ``_``: a name is lower-cased
and every other character (the dots of nested fields) becomes ``_`` (``contacto.email`` ->
``contacto_email``; the original name is the column's comment). Two columns that end up with
one name, or a column named ``dt``, are a :class:`CatalogError`.

* **Parquet** (``ParquetHiveSerDe``): the types the writer writes
  (:mod:`dataset_ops.ingest.writers`): int64 -> ``bigint``, float64 -> ``double``, bool ->
  ``boolean``, string -> ``string`` (JSON text too), ``timestamp[ms, UTC]`` -> ``timestamp``.
  Athena matches Parquet columns by name (case-insensitively); where a name had to change (the
  dotted ones) the table reads by position instead (SerDe property
  ``parquet.column.index.access`` ``true``), which is right because every file of an entity has
  the columns in schema order. Such a table then follows schema changes only when columns are
  added at the end.
* **CSV** (``OpenCSVSerde``), as :mod:`~dataset_ops.ingest.writers` writes it: ``,`` separator,
  ``"`` quote (a quote inside a field doubled, RFC 4180), no escape character
  (``escapeChar`` U+0000: the SerDe's default, ``\\``, would drop backslashes from the text),
  one header line (``skip.header.line.count`` ``1``). Types: ``bigint``, ``double``,
  ``boolean`` as written; date-times stay ``string`` (the ISO 8601 text as served; the SerDe
  reads only epoch milliseconds as ``timestamp``: convert with ``from_iso8601_timestamp``).
  A null is written as an empty field, which the SerDe does not accept for a numeric or boolean
  column, so the table sets ``use.null.for.invalid.data`` ``true``: every value was checked
  against the schema before it was written, so an empty field is the only value that can fail.
  A null string reads as ``''``. The SerDe does not support line breaks inside a field: such a
  row is split in the CSV table; the Parquet table has it whole.

Formats implemented from: Athena user guide, "CREATE TABLE", "Open CSV SerDe for processing
CSV", "Supported types for partition projection", "Specifying custom S3 storage locations",
"Handle schema updates" (index access); the AWS Glue API ``CreateTable`` (botocore's service
model ``glue/2017-03-31``); Hive's string literal escapes (``\\uXXXX``, ``\\'``, ``\\\\``).

Files, below the lake root (:func:`write_catalog`), for a table ``T`` of database ``D``::

    _catalog/D/athena/T.sql     the CREATE EXTERNAL TABLE statement (paste it into Athena)
    _catalog/D/glue/T.json      {"DatabaseName", "TableInput"}: aws glue create-table --cli-input-json

The same content again is a no-op; a different content (a schema or lake root that changed) is a
new version beside the others, ``T.v2.sql``, ``T.v2.json``, ...: the highest version is the
current definition, and nothing is overwritten.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dataset_ops.errors import InputError

if TYPE_CHECKING:
    from dataset_ops.ingest.config import EntityConfig
    from dataset_ops.ingest.flatten import Column
    from dataset_ops.storage import Storage

log = logging.getLogger(__name__)

#: The Glue/Athena database of the tables unless told otherwise (the seed's bucket, as a name).
DEFAULT_DATABASE = "inventario_datalake"
#: Folder below the lake root that holds the definitions (``_``: no table reads it as data).
CATALOG_PREFIX = "_catalog"
#: The partition key: the UTC day the data covers.
PARTITION_KEY = "dt"
PARTITION_COMMENT = "the UTC day the data covers (YYYY-MM-DD)"
#: ``projection.dt.format``: java.time pattern of the ``dt=`` values (``%Y-%m-%d`` in lake_key).
DT_FORMAT = "yyyy-MM-dd"
#: Athena database names: lower-case letters, digits and ``_`` (Glue allows 255 characters).
DATABASE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,254}$")
#: Longest Glue name (``NameString``, 255 characters).
MAX_NAME = 255

PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
CSV_SERDE = "org.apache.hadoop.hive.serde2.OpenCSVSerde"
TEXT_INPUT_FORMAT = "org.apache.hadoop.mapred.TextInputFormat"
TEXT_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
#: The CSV writer's dialect for OpenCSVSerde; U+0000 is "no escape character".
CSV_SERDE_PARAMETERS = {"separatorChar": ",", "quoteChar": '"', "escapeChar": "\x00"}
#: Athena type of a CSV column by flattened column kind (date-times are ISO 8601 text there).
CSV_TYPES = {
    "integer": "bigint",
    "number": "double",
    "boolean": "boolean",
    "string": "string",
    "json": "string",
    "datetime": "string",
}
#: Table name suffix per format.
SUFFIX = {"csv": "", "parquet": "_parquet"}
#: A day to find the partition folder in lake_key's keys with.
_PROBE = datetime(2001, 2, 3, tzinfo=UTC)


class CatalogError(InputError):
    """A table cannot be defined: a bad database name, two columns with one Athena name, a
    column named like the partition key, a name too long, a type with no Athena equivalent."""


@dataclass(frozen=True)
class TableColumn:
    """One column of a table.

    :param name: the Athena name. :param type: the Athena (Hive DDL) type name.
    :param source: the column's name in the files (the flattened, dotted name).
    """

    name: str
    type: str
    source: str

    @property
    def comment(self) -> str | None:
        """The name in the files when it differs from :attr:`name`, else None."""
        return self.source if self.source != self.name else None


@dataclass(frozen=True)
class TableDefinition:
    """One table over one copy (``csv`` or ``parquet``) of an entity; see the module docstring.

    :param location: the table's root URI with a trailing ``/`` (``s3://bucket/lake/productos/``;
        ``file:///...`` for a local lake, which Athena cannot read).
    :param serde_parameters: ``WITH SERDEPROPERTIES`` / Glue ``SerdeInfo.Parameters``.
    :param parameters: ``TBLPROPERTIES`` / Glue ``TableInput.Parameters`` (without ``EXTERNAL``).
    """

    database: str
    name: str
    entity: str
    fmt: str
    description: str
    columns: tuple[TableColumn, ...]
    location: str
    serde: str
    input_format: str
    output_format: str
    serde_parameters: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)

    def athena_sql(self) -> str:
        """The ``CREATE EXTERNAL TABLE IF NOT EXISTS`` statement (Hive DDL as Athena takes it; one
        statement, no ``;``), ending with a newline."""
        columns = ",\n".join(
            f"  `{c.name}` {c.type}" + (f" COMMENT {sql_literal(c.comment)}" if c.comment else "")
            for c in self.columns
        )
        lines = [
            f"CREATE EXTERNAL TABLE IF NOT EXISTS `{self.database}`.`{self.name}` (",
            columns,
            ")",
            f"COMMENT {sql_literal(self.description)}",
            f"PARTITIONED BY (`{PARTITION_KEY}` string COMMENT {sql_literal(PARTITION_COMMENT)})",
            f"ROW FORMAT SERDE {sql_literal(self.serde)}",
        ]
        if self.serde_parameters:
            lines += ["WITH SERDEPROPERTIES (", _pairs(self.serde_parameters), ")"]
        lines += [
            f"STORED AS INPUTFORMAT {sql_literal(self.input_format)}",
            f"OUTPUTFORMAT {sql_literal(self.output_format)}",
            f"LOCATION {sql_literal(self.location)}",
            "TBLPROPERTIES (",
            _pairs(self.parameters),
            ")",
        ]
        return "\n".join(lines) + "\n"

    def glue_request(self) -> dict:
        """The Glue ``CreateTable`` request: ``{"DatabaseName", "TableInput"}`` (the JSON that
        ``aws glue create-table --cli-input-json`` and boto3 ``create_table(**request)`` take)."""

        def column(c: TableColumn) -> dict:
            out = {"Name": c.name, "Type": c.type}
            if c.comment:
                out["Comment"] = c.comment
            return out

        return {
            "DatabaseName": self.database,
            "TableInput": {
                "Name": self.name,
                "Description": self.description,
                "TableType": "EXTERNAL_TABLE",
                "Parameters": {"EXTERNAL": "TRUE", **self.parameters},
                "PartitionKeys": [{"Name": PARTITION_KEY, "Type": "string", "Comment": PARTITION_COMMENT}],
                "StorageDescriptor": {
                    "Columns": [column(c) for c in self.columns],
                    "Location": self.location,
                    "InputFormat": self.input_format,
                    "OutputFormat": self.output_format,
                    "SerdeInfo": {
                        "SerializationLibrary": self.serde,
                        "Parameters": dict(self.serde_parameters),
                    },
                },
            },
        }

    def files(self) -> dict[str, bytes]:
        """``{path below _catalog/<database>/: content}``: ``athena/<name>.sql`` and
        ``glue/<name>.json`` (UTF-8, deterministic: the same definition gives the same bytes)."""
        glue = json.dumps(self.glue_request(), indent=2, ensure_ascii=False) + "\n"
        return {
            f"athena/{self.name}.sql": self.athena_sql().encode(),
            f"glue/{self.name}.json": glue.encode(),
        }


def sql_literal(value: str) -> str:
    """``value`` as a Hive/Athena DDL string literal: in single quotes, ``\\`` and ``'`` escaped
    with a backslash, control characters as ``\\uXXXX`` (Hive's ``unescapeSQLString`` reads all
    three)."""
    out = []
    for ch in value:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def _pairs(mapping: dict) -> str:
    return ",\n".join(f"  {sql_literal(k)}={sql_literal(v)}" for k, v in mapping.items())


def athena_name(name: str) -> str:
    """The Athena column name of a flattened column: lower case, every character other than
    ``a-z``, ``0-9`` and ``_`` replaced by ``_`` (``contacto.email`` -> ``contacto_email``)."""
    return re.sub(r"[^a-z0-9_]", "_", name.lower())


def check_database(database: str) -> str:
    """``database`` if it is a valid Athena database name. :raises CatalogError: it is not."""
    if not isinstance(database, str) or not DATABASE_NAME.fullmatch(database):
        raise CatalogError(
            f"database name {database!r}: Athena database names are a lower-case letter, then "
            "lower-case letters, digits and _ (at most 255 characters)"
        )
    return database


def _parquet_type(column: Column) -> str:
    """The Athena type of what the Parquet writer writes for ``column``."""
    import pyarrow as pa

    from dataset_ops.ingest.writers import arrow_type

    arrow = arrow_type(column)
    if pa.types.is_int64(arrow):
        return "bigint"
    if pa.types.is_float64(arrow):
        return "double"
    if pa.types.is_boolean(arrow):
        return "boolean"
    if pa.types.is_string(arrow):
        return "string"
    if pa.types.is_timestamp(arrow):
        return "timestamp"
    raise CatalogError(f"column {column.name!r}: no Athena type for the Parquet type {arrow}")


def table_columns(entity: EntityConfig, fmt: str) -> tuple[TableColumn, ...]:
    """The columns of ``entity``'s ``fmt`` (``csv`` or ``parquet``) table, in file order.

    :raises CatalogError: two columns with one Athena name, a column named ``dt``, a name over
        255 characters, a type with no Athena equivalent."""
    from dataset_ops.ingest.flatten import columns_for

    taken = {PARTITION_KEY: f"the partition key {PARTITION_KEY!r}"}
    out = []
    for column in columns_for(entity.schema, entity.explode):
        name = athena_name(column.name)
        if name in taken:
            raise CatalogError(
                f"entity {entity.name}: column {column.name!r} becomes the Athena name {name!r}, "
                f"like {taken[name]}; rename one in the schema"
            )
        if len(name) > MAX_NAME:
            raise CatalogError(f"entity {entity.name}: column {column.name!r} is over {MAX_NAME} characters")
        taken[name] = f"column {column.name!r}"
        kind = _parquet_type(column) if fmt == "parquet" else CSV_TYPES[column.kind]
        out.append(TableColumn(name, kind, column.name))
    return tuple(out)


def table_root(entity: str, fmt: str) -> str:
    """The key prefix (ending in ``/``) below which ``fmt``'s ``dt=`` folders of ``entity`` lie,
    taken from :func:`~dataset_ops.ingest.extract.lake_key` (``productos/``,
    ``parquet/productos/``)."""
    from dataset_ops.ingest.extract import lake_key

    folder = lake_key(entity, fmt, _PROBE).rpartition("/")[0]
    partition = f"{PARTITION_KEY}={_PROBE:%Y-%m-%d}"
    if folder != partition and not folder.endswith("/" + partition):
        raise CatalogError(f"{entity}: the {fmt} keys ({folder}/...) are not in {PARTITION_KEY}= folders")
    return folder[: -len(partition)]


def location_uri(lake: Storage, prefix: str) -> str:
    """The URI of the lake folder ``prefix`` with a trailing ``/``: ``s3://...`` on S3, a
    ``file://`` URI for a local lake."""
    uri = lake.uri(prefix.rstrip("/"))
    if not uri.startswith("s3://"):
        uri = Path(uri).resolve().as_uri()
    return uri.rstrip("/") + "/"


def entity_tables(
    entity: EntityConfig, lake: Storage, *, first_day: date, database: str = DEFAULT_DATABASE
) -> list[TableDefinition]:
    """The tables of ``entity``: one per CSV and Parquet format it writes (see the module docstring).

    :param lake: the lake root (only its URIs are used). :param first_day: the first day of
        ``projection.dt.range`` (earlier partitions are not visible; the range ends at ``NOW``).
    :param database: the Glue/Athena database.
    :raises CatalogError: see :func:`table_columns` and :func:`check_database`.
    """
    check_database(database)
    tables = []
    for fmt in ("csv", "parquet"):
        if fmt not in entity.formats:
            continue
        columns = table_columns(entity, fmt)
        location = location_uri(lake, table_root(entity.name, fmt))
        parameters = {"classification": fmt}
        if fmt == "csv":
            parameters.update({"skip.header.line.count": "1", "use.null.for.invalid.data": "true"})
            serde, serde_parameters = CSV_SERDE, dict(CSV_SERDE_PARAMETERS)
            formats = (TEXT_INPUT_FORMAT, TEXT_OUTPUT_FORMAT)
            copy = "CSV" + (" (gzip)" if entity.gzip else "")
        else:
            renamed = any(c.name != c.source.lower() for c in columns)
            serde, serde_parameters = PARQUET_SERDE, {"parquet.column.index.access": str(renamed).lower()}
            formats = (PARQUET_INPUT_FORMAT, PARQUET_OUTPUT_FORMAT)
            copy = "Parquet"
        parameters.update(
            {
                "projection.enabled": "true",
                f"projection.{PARTITION_KEY}.type": "date",
                f"projection.{PARTITION_KEY}.format": DT_FORMAT,
                f"projection.{PARTITION_KEY}.range": f"{first_day:%Y-%m-%d},NOW",
                f"projection.{PARTITION_KEY}.interval": "1",
                f"projection.{PARTITION_KEY}.interval.unit": "DAYS",
                "storage.location.template": f"{location}{PARTITION_KEY}=${{{PARTITION_KEY}}}/",
            }
        )
        tables.append(
            TableDefinition(
                database=database,
                name=entity.name + SUFFIX[fmt],
                entity=entity.name,
                fmt=fmt,
                description=(
                    f"{entity.name} of {entity.service} (/{entity.endpoint}), the {copy} copy landed "
                    f"by the DAG microservice_ingest; one {PARTITION_KEY} partition per UTC day"
                ),
                columns=columns,
                location=location,
                serde=serde,
                input_format=formats[0],
                output_format=formats[1],
                serde_parameters=serde_parameters,
                parameters=parameters,
            )
        )
    return tables


def _read(storage: Storage, key: str) -> bytes | None:
    try:
        with storage.open_read(key) as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def place(storage: Storage, key: str, body: bytes) -> tuple[str, int, bool]:
    """Store ``body`` as the current version of ``key``: a no-op when the highest version
    (``key``, ``<stem>.v2<ext>``, ... as :func:`dataset_ops.staging.status.versioned_name`
    names them) already holds these bytes, else the next version, written create-only (of two
    concurrent writers one wins; the other then compares with what won).

    :returns: ``(key of the current version, its number, whether this call wrote it)``.
    """
    from dataset_ops.staging.status import version_of, versioned_name

    folder, _, name = key.rpartition("/")
    found = [version_of(name, child) for child in storage.children(folder)]
    version = max((v for v in found if v is not None), default=0)
    while True:
        if version:
            current = f"{folder}/{versioned_name(name, version)}"
            if _read(storage, current) == body:
                return current, version, False
        version += 1
        candidate = f"{folder}/{versioned_name(name, version)}"
        if storage.create(candidate, body):
            return candidate, version, True


def write_catalog(lake: Storage, tables: list[TableDefinition]) -> list[dict]:
    """Write each table's files (:meth:`TableDefinition.files`) below
    ``_catalog/<database>/`` of ``lake`` with :func:`place`.

    :returns: per file ``{"table", "format", "file": "athena"|"glue", "key", "version",
        "written"}`` (``written`` False: the same content was there already).
    """
    out = []
    for table in tables:
        for rel, body in table.files().items():
            key, version, written = place(lake, f"{CATALOG_PREFIX}/{table.database}/{rel}", body)
            out.append(
                {
                    "table": f"{table.database}.{table.name}",
                    "format": table.fmt,
                    "file": rel.split("/", 1)[0],
                    "key": key,
                    "version": version,
                    "written": written,
                }
            )
            log.info("%s: %s (version %d)", key, "written" if written else "unchanged", version)
    return out


__all__ = [
    "CATALOG_PREFIX",
    "DEFAULT_DATABASE",
    "CatalogError",
    "TableColumn",
    "TableDefinition",
    "athena_name",
    "check_database",
    "entity_tables",
    "location_uri",
    "place",
    "sql_literal",
    "table_columns",
    "table_root",
    "write_catalog",
]
