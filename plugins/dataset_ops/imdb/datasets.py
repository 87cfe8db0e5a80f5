"""The seven IMDb non-commercial dataset files and their typed PostgreSQL tables.

Source of the format: https://developer.imdb.com/non-commercial-datasets/ . Each dump is a
gzipped, UTF-8, tab-separated file with one header line; ``\\N`` marks a missing value. Array
columns are comma-separated lists, except ``title.akas`` ``types`` and ``attributes``, whose
values are separated by the byte 0x02 in the real dumps. Fields may start with a double quote
that never closes (e.g. ``He Returns" or "Volvió`` in title.akas), so quotes carry no meaning.

Column names are IMDb's own, written unquoted in SQL: PostgreSQL folds them to lower case, so
``SELECT primaryTitle FROM imdb.title_basics`` works as written.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataset_ops.errors import InputError, NotFound
from dataset_ops.streams import StreamFormatError

IMDB_DEFAULT_BASE_URL = "https://datasets.imdbws.com/"

#: Separator of ``title.akas`` ``types`` / ``attributes`` values in the real dumps.
AKAS_ARRAY_SEPARATOR = "\x02"


class UnknownImdbFile(NotFound, KeyError):
    """A name that is not one of the seven dumps (permanent: the task is not retried)."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


class InvalidDump(InputError, StreamFormatError):
    """A dump that is not what it claims to be: wrong header line, corrupt or truncated gzip
    (rows PostgreSQL rejects: :class:`dataset_ops.imdb.load.BadDumpData`). Permanent: the same
    bytes fail the same way on every retry.

    Raised as ``InvalidDump(source, reason, line)`` like :class:`~dataset_ops.streams.StreamFormatError`
    (which callers may keep catching); the message is ``<file>: line <n>: <reason>``.
    """

    def __reduce__(self):  # picklable (Exception pickles ``args``, here the joined message)
        return type(self), (self.source, self.reason, self.line)

    @classmethod
    def from_stream_error(cls, exc: StreamFormatError) -> InvalidDump:
        """The same file, line and reason as ``exc``, classified as permanent."""
        return cls(exc.source, exc.reason, exc.line)


@dataclass(frozen=True)
class Column:
    """One column of an IMDb file.

    :param name: IMDb's column name, as in the file header.
    :param sql_type: PostgreSQL type of the published column.
    :param array_separator: for array columns, the separator of the raw value; the file's text
        lands in a ``<name>_raw`` column and a stored generated column splits it.
    """

    name: str
    sql_type: str
    array_separator: str | None = None

    @property
    def raw_name(self) -> str:
        """Name of the column COPY writes into (``<name>_raw`` for arrays)."""
        return f"{self.name}_raw" if self.array_separator is not None else self.name


@dataclass(frozen=True)
class ImdbFile:
    """One IMDb dump: its file name, table, columns and keys.

    :param name: dataset name as IMDb publishes it, e.g. ``title.basics``.
    :param columns: columns in file order.
    :param primary_key: columns of the published table's primary key.
    :param indexes: extra single-column indexes for the usual joins.
    """

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[str, ...] = ()

    @property
    def file_name(self) -> str:
        """File name on the download host, e.g. ``title.basics.tsv.gz``."""
        return f"{self.name}.tsv.gz"

    @property
    def table(self) -> str:
        """Table name in the ``imdb`` schema, e.g. ``title_basics``."""
        return self.name.replace(".", "_")

    @property
    def header(self) -> bytes:
        """The exact header line the file must start with (without the newline)."""
        return "\t".join(c.name for c in self.columns).encode()

    def staging_ddl(self, schema: str, table: str) -> str:
        """``CREATE UNLOGGED TABLE`` for the staging table COPY lands in.

        Array columns get a text ``<name>_raw`` column that COPY fills plus a stored generated
        ``text[]`` column, so the split happens in the same pass as the load.
        """
        parts = []
        for col in self.columns:
            if col.array_separator is None:
                parts.append(f"{col.name} {col.sql_type}")
            else:
                sep = col.array_separator.replace("'", "''")
                parts.append(f"{col.raw_name} text")
                parts.append(
                    f"{col.name} {col.sql_type} GENERATED ALWAYS AS "
                    f"(string_to_array({col.raw_name}, E'{_escape(sep)}')) STORED"
                )
        return f"CREATE UNLOGGED TABLE {schema}.{table} (\n  " + ",\n  ".join(parts) + "\n)"

    @property
    def copy_columns(self) -> str:
        """Comma-separated column list for ``COPY ... (cols) FROM STDIN``."""
        return ", ".join(c.raw_name for c in self.columns)

    @property
    def array_columns(self) -> tuple[Column, ...]:
        """Array columns: generated from a ``<name>_raw`` helper column dropped after the load."""
        return tuple(c for c in self.columns if c.array_separator is not None)


def _escape(sep: str) -> str:
    return "".join(f"\\x{ord(ch):02x}" if ord(ch) < 32 else ch for ch in sep)


def _text(name: str) -> Column:
    return Column(name, "text")


def _int(name: str) -> Column:
    return Column(name, "integer")


def _array(name: str, sep: str = ",") -> Column:
    return Column(name, "text[]", sep)


IMDB_FILES: dict[str, ImdbFile] = {
    f.name: f
    for f in (
        ImdbFile(
            "name.basics",
            (
                _text("nconst"),
                _text("primaryName"),
                _int("birthYear"),
                _int("deathYear"),
                _array("primaryProfession"),
                _array("knownForTitles"),
            ),
            primary_key=("nconst",),
        ),
        ImdbFile(
            "title.akas",
            (
                _text("titleId"),
                _int("ordering"),
                _text("title"),
                _text("region"),
                _text("language"),
                _array("types", AKAS_ARRAY_SEPARATOR),
                _array("attributes", AKAS_ARRAY_SEPARATOR),
                Column("isOriginalTitle", "boolean"),
            ),
            primary_key=("titleId", "ordering"),
        ),
        ImdbFile(
            "title.basics",
            (
                _text("tconst"),
                _text("titleType"),
                _text("primaryTitle"),
                _text("originalTitle"),
                Column("isAdult", "boolean"),
                _int("startYear"),
                _int("endYear"),
                _int("runtimeMinutes"),
                _array("genres"),
            ),
            primary_key=("tconst",),
        ),
        ImdbFile(
            "title.crew",
            (_text("tconst"), _array("directors"), _array("writers")),
            primary_key=("tconst",),
        ),
        ImdbFile(
            "title.episode",
            (_text("tconst"), _text("parentTconst"), _int("seasonNumber"), _int("episodeNumber")),
            primary_key=("tconst",),
            indexes=("parentTconst",),
        ),
        ImdbFile(
            "title.principals",
            (
                _text("tconst"),
                _int("ordering"),
                _text("nconst"),
                _text("category"),
                _text("job"),
                _text("characters"),
            ),
            primary_key=("tconst", "ordering"),
            indexes=("nconst",),
        ),
        ImdbFile(
            "title.ratings",
            (_text("tconst"), Column("averageRating", "numeric(3,1)"), _int("numVotes")),
            primary_key=("tconst",),
        ),
    )
}

IMDB_FILE_NAMES: tuple[str, ...] = tuple(IMDB_FILES)


def files_param(description: str):
    """The ``files`` Param both IMDb DAGs take: a multi-select of the seven dumps, all by default.

    :param description: what the DAG does with the selected files (shown in the trigger form).
    """
    from airflow.sdk import Param

    return Param(
        list(IMDB_FILE_NAMES),
        type="array",
        items={"type": "string", "enum": list(IMDB_FILE_NAMES)},
        examples=list(IMDB_FILE_NAMES),  # the form lists them to choose from
        minItems=1,
        uniqueItems=True,
        title="Files",
        description=description,
    )


def imdb_file(name: str) -> ImdbFile:
    """Look up a dataset by IMDb name (``title.basics``) or file name (``title.basics.tsv.gz``).

    :raises UnknownImdbFile: (a ``KeyError``) with the list of known names when ``name`` is not
        one of the seven.
    """
    key = name.removesuffix(".tsv.gz")
    try:
        return IMDB_FILES[key]
    except KeyError:
        raise UnknownImdbFile(f"unknown IMDb file {name!r}; known: {', '.join(IMDB_FILE_NAMES)}") from None
