"""Addresses as compared: the normal form, and the keyed hash the database stores.

- Email: the domain IDNA-encoded (`münchen.de` = `xn--mnchen-3ya.de`) and the whole
  address lower-cased, so `Sara@Example.com` and `sara@EXAMPLE.COM` are one address.
- Mobile: E.164 (`+989121234567`), as `normalise_mobile` stores it.

Members carry `email_key`/`mobile_key` = hex HMAC-SHA256 of the normal form under
`SUPPRESSION_KEY`: expansion groups by them (one delivery per address) and the
suppression list is keyed by them, so no address is stored twice in the clear.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import idna

from dispatcher.masking import mask_email, mask_mobile
from dispatcher.settings import Settings
from dispatcher.store.models import Channel


def normal_email(address: str) -> str:
    """The comparison form of an email address (IDNA domain, lower-cased as a whole)."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address.strip().lower()
    try:
        domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        domain = domain.lower()
    return f"{local}@{domain}".lower()


def normal_mobile(mobile: str) -> str:
    """The comparison form of a mobile: its stored E.164 form, trimmed."""
    return mobile.strip()


def normal_address(channel: Channel, address: str) -> str:
    return normal_email(address) if channel is Channel.EMAIL else normal_mobile(address)


@dataclass(frozen=True)
class AddressKeys:
    """Computes address keys under one HMAC key (`Settings.suppression_key_bytes()`)."""

    key: bytes = field(repr=False)

    def of(self, channel: Channel, address: str | None) -> str | None:
        """The key of an address on a channel; None for no address."""
        if not address:
            return None
        normal = normal_address(Channel(channel), address)
        return hmac.new(self.key, normal.encode(), hashlib.sha256).hexdigest()

    def email(self, address: str | None) -> str | None:
        return self.of(Channel.EMAIL, address)

    def mobile(self, address: str | None) -> str | None:
        return self.of(Channel.SMS, address)


def address_keys(settings: Settings) -> AddressKeys:
    """The address keys of this deployment (`SUPPRESSION_KEY`; see `Settings`)."""
    return AddressKeys(settings.suppression_key_bytes())


@dataclass(frozen=True)
class SharedAddress:
    """Two rows of an import that give one address (a warning, not an error)."""

    channel: Channel
    address: str  # masked
    first_line: int
    first_id: str
    line: int
    external_id: str

    def __str__(self) -> str:
        return (
            f"line {self.line} ({self.external_id}) and line {self.first_line} "
            f"({self.first_id}) share the {self.channel} address {self.address}"
        )


def shared_addresses(
    rows: Iterable[tuple[int, str, str | None, str | None]],
) -> list[SharedAddress]:
    """Rows `(line, external_id, email, mobile)` whose address an earlier row has."""
    seen: dict[tuple[Channel, str], tuple[int, str]] = {}
    shared: list[SharedAddress] = []
    for line, external_id, email, mobile in rows:
        for channel, address, masked in (
            (Channel.EMAIL, email, mask_email),
            (Channel.SMS, mobile, mask_mobile),
        ):
            if not address:
                continue
            first = seen.setdefault(
                (channel, normal_address(channel, address)), (line, external_id)
            )
            if first[0] != line:
                shared.append(
                    SharedAddress(channel, masked(address), first[0], first[1], line, external_id)
                )
    return shared


_ADDRESS_CHANNEL = {"email": Channel.EMAIL, "mobile": Channel.SMS}


def with_keys(values: dict[str, Any], keys: AddressKeys | None) -> dict[str, Any]:
    """Add `email_key`/`mobile_key` for the addresses in member `values` (None without
    `keys`: the next expansion fills them); returns `values`."""
    for column, key_column in (("email", "email_key"), ("mobile", "mobile_key")):
        if column in values:
            values[key_column] = keys.of(_ADDRESS_CHANNEL[column], values[column]) if keys else None
    return values
