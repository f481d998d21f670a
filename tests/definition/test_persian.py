"""Persian template filters: digits, Jalali dates, toman; `campaign.send_at` and `today`."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from dispatcher.definition.persian import TEHRAN, fa_digits, jalali, toman
from dispatcher.definition.rendering import CampaignTemplates
from dispatcher.errors import RenderError

SEND_AT = datetime(2026, 12, 20, 6, 30, tzinfo=UTC)  # 10:00 in Tehran, 29 Azar 1405


def render(sms: str, **campaign: object) -> str:
    templates = CampaignTemplates(
        sms=sms,
        campaign={"slug": "s", "name": "حراج", "send_at": SEND_AT, **campaign},
        shop={"name": "فروشگاه"},
    )
    return templates.render_sms({"first_name": "مریم"})


def test_fa_digits_writes_latin_digits_in_persian() -> None:
    assert fa_digits(1405) == "۱۴۰۵"
    assert render("{{ 1405|fa_digits }} و {{ '12-3'|fa_digits }}") == "۱۴۰۵ و ۱۲-۳"


def test_jalali_shows_a_datetime_in_tehran_with_persian_month_and_digits() -> None:
    assert render('{{ campaign.send_at|jalali("%d %B %Y") }}') == "۲۹ آذر ۱۴۰۵"
    assert jalali(SEND_AT, "%H:%M") == "۱۰:۰۰"


def test_jalali_takes_a_date_and_has_a_default_format() -> None:
    assert jalali(date(2026, 3, 21)) == "۱۴۰۵/۰۱/۰۱"


def test_jalali_of_something_else_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="date or datetime"):
        render("{{ 'x'|jalali }}")


def test_toman_groups_thousands_with_the_persian_separator() -> None:
    assert render("{{ 1250000|toman }}") == "۱٬۲۵۰٬۰۰۰ تومان"
    assert toman("۱۲۵۰۰۰") == "۱۲۵٬۰۰۰ تومان"
    assert toman(999.6) == "۱٬۰۰۰ تومان"
    assert toman(0) == "۰ تومان"


def test_toman_of_a_word_is_a_render_error() -> None:
    with pytest.raises(ValueError, match="toman needs a number"):
        toman("گران")


@pytest.mark.parametrize(
    "template",
    [
        '{{ "1e100"|toman }}',
        '{{ "1e1000000"|toman }}',  # once minutes of CPU
        "{{ (10 ** 20)|toman }}",
        '{{ "12 34"|toman }}',  # once ۱٬۲۳۴
        '{{ "1,2,3"|toman }}',
        '{{ "NaN"|toman }}',
        "{{ none|toman }}",
        "{{ true|toman }}",
    ],
)
def test_toman_of_what_is_not_a_plain_price_is_a_render_error(template: str) -> None:
    with pytest.raises(RenderError, match="toman"):
        render(template)


def test_toman_reads_grouped_persian_digits_and_decimals() -> None:
    assert toman("۱٬۲۵۰٬۰۰۰") == toman("1,250,000") == "۱٬۲۵۰٬۰۰۰ تومان"
    assert toman(" -12.4 ") == "-۱۲ تومان"
    assert toman(10**15 - 1) == "۹۹۹٬۹۹۹٬۹۹۹٬۹۹۹٬۹۹۹ تومان"


@pytest.mark.parametrize("template", ["{{ none|fa_digits }}", "{{ [1]|fa_digits }}"])
def test_fa_digits_of_nothing_is_a_render_error_not_the_word_none(template: str) -> None:
    with pytest.raises(RenderError, match="fa_digits needs text or a number"):
        render(template)


def test_templates_see_today_in_the_shops_zone() -> None:
    assert render("{{ today|jalali('%Y/%m/%d') }}") == jalali(datetime.now(TEHRAN).date())
