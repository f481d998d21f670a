"""Is the SMS send window open now, and when does it open next (`SMS_SEND_WINDOW` in
`SMS_TIMEZONE`, parsed by `settings.SendWindow`)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from dispatcher.settings import SendWindow, Settings


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


def window_closed_until(settings: Settings, now: datetime) -> datetime | None:
    """The window's next opening if an SMS cannot go at `now`; None if it can.

    The same for every SMS transport: the outbox keeps the hours Kavenegar would."""
    window, tz = settings.send_window, settings.sms_zone
    if is_open(now, window, tz):
        return None
    return next_opening(now, window, tz)


def describe(moment: datetime, tz: ZoneInfo) -> str:
    """`"08:00 Asia/Tehran (2025-12-22)"`, for people."""
    local = _local(moment, tz)
    return f"{local:%H:%M} {tz.key} ({local:%Y-%m-%d})"


def _local(now: datetime, tz: ZoneInfo) -> datetime:
    if now.tzinfo is None:
        raise ValueError("an aware datetime is required (naive times are ambiguous)")
    return now.astimezone(tz)
