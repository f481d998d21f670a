"""Signed references to a delivery in the mail we send, read back from returned mail.

- VERP: with `BOUNCE_ADDRESS=bounces@shop.example` a delivery's envelope sender is
  `bounces+REF@shop.example`, REF = the delivery id in base 36, a dash, and 40 bits of
  HMAC-SHA256 of it (under `SUPPRESSION_KEY`); `delivery_of` reads the delivery back.
- Message-ID: `<d.REF.TAG@domain>`, TAG = 64 bits of HMAC-SHA256 of REF and the
  domain; `delivery_of_message_id` reads it back. Short, signed, no personal data.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from email.utils import parseaddr

from dispatcher.settings import Settings

_TAG_HEX = 10
_REF = re.compile(rf"([0-9a-z]{{1,13}})-([0-9a-f]{{{_TAG_HEX}}})")


def _tag(key: bytes, ref: str) -> str:
    mac = _keyed(key, b"verp:").copy()
    mac.update(ref.encode())
    return mac.hexdigest()[:_TAG_HEX]


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes, label: bytes) -> hmac.HMAC:
    """HMAC-SHA256 under `key` over `label` so far, its key schedule done once (copied
    per message)."""
    return hmac.new(key, label, hashlib.sha256)


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def verp_address(bounce_address: str, key: bytes, delivery_id: int) -> str:
    """`local+REF@domain` for one delivery."""
    local, _, domain = bounce_address.rpartition("@")
    ref = _base36(delivery_id)
    return f"{local}+{ref}-{_tag(key, ref)}@{domain}"


def delivery_of(address: str, bounce_address: str, key: bytes) -> int | None:
    """The delivery id a VERP address names, if it is ours and its tag verifies."""
    local, _, domain = bounce_address.lower().rpartition("@")
    got_local, _, got_domain = address.strip().strip("<>").lower().rpartition("@")
    if got_domain != domain or not got_local.startswith(local + "+"):
        return None
    found = _REF.fullmatch(got_local[len(local) + 1 :])
    if found is None or not hmac.compare_digest(found[2], _tag(key, found[1])):
        return None
    return int(found[1], 36)


_MID_TAG_HEX = 16
_MESSAGE_ID = re.compile(rf"<d\.([0-9a-z]{{1,13}})\.([0-9a-f]{{{_MID_TAG_HEX}}})@([^<>\s@]+)>")


def _mid_tag(key: bytes, ref: str, domain: str) -> str:
    mac = _keyed(key, b"message-id:").copy()
    mac.update(f"{ref}@{domain.lower()}".encode())
    return mac.hexdigest()[:_MID_TAG_HEX]


def signed_message_id(key: bytes, delivery_id: int, domain: str) -> str:
    """`<d.REF.TAG@domain>`: the Message-ID of a delivery's email."""
    ref = _base36(delivery_id)
    return f"<d.{ref}.{_mid_tag(key, ref, domain)}@{domain}>"


def delivery_of_message_id(message_id: str, key: bytes) -> int | None:
    """The delivery a Message-ID names, if it is in our signed form and its tag (over
    the id and the domain) verifies; None for anything else, `<delivery-N@...>` too."""
    found = _MESSAGE_ID.fullmatch(message_id.strip().lower())
    if found is None:
        return None
    ref, tag, domain = found[1], found[2], found[3]
    if not hmac.compare_digest(tag, _mid_tag(key, ref, domain)):
        return None
    return int(ref, 36)


@functools.lru_cache(maxsize=4)
def _plain_sender(mail_from: str) -> str:
    return parseaddr(mail_from)[1]


def envelope_sender(settings: Settings, delivery_id: int) -> str:
    """The envelope sender of a delivery: VERP with BOUNCE_ADDRESS, else MAIL_FROM's
    address."""
    if settings.bounce_address:
        return verp_address(settings.bounce_address, settings.suppression_key_bytes(), delivery_id)
    return _plain_sender(settings.mail_from or "")
