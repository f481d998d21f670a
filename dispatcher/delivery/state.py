"""The delivery state machine, as conditional updates.

    pending -> sending -> sent | failed          pending -> skipped
    sending -> pending  (a transient failure, handed back for the retry)

Only `claim` moves a delivery to `sending`, with `... WHERE status = 'pending'`: that
single-row update is what makes a duplicate job (or a campaign sent twice) harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher.audience.suppression import suppressed_flag
from dispatcher.store.models import Campaign, Channel, Delivery, DeliveryStatus, Member, utcnow


@dataclass(frozen=True, slots=True)
class Loaded:
    delivery: Delivery
    member: Member
    campaign: Campaign
    # The member's address is on the suppression list for the delivery's channel.
    suppressed: bool = False

    def unreachable(self, channel: Channel) -> str | None:
        """Why the member is not to get this channel now (the send-time consent check:
        opted out, no address, suppressed address); None when reachable."""
        member = self.member
        if channel is Channel.EMAIL:
            if not member.email_opt_in:
                return "opted out"
            if not member.email:
                return "no email address"
        else:
            if not member.sms_opt_in:
                return "opted out"
            if member.mobile_invalid:
                return "mobile invalid"
            if not member.mobile:
                return "no mobile number"
        return "address suppressed" if self.suppressed else None


# What an actor writes into `error_message` when a transient failure used up the
# retries (`mark_failed(..., f"{RETRIES_EXHAUSTED}: ...")`): the only failures that
# `retry_failed` re-queues and `sms sync` looks up. A 5xx, an invalid number or a
# broken template is final.
RETRIES_EXHAUSTED = "retries exhausted"


def load(engine: Engine, delivery_id: int) -> Loaded | None:
    """The delivery with its member and campaign, read now, in one query."""
    with Session(engine, expire_on_commit=False) as session:
        row = session.execute(
            select(Delivery, Member, Campaign, suppressed_flag(col(Delivery.channel)))
            .join(Member, Member.id == Delivery.member_id)  # type: ignore[arg-type]
            .join(Campaign, Campaign.id == Delivery.campaign_id)  # type: ignore[arg-type]
            .where(col(Delivery.id) == delivery_id)
        ).first()
        if row is None:
            return None
        session.expunge_all()
        return Loaded(delivery=row[0], member=row[1], campaign=row[2], suppressed=bool(row[3]))


def _move(engine: Engine, delivery_id: int, src: DeliveryStatus, **values: Any) -> bool:
    values.setdefault("updated_at", utcnow())
    with engine.begin() as conn:
        result = conn.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status == src)  # type: ignore[arg-type]
            .values(**values)
        )
        return result.rowcount == 1


def claim(engine: Engine, delivery_id: int) -> bool:
    """pending -> sending. False when another job got there first."""
    return _move(
        engine,
        delivery_id,
        DeliveryStatus.PENDING,
        status=DeliveryStatus.SENDING,
        attempts=Delivery.attempts + 1,
    )


def skip(engine: Engine, delivery_id: int, reason: str) -> bool:
    """pending -> skipped (consent withdrawn, or no address any more)."""
    return _move(
        engine,
        delivery_id,
        DeliveryStatus.PENDING,
        status=DeliveryStatus.SKIPPED,
        error_message=reason,
    )


def mark_sent(engine: Engine, delivery_id: int, **values: Any) -> bool:
    return _move(
        engine,
        delivery_id,
        DeliveryStatus.SENDING,
        status=DeliveryStatus.SENT,
        error_code=None,
        error_message=None,
        **values,
    )


def mark_failed(engine: Engine, delivery_id: int, code: int | None, reason: str) -> bool:
    return _move(
        engine,
        delivery_id,
        DeliveryStatus.SENDING,
        status=DeliveryStatus.FAILED,
        error_code=code,
        error_message=reason[:500],
    )


def release(engine: Engine, delivery_id: int, code: int | None, reason: str) -> bool:
    """sending -> pending, after a transient failure, so the retry can claim it."""
    return _move(
        engine,
        delivery_id,
        DeliveryStatus.SENDING,
        status=DeliveryStatus.PENDING,
        error_code=code,
        error_message=reason[:500],
    )
