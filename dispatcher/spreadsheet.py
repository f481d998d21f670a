"""CSV that a spreadsheet opens safely: every CSV the dispatcher writes goes through here.

A cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return would run as a
formula in Excel, LibreOffice or Google Sheets (CSV injection); it gets a `'` prefix,
which those show as text.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """The cell as text, with a `'` before a leading formula character."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv(stream: TextIO, fieldnames: list[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A header row and the rows, every cell neutralised (`safe_cell`)."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([safe_cell(name) for name in fieldnames])
    for row in rows:
        writer.writerow([safe_cell(row.get(name)) for name in fieldnames])
