"""The SMS channel's hooks on the sequence of `actor.py`.

Exactly once: every send passes `localid` = the delivery id, and a later attempt
first asks Kavenegar whether it has that message already (sent, not sent again).
Outside `SMS_SEND_WINDOW` the delivery stays pending until `sms release`.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq

from dispatcher import hold
from dispatcher.audience.consent import flag_mobile_invalid
from dispatcher.channels import SMS as SPEC
from dispatcher.compose import ComposedSms, compose_sms
from dispatcher.delivery.guard import SendGuard
from dispatcher.delivery.state import Loaded
from dispatcher.errors import AccountError, DeliveryError, PermanentDeliveryError
from dispatcher.feedback.reports import BLOCKED, honour_blocked
from dispatcher.masking import mask_mobile
from dispatcher.queue.broker import register
from dispatcher.runtime import Runtime, get_runtime
from dispatcher.sms.window import describe, window_closed_until
from dispatcher.workers.actor import Channel, Job, Outcome, deliver

log = logging.getLogger("dispatcher.sms")


class Sms(Channel):
    spec = SPEC

    def paced_per_message(self, rt: Runtime) -> bool:
        return not rt.sms_transport.paces_calls  # batched: a slot per Kavenegar call

    def hold(self, rt: Runtime, loaded: Loaded) -> Outcome | None:
        if loaded.hold is not None and loaded.hold.paused:
            return Outcome.PAUSED
        if window_closed_until(rt.settings, rt.clock()) is not None:
            return Outcome.WAITING
        return None

    def on_hold(self, rt: Runtime, loaded: Loaded, outcome: Outcome) -> None:
        campaign = loaded.campaign
        assert campaign.id is not None
        opening = window_closed_until(rt.settings, rt.clock())
        known = loaded.hold.waiting_until if loaded.hold is not None else None
        if outcome is Outcome.PAUSED:
            log.info("campaign %s: SMS paused", campaign.slug)
        elif (
            opening is not None
            and opening != known
            and hold.wait(rt.engine, campaign.id, SPEC.name, opening)
        ):
            log.info(
                "campaign %s: SMS wait for the send window (opens at %s)",
                campaign.slug,
                describe(opening, rt.settings.sms_zone),
            )

    def compose(self, job: Job) -> ComposedSms:
        rt, compiled, delivery_id = job.rt, job.compiled, job.delivery_id
        assert job.loaded is not None and compiled is not None
        return compose_sms(
            compiled.templates,
            job.loaded.member.template_context(),
            footer=rt.settings.sms_optout_footer,
            max_parts=rt.settings.sms_max_parts,
            track=lambda body: rt.links.sms(body, compiled.spec, compiled.id, delivery_id),
        )

    def send(self, job: Job, guard: SendGuard, message: ComposedSms) -> dict[str, Any]:
        loaded, compiled, delivery_id = job.loaded, job.compiled, job.delivery_id
        assert loaded is not None and compiled is not None and loaded.member.mobile
        transport = job.rt.sms_transport
        result = None
        if loaded.delivery.attempts > 0:  # a retry: Kavenegar may have it already
            guard.before_send()  # a slot of KAVENEGAR_RATE_LIMIT for the look-up too
            result = transport.status_by_localid(delivery_id)
        if result is not None:
            log.info("delivery %s: Kavenegar already has it; not sent again", delivery_id)
        else:
            result = transport.send(
                receptor=loaded.member.mobile,
                message=message.text,
                localid=delivery_id,
                campaign=compiled.slug,
            )
        # one line per send: DEBUG; the rest INFO+
        log.debug("delivery %s: sent to %s", delivery_id, mask_mobile(loaded.member.mobile))
        if result.status == BLOCKED and loaded.member.id is not None:
            # known now: the sync never asks again
            honour_blocked(job.rt.engine, loaded.member.id, delivery_id)
        return {
            "provider_id": str(result.messageid) if result.messageid is not None else None,
            "cost": result.cost,
            "provider_status": result.status,
            "sms_parts": message.length.parts,
        }

    def invalid_recipient(self, rt: Runtime, loaded: Loaded, exc: DeliveryError) -> None:
        member = loaded.member
        assert member.id is not None and member.mobile
        flag_mobile_invalid(rt.engine, member.id, member.mobile)
        log.info("%s is not a valid number (%s)", mask_mobile(member.mobile), exc)

    def account_refused(self, rt: Runtime, loaded: Loaded, exc: AccountError) -> None:
        campaign = loaded.campaign
        assert campaign.id is not None
        reason = f"{exc.problem} (Kavenegar {exc.code}: {getattr(exc, 'message', exc)})"
        if hold.pause(rt.engine, campaign.id, SPEC.name, reason):
            log.warning("campaign %s: SMS paused: %s", campaign.slug, reason)


SMS = Sms()


def deliver_sms(rt: Runtime, delivery_id: int) -> str:
    """Run one SMS delivery; its outcome (raises the error when Dramatiq is to retry)."""
    return deliver(rt, SMS, delivery_id)


@register
@dramatiq.actor(
    queue_name=SPEC.queue,
    max_retries=SPEC.max_retries,
    min_backoff=SPEC.min_backoff_ms,
    max_backoff=SPEC.max_backoff_ms,
    throws=(PermanentDeliveryError,),
)
def send_sms(delivery_id: int) -> None:
    """Send one campaign SMS, by delivery id."""
    deliver_sms(get_runtime(), delivery_id)


SMS.actor = send_sms
