"""Normalising what people type (mobiles, emails, opt-in cells, tags) and masking it."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email

from dispatcher.audience.members import normalise_email, normalise_mobile
from dispatcher.audience.normalise import normalise_name, parse_opt_in, parse_tags
from dispatcher.masking import mask_email, mask_mobile, mask_text

# ---------------------------------------------------------------------------- mobiles


@pytest.mark.parametrize(
    "typed",
    [
        "09121234567",
        "9121234567",
        "+989121234567",
        "+98 912 123 4567",
        "0098 912 123 4567",
        "00989121234567",
        "989121234567",
        "98 912 123 4567",
        "+98 0912 123 4567",
        "0912-123-4567",
        "(0912) 123 4567",
        "+98 (912) 123-4567",
        "0912.123.4567",
        "  09121234567  ",
        "۰۹۱۲۱۲۳۴۵۶۷",
        "۰۹۱۲ ۱۲۳ ۴۵۶۷",
        "+۹۸ ۹۱۲ ۱۲۳ ۴۵۶۷",
        "٠٩١٢١٢٣٤٥٦٧",
        "٠٩١٢-١٢٣-٤٥٦٧",
        "۰۹۱۲\u200c۱۲۳\u200f۴۵۶۷",  # zero-width non-joiner and RTL mark from copy-paste
        "0912\u00a0123\u00a04567",  # no-break spaces
    ],
)
def test_every_form_people_type_becomes_e164(typed: str) -> None:
    assert normalise_mobile(typed) == "+989121234567"


@pytest.mark.parametrize("typed", ["09901234567", "09301234567", "09191234567", "09981234567"])
def test_mobiles_of_every_operator_are_accepted(typed: str) -> None:
    assert normalise_mobile(typed) == "+98" + typed[1:]


@pytest.mark.parametrize("landline", ["02188776655", "021 8877 6655", "+98 21 8877 6655"])
def test_landline_is_rejected_as_not_a_mobile(landline: str) -> None:
    with pytest.raises(ValueError, match="landline"):
        normalise_mobile(landline)


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("0912", "not a valid Iranian mobile number"),
        ("091212345678", "not a valid Iranian mobile number"),
        ("0912123456", "not a valid Iranian mobile number"),
        ("09121234567abc", "not a phone number"),
        ("0912 123 4567 ext 2", "not a phone number"),
        ("+", "not a phone number"),
        ("+44 7911 123456", r"not an Iranian number \(country code \+44\)"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_invalid_mobile_is_rejected_with_a_reason(typed: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalise_mobile(typed)


def test_mobile_reason_never_contains_the_number() -> None:
    with pytest.raises(ValueError) as info:
        normalise_mobile("0912123456")
    assert "0912123456" not in str(info.value)


# ----------------------------------------------------------------------------- emails


def test_email_is_stored_in_normalised_form() -> None:
    assert normalise_email("  Ali.Rezaei@Gmail.COM ") == "Ali.Rezaei@gmail.com"


def test_internationalised_email_is_accepted() -> None:
    assert normalise_email("a@xn--mgbh0fb.xn--mgba3a4f16a") == "a@مثال.ایران"
    assert normalise_email("علی@example.com") == "علی@example.com"


@pytest.mark.parametrize(
    "bad",
    [
        "ali",
        "ali@",
        "@gmail.com",
        "ali@gmail",
        "ali@@gmail.com",
        "ali reza@gmail.com",
        "a..b@x.com",
    ],
)
def test_bad_email_is_rejected_with_a_reason(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid email address"):
        normalise_email(bad)


def test_empty_email_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        normalise_email(" ")


@pytest.mark.parametrize(
    "address",
    [
        "user@example.com",
        "User.Name+tag@Example.COM",
        "Postmaster@Example.com",  # a case-insensitive mailbox name: lowercased
        "INFO@shop.example",
        ".dot@example.com",
        "dot.@example.com",
        "a..b@example.com",
        "a@example..com",
        "a@-example.com",
        "a@example.local",
        "a@localhost",
        "a@123.123.123.123",
        "a@xn--mgbh0fb.xn--mgba3a4f16a",
        "a_b%c-d@sub.domain.example.ir",
        "x" * 64 + "@example.com",
        "x" * 65 + "@example.com",
        "x@" + "a" * 63 + ".com",
        "x@" + "a" * 64 + ".com",
        "x@" + ".".join(["a" * 60] * 4) + ".com",
    ],
)
def test_email_fast_path_agrees_with_email_validator(address: str) -> None:
    try:
        expected: str | None = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    try:
        got: str | None = normalise_email(address)
    except ValueError:
        got = None
    assert got == expected


# ------------------------------------------------------------------ cells and names


@pytest.mark.parametrize(
    ("cell", "value"),
    [("1", True), ("0", False), ("", True), (" 0 ", False), ("۰", False), ("١", True)],
)
def test_opt_in_cell_is_1_0_or_empty(cell: str, value: bool) -> None:
    assert parse_opt_in(cell) is value


@pytest.mark.parametrize("cell", ["yes", "no", "true", "false", "2", "-1", "01"])
def test_opt_in_cell_rejects_anything_else(cell: str) -> None:
    with pytest.raises(ValueError, match="must be 1, 0 or empty"):
        parse_opt_in(cell)


def test_tags_are_trimmed_and_empties_and_duplicates_dropped() -> None:
    assert parse_tags(" vip ; ;buyer;;vip; new  customer ") == ("vip", "buyer", "new customer")
    assert parse_tags("") == ()


def test_tag_longer_than_the_database_allows_is_rejected() -> None:
    with pytest.raises(ValueError, match="longer than 64"):
        parse_tags("ok;" + "x" * 65)


def test_name_whitespace_is_collapsed() -> None:
    assert normalise_name("  علی \n  رضایی ") == "علی رضایی"


# ------------------------------------------------------------------------- masking


def test_mask_email_keeps_first_letter_and_domain() -> None:
    assert mask_email("ali.rezaei@gmail.com") == "a***@gmail.com"
    assert mask_email("@gmail.com") == "***@gmail.com"
    assert mask_email("no-at-sign-here") == "no***re"


def test_mask_mobile_keeps_operator_prefix_and_last_four() -> None:
    assert mask_mobile("+989121234567") == "+98912***4567"
    assert mask_mobile("+4420123456") == "+44***56"
    assert mask_mobile("09121234567") == "09***67"


def test_mask_text_never_shows_a_short_value_whole() -> None:
    assert mask_text("0912") == "09***"
    assert mask_text("abc") == "***"
    assert mask_text("") == "***"
