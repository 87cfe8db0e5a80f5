"""ReportWorkbook: real .xlsx files written with XlsxWriter (constant_memory), read back with openpyxl."""

from __future__ import annotations

import math
import zipfile
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from dataset_ops.inference.workbook import (
    EXCEL_MAX_CELL_CHARS,
    Column,
    ReportWorkbook,
    SheetSpec,
    continuation_name,
)

COLUMNS = [
    Column("id", "int"),
    Column("score", "float"),
    Column("share", "percent"),
    Column("seen", "datetime"),
]


def _rows(n: int):
    for i in range(n):
        yield (i, i / 4, i / 100, datetime(2024, 1, 1) + timedelta(hours=i))


def _write(path: Path, *specs: SheetSpec, **kwargs) -> dict:
    with ReportWorkbook(path, **kwargs) as book:
        for spec in specs:
            book.add_sheet(spec)
    return book.result


def _sheet_xml(path: Path, number: int) -> str:
    with zipfile.ZipFile(path) as zf:
        return zf.read(f"xl/worksheets/sheet{number}.xml").decode()


def _only_the_file(folder: Path, name: str) -> None:
    """The folder holds the finished file and nothing else: no .partial, no work folder."""
    assert sorted(p.name for p in folder.iterdir()) == [name]


def test_typed_cells_get_their_values_and_number_formats(tmp_path):
    path = tmp_path / "r.xlsx"
    rows = [
        (1_234_567, 3.14159, 0.256, datetime(2024, 5, 1, 10, 30, 15)),
        (np.int64(7), np.float32(2.5), np.float64(1.0), "2024-05-01T10:00:00+02:00"),
        (True, Decimal("1.5"), "0.5", datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=-3)))),
        ("12", 1e300, 0, pd.Timestamp("2024-06-30 23:59:59", tz="UTC")),
        ("n/a", None, None, np.datetime64("2023-02-03T04:05:06")),
        (0, -0.5, 1.5, date(2024, 2, 29)),
        (1, 2.0, 0.1, "not a date"),
    ]
    result = _write(path, SheetSpec("Datos", COLUMNS, rows))
    assert result == {
        "path": str(path),
        "bytes": path.stat().st_size,
        "sheets": {"Datos": 7},
        "truncated_cells": 0,
    }

    ws = openpyxl.load_workbook(path)["Datos"]
    values = [[c.value for c in row] for row in ws.iter_rows(min_row=2)]
    assert values == [
        [1_234_567, 3.14159, 0.256, datetime(2024, 5, 1, 10, 30, 15)],
        [7, 2.5, 1, datetime(2024, 5, 1, 8)],  # aware ISO string -> UTC, naive
        [1, 1.5, 0.5, datetime(2024, 5, 1, 15)],  # bool -> 1, Decimal and numeric text -> numbers
        [12, 1e300, 0, datetime(2024, 6, 30, 23, 59, 59)],
        ["n/a", None, None, datetime(2023, 2, 3, 4, 5, 6)],  # not a number: kept as text
        [0, -0.5, 1.5, datetime(2024, 2, 29)],
        [1, 2, 0.1, "not a date"],
    ]
    formats = [c.number_format for c in ws[2]]
    assert formats == ["#,##0", "#,##0.00", "0.0%", "yyyy-mm-dd hh:mm:ss"]
    assert ws["A6"].data_type == "s" and ws["D8"].data_type == "s"
    assert [c.number_format for c in ws[8]][:3] == ["#,##0", "#,##0.00", "0.0%"]


def test_decimals_and_bool_text_and_mark_columns(tmp_path):
    path = tmp_path / "r.xlsx"
    columns = [
        Column("f", "float", decimals=0),
        Column("p", "percent", decimals=2),
        Column("ok", "bool"),
        Column("nota", "text"),
        Column("revisar", "mark"),
    ]
    rows = [
        (1.5, 0.12345, True, "plain", None),
        (2.0, 0.5, np.bool_(False), 42, "x"),
        (None, None, None, None, ""),
    ]
    _write(path, SheetSpec("Datos", columns, rows))
    ws = openpyxl.load_workbook(path)["Datos"]
    assert [c.value for c in ws[2]] == [1.5, 0.12345, True, "plain", None]
    assert [c.value for c in ws[3]] == [2, 0.5, False, "42", "x"]
    assert [c.value for c in ws[4]] == [None] * 5
    assert ws["A2"].number_format == "#,##0" and ws["B2"].number_format == "0.00%"
    for cell in ("E2", "E3", "E4"):  # blank or not, the mark column is filled so users see where to mark
        assert ws[cell].fill.fgColor.rgb == "FFFFF2CC"
    assert ws["D2"].fill.fill_type is None


def test_header_is_frozen_filtered_formatted_and_columns_have_widths(tmp_path):
    path = tmp_path / "r.xlsx"
    columns = [*COLUMNS[:3], Column("a header that is quite a bit longer than its values", "datetime")]
    _write(path, SheetSpec("Datos", columns, _rows(5)))
    ws = openpyxl.load_workbook(path)["Datos"]
    assert [c.value for c in ws[1]] == [c.name for c in columns]
    header = ws["A1"]
    assert header.font.b and header.alignment.wrap_text and header.fill.fgColor.rgb == "FFDDEBF7"
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:D6"
    widths = {letter: ws.column_dimensions[letter].width for letter in "ABCD"}
    # XlsxWriter stores widths with Excel's pixel padding (+0.71 for these sizes)
    assert widths["A"] == pytest.approx(12, abs=1)  # int default
    assert widths["B"] == pytest.approx(14, abs=1)  # float default
    assert widths["C"] == pytest.approx(10, abs=1)  # percent default
    assert widths["D"] == pytest.approx(len(columns[3].name) + 2, abs=1)  # from the header


def test_widths_from_sampled_values_are_bounded_and_explicit_widths_win(tmp_path):
    path = tmp_path / "r.xlsx"
    columns = [Column("t"), Column("long"), Column("n", "int"), Column("fixed", width=33)]
    rows = [("abcdefghijklmnopqrst", "y" * 500, 123_456_789_012_345, "z")]
    _write(path, SheetSpec("Datos", columns, rows))
    dims = openpyxl.load_workbook(path)["Datos"].column_dimensions
    assert dims["A"].width == pytest.approx(22, abs=1)  # 20 characters + 2
    assert dims["B"].width == pytest.approx(60, abs=1)  # capped
    assert dims["C"].width == pytest.approx(len("123,456,789,012,345") + 2, abs=1)
    assert dims["D"].width == pytest.approx(33, abs=1)


def test_summary_sheet_comes_first_with_kpis_and_a_chart_built_from_its_cells(tmp_path):
    path = tmp_path / "r.xlsx"
    chart = {
        "type": "column",
        "title": "Imágenes por etiqueta",
        "categories": ["car", "person", "dog"],
        "values": [120, 45, np.int64(7)],
        "series_name": "imágenes",
    }
    kpis = [("Imágenes", 172, "int"), ("Precisión", 0.934, "percent"), ("Modelo", "v3", "text")]
    with ReportWorkbook(path) as book:
        book.add_summary("Resumen", kpis, chart)
        book.add_sheet(SheetSpec("Datos", COLUMNS, _rows(3)))
    assert book.result["sheets"] == {"Resumen": 3, "Datos": 3}

    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Resumen", "Datos"]
    ws = wb["Resumen"]
    assert [[c.value for c in row] for row in ws.iter_rows(max_col=2)] == [
        ["Imágenes", 172],
        ["Precisión", 0.934],
        ["Modelo", "v3"],
        [None, None],
        ["Imágenes por etiqueta", "imágenes"],
        ["car", 120],
        ["person", 45],
        ["dog", 7],
    ]
    assert ws["A1"].font.b and ws["B1"].number_format == "#,##0" and ws["B2"].number_format == "0.0%"

    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert {"xl/charts/chart1.xml", "xl/drawings/drawing1.xml"} <= names
        assert "../drawings/drawing1.xml" in zf.read("xl/worksheets/_rels/sheet1.xml.rels").decode()
        chart_xml = zf.read("xl/charts/chart1.xml").decode()
    assert "<c:barChart>" in chart_xml and '<c:barDir val="col"/>' in chart_xml
    assert "Resumen!$A$6:$A$8" in chart_xml and "Resumen!$B$6:$B$8" in chart_xml
    assert "Imágenes por etiqueta" in chart_xml


def test_summary_pie_chart_and_chart_errors(tmp_path):
    path = tmp_path / "r.xlsx"
    pie = {"type": "pie", "title": "", "categories": ["a", "b"], "values": [1, 3], "series_name": "n"}
    with ReportWorkbook(path) as book:
        book.add_summary("Resumen", [], pie)
        with pytest.raises(ValueError, match="2 categories and 1 values"):
            book.add_summary("Otro", [], {**pie, "values": [1]})
    with zipfile.ZipFile(path) as zf:
        assert "<c:pieChart>" in zf.read("xl/charts/chart1.xml").decode()
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Resumen"]  # the refused summary left no sheet behind
    ws = wb["Resumen"]  # no KPIs: the chart's table starts at A1
    assert [row[:2] for row in ws.iter_rows(values_only=True)] == [("Categoría", "n"), ("a", 1), ("b", 3)]

    with pytest.raises(ValueError, match="chart type 'line'"), ReportWorkbook(tmp_path / "x.xlsx") as book:
        book.add_summary("Resumen", [], {**pie, "type": "line"})
    with pytest.raises(ValueError, match="not a finite number"), ReportWorkbook(tmp_path / "x.xlsx") as book:
        book.add_summary("Resumen", [], {**pie, "values": [1, "many"]})
    with pytest.raises(ValueError, match="KPI"), ReportWorkbook(tmp_path / "x.xlsx") as book:
        book.add_summary("Resumen", [("a", 1, "mark")])
    assert not (tmp_path / "x.xlsx").exists()


def test_rows_beyond_the_limit_continue_on_numbered_sheets(tmp_path):
    path = tmp_path / "r.xlsx"
    with ReportWorkbook(path, max_rows_per_sheet=10) as book:
        names = book.add_sheet(SheetSpec("Datos", COLUMNS, _rows(25)))
        assert book.sheets == {"Datos": 9, "Datos_2": 9, "Datos_3": 7}
    assert names == ["Datos", "Datos_2", "Datos_3"]
    assert book.result["sheets"] == {"Datos": 9, "Datos_2": 9, "Datos_3": 7}

    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == names
    ids = []
    for name, rows in zip(names, (9, 9, 7), strict=True):
        ws = wb[name]
        assert ws.max_row == rows + 1
        assert [c.value for c in ws[1]] == ["id", "score", "share", "seen"]
        assert ws.freeze_panes == "A2"
        assert ws.auto_filter.ref == f"A1:D{rows + 1}"
        assert ws.column_dimensions["A"].width == pytest.approx(12, abs=1)
        ids += [row[0] for row in ws.iter_rows(min_row=2, values_only=True)]
    assert ids == list(range(25))


@pytest.mark.parametrize(("count", "expected"), [(0, {"Datos": 0}), (18, {"Datos": 9, "Datos_2": 9})])
def test_no_empty_continuation_sheet(tmp_path, count, expected):
    path = tmp_path / "r.xlsx"
    assert (
        _write(path, SheetSpec("Datos", COLUMNS, _rows(count)), max_rows_per_sheet=10)["sheets"] == expected
    )
    ws = openpyxl.load_workbook(path)["Datos"]
    assert ws.auto_filter.ref == f"A1:D{min(count, 9) + 1}"


def test_continuation_names_stay_within_31_characters(tmp_path):
    name = "R" * 31
    assert continuation_name(name, 2) == "R" * 29 + "_2"
    assert continuation_name(name, 12) == "R" * 28 + "_12"
    path = tmp_path / "r.xlsx"
    result = _write(path, SheetSpec(name, COLUMNS, _rows(5)), max_rows_per_sheet=3)
    assert list(result["sheets"]) == [name, "R" * 29 + "_2", "R" * 29 + "_3"]
    assert openpyxl.load_workbook(path).sheetnames == list(result["sheets"])


@pytest.mark.parametrize("name", ["x" * 32, "a/b", "a:b", "[a]", "a?", "a*", "a\\b", "", "'quoted'"])
def test_bad_sheet_names_are_refused_naming_them(tmp_path, name):
    with pytest.raises(ValueError, match="sheet name") as err, ReportWorkbook(tmp_path / "r.xlsx") as book:
        book.add_sheet(SheetSpec(name, COLUMNS, _rows(1)))
    assert repr(name) in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_duplicate_sheet_names_ignoring_case_are_refused(tmp_path):
    with ReportWorkbook(tmp_path / "r.xlsx") as book:
        book.add_summary("Resumen", [("n", 1, "int")])
        with pytest.raises(ValueError, match="already used"):
            book.add_sheet(SheetSpec("RESUMEN", COLUMNS, _rows(1)))


def test_formula_and_url_looking_text_stays_text(tmp_path):
    path = tmp_path / "r.xlsx"
    texts = ["=SUM(A1:A2)", '=HYPERLINK("http://x")', "http://example.com/a", "+1", "007", "  spaced  "]
    _write(path, SheetSpec("=Datos", [Column("=texto")], [(t,) for t in texts]))
    ws = openpyxl.load_workbook(path)["=Datos"]
    assert [row[0] for row in ws.iter_rows(values_only=True)] == ["=texto", *texts]
    xml = _sheet_xml(path, 1)
    assert "<f>" not in xml and "<hyperlink" not in xml
    assert xml.count('t="inlineStr"') == len(texts) + 1


def test_missing_values_are_blank_cells(tmp_path):
    path = tmp_path / "r.xlsx"
    columns = [*COLUMNS, Column("t"), Column("b", "bool")]
    rows = [
        (None, float("nan"), np.nan, None, None, None),
        (pd.NA, np.float32("nan"), pd.NA, pd.NaT, pd.NA, pd.NA),
        (np.nan, None, float("nan"), np.datetime64("NaT"), float("nan"), np.nan),
        (1, 2.0, 0.5, datetime(2024, 1, 1), "", False),
    ]
    _write(path, SheetSpec("Datos", columns, rows))
    ws = openpyxl.load_workbook(path)["Datos"]
    values = [list(row) for row in ws.iter_rows(min_row=2, values_only=True)]
    assert values[:3] == [[None] * 6] * 3
    assert values[3] == [1, 2, 0.5, datetime(2024, 1, 1), None, False]
    assert '<c r="A2"' not in _sheet_xml(path, 1)  # no cell at all, not an empty string


def test_infinity_is_text_not_a_crash_nor_a_formula(tmp_path):
    path = tmp_path / "r.xlsx"
    rows = [(math.inf,), (-math.inf,), (np.float32("inf"),), ("-inf",), (10**400,)]
    _write(path, SheetSpec("Datos", [Column("f", "float")], rows))
    ws = openpyxl.load_workbook(path)["Datos"]
    assert [row[0] for row in ws.iter_rows(min_row=2, values_only=True)] == [
        "inf",
        "-inf",
        "inf",
        "-inf",
        "1" + "0" * 400,
    ]
    assert "<f>" not in _sheet_xml(path, 1)


def test_text_longer_than_excel_allows_is_cut_with_a_note_and_counted(tmp_path):
    path = tmp_path / "r.xlsx"
    long_ascii = "a" * 40_000
    emoji = "😀" * 20_000  # 20,000 characters but 40,000 UTF-16 units
    just_fits = "b" * EXCEL_MAX_CELL_CHARS
    result = _write(
        path, SheetSpec("Datos", [Column("t"), Column("m", "mark")], [(long_ascii, emoji), (just_fits, "")])
    )
    assert result["truncated_cells"] == 2
    ws = openpyxl.load_workbook(path)["Datos"]
    cut = ws["A2"].value
    assert len(cut) == EXCEL_MAX_CELL_CHARS and cut.startswith("a" * 32_000)
    assert cut.endswith(" … [truncated: 40000 chars]")
    cut_emoji = ws["B2"].value
    assert len(cut_emoji.encode("utf-16-le")) // 2 <= EXCEL_MAX_CELL_CHARS
    assert cut_emoji.startswith("😀" * 16_000) and cut_emoji.endswith(" … [truncated: 40000 chars]")
    assert ws["A3"].value == just_fits


def test_an_exception_in_the_rows_leaves_no_file_and_no_work_files(tmp_path):
    path = tmp_path / "r.xlsx"

    def rows():
        yield from _rows(300)  # beyond the width sample, so rows were already written
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"), ReportWorkbook(path) as book:
        book.add_summary("Resumen", [("n", 1, "int")])
        book.add_sheet(SheetSpec("Datos", COLUMNS, rows()))
    assert list(tmp_path.iterdir()) == []
    assert book.result is None


def test_a_row_of_the_wrong_length_is_refused(tmp_path):
    with (
        pytest.raises(ValueError, match="row 2 has 3 values for 4 columns"),
        ReportWorkbook(tmp_path / "r.xlsx") as b,
    ):
        b.add_sheet(SheetSpec("Datos", COLUMNS, [(1, 2.0, 0.1, None), (1, 2.0, 0.1)]))
    assert list(tmp_path.iterdir()) == []


def test_the_file_is_at_its_path_only_after_close(tmp_path):
    first = tmp_path / "reports" / "new.xlsx"  # a missing folder is created
    with ReportWorkbook(first) as book:
        book.add_sheet(SheetSpec("Datos", COLUMNS, _rows(2)))
        assert not first.exists()
    _only_the_file(first.parent, "new.xlsx")

    path = tmp_path / "out" / "report.xlsx"
    path.parent.mkdir()
    path.write_bytes(b"previous report")  # replaced in one step, never half-written
    book = ReportWorkbook(path)
    book.add_sheet(SheetSpec("Datos", COLUMNS, _rows(50)))
    assert path.read_bytes() == b"previous report"
    result = book.close()
    assert result["bytes"] == path.stat().st_size > 1000
    assert openpyxl.load_workbook(path)["Datos"].max_row == 51
    _only_the_file(path.parent, "report.xlsx")
    assert book.close() is result
    with pytest.raises(RuntimeError, match="already closed"):
        book.add_sheet(SheetSpec("Más", COLUMNS, []))


def test_abort_and_empty_workbooks_write_nothing(tmp_path):
    book = ReportWorkbook(tmp_path / "a.xlsx")
    book.add_sheet(SheetSpec("Datos", COLUMNS, _rows(3)))
    book.abort()
    with pytest.raises(ValueError, match="no sheet added"), ReportWorkbook(tmp_path / "b.xlsx"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_column_and_workbook_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="kind 'money'"):
        Column("x", "money")
    with pytest.raises(ValueError, match="max_rows_per_sheet"):
        ReportWorkbook(tmp_path / "r.xlsx", max_rows_per_sheet=1_048_577)
    with pytest.raises(ValueError, match="columns"), ReportWorkbook(tmp_path / "r.xlsx") as book:
        book.add_sheet(SheetSpec("Datos", [], []))
    assert list(tmp_path.iterdir()) == []


def test_utc_conversion_of_aware_datetimes(tmp_path):
    path = tmp_path / "r.xlsx"
    moment = datetime(2024, 3, 31, 1, 30, tzinfo=UTC)
    rows = [(moment.astimezone(timezone(timedelta(hours=5, minutes=30))),), ("2024-03-31T01:30:00Z",)]
    _write(path, SheetSpec("Datos", [Column("t", "datetime")], rows))
    ws = openpyxl.load_workbook(path)["Datos"]
    assert ws["A2"].value == ws["A3"].value == datetime(2024, 3, 31, 1, 30)


# -- Arrow batches (add_batches): the same cells as add_sheet, cell by cell ----------------------
ARROW_COLUMNS = [
    Column("name", "text"),
    Column("count", "int"),
    Column("score", "float"),
    Column("share", "percent"),
    Column("seen", "datetime"),
    Column("flag", "bool"),
]


def _arrow_batch(rows: list[tuple]):
    import pyarrow as pa

    names, count, score, share, seen, flag = zip(*rows, strict=True)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(names, pa.string()),
            pa.array(count, pa.int64()),
            pa.array(score, pa.float64()),
            pa.array(share, pa.float64()),
            pa.array(seen, pa.timestamp("ms", tz="UTC")),
            pa.array(flag, pa.bool_()),
        ],
        names=[c.name for c in ARROW_COLUMNS],
    )


T0 = datetime(2026, 11, 20, 12, 0, 0, 123000, tzinfo=UTC)
PLAIN = [
    ("a&<b>\"'", 1, 0.1, 0.25, T0, True),
    ("", None, None, None, None, None),
    (None, -5, 1e20, 1.0, T0 + timedelta(days=3, seconds=7), False),
    ("  leading and trailing  ", 2**40, 0.30000000000000004, 0.0, T0 - timedelta(days=400), True),
    ("ünïcødé ✓ 漢字", 0, -2.5, 0.999, T0, None),
    ("<r>not rich</r>", 7, 3.0, 0.5, T0, False),
]
#: Each needs the cell-by-cell path: a control character, NaN, a date before 1900-03-01.
ODD = [
    [("ctrl\x01char", 1, 0.5, 0.5, T0, True)],
    [("nan", 1, math.nan, 0.5, T0, True)],
    [("old", 1, 0.5, 0.5, datetime(1899, 12, 31, tzinfo=UTC), True)],
]


def _cells(path: Path) -> dict[str, list[list[tuple]]]:
    """Every sheet's cells as (value, number_format, data_type), read back with openpyxl."""
    book = openpyxl.load_workbook(path)
    out = {}
    for ws in book.worksheets:
        out[ws.title] = [[(c.value, c.number_format, c.data_type) for c in row] for row in ws.iter_rows()]
    book.close()
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12)
    if isinstance(a, datetime) and isinstance(b, datetime):
        return abs(a - b) < timedelta(milliseconds=1)
    return a == b


@pytest.mark.parametrize("cap", [None, 4])
def test_arrow_batches_give_the_cells_of_the_cell_by_cell_path(tmp_path, cap, monkeypatch):
    from dataset_ops.inference import workbook

    batches = [_arrow_batch(PLAIN), _arrow_batch(PLAIN[:2])] + [_arrow_batch(rows) for rows in ODD]
    kwargs = {"max_rows_per_sheet": cap} if cap else {}
    by_cell = []
    original = workbook._ArrowRows._write_cells

    def counting(self, batch, first_row):
        by_cell.append(batch.num_rows)
        return original(self, batch, first_row)

    monkeypatch.setattr(workbook._ArrowRows, "_write_cells", counting)
    with ReportWorkbook(tmp_path / "arrow.xlsx", **kwargs) as book:
        names = book.add_batches("Data", ARROW_COLUMNS, batches)
    rows = [row for batch in batches for row in zip(*(c.to_pylist() for c in batch.columns), strict=True)]
    _write(tmp_path / "cells.xlsx", SheetSpec("Data", ARROW_COLUMNS, rows), **kwargs)

    assert by_cell == [1, 1, 1]  # only the three odd batches went cell by cell
    fast, slow = _cells(tmp_path / "arrow.xlsx"), _cells(tmp_path / "cells.xlsx")
    assert list(fast) == list(slow) == names
    assert len(names) == (1 if cap is None else math.ceil(len(rows) / 3))
    for name in names:
        assert len(fast[name]) == len(slow[name])
        for fast_row, slow_row in zip(fast[name], slow[name], strict=True):
            for f, s in zip(fast_row, slow_row, strict=True):
                assert _same(f[0], s[0]) and f[1:] == s[1:], (name, fast_row, slow_row)
    first = fast[names[0]]
    assert first[1][0] == ("a&<b>\"'", "General", "s") and first[2][0][0] is None  # "" is blank
    assert first[1][4][0] == datetime(2026, 11, 20, 12, 0, 0, 123000)
    assert first[1][4][1] == "yyyy-mm-dd hh:mm:ss" and first[1][5] == (True, "General", "b")
    if cap is None:
        assert first[4][0][0] == "  leading and trailing  " and first[6][0][0] == "<r>not rich</r>"
        xml = _sheet_xml(tmp_path / "arrow.xlsx", 1)
        assert '<dimension ref="A1:F12"/>' in xml and '<autoFilter ref="A1:F12"/>' in xml
