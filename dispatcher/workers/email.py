"""The email actor: the skeleton of `actor.py`, run on the process's event loop.

The worker thread waits for the rate slot and hands the job to the event loop once;
there one database cycle loads and claims it (with other jobs'), the message is
rendered and sent over a kept-open connection, and a second cycle records it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import dramatiq
from jinja2 import TemplateError
from sqlalchemy.exc import SQLAlchemyError

from dispatcher.audience.bounces import record_send_failure
from dispatcher.definition.campaign import CampaignSpec
from dispatcher.delivery.control import is_held
from dispatcher.delivery.groupcommit import WAIT_S
from dispatcher.delivery.guard import SendGuard
from dispatcher.delivery.state import Loaded
from dispatcher.email.mime import MessageHeaders, build_message, encode_address
from dispatcher.email.verp import envelope_sender
from dispatcher.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from dispatcher.queue.abtest import is_waiting
from dispatcher.queue.broker import register
from dispatcher.runtime import CompiledCampaign, Runtime, get_runtime
from dispatcher.store.models import Channel, DeliveryStatus, utcnow
from dispatcher.workers.actor import Channel as ChannelHooks
from dispatcher.workers.actor import Outcome, check, failed, render_failed, succeeded

log = logging.getLogger("dispatcher.email")

QUEUE = "email"
MAX_RETRIES = 8
MIN_BACKOFF_MS = 2_000
MAX_BACKOFF_MS = 10 * 60_000
RECORD_RETRY_S = (0.5, 2.0, 5.0)  # pauses before recording an accepted message again
CANCEL_WAIT_S = 10.0  # for a send that timed out to stop, before it is handed back
CAREFUL_S = 10.0  # after an unsendable job, load before waiting for a rate slot this long


class Careful:
    """After a job whose delivery was not sendable (a paused campaign, a duplicate job),
    the process loads and checks before it waits for a rate slot, for `CAREFUL_S`."""

    def __init__(self) -> None:
        self.since = -CAREFUL_S  # time.monotonic() of the last unsendable job

    def start(self) -> None:
        self.since = time.monotonic()

    def end(self) -> None:
        self.since = -CAREFUL_S

    @property
    def on(self) -> bool:
        return time.monotonic() - self.since <= CAREFUL_S


careful = Careful()


class Email(ChannelHooks):
    name = Channel.EMAIL
    transport = "smtp"
    max_retries = MAX_RETRIES

    def gave_up(self, rt: Runtime, loaded: Loaded, delivery_id: int, exc: DeliveryError) -> None:
        record_send_failure(rt.engine, delivery_id, exc)  # a bounce, hard or soft

    def held(self, rt: Runtime, loaded: Loaded) -> Outcome | None:
        """An A/B test's rest waits for the winner (enqueued again once decided)."""
        return Outcome.WAITING if is_waiting(loaded.delivery, loaded.campaign) else None


EMAIL = Email()


def _sendable(loaded: Loaded) -> bool:
    """Whether `begin` may claim it at once: pending, campaign sending, member reachable,
    not waiting for an A/B test's winner."""
    return (
        loaded.delivery.status == DeliveryStatus.PENDING
        and not is_held(loaded.campaign)
        and loaded.unreachable(Channel.EMAIL) is None
        and not is_waiting(loaded.delivery, loaded.campaign)
    )


def variant_headers(
    headers: MessageHeaders, spec: CampaignSpec, variant: str | None
) -> MessageHeaders:
    """The campaign's headers, with an A/B variant's own sender (`[ab] froms`)."""
    sender = spec.ab.sender(variant) if spec.ab is not None and variant else None
    return replace(headers, from_header=encode_address(sender)) if sender else headers


def _never(loaded: Loaded) -> bool:
    return False


class _Job:
    """One delivery's attempt: what the event loop found, for the worker thread's
    bookkeeping when it ends in an error."""

    __slots__ = ("claimed", "compiled", "delivery_id", "error", "loaded", "outcome", "rt", "sent")

    def __init__(self, rt: Runtime, delivery_id: int) -> None:
        self.rt = rt
        self.delivery_id = delivery_id
        self.loaded: Loaded | None = None
        self.claimed = False
        self.compiled: CompiledCampaign | None = None
        self.sent = False  # the relay accepted the message
        self.outcome: str | None = None  # how the step on the event loop ended ...
        self.error: BaseException | None = None  # ... or what it raised

    async def begin_and_send(self) -> str | None:
        """Load and claim in one database cycle, then send; None when not claimed (the
        worker thread tells why)."""
        self.loaded, self.claimed = await self.rt.deliveries.begin_async(
            self.delivery_id, _sendable
        )
        if not self.claimed:
            return None
        return await self.send()

    async def send(self) -> str:
        """Render, send and record a claimed delivery; its outcome."""
        rt, loaded = self.rt, self.loaded
        assert loaded is not None and self.claimed
        compiled = rt.compiled_if_cached(loaded.campaign)
        if compiled is None:  # once per campaign and process: it reads the database
            compiled = await asyncio.get_running_loop().run_in_executor(
                None, rt.compiled, loaded.campaign
            )
        self.compiled = compiled
        member = loaded.member
        assert member.id is not None and member.email and compiled.headers is not None
        url = rt.unsubscribe_url(member.id, Channel.EMAIL, compiled.id)
        variant = loaded.delivery.variant  # an A/B test's ("A".."D"), or None
        try:
            rendered = compiled.templates.render_email(
                member.template_context(), url, rt.view_url(member.id, compiled.id), variant
            )
            rendered = rt.links.email(
                rendered, compiled.spec, compiled.id, self.delivery_id, variant
            )
            raw = build_message(
                variant_headers(compiled.headers, compiled.spec, variant),
                to=member.email,
                subject=rendered.subject,
                text=rendered.text,
                html=rendered.html,
                delivery_id=self.delivery_id,
                unsubscribe_url=url,
            )
        except (TemplateError, ValueError) as exc:
            raise _RenderFailed(str(exc)) from None
        await rt.email_transport.send(
            sender=envelope_sender(rt.settings, self.delivery_id),
            recipient=member.email,
            message=raw,
            name=f"{compiled.slug}-{self.delivery_id}",
        )
        self.sent = True
        marked = await rt.deliveries.mark_sent_async(
            self.delivery_id,
            provider_id=compiled.headers.message_id(self.delivery_id),
            sent_at=utcnow(),
        )
        return Outcome.SENT if marked else Outcome.UNRECORDED


class _RenderFailed(Exception):
    pass


def deliver_email(rt: Runtime, delivery_id: int) -> str:
    """Run one email delivery; return its outcome. Raises TransientDeliveryError to retry.

    The worker thread waits for the rate slot, then hands the delivery to the process's
    event loop and waits once: there one database cycle loads and claims it (with
    other jobs'), the message is rendered and sent over a kept-open connection, and a
    second cycle records it `sent`; the job returns (and is acknowledged) after that
    commit. A job whose delivery turns out not to be sendable (its campaign paused, a
    duplicate job) would have waited for a slot it does not use, so after meeting one,
    the process loads, checks, waits and claims in that order for `CAREFUL_S`.
    """
    guard = rt.guard(EMAIL.transport)
    job = _Job(rt, delivery_id)
    if rt.settings.mail_from and not careful.on:
        guard.before_send()  # waits for a slot of SMTP_RATE_LIMIT; costs no retry
        outcome = _on_loop(job, guard, job.begin_and_send())
        if outcome is None:
            return _not_claimed(job)
        return _after_send(job, guard, outcome)
    return _deliver_carefully(job, guard)


def _deliver_carefully(job: _Job, guard: SendGuard) -> str:
    """Load and check first, then wait for the rate slot, then claim and send."""
    rt, db, delivery_id = job.rt, job.rt.deliveries, job.delivery_id
    job.loaded, _ = db.begin(delivery_id, _never)
    if job.loaded is None:
        return _not_claimed(job)
    outcome = _unclaimed(rt, delivery_id, job.loaded)
    if outcome is not None:
        return outcome
    compiled = rt.compiled(job.loaded.campaign)
    if compiled.headers is None or not rt.settings.mail_from:
        raise ConfigurationError("MAIL_FROM is required to send email")
    guard.before_send()  # may wait long: consent and the campaign are read again
    job.loaded, job.claimed = db.begin(delivery_id, _sendable)
    if not job.claimed:
        return _not_claimed(job)
    outcome = _on_loop(job, guard, job.send())
    assert outcome is not None
    return _after_send(job, guard, outcome)


def _not_claimed(job: _Job) -> str:
    outcome = _unclaimed(job.rt, job.delivery_id, job.loaded)
    if outcome is not None:
        return outcome
    careful.start()  # sendable, but another job claimed it first
    return Outcome.DUPLICATE


def _on_loop(job: _Job, guard: SendGuard, step: Coroutine[Any, Any, str | None]) -> str | None:
    """Run `step` on the event loop, wait until it has ended, then record a failure.

    The bookkeeping starts only once the step has really ended (after a cancel too),
    so what it reads of the job (claimed? compiled?) is final, and a send cannot
    finish after its delivery was handed back.
    """
    ended: Future[None] = Future()
    running = asyncio.run_coroutine_threadsafe(_until_ended(job, step, ended), job.rt.loop.loop)
    interrupted: BaseException | None = None
    try:
        ended.result(WAIT_S)  # set after the commit that records the delivery
    except TimeoutError:
        if not _cancel(running, ended, job):
            raise TransientDeliveryError(f"no outcome after {WAIT_S:.0f} s") from None
    except BaseException as exc:  # raised into this thread: a time limit, a shutdown
        interrupted = exc
        if not _cancel(running, ended, job):
            raise
    outcome = _record_error(job, guard)
    if interrupted is not None:
        raise interrupted
    return outcome


async def _until_ended(
    job: _Job, step: Coroutine[Any, Any, str | None], ended: Future[None]
) -> None:
    """`step`, with its outcome or error kept in the job, whatever ends it."""
    try:
        job.outcome = await step
    except BaseException as exc:  # cancelled too: the worker thread records it
        job.error = exc
    finally:
        ended.set_result(None)


def _cancel(running: Future[None], ended: Future[None], job: _Job) -> bool:
    """Cancel the step and wait for it to end; False if it would not end."""
    running.cancel()
    try:
        ended.result(CANCEL_WAIT_S)
    except TimeoutError:  # stuck: left `sending`, for the lease to take back
        log.error("delivery %s: its send would not stop", job.delivery_id)
        return False
    return True


def _record_error(job: _Job, guard: SendGuard) -> str | None:
    """The step's outcome; or its error recorded (failed, handed back) or raised."""
    db, delivery_id, error = job.rt.deliveries, job.delivery_id, job.error
    if error is None:
        return job.outcome
    if job.sent:  # accepted by the relay: never handed back, or it would go twice
        return _record_sent_late(job, error)
    if isinstance(error, asyncio.CancelledError):
        error = TransientDeliveryError(f"no outcome after {WAIT_S:.0f} s")
    if isinstance(error, _RenderFailed):
        return render_failed(job.rt, delivery_id, str(error))
    if isinstance(error, DeliveryError) and job.claimed:
        assert job.loaded is not None
        return failed(job.rt, EMAIL, guard, delivery_id, job.loaded, error)
    if job.claimed and job.compiled is None:  # the campaign could not be prepared
        db.release(delivery_id, None, "could not prepare the campaign")
    raise error  # not claimed (e.g. no outcome of the claim itself): nothing to undo


def _record_sent_late(job: _Job, error: BaseException) -> str:
    """The relay accepted the message, but recording it failed (a database error, or
    the wait for the commit ran out): try again from here a few times. Raised, the job
    is retried and finds its delivery `sending`; only the lease would take it back."""
    db, delivery_id = job.rt.deliveries, job.delivery_id
    assert job.compiled is not None and job.compiled.headers is not None
    provider_id = job.compiled.headers.message_id(delivery_id)
    for pause in RECORD_RETRY_S:
        time.sleep(pause)
        try:
            if db.mark_sent(delivery_id, provider_id=provider_id, sent_at=utcnow()):
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


def _after_send(job: _Job, guard: SendGuard, outcome: str) -> str:
    if outcome not in (Outcome.SENT, Outcome.UNRECORDED):  # failed, or slowed down
        return outcome
    assert job.loaded is not None
    return succeeded(guard, job.delivery_id, job.loaded, outcome == Outcome.SENT)


def _unclaimed(rt: Runtime, delivery_id: int, loaded: Loaded | None) -> str | None:
    """Why `begin` did not claim it (after the skip, for a member not reachable); None
    when it was sendable."""
    outcome = check(rt, EMAIL, delivery_id, loaded)
    if outcome in (Outcome.DUPLICATE, Outcome.HELD):
        careful.start()
    return outcome


@register
@dramatiq.actor(
    queue_name=QUEUE,
    max_retries=MAX_RETRIES,
    min_backoff=MIN_BACKOFF_MS,
    max_backoff=MAX_BACKOFF_MS,
    throws=(PermanentDeliveryError,),
)
def send_email(delivery_id: int) -> None:
    """Send one campaign email, by delivery id."""
    deliver_email(get_runtime(), delivery_id)


EMAIL.actor = send_email
