"""One composer: a member's email and SMS of a campaign, built the same way for the
worker, `campaign preview`, `campaign test` and the web copy.

One template zone (SMS_TIMEZONE), one set of checks (the visible unsubscribe link, an
empty SMS, SMS_MAX_PARTS), one set of links (unsubscribe, web copy). A rewrite of the
links in a message (click tracking) belongs here, and only here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError

from dispatcher.definition.campaign import CampaignSpec
from dispatcher.definition.links import UrlFor
from dispatcher.definition.rendering import CampaignTemplates, shop_name
from dispatcher.email.mime import MessageHeaders, build_message
from dispatcher.errors import RenderError
from dispatcher.settings import Settings
from dispatcher.sms.text import SmsLength, measure, with_footer

__all__ = [
    "ComposedEmail",
    "ComposedSms",
    "compile_templates",
    "compose_email",
    "compose_sms",
]


def compile_templates(spec: CampaignSpec, settings: Settings) -> CampaignTemplates:
    """The campaign's templates as every message of it is made: the shop's name from
    MAIL_FROM, dates in SMS_TIMEZONE."""
    return spec.templates({"name": shop_name(settings.mail_from)}, zone=settings.sms_zone)


@dataclass(frozen=True, slots=True)
class ComposedEmail:
    subject: str
    text: str
    html: str
    unsubscribe_url: str
    raw: bytes | None  # the message as sent (None when it was not asked for)


@dataclass(frozen=True, slots=True)
class ComposedSms:
    text: str  # as sent: the footer included
    length: SmsLength


def compose_email(
    templates: CampaignTemplates,
    member: dict[str, Any],
    *,
    unsubscribe_url: str,
    view_url: str | None,
    headers: MessageHeaders | None = None,
    to: str | None = None,
    delivery_id: int = 0,
    subject_prefix: str = "",
    message_id: str | None = None,
    variant: str | None = None,
    click: UrlFor | None = None,
) -> ComposedEmail:
    """The member's email; with `headers` and `to`, the message as sent too. RenderError
    when the template cannot make it (or the HTML lacks the unsubscribe link).
    `variant`: an A/B test's subject; `click`: the member's click link of each of the
    campaign's tracked links, by index (`[tracking] clicks`; None: links as written)."""
    try:
        rendered = templates.render_email(member, unsubscribe_url, view_url, variant, click)
        subject = subject_prefix + rendered.subject
        raw = None
        if headers is not None and to is not None:
            raw = build_message(
                headers,
                to=to,
                subject=subject,
                text=rendered.text,
                html=rendered.html,
                delivery_id=delivery_id,
                unsubscribe_url=unsubscribe_url,
                message_id=message_id,
            )
    except (TemplateError, ValueError) as exc:
        raise RenderError(f"render: {exc}") from None
    return ComposedEmail(subject, rendered.text, rendered.html, unsubscribe_url, raw)


def compose_sms(
    templates: CampaignTemplates,
    member: dict[str, Any],
    *,
    footer: str,
    max_parts: int,
    track: Callable[[str], str] | None = None,
) -> ComposedSms:
    """The member's SMS as sent, footer included; RenderError when the template fails,
    renders nothing, or comes to more than `max_parts` parts. `track` rewrites the
    body's links (`[sms] track_links`) before it is measured."""
    body = templates.render_sms(member)
    if track is not None:
        body = track(body)
    if not body.strip():
        raise RenderError("render: sms: the message is empty")
    text = with_footer(body, footer)
    length = measure(text)
    if length.parts > max_parts:
        raise RenderError(f"render: sms: {length.parts} parts, over SMS_MAX_PARTS ({max_parts})")
    return ComposedSms(text, length)
