"""CSV cells that a spreadsheet would run as a formula are neutralised."""

from __future__ import annotations

import io

import pytest

from dispatcher.spreadsheet import safe_cell, write_csv


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+98912", "'+98912"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("C1001", "C1001"),
        ("a=b", "a=b"),
        (None, ""),
        (7, "7"),
    ],
)
def test_a_formula_cell_gets_a_quote_prefix(cell: object, shown: str) -> None:
    assert safe_cell(cell) == shown


def test_write_csv_neutralises_every_cell() -> None:
    out = io.StringIO()
    write_csv(out, ["id", "at"], [{"id": "=cmd|' /C calc'!A0", "at": "2026-12-01"}])
    assert out.getvalue() == "id,at\n'=cmd|' /C calc'!A0,2026-12-01\n"
