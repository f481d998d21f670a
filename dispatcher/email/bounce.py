"""Bounces: what an SMTP refusal or a returned report says about an address.

- Hard: the mailbox or its domain does not exist (enhanced status 5.1.x, or a bare
  550/551/553 whose text names an unknown user); in a delivery status notification
  (RFC 3464), `Action: failed` with a 5.x.x `Status`.
- Soft: any other 5xx (5.2.x mailbox full, 5.7.x policy ...), a final 4xx, and any
  other failed or delayed recipient of a report.
- Complaint: an ARF feedback report (RFC 5965) from a mailbox provider.
- Other bounce formats found in the wild are read by Mailman's `flufl.bounce`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses

from flufl.bounce import all_failures

from dispatcher.store.models import BounceKind

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_UNKNOWN_USER = re.compile(
    r"(?:user|recipient|mailbox|address) unknown|unknown (?:user|recipient|mailbox|address)"
    r"|no such (?:user|mailbox|recipient|address)|does ?n[o']t exist|not exist"
    r"|invalid (?:recipient|mailbox|address|user)|(?:user|mailbox) not found"
    r"|mailbox unavailable|unrouteable",
    re.IGNORECASE,
)
BARE_HARD_CODES = (550, 551, 553)


def enhanced_status(text: str) -> str | None:
    """The first enhanced status code in a reply's text (`5.1.1`), if any."""
    found = _STATUS.search(text)
    return found.group(0) if found else None


def is_hard(code: int, text: str) -> bool:
    """Whether an SMTP refusal says the mailbox or domain does not exist."""
    status = enhanced_status(text)
    if status is not None:
        return status.startswith("5.1.")
    return code in BARE_HARD_CODES and bool(_UNKNOWN_USER.search(text))


@dataclass
class Report:
    """What a returned message reports: its kind, and how to find the delivery."""

    kind: BounceKind
    status: str | None = None
    # Addresses it was sent to (a VERP address names the delivery) ...
    to: list[str] = field(default_factory=list)
    # ... and Message-IDs of the original message found in the returned headers ...
    message_ids: list[str] = field(default_factory=list)
    # ... and the addresses it is about (Final-Recipient, Original-Rcpt-To, the
    # original's To): a delivery found by Message-ID must have one of them.
    recipients: list[str] = field(default_factory=list)


def parse_report(message: Message) -> Report | None:
    """A DSN or an ARF complaint read from a message, else a bounce in one of the many
    non-standard formats that Mailman's `flufl.bounce` recognises (Exim, qmail, Postfix
    without DSN...: a permanent failure is hard); None for anything else."""
    if message.get_content_type() != "multipart/report":
        return _non_standard(message)
    report_type = (message.get_param("report-type") or "").__str__().lower()
    to = [addr for _, addr in getaddresses(message.get_all("To", []) + _delivered_to(message))]
    if report_type == "feedback-report":
        recipients = _report_fields(message, "message/feedback-report", "original-rcpt-to")
        return Report(
            BounceKind.COMPLAINT,
            to=to,
            message_ids=_original_ids(message),
            recipients=recipients + _original_to(message),
        )
    if report_type != "delivery-status":
        return _non_standard(message)
    kind, status = _dsn_outcome(message)
    if kind is None:
        return None
    recipients = _report_fields(
        message, "message/delivery-status", "final-recipient", "original-recipient"
    )
    return Report(
        kind,
        status=status,
        to=to,
        message_ids=_original_ids(message),
        recipients=recipients + _original_to(message),
    )


def _non_standard(message: Message) -> Report | None:
    temporary, permanent = all_failures(message)
    if not (temporary or permanent):
        return None
    to = [addr for _, addr in getaddresses(message.get_all("To", []) + _delivered_to(message))]
    kind = BounceKind.HARD if permanent else BounceKind.SOFT
    failed = [_text(address) for address in (*permanent, *temporary)]
    return Report(
        kind,
        to=to,
        message_ids=_original_ids(message) + _ids_in_text(message),
        recipients=failed + _original_to(message),
    )


def _text(address: bytes | str) -> str:
    """An address as flufl.bounce gives it (bytes, as a rule), as text."""
    return address.decode("utf-8", "replace") if isinstance(address, bytes) else address


def _ids_in_text(message: Message) -> list[str]:
    """Message-IDs quoted in the text of a bounce that returned the original inline."""
    ids: list[str] = []
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                found = _MESSAGE_ID_LINE.findall(payload)
                ids.extend(m.decode("ascii", "replace") for m in found)
    return ids


_MESSAGE_ID_LINE = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


def _delivered_to(message: Message) -> list[str]:
    return [*message.get_all("Delivered-To", []), *message.get_all("X-Original-To", [])]


def _dsn_outcome(message: Message) -> tuple[BounceKind | None, str | None]:
    """Hard if any recipient failed with a 5.x.x status; soft if one failed or was
    delayed otherwise; None if every recipient was delivered (a success notice)."""
    worst: tuple[BounceKind | None, str | None] = (None, None)
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for fields in _status_groups(part):
            action = fields.get("action", "").strip().lower()
            status = enhanced_status(fields.get("status", "")) or None
            if action == "failed" and status is not None and status.startswith("5."):
                return BounceKind.HARD, status
            if action in ("failed", "delayed"):
                worst = (BounceKind.SOFT, status)
    return worst


def _report_fields(message: Message, part_type: str, *names: str) -> list[str]:
    """The addresses in the fields `names` of the report's `part_type` parts
    (`rfc822; someone@example.com`, or a bare address)."""
    found: list[str] = []
    for part in message.walk():
        if part.get_content_type() != part_type:
            continue
        for fields in _status_groups(part):
            for name in names:
                value = fields.get(name, "")
                address = value.partition(";")[2] if ";" in value else value
                if address.strip():
                    found.append(address.strip().strip("<>"))
    return found


def _original_to(message: Message) -> list[str]:
    """The To addresses of the returned original (`message/rfc822` or
    `text/rfc822-headers`)."""
    to: list[str] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                to.extend(addr for _, addr in getaddresses(inner.get_all("To", [])))
        elif kind == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                lines = _TO_LINE.findall(text)
                values = [v.decode("utf-8", "replace") for v in lines]
                to.extend(addr for _, addr in getaddresses(values))
    return to


_TO_LINE = re.compile(rb"^To:[ \t]*([^\r\n]+)", re.IGNORECASE | re.MULTILINE)


def _status_groups(part: Message) -> list[dict[str, str]]:
    """The per-message and per-recipient field groups of a `message/delivery-status`."""
    payload = part.get_payload()
    groups: list[dict[str, str]] = []
    if isinstance(payload, list):  # the email package parses each group as a Message
        for sub in payload:
            if isinstance(sub, Message):
                groups.append({k.lower(): str(v) for k, v in sub.items()})
        return groups
    text = payload if isinstance(payload, str) else ""
    for block in re.split(r"\r?\n\s*\r?\n", text):
        fields = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (line.partition(":") for line in block.splitlines())
            if _
        )
        groups.append(fields)
    return groups


def _original_ids(message: Message) -> list[str]:
    """Message-IDs of the returned original (`message/rfc822` or `text/rfc822-headers`)."""
    ids: list[str] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and inner.get("Message-ID"):
                ids.append(str(inner["Message-ID"]).strip())
        elif kind == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if not isinstance(text, bytes):
                continue
            found = _MESSAGE_ID_LINE.search(text)
            if found:
                ids.append(found.group(1).decode("ascii", "replace"))
    return ids
