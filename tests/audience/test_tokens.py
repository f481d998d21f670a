"""Unsubscribe tokens: genuine ones verify, everything else is refused, keys rotate."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import string
import struct
from collections.abc import Callable

import pytest

from dispatcher.audience.tokens import TOKEN_CHARS, TokenClaims, TokenSigner
from dispatcher.errors import TokenError
from dispatcher.settings import Settings
from dispatcher.store.models import Channel

NEW = b"new-key-0123456789abcdef"
OLD = b"old-key-0123456789abcdef"
ALPHABET = string.ascii_letters + string.digits + "-_"


def forge(key: bytes, version: int, code: int, member_id: int) -> str:
    """A token built by hand, correctly signed with `key`."""
    payload = struct.pack(">BBQ", version, code, member_id)
    tag = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(payload + tag).rstrip(b"=").decode()


@pytest.mark.parametrize("channel", list(Channel))
def test_a_signed_token_verifies_to_its_member_and_channel(channel: Channel) -> None:
    signer = TokenSigner([NEW])
    token = signer.sign(123456789, channel)
    assert len(token) == TOKEN_CHARS
    assert token.isascii() and set(token) <= set(ALPHABET)  # safe in a URL path as is
    assert signer.verify(token) == TokenClaims(member_id=123456789, channel=channel)


def test_tokens_name_members_not_addresses() -> None:
    signer = TokenSigner([NEW])
    assert signer.sign(1, Channel.EMAIL) != signer.sign(2, Channel.EMAIL)
    assert signer.sign(1, Channel.EMAIL) != signer.sign(1, Channel.SMS)
    assert signer.sign(1, Channel.EMAIL) == signer.sign(1, Channel.EMAIL)  # deterministic


def test_a_token_signed_with_an_older_key_still_verifies_after_rotation() -> None:
    before = TokenSigner([OLD])
    old_token = before.sign(42, Channel.EMAIL)
    after = TokenSigner([NEW, OLD])
    assert after.verify(old_token) == TokenClaims(42, Channel.EMAIL)


def test_new_tokens_are_signed_with_the_newest_key() -> None:
    token = TokenSigner([NEW, OLD]).sign(42, Channel.EMAIL)
    assert TokenSigner([NEW]).verify(token).member_id == 42
    with pytest.raises(TokenError):
        TokenSigner([OLD]).verify(token)


def test_a_retired_key_no_longer_verifies() -> None:
    old_token = TokenSigner([OLD]).sign(42, Channel.EMAIL)
    with pytest.raises(TokenError):
        TokenSigner([NEW]).verify(old_token)


def test_the_secret_setting_holds_several_keys_newest_first(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(unsubscribe_secret=f" {NEW.decode()} , {OLD.decode()} ,")
    assert settings.unsubscribe_keys() == [NEW, OLD]
    old_token = TokenSigner([OLD]).sign(7, Channel.SMS)
    assert TokenSigner(settings.unsubscribe_keys()).verify(old_token) == TokenClaims(7, Channel.SMS)


def test_changing_any_character_of_a_token_is_refused() -> None:
    signer = TokenSigner([NEW, OLD])
    token = signer.sign(987654321, Channel.EMAIL)
    accepted = []
    for i, original in enumerate(token):
        for c in ALPHABET + "+/=.~ %\x00é":
            if c != original:
                tampered = token[:i] + c + token[i + 1 :]
                try:
                    signer.verify(tampered)
                except TokenError:
                    continue
                accepted.append(tampered)
    assert accepted == []


def test_flipping_any_bit_of_a_token_is_refused() -> None:
    signer = TokenSigner([NEW])
    raw = bytearray(base64.urlsafe_b64decode(signer.sign(5, Channel.EMAIL) + "="))
    for byte in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[byte] ^= 1 << bit
            token = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
            with pytest.raises(TokenError):
                signer.verify(token)


def test_a_truncated_or_extended_token_is_refused() -> None:
    signer = TokenSigner([NEW])
    token = signer.sign(5, Channel.EMAIL)
    for n in range(len(token)):
        with pytest.raises(TokenError):
            signer.verify(token[:n])
    for suffix in ("A", "=", "==", token):
        with pytest.raises(TokenError):
            signer.verify(token + suffix)


@pytest.mark.parametrize(
    "junk", ["", "sample-token", "../../etc/passwd", "٠" * TOKEN_CHARS, "\x00" * TOKEN_CHARS]
)
def test_junk_is_refused(junk: str) -> None:
    with pytest.raises(TokenError):
        TokenSigner([NEW]).verify(junk)


def test_an_unknown_channel_code_is_refused_even_when_correctly_signed() -> None:
    signer = TokenSigner([NEW])
    assert signer.verify(forge(NEW, 1, 2, 9)) == TokenClaims(9, Channel.SMS)  # the forge is right
    for code in (0, 3, 255):
        with pytest.raises(TokenError):
            signer.verify(forge(NEW, 1, code, 9))


def test_an_unknown_version_is_refused_even_when_correctly_signed() -> None:
    with pytest.raises(TokenError):
        TokenSigner([NEW]).verify(forge(NEW, 2, 1, 9))


def test_verification_checks_every_key_whatever_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No early exit: the same work for a genuine token, a forged one, and any key."""
    signer = TokenSigner([NEW, OLD, b"third-key-0123456789"])
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    genuine_new = signer.sign(1, Channel.EMAIL)
    genuine_old = TokenSigner([OLD]).sign(1, Channel.EMAIL)
    forged = genuine_new[:-3] + ("AAA" if not genuine_new.endswith("AAA") else "BBA")
    for token in (genuine_new, genuine_old, forged):
        calls.clear()
        with contextlib.suppress(TokenError):
            signer.verify(token)
        assert len(calls) == 3


def test_the_repr_hides_the_keys() -> None:
    signer = TokenSigner([NEW, OLD])
    shown = repr(signer) + str(signer)
    assert "2 hidden" in shown
    assert NEW.decode() not in shown and OLD.decode() not in shown


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenSigner([b"short"])
    with pytest.raises(ValueError):
        TokenSigner([])


def test_a_token_carries_the_campaign_and_old_tokens_keep_verifying() -> None:
    signer = TokenSigner([NEW])
    token = signer.sign(42, Channel.EMAIL, campaign_id=7)
    assert len(token) == 40 and set(token) <= set(ALPHABET)
    assert signer.verify(token) == TokenClaims(member_id=42, channel=Channel.EMAIL, campaign_id=7)
    old = forge(NEW, 1, 1, 42)  # a version 1 token, in mail sent before
    assert signer.verify(old) == TokenClaims(member_id=42, channel=Channel.EMAIL, campaign_id=None)


def test_a_campaign_token_that_was_tampered_with_is_refused() -> None:
    signer = TokenSigner([NEW])
    raw = bytearray(base64.urlsafe_b64decode(signer.sign(42, Channel.SMS, campaign_id=7) + "=="))
    raw[13] ^= 1  # another campaign
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(TokenError):
        signer.verify(tampered)
    with pytest.raises(TokenError):
        signer.verify(signer.sign(42, Channel.SMS, campaign_id=7)[:-5])  # truncated to 35
