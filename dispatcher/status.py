"""Campaign progress, counted from the database (the truth), per channel."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dispatcher.errors import NotFoundError
from dispatcher.models import Campaign, CampaignState, Delivery, DeliveryStatus, utcnow

STATUSES = [s.value for s in DeliveryStatus]


def campaign_status(engine: Engine, slug: str) -> dict[str, Any]:
    """`{"slug", "name", "state", <channel>: {pending, sending, sent, skipped, failed, excluded}}`."""
    with Session(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).scalar()
        if campaign is None:
            raise NotFoundError(f"no campaign with slug {slug!r}")
        assert campaign.id is not None
        counts = channel_counts(session, campaign.id)
        out: dict[str, Any] = {"slug": campaign.slug, "name": campaign.name}
        out["state"] = campaign.state
        for channel in campaign.channel_list():
            row = {s: counts.get((str(channel), s), 0) for s in STATUSES}
            row["excluded"] = int(campaign.excluded.get(str(channel), 0))
            out[str(channel)] = row
        return out


def channel_counts(session: Session, campaign_id: int) -> dict[tuple[str, str], int]:
    rows = session.execute(
        select(Delivery.channel, Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.channel, Delivery.status)
    ).all()
    return {(ch, st): n for ch, st, n in rows}


def outstanding(engine: Engine, campaign_id: int) -> int:
    """Deliveries not yet finished (pending or sending)."""
    with Session(engine) as session:
        return session.execute(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.campaign_id == campaign_id,
                Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),  # type: ignore[attr-defined]
            )
        ).scalar_one()


def mark_done_if_finished(engine: Engine, campaign_id: int) -> bool:
    """Move a campaign from sending to done once nothing is outstanding."""
    if outstanding(engine, campaign_id):
        return False
    with Session(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None or campaign.state != CampaignState.SENDING:
            return False
        campaign.state = CampaignState.DONE
        campaign.finished_at = utcnow()
        session.add(campaign)
        session.commit()
        return True
