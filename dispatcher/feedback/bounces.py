"""Bounces and complaints: recorded once each, and what they do to an address
(`event.record` calls it for a bounced or complained event).

- A hard bounce suppresses the address on email (reason `bounce`).
- A soft bounce is recorded; the third one in separate campaigns within
  `SOFT_WINDOW` suppresses the address (reason `bounce`).
- A complaint opts the member out of email with source `complaint` (which suppresses
  the address too, see `dispatcher.audience.consent`), attributed to the campaign.

Each is keyed by a `report_id` (`smtp:<delivery>` for a refusal at send time, a hash
of the report otherwise), so the same report handled twice is recorded once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import distinct, func, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from dispatcher.audience.consent import opt_out
from dispatcher.audience.suppression import suppress
from dispatcher.store.db import insert_or_ignore
from dispatcher.store.models import (
    Bounce,
    BounceKind,
    Channel,
    ConsentSource,
    Delivery,
    Member,
    SuppressionReason,
    utcnow,
)

SOFT_LIMIT = 3  # soft bounces, in separate campaigns ...
SOFT_WINDOW = timedelta(days=30)  # ... within this long, suppress the address

_B = Bounce.__table__  # type: ignore[attr-defined]
_D = Delivery.__table__  # type: ignore[attr-defined]
_M = Member.__table__  # type: ignore[attr-defined]


def delivery_target(conn: Connection, delivery_id: int) -> tuple[int, int, str | None] | None:
    """(campaign id, member id, member's email key) of an email delivery, if it exists."""
    row = conn.execute(
        select(_D.c.campaign_id, _D.c.member_id, _M.c.email_key)
        .join(_M, _M.c.id == _D.c.member_id)
        .where(_D.c.id == delivery_id, _D.c.channel == str(Channel.EMAIL))
    ).first()
    return (row[0], row[1], row[2]) if row is not None else None


def record_bounce(
    session: Session,
    *,
    delivery_id: int,
    kind: BounceKind,
    report_id: str,
    status: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Record a bounce or complaint about a delivery and act on it; False when this
    report was recorded before (or the delivery or its address is unknown)."""
    now = now or utcnow()
    conn = session.connection()
    target = delivery_target(conn, delivery_id)
    if target is None or target[2] is None:
        return False
    campaign_id, member_id, key = target[0], target[1], target[2]
    inserted = conn.execute(
        insert_or_ignore(conn, _B)
        .values(
            address_key=key,
            kind=str(kind),
            campaign_id=campaign_id,
            delivery_id=delivery_id,
            status=status,
            report_id=report_id[:80],
            at=now,
        )
        .on_conflict_do_nothing()
        .returning(_B.c.id)
    ).first()
    if inserted is None:
        return False
    source = ConsentSource.COMPLAINT if kind is BounceKind.COMPLAINT else ConsentSource.BOUNCE
    if kind is BounceKind.COMPLAINT:
        opt_out(
            session,
            member_id,
            Channel.EMAIL,
            ConsentSource.COMPLAINT,
            campaign_id=campaign_id,  # an opt-out the campaign caused (`campaign report`)
        )
    elif kind is BounceKind.HARD or _soft_limit_reached(conn, key, now):
        suppress(conn, key, Channel.EMAIL, SuppressionReason.BOUNCE, source, now=now)
    return True


def _soft_limit_reached(conn: Connection, key: str, now: datetime) -> bool:
    campaigns = conn.execute(
        select(func.count(distinct(_B.c.campaign_id))).where(
            _B.c.address_key == key,
            _B.c.kind == str(BounceKind.SOFT),
            _B.c.at >= now - SOFT_WINDOW,
        )
    ).scalar_one()
    return int(campaigns) >= SOFT_LIMIT
