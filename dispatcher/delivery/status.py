"""Campaign progress, counted from the database (the truth), per channel."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, distinct, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher import hold
from dispatcher.channels import spec_of
from dispatcher.delivery.listing import schedule_fields
from dispatcher.errors import NotFoundError
from dispatcher.queue.abtest import not_waiting, waiting
from dispatcher.queue.expansion import excluded_by
from dispatcher.store.models import (
    Bounce,
    BounceKind,
    Campaign,
    Channel,
    Delivery,
    DeliveryStatus,
)

STATUSES = [s.value for s in DeliveryStatus]


def campaign_status(engine: Engine, slug: str, zone: ZoneInfo | None = None) -> dict[str, Any]:
    """`{"slug", "name", "state", <channel>: {pending, sending, sent, skipped, failed,
    excluded, excluded_by, bounced, complained}}` (and `paused`, `waiting_until` for a
    channel with holds), with the schedule and any pause or cancel reason
    (`listing.schedule_fields`; local times in `zone`, default UTC)."""
    with Session(engine) as session:
        campaign = session.execute(select(Campaign).where(col(Campaign.slug) == slug)).scalar()
        if campaign is None:
            raise NotFoundError(f"no campaign with slug {slug!r}")
        assert campaign.id is not None
        counts = channel_counts(session, campaign.id)
        holds = hold.holds_of(session, campaign.id)
        out: dict[str, Any] = {"slug": campaign.slug, "name": campaign.name}
        out["state"] = campaign.state
        out.update(schedule_fields(campaign, zone or ZoneInfo("UTC")))
        for channel in campaign.channel_list():
            row: dict[str, Any] = {s: counts.get((str(channel), s), 0) for s in STATUSES}
            row["excluded"] = int(campaign.excluded.get(str(channel), 0))
            row["excluded_by"] = excluded_by(campaign, str(channel))
            row.update(bounce_counts(session, campaign.id, channel))
            if channel is Channel.SMS:
                row.update(sms_details(session, campaign))
            if spec_of(channel).holds:
                row.update(hold.fields(holds.get(str(channel))))
            if channel is Channel.EMAIL and campaign.ab_state is not None:
                row.update(ab_details(session, campaign))
            out[str(channel)] = row
        return out


# Kavenegar's final states: 10 delivered; 11 undelivered, 6 failed, 13 cancelled and
# 14 blocked by the recipient count as undelivered.
DELIVERED_STATUSES = (10,)
UNDELIVERED_STATUSES = (11, 6, 13, 14)


def sms_details(session: Session, campaign: Campaign) -> dict[str, Any]:
    """Extra keys of the `sms` object: what the operator reported.

    `delivered`/`undelivered`: sent SMS whose final state Kavenegar reported
    (`dispatcher sms sync`). The `paused` and `waiting_until` keys of a channel with
    holds: `hold.fields`.
    """
    rows = session.execute(
        select(col(Delivery.provider_status), func.count())
        .where(
            col(Delivery.campaign_id) == campaign.id,
            col(Delivery.channel) == Channel.SMS,
            col(Delivery.provider_status).in_([*DELIVERED_STATUSES, *UNDELIVERED_STATUSES]),
        )
        .group_by(col(Delivery.provider_status))
    ).all()
    by_status = {status: n for status, n in rows}
    return {
        "delivered": sum(by_status.get(s, 0) for s in DELIVERED_STATUSES),
        "undelivered": sum(by_status.get(s, 0) for s in UNDELIVERED_STATUSES),
    }


def ab_details(session: Session, campaign: Campaign) -> dict[str, Any]:
    """Extra keys of an A/B campaign's `email` object: `waiting_for_winner` (of the
    pending, those that wait for the test's decision) and the `ab_winner` once decided."""
    waits = session.execute(
        select(func.count())
        .select_from(Delivery)
        .where(col(Delivery.campaign_id) == campaign.id, waiting())
    ).scalar_one()
    return {"waiting_for_winner": int(waits), "ab_winner": campaign.ab_winner}


def bounce_counts(session: Session, campaign_id: int, channel: Channel) -> dict[str, int]:
    """`bounced` (hard or soft) and `complained`: deliveries with such a report."""
    if channel is not Channel.EMAIL:  # SMS: an invalid number fails the delivery instead
        return {"bounced": 0, "complained": 0}
    complaint = col(Bounce.kind) == str(BounceKind.COMPLAINT)
    delivery = col(Bounce.delivery_id)
    bounced, complained = session.execute(
        select(
            func.count(distinct(case((~complaint, delivery)))),
            func.count(distinct(case((complaint, delivery)))),
        ).where(col(Bounce.campaign_id) == campaign_id)
    ).one()
    return {"bounced": int(bounced), "complained": int(complained)}


def channel_counts(session: Session, campaign_id: int) -> dict[tuple[str, str], int]:
    rows = session.execute(
        select(col(Delivery.channel), col(Delivery.status), func.count())
        .where(col(Delivery.campaign_id) == campaign_id)
        .group_by(col(Delivery.channel), col(Delivery.status))
    ).all()
    return {(ch, st): n for ch, st, n in rows}


def outstanding(engine: Engine, campaign_id: int) -> int:
    """Deliveries not yet finished (pending or sending), less an A/B test's rest that
    waits for the winner (nothing sends it before the decision)."""
    with Session(engine) as session:
        return session.execute(
            select(func.count())
            .select_from(Delivery)
            .where(
                col(Delivery.campaign_id) == campaign_id,
                col(Delivery.status).in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
                not_waiting(),
            )
        ).scalar_one()


def progress(engine: Engine, slug: str) -> dict[str, Any] | None:
    """`{"state", <channel>: {status: n, ...}}` in one indexed query (the console's
    refresh): the campaign joined to its deliveries' counts. None for an unknown slug."""
    with Session(engine) as session:
        rows = session.execute(
            select(
                col(Campaign.state),
                col(Campaign.channels),
                col(Delivery.channel),
                col(Delivery.status),
                func.count(col(Delivery.id)),
            )
            .select_from(Campaign)
            .outerjoin(Delivery, col(Delivery.campaign_id) == col(Campaign.id))
            .where(col(Campaign.slug) == slug)
            .group_by(
                col(Campaign.state),
                col(Campaign.channels),
                col(Delivery.channel),
                col(Delivery.status),
            )
        ).all()
    if not rows:
        return None
    out: dict[str, Any] = {"state": rows[0][0]}
    for channel in rows[0][1].split(","):
        out[channel] = dict.fromkeys(STATUSES, 0)
    for _state, _channels, channel, status, n in rows:
        if channel is not None and channel in out:
            out[channel][status] = int(n)
    return out
