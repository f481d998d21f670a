"""Click tokens (`/c/{token}`): a campaign's link, its A/B variant and the delivery,
HMAC-signed with keys derived from the unsubscribe keys (rotatable the same way).

Two layouts, told apart by their length and version byte: the email one (a 128-bit
tag) and a short one for SMS (24 characters, a 56-bit tag: still beyond guessing
through a web server). No member id, address or URL is inside: the URL is looked up
in the campaign by the link's index.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass

from dispatcher.errors import TokenError

VERSION_EMAIL = 4
VERSION_SMS = 5
_LABEL = b"dispatcher click token"
_LAYOUT = struct.Struct(">BIBBQ")  # version, campaign, link, variant, delivery
_SHORT = struct.Struct(">BIBBI")
_TAGS = {VERSION_EMAIL: 16, VERSION_SMS: 7}
_SHAPES = {VERSION_EMAIL: _LAYOUT, VERSION_SMS: _SHORT}
# characters of each layout (base64url, no padding) -> its version
_BY_CHARS = {
    len(base64.urlsafe_b64encode(bytes(s.size + _TAGS[v])).rstrip(b"=")): v
    for v, s in _SHAPES.items()
}
VARIANTS = "ABCD"
SMS_TOKEN_CHARS = 24


@dataclass(frozen=True, slots=True)
class Click:
    """What a genuine click token says. `variant`: "A".."D", or None (no A/B test)."""

    campaign_id: int
    link: int
    variant: str | None
    delivery_id: int
    short: bool = False


def _variant_code(variant: str | None) -> int:
    return 0 if variant is None else VARIANTS.index(variant) + 1


class ClickSigner:
    """Signs with the first key, verifies with any. Keys never appear in its repr."""

    __slots__ = ("_keys",)

    def __init__(self, keys: list[bytes]) -> None:
        if not keys or any(len(k) < 16 for k in keys):
            raise ValueError("unsubscribe keys must be at least 16 bytes each")
        # Each derived key's HMAC state, keyed once and copied per token (a third of the
        # cost of `hmac.digest`, which also looks the hash up by name on every call).
        self._keys = tuple(
            hmac.new(hmac.digest(k, _LABEL, "sha256"), digestmod=hashlib.sha256) for k in keys
        )

    def __repr__(self) -> str:
        return f"ClickSigner(keys=<{len(self._keys)} hidden>)"

    def sign(
        self,
        campaign_id: int,
        link: int,
        variant: str | None,
        delivery_id: int,
        *,
        short: bool = False,
    ) -> str:
        version = VERSION_SMS if short else VERSION_EMAIL
        payload = _SHAPES[version].pack(
            version, campaign_id, link, _variant_code(variant), delivery_id
        )
        tag = _tag(self._keys[0], payload)[: _TAGS[version]]
        return base64.urlsafe_b64encode(payload + tag).rstrip(b"=").decode("ascii")

    def verify(self, token: str) -> Click:
        """The claims of a genuine click token; TokenError for anything else."""
        version = _BY_CHARS.get(len(token))
        if version is None or not token.isascii():
            raise TokenError("malformed token")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise TokenError("malformed token") from None
        shape, size = _SHAPES[version], _TAGS[version]
        if len(raw) != shape.size + size:
            raise TokenError("malformed token")
        payload, tag = raw[: shape.size], raw[shape.size :]
        canonical = base64.urlsafe_b64encode(raw).rstrip(b"=") == token.encode("ascii")
        ok = False
        for key in self._keys:  # every key, always: no early exit
            ok |= hmac.compare_digest(_tag(key, payload)[:size], tag)
        if not (ok and canonical):
            raise TokenError("bad signature")
        got, campaign_id, link, code, delivery_id = shape.unpack(payload)
        if got != version or code > len(VARIANTS):
            raise TokenError("unknown token version")
        return Click(
            campaign_id=campaign_id,
            link=link,
            variant=VARIANTS[code - 1] if code else None,
            delivery_id=delivery_id,
            short=version == VERSION_SMS,
        )


def _tag(key: hmac.HMAC, payload: bytes) -> bytes:
    mac = key.copy()
    mac.update(payload)
    return mac.digest()


def click_url(base_url: str, token: str) -> str:
    return f"{base_url}/c/{token}"


def dedupe_key(suppression_key: bytes) -> bytes:
    """The key of the unique-clicker hashes, from SUPPRESSION_KEY (never rotated, so a
    campaign's hashes stay comparable for as long as they are kept)."""
    return hmac.digest(suppression_key, b"dispatcher click dedupe", "sha256")


def clicker_hash(key: bytes, campaign_id: int, delivery_id: int, link: int | None) -> str:
    """The keyed hash that counts a delivery once per link (`link`) and once per campaign
    (None); nothing of it leads back to the delivery without the key."""
    what = f"{campaign_id}:{delivery_id}:{'*' if link is None else link}".encode()
    return hmac.new(key, what, hashlib.sha256).hexdigest()[:32]
