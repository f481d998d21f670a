"""The SMS actor: the skeleton of `actor.py`, with the SMS channel's hooks.

Exactly once: every send passes `localid` = the delivery id, and a later attempt
first asks Kavenegar whether it has that message already (sent, not sent again).
Outside `SMS_SEND_WINDOW` the delivery stays pending until `sms release`.
"""

from __future__ import annotations

import logging

import dramatiq
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col

from dispatcher.delivery.control import pause_sms
from dispatcher.delivery.state import Loaded
from dispatcher.errors import AccountError, DeliveryError, PermanentDeliveryError
from dispatcher.masking import mask_mobile
from dispatcher.queue.broker import register
from dispatcher.runtime import Runtime, get_runtime
from dispatcher.sms.hold import wait_for_window, window_closed_until
from dispatcher.sms.sync import BLOCKED, honour_blocked
from dispatcher.sms.text import measure, render_text
from dispatcher.sms.window import describe
from dispatcher.store.models import Channel, Member, utcnow
from dispatcher.workers.actor import Channel as ChannelHooks
from dispatcher.workers.actor import Outcome, check, failed, succeeded

log = logging.getLogger("dispatcher.sms")

QUEUE = "sms"
MAX_RETRIES = 8
MIN_BACKOFF_MS = 5_000
MAX_BACKOFF_MS = 10 * 60_000


class Sms(ChannelHooks):
    name = Channel.SMS
    transport = "kavenegar"
    max_retries = MAX_RETRIES

    def held(self, rt: Runtime, loaded: Loaded) -> Outcome | None:
        campaign = loaded.campaign
        if campaign.sms_paused_reason:
            log.info("campaign %s: SMS paused", campaign.slug)
            return Outcome.PAUSED
        opening = window_closed_until(rt.settings, rt.clock())
        if opening is None:
            return None
        if wait_for_window(rt.engine, campaign, opening):
            log.info(
                "campaign %s: SMS wait for the send window (opens at %s)",
                campaign.slug,
                describe(opening, rt.settings.sms_zone),
            )
        return Outcome.WAITING

    def invalid_recipient(self, rt: Runtime, loaded: Loaded, exc: DeliveryError) -> None:
        member = loaded.member
        assert member.id is not None and member.mobile
        _flag_mobile_invalid(rt.engine, member.id, member.mobile)
        log.info("%s is not a valid number (%s)", mask_mobile(member.mobile), exc)

    def account_refused(self, rt: Runtime, loaded: Loaded, exc: AccountError) -> None:
        campaign = loaded.campaign
        assert campaign.id is not None
        reason = f"{exc.problem} (Kavenegar {exc.code}: {getattr(exc, 'message', exc)})"
        if pause_sms(rt.engine, campaign.id, reason):
            log.warning("campaign %s: SMS paused: %s", campaign.slug, reason)


SMS = Sms()


def deliver_sms(rt: Runtime, delivery_id: int) -> Outcome:
    """Run one SMS delivery; its outcome (raises the error when Dramatiq is to retry)."""
    db = rt.deliveries  # the delivery steps, group-committed with other threads'
    loaded = db.load(delivery_id)
    outcome = check(rt, SMS, delivery_id, loaded)
    if outcome is not None:
        return outcome
    assert loaded is not None
    compiled = rt.compiled(loaded.campaign)
    retrying = loaded.delivery.attempts > 0
    guard = rt.guard(SMS.transport)
    for _ in range(2 if retrying else 1):
        guard.before_send()  # a slot of KAVENEGAR_RATE_LIMIT per call; costs no retry
    # The wait may be long: an opt-out, a pause or a changed number meanwhile counts.
    loaded = db.load(delivery_id)
    outcome = check(rt, SMS, delivery_id, loaded)
    if outcome is not None:
        return outcome
    assert loaded is not None
    if not db.claim(delivery_id):
        return Outcome.DUPLICATE
    mobile = loaded.member.mobile
    assert mobile
    transport = rt.sms_transport
    try:
        text = render_text(  # a template error or limit: a RenderError, failed and counted
            compiled.templates,
            loaded.member.template_context(),
            footer=rt.settings.sms_optout_footer,
            max_parts=rt.settings.sms_max_parts,
            track=lambda body: rt.links.sms(body, compiled.spec, compiled.id, delivery_id),
        )
        result = transport.status_by_localid(delivery_id) if retrying else None
        if result is not None:
            log.info("delivery %s: Kavenegar already has it; not sent again", delivery_id)
        else:
            result = transport.send(
                receptor=mobile, message=text, localid=delivery_id, campaign=compiled.slug
            )
    except DeliveryError as exc:
        return failed(rt, SMS, guard, delivery_id, loaded, exc)
    parts = measure(text).parts
    recorded = db.mark_sent(
        delivery_id,
        provider_id=str(result.messageid) if result.messageid is not None else None,
        cost=result.cost,
        provider_status=result.status,
        sent_at=utcnow(),
        sms_parts=parts,
    )
    log.info("delivery %s: sent to %s", delivery_id, mask_mobile(mobile))
    if result.status == BLOCKED and loaded.member.id is not None:
        honour_blocked(rt.engine, loaded.member.id)  # known now: the sync never asks again
    return succeeded(guard, delivery_id, loaded, recorded)


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


SMS.actor = send_sms
