"""The email channel's hooks on the sequence of `actor.py`, run on the event loop:
there one database cycle loads and claims a job (with other jobs'), the message is
composed and sent over a kept-open connection, and a second cycle records it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import dramatiq

from dispatcher.channels import EMAIL as SPEC
from dispatcher.compose import compose_email
from dispatcher.definition.campaign import CampaignSpec
from dispatcher.delivery.state import Loaded
from dispatcher.email.mime import MessageHeaders, encode_address
from dispatcher.email.verp import envelope_sender
from dispatcher.errors import ConfigurationError, DeliveryError, PermanentDeliveryError
from dispatcher.feedback.event import record_send_failure
from dispatcher.queue.abtest import is_waiting
from dispatcher.queue.broker import register
from dispatcher.runtime import CompiledCampaign, Runtime, get_runtime
from dispatcher.workers.actor import Channel, Job, Outcome, deliver

log = logging.getLogger("dispatcher.email")


class Email(Channel):
    spec = SPEC
    on_loop = True

    def ready(self, rt: Runtime) -> bool:
        return bool(rt.settings.mail_from)

    def prepare(self, rt: Runtime, compiled: CompiledCampaign) -> None:
        if compiled.headers is None or not rt.settings.mail_from:
            raise ConfigurationError("MAIL_FROM is required to send email")

    def compose(self, job: Job) -> bytes | None:
        rt, compiled, member = job.rt, job.compiled, job.loaded.member if job.loaded else None
        assert compiled is not None and member is not None and member.id is not None
        assert compiled.headers is not None and job.loaded is not None
        variant = job.loaded.delivery.variant  # an A/B test's ("A".."D"), or None
        return compose_email(
            compiled.templates,
            member.template_context(),
            unsubscribe_url=rt.unsubscribe_url(member.id, SPEC.name, compiled.id),
            view_url=rt.view_url(member.id, compiled.id),
            headers=variant_headers(compiled.headers, compiled.spec, variant),
            to=member.email,
            delivery_id=job.delivery_id,
            variant=variant,
            click=(
                rt.links.url_for(compiled.id, job.delivery_id, variant)
                if compiled.spec.track_clicks
                else None
            ),
        ).raw

    async def send_async(self, job: Job, message: bytes | None) -> dict[str, Any]:
        rt, compiled, delivery_id = job.rt, job.compiled, job.delivery_id
        assert job.loaded and compiled and compiled.headers and message is not None
        await rt.email_transport.send(
            sender=envelope_sender(rt.settings, delivery_id),
            recipient=job.loaded.member.email or "",
            message=message,
            name=f"{compiled.slug}-{delivery_id}",
        )
        return {"provider_id": compiled.headers.message_id(delivery_id)}

    def gave_up(self, rt: Runtime, loaded: Loaded, delivery_id: int, exc: DeliveryError) -> None:
        record_send_failure(rt.engine, delivery_id, exc)  # a bounce, hard or soft

    def hold(self, rt: Runtime, loaded: Loaded) -> Outcome | None:
        """An A/B test's rest waits for the winner (enqueued again once decided)."""
        return Outcome.WAITING if is_waiting(loaded.delivery, loaded.campaign) else None


EMAIL = Email()


def variant_headers(
    headers: MessageHeaders, spec: CampaignSpec, variant: str | None
) -> MessageHeaders:
    """The campaign's headers, with an A/B variant's own sender (`[ab] froms`)."""
    sender = spec.ab.sender(variant) if spec.ab is not None and variant else None
    return replace(headers, from_header=encode_address(sender)) if sender else headers


def deliver_email(rt: Runtime, delivery_id: int) -> str:
    """Run one email delivery; its outcome. Raises TransientDeliveryError to retry."""
    return deliver(rt, EMAIL, delivery_id)


@register
@dramatiq.actor(
    queue_name=SPEC.queue,
    max_retries=SPEC.max_retries,
    min_backoff=SPEC.min_backoff_ms,
    max_backoff=SPEC.max_backoff_ms,
    throws=(PermanentDeliveryError,),
)
def send_email(delivery_id: int) -> None:
    """Send one campaign email, by delivery id."""
    deliver_email(get_runtime(), delivery_id)


EMAIL.actor = send_email
