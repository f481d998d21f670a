"""The one delivery sequence every channel's actor runs; a channel supplies its steps.

    load -> check -> hold -> slot -> claim -> compose -> send -> record

`deliver` runs it for a `Channel`, which supplies `compose`, `send` and its hooks
(holds, an invalid recipient, a refused account, giving up). The rate slot is taken
first and the delivery is then loaded, checked and claimed in one database cycle, so
the check is never older than the wait; after an unsendable job a channel is
`careful` for a while and loads and checks before the wait too.

A channel whose transport takes the slot itself, one per provider call
(`Channel.paced_per_message` False: SMS through Kavenegar, whose calls carry many
messages, `sms/batch.py`), has no slot here: the slot of its call is taken after the
claim, in `send`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import StrEnum
from typing import Any

import redis
from dramatiq import Actor
from dramatiq.middleware import CurrentMessage
from sqlalchemy.exc import SQLAlchemyError

from dispatcher.channels import ChannelSpec
from dispatcher.delivery.control import is_held, pause
from dispatcher.delivery.groupcommit import WAIT_S
from dispatcher.delivery.guard import SLOW_DOWN_DELAY_MS, SendGuard
from dispatcher.delivery.state import FailureKind, Loaded
from dispatcher.errors import (
    AccountError,
    DeliveryError,
    InvalidRecipientError,
    PermanentDeliveryError,
    RenderError,
    ThrottledError,
    TransientDeliveryError,
)
from dispatcher.runtime import CompiledCampaign, Runtime
from dispatcher.store.models import DeliveryStatus, PausedBy, utcnow
from dispatcher.workers.onloop import run_on_loop

log = logging.getLogger("dispatcher.workers")

TRIPPED_DELAY_MS = 500  # a job of a campaign whose error-storm pause is being written
CAREFUL_S = 10.0  # after an unsendable job, load and check before the rate slot this long
RECORD_RETRY_S = (0.5, 2.0, 5.0)  # pauses before recording an accepted message again


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


UNSENDABLE = (Outcome.DUPLICATE, Outcome.HELD, Outcome.PAUSED, Outcome.WAITING)


class Careful:
    """After a job whose delivery was not sendable (a paused campaign, a duplicate job),
    the channel loads and checks before it waits for a rate slot, for `CAREFUL_S`."""

    def __init__(self) -> None:
        self.since = -CAREFUL_S  # time.monotonic() of the last unsendable job

    def start(self) -> None:
        self.since = time.monotonic()

    def end(self) -> None:
        self.since = -CAREFUL_S

    @property
    def on(self) -> bool:
        return time.monotonic() - self.since <= CAREFUL_S


class Job:
    """One delivery's attempt, as far as it got."""

    __slots__ = (
        "channel",
        "claimed",
        "compiled",
        "delivery_id",
        "guard",
        "loaded",
        "rt",
        "sent",
        "values",
    )

    def __init__(self, rt: Runtime, channel: Channel, delivery_id: int, guard: SendGuard) -> None:
        self.rt = rt
        self.channel = channel
        self.delivery_id = delivery_id
        self.guard = guard
        self.loaded: Loaded | None = None
        self.claimed = False
        self.compiled: CompiledCampaign | None = None
        self.sent = False  # the provider accepted the message ...
        self.values: dict[str, Any] = {}  # ... and these are to be recorded with `sent`

    def sendable(self, loaded: Loaded) -> bool:
        """Whether `begin` may claim it at once: pending, the campaign sending, the member
        reachable, no hold of the channel's. Runs on the database thread: quick."""
        return (
            loaded.delivery.status == DeliveryStatus.PENDING
            and not is_held(loaded.campaign)
            and loaded.unreachable(self.channel.name) is None
            and self.channel.hold(self.rt, loaded) is None
            and not self.guard.is_tripped(loaded.campaign.id)
        )


class Channel:
    """What a channel adds to the sequence: its spec, `compose`, `send` and hooks."""

    spec: ChannelSpec
    actor: Actor | None = None  # set once the actor is declared (to send again later)
    # Claim, compose, send and record on the process's event loop (`send_async`).
    on_loop: bool = False

    def __init__(self) -> None:
        self.careful = Careful()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def transport(self) -> str:
        return self.spec.transport

    @property
    def max_retries(self) -> int:
        return self.spec.max_retries

    def ready(self, rt: Runtime) -> bool:
        """False when the channel is not configured to send: the sequence loads, checks
        and `prepare`s first (which raises)."""
        return True

    def paced_per_message(self, rt: Runtime) -> bool:
        """Whether the sequence takes a rate slot per message, before the claim (True);
        False when the channel's transport takes one per provider call, after the claim
        (SMS through Kavenegar: one call carries many messages)."""
        return True

    def prepare(self, rt: Runtime, compiled: CompiledCampaign) -> None:
        """Raise ConfigurationError when the channel cannot send the campaign."""

    def hold(self, rt: Runtime, loaded: Loaded) -> Outcome | None:
        """A hold of the channel's own (a pause, a closed window), or None; no writes."""
        return None

    def on_hold(self, rt: Runtime, loaded: Loaded, outcome: Outcome) -> None:
        """What the channel records of a hold met at send time."""

    def compose(self, job: Job) -> Any:
        """The member's message (RenderError when the template cannot make it)."""
        raise NotImplementedError

    def send(self, job: Job, guard: SendGuard, message: Any) -> dict[str, Any]:
        """Hand the message to the provider; the values to record with `sent`."""
        raise NotImplementedError

    async def send_async(self, job: Job, message: Any) -> dict[str, Any]:
        """`send`, on the event loop (channels with `on_loop`)."""
        raise NotImplementedError

    def invalid_recipient(self, rt: Runtime, loaded: Loaded, exc: DeliveryError) -> None:
        """The provider says the recipient will never take a message."""

    def gave_up(self, rt: Runtime, loaded: Loaded, delivery_id: int, exc: DeliveryError) -> None:
        """The delivery was recorded failed for good (a refusal, or retries used up)."""

    def account_refused(self, rt: Runtime, loaded: Loaded, exc: AccountError) -> None:
        """The provider refuses our account: nothing can go until a person acts."""


def deliver(rt: Runtime, channel: Channel, delivery_id: int) -> str:
    """Run one delivery through the sequence; its outcome. Raises the error when
    Dramatiq is to retry the message."""
    guard = rt.guard(channel.transport)
    job = Job(rt, channel, delivery_id, guard)
    if channel.careful.on or not channel.ready(rt):
        job.loaded = rt.deliveries.load(delivery_id)
        outcome = unclaimed(job)
        if outcome is not None:
            return outcome
        assert job.loaded is not None
        channel.prepare(rt, rt.compiled(job.loaded.campaign))
    if channel.paced_per_message(rt):
        guard.before_send()  # may wait long: what follows reads the delivery afresh
    outcome = _on_loop(job, guard) if channel.on_loop else _here(job, guard)
    if outcome is None:
        return not_claimed(job)
    if outcome not in (Outcome.SENT, Outcome.UNRECORDED):  # failed, or slowed down
        return outcome
    assert job.loaded is not None
    return succeeded(guard, delivery_id, job.loaded, outcome == Outcome.SENT)


def _here(job: Job, guard: SendGuard) -> str | None:
    """Claim, compose, send and record on this thread; None when not claimed."""
    rt, channel, db, delivery_id = job.rt, job.channel, job.rt.deliveries, job.delivery_id
    job.loaded, job.claimed = db.begin(delivery_id, job.sendable)
    if not job.claimed:
        return None
    assert job.loaded is not None
    try:
        job.compiled = rt.compiled(job.loaded.campaign)
    except BaseException:
        db.release(delivery_id, None, "could not prepare the campaign")
        raise
    try:
        job.values = channel.send(job, guard, channel.compose(job))
    except DeliveryError as exc:
        return failed(rt, channel, guard, delivery_id, job.loaded, exc)
    job.sent = True
    recorded = db.mark_sent(delivery_id, sent_at=utcnow(), **job.values)
    return Outcome.SENT if recorded else Outcome.UNRECORDED


async def _claim_and_send(job: Job) -> str | None:
    """`_here` on the event loop: load and claim in one database cycle (with other
    jobs'), compose, send and record; None when not claimed."""
    rt, db, delivery_id = job.rt, job.rt.deliveries, job.delivery_id
    job.loaded, job.claimed = await db.begin_async(delivery_id, job.sendable)
    if not job.claimed:
        return None
    assert job.loaded is not None
    compiled = rt.compiled_if_cached(job.loaded.campaign)
    if compiled is None:  # once per campaign and process: it reads the database
        loop = asyncio.get_running_loop()
        compiled = await loop.run_in_executor(None, rt.compiled, job.loaded.campaign)
    job.compiled = compiled
    job.values = await job.channel.send_async(job, job.channel.compose(job))
    job.sent = True
    marked = await db.mark_sent_async(delivery_id, sent_at=utcnow(), **job.values)
    return Outcome.SENT if marked else Outcome.UNRECORDED


def _on_loop(job: Job, guard: SendGuard) -> str | None:
    """`_claim_and_send` on the process's event loop; its error recorded here, once
    it has really ended (so what is read of the job is final)."""
    return run_on_loop(
        job.rt.loop.loop,
        _claim_and_send(job),
        lambda outcome, error: _settle(job, guard, outcome, error),
        wait_s=WAIT_S,
    )


def _settle(
    job: Job, guard: SendGuard, outcome: str | None, error: BaseException | None
) -> str | None:
    if error is None:
        return outcome
    db, delivery_id = job.rt.deliveries, job.delivery_id
    if job.sent:  # accepted by the provider: never handed back, or it would go twice
        return _record_sent_late(job, error)
    if isinstance(error, asyncio.CancelledError):
        error = TransientDeliveryError(f"no outcome after {WAIT_S:.0f} s")
    if isinstance(error, DeliveryError) and job.claimed:
        assert job.loaded is not None
        return failed(job.rt, job.channel, guard, delivery_id, job.loaded, error)
    if job.claimed and job.compiled is None:  # the campaign could not be prepared
        db.release(delivery_id, None, "could not prepare the campaign")
    raise error  # not claimed (e.g. no outcome of the claim itself): nothing to undo


def _record_sent_late(job: Job, error: BaseException) -> str:
    """The provider accepted the message, but recording it failed (a database error,
    or the wait for the commit ran out): try again from here a few times. Raised, the
    job is retried and finds its delivery `sending`; only the lease takes it back."""
    db, delivery_id = job.rt.deliveries, job.delivery_id
    values = job.values
    for pause_s in RECORD_RETRY_S:
        time.sleep(pause_s)
        try:
            if db.mark_sent(delivery_id, sent_at=utcnow(), **values):
                return Outcome.SENT
            loaded = db.load(delivery_id)  # the first request committed after all?
        except (SQLAlchemyError, OSError) as exc:
            error = exc
            continue
        if loaded is not None and loaded.delivery.status == DeliveryStatus.SENT:
            return Outcome.SENT
        return Outcome.UNRECORDED
    log.error("delivery %s: sent, but it could not be recorded (%s)", delivery_id, error)
    raise error


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
    outcome = channel.hold(rt, loaded)
    if outcome is not None:
        channel.on_hold(rt, loaded, outcome)
    return outcome


def unclaimed(job: Job) -> str | None:
    """Why the delivery is not to be claimed (after the skip, for a member not
    reachable); None when it is sendable. An unsendable one makes the channel careful."""
    outcome = check(job.rt, job.channel, job.delivery_id, job.loaded)
    if outcome in UNSENDABLE:
        job.channel.careful.start()
    return outcome


def not_claimed(job: Job) -> str:
    """Why `begin` did not claim it: what the check says, or another job had it."""
    loaded = job.loaded
    if loaded is not None and job.guard.is_tripped(loaded.campaign.id):
        # This process just counted an error storm of the campaign and its pause is on
        # its way to the database: the job comes back shortly and is checked then
        # (held if paused, sent if a person resumed the campaign meanwhile).
        assert job.channel.actor is not None
        job.channel.actor.send_with_options(args=(job.delivery_id,), delay=TRIPPED_DELAY_MS)
        return Outcome.SLOWED
    outcome = unclaimed(job)
    if outcome is not None:
        return outcome
    job.channel.careful.start()  # sendable, but another job claimed it first
    return Outcome.DUPLICATE


def is_last_attempt(max_retries: int) -> bool:
    """True when a transient failure now must be final (no retry is left); outside a
    worker (a direct call) every attempt is the last."""
    message = CurrentMessage.get_current_message()
    if message is None:
        return True
    return int(message.options.get("retries", 0)) >= max_retries


def _kind(exc: PermanentDeliveryError) -> FailureKind:
    if isinstance(exc, RenderError):
        return FailureKind.RENDER
    if isinstance(exc, InvalidRecipientError):
        return FailureKind.INVALID_RECIPIENT
    return FailureKind.PERMANENT


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
        db.mark_failed(delivery_id, exc.code, str(exc), _kind(exc))
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
        reason = f"retries exhausted: {exc}"
        db.mark_failed(delivery_id, exc.code, reason, FailureKind.RETRIES_EXHAUSTED)
        channel.gave_up(rt, loaded, delivery_id, exc)
        outcome = Outcome.FAILED
    else:
        db.release(delivery_id, exc.code, str(exc))
        outcome = Outcome.RETRY
    storm = guard.count_failure(campaign, exc, slow_down=slow_down)
    if storm is not None:
        assert campaign.id is not None
        paused = pause(rt.engine, campaign.id, by=PausedBy.ERROR_STORM, reason=storm)
        guard.pause_written(campaign.id)
        if paused:
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
