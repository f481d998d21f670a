"""The legal hours for promotional SMS: `SMS_SEND_WINDOW` in `SMS_TIMEZONE`.

A window is `HH:MM-HH:MM`, local time, start included, end excluded: `08:00-21:00`
is open from 08:00:00 to 20:59:59. A window whose end is before its start crosses
midnight (`22:00-06:00`); `00:00-24:00` is always open. Times are wall-clock times
in the zone (zoneinfo), so a change of UTC offset moves the window with the clock.

What happens to an SMS due outside the window is the actor's business (see
`dispatcher.sms.hold`); this module only answers "is it open?" and "when does it
open next?".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY = 24 * 60
_WINDOW = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


@dataclass(frozen=True, slots=True)
class SendWindow:
    """Open from `start` to `end` (minutes after local midnight; `end` may be 1440)."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"

    @property
    def always_open(self) -> bool:
        return (self.end - self.start) % DAY == 0

    def contains(self, local: time) -> bool:
        """True when the local wall-clock time `local` is inside the window."""
        if self.always_open:
            return True
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    @property
    def opens_at(self) -> time:
        return time(self.start // 60, self.start % 60)


def parse_window(text: str) -> SendWindow:
    """`"08:00-21:00"` -> SendWindow; raises ValueError with the reason."""
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a window such as 08:00-21:00 (HH:MM-HH:MM)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise ValueError(f"{text!r}: hours are 00-23 (24:00 only as the end), minutes 00-59")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"{text!r} is empty; use 00:00-24:00 to send at any hour")
    return SendWindow(start=start, end=end)


def parse_zone(name: str) -> ZoneInfo:
    """An IANA time zone by name (`Asia/Tehran`); raises ValueError for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a known IANA time zone such as Asia/Tehran") from None


def is_open(now: datetime, window: SendWindow, tz: ZoneInfo) -> bool:
    """True when `now` (an aware datetime) falls inside the window in zone `tz`."""
    return window.contains(_local(now, tz).time())


def next_opening(now: datetime, window: SendWindow, tz: ZoneInfo) -> datetime:
    """The earliest moment at or after `now` when the window is open, in zone `tz`.

    `now` itself when the window is open; otherwise the next local `start`, today or
    tomorrow.
    """
    local = _local(now, tz)
    if window.contains(local.time()):
        return local
    day: date = local.date()
    opening = datetime.combine(day, window.opens_at, tzinfo=tz)
    if opening <= local:
        opening = datetime.combine(day + timedelta(days=1), window.opens_at, tzinfo=tz)
    return opening


def describe(moment: datetime, tz: ZoneInfo) -> str:
    """`"08:00 Asia/Tehran (2025-12-22)"`, for people."""
    local = _local(moment, tz)
    return f"{local:%H:%M} {tz.key} ({local:%Y-%m-%d})"


def _local(now: datetime, tz: ZoneInfo) -> datetime:
    if now.tzinfo is None:
        raise ValueError("an aware datetime is required (naive times are ambiguous)")
    return now.astimezone(tz)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
