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
from concurrent.futures import Future
from email.utils import parseaddr

import dramatiq
import redis
from jinja2 import TemplateError

from dispatcher.broker import register
from dispatcher.control import is_held
from dispatcher.delivery import Loaded
from dispatcher.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from dispatcher.groupcommit import WAIT_S, GroupCommit
from dispatcher.guard import SLOW_DOWN_DELAY_MS, SendGuard
from dispatcher.mime import build_message
from dispatcher.models import Campaign, Channel, DeliveryStatus
from dispatcher.runtime import Runtime, get_runtime
from dispatcher.workers.retries import is_last_attempt

log = logging.getLogger("dispatcher.email")

QUEUE = "email"
MAX_RETRIES = 8
MIN_BACKOFF_MS = 2_000
MAX_BACKOFF_MS = 10 * 60_000
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


def deliver_email(rt: Runtime, delivery_id: int) -> str:
    """Run one email delivery; return its outcome. Raises TransientDeliveryError to retry.

    Usually one round trip to the database thread loads and claims the delivery (after
    the rate slot, which is then awaited first), and one more records it `sent`, asked
    for by the event loop as soon as the relay accepted the message. A job whose
    delivery turns out not to be sendable (its campaign paused, a duplicate job) would
    have waited for a slot it does not use, so after meeting one, the process loads,
    checks, waits and claims in that order for `CAREFUL_S`.
    """
    global _unsendable_at
    db = rt.deliveries  # dispatcher.delivery's steps, group-committed with other threads'
    guard = rt.guard("smtp")
    fast = bool(rt.settings.mail_from) and time.monotonic() - _unsendable_at > CAREFUL_S
    if fast:
        guard.before_send()  # waits for a slot of SMTP_RATE_LIMIT; costs no retry
    loaded, claimed = db.begin(delivery_id, _sendable if fast else _never)
    if loaded is None:
        log.warning("delivery %s: not found", delivery_id)
        return "missing"
    if not claimed:
        outcome = _unclaimed(db, delivery_id, loaded)
        if outcome is not None:
            return outcome
        if fast:  # sendable, but another job claimed it first
            _unsendable_at = time.monotonic()
            return "duplicate"
        compiled = rt.compiled(loaded.campaign)
        if compiled.headers is None or not rt.settings.mail_from:
            raise ConfigurationError("MAIL_FROM is required to send email")
        guard.before_send()  # may wait long: consent and the campaign are read again
        loaded, claimed = db.begin(delivery_id, _sendable)
        if loaded is None:
            log.warning("delivery %s: not found", delivery_id)
            return "missing"
        if not claimed:
            return _unclaimed(db, delivery_id, loaded) or "duplicate"
    else:
        try:
            compiled = rt.compiled(loaded.campaign)
        except BaseException:
            db.release(delivery_id, None, "could not prepare the campaign")
            raise
    member = loaded.member
    assert member.id is not None and member.email and compiled.headers is not None
    url = rt.unsubscribe_url(member.id, Channel.EMAIL)
    try:
        rendered = compiled.templates.render_email(member.template_context(), url)
        raw = build_message(
            compiled.headers,
            to=member.email,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            delivery_id=delivery_id,
            unsubscribe_url=url,
        )
    except (TemplateError, ValueError) as exc:
        db.mark_failed(delivery_id, None, f"render: {exc}")
        log.warning("delivery %s: failed to render: %s", delivery_id, exc)
        return "failed"
    recorded: Future[bool] = Future()
    sending = asyncio.run_coroutine_threadsafe(
        _send_then_record(
            rt,
            recorded,
            delivery_id,
            sender=_envelope_sender(rt.settings.mail_from or ""),
            recipient=member.email,
            message=raw,
            name=f"{compiled.slug}-{delivery_id}",
            provider_id=compiled.headers.message_id(delivery_id),
        ),
        rt.loop.loop,
    )
    try:
        try:
            marked = recorded.result(WAIT_S)  # the job returns (and is acked) after the commit
        except TimeoutError:
            if recorded.done():  # the send's own outcome, not our wait
                raise
            sending.cancel()  # no send may finish (and record) after the release
            raise TransientDeliveryError(f"no outcome after {WAIT_S:.0f} s") from None
    except PermanentDeliveryError as exc:
        db.mark_failed(delivery_id, exc.code, str(exc))
        _count_failure(rt, guard, loaded.campaign, exc)
        log.info("delivery %s: failed (%s)", delivery_id, exc)
        return "failed"
    except TransientDeliveryError as exc:
        if exc.code in guard.slow_down_codes:  # 421/450/451/454: back off; a new message
            db.release(delivery_id, exc.code, str(exc))
            _count_failure(rt, guard, loaded.campaign, exc, slow_down=True)
            send_email.send_with_options(args=(delivery_id,), delay=SLOW_DOWN_DELAY_MS)
            return "slowed"
        if is_last_attempt(MAX_RETRIES):
            db.mark_failed(delivery_id, exc.code, f"retries exhausted: {exc}")
            _count_failure(rt, guard, loaded.campaign, exc)
            log.warning("delivery %s: failed after retries (%s)", delivery_id, exc)
            return "failed"
        db.release(delivery_id, exc.code, str(exc))
        _count_failure(rt, guard, loaded.campaign, exc)
        log.info("delivery %s: will retry (%s)", delivery_id, exc)
        raise
    if not marked:  # e.g. the lease took it back while it was being sent
        log.error("delivery %s: sent, but it was no longer 'sending' to record it", delivery_id)
    try:
        guard.sent(loaded.campaign)
    except redis.RedisError as exc:
        log.warning("delivery %s: could not reset the error count (%s)", delivery_id, exc)
    log.debug("delivery %s: sent", delivery_id)  # one line per send: DEBUG; the rest INFO+
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


def _count_failure(
    rt: Runtime,
    guard: SendGuard,
    campaign: Campaign,
    exc: DeliveryError,
    *,
    slow_down: bool = False,
) -> None:
    """The guard's part of a failed send, after the delivery's state is recorded: a
    Redis error here must not leave the delivery `sending`."""
    try:
        guard.failed(rt.engine, campaign, exc)
        if slow_down:
            guard.slow_down(exc)
    except redis.RedisError as err:
        log.warning("could not count a failed email send (%s)", err)


async def _send_then_record(
    rt: Runtime,
    recorded: Future[bool],
    delivery_id: int,
    *,
    sender: str,
    recipient: str,
    message: bytes,
    name: str,
    provider_id: str,
) -> None:
    """On the event loop: send, then hand `mark_sent` straight to the database thread,
    which completes `recorded` once committed (the worker thread is woken once)."""
    try:
        await rt.email_transport.send(
            sender=sender, recipient=recipient, message=message, name=name
        )
    except BaseException as exc:
        recorded.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
        return
    rt.deliveries.mark_sent_later(delivery_id, future=recorded, provider_id=provider_id)


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
