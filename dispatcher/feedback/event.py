"""One normalised provider event, and the one function that records it.

Every follow-up path turns what a provider told us into a `ProviderEvent`: an SMTP
refusal at send time and a DSN or ARF report from the bounce mailbox (bounced,
complained), Kavenegar's delivery reports (delivered, blocked), a reply to the sender
line (replied-stop). `record` does what the event means: the bounce bookkeeping and
suppression, the opt-out (and its consent event), or the delivery's move.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.engine import Engine
from sqlmodel import Session

from dispatcher.audience.consent import opt_out
from dispatcher.delivery import state
from dispatcher.errors import DeliveryError, InvalidRecipientError
from dispatcher.feedback.bounces import record_bounce
from dispatcher.store.db import session_scope
from dispatcher.store.models import BounceKind, Channel, ConsentSource, utcnow


class EventKind(StrEnum):
    """What a provider said about a message or its recipient."""

    DELIVERED = "delivered"  # it had the message after all: failed -> sent
    BOUNCED = "bounced"  # refused for the address, hard or soft: recorded, may suppress
    COMPLAINED = "complained"  # marked as spam: the member is opted out of the channel
    BLOCKED = "blocked"  # the recipient blocks advertising messages: opted out
    REPLIED_STOP = "replied-stop"  # the recipient replied an opt-out word: opted out


# The opt-out source of each event that opts a member out.
_OPT_OUT_SOURCE = {
    EventKind.BLOCKED: ConsentSource.PROVIDER,
    EventKind.REPLIED_STOP: ConsentSource.SMS_KEYWORD,
}


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One thing a provider told us, in our terms. Which fields matter depends on the
    kind: a delivery for delivered, bounced and complained; a member for blocked and
    replied-stop."""

    kind: EventKind
    channel: Channel
    delivery_id: int | None = None
    member_id: int | None = None
    report_id: str | None = None  # bounced, complained: the same report counts once
    hard: bool = False  # bounced: a hard bounce (else soft)
    status: str | None = None  # bounced: the enhanced status code, e.g. 5.1.1
    provider_id: str | None = None  # delivered: the provider's message id
    provider_status: int | None = None  # delivered: the provider's status code


def record(session: Session, event: ProviderEvent, *, now: datetime | None = None) -> bool:
    """Act on `event` in the caller's transaction; False when it changed nothing (a
    report recorded before, a member opted out already, a delivery not failed)."""
    now = now or utcnow()
    kind = event.kind
    if kind is EventKind.DELIVERED:
        assert event.delivery_id is not None and event.provider_id is not None
        return state.found_sent(
            session.connection(), event.delivery_id, event.provider_id, event.provider_status, now
        )
    if kind in (EventKind.BOUNCED, EventKind.COMPLAINED):
        assert event.delivery_id is not None and event.report_id is not None
        if kind is EventKind.COMPLAINED:
            bounce = BounceKind.COMPLAINT
        else:
            bounce = BounceKind.HARD if event.hard else BounceKind.SOFT
        return record_bounce(
            session,
            delivery_id=event.delivery_id,
            kind=bounce,
            report_id=event.report_id,
            status=event.status,
            now=now,
        )
    assert event.member_id is not None
    return opt_out(session, event.member_id, event.channel, _OPT_OUT_SOURCE[kind], at=now)


def send_failure(delivery_id: int, error: DeliveryError) -> ProviderEvent | None:
    """A failed email send as a bounce: hard for `InvalidRecipientError`, soft for any
    other refusal by the relay (a 5xx, or a 4xx that used up the retries). Errors
    without a reply code (a dropped connection) are not bounces."""
    if error.code is None:
        return None
    return ProviderEvent(
        EventKind.BOUNCED,
        Channel.EMAIL,
        delivery_id=delivery_id,
        report_id=f"smtp:{delivery_id}",
        hard=isinstance(error, InvalidRecipientError),
        status=error.status,
    )


def record_send_failure(engine: Engine, delivery_id: int, error: DeliveryError) -> bool:
    """Record a failed email send as a bounce (`send_failure`), in its own transaction."""
    event = send_failure(delivery_id, error)
    if event is None:
        return False
    with session_scope(engine) as session:
        return record(session, event)
