"""Read the first sheet of an .xlsx file as rows of strings (stdlib only: zip + XML).

UDIAT's labels ship as `DatasetB.xlsx`; this avoids a spreadsheet dependency for one small table.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

from busforge.errors import BadInput

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


def _column_index(ref: str) -> int:
    letters = re.match(r"[A-Z]+", ref)
    index = 0
    for ch in letters[0] if letters else "A":
        index = index * 26 + ord(ch) - ord("A") + 1
    return index - 1


def _text(node) -> str:
    return "".join(t.text or "" for t in node.iter(f"{{{NS['m']}}}t"))


def _number(text: str) -> str:
    # Excel stores 1 as "1" but also 1.0 as "1.0"; names like 000001 become 1 either way.
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() else text


def read_xlsx_rows(path: Path) -> list[list[str]]:
    try:
        with zipfile.ZipFile(path) as book:
            names = set(book.namelist())
            shared: list[str] = []
            if "xl/sharedStrings.xml" in names:
                root = ElementTree.fromstring(book.read("xl/sharedStrings.xml"))
                shared = [_text(si) for si in root.findall("m:si", NS)]
            sheets = sorted(n for n in names if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n))
            if not sheets:
                raise BadInput(f"{path}: no worksheet found; export the sheet as CSV and pass --labels")
            sheet = ElementTree.fromstring(book.read(sheets[0]))
    except (zipfile.BadZipFile, ElementTree.ParseError, KeyError) as err:
        raise BadInput(f"{path}: not a readable .xlsx ({err}); export it as CSV and pass --labels") from None
    rows: list[list[str]] = []
    for row in sheet.iter(f"{{{NS['m']}}}row"):
        cells: dict[int, str] = {}
        for cell in row.findall("m:c", NS):
            kind = cell.get("t")
            value = cell.find("m:v", NS)
            if kind == "s" and value is not None:
                text = shared[int(value.text or 0)]
            elif kind == "inlineStr":
                text = _text(cell)
            elif value is not None and value.text is not None:
                text = value.text if kind == "str" else _number(value.text)
            else:
                text = ""
            cells[_column_index(cell.get("r", "A"))] = text.strip()
        if cells:
            rows.append([cells.get(i, "") for i in range(max(cells) + 1)])
    return rows
