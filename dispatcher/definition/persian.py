"""Template filters that speak Persian: digits, Jalali dates, prices in toman.

Registered on every campaign's Jinja environment (`rendering.make_environment`):
`{{ 1405|fa_digits }}` -> `۱۴۰۵`, `{{ campaign.send_at|jalali("%d %B %Y") }}` ->
`۲۹ آذر ۱۴۰۵`, `{{ 1250000|toman }}` -> `۱٬۲۵۰٬۰۰۰ تومان`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import jdatetime

TEHRAN = ZoneInfo("Asia/Tehran")
_FA = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
_LATIN = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩٬,", "01234567890123456789  ")
THOUSANDS = "٬"  # U+066C ARABIC THOUSANDS SEPARATOR


def fa_digits(value: Any) -> str:
    """The value as text, its Latin digits written in Persian."""
    return str(value).translate(_FA)


def jalali(value: date | datetime, fmt: str = "%Y/%m/%d", *, zone: ZoneInfo = TEHRAN) -> str:
    """A date or datetime in the Jalali calendar, Persian month names and digits.

    An aware datetime is shown in `zone` (the shop's); a naive one is taken as local.
    """
    if isinstance(value, datetime):
        local = value.astimezone(zone).replace(tzinfo=None) if value.tzinfo else value
        shown = jdatetime.datetime.fromgregorian(datetime=local, locale="fa_IR")
    elif isinstance(value, date):
        shown = jdatetime.date.fromgregorian(date=value, locale="fa_IR")
    else:
        raise TypeError(f"jalali needs a date or datetime, not {type(value).__name__}")
    return fa_digits(shown.strftime(fmt))


def toman(value: Any) -> str:
    """A price in toman: whole number, Persian digits, Persian thousands separator."""
    try:
        amount = Decimal(str(value).translate(_LATIN).replace(" ", "").strip())
    except InvalidOperation:
        raise ValueError(f"toman needs a number, not {value!r}") from None
    whole = int(amount.to_integral_value())
    grouped = f"{abs(whole):,}".replace(",", THOUSANDS)
    return ("-" if whole < 0 else "") + fa_digits(grouped) + " تومان"


FILTERS: dict[str, Callable[..., str]] = {"fa_digits": fa_digits, "jalali": jalali, "toman": toman}
