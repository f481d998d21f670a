"""Campaign control: pause, resume, cancel, reschedule, retry-failed, orphans put back
after the lease, and finish-if-done (a channel's own pause: `dispatcher.hold`). Every
change of state is one conditional `UPDATE ... WHERE state IN (...)`, so people and
processes acting at once cannot undo each other. README: "Campaign states".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from dramatiq import Actor, Broker
from sqlalchemy import and_, exists, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher import hold
from dispatcher.delivery import state
from dispatcher.errors import ControlError, NotFoundError
from dispatcher.queue.broker import enqueue_ids
from dispatcher.queue.expansion import CHUNK, enqueue_pending
from dispatcher.store.models import (
    Campaign,
    CampaignState,
    Channel,
    Delivery,
    DeliveryStatus,
    PausedBy,
    utcnow,
)

LIVE = (CampaignState.SCHEDULED, CampaignState.SENDING, CampaignState.PAUSED)


def is_held(campaign: Campaign) -> bool:
    """True when the actors must not send for this campaign now (paused, cancelled...)."""
    return campaign.state != CampaignState.SENDING


def find(engine: Engine, slug: str) -> Campaign:
    with Session(engine, expire_on_commit=False) as session:
        campaign = session.execute(select(Campaign).where(col(Campaign.slug) == slug)).scalar()
    if campaign is None:
        raise NotFoundError(f"no campaign with slug {slug!r}")
    return campaign


def _transition(engine: Engine, campaign_id: int, sources: Iterable[str], **values: object) -> bool:
    with engine.begin() as conn:
        result = conn.execute(
            update(Campaign)
            .where(col(Campaign.id) == campaign_id, col(Campaign.state).in_(list(sources)))
            .values(**values)
        )
        return result.rowcount == 1


def pause(engine: Engine, campaign_id: int, *, by: PausedBy | str, reason: str) -> bool:
    """sending|scheduled -> paused, with who and why. False when it was not running."""
    return _transition(
        engine,
        campaign_id,
        (CampaignState.SENDING, CampaignState.SCHEDULED),
        state=CampaignState.PAUSED,
        paused_by=str(by),
        pause_reason=reason[:500],
        paused_at=utcnow(),
    )


def cancel(engine: Engine, campaign_id: int, *, reason: str) -> int:
    """Stop for good: the campaign becomes `cancelled` and every pending delivery
    `skipped` with the reason. Returns how many were skipped. Deliveries being sent
    right now finish (their message is already on its way)."""
    if not _transition(
        engine,
        campaign_id,
        LIVE,
        state=CampaignState.CANCELLED,
        cancel_reason=reason[:500],
        cancelled_at=utcnow(),
    ):
        raise ControlError("only a scheduled, sending or paused campaign can be cancelled")
    with engine.begin() as conn:
        return state.cancel_pending(conn, campaign_id, f"cancelled: {reason}", utcnow())


def reschedule(engine: Engine, campaign_id: int, *, send_at: datetime) -> bool:
    """A scheduled campaign's new send time (and its templates' `campaign.send_at`).

    One conditional update (`... WHERE state = 'scheduled'`): False when the scheduler
    launched it first, or it is not scheduled."""
    with Session(engine) as session:
        spec = session.execute(
            select(col(Campaign.spec)).where(col(Campaign.id) == campaign_id)
        ).scalar_one()
        changed = session.execute(
            update(Campaign)
            .where(col(Campaign.id) == campaign_id, col(Campaign.state) == CampaignState.SCHEDULED)
            .values(send_at=send_at, spec={**spec, "send_at": send_at.isoformat()})
        )
        session.commit()
        return changed.rowcount == 1  # type: ignore[attr-defined]


@dataclass
class Resumed:
    state: str
    reclaimed: int  # `sending` beyond the lease, handed back to pending
    enqueued: int


def resume(
    engine: Engine,
    broker: Broker,
    campaign_id: int,
    actors: dict[str, Actor],
    *,
    lease: timedelta,
) -> Resumed:
    """paused -> sending (or back to scheduled if it never launched), clearing the
    channels' own pauses too; then, for a sending campaign, put orphans back and re-enqueue every
    pending delivery from the database. Also the cure for a Redis that lost its data."""
    campaign = get(engine, campaign_id)
    if campaign.state == CampaignState.CANCELLED:
        raise ControlError(f"{campaign.slug} was cancelled: {campaign.cancel_reason}")
    target = CampaignState.SCHEDULED if campaign.launched_at is None else CampaignState.SENDING
    _transition(
        engine,
        campaign_id,
        (CampaignState.PAUSED,),
        state=target,
        paused_by=None,
        pause_reason=None,
        paused_at=None,
    )
    hold.resume_all(engine, campaign_id)
    campaign = get(engine, campaign_id)
    if campaign.state != CampaignState.SENDING:
        return Resumed(state=campaign.state, reclaimed=0, enqueued=0)
    reclaimed = reclaim_orphans(engine, campaign_id, lease=lease)
    enqueued = enqueue_pending(engine, broker, campaign, actors)
    return Resumed(state=campaign.state, reclaimed=len(reclaimed), enqueued=enqueued)


def get(engine: Engine, campaign_id: int) -> Campaign:
    with Session(engine, expire_on_commit=False) as session:
        campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"no campaign with id {campaign_id}")
    return campaign


def reclaim_orphans(engine: Engine, campaign_id: int, *, lease: timedelta) -> list[tuple[int, str]]:
    """sending -> pending for deliveries claimed longer ago than the lease: (id, channel).

    Each is moved with the conditional update that guards every transition, so a
    worker that records its outcome at the same moment wins, and is not re-sent.
    """
    now = utcnow()
    with engine.connect() as conn:
        expired = list(
            conn.execute(
                select(col(Delivery.id), col(Delivery.channel)).where(
                    col(Delivery.campaign_id) == campaign_id,
                    col(Delivery.status) == DeliveryStatus.SENDING,
                    col(Delivery.updated_at) < now - lease,
                )
            ).all()
        )
    moved: list[tuple[int, str]] = []
    for delivery_id, channel in expired:
        with engine.begin() as conn:
            reclaimed = state.reclaim(conn, int(delivery_id or 0), now - lease, now)
        if reclaimed:
            moved.append((int(delivery_id or 0), channel))
    return moved


def retry_failed(
    engine: Engine,
    broker: Broker,
    campaign_id: int,
    actors: dict[str, Actor],
    *,
    channel: Channel | None = None,
) -> int:
    """failed -> pending for deliveries whose transient failures used up the retries,
    and enqueue them (a done campaign is sending again until they finish). Sent,
    skipped and permanently failed deliveries are never touched."""
    campaign = get(engine, campaign_id)
    if campaign.state in (CampaignState.CANCELLED, CampaignState.SCHEDULED):
        raise ControlError(f"{campaign.slug} is {campaign.state}: nothing to retry")
    _transition(engine, campaign_id, (CampaignState.DONE,), state=CampaignState.SENDING)
    channels = [channel] if channel else campaign.channel_list()
    total = 0
    for ch in channels:
        while ids := _retryable_ids(engine, campaign_id, str(ch)):
            with engine.begin() as conn:
                state.retry_failed(conn, ids, utcnow())
            if get(engine, campaign_id).state == CampaignState.SENDING:
                total += enqueue_ids(broker, actors[str(ch)], ids)
            else:
                total += len(ids)  # paused: `resume` will enqueue them
    return total


def _retryable_ids(engine: Engine, campaign_id: int, channel: str) -> list[int]:
    with engine.connect() as conn:
        return [
            int(i or 0)
            for i in conn.execute(
                select(col(Delivery.id))
                .where(
                    col(Delivery.campaign_id) == campaign_id,
                    col(Delivery.channel) == channel,
                    state.retries_exhausted(),
                )
                .order_by(col(Delivery.id))
                .limit(CHUNK)
            ).scalars()
        ]


def finish_if_done(engine: Engine, campaign_id: int, *, now: datetime | None = None) -> bool:
    """sending -> done when no delivery is pending or sending, in one statement."""
    outstanding = exists().where(
        and_(
            col(Delivery.campaign_id) == campaign_id,
            col(Delivery.status).in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
        )
    )
    with engine.begin() as conn:
        result = conn.execute(
            update(Campaign)
            .where(
                col(Campaign.id) == campaign_id,
                col(Campaign.state) == CampaignState.SENDING,
                ~outstanding,
            )
            .values(state=CampaignState.DONE, finished_at=now or utcnow())
        )
        return result.rowcount == 1
