"""What a campaign measures: `[tracking]`, `[sms] track_links` and the `[ab]` test.

Parsed from the campaign file's tables; every problem goes to `add(where, reason)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from email.utils import parseaddr
from typing import Any

from dispatcher.controlchars import find_control

AB_KEYS = {"subjects", "froms", "test_share", "decide_after", "winner_by"}
TRACKING_KEYS = {"clicks"}
WINNER_BY = ("clicks", "manual")
VARIANT_NAMES = "ABCD"
_DURATION = re.compile(r"\s*(\d+)\s*([smhd])\s*")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}

Add = Callable[[str, str], None]


@dataclass(frozen=True)
class AbSpec:
    """An A/B test of subjects (and senders): variant i is `subjects[i]`, named "A".."D"."""

    subjects: list[str]
    froms: list[str] | None = None
    test_share: float = 0.2
    decide_after: str = "2h"
    winner_by: str = "clicks"

    @property
    def names(self) -> list[str]:
        return list(VARIANT_NAMES[: len(self.subjects)])

    @property
    def decide_after_seconds(self) -> int:
        return parse_duration(self.decide_after)

    def subject(self, variant: str) -> str:
        return self.subjects[VARIANT_NAMES.index(variant)]

    def sender(self, variant: str) -> str | None:
        return self.froms[VARIANT_NAMES.index(variant)] if self.froms else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> AbSpec | None:
        return cls(**data) if data else None


def parse_duration(text: str) -> int:
    """`"2h"` -> 7200 (s, m, h or d); ValueError otherwise."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 30m, 2h or 1d")
    return int(match.group(1)) * _UNIT[match.group(2)]


def parse_tracking(data: dict[str, Any], add: Add) -> bool:
    """`[tracking] clicks` (default true)."""
    table = data.get("tracking")
    if table is None:
        return True
    if not isinstance(table, dict):
        add("tracking", "must be a table, e.g. [tracking]")
        return True
    for key in table:
        if key not in TRACKING_KEYS:
            add(f"tracking.{key}", "unknown key (expected one of: clicks)")
    clicks = table.get("clicks", True)
    if not isinstance(clicks, bool):
        add("tracking.clicks", "must be true or false")
        return True
    return clicks


def parse_sms_track_links(data: dict[str, Any], add: Add) -> bool:
    """`[sms] track_links` (default false)."""
    table = data.get("sms")
    value = table.get("track_links", False) if isinstance(table, dict) else False
    if not isinstance(value, bool):
        add("sms.track_links", "must be true or false")
        return False
    return value


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(s, str) and s.strip() for s in value)


def parse_ab(data: dict[str, Any], has_email: bool, add: Add) -> AbSpec | None:
    """`[ab]`, validated; None when absent or wrong (each problem added)."""
    table = data.get("ab")
    if table is None:
        return None
    if not isinstance(table, dict):
        add("ab", "must be a table, e.g. [ab]")
        return None
    ok = True
    for key in table:
        if key not in AB_KEYS:
            add(f"ab.{key}", f"unknown key (expected one of: {', '.join(sorted(AB_KEYS))})")
            ok = False
    if not has_email:
        add("ab", 'an A/B test needs the "email" channel (it tests subjects)')
        ok = False
    subjects: list[str] = table.get("subjects")  # type: ignore[assignment]
    if not _strings(subjects) or not 2 <= len(subjects) <= 4:
        add("ab.subjects", "required: a list of 2 to 4 subject lines")
        return None
    for i, subject in enumerate(subjects):
        if found := find_control(subject.replace("\n", " ")):
            add(f"ab.subjects[{i}]", f"a control character ({found}) cannot go into a header")
            ok = False
    froms: list[str] | None = table.get("froms")
    if froms is not None:
        if not _strings(froms) or len(froms) != len(subjects):
            add("ab.froms", f"must be a list of {len(subjects)} addresses, one per subject")
            ok = False
        else:
            for i, sender in enumerate(froms):
                if "@" not in parseaddr(sender)[1] or any(c in sender for c in "\r\n,"):
                    add(f"ab.froms[{i}]", 'must be one address, e.g. "فروشگاه <news@shop.example>"')
                    ok = False
    share = table.get("test_share", 0.2)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 1:
        add("ab.test_share", "must be a number between 0 and 1, e.g. 0.2 (a fifth of the audience)")
        ok = False
    decide_after = table.get("decide_after", "2h")
    try:
        if not isinstance(decide_after, str):
            raise ValueError(f"{decide_after!r} is not a duration such as 30m, 2h or 1d")
        parse_duration(decide_after)
    except ValueError as exc:
        add("ab.decide_after", str(exc))
        ok = False
    winner_by = table.get("winner_by", "clicks")
    if winner_by not in WINNER_BY:
        add("ab.winner_by", 'must be "clicks" or "manual"')
        ok = False
    if not ok:
        return None
    return AbSpec(
        subjects=[s.strip() for s in subjects],
        froms=[s.strip() for s in froms] if froms else None,
        test_share=float(share),
        decide_after=decide_after,
        winner_by=winner_by,
    )
