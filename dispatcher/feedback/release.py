"""Letting a campaign's SMS go once the send window opens.

The deliveries held back simply stay `pending` (the database is the truth); the
campaign's SMS hold records the window's next opening (`dispatcher.hold`), and
`release_waiting_sms` re-enqueues them once it is open (the scheduler's tick, or
`dispatcher sms release`). Every SMS transport keeps it.
"""

from __future__ import annotations

from datetime import datetime

from dramatiq import Actor, Broker
from sqlalchemy.engine import Engine

from dispatcher import hold
from dispatcher.queue.broker import enqueue_many
from dispatcher.queue.expansion import pending_ids
from dispatcher.settings import Settings
from dispatcher.sms.window import window_closed_until
from dispatcher.store.models import Channel


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
    Safe to run from several processes at once: clearing the wait is a conditional
    update, so one of them enqueues.
    """
    if window_closed_until(settings, now) is not None:
        return {}
    released: dict[int, int] = {}
    for campaign_id in hold.waiting(engine, Channel.SMS):
        if not hold.stop_waiting(engine, campaign_id, Channel.SMS):
            continue
        released[campaign_id] = sum(
            enqueue_many(broker, (actor.message(i) for i in ids))
            for ids in pending_ids(engine, campaign_id, Channel.SMS)
        )
    return released
