"""The files of one entity and run, written page by page into a local work folder.

* CSV for Athena/Glue: a header row, UTF-8, RFC 4180 quoting (``csv.QUOTE_MINIMAL``, a quote
  doubled), ``\\n`` line ends, null as an empty field, booleans as ``true``/``false`` (what
  Athena's ``LazySimpleSerDe`` and ``OpenCSVSerDe`` read).
* JSONL: the records exactly as the service sent them (the backup), one per line.
* Parquet (pyarrow ``ParquetWriter``, snappy): typed columns from the schema (int64, float64,
  bool, string, ``timestamp[ms, UTC]`` for ``date-time`` strings, JSON text for the rest),
  written in row groups of ``batch_rows`` rows so memory stays bounded.

CSV and JSONL are gzipped when asked (``.gz`` added to the name).
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import Any

import orjson

from dataset_ops.ingest.flatten import Column

_ARROW_TYPES = {
    "integer": "int64",
    "number": "float64",
    "boolean": "bool_",
    "string": "string",
    "json": "string",
}


def _open_text(path: Path, gz: bool):
    if gz:
        return io.TextIOWrapper(gzip.open(path, "wb", compresslevel=6), encoding="utf-8", newline="")
    return open(path, "w", encoding="utf-8", newline="")


class EntityFiles:
    """The CSV, JSONL and Parquet files of one run of one entity in ``folder``.

    :param base: file name without extension (``productos_20261120_020000``).
    :param columns: flattened columns (:func:`~dataset_ops.ingest.flatten.columns_for`).
    :param formats: any of ``csv``, ``jsonl``, ``parquet``.
    :param gzip: gzip CSV and JSONL.
    :param batch_rows: rows per Parquet row group.
    """

    def __init__(
        self,
        folder: Path,
        base: str,
        columns: list[Column],
        formats: tuple[str, ...],
        gzip: bool = False,
        batch_rows: int = 10_000,
    ):
        self.columns = columns
        self.formats = formats
        self.paths: dict[str, Path] = {}
        self.rows = 0
        self.raw_records = 0
        self._batch: list[tuple] = []
        self._batch_rows = batch_rows
        self._csv = self._jsonl = self._parquet = None
        self._bool_columns = [i for i, c in enumerate(columns) if c.kind == "boolean"]
        if "csv" in formats:
            self.paths["csv"] = folder / f"{base}.csv{'.gz' if gzip else ''}"
            self._csv_file = _open_text(self.paths["csv"], gzip)
            self._csv = csv.writer(self._csv_file, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
            self._csv.writerow([c.name for c in columns])
        if "jsonl" in formats:
            self.paths["jsonl"] = folder / f"{base}.jsonl{'.gz' if gzip else ''}"
            self._jsonl = gzip_open(self.paths["jsonl"]) if gzip else open(self.paths["jsonl"], "wb")
        if "parquet" in formats:
            import pyarrow as pa
            import pyarrow.parquet as pq

            self.paths["parquet"] = folder / f"{base}.parquet"
            self._schema = pa.schema([(c.name, arrow_type(c)) for c in columns])
            self._parquet = pq.ParquetWriter(self.paths["parquet"], self._schema, compression="snappy")

    def add_raw(self, records: list[dict]) -> None:
        """Append records as received to the JSONL backup."""
        self.raw_records += len(records)
        if self._jsonl is not None and records:
            self._jsonl.write(b"".join(orjson.dumps(r) + b"\n" for r in records))

    def add_rows(self, rows: list[tuple]) -> None:
        """Append flattened rows (tuples in column order) to the CSV and Parquet files."""
        if not rows:
            return
        self.rows += len(rows)
        if self._csv is not None:
            if self._bool_columns:
                self._csv.writerows(self._csv_row(r) for r in rows)
            else:
                self._csv.writerows(rows)
        if self._parquet is not None:
            self._batch.extend(rows)
            if len(self._batch) >= self._batch_rows:
                self._flush_parquet()

    def _csv_row(self, row: tuple) -> list[Any]:
        out = list(row)
        for i in self._bool_columns:
            if out[i] is not None:
                out[i] = "true" if out[i] else "false"
        return out

    def _flush_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self._batch:
            return
        arrays = []
        for i, column in enumerate(self.columns):
            values = [row[i] for row in self._batch]
            if column.kind == "datetime":
                try:
                    arrays.append(pc.cast(pa.array(values, pa.string()), self._schema.field(i).type))
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    raise ValueError(f"column {column.name!r}: not an ISO 8601 date-time: {exc}") from None
            else:
                try:
                    arrays.append(pa.array(values, self._schema.field(i).type))
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                    raise ValueError(f"column {column.name!r} ({column.kind}): {exc}") from None
        self._parquet.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
        self._batch = []
        pa.default_memory_pool().release_unused()  # give freed batch memory back to the OS

    def close(self) -> dict[str, Path]:
        """Finish every file; returns ``{format: path}``."""
        if self._csv is not None:
            self._csv_file.close()
            self._csv = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._parquet is not None:
            self._flush_parquet()
            self._parquet.close()
            self._parquet = None
        return dict(self.paths)

    def abort(self) -> None:
        """Close without caring about the content (after a failure)."""
        for handle in (getattr(self, "_csv_file", None), self._jsonl):
            if handle is not None:
                handle.close()
        if self._parquet is not None:
            self._parquet.close()


def gzip_open(path: Path):
    """A binary gzip writer (level 6)."""
    return gzip.open(path, "wb", compresslevel=6)


def arrow_type(column: Column):
    """The Arrow type a column is written with in Parquet (``datetime``: ``timestamp[ms, UTC]``;
    the other kinds by :data:`_ARROW_TYPES`); the lake's catalog declares the same types."""
    import pyarrow as pa

    if column.kind == "datetime":
        return pa.timestamp("ms", tz="UTC")
    return getattr(pa, _ARROW_TYPES[column.kind])()
