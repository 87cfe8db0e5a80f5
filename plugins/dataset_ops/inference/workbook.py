"""Streaming Excel (.xlsx) writer for the inference report: typed sheets, a summary, bounded memory.

Format and library: Office Open XML spreadsheets (ECMA-376) written with XlsxWriter in
``constant_memory`` mode (XlsxWriter docs, "Working with Memory and Performance"): each row goes to
a temporary XML file as soon as the next row starts, so memory is one row plus the formats, whatever
the number of rows. The price: rows are written in order, one sheet after the other, strings are
stored inline (no shared-string table), and a chart has no cached values (Excel and LibreOffice
compute them from the cells when the file is opened).

Excel's limits (Microsoft, "Excel specifications and limits"), enforced here:

* 1,048,576 rows x 16,384 columns per sheet. A sheet with more rows than ``max_rows_per_sheet - 1``
  (header included in the limit) continues on ``<name>_2``, ``<name>_3``... each with its own header.
* sheet names: 1 to 31 characters, none of ``[ ] : * ? / \\``, not starting or ending with ``'``,
  unique ignoring case. A bad name raises ``ValueError`` naming it.
* 32,767 characters (UTF-16 code units) per cell: longer text is cut and ends with
  :data:`TRUNCATION_NOTE`; such cells are counted (``truncated_cells`` in :meth:`ReportWorkbook.close`).

Shapes and units: a sheet is a header row plus one row per item of :attr:`SheetSpec.rows`, each a
sequence in the order of :attr:`SheetSpec.columns`. Column widths are in Excel character units.
Dates are Excel serial days (1900 system) of naive UTC datetimes; ``percent`` values are fractions
(0.25 is shown as 25.0%).

Values: ``None``, ``""``, NaN, ``pandas.NA``/``NaT`` and numpy NaT are blank cells; numpy scalars,
``Decimal`` and numeric text are accepted in number columns; ±inf is the text ``inf``/``-inf`` (Excel
has no infinite number); text is always written as text (never a formula, URL or number, even when
it starts with ``=``); a value that does not fit its column kind (e.g. ``"n/a"`` in an ``int``
column) is written as text. The file holds no formulas.

The file appears at its final path only in :meth:`ReportWorkbook.close` (written under a hidden work
folder next to it, then ``os.replace``); used as a context manager, an exception leaves no file and no
temporary files behind.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import tempfile
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import chain, islice
from pathlib import Path
from typing import Any

import xlsxwriter

log = logging.getLogger(__name__)

#: Excel's rows per sheet, header included.
EXCEL_MAX_ROWS = 1_048_576
#: Excel's columns per sheet.
EXCEL_MAX_COLS = 16_384
#: Excel's longest sheet name (characters).
EXCEL_MAX_SHEET_NAME = 31
#: Excel's longest cell text (UTF-16 code units).
EXCEL_MAX_CELL_CHARS = 32_767
#: Appended to text cut at :data:`EXCEL_MAX_CELL_CHARS`; ``{total}`` is the original length.
TRUNCATION_NOTE = " … [truncated: {total} chars]"
#: Rows read ahead of writing to choose column widths.
WIDTH_SAMPLE_ROWS = 200
#: Column width bounds (Excel character units).
MIN_WIDTH, MAX_WIDTH = 8.0, 60.0

KINDS = ("text", "int", "float", "percent", "datetime", "bool", "mark")
_INVALID_SHEET_CHARS = frozenset("[]:*?/\\")
_NUMBER_FORMATS = {"int": "#,##0", "datetime": "yyyy-mm-dd hh:mm:ss"}
_DEFAULT_WIDTHS = {"int": 12, "float": 14, "percent": 10, "datetime": 20, "bool": 8, "mark": 8, "text": 10}
_HEADER_FORMAT = {"bold": True, "text_wrap": True, "valign": "top", "bg_color": "#DDEBF7", "bottom": 1}
_MARK_FORMAT = {"bg_color": "#FFF2CC"}
#: Excel serial day 0 for dates from 1900-03-01 on (Excel counts a 1900-02-29 that never was).
_EXCEL_EPOCH = datetime(1899, 12, 30)
_EXCEL_FIRST_PLAIN_DAY = datetime(1900, 3, 1)
_MAX_FLOAT = sys.float_info.max


@dataclass(frozen=True)
class Column:
    """One column of a data sheet.

    :param name: header text.
    :param kind: ``text``, ``int`` (``#,##0``), ``float`` (``#,##0.00``), ``percent`` (a fraction,
        shown ``0.0%``), ``datetime`` (datetime, date, numpy datetime64 or ISO 8601 string; aware values
        are converted to UTC; shown ``yyyy-mm-dd hh:mm:ss``), ``bool`` or ``mark`` (text on a light
        yellow fill, blank by default: where users type their mark, e.g. ``x``).
    :param width: column width in Excel character units; None chooses it from the header, the kind
        and the first :data:`WIDTH_SAMPLE_ROWS` values (longest + 2, within 8..60).
    :param decimals: decimals shown for ``float`` (default 2) and ``percent`` (default 1).
    """

    name: str
    kind: str = "text"
    width: float | None = None
    decimals: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.decimals is not None and not 0 <= self.decimals <= 15:
            raise ValueError(f"column {self.name!r}: decimals must be 0..15, not {self.decimals}")
        if self.width is not None and not 0 <= self.width <= 255:
            raise ValueError(f"column {self.name!r}: width must be 0..255, not {self.width}")

    @property
    def places(self) -> int:
        """Decimals shown: ``decimals``, else 2 for float, 1 for percent, 0 for the other kinds."""
        if self.decimals is not None:
            return self.decimals
        return {"float": 2, "percent": 1}.get(self.kind, 0)

    @property
    def number_format(self) -> str | None:
        """Excel number format of the column's cells (None for text, bool and mark)."""
        if self.kind in ("float", "percent"):
            fraction = "." + "0" * self.places if self.places else ""
            return f"#,##0{fraction}" if self.kind == "float" else f"0{fraction}%"
        return _NUMBER_FORMATS.get(self.kind)


@dataclass
class SheetSpec:
    """A data sheet: its name, its columns, and its rows (any iterable, consumed once, in order).

    Each row is a sequence with one value per column, in column order; None is a blank cell.
    """

    name: str
    columns: list[Column]
    rows: Iterable[Sequence[Any]] = field(default_factory=tuple)


def check_sheet_name(name: str) -> str:
    """Return ``name`` if Excel accepts it as a sheet name, else raise ``ValueError`` naming it."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"sheet name {name!r}: must be a non-empty string")
    if len(name.encode("utf-16-le")) // 2 > EXCEL_MAX_SHEET_NAME:
        raise ValueError(f"sheet name {name!r}: longer than {EXCEL_MAX_SHEET_NAME} characters")
    bad = sorted(set(name) & _INVALID_SHEET_CHARS)
    if bad:
        raise ValueError(f"sheet name {name!r}: contains {''.join(bad)!r}, not allowed by Excel")
    if name[0] == "'" or name[-1] == "'":
        raise ValueError(f"sheet name {name!r}: cannot start or end with an apostrophe")
    return name


def continuation_name(name: str, part: int) -> str:
    """Name of part ``part`` (2, 3, ...) of sheet ``name``: ``name_<part>``, cut to 31 characters."""
    suffix = f"_{part}"
    return name[: EXCEL_MAX_SHEET_NAME - len(suffix)] + suffix


def _is_missing(value: Any) -> bool:
    """None, NaN (float or numpy), NaT (pandas or numpy) and ``pandas.NA``."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:  # pandas.NA: its comparisons are NA, whose truth is ambiguous
        return True
    except ValueError:  # an array: not a missing scalar
        return False


def _to_naive_utc(value: datetime) -> datetime:
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(tzinfo=None) if value.tzinfo is not None else value


def _as_datetime(value: Any) -> datetime | date | None:
    """A naive UTC datetime (or date) from a datetime, date, datetime64 or ISO string; None if not one."""
    if isinstance(value, datetime):
        return _to_naive_utc(value)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return _to_naive_utc(datetime.fromisoformat(value.strip()))
        except ValueError:
            return None
    if type(value).__name__ == "datetime64":  # numpy, without importing it
        item = value.astype("datetime64[us]").item()
        return item if isinstance(item, datetime | date) else None
    return None


def _clip_text(text: str) -> tuple[str, bool]:
    """Cut ``text`` to Excel's cell limit with :data:`TRUNCATION_NOTE`; (text, was it cut)."""
    units = len(text.encode("utf-16-le")) // 2
    if units <= EXCEL_MAX_CELL_CHARS:
        return text, False
    note = TRUNCATION_NOTE.format(total=units)
    keep = EXCEL_MAX_CELL_CHARS - len(note.encode("utf-16-le")) // 2
    head = text.encode("utf-16-le")[: 2 * keep].decode("utf-16-le", errors="ignore")
    return head + note, True


def _shown_length(column: Column, value: Any) -> int:
    """Approximate displayed length of ``value`` in ``column`` (characters), for column widths."""
    if _is_missing(value):
        return 0
    try:
        if column.kind == "int":
            return len(f"{float(value):,.0f}")
        if column.kind in ("float", "percent"):
            number = float(value) * (100 if column.kind == "percent" else 1)
            return len(f"{number:,.{column.places}f}") + (column.kind == "percent")
    except (TypeError, ValueError, OverflowError):
        pass
    if column.kind == "datetime" and _as_datetime(value) is not None:
        return 19
    if column.kind == "bool" and not isinstance(value, str):
        return 5
    return max((len(line) for line in str(value).splitlines()), default=0)


def column_width(column: Column, sample: Sequence[Sequence[Any]] = (), index: int = 0) -> float:
    """Width of ``column`` (Excel character units): its own, or from header, kind and ``sample`` rows.

    Longest of header and sampled values plus 2, at least the kind's default, within 8..60.
    """
    if column.width is not None:
        return float(column.width)
    longest = max((_shown_length(column, row[index]) for row in sample if len(row) > index), default=0)
    wanted = max(len(column.name) + 2, longest + 2, _DEFAULT_WIDTHS[column.kind])
    return float(min(MAX_WIDTH, max(MIN_WIDTH, wanted)))


class ReportWorkbook:
    """An .xlsx file written sheet after sheet, row after row, in bounded memory.

    Use as a context manager, or call :meth:`close` (success) or :meth:`abort` (failure) yourself::

        with ReportWorkbook(path) as book:
            book.add_summary("Resumen", [("Imágenes", 1200, "int"), ("Aciertos", 0.93, "percent")])
            book.add_sheet(SheetSpec("Datos", [Column("id", "int"), Column("fecha", "datetime")], rows))
        result = book.result  # what close() returned

    Sheets appear in the order they are added; each is complete when its ``add_*`` call returns.

    :param path: final .xlsx path; its folder is created if missing. Work files (XlsxWriter's row
        files, then the zip) live in a hidden folder next to it, removed by :meth:`close`/:meth:`abort`.
    :param max_rows_per_sheet: rows per sheet including the header (2..1,048,576); data beyond
        ``max_rows_per_sheet - 1`` rows continues on ``<name>_2``, ``<name>_3``, ...
    """

    def __init__(self, path: Path | str, *, max_rows_per_sheet: int = EXCEL_MAX_ROWS):
        if not 2 <= max_rows_per_sheet <= EXCEL_MAX_ROWS:
            raise ValueError(f"max_rows_per_sheet must be 2..{EXCEL_MAX_ROWS}, not {max_rows_per_sheet}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows_per_sheet = max_rows_per_sheet
        #: Rows of every sheet written, by name, in workbook order: data rows (header excluded) of a
        #: data sheet, KPIs of a summary.
        self.sheets: dict[str, int] = {}
        #: Text cells cut at Excel's 32,767-character limit.
        self.truncated_cells = 0
        #: What :meth:`close` returned, once it has.
        self.result: dict[str, Any] | None = None
        self._workdir = Path(
            tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        )
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, ignore_errors=True)
        self._partial = self._workdir / (self.path.name + ".partial")
        self._book = xlsxwriter.Workbook(
            str(self._partial),
            {
                "constant_memory": True,
                "tmpdir": str(self._workdir),
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
            },
        )
        self._formats: dict[tuple, Any] = {}
        self._reserved: dict[str, Any] = {}

    # -- public API -------------------------------------------------------------------------------

    def reserve_sheet(self, name: str) -> None:
        """Create sheet ``name`` now, at this place in the sheet order, to be filled later by the
        :meth:`add_summary` or :meth:`add_sheet` call of that name (e.g. a summary shown first but
        computed after the data sheets). :meth:`close` refuses a reserved sheet never filled.

        :raises ValueError: a bad or duplicate sheet name.
        """
        self._reserved[name] = self._new_sheet(name)

    def add_summary(
        self, name: str, kpis: Sequence[tuple[str, Any, str]], chart: dict[str, Any] | None = None
    ) -> None:
        """Add a summary sheet: one KPI per row (label in bold, value), then optionally a chart.

        :param kpis: ``(label, value, kind)`` with kind ``text``, ``int``, ``float``, ``percent`` (or
            ``datetime``/``bool``), formatted as the data columns of that kind.
        :param chart: ``{"type": "column"|"bar"|"pie", "title": str, "categories": [str, ...],
            "values": [number, ...], "series_name": str}``. Its data table is written below the KPIs
            (after one blank row, if any KPI: a header ``title | series_name``, one row per category) and the
            chart, built from those cells, is placed to the right (column D). No categories: the table
            header is written and the chart is left out.
        """
        kpis = [tuple(kpi) for kpi in kpis]
        for kpi in kpis:  # everything is checked before the sheet exists
            if len(kpi) != 3 or kpi[2] not in KINDS or kpi[2] == "mark":
                raise ValueError(
                    f"sheet {name!r}: KPI {kpi!r} is not (label, value, kind of a non-mark column)"
                )
        table = _chart_table(name, chart) if chart is not None else None
        ws = self._new_sheet(name)
        label_fmt = self._format(bold=True)
        for row, (label, value, kind) in enumerate(kpis):
            _write_literal(ws, row, 0, self._text(label), label_fmt)
            self._writer(ws, Column("", kind))(row, 1, value)
        widths = [max([12] + [len(str(kpi[0])) + 2 for kpi in kpis]), 16]
        if table is not None:
            longest = self._write_chart(ws, table, len(kpis) + 1 if kpis else 0)
            widths[0] = max(widths[0], longest + 2)
        for col, width in enumerate(widths):
            ws.set_column(col, col, min(MAX_WIDTH, width))
        self.sheets[ws.name] = len(kpis)

    def add_sheet(self, spec: SheetSpec) -> list[str]:
        """Write ``spec`` as one or more sheets; return their names (``name``, ``name_2``, ...).

        Every sheet gets the header (bold, wrapped, shaded), frozen; an autofilter over header and
        data; the column widths (chosen once, from the first :data:`WIDTH_SAMPLE_ROWS` rows); typed,
        formatted cells. Row counts are recorded in :attr:`sheets`.

        :raises ValueError: a bad or duplicate sheet name, no or too many columns, a row whose length
            differs from the number of columns (the workbook is then unusable: :meth:`abort` it).
        """
        columns = list(spec.columns)
        if not columns or len(columns) > EXCEL_MAX_COLS:
            raise ValueError(f"sheet {spec.name!r}: needs 1..{EXCEL_MAX_COLS} columns, has {len(columns)}")
        check_sheet_name(spec.name)
        rows = iter(spec.rows)
        sample = list(islice(rows, WIDTH_SAMPLE_ROWS))
        widths = [column_width(c, sample, i) for i, c in enumerate(columns)]
        ncols, cap = len(columns), self.max_rows_per_sheet - 1
        names: list[str] = []

        def start(part: int):
            ws = self._start_part(spec.name, part, columns, widths)
            names.append(ws.name)
            return ws, [self._writer(ws, c) for c in columns]

        ws, writers = start(1)
        written = 0
        for number, row in enumerate(chain(sample, rows), start=1):
            if written == cap:
                self._finish_part(ws, written, ncols)
                ws, writers = start(len(names) + 1)
                written = 0
            if len(row) != ncols:
                raise ValueError(
                    f"sheet {spec.name!r}: row {number} has {len(row)} values for {ncols} columns"
                )
            written += 1
            for col, value in enumerate(row):
                writers[col](written, col, value)
        self._finish_part(ws, written, ncols)
        return names

    def add_batches(self, name: str, columns: Sequence[Column], batches: Iterable) -> list[str]:
        """Write Arrow record batches as one or more sheets, as :meth:`add_sheet` does with rows,
        but building each batch's row XML column by column with ``pyarrow.compute`` and writing it
        straight into XlsxWriter's ``constant_memory`` row file (about 4x faster than cell by cell
        on 100,000 rows x 15 columns; same cells, formats and blanks).

        Each batch holds the columns in ``columns`` order (matched by position). Per column kind the
        fast path takes: text (any type cast to string; null and ``""`` are blank), int/float/percent
        (numbers; null blank), datetime (Arrow timestamps, converted to UTC serial days), bool
        (booleans). A batch with anything else (another type, NaN or infinity, text with XML
        control characters or longer than 16,383 characters, dates before 1900-03-01, a ``mark``
        column) is written cell by cell instead, so the result is the same.

        :raises ValueError: as :meth:`add_sheet`, or a batch with the wrong number of columns.
        """
        columns = list(columns)
        if not columns or len(columns) > EXCEL_MAX_COLS:
            raise ValueError(f"sheet {name!r}: needs 1..{EXCEL_MAX_COLS} columns, has {len(columns)}")
        check_sheet_name(name)
        ncols, cap = len(columns), self.max_rows_per_sheet - 1
        batches = iter(batches)
        first = next(batches, None)
        sample = _batch_rows(first.slice(0, WIDTH_SAMPLE_ROWS)) if first is not None else []
        widths = [column_width(c, sample, i) for i, c in enumerate(columns)]
        names: list[str] = []
        ws = self._start_part(name, 1, columns, widths)
        names.append(ws.name)
        fast = _ArrowRows(self, ws, columns)
        written = 0
        for batch in chain([first] if first is not None else [], batches):
            if batch.num_columns != ncols:
                raise ValueError(f"sheet {name!r}: a batch has {batch.num_columns} columns for {ncols}")
            offset = 0
            while offset < batch.num_rows:
                if written == cap:
                    self._finish_part(ws, written, ncols)
                    ws = self._start_part(name, len(names) + 1, columns, widths)
                    names.append(ws.name)
                    fast = _ArrowRows(self, ws, columns)
                    written = 0
                part = batch.slice(offset, cap - written)
                fast.write(part, written + 1)
                written += part.num_rows
                offset += part.num_rows
        self._finish_part(ws, written, ncols)
        return names

    def close(self) -> dict[str, Any]:
        """Finish the file and move it to :attr:`path` atomically.

        :returns: ``{"path": str, "bytes": int, "sheets": {name: data rows}, "truncated_cells": int}``.
        :raises ValueError: no sheet was added (nothing is written).
        """
        if self.result is not None:
            return self.result
        self._check_open()
        if not self.sheets:
            self.abort()
            raise ValueError(f"{self.path}: no sheet added")
        if self._reserved:
            self.abort()
            raise ValueError(f"{self.path}: reserved sheets never filled: {', '.join(self._reserved)}")
        try:
            self._book.close()
            with open(self._partial, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(self._partial, self.path)
        except BaseException:
            self.abort()
            raise
        self._book = None
        self._cleanup()
        if self.truncated_cells:
            log.warning(
                "%s: %d cells cut to %d characters", self.path, self.truncated_cells, EXCEL_MAX_CELL_CHARS
            )
        self.result = {
            "path": str(self.path),
            "bytes": self.path.stat().st_size,
            "sheets": dict(self.sheets),
            "truncated_cells": self.truncated_cells,
        }
        return self.result

    def abort(self) -> None:
        """Give up: close and delete the work files; nothing is written at :attr:`path`."""
        book, self._book = self._book, None
        if book is not None:
            for ws in book.worksheets():
                # constant_memory keeps one open row file per sheet (XlsxWriter's own _opt_close()).
                fh = getattr(ws, "row_data_fh", None)
                if fh is not None:
                    fh.close()
        self._cleanup()

    def __enter__(self) -> ReportWorkbook:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- internals --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._book is None:
            raise RuntimeError(f"{self.path}: workbook already closed or aborted")

    def _new_sheet(self, name: str):
        self._check_open()
        if name in self._reserved:
            return self._reserved.pop(name)
        check_sheet_name(name)
        if any(name.lower() == ws.name.lower() for ws in self._book.worksheets()):
            raise ValueError(f"sheet name {name!r}: already used in this workbook (case ignored)")
        return self._book.add_worksheet(name)

    def _start_part(self, name: str, part: int, columns: list[Column], widths: list[float]):
        """Sheet ``part`` of a data sheet: header (bold, wrapped, shaded), widths, frozen header."""
        ws = self._new_sheet(name if part == 1 else continuation_name(name, part))
        header = self._format(**_HEADER_FORMAT)
        for col, (column, width) in enumerate(zip(columns, widths, strict=True)):
            ws.set_column(col, col, width)
            _write_literal(ws, 0, col, column.name, header)
        ws.freeze_panes(1, 0)
        return ws

    def _finish_part(self, ws, written: int, ncols: int) -> None:
        ws.autofilter(0, 0, written, ncols - 1)
        self.sheets[ws.name] = written

    def _format(self, **props):
        key = tuple(sorted(props.items()))
        fmt = self._formats.get(key)
        if fmt is None:
            fmt = self._formats[key] = self._book.add_format(props)
        return fmt

    def _column_format(self, column: Column):
        if column.kind == "mark":
            return self._format(**_MARK_FORMAT)
        number_format = column.number_format
        return self._format(num_format=number_format) if number_format else None

    def _text(self, value: Any) -> str:
        text = value if type(value) is str else str(value)
        if len(text) > EXCEL_MAX_CELL_CHARS // 2:  # shorter text cannot exceed the limit in UTF-16
            text, cut = _clip_text(text)
            self.truncated_cells += cut
        return text

    def _writer(self, ws, column: Column) -> Callable[[int, int, Any], None]:
        """A function ``(row, col, value)`` writing one cell of ``column`` on ``ws``.

        Fast paths for the plain Python types; anything else goes through :func:`_is_missing` and a
        conversion, falling back to text.
        """
        fmt = self._column_format(column)
        write_number = ws.write_number

        def write_string(row: int, col: int, value: str, cell_format) -> None:
            _write_literal(ws, row, col, value, cell_format)

        text = self._text
        kind = column.kind

        def write_text(row: int, col: int, value: Any) -> None:
            if type(value) is str:
                if value:  # "" is a blank cell, as None
                    write_string(row, col, text(value), fmt)
            elif not _is_missing(value):
                write_string(row, col, text(value), fmt)

        if kind == "text":
            return write_text

        if kind == "mark":
            write_blank = ws.write_blank

            def write_mark(row: int, col: int, value: Any) -> None:
                if value is None or (type(value) is not str and _is_missing(value)) or value == "":
                    write_blank(row, col, None, fmt)
                else:
                    write_string(row, col, text(value), fmt)

            return write_mark

        if kind in ("int", "float", "percent"):

            def write_num(row: int, col: int, value: Any) -> None:
                if type(value) is not float and type(value) is not int:
                    if _is_missing(value):
                        return
                    try:  # numpy numbers, Decimal, bool, numeric text
                        value = float(value)
                    except (TypeError, ValueError, OverflowError):
                        write_text(row, col, value)
                        return
                if -_MAX_FLOAT <= value <= _MAX_FLOAT:
                    write_number(row, col, value, fmt)
                elif type(value) is int:  # too large for a double: its digits, as text
                    write_text(row, col, value)
                elif value == value:  # ±inf: Excel has no such number; text, not an error formula
                    write_string(row, col, "inf" if value > 0 else "-inf", fmt)

            return write_num

        if kind == "bool":
            write_boolean = ws.write_boolean

            def write_bool(row: int, col: int, value: Any) -> None:
                if type(value) is bool:
                    write_boolean(row, col, value)
                elif _is_missing(value):
                    return
                elif isinstance(value, str):
                    write_text(row, col, value)
                else:
                    try:
                        write_boolean(row, col, bool(value))
                    except (TypeError, ValueError):
                        write_text(row, col, value)

            return write_bool

        write_datetime = ws.write_datetime  # kind == "datetime"

        def write_date(row: int, col: int, value: Any) -> None:
            if type(value) is not datetime and _is_missing(value):
                return
            moment = _as_datetime(value)
            if moment is None:
                write_text(row, col, value)
            elif type(moment) is datetime and moment >= _EXCEL_FIRST_PLAIN_DAY:
                delta = moment - _EXCEL_EPOCH  # the serial number, computed here: 3x faster
                write_number(row, col, delta.days + (delta.seconds + delta.microseconds / 1e6) / 86400, fmt)
            else:
                write_datetime(row, col, moment, fmt)  # dates, and XlsxWriter's 1900 leap-day rule

        return write_date

    def _write_chart(self, ws, table: dict[str, Any], top: int) -> int:
        """Write the chart's table from row ``top`` and the chart at D1; return the longest category."""
        header = self._format(**_HEADER_FORMAT)
        _write_literal(ws, top, 0, table["title"] or "Categoría", header)
        _write_literal(ws, top, 1, table["series_name"] or "Valor", header)
        for offset, (category, value) in enumerate(
            zip(table["categories"], table["values"], strict=True), start=1
        ):
            _write_literal(ws, top + offset, 0, self._text(category))
            if value is not None:
                ws.write_number(top + offset, 1, value)  # General format: shown as given
        count = len(table["categories"])
        if not count:
            return 0
        graph = self._book.add_chart({"type": table["type"]})
        series = {
            "name": [ws.name, top, 1],
            "categories": [ws.name, top + 1, 0, top + count, 0],
            "values": [ws.name, top + 1, 1, top + count, 1],
        }
        if table["type"] == "pie":
            series["data_labels"] = {"percentage": True}
        graph.add_series(series)
        graph.set_title({"name": table["title"]} if table["title"] else {"none": True})
        if table["type"] != "pie":
            graph.set_legend({"none": True})
        ws.insert_chart(0, 3, graph, {"x_scale": 1.5, "y_scale": 1.5})
        return max(len(category) for category in table["categories"])


def _write_literal(ws, row: int, col: int, text: str, cell_format=None) -> None:
    """``ws.write_string``, except for text that starts with ``<r>`` and ends with ``</r>``: in
    ``constant_memory`` mode XlsxWriter takes such a string for rich-string XML and copies it
    into the file unescaped; it is written as a rich string of plain fragments instead, which reads
    back as the same text."""
    if text.startswith("<r>") and text.endswith("</r>"):
        fragments = (text[:1], text[1:2], text[2:])  # XlsxWriter wants more than two
        ws.write_rich_string(row, col, *fragments, *([cell_format] if cell_format else []))
    else:
        ws.write_string(row, col, text, cell_format)


def _batch_rows(batch) -> list[tuple]:
    """The rows of an Arrow record batch as tuples of Python values."""
    return list(zip(*(column.to_pylist() for column in batch.columns), strict=True))


#: XML 1.0 characters XlsxWriter escapes as ``_xHHHH_`` (such text goes cell by cell).
_CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
#: 1900-03-01 as Unix epoch milliseconds, and the Excel serial day of the Unix epoch.
_FIRST_PLAIN_MS = int((_EXCEL_FIRST_PLAIN_DAY - datetime(1970, 1, 1)).total_seconds() * 1000)
_EPOCH_SERIAL = 25569
#: Rows whose XML is built at once by :class:`_ArrowRows` (about 1 KiB each for 15 columns).
_XML_ROWS = 4096


class _ArrowRows:
    """Rows of Arrow record batches as XlsxWriter's ``constant_memory`` row XML (``<row r=...>``
    with ``<c r= s= t=>`` cells, inline strings), built with ``pyarrow.compute`` and written to
    the worksheet's row file. This uses XlsxWriter internals (``fh``, ``previous_row``,
    ``_write_single_row``, ``_check_dimensions``, ``Format._get_xf_index``, checked here; without
    them every batch goes cell by cell)."""

    def __init__(self, book: ReportWorkbook, ws, columns: list[Column]):
        from xlsxwriter.utility import xl_col_to_name

        self.book, self.ws, self.columns = book, ws, columns
        self.letters = [xl_col_to_name(col) for col in range(len(columns))]
        self.styles = []
        for column in columns:
            fmt = book._column_format(column)
            self.styles.append(f' s="{fmt._get_xf_index()}"' if fmt is not None else "")
        self.enabled = bool(getattr(ws, "constant_memory", False)) and all(
            hasattr(ws, attr) for attr in ("fh", "previous_row", "_write_single_row", "_check_dimensions")
        )
        self._writers = None

    def write(self, batch, first_row: int) -> None:
        """Write ``batch`` as sheet rows ``first_row``.. (0-based; the header is row 0), in slices
        of :data:`_XML_ROWS` rows (the memory of one slice's XML)."""
        for offset in range(0, batch.num_rows, _XML_ROWS):
            part = batch.slice(offset, _XML_ROWS)
            row = first_row + offset
            xml = self._xml(part, row) if self.enabled else None
            if xml is None:
                self._write_cells(part, row)
                continue
            ws = self.ws
            last_row = row + part.num_rows - 1
            ws._write_single_row(row)  # flush the pending row (the header) as XlsxWriter does
            ws._check_dimensions(row, 0)
            ws._check_dimensions(last_row, len(self.columns) - 1)
            offsets = memoryview(xml.buffers()[1]).cast("i")  # int32 offsets of a string array
            start, end = offsets[xml.offset], offsets[xml.offset + len(xml)]
            ws.fh.flush()  # the text layer is empty; the bytes go below it, in order
            ws.fh.buffer.write(memoryview(xml.buffers()[2])[start:end])
            ws.previous_row = last_row

    def _write_cells(self, batch, first_row: int) -> None:
        if self._writers is None:
            self._writers = [self.book._writer(self.ws, c) for c in self.columns]
        for row, values in enumerate(_batch_rows(batch), start=first_row):
            for col, value in enumerate(values):
                self._writers[col](row, col, value)

    def _xml(self, batch, first_row: int):
        """One Arrow string per row (``<row>...</row>``, UTF-8), or None: cell by cell."""
        import pyarrow as pa
        import pyarrow.compute as pc

        numbers = pa.array(range(first_row + 1, first_row + 1 + batch.num_rows), pa.int64()).cast(pa.string())
        cells = []
        for col, (column, array) in enumerate(zip(self.columns, batch.columns, strict=True)):
            cell = self._cells(column, array, f'<c r="{self.letters[col]}', numbers, self.styles[col], pa, pc)
            if cell is None:
                return None
            cells.append(cell)
        return pc.binary_join_element_wise(
            '<row r="', numbers, '">', *cells, "</row>", "", null_handling="replace", null_replacement=""
        )

    def _cells(self, column: Column, array, ref: str, numbers, style: str, pa, pc):
        """The column's cell XML, null for blank cells; None when it needs the cell-by-cell path."""
        kind, kind_type = column.kind, array.type
        if kind == "text":
            try:
                text = array if pa.types.is_string(kind_type) else array.cast(pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
            if text.null_count < len(text) and (
                pc.any(pc.match_substring_regex(text, _CONTROL_CHARS)).as_py()
                or pc.max(pc.utf8_length(text)).as_py() > EXCEL_MAX_CELL_CHARS // 2
            ):
                return None
            text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
            escaped = pc.replace_substring(
                pc.replace_substring(pc.replace_substring(text, "&", "&amp;"), "<", "&lt;"), ">", "&gt;"
            )
            opening = pc.if_else(
                pc.match_substring_regex(text, r"^\s|\s$"), '<t xml:space="preserve">', "<t>"
            )
            return pc.binary_join_element_wise(
                ref, numbers, f'"{style} t="inlineStr"><is>', opening, escaped, "</t></is></c>", ""
            )
        if kind in ("int", "float", "percent"):
            if pa.types.is_integer(kind_type):
                values = array.cast(pa.string())
            elif pa.types.is_floating(kind_type):
                if pc.all(pc.is_finite(array)).as_py() not in (True, None):
                    return None
                values = array.cast(pa.float64()).cast(pa.string())
            else:
                return None
            return pc.binary_join_element_wise(ref, numbers, f'"{style}><v>', values, "</v></c>", "")
        if kind == "datetime":
            if not pa.types.is_timestamp(kind_type):
                return None
            millis = array.cast(pa.timestamp("ms", tz=kind_type.tz)).cast(pa.int64())
            if millis.null_count < len(millis) and pc.min(millis).as_py() < _FIRST_PLAIN_MS:
                return None
            serial = pc.add(pc.divide(millis.cast(pa.float64()), 86_400_000.0), float(_EPOCH_SERIAL))
            return pc.binary_join_element_wise(
                ref, numbers, f'"{style}><v>', serial.cast(pa.string()), "</v></c>", ""
            )
        if kind == "bool" and pa.types.is_boolean(kind_type):
            flags = pc.if_else(array, "1", "0")
            return pc.binary_join_element_wise(ref, numbers, f'"{style} t="b"><v>', flags, "</v></c>", "")
        return None


def _chart_table(sheet: str, chart: dict[str, Any]) -> dict[str, Any]:
    """Check a summary chart spec; return it with str categories and float (or None) values."""
    kind = chart.get("type", "column")
    if kind not in ("column", "bar", "pie"):
        raise ValueError(f"sheet {sheet!r}: chart type {kind!r} is not column, bar or pie")
    categories = [str(category) for category in chart.get("categories", ())]
    values: list[float | None] = []
    for value in chart.get("values", ()):
        if _is_missing(value):
            values.append(None)
            continue
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"sheet {sheet!r}: chart value {value!r} is not a finite number")
        values.append(number)
    if len(categories) != len(values):
        raise ValueError(f"sheet {sheet!r}: chart has {len(categories)} categories and {len(values)} values")
    return {
        "type": kind,
        "title": str(chart.get("title") or ""),
        "series_name": str(chart.get("series_name") or ""),
        "categories": categories,
        "values": values,
    }
