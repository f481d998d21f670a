"""Template filters that speak Persian: digits, Jalali dates, prices in toman.

Registered on every campaign's Jinja environment (`rendering.make_environment`):
`{{ 1405|fa_digits }}` -> `۱۴۰۵`, `{{ campaign.send_at|jalali("%d %B %Y") }}` ->
`۲۹ آذر ۱۴۰۵`, `{{ 1250000|toman }}` -> `۱٬۲۵۰٬۰۰۰ تومان`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

import jdatetime

TEHRAN = ZoneInfo("Asia/Tehran")
_FA = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
_LATIN = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩٬٫", "01234567890123456789,.")
THOUSANDS = "٬"  # U+066C ARABIC THOUSANDS SEPARATOR
MAX_TOMAN_DIGITS = 15  # a price of 10^15 toman or more is a mistake (or an attack)
# A price as text: digits, grouped by threes or not, and decimals (no exponent).
_PRICE = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", re.ASCII)


def _refuse(name: str, needs: str, value: Any) -> NoReturn:
    str(value)  # an undefined member field raises its own error here, which names it
    raise ValueError(f"{name} needs {needs}, not {value!r}")


def fa_digits(value: Any) -> str:
    """The value (text, a number or a date) as text, its Latin digits written in
    Persian. Raises `ValueError` for anything else (`None`, a list)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal | date):
        _refuse("fa_digits", "text or a number", value)
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
    """A price in toman: whole number, Persian digits, Persian thousands separator.

    Takes a number or its text (Persian or Latin digits, grouped or not). Raises
    `ValueError` for anything else, and for a price of `MAX_TOMAN_DIGITS` digits or more.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        _refuse("toman", "a number", value)
    if isinstance(value, str):
        text = value.strip().translate(_LATIN)
        if not _PRICE.fullmatch(text):
            raise ValueError(f"toman needs a number, not {value!r}")
        value = text.replace(",", "")
    amount = Decimal(value)  # exact: the text was checked, a number converts as it is
    if not amount.is_finite():
        raise ValueError(f"toman needs a number, not {value!r}")
    if amount.adjusted() >= MAX_TOMAN_DIGITS:
        raise ValueError(f"toman: a price of {MAX_TOMAN_DIGITS} digits or more")
    whole = int(amount.to_integral_value())
    grouped = f"{abs(whole):,}".replace(",", THOUSANDS)
    return ("-" if whole < 0 else "") + fa_digits(grouped) + " تومان"


FILTERS: dict[str, Callable[..., str]] = {"fa_digits": fa_digits, "jalali": jalali, "toman": toman}
