"""The hand-built MIME is what the standard library parses back, headers included."""

from __future__ import annotations

import email
from email import policy

import pytest

from dispatcher.email.mime import MessageHeaders, build_message


def build(**kw: str) -> email.message.EmailMessage:
    headers = MessageHeaders.for_campaign(
        mail_from="فروشگاه نمونه <news@shop.example>", slug="yalda-1405", campaign_name="حراج یلدا"
    )
    raw = build_message(
        headers,
        to=kw.get("to", "maryam@example.com"),
        subject=kw.get("subject", "مریم عزیز، حراج یلدا شروع شد"),
        text="سلام مریم\nلغو: https://shop.example/u/T",
        html='<html lang="fa" dir="rtl"><p>سلام مریم</p></html>',
        delivery_id=42,
        unsubscribe_url="https://shop.example/u/T",
    )
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def test_headers_round_trip_through_the_standard_parser() -> None:
    msg = build()
    assert msg["From"] == "فروشگاه نمونه <news@shop.example>"
    assert msg["To"] == "maryam@example.com"
    assert msg["Subject"] == "مریم عزیز، حراج یلدا شروع شد"
    assert msg["Message-ID"] == "<delivery-42@shop.example>"
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
    with pytest.raises(ValueError):
        build(to="a@example.com\r\nBcc: everyone@example.com")
