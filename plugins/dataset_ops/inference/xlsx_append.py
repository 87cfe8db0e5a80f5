"""Add sheets to an existing .xlsx file without loading it: the new sheets are written with
:class:`~dataset_ops.inference.workbook.ReportWorkbook` into a small workbook, and their parts are
spliced into the existing file's zip package, whose other parts are copied as they are.

Why: opening a report workbook with openpyxl to add two sheets holds the whole workbook in memory
(about 60 times its size on disk: 185 MB for 30,000 data rows, gigabytes near Excel's row limit);
this keeps memory at one copy buffer, whatever the size of the file.

Format: Office Open XML SpreadsheetML packages (ECMA-376 Part 1 §18 and Part 2, Open Packaging
Conventions). What changes in the existing package:

* ``xl/workbook.xml``: ``<sheet>`` elements removed (sheets replaced by name) and added at the end;
  ``_xlnm._FilterDatabase`` defined names for the new sheets' autofilters; ``localSheetId`` of the
  other defined names renumbered when a sheet was removed;
* ``xl/_rels/workbook.xml.rels`` and ``[Content_Types].xml``: the new worksheet parts;
* ``xl/styles.xml``: the number formats, fonts, fills, borders and cell formats the new sheets use,
  appended (existing indices never move);
* ``xl/worksheets/sheetN.xml``: the new sheets, their style indices renumbered, not selected.

``docProps/app.xml`` (a cache of sheet titles) is left as it is; Excel and LibreOffice read the
sheet list from ``workbook.xml``. Files that do not look like this (another workbook part name,
a prefixed SpreadsheetML namespace) raise :class:`UnsupportedPackage`, so a caller can fall back
to a full load.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from dataset_ops.inference.workbook import ReportWorkbook, SheetSpec

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_OFFICE_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_WORKSHEET_REL = _OFFICE_REL + "/worksheet"
_WORKSHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
_WORKBOOK, _WORKBOOK_RELS, _STYLES, _TYPES = (
    "xl/workbook.xml",
    "xl/_rels/workbook.xml.rels",
    "xl/styles.xml",
    "[Content_Types].xml",
)
_FIRST_CUSTOM_FORMAT = 164  # number formats below are Excel's built-in ones


class UnsupportedPackage(ValueError):
    """The .xlsx file is laid out in a way :func:`append_sheets` does not edit (the message says how)."""


def append_sheets(path: Path | str, specs: Sequence[SheetSpec]) -> dict[str, int]:
    """Add ``specs`` as sheets at the end of the workbook ``path``, replacing sheets of the same
    names (case ignored), atomically (written next to it, then ``os.replace``).

    :returns: ``{sheet name: data rows}`` of the added sheets.
    :raises FileNotFoundError: no such file.
    :raises UnsupportedPackage: the package layout is not one this function edits.
    :raises ValueError: a bad sheet spec (as :meth:`ReportWorkbook.add_sheet`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such workbook")
    workdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        small = workdir / "new.xlsx"
        with ReportWorkbook(small) as book:
            for spec in specs:
                book.add_sheet(spec)
        added = dict(book.result["sheets"])
        out = workdir / (path.name + ".partial")
        with zipfile.ZipFile(path) as old, zipfile.ZipFile(small) as new:
            _splice(old, new, list(added), out)
        with open(out, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(out, path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return added


def _text(zf: zipfile.ZipFile, name: str) -> str:
    try:
        return zf.read(name).decode("utf-8")
    except KeyError:
        raise UnsupportedPackage(f"{zf.filename}: no part {name}") from None


def _sheets(workbook_xml: str, rels_xml: str) -> list[dict]:
    """``[{"name", "sheet_id", "rid", "part", "element"}]`` in workbook order."""
    rels = {
        m.group("id"): m.group("target")
        for m in re.finditer(
            r'<Relationship\b(?=[^>]*\bId="(?P<id>[^"]+)")(?=[^>]*\bTarget="(?P<target>[^"]+)")[^>]*/>',
            rels_xml,
        )
    }
    sheets = []
    for m in re.finditer(r"<sheet\b[^>]*/>", workbook_xml):
        element = m.group(0)
        name = re.search(r'\bname="([^"]*)"', element)
        rid = re.search(r'\b\w+:id="([^"]*)"', element)
        sheet_id = re.search(r'\bsheetId="(\d+)"', element)
        if not (name and rid and sheet_id) or rid.group(1) not in rels:
            raise UnsupportedPackage(f"sheet element {element} is not understood")
        target = rels[rid.group(1)]
        part = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
        sheets.append(
            {
                "name": _unescape(name.group(1)),
                "sheet_id": int(sheet_id.group(1)),
                "rid": rid.group(1),
                "part": os.path.normpath(part).replace(os.sep, "/"),
                "element": element,
            }
        )
    return sheets


def _unescape(text: str) -> str:
    return ET.fromstring(f"<x>{text}</x>").text or ""


def _splice(old: zipfile.ZipFile, new: zipfile.ZipFile, names: list[str], out: Path) -> None:
    workbook, rels, styles, types = (
        _text(old, part) for part in (_WORKBOOK, _WORKBOOK_RELS, _STYLES, _TYPES)
    )
    if "<sheets>" not in workbook or "</cellXfs>" not in styles:
        raise UnsupportedPackage(f"{old.filename}: prefixed or unusual SpreadsheetML markup")
    sheets = _sheets(workbook, rels)
    wanted = {name.lower() for name in names}
    removed = [s for s in sheets if s["name"].lower() in wanted]
    kept = [s for s in sheets if s["name"].lower() not in wanted]
    dropped_parts = set()
    for sheet in removed:
        workbook = workbook.replace(sheet["element"], "")
        rels = re.sub(rf'<Relationship\b[^>]*\bId="{re.escape(sheet["rid"])}"[^>]*/>', "", rels)
        types = re.sub(rf'<Override\b[^>]*\bPartName="/{re.escape(sheet["part"])}"[^>]*/>', "", types)
        folder, leaf = sheet["part"].rsplit("/", 1)
        dropped_parts |= {sheet["part"], f"{folder}/_rels/{leaf}.rels"}
    workbook = _renumber_defined_names(workbook, sheets, kept)

    new_sheets = _sheets(_text(new, _WORKBOOK), _text(new, _WORKBOOK_RELS))
    style_map = _merge_styles(_text(new, _STYLES), styles)
    styles = style_map.pop("__xml__")
    used_parts = set(old.namelist())
    used_ids = {int(m) for m in re.findall(r'\bId="rId(\d+)"', rels)}
    next_sheet_id = max([s["sheet_id"] for s in sheets] + [0]) + 1
    parts: dict[str, bytes] = {}
    sheet_elements, names_added = [], []
    for position, sheet in enumerate(new_sheets, start=len(kept)):
        number = 1
        while f"xl/worksheets/sheet{number}.xml" in used_parts | set(parts):
            number += 1
        part = f"xl/worksheets/sheet{number}.xml"
        rid = f"rId{max(used_ids | {0}) + 1}"
        used_ids.add(int(rid[3:]))
        xml = _text(new, sheet["part"])
        xml = re.sub(r'\s+tabSelected="1"', "", xml)
        xml = re.sub(
            r'(<(?:c|row)\b[^>]*?\bs=")(\d+)(")', lambda m: f"{m[1]}{style_map[int(m[2])]}{m[3]}", xml
        )
        xml = re.sub(r'(<col\b[^>]*?\bstyle=")(\d+)(")', lambda m: f"{m[1]}{style_map[int(m[2])]}{m[3]}", xml)
        parts[part] = xml.encode("utf-8")
        rels = rels.replace(
            "</Relationships>",
            f'<Relationship Id="{rid}" Type="{_WORKSHEET_REL}" Target="worksheets/sheet{number}.xml"/>'
            "</Relationships>",
        )
        types = types.replace(
            "</Types>", f'<Override PartName="/{part}" ContentType="{_WORKSHEET_TYPE}"/></Types>'
        )
        sheet_elements.append(  # the namespace declared on the element: whatever the root declares
            f'<sheet xmlns:r="{_OFFICE_REL}" name={quoteattr(sheet["name"])} sheetId="{next_sheet_id}" '
            f'r:id="{rid}"/>'
        )
        next_sheet_id += 1
        bounds = re.search(r'<autoFilter\b[^>]*\bref="([A-Z]+)(\d+):([A-Z]+)(\d+)"', xml)
        if bounds:
            quoted = "'" + sheet["name"].replace("'", "''") + "'"
            ref = f"{quoted}!${bounds[1]}${bounds[2]}:${bounds[3]}${bounds[4]}"
            names_added.append(
                f'<definedName name="_xlnm._FilterDatabase" localSheetId="{position}" hidden="1">'
                f"{escape(ref)}</definedName>"
            )
    workbook = workbook.replace("</sheets>", "".join(sheet_elements) + "</sheets>")
    if names_added:
        workbook = workbook.replace("<definedNames/>", "<definedNames></definedNames>")
        if "</definedNames>" in workbook:
            workbook = workbook.replace("</definedNames>", "".join(names_added) + "</definedNames>")
        else:
            workbook = workbook.replace(
                "</sheets>", "</sheets><definedNames>" + "".join(names_added) + "</definedNames>", 1
            )
    parts.update(
        {
            _WORKBOOK: workbook.encode(),
            _WORKBOOK_RELS: rels.encode(),
            _STYLES: styles.encode(),
            _TYPES: types.encode(),
        }
    )

    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in old.infolist():
            if info.filename in dropped_parts or info.filename in parts:
                continue
            entry = _entry(info.filename, info.date_time)
            entry.file_size = info.file_size  # zipfile decides on ZIP64 from it
            with old.open(info) as src, dst.open(entry, "w") as sink:
                shutil.copyfileobj(src, sink, 1 << 20)
        for name, data in parts.items():
            dst.writestr(_entry(name), data)


def _entry(name: str, date_time=(1980, 1, 1, 0, 0, 0)) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _renumber_defined_names(workbook: str, sheets: list[dict], kept: list[dict]) -> str:
    """Drop defined names local to removed sheets, renumber ``localSheetId`` of the others."""
    position = {id(s): i for i, s in enumerate(kept)}
    new_index = {i: position.get(id(s)) for i, s in enumerate(sheets)}

    def fix(m: re.Match) -> str:
        local = re.search(r'\blocalSheetId="(\d+)"', m.group(0))
        if local is None:
            return m.group(0)
        target = new_index.get(int(local.group(1)))
        if target is None:
            return ""
        return m.group(0).replace(local.group(0), f'localSheetId="{target}"', 1)

    return re.sub(r"<definedName\b[^>]*?(?:/>|>.*?</definedName>)", fix, workbook, flags=re.S)


def _merge_styles(new_styles: str, old_styles: str) -> dict:
    """Append to ``old_styles`` the cell formats of ``new_styles`` (with their number formats,
    fonts, fills and borders); return ``{new xf index: old xf index, "__xml__": merged xml}``."""
    ns = {"m": _MAIN}
    ET.register_namespace("", _MAIN)
    source = ET.fromstring(new_styles)

    def children(tag: str) -> list:
        parent = source.find(f"m:{tag}", ns)
        return [] if parent is None else list(parent)

    def fragment(element) -> str:
        text = ET.tostring(element, encoding="unicode")
        return text.replace(f' xmlns="{_MAIN}"', "", 1)

    codes = {int(f.get("numFmtId")): f.get("formatCode") for f in children("numFmts")}
    existing = {
        m.group(2): int(m.group(1))
        for m in re.finditer(r'<numFmt\b[^>]*\bnumFmtId="(\d+)"[^>]*\bformatCode="([^"]*)"', old_styles)
    }
    next_format = max([*existing.values(), _FIRST_CUSTOM_FORMAT - 1]) + 1
    merged = old_styles
    counters = {tag: _count(merged, tag) for tag in ("fonts", "fills", "borders", "cellXfs")}
    fonts, fills, borders = children("fonts"), children("fills"), children("borders")
    mapping: dict = {}
    added: dict[str, list[str]] = {tag: [] for tag in ("numFmts", "fonts", "fills", "borders", "cellXfs")}
    copied: dict[tuple[str, int], int] = {}

    def copy(tag: str, items: list, index: int) -> int:
        key = (tag, index)
        if key not in copied:
            copied[key] = counters[tag]
            counters[tag] += 1
            added[tag].append(fragment(items[index]))
        return copied[key]

    for index, xf in enumerate(children("cellXfs")):
        if index == 0:
            mapping[0] = 0  # the default format of both
            continue
        xf = ET.fromstring(ET.tostring(xf))
        number = int(xf.get("numFmtId", "0"))
        if number >= _FIRST_CUSTOM_FORMAT:
            code = codes[number]
            if code not in existing:
                existing[code] = next_format
                added["numFmts"].append(f'<numFmt numFmtId="{next_format}" formatCode={quoteattr(code)}/>')
                next_format += 1
            xf.set("numFmtId", str(existing[code]))
        for attr, tag, items in (
            ("fontId", "fonts", fonts),
            ("fillId", "fills", fills),
            ("borderId", "borders", borders),
        ):
            value = int(xf.get(attr, "0"))
            xf.set(attr, str(copy(tag, items, value) if value else 0))
        xf.set("xfId", "0")
        mapping[index] = counters["cellXfs"]
        counters["cellXfs"] += 1
        added["cellXfs"].append(fragment(xf))
    for tag in ("fonts", "fills", "borders", "cellXfs"):
        if added[tag]:
            merged = _append_children(merged, tag, added[tag], counters[tag])
    if added["numFmts"]:
        if re.search(r"<numFmts\b", merged):
            total = _count(merged, "numFmts") + len(added["numFmts"])
            merged = _append_children(merged, "numFmts", added["numFmts"], total)
        else:  # the first child of styleSheet (ECMA-376 §18.8.39 order)
            block = f'<numFmts count="{len(added["numFmts"])}">' + "".join(added["numFmts"]) + "</numFmts>"
            merged = re.sub(r"(<styleSheet\b[^>]*>)", lambda m: m[1] + block, merged, count=1)
    mapping["__xml__"] = merged
    return mapping


def _count(xml: str, tag: str) -> int:
    m = re.search(rf'<{tag}\b[^>]*\bcount="(\d+)"', xml)
    if m is None:
        raise UnsupportedPackage(f"styles part: no <{tag} count=...>")
    return int(m.group(1))


def _append_children(xml: str, tag: str, fragments: list[str], count: int) -> str:
    """Append ``fragments`` to the element ``tag`` (written ``<tag ...>...</tag>`` or empty,
    ``<tag .../>``) and set its ``count``."""
    if f"</{tag}>" in xml:
        xml = xml.replace(f"</{tag}>", "".join(fragments) + f"</{tag}>", 1)
    else:
        empty = re.search(rf"<{tag}\b([^>]*?)\s*/>", xml)
        if empty is None:
            raise UnsupportedPackage(f"styles part: no <{tag}> element")
        xml = (
            xml[: empty.start()]
            + f"<{tag}{empty[1]}>"
            + "".join(fragments)
            + f"</{tag}>"
            + xml[empty.end() :]
        )
    return re.sub(rf'(<{tag}\b[^>]*\bcount=")\d+(")', rf"\g<1>{count}\g<2>", xml, count=1)
