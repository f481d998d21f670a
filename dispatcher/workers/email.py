"""The email actor: load -> consent -> claim -> render -> send -> record.

The queue message carries the delivery id only. Everything else (the member's
address and consent, the campaign's templates) is read when the job runs, so an
opt-out or a changed address after expansion is honoured.
"""

from __future__ import annotations

import logging
from email.utils import parseaddr

import dramatiq
from dramatiq.middleware import CurrentMessage
from jinja2 import TemplateError

from dispatcher.broker import register
from dispatcher.control import is_held
from dispatcher.errors import ConfigurationError, PermanentDeliveryError, TransientDeliveryError
from dispatcher.guard import SLOW_DOWN_DELAY_MS
from dispatcher.mime import build_message
from dispatcher.models import Channel, DeliveryStatus
from dispatcher.runtime import Runtime, get_runtime

log = logging.getLogger("dispatcher.email")

QUEUE = "email"
MAX_RETRIES = 8
MIN_BACKOFF_MS = 2_000
MAX_BACKOFF_MS = 10 * 60_000


def _is_last_attempt() -> bool:
    message = CurrentMessage.get_current_message()
    if message is None:
        return True
    return int(message.options.get("retries", 0)) >= MAX_RETRIES


def deliver_email(rt: Runtime, delivery_id: int) -> str:
    """Run one email delivery; return its outcome. Raises TransientDeliveryError to retry."""
    engine = rt.engine
    db = rt.deliveries  # dispatcher.delivery's steps, group-committed with other threads'
    loaded = db.load(delivery_id)
    if loaded is None:
        log.warning("delivery %s: not found", delivery_id)
        return "missing"
    if loaded.delivery.status != DeliveryStatus.PENDING:
        return "duplicate"
    if is_held(loaded.campaign):  # paused or cancelled: stays pending, resume re-enqueues
        return "held"
    member = loaded.member
    if not member.opted_in(Channel.EMAIL):
        reason = "opted out" if not member.email_opt_in else "no email address"
        db.skip(delivery_id, reason)
        log.info("delivery %s: skipped (%s)", delivery_id, reason)
        return "skipped"
    compiled = rt.compiled(loaded.campaign)
    if compiled.headers is None or not rt.settings.mail_from:
        raise ConfigurationError("MAIL_FROM is required to send email")
    guard = rt.guard("smtp")
    guard.before_send()  # waits for a slot of SMTP_RATE_LIMIT; costs no retry
    if not db.claim(delivery_id):
        return "duplicate"
    assert member.id is not None and member.email
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
    sender = parseaddr(rt.settings.mail_from)[1]
    try:
        rt.loop.run(
            rt.email_transport.send(
                sender=sender,
                recipient=member.email,
                message=raw,
                name=f"{compiled.slug}-{delivery_id}",
            )
        )
    except PermanentDeliveryError as exc:
        db.mark_failed(delivery_id, exc.code, str(exc))
        guard.failed(engine, loaded.campaign, exc)
        log.info("delivery %s: failed (%s)", delivery_id, exc)
        return "failed"
    except TransientDeliveryError as exc:
        guard.failed(engine, loaded.campaign, exc)
        if guard.slow_down(exc):  # 421/450/451/454: back off; a new message, no retry
            db.release(delivery_id, exc.code, str(exc))
            send_email.send_with_options(args=(delivery_id,), delay=SLOW_DOWN_DELAY_MS)
            return "slowed"
        if _is_last_attempt():
            db.mark_failed(delivery_id, exc.code, f"retries exhausted: {exc}")
            log.warning("delivery %s: failed after retries (%s)", delivery_id, exc)
            return "failed"
        db.release(delivery_id, exc.code, str(exc))
        log.info("delivery %s: will retry (%s)", delivery_id, exc)
        raise
    db.mark_sent(delivery_id, provider_id=compiled.headers.message_id(delivery_id))
    guard.sent(loaded.campaign)
    log.info("delivery %s: sent", delivery_id)
    return "sent"


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
