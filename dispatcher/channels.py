"""Channels as data: one `ChannelSpec` per channel, from which the audience SQL, the
send-time check, the suppression keys, the status counts and the actors are made.

A third channel (a push notification, say) is one more spec here and one adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, true

from dispatcher.store.models import Channel, ConsentSource, Member

_M = Member.__table__  # type: ignore[attr-defined]


class HoldKind(StrEnum):
    """The ways a channel can hold a campaign's deliveries back (`dispatcher.hold`)."""

    PAUSE = "pause"  # the provider refused the account: nothing goes until resumed
    WINDOW = "window"  # outside the channel's send window: waits for its opening


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """What the dispatcher knows of a channel, as data."""

    name: Channel
    address: str  # the member's address column
    opt_in: str  # the member's consent column
    optout_source: str  # who opted the member out (sticky: an import cannot undo it)
    key: str  # the HMAC of the normalised address: one delivery per key, suppression
    invalid: str | None  # a column set when the provider refused the address for good
    optout_sources: tuple[ConsentSource, ...]  # what can opt an address out of it
    transport: str  # the rate guard's name
    queue: str  # the actor's queue
    max_retries: int
    min_backoff_ms: int
    max_backoff_ms: int
    holds: tuple[HoldKind, ...]  # the holds of its own it may put on a campaign
    no_address: str  # the skip reason when the member has none
    label: str  # its name in sentences ("SMS paused: ...")

    def unreachable(self, member: Member) -> str | None:
        """Why `member` is not to get this channel (opted out, no address); None when
        reachable. The suppression list is checked beside it (`state.Loaded`)."""
        if not getattr(member, self.opt_in):
            return "opted out"
        if self.invalid is not None and getattr(member, self.invalid):
            return f"{self.address} invalid"
        if not getattr(member, self.address):
            return self.no_address
        return None

    def has_address(self, member: Any = _M) -> ColumnElement[bool]:
        """SQL: the member row has a usable address for the channel."""
        column = member.c[self.address]
        clauses = [column.is_not(None), column != ""]
        if self.invalid is not None:
            clauses.append(~member.c[self.invalid])
        return and_(*clauses)

    def opted_in(self, member: Any = _M) -> ColumnElement[bool]:
        """SQL: the member row is opted in to the channel."""
        return member.c[self.opt_in] == true()


_COMMON = (ConsentSource.LINK, ConsentSource.ONE_CLICK, ConsentSource.CLI, ConsentSource.API)

EMAIL = ChannelSpec(
    name=Channel.EMAIL,
    address="email",
    opt_in="email_opt_in",
    optout_source="email_optout_source",
    key="email_key",
    invalid=None,
    optout_sources=(*_COMMON, ConsentSource.BOUNCE, ConsentSource.COMPLAINT),
    transport="smtp",
    queue="email",
    max_retries=8,
    min_backoff_ms=2_000,
    max_backoff_ms=10 * 60_000,
    holds=(),
    no_address="no email address",
    label="email",
)
SMS = ChannelSpec(
    name=Channel.SMS,
    address="mobile",
    opt_in="sms_opt_in",
    optout_source="sms_optout_source",
    key="mobile_key",
    invalid="mobile_invalid",
    optout_sources=(*_COMMON, ConsentSource.SMS_KEYWORD, ConsentSource.PROVIDER),
    transport="kavenegar",
    queue="sms",
    max_retries=8,
    min_backoff_ms=5_000,
    max_backoff_ms=10 * 60_000,
    holds=(HoldKind.PAUSE, HoldKind.WINDOW),
    no_address="no mobile number",
    label="SMS",
)
SPECS: dict[str, ChannelSpec] = {str(spec.name): spec for spec in (EMAIL, SMS)}


def spec_of(channel: str) -> ChannelSpec:
    """The spec of `channel` (a `Channel` or its value)."""
    return SPECS[channel]
