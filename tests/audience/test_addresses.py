"""Addresses in their normal form, their keys, and shared addresses in an import."""

from __future__ import annotations

from dispatcher.audience.addresses import (
    AddressKeys,
    normal_email,
    shared_addresses,
    with_keys,
)
from dispatcher.store.models import Channel

KEYS = AddressKeys(b"k1")


def test_an_email_compares_case_insensitively_as_a_whole() -> None:
    assert normal_email("Sara@Example.COM") == normal_email("sARA@example.com")
    assert KEYS.email("Sara@Example.COM") == KEYS.email("sara@example.com")


def test_an_idn_domain_compares_equal_to_its_ascii_form() -> None:
    assert normal_email("ali@münchen.de") == "ali@xn--mnchen-3ya.de"
    assert KEYS.email("Ali@MÜNCHEN.de") == KEYS.email("ali@xn--mnchen-3ya.de")


def test_a_key_is_an_hmac_that_hides_the_address_and_depends_on_the_secret() -> None:
    key = KEYS.email("sara@example.com")
    assert key is not None and len(key) == 64 and "sara" not in key
    assert AddressKeys(b"k2").email("sara@example.com") != key
    assert KEYS.of(Channel.SMS, "+989125550001") == KEYS.mobile("+989125550001")
    assert KEYS.email(None) is None and KEYS.mobile("") is None
    assert "k1" not in repr(KEYS)


def test_with_keys_sets_the_key_of_each_address_given() -> None:
    values = with_keys({"email": "a@example.com", "first_name": "x"}, KEYS)
    assert values["email_key"] == KEYS.email("a@example.com") and "mobile_key" not in values
    assert with_keys({"mobile": None}, KEYS) == {"mobile": None, "mobile_key": None}


def test_rows_sharing_an_address_are_reported_with_both_lines_and_masked() -> None:
    shared = shared_addresses(
        [
            (2, "A1", "sara@example.com", "+989125550001"),
            (3, "A2", "SARA@example.com", "+989125550001"),
            (4, "B1", "other@example.com", None),
        ]
    )
    assert [(s.channel, s.first_line, s.line) for s in shared] == [
        (Channel.EMAIL, 2, 3),
        (Channel.SMS, 2, 3),
    ]
    text = str(shared[0])
    assert "line 3 (A2)" in text and "line 2 (A1)" in text and "sara@" not in text
