"""An `[ab]` test at expansion: `test_share` of the email deliveries get the variants,
evenly and deterministically; the rest wait for the winner (pending, no variant)
and are not enqueued until it is decided (`dispatcher.delivery.abdecision`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import ColumnElement, and_, not_, select
from sqlalchemy.engine import Connection
from sqlmodel import col

from dispatcher.definition.measuring import AbSpec
from dispatcher.store.bulk import update_rows
from dispatcher.store.models import Campaign, Channel, Delivery, DeliveryStatus

TESTING = "testing"
DECIDED = "decided"
_DELIVERY = Delivery.__table__  # type: ignore[attr-defined]


def _order(slug: str, member_id: int | None, delivery_id: int) -> bytes:
    return hashlib.sha256(f"{slug}:{member_id}:{delivery_id}".encode()).digest()


def assign_variants(conn: Connection, campaign: Campaign, ab: AbSpec) -> dict[str, int]:
    """Give `round(test_share * n)` of the campaign's email deliveries a variant, the
    variants in turn over an order fixed by the campaign and member (the same on every
    run, unrelated to ids or sign-up order); the rest wait. Variant -> deliveries."""
    rows = conn.execute(
        select(_DELIVERY.c.id, _DELIVERY.c.member_id).where(
            _DELIVERY.c.campaign_id == campaign.id, _DELIVERY.c.channel == str(Channel.EMAIL)
        )
    ).all()
    ordered = sorted(rows, key=lambda r: _order(campaign.slug, r[1], r[0]))
    share = round(ab.test_share * len(ordered))
    if len(ordered) >= len(ab.names):  # each variant gets one at least
        share = max(share, len(ab.names))
    names = ab.names
    chosen: list[dict[str, Any]] = [
        {"id": row[0], "variant": names[i % len(names)]} for i, row in enumerate(ordered[:share])
    ]
    if chosen:
        update_rows(conn, _DELIVERY, ("variant",), chosen)
    campaign.ab_state = TESTING
    return {name: sum(1 for c in chosen if c["variant"] == name) for name in names}


def waiting() -> ColumnElement[bool]:
    """SQL: the delivery waits for its campaign's A/B winner (pending email, no variant,
    the campaign still testing)."""
    testing = select(col(Campaign.id)).where(col(Campaign.ab_state) == TESTING)
    return and_(
        col(Delivery.channel) == str(Channel.EMAIL),
        col(Delivery.status) == DeliveryStatus.PENDING,
        col(Delivery.variant).is_(None),
        col(Delivery.campaign_id).in_(testing),
    )


def not_waiting() -> ColumnElement[bool]:
    """SQL: the delivery does not wait for an A/B winner (what may be enqueued)."""
    return not_(waiting())


def is_waiting(delivery: Delivery, campaign: Campaign) -> bool:
    """The same for rows already loaded (the email actor's check)."""
    return (
        campaign.ab_state == TESTING
        and delivery.variant is None
        and delivery.channel == Channel.EMAIL
    )
