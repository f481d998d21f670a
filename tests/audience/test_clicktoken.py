"""Click tokens: signed, compact, every bit checked."""

from __future__ import annotations

import pytest

from dispatcher.audience.clicktoken import Click, ClickSigner, clicker_hash
from dispatcher.errors import TokenError

KEY = b"k" * 32


def test_a_click_token_carries_campaign_link_variant_and_delivery() -> None:
    signer = ClickSigner([KEY])
    token = signer.sign(7, 3, "B", 123456789)
    assert len(token) == 42 and token.isascii()
    assert signer.verify(token) == Click(7, 3, "B", 123456789)
    assert signer.verify(signer.sign(7, 0, None, 1)).variant is None


def test_an_sms_token_is_short_and_says_so() -> None:
    signer = ClickSigner([KEY])
    token = signer.sign(7, 1, None, 99, short=True)
    assert len(token) == 24
    assert signer.verify(token) == Click(7, 1, None, 99, short=True)


@pytest.mark.parametrize("short", [False, True])
def test_every_altered_character_is_refused(short: bool) -> None:
    signer = ClickSigner([KEY])
    token = signer.sign(7, 3, "A", 42, short=short)
    for i in range(len(token)):
        for c in "AQgw-_":
            altered = token[:i] + c + token[i + 1 :]
            if altered != token:
                with pytest.raises(TokenError):
                    signer.verify(altered)


def test_a_token_of_another_key_or_of_another_kind_is_refused() -> None:
    token = ClickSigner([b"o" * 32]).sign(7, 3, "A", 42)
    with pytest.raises(TokenError):
        ClickSigner([KEY]).verify(token)
    for forged in ("", "x" * 42, "x" * 24, "é" * 42):
        with pytest.raises(TokenError):
            ClickSigner([KEY]).verify(forged)


def test_a_rotated_key_still_verifies_old_tokens() -> None:
    old = ClickSigner([KEY]).sign(7, 3, "A", 42)
    assert ClickSigner([b"n" * 32, KEY]).verify(old).delivery_id == 42


def test_the_signer_keeps_its_keys_out_of_its_repr() -> None:
    assert "kkkk" not in repr(ClickSigner([KEY]))


def test_the_clicker_hash_differs_per_link_and_per_key() -> None:
    a = clicker_hash(KEY, 1, 2, 0)
    assert a != clicker_hash(KEY, 1, 2, 1) != clicker_hash(KEY, 1, 2, None)
    assert a != clicker_hash(b"o" * 32, 1, 2, 0) and len(a) == 32
