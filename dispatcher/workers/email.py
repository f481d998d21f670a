"""The email actor: load -> consent -> claim -> render -> send -> record.

The queue message carries the delivery id only. Everything else (the member's
address and consent, the campaign's templates) is read when the job runs, so an
opt-out or a changed address after expansion is honoured.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from email.utils import parseaddr
from typing import Any

import dramatiq
import redis
from jinja2 import TemplateError
from sqlalchemy.exc import SQLAlchemyError

from dispatcher.delivery.control import is_held
from dispatcher.delivery.groupcommit import WAIT_S, GroupCommit
from dispatcher.delivery.guard import SLOW_DOWN_DELAY_MS, SendGuard
from dispatcher.delivery.state import RETRIES_EXHAUSTED, Loaded
from dispatcher.email.mime import build_message
from dispatcher.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from dispatcher.queue.broker import register
from dispatcher.runtime import CompiledCampaign, Runtime, get_runtime
from dispatcher.store.models import Channel, DeliveryStatus, utcnow
from dispatcher.workers.retries import is_last_attempt

log = logging.getLogger("dispatcher.email")

QUEUE = "email"
MAX_RETRIES = 8
MIN_BACKOFF_MS = 2_000
MAX_BACKOFF_MS = 10 * 60_000
RECORD_RETRY_S = (0.5, 2.0, 5.0)  # pauses before recording an accepted message again
CANCEL_WAIT_S = 10.0  # for a send that timed out to stop, before it is handed back
CAREFUL_S = 10.0  # after an unsendable job, load before waiting for a rate slot this long

_unsendable_at = -CAREFUL_S  # time.monotonic() of the last one in this process


def _sendable(loaded: Loaded) -> bool:
    """Whether `begin` may claim it at once: pending, campaign sending, member reachable."""
    return (
        loaded.delivery.status == DeliveryStatus.PENDING
        and not is_held(loaded.campaign)
        and loaded.member.opted_in(Channel.EMAIL)
    )


def _never(loaded: Loaded) -> bool:
    return False


@functools.lru_cache(maxsize=4)
def _envelope_sender(mail_from: str) -> str:
    return parseaddr(mail_from)[1]


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
        try:
            rendered = compiled.templates.render_email(
                member.template_context(), url, rt.view_url(member.id, compiled.id)
            )
            raw = build_message(
                compiled.headers,
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
            sender=_envelope_sender(rt.settings.mail_from or ""),
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
        return "sent" if marked else "unrecorded"


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
    guard = rt.guard("smtp")
    job = _Job(rt, delivery_id)
    if rt.settings.mail_from and time.monotonic() - _unsendable_at > CAREFUL_S:
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
    outcome = _unclaimed(db, delivery_id, job.loaded)
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
    global _unsendable_at
    if job.loaded is None:
        log.warning("delivery %s: not found", job.delivery_id)
        return "missing"
    outcome = _unclaimed(job.rt.deliveries, job.delivery_id, job.loaded)
    if outcome is not None:
        return outcome
    _unsendable_at = time.monotonic()  # sendable, but another job claimed it first
    return "duplicate"


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
        db.mark_failed(delivery_id, None, f"render: {error}")
        log.warning("delivery %s: failed to render: %s", delivery_id, error)
        return "failed"
    if isinstance(error, DeliveryError) and job.claimed:
        return _failed(job, guard, error)
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
                return "sent"
            loaded = db.load(delivery_id)  # the first request committed after all?
        except (SQLAlchemyError, OSError) as exc:
            error = exc
            continue
        if loaded is not None and loaded.delivery.status == DeliveryStatus.SENT:
            return "sent"
        return "unrecorded"
    log.error("delivery %s: sent, but it could not be recorded (%s)", delivery_id, error)
    raise error


def _failed(job: _Job, guard: SendGuard, exc: DeliveryError) -> str:
    """Record a failed send of a claimed delivery: failed, retried or slowed down."""
    rt, db, delivery_id = job.rt, job.rt.deliveries, job.delivery_id
    assert job.loaded is not None
    campaign = job.loaded.campaign
    if isinstance(exc, PermanentDeliveryError):
        db.mark_failed(delivery_id, exc.code, str(exc))
        guard.count_failure(rt.engine, campaign, exc)
        log.info("delivery %s: failed (%s)", delivery_id, exc)
        return "failed"
    if exc.code in guard.slow_down_codes:  # 421/450/451/454: back off; a new message
        db.release(delivery_id, exc.code, str(exc))
        guard.count_failure(rt.engine, campaign, exc, slow_down=True)
        send_email.send_with_options(args=(delivery_id,), delay=SLOW_DOWN_DELAY_MS)
        return "slowed"
    if is_last_attempt(MAX_RETRIES):
        db.mark_failed(delivery_id, exc.code, f"{RETRIES_EXHAUSTED}: {exc}")
        guard.count_failure(rt.engine, campaign, exc)
        log.warning("delivery %s: failed after retries (%s)", delivery_id, exc)
        return "failed"
    db.release(delivery_id, exc.code, str(exc))
    guard.count_failure(rt.engine, campaign, exc)
    log.info("delivery %s: will retry (%s)", delivery_id, exc)
    raise exc


def _after_send(job: _Job, guard: SendGuard, outcome: str) -> str:
    if outcome not in ("sent", "unrecorded"):  # failed, or slowed down
        return outcome
    if outcome == "unrecorded":  # e.g. the lease took it back while it was being sent
        log.error("delivery %s: sent, but it was no longer 'sending' to record it", job.delivery_id)
    assert job.loaded is not None
    try:
        guard.sent(job.loaded.campaign)
    except redis.RedisError as exc:
        log.warning("delivery %s: could not reset the error count (%s)", job.delivery_id, exc)
    log.debug("delivery %s: sent", job.delivery_id)  # one line per send: DEBUG; the rest INFO+
    return "sent"


def _unclaimed(db: GroupCommit, delivery_id: int, loaded: Loaded) -> str | None:
    """Why `begin` did not claim it (and the skip, for a member not reachable); None
    when it was sendable."""
    global _unsendable_at
    if loaded.delivery.status != DeliveryStatus.PENDING:
        _unsendable_at = time.monotonic()
        return "duplicate"
    if is_held(loaded.campaign):  # paused or cancelled: stays pending, resume re-enqueues
        _unsendable_at = time.monotonic()
        return "held"
    member = loaded.member
    if not member.opted_in(Channel.EMAIL):
        reason = "opted out" if not member.email_opt_in else "no email address"
        db.skip(delivery_id, reason)
        log.info("delivery %s: skipped (%s)", delivery_id, reason)
        return "skipped"
    return None


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
