"""Writing CSV that is safe to open in a spreadsheet.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a formula by Excel,
LibreOffice and Google Sheets (CSV injection); such cells get a leading apostrophe, which spreadsheets show
as text and do not evaluate. See OWASP "CSV Injection".
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import date
from typing import TextIO

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    if value is None:
        text = ""
    elif isinstance(value, date):  # a datetime too
        text = value.isoformat()  # ISO 8601 with its "T" and offset: what importers parse, not str()'s space
    else:
        text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_rows(handle: TextIO, rows: Iterable[Iterable[object]]) -> None:
    """RFC 4180 (CRLF line ends, quoting as needed), every cell neutralised."""
    writer = csv.writer(handle, lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
