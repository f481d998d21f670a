"""Campaigns at a glance (`campaign list`) and the schedule/pause lines of `status`.

Progress is counted from the database in one grouped query for all campaigns;
schedules are shown in the shop's zone in both calendars (`dispatcher.definition.sendtime`).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher.channels import spec_of
from dispatcher.definition.sendtime import as_utc, jalali
from dispatcher.hold import Hold, holds_for
from dispatcher.store.models import Campaign, Delivery, DeliveryStatus

FINISHED = (DeliveryStatus.SENT, DeliveryStatus.SKIPPED, DeliveryStatus.FAILED)


def schedule_fields(campaign: Campaign, zone: ZoneInfo) -> dict[str, Any]:
    """send_at (UTC, ISO), local Gregorian and Jalali, and why it is held, if it is."""
    send_at = as_utc(campaign.send_at) if campaign.send_at else None
    return {
        "send_at": send_at.isoformat() if send_at else None,
        "send_at_local": f"{send_at.astimezone(zone):%Y-%m-%d %H:%M} {zone.key}"
        if send_at
        else None,
        "send_at_jalali": jalali(send_at, zone) if send_at else None,
        "paused_by": campaign.paused_by,
        "pause_reason": campaign.pause_reason,
        "cancel_reason": campaign.cancel_reason,
    }


def note(campaign: Campaign, holds: dict[str, Hold]) -> str | None:
    if campaign.pause_reason:
        return f"paused by {campaign.paused_by}: {campaign.pause_reason}"
    if campaign.cancel_reason:
        return f"cancelled: {campaign.cancel_reason}"
    for channel in campaign.channel_list():
        hold = holds.get(str(channel))
        if hold is not None and hold.paused:
            return f"{spec_of(channel).label} paused: {hold.paused}"
    return None


def list_campaigns(engine: Engine, zone: ZoneInfo) -> list[dict[str, Any]]:
    """Every campaign, newest first, with state, schedule and progress."""
    with Session(engine) as session:
        campaigns = list(
            session.execute(select(Campaign).order_by(col(Campaign.id).desc())).scalars()
        )
        counts: dict[int, dict[str, int]] = {}
        for campaign_id, status, n in session.execute(
            select(col(Delivery.campaign_id), col(Delivery.status), func.count()).group_by(
                col(Delivery.campaign_id), col(Delivery.status)
            )
        ).all():
            counts.setdefault(campaign_id, {})[status] = n
        holds = holds_for(session, [c.id or 0 for c in campaigns])
    return [_row(c, counts.get(c.id or 0, {}), holds.get(c.id or 0, {}), zone) for c in campaigns]


def campaign_page(
    engine: Engine, zone: ZoneInfo, *, state: str | None = None, page: int = 1, per_page: int = 50
) -> tuple[list[dict[str, Any]], int]:
    """One page of `list_campaigns` (newest first, of one `state` if given), counting the
    deliveries of that page's campaigns only; and how many campaigns there are."""
    where = [col(Campaign.state) == state] if state else []
    with Session(engine) as session:
        total = session.execute(select(func.count()).select_from(Campaign).where(*where)).scalar()
        campaigns = list(
            session.execute(
                select(Campaign)
                .where(*where)
                .order_by(col(Campaign.id).desc())
                .offset((max(page, 1) - 1) * per_page)
                .limit(per_page)
            ).scalars()
        )
        counts: dict[int, dict[str, int]] = {}
        ids = [c.id for c in campaigns]
        if ids:
            for campaign_id, status, n in session.execute(
                select(col(Delivery.campaign_id), col(Delivery.status), func.count())
                .where(col(Delivery.campaign_id).in_(ids))
                .group_by(col(Delivery.campaign_id), col(Delivery.status))
            ).all():
                counts.setdefault(campaign_id, {})[status] = n
        holds = holds_for(session, [c.id or 0 for c in campaigns])
    rows = [_row(c, counts.get(c.id or 0, {}), holds.get(c.id or 0, {}), zone) for c in campaigns]
    return rows, int(total or 0)


def _row(
    campaign: Campaign, by_status: dict[str, int], holds: dict[str, Hold], zone: ZoneInfo
) -> dict[str, Any]:
    return {
        "slug": campaign.slug,
        "name": campaign.name,
        "state": campaign.state,
        "channels": campaign.channels,
        **schedule_fields(campaign, zone),
        "total": sum(by_status.values()),
        "finished": sum(by_status.get(s, 0) for s in FINISHED),
        "sent": by_status.get(DeliveryStatus.SENT, 0),
        "failed": by_status.get(DeliveryStatus.FAILED, 0),
        "note": note(campaign, holds),
    }
