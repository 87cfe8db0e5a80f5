"""append_sheets: sheets spliced into an existing .xlsx package (XlsxWriter's and openpyxl's
layouts), read back with openpyxl: the old parts untouched, the new sheets typed and formatted,
replaced sheets gone, autofilter names pointing at the right sheets."""

from __future__ import annotations

import re
import zipfile
from datetime import datetime

import openpyxl
import pytest

from dataset_ops.inference.workbook import Column, ReportWorkbook, SheetSpec
from dataset_ops.inference.xlsx_append import UnsupportedPackage, append_sheets

LOG = [Column("when", "datetime"), Column("share", "percent"), Column("note"), Column("n", "int")]
ROWS = [["2026-11-05T08:12:33+01:00", 0.25, "=1+1", 7], [None, 0.5, "plain", None]]


def _report(path):
    with ReportWorkbook(path) as book:
        book.add_summary("Resumen", [("Records", 2, "int")], {"categories": ["a", "b"], "values": [1, 2]})
        book.add_sheet(SheetSpec("Data", [Column("id", "int"), Column("name")], [[1, "x"], [2, "y"]]))
        book.add_sheet(SheetSpec("Tail", [Column("id", "int")], [[9]]))
    return path


def _parts(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_sheets_are_added_with_types_and_formats_and_old_parts_untouched(tmp_path):
    path = _report(tmp_path / "r.xlsx")
    before = _parts(path)
    assert append_sheets(path, [SheetSpec("log", LOG, ROWS)]) == {"log": 2}
    after = _parts(path)
    for name in ("xl/worksheets/sheet1.xml", "xl/worksheets/sheet2.xml", "xl/charts/chart1.xml"):
        assert after[name] == before[name]  # copied as they were

    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Resumen", "Data", "Tail", "log"]
    assert book["Resumen"]._charts and book["Data"]["B3"].value == "y"
    ws = book["log"]
    assert [c.value for c in ws[1]] == ["when", "share", "note", "n"] and ws["A1"].font.b
    assert (
        ws["A2"].value == datetime(2026, 11, 5, 7, 12, 33) and ws["A2"].number_format == "yyyy-mm-dd hh:mm:ss"
    )
    assert ws["B2"].value == 0.25 and ws["B2"].number_format == "0.0%"
    assert ws["C2"].value == "=1+1" and ws["C2"].data_type == "s"  # text, never a formula
    assert ws["D2"].value == 7 and ws["A3"].value is None
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == "A1:D3"
    workbook = after["xl/workbook.xml"].decode()
    assert "tabSelected" not in after["xl/worksheets/sheet4.xml"].decode()
    assert 'localSheetId="3" hidden="1">\'log\'!$A$1:$D$3</definedName>' in workbook
    assert [p.name for p in tmp_path.iterdir()] == ["r.xlsx"]  # no work files left


def test_replacing_a_sheet_drops_its_part_and_renumbers_local_names(tmp_path):
    path = _report(tmp_path / "r.xlsx")
    append_sheets(path, [SheetSpec("DATA", [Column("v")], [["new"]])])  # case ignored
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Resumen", "Tail", "DATA"] and book["DATA"]["A2"].value == "new"
    parts = _parts(path)
    assert "xl/worksheets/sheet2.xml" not in parts  # the replaced sheet's part is gone
    names = re.findall(r'localSheetId="(\d+)" hidden="1">([^<]*)<', parts["xl/workbook.xml"].decode())
    assert names == [("1", "Tail!$A$1:$A$2"), ("2", "'DATA'!$A$1:$A$2")]  # Tail moved from 2 to 1
    types = parts["[Content_Types].xml"].decode()
    assert "/xl/worksheets/sheet2.xml" not in types and types.count("worksheet+xml") == 3


def test_an_openpyxl_workbook_and_a_second_append(tmp_path):
    path = tmp_path / "o.xlsx"
    book = openpyxl.Workbook()
    book.active.title = "References"
    book.active.append(["reference_id", "revisar_imagenes"])
    book.save(path)
    append_sheets(path, [SheetSpec("a", LOG, ROWS), SheetSpec("b", LOG, [])])
    append_sheets(path, [SheetSpec("a", LOG, ROWS[:1])])
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["References", "b", "a"]
    assert book["a"].max_row == 2 and book["a"]["A2"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert book["b"].max_row == 1


def test_what_it_cannot_edit_is_refused_and_the_file_kept(tmp_path):
    with pytest.raises(FileNotFoundError):
        append_sheets(tmp_path / "none.xlsx", [SheetSpec("a", LOG, [])])
    path = tmp_path / "odd.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
    with pytest.raises(UnsupportedPackage, match="no part xl/workbook.xml"):
        append_sheets(path, [SheetSpec("a", LOG, [])])
    assert zipfile.ZipFile(path).namelist() == ["[Content_Types].xml"]
    assert [p.name for p in tmp_path.iterdir()] == ["odd.xlsx"]
