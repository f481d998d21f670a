"""Unsubscribe and web-copy tokens: opaque, HMAC-signed, rotatable, no address inside;
verified in constant time against every configured key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass

from dispatcher.errors import TokenError
from dispatcher.store.models import Channel

VERSION = 1
VERSION_CAMPAIGN = 2
VERSION_VIEW = 3
TAG_BYTES = 16
_PAYLOAD = struct.Struct(">BBQ")
_PAYLOAD_CAMPAIGN = struct.Struct(">BBQI")
TOKEN_BYTES = _PAYLOAD.size + TAG_BYTES
TOKEN_CHARS = 35  # len(urlsafe_b64encode(26 bytes)) without padding
TOKEN_CAMPAIGN_CHARS = 40  # 30 bytes
_LAYOUTS = {TOKEN_CHARS: _PAYLOAD, TOKEN_CAMPAIGN_CHARS: _PAYLOAD_CAMPAIGN}
_VERSION_CHARS = {
    VERSION: TOKEN_CHARS,
    VERSION_CAMPAIGN: TOKEN_CAMPAIGN_CHARS,
    VERSION_VIEW: TOKEN_CAMPAIGN_CHARS,
}
_CHANNEL_CODES = {Channel.EMAIL: 1, Channel.SMS: 2}
_CODE_CHANNELS = {v: k for k, v in _CHANNEL_CODES.items()}


@dataclass(frozen=True, slots=True)
class TokenClaims:
    member_id: int
    channel: Channel
    campaign_id: int | None = None


class TokenSigner:
    """Signs with the first key, verifies with any. Keys never appear in its repr."""

    __slots__ = ("_keys",)

    def __init__(self, keys: list[bytes]) -> None:
        if not keys or any(len(k) < 16 for k in keys):
            raise ValueError("unsubscribe keys must be at least 16 bytes each")
        # Each key's HMAC state, keyed once and copied per token: a copy costs a third of
        # `hmac.digest`, which also looks the hash up by name on every call.
        self._keys = tuple(hmac.new(k, digestmod=hashlib.sha256) for k in keys)

    def __repr__(self) -> str:
        return f"TokenSigner(keys=<{len(self._keys)} hidden>)"

    def _tag(self, key: hmac.HMAC, payload: bytes) -> bytes:
        mac = key.copy()
        mac.update(payload)
        return mac.digest()[:TAG_BYTES]

    def sign(self, member_id: int, channel: Channel, campaign_id: int | None = None) -> str:
        """An unsubscribe token (with the campaign it came with, when given)."""
        if campaign_id is None:
            payload = _PAYLOAD.pack(VERSION, _CHANNEL_CODES[channel], member_id)
        else:
            payload = _PAYLOAD_CAMPAIGN.pack(
                VERSION_CAMPAIGN, _CHANNEL_CODES[channel], member_id, campaign_id
            )
        return self._finish(payload)

    def sign_view(self, member_id: int, campaign_id: int) -> str:
        """A token for the web copy of a campaign's email to a member (`/v/{token}`)."""
        channel = _CHANNEL_CODES[Channel.EMAIL]
        return self._finish(_PAYLOAD_CAMPAIGN.pack(VERSION_VIEW, channel, member_id, campaign_id))

    def _finish(self, payload: bytes) -> str:
        raw = payload + self._tag(self._keys[0], payload)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def verify(self, token: str) -> TokenClaims:
        """Return the claims of a genuine unsubscribe token; raise TokenError otherwise."""
        return self._claims(token, (VERSION, VERSION_CAMPAIGN))

    def verify_view(self, token: str) -> TokenClaims:
        """Return the claims of a genuine web-copy token; raise TokenError otherwise."""
        return self._claims(token, (VERSION_VIEW,))

    def _claims(self, token: str, versions: tuple[int, ...]) -> TokenClaims:
        layout = _LAYOUTS.get(len(token))
        if layout is None or not token.isascii():
            raise TokenError("malformed token")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise TokenError("malformed token") from None
        if len(raw) != layout.size + TAG_BYTES:
            raise TokenError("malformed token")
        payload, tag = raw[: layout.size], raw[layout.size :]
        # The last character carries two unused bits, which the decoder ignores: only
        # the canonical spelling is genuine, so that a token has exactly one form.
        canonical = base64.urlsafe_b64encode(raw).rstrip(b"=") == token.encode("ascii")
        ok = False
        for key in self._keys:  # every key, always: no early exit
            ok |= hmac.compare_digest(self._tag(key, payload), tag)
        if not (ok and canonical):
            raise TokenError("bad signature")
        version, code, member_id, *campaign = layout.unpack(payload)
        if (
            version not in versions
            or _VERSION_CHARS[version] != len(token)
            or code not in _CODE_CHANNELS
        ):
            raise TokenError("unknown token version or channel")
        return TokenClaims(
            member_id=member_id,
            channel=_CODE_CHANNELS[code],
            campaign_id=campaign[0] if campaign else None,
        )


def unsubscribe_url(base_url: str, token: str) -> str:
    return f"{base_url}/u/{token}"
