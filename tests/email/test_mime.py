"""The hand-built MIME is what the standard library parses back, headers included."""

from __future__ import annotations

import email
from email import policy

import pytest

from dispatcher.email.mime import MessageHeaders, build_message
from dispatcher.email.verp import delivery_of_message_id, signed_message_id
from dispatcher.errors import MessageError, PermanentDeliveryError

KEY = b"test-suppression-key"


def raw_message(**kw: str) -> bytes:
    headers = MessageHeaders.for_campaign(
        mail_from=kw.get("mail_from", "فروشگاه نمونه <news@shop.example>"),
        slug="yalda-1405",
        campaign_name=kw.get("name", "حراج یلدا"),
        key=KEY,
    )
    return build_message(
        headers,
        to=kw.get("to", "maryam@example.com"),
        subject=kw.get("subject", "مریم عزیز، حراج یلدا شروع شد"),
        text="سلام مریم\nلغو: https://shop.example/u/T",
        html='<html lang="fa" dir="rtl"><p>سلام مریم</p></html>',
        delivery_id=42,
        unsubscribe_url="https://shop.example/u/T",
    )


def header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def build(**kw: str) -> email.message.EmailMessage:
    raw = raw_message(**kw)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def test_headers_round_trip_through_the_standard_parser() -> None:
    msg = build()
    assert msg["From"] == "فروشگاه نمونه <news@shop.example>"
    assert msg["To"] == "maryam@example.com"
    assert msg["Subject"] == "مریم عزیز، حراج یلدا شروع شد"
    assert msg["Message-ID"] == signed_message_id(KEY, 42, "shop.example")
    assert msg["List-Id"] == "حراج یلدا <yalda-1405.shop.example>"
    assert msg["List-Unsubscribe"] == "<https://shop.example/u/T>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Date"] is not None and msg["Date"].datetime is not None


def test_body_is_multipart_alternative_text_first_then_html() -> None:
    msg = build()
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().startswith("سلام مریم")
    assert 'dir="rtl"' in parts[1].get_content()


def test_a_long_persian_subject_is_folded_and_decodes_intact() -> None:
    subject = "حراج بزرگ شب یلدا با تخفیف‌های ویژه برای اعضای خبرنامه " * 4
    assert build(subject=subject)["Subject"] == subject


def test_a_line_break_in_the_recipient_is_refused() -> None:
    with pytest.raises(PermanentDeliveryError):
        build(to="a@example.com\r\nBcc: everyone@example.com")


@pytest.mark.parametrize(
    "field",
    [
        {"name": "Promo\r\nBcc: everyone@example.com"},
        {"subject": "Hello\r\nBcc: everyone@example.com"},
        {"subject": "Ali\x07\x1b[31m"},
        {"mail_from": "Shop\r\nBcc: x@example.com <news@shop.example>"},
        {"to": "a@example.com\x00"},
    ],
)
def test_a_control_character_in_a_header_value_fails_the_message(field: dict[str, str]) -> None:
    with pytest.raises(MessageError, match="control character"):
        raw_message(**field)


def test_a_long_ascii_subject_is_folded_within_78_characters() -> None:
    subject = " ".join(f"word{n}" for n in range(300))  # about 2,100 characters
    raw = raw_message(subject=subject)
    assert max(len(line) for line in header_lines(raw)) <= 78
    assert build(subject=subject)["Subject"] == subject


def test_a_subject_with_a_1200_letter_name_is_folded_and_decodes_intact() -> None:
    subject = "A" * 1200 + ", the Yalda sale has started"
    raw = raw_message(subject=subject)
    assert max(len(line) for line in header_lines(raw)) <= 78
    assert build(subject=subject)["Subject"] == subject


def test_long_display_names_are_folded_too() -> None:
    name = "Yalda " * 40
    mail_from = "The Example Shop " * 10 + "<news@shop.example>"
    raw = raw_message(name=name.strip(), mail_from=mail_from)
    assert max(len(line) for line in header_lines(raw)) <= 78
    msg = build(name=name.strip(), mail_from=mail_from)
    assert msg["List-Id"] == f"{name.strip()} <yalda-1405.shop.example>"
    assert msg["From"].addresses[0].addr_spec == "news@shop.example"


def test_a_short_ascii_subject_stays_on_one_line() -> None:
    assert b"\r\nSubject: Yalda sale\r\n" in raw_message(subject="Yalda sale")


def test_an_international_domain_is_idna_encoded_in_the_to_header() -> None:
    assert build(to="user@münchen.de")["To"] == "user@xn--mnchen-3ya.de"
    assert build(to="user@xn--mnchen-3ya.de")["To"] == "user@xn--mnchen-3ya.de"


def test_the_message_id_is_signed_over_the_delivery_and_the_domain() -> None:
    message_id = signed_message_id(KEY, 42, "shop.example")
    assert delivery_of_message_id(message_id, KEY) == 42
    assert delivery_of_message_id(message_id.upper(), KEY) == 42  # case does not matter
    assert delivery_of_message_id(message_id, b"another key") is None
    other_domain = message_id.replace("@shop.example", "@attacker.example")
    assert delivery_of_message_id(other_domain, KEY) is None
    assert delivery_of_message_id("<delivery-42@shop.example>", KEY) is None
    ref, tag = message_id[3:].split("@")[0].split(".")
    flipped = tag[:-1] + ("0" if tag[-1] != "0" else "1")
    assert delivery_of_message_id(f"<d.{ref}.{flipped}@shop.example>", KEY) is None
