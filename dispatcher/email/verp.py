"""VERP: an envelope sender per message that names its delivery, for bounces.

With `BOUNCE_ADDRESS=bounces@shop.example` a delivery's envelope sender is
`bounces+REF@shop.example`, REF = the delivery id in base 36, a dash, and 40 bits of
HMAC-SHA256 of it (under `SUPPRESSION_KEY`): short, signed, no personal data. Mail
systems send a bounce to that address; `delivery_of` reads the delivery back.
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
    return hmac.new(key, b"verp:" + ref.encode(), hashlib.sha256).hexdigest()[:_TAG_HEX]


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


@functools.lru_cache(maxsize=4)
def _plain_sender(mail_from: str) -> str:
    return parseaddr(mail_from)[1]


def envelope_sender(settings: Settings, delivery_id: int) -> str:
    """The envelope sender of a delivery: VERP with BOUNCE_ADDRESS, else MAIL_FROM's
    address."""
    if settings.bounce_address:
        return verp_address(settings.bounce_address, settings.suppression_key_bytes(), delivery_id)
    return _plain_sender(settings.mail_from or "")
