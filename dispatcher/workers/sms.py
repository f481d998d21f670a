"""The SMS actor: load -> consent -> holds -> claim -> render -> send -> record.

The queue message carries the delivery id only; the member's number and consent
and the campaign's state are read when the job runs.

Exactly once. Every send passes `localid` = the delivery id, and Kavenegar drops a
second message with a `localid` it has seen. On top of that, an attempt that
follows an earlier one (the delivery's `attempts` is not zero: a timeout, a dropped
connection, a 451, a crash and a resume) first asks `sms/statuslocalmessageid`
whether Kavenegar has the message already; if it does, the delivery is recorded as
sent from that answer and nothing is sent again.

Pacing: before claiming, the actor waits for a slot of the shared, adaptive
`KAVENEGAR_RATE_LIMIT` (`rt.guard("kavenegar")`, see `dispatcher.delivery.guard`): one slot
per Kavenegar call, so two when a retry first asks `statuslocalmessageid`.

Kavenegar's codes: 451 ("too many calls") halves the sending rate of every worker
and hands the delivery back, to be sent again after a short delay as a new message,
without using a retry; 409 and network errors are transient (the delivery goes back
to pending, the message is retried with backoff); 411 fails the delivery and flags
the member's mobile invalid; 418, 401 and 403 pause the campaign's SMS (see
`dispatcher.sms.hold`); any other code fails the delivery with code and message.
Failed sends (and 451s) count towards the error storm (`MAX_SEND_ERRORS`), as for
email; a success ends the run.

Outside `SMS_SEND_WINDOW` the delivery is left pending and the campaign is marked
as waiting for the window (see `dispatcher.sms.hold`).
"""

from __future__ import annotations

import logging

import dramatiq
import redis
from jinja2 import TemplateError
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col

from dispatcher.delivery import state as delivery
from dispatcher.delivery.control import is_held
from dispatcher.delivery.groupcommit import GroupCommit
from dispatcher.delivery.guard import SLOW_DOWN_DELAY_MS
from dispatcher.delivery.state import Loaded
from dispatcher.errors import PermanentDeliveryError, TransientDeliveryError
from dispatcher.masking import mask_mobile
from dispatcher.queue.broker import register
from dispatcher.runtime import Runtime, get_runtime
from dispatcher.sms.hold import pause_sms, wait_for_window, window_closed_until
from dispatcher.sms.kavenegar import KavenegarAccountError, KavenegarReceptorError
from dispatcher.sms.text import measure, with_footer
from dispatcher.sms.transport import SmsResult
from dispatcher.sms.window import describe
from dispatcher.store.models import Channel, DeliveryStatus, Member, utcnow
from dispatcher.workers.retries import is_last_attempt

log = logging.getLogger("dispatcher.sms")

QUEUE = "sms"
MAX_RETRIES = 8
MIN_BACKOFF_MS = 5_000
MAX_BACKOFF_MS = 10 * 60_000


def deliver_sms(rt: Runtime, delivery_id: int) -> str:
    """Run one SMS delivery; return its outcome. Raises TransientDeliveryError to retry.

    Outcomes: `sent`, `failed`, `skipped`; `held` (campaign paused or cancelled),
    `paused` (its SMS paused) and `waiting` (send window closed), all left pending;
    `slowed` (Kavenegar said 451: sent again later, no retry used); `duplicate`
    (another job has it), `missing`.
    """
    engine = rt.engine
    db = rt.deliveries  # dispatcher.delivery.state's steps, group-committed with other threads'
    loaded = db.load(delivery_id)
    outcome = _unsendable(rt, delivery_id, loaded)
    if outcome is not None:
        return outcome
    assert loaded is not None
    compiled = rt.compiled(loaded.campaign)
    retrying = loaded.delivery.attempts > 0
    guard = rt.guard("kavenegar")
    for _ in range(2 if retrying else 1):
        guard.before_send()  # waits for a slot of KAVENEGAR_RATE_LIMIT; costs no retry
    # The wait may be long: an opt-out, a pause or a changed number meanwhile counts.
    loaded = db.load(delivery_id)
    outcome = _unsendable(rt, delivery_id, loaded)
    if outcome is not None:
        return outcome
    assert loaded is not None
    member, campaign = loaded.member, loaded.campaign
    if not db.claim(delivery_id):
        return "duplicate"
    assert member.id is not None and member.mobile
    mobile = member.mobile
    try:
        body = compiled.templates.render_sms(member.template_context())
        if not body.strip():
            raise ValueError("the message is empty")
    except (TemplateError, ValueError) as exc:
        db.mark_failed(delivery_id, None, f"render: {exc}")
        log.warning("delivery %s: failed to render: %s", delivery_id, exc)
        return "failed"
    text = with_footer(body, rt.settings.sms_optout_footer)
    transport = rt.sms_transport
    try:
        result = transport.status_by_localid(delivery_id) if retrying else None
        if result is not None:
            log.info("delivery %s: Kavenegar already has it; not sent again", delivery_id)
        else:
            result = transport.send(
                receptor=mobile, message=text, localid=delivery_id, campaign=compiled.slug
            )
    except KavenegarReceptorError as exc:
        db.mark_failed(delivery_id, exc.code, str(exc))
        _flag_mobile_invalid(engine, member.id, mobile)
        guard.count_failure(engine, campaign, exc)
        log.info("delivery %s: failed, %s is not valid (%s)", delivery_id, mask_mobile(mobile), exc)
        return "failed"
    except KavenegarAccountError as exc:
        db.release(delivery_id, exc.code, str(exc))
        reason = f"{exc.problem} (Kavenegar {exc.code}: {exc.message})"
        assert campaign.id is not None
        if pause_sms(engine, campaign.id, reason):
            log.warning("campaign %s: SMS paused: %s", campaign.slug, reason)
        return "paused"
    except PermanentDeliveryError as exc:
        db.mark_failed(delivery_id, exc.code, str(exc))
        guard.count_failure(engine, campaign, exc)
        log.info("delivery %s: failed (%s)", delivery_id, exc)
        return "failed"
    except TransientDeliveryError as exc:
        if exc.code in guard.slow_down_codes:  # 451: back off; a new message, no retry
            db.release(delivery_id, exc.code, str(exc))
            guard.count_failure(engine, campaign, exc, slow_down=True)
            send_sms.send_with_options(args=(delivery_id,), delay=SLOW_DOWN_DELAY_MS)
            return "slowed"
        if is_last_attempt(MAX_RETRIES):
            reason = f"{delivery.RETRIES_EXHAUSTED}: {exc}"
            db.mark_failed(delivery_id, exc.code, reason)
            guard.count_failure(engine, campaign, exc)
            log.warning("delivery %s: failed after retries (%s)", delivery_id, exc)
            return "failed"
        db.release(delivery_id, exc.code, str(exc))
        guard.count_failure(engine, campaign, exc)
        log.info("delivery %s: will retry (%s)", delivery_id, exc)
        raise
    parts = measure(text).parts
    if not _record_sent(db, delivery_id, result, parts=parts):  # e.g. the lease took it back
        log.error("delivery %s: sent, but it was no longer 'sending' to record it", delivery_id)
    try:
        guard.sent(campaign)
    except redis.RedisError as exc:
        log.warning("delivery %s: could not reset the error count (%s)", delivery_id, exc)
    log.info("delivery %s: sent to %s", delivery_id, mask_mobile(mobile))
    return "sent"


def _unsendable(rt: Runtime, delivery_id: int, loaded: Loaded | None) -> str | None:
    """Why it is not to be sent now (after a skip or a wait for the window, as need
    be), or None to send it."""
    if loaded is None:
        log.warning("delivery %s: not found", delivery_id)
        return "missing"
    if loaded.delivery.status != DeliveryStatus.PENDING:
        return "duplicate"
    if is_held(loaded.campaign):  # paused or cancelled: stays pending, resume re-enqueues
        return "held"
    member, campaign = loaded.member, loaded.campaign
    if not member.opted_in(Channel.SMS):
        reason = (
            "opted out"
            if not member.sms_opt_in
            else "mobile invalid"
            if member.mobile_invalid
            else "no mobile number"
        )
        rt.deliveries.skip(delivery_id, reason)
        log.info("delivery %s: skipped (%s)", delivery_id, reason)
        return "skipped"
    if campaign.sms_paused_reason:
        log.info("delivery %s: campaign %s SMS paused", delivery_id, campaign.slug)
        return "paused"
    opening = window_closed_until(rt.settings, rt.clock())
    if opening is not None:
        if wait_for_window(rt.engine, campaign, opening):
            log.info(
                "campaign %s: SMS wait for the send window (opens at %s)",
                campaign.slug,
                describe(opening, rt.settings.sms_zone),
            )
        return "waiting"
    return None


def _record_sent(db: GroupCommit, delivery_id: int, result: SmsResult, *, parts: int) -> bool:
    return db.mark_sent(
        delivery_id,
        provider_id=str(result.messageid) if result.messageid is not None else None,
        cost=result.cost,
        provider_status=result.status,
        sent_at=utcnow(),
        sms_parts=parts,
    )


def _flag_mobile_invalid(engine: Engine, member_id: int, mobile: str) -> None:
    """Flag the number Kavenegar rejected (not a number changed since)."""
    with engine.begin() as conn:
        conn.execute(
            update(Member)
            .where(col(Member.id) == member_id, col(Member.mobile) == mobile)
            .values(mobile_invalid=True, updated_at=utcnow())
        )


@register
@dramatiq.actor(
    queue_name=QUEUE,
    max_retries=MAX_RETRIES,
    min_backoff=MIN_BACKOFF_MS,
    max_backoff=MAX_BACKOFF_MS,
    throws=(PermanentDeliveryError,),
)
def send_sms(delivery_id: int) -> None:
    """Send one campaign SMS, by delivery id."""
    deliver_sms(get_runtime(), delivery_id)
