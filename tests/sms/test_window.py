"""The SMS send window: parsing, "is it open", and the next opening, in Tehran time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from dispatcher.errors import ConfigurationError
from dispatcher.settings import SendWindow, Settings, parse_window, parse_zone
from dispatcher.sms.window import describe, is_open, next_opening

TEHRAN = ZoneInfo("Asia/Tehran")
DAYTIME = parse_window("08:00-21:00")


def tehran(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2025, 12, day, hour, minute, second, tzinfo=TEHRAN)


def test_a_window_is_parsed_and_printed_back() -> None:
    assert parse_window("08:00-21:00") == SendWindow(start=480, end=1260)
    assert str(parse_window(" 8:30 - 21:05 ")) == "08:30-21:05"
    assert parse_window("00:00-24:00").always_open


@pytest.mark.parametrize(
    "text", ["8-21", "08:00", "08:00-21:60", "25:00-26:00", "24:00-08:00", "09:00-09:00", ""]
)
def test_a_bad_window_is_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"08:00-21:00|HH:MM|00-23|empty"):
        parse_window(text)


def test_the_window_includes_its_start_and_excludes_its_end() -> None:
    assert DAYTIME.contains(time(8, 0))
    assert DAYTIME.contains(time(20, 59, 59))
    assert not DAYTIME.contains(time(21, 0))
    assert not DAYTIME.contains(time(7, 59, 59))


def test_an_sms_due_at_23_tehran_waits_for_08_the_next_morning() -> None:
    due = tehran(21, 23, 0)
    assert not is_open(due, DAYTIME, TEHRAN)
    assert next_opening(due, DAYTIME, TEHRAN) == tehran(22, 8, 0)


def test_an_sms_due_before_dawn_waits_for_08_the_same_day() -> None:
    assert next_opening(tehran(22, 3, 15), DAYTIME, TEHRAN) == tehran(22, 8, 0)


def test_inside_the_window_the_next_opening_is_now() -> None:
    now = tehran(21, 12, 30)
    assert next_opening(now, DAYTIME, TEHRAN) == now


def test_the_window_is_read_in_its_time_zone_whatever_the_zone_of_now() -> None:
    # 19:00 UTC is 22:30 in Tehran (UTC+03:30): closed, although 19:00 is inside 08-21.
    now = datetime(2025, 12, 21, 19, 0, tzinfo=UTC)
    assert not is_open(now, DAYTIME, TEHRAN)
    assert next_opening(now, DAYTIME, TEHRAN) == datetime(2025, 12, 22, 4, 30, tzinfo=UTC)


def test_a_window_across_midnight() -> None:
    night = parse_window("22:00-06:00")
    assert is_open(tehran(21, 23), night, TEHRAN)
    assert is_open(tehran(22, 5, 59), night, TEHRAN)
    assert not is_open(tehran(22, 6), night, TEHRAN)
    assert next_opening(tehran(22, 7), night, TEHRAN) == tehran(22, 22)


def test_an_always_open_window_never_delays() -> None:
    always = parse_window("00:00-24:00")
    assert next_opening(tehran(21, 3), always, TEHRAN) == tehran(21, 3)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        is_open(datetime(2025, 12, 21, 23, 0), DAYTIME, TEHRAN)


def test_an_opening_is_described_in_local_time() -> None:
    opening = datetime(2025, 12, 22, 4, 30, tzinfo=UTC)
    assert describe(opening, TEHRAN) == "08:00 Asia/Tehran (2025-12-22)"


def test_unknown_zone_is_refused() -> None:
    assert parse_zone("Asia/Tehran").key == "Asia/Tehran"
    with pytest.raises(ValueError, match="IANA"):
        parse_zone("Asia/Esfahan")


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"sms_send_window": "8 to 21"}, "SMS_SEND_WINDOW"),
        ({"sms_timezone": "Tehran"}, "SMS_TIMEZONE"),
    ],
)
def test_bad_settings_fail_at_start_up_naming_the_variable(
    make_settings: Callable[..., Settings], overrides: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        make_settings(**overrides)


def test_the_defaults_are_08_to_21_in_tehran(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    assert str(settings.send_window) == "08:00-21:00"
    assert settings.sms_zone == TEHRAN
    assert settings.sms_optout_footer == "لغو11"
