"""When a campaign is due: reading a send time a person wrote, and showing it back.

A send time is accepted as

* ISO 8601 with an offset, `2026-12-20T10:00:00+03:30` (the campaign file's `send_at`);
* a local date and time without an offset, `2026-12-20 10:00`, read in `SMS_TIMEZONE`
  (default `Asia/Tehran`), the zone the shop and its members live in;
* the same in the Jalali (Solar Hijri) calendar, `1405-09-29 10:00`: a year before 1700
  can only be Jalali, so no flag is needed. Persian and Arabic digits are accepted.

Every send time is stored as an aware UTC datetime; `describe` shows it back in the
local zone in both calendars, which is what an operator in Tehran reads.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import jdatetime

from dispatcher.errors import InputError

JALALI_BEFORE = 1700  # a year below this is Jalali (Gregorian 1700 is Jalali 1078)
_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_LOCAL = re.compile(
    r"(?P<y>\d{4})[-/](?P<m>\d{1,2})[-/](?P<d>\d{1,2})"
    r"(?:[T ](?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?)?"
)


def parse_send_at(text: str, zone: ZoneInfo) -> datetime:
    """A send time as written by a person -> an aware datetime in UTC.

    Raises InputError naming the accepted forms when `text` is none of them.
    """
    raw = text.strip().translate(_DIGITS)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        parsed = None
    if parsed is not None and parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    match = _LOCAL.fullmatch(raw)
    if match is None:
        raise InputError(
            f"{text!r} is not a send time: use 2026-12-20T10:00:00+03:30, "
            f"'2026-12-20 10:00' ({zone.key}) or Jalali '1405-09-29 10:00'"
        )
    y, m, d = int(match["y"]), int(match["m"]), int(match["d"])
    hh, mm, ss = int(match["H"] or 0), int(match["M"] or 0), int(match["S"] or 0)
    try:
        if y < JALALI_BEFORE:
            local = jdatetime.datetime(y, m, d, hh, mm, ss).togregorian()
        else:
            local = datetime(y, m, d, hh, mm, ss)
    except ValueError as exc:
        raise InputError(f"{text!r} is not a valid date and time: {exc}") from None
    return local.replace(tzinfo=zone).astimezone(UTC)


def future_send_at(text: str, zone: ZoneInfo, *, what: str = "send_at") -> datetime:
    """A send time a person wrote, which must be in the future: InputError otherwise
    (a mistyped year must not send at once). `campaign send --at` and the console."""
    when = parse_send_at(text, zone)
    if when <= datetime.now(UTC):
        raise InputError(
            f"{what} {text} is {describe(when, zone)}, which has passed: nothing was "
            "recorded. Give a time in the future, or --now to send at once."
        )
    return when


def as_utc(moment: datetime) -> datetime:
    """A datetime read back from the database (naive on SQLite) as aware UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def jalali(moment: datetime, zone: ZoneInfo) -> str:
    """`1405-09-29 10:00` for the moment in `zone`."""
    local = as_utc(moment).astimezone(zone)
    return jdatetime.datetime.fromgregorian(datetime=local.replace(tzinfo=None)).strftime(
        "%Y-%m-%d %H:%M"
    )


def describe(moment: datetime, zone: ZoneInfo) -> str:
    """`2026-12-20 10:00 (1405-09-29 10:00) Asia/Tehran`, for people."""
    local = as_utc(moment).astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} ({jalali(moment, zone)}) {zone.key}"
