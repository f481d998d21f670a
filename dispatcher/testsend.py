"""Test copies: one real email or SMS of a campaign to a staff address, recording nothing.

`campaign test` renders the campaign for one member (the sample member by default),
prefixes the email's subject with `[آزمایشی] ` and hands each copy to the configured
transport. No campaign or delivery row is written and consent is not checked (the
addresses are the staff's); the SMS send window still applies.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from dispatcher.audience.normalise import normalise_email, normalise_mobile
from dispatcher.compose import compile_templates, compose_email, compose_sms
from dispatcher.definition.campaign import CampaignSpec
from dispatcher.email.mime import MessageHeaders
from dispatcher.errors import DeliveryError, InputError
from dispatcher.masking import mask_email, mask_mobile
from dispatcher.runtime import Runtime
from dispatcher.sms.window import describe, window_closed_until
from dispatcher.store.models import Channel

PREFIX = "[آزمایشی] "


@dataclass(frozen=True, slots=True)
class TestCopy:
    """What became of one test copy: `sent`, `held` (SMS window), `failed` (the
    transport refused it, or the template failed for the member) or `none` (the
    campaign has no such channel)."""

    channel: Channel
    address: str  # masked
    outcome: str
    detail: str = ""


def targets(addresses: list[str]) -> list[tuple[Channel, str]]:
    """Each `--to`: an email address, or a mobile in any form the import accepts.
    InputError naming every one that is neither."""
    found: list[tuple[Channel, str]] = []
    bad: list[str] = []
    for raw in addresses:
        try:
            if "@" in raw:
                found.append((Channel.EMAIL, normalise_email(raw)))
            else:
                found.append((Channel.SMS, normalise_mobile(raw)))
        except ValueError as exc:
            bad.append(f"--to {raw!r}: {exc}")
    if bad:
        raise InputError("; ".join(bad))
    return found


def send_test_copies(
    rt: Runtime,
    spec: CampaignSpec,
    to: list[tuple[Channel, str]],
    *,
    member: dict[str, Any],
    unsubscribe_url: str,
) -> list[TestCopy]:
    """Render once for `member`, then one copy to each address; nothing is recorded."""
    templates = compile_templates(spec, rt.settings)
    copies = []
    for channel, address in to:
        if channel is Channel.EMAIL:
            copies.append(_email(rt, spec, templates, address, member, unsubscribe_url))
        else:
            copies.append(_sms(rt, spec, templates, address, member))
    return copies


def _email(
    rt: Runtime, spec: CampaignSpec, templates: Any, to: str, member: Any, url: str
) -> TestCopy:
    masked = mask_email(to)
    if spec.email is None:
        return TestCopy(Channel.EMAIL, masked, "none", "the campaign has no email")
    s = rt.settings
    mail_from = spec.email.from_addr or s.mail_from or ""
    headers = MessageHeaders.for_campaign(
        mail_from=mail_from, slug=spec.slug, campaign_name=spec.name, reply_to=spec.email.reply_to
    )
    number = int(time.time() * 1000)
    try:
        raw = compose_email(
            templates,
            member,
            unsubscribe_url=url,
            view_url=f"{s.unsubscribe_base_url}/v/test-copy",  # a copy of no campaign row
            headers=headers,
            to=to,
            delivery_id=number,
            subject_prefix=PREFIX,
            message_id=f"<test-{number}.{secrets.token_hex(4)}@{headers.domain}>",
        ).raw
        assert raw is not None
        rt.loop.run(
            rt.email_transport.send(
                sender=parseaddr(s.mail_from or mail_from)[1],
                recipient=to,
                message=raw,
                name=f"{spec.slug}-test-{number}",
            ),
            timeout=s.smtp_timeout * 4,
        )
    except DeliveryError as exc:
        return TestCopy(Channel.EMAIL, masked, "failed", str(exc))
    return TestCopy(Channel.EMAIL, masked, "sent")


def _sms(rt: Runtime, spec: CampaignSpec, templates: Any, to: str, member: Any) -> TestCopy:
    masked = mask_mobile(to)
    if spec.sms is None:
        return TestCopy(Channel.SMS, masked, "none", "the campaign has no SMS")
    s = rt.settings
    opening = window_closed_until(s, rt.clock())
    if opening is not None:
        return TestCopy(
            Channel.SMS,
            masked,
            "held",
            f"outside the SMS send window ({s.sms_send_window}); it opens at "
            f"{describe(opening, s.sms_zone)}: nothing sent",
        )
    try:
        text = compose_sms(
            templates, member, footer=s.sms_optout_footer, max_parts=s.sms_max_parts
        ).text
        # A localid of its own (no delivery has one this large): never taken for a repeat.
        rt.sms_transport.send(
            receptor=to, message=text, localid=int(time.time() * 1000), campaign=spec.slug
        )
    except DeliveryError as exc:
        return TestCopy(Channel.SMS, masked, "failed", str(exc))
    return TestCopy(Channel.SMS, masked, "sent")
