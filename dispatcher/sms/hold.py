"""Holding a campaign's SMS back until the send window opens, and letting them go.

The deliveries simply stay `pending` (the database is the truth); the campaign records
the window's next opening, and `release_waiting_sms` re-enqueues them once it is open
(the scheduler's tick, or `dispatcher sms release`). Every SMS transport keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from dramatiq import Actor, Broker
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher.queue.broker import enqueue_many
from dispatcher.queue.expansion import pending_ids
from dispatcher.settings import Settings
from dispatcher.sms.window import is_open, next_opening
from dispatcher.store.models import Campaign, Channel, Delivery, DeliveryStatus


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime (a naive one, as databases give back, is taken as UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# -- send window --------------------------------------------------------------------------


def window_closed_until(settings: Settings, now: datetime) -> datetime | None:
    """The window's next opening if an SMS cannot go at `now`; None if it can.

    The same for every SMS transport: the outbox keeps the hours Kavenegar would."""
    window, tz = settings.send_window, settings.sms_zone
    if is_open(now, window, tz):
        return None
    return next_opening(now, window, tz)


def wait_for_window(engine: Engine, campaign: Campaign, opening: datetime) -> bool:
    """Record that the campaign's SMS wait for `opening`; False if already recorded."""
    assert campaign.id is not None
    stored = as_utc(opening)
    if campaign.sms_waiting_until is not None and as_utc(campaign.sms_waiting_until) == stored:
        return False
    with engine.begin() as conn:
        result = conn.execute(
            update(Campaign).where(col(Campaign.id) == campaign.id).values(sms_waiting_until=stored)
        )
        return result.rowcount == 1


def release_waiting_sms(
    engine: Engine,
    settings: Settings,
    broker: Broker,
    actor: Actor,
    *,
    now: datetime,
) -> dict[int, int]:
    """Re-enqueue the pending SMS of every campaign waiting for the window, if it is open.

    Returns `{campaign id: messages enqueued}`. Does nothing while the window is
    closed, nor for a paused campaign. The window is the one configured now (the
    recorded opening is for people to read), so a changed SMS_SEND_WINDOW applies.
    Safe to run from several processes at once: clearing `sms_waiting_until` is a
    conditional update, so one of them enqueues.
    """
    if window_closed_until(settings, now) is not None:
        return {}
    with Session(engine) as session:
        due = list(
            session.execute(
                select(col(Campaign.id)).where(
                    col(Campaign.sms_waiting_until).is_not(None),
                    col(Campaign.sms_paused_reason).is_(None),
                )
            ).scalars()
        )
    released: dict[int, int] = {}
    for campaign_id in due:
        with engine.begin() as conn:
            won = conn.execute(
                update(Campaign)
                .where(
                    col(Campaign.id) == campaign_id, col(Campaign.sms_waiting_until).is_not(None)
                )
                .values(sms_waiting_until=None)
            ).rowcount
        if not won:
            continue
        released[campaign_id] = sum(
            enqueue_many(broker, (actor.message(i) for i in ids))
            for ids in pending_ids(engine, campaign_id, Channel.SMS)
        )
    return released


# -- what is held -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmsHold:
    """Why a campaign's pending SMS are not going out, and how many there are."""

    pending: int
    paused: str | None = None
    waiting_until: datetime | None = None


def held_sms(engine: Engine, campaign_id: int) -> SmsHold | None:
    """The campaign's SMS hold, or None when its SMS are free to go."""
    with Session(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None or (
            campaign.sms_paused_reason is None and campaign.sms_waiting_until is None
        ):
            return None
        pending = session.execute(
            select(func.count())
            .select_from(Delivery)
            .where(
                col(Delivery.campaign_id) == campaign_id,
                col(Delivery.channel) == Channel.SMS,
                col(Delivery.status) == DeliveryStatus.PENDING,
            )
        ).scalar_one()
        waiting = campaign.sms_waiting_until
        return SmsHold(
            pending=pending,
            paused=campaign.sms_paused_reason,
            waiting_until=as_utc(waiting) if waiting is not None else None,
        )
