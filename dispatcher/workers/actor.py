"""The one sequence every channel's actor runs, with the channel's hooks.

load and check consent -> claim -> render -> send -> classify the outcome -> record.
A channel (`Channel` below) supplies who is unreachable, its own holds, and what to do
with an invalid recipient or a refused account; the rest is written here, once.
"""

from __future__ import annotations

import logging
from enum import StrEnum

import redis
from dramatiq import Actor
from dramatiq.middleware import CurrentMessage

from dispatcher.delivery.control import is_held, pause
from dispatcher.delivery.guard import SLOW_DOWN_DELAY_MS, SendGuard
from dispatcher.delivery.state import RETRIES_EXHAUSTED, Loaded
from dispatcher.errors import (
    AccountError,
    DeliveryError,
    InvalidRecipientError,
    PermanentDeliveryError,
    ThrottledError,
)
from dispatcher.runtime import Runtime
from dispatcher.store.models import Channel as ChannelName
from dispatcher.store.models import DeliveryStatus, PausedBy

log = logging.getLogger("dispatcher.workers")


class Outcome(StrEnum):
    """How one run of an actor ended."""

    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # the member cannot be reached on the channel now
    HELD = "held"  # the campaign is paused or cancelled: left pending
    PAUSED = "paused"  # the channel is paused for the campaign: left pending
    WAITING = "waiting"  # the SMS send window is closed: left pending
    SLOWED = "slowed"  # the provider asked us to slow down: sent again later
    RETRY = "retry"  # a transient failure: Dramatiq retries the message
    DUPLICATE = "duplicate"  # another job has it, or had it
    MISSING = "missing"  # no such delivery
    UNRECORDED = "unrecorded"  # sent, but it was no longer `sending` to record it


class Channel:
    """What a channel adds to the sequence. Subclasses override the hooks they need."""

    name: ChannelName
    transport: str  # the guard's name: "smtp" or "kavenegar"
    max_retries: int
    actor: Actor | None = None  # set once the actor is declared (to send again later)

    def held(self, rt: Runtime, loaded: Loaded) -> Outcome | None:
        """A hold of the channel's own (a pause, a closed window), or None."""
        return None

    def invalid_recipient(self, rt: Runtime, loaded: Loaded, exc: DeliveryError) -> None:
        """The provider says the recipient will never take a message."""

    def gave_up(self, rt: Runtime, loaded: Loaded, delivery_id: int, exc: DeliveryError) -> None:
        """The delivery was recorded failed for good (a refusal, or retries used up)."""

    def account_refused(self, rt: Runtime, loaded: Loaded, exc: AccountError) -> None:
        """The provider refuses our account: nothing can go until a person acts."""


def is_last_attempt(max_retries: int) -> bool:
    """True when a transient failure now must be final (no retry is left); outside a
    worker (a direct call) every attempt is the last."""
    message = CurrentMessage.get_current_message()
    if message is None:
        return True
    return int(message.options.get("retries", 0)) >= max_retries


def check(rt: Runtime, channel: Channel, delivery_id: int, loaded: Loaded | None) -> Outcome | None:
    """Why the delivery is not to be sent now (skipping it if the member is unreachable),
    or None to send it."""
    if loaded is None:
        log.warning("delivery %s: not found", delivery_id)
        return Outcome.MISSING
    if loaded.delivery.status != DeliveryStatus.PENDING:
        return Outcome.DUPLICATE
    if is_held(loaded.campaign):  # paused or cancelled: stays pending, resume re-enqueues
        return Outcome.HELD
    reason = loaded.unreachable(channel.name)  # opted out, no address, suppressed
    if reason is not None:
        rt.deliveries.skip(delivery_id, reason)
        log.info("delivery %s: skipped (%s)", delivery_id, reason)
        return Outcome.SKIPPED
    return channel.held(rt, loaded)


def render_failed(rt: Runtime, delivery_id: int, reason: str) -> Outcome:
    """The campaign's template could not make this message: failed, never retried."""
    rt.deliveries.mark_failed(delivery_id, None, f"render: {reason}")
    log.warning("delivery %s: failed to render: %s", delivery_id, reason)
    return Outcome.FAILED


def failed(
    rt: Runtime,
    channel: Channel,
    guard: SendGuard,
    delivery_id: int,
    loaded: Loaded,
    exc: DeliveryError,
) -> Outcome:
    """Record a failed send of a claimed delivery by the kind of error; raises `exc` when
    Dramatiq is to retry the message."""
    db, campaign = rt.deliveries, loaded.campaign
    slow_down = False
    if isinstance(exc, AccountError):
        db.release(delivery_id, exc.code, str(exc))
        channel.account_refused(rt, loaded, exc)
        return Outcome.PAUSED
    if isinstance(exc, PermanentDeliveryError):
        db.mark_failed(delivery_id, exc.code, str(exc))
        if isinstance(exc, InvalidRecipientError):
            channel.invalid_recipient(rt, loaded, exc)
        channel.gave_up(rt, loaded, delivery_id, exc)
        outcome = Outcome.FAILED
    elif isinstance(exc, ThrottledError):  # back off; sent again as a new message
        db.release(delivery_id, exc.code, str(exc))
        assert channel.actor is not None
        channel.actor.send_with_options(args=(delivery_id,), delay=SLOW_DOWN_DELAY_MS)
        slow_down, outcome = True, Outcome.SLOWED
    elif is_last_attempt(channel.max_retries):
        db.mark_failed(delivery_id, exc.code, f"{RETRIES_EXHAUSTED}: {exc}")
        channel.gave_up(rt, loaded, delivery_id, exc)
        outcome = Outcome.FAILED
    else:
        db.release(delivery_id, exc.code, str(exc))
        outcome = Outcome.RETRY
    storm = guard.count_failure(campaign, exc, slow_down=slow_down)
    if storm is not None:
        assert campaign.id is not None
        if pause(rt.engine, campaign.id, by=PausedBy.ERROR_STORM, reason=storm):
            log.warning(
                "campaign %s paused: %s",
                campaign.slug,
                storm,
                extra={"campaign": campaign.slug, "outcome": "paused"},
            )
    log.info("delivery %s: %s (%s)", delivery_id, outcome, exc)
    if outcome is Outcome.RETRY:
        raise exc
    return outcome


def succeeded(guard: SendGuard, delivery_id: int, loaded: Loaded, recorded: bool) -> Outcome:
    """After the provider took the message: the run of failures is over."""
    if not recorded:  # e.g. the lease took it back while it was being sent
        log.error("delivery %s: sent, but it was no longer 'sending' to record it", delivery_id)
    try:
        guard.sent(loaded.campaign)
    except redis.RedisError as exc:
        log.warning("delivery %s: could not reset the error count (%s)", delivery_id, exc)
    log.debug("delivery %s: sent", delivery_id)  # one line per send: DEBUG; the rest INFO+
    return Outcome.SENT
