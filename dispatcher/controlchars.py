"""Control characters: what no header, name or id may carry.

C0 controls (tab, CR and LF included), DEL and the C1 controls. Direction marks and
zero-width joiners (format characters, which Persian text needs) are not controls.
"""

from __future__ import annotations

import re

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")  # a terminal escape sequence (colours...)


def find_control(value: str) -> str | None:
    """The first control character of `value` as `U+000D`, or None."""
    found = CONTROL.search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


def strip_controls(value: str) -> str:
    """`value` without its control characters (and terminal escape sequences whole)."""
    return CONTROL.sub("", _ANSI.sub("", value))
