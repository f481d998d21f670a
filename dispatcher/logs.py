"""Log lines: one per event, JSON when `LOG_FORMAT=json`, addresses always masked.

`MaskingFilter` runs before any formatter and masks every email address and phone
number in the message and its `extra` values; `configure` sets up the command,
`install_on_root` adapts the handlers Dramatiq's worker processes created.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from dispatcher.errors import TransientDeliveryError
from dispatcher.masking import mask_email, mask_mobile, mask_text

FIELDS = ("campaign", "delivery", "channel", "outcome", "code")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_DELIVERY_LINE = re.compile(r"delivery (\d+): ([\w-]+)")
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
# E.164 (+989121234567), 0098..., and Iranian mobiles written locally (09121234567).
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{8,15}|00\d{10,15}|0?9\d{9})(?!\d)")


def mask(text: str) -> str:
    """Every email address and phone number in `text`, masked."""
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    return _PHONE.sub(_mask_phone, text)


def _mask_phone(match: re.Match[str]) -> str:
    value = match.group(0)
    return mask_mobile(value) if value.startswith("+") else mask_text(value)


_FORMATTER = logging.Formatter()


class MaskingFilter(logging.Filter):
    """Masks addresses in the rendered message and in the structured fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_masked", False):
            record.msg = mask(record.getMessage())
            record.args = None
            for name in FIELDS:
                value = getattr(record, name, None)
                if isinstance(value, str):
                    setattr(record, name, mask(value))
            if record.exc_info and not record.exc_text:
                # Formatter.format() prints exc_text when set: a relay's reply quoted in
                # an exception (450 <someone@example.com>: busy) is masked there too.
                record.exc_text = mask(_FORMATTER.formatException(record.exc_info))
            if record.stack_info:
                record.stack_info = mask(record.stack_info)
            record._masked = True
        return True


class ExpectedFailureFilter(logging.Filter):
    """Drops Dramatiq's "unhandled exception" record, traceback and all, for a send
    that failed for now (TransientDeliveryError): the actor has already logged it in
    one line, and the retry is expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, TransientDeliveryError) and record.name.startswith("dramatiq."))


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        conventional = _DELIVERY_LINE.match(line["message"])
        if conventional:  # the actors' "delivery 42: sent (...)" lines
            line["delivery"], line["outcome"] = int(conventional[1]), conventional[2]
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_text:
            line["exception"] = mask(record.exc_text)
        elif record.exc_info:
            line["exception"] = mask(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def install(handler: logging.Handler, *, json_lines: bool) -> None:
    """Add masking (once) and, for JSON, our formatter to an existing handler."""
    if not any(isinstance(f, ExpectedFailureFilter) for f in handler.filters):
        handler.addFilter(ExpectedFailureFilter())
    if not any(isinstance(f, MaskingFilter) for f in handler.filters):
        handler.addFilter(MaskingFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())


def install_on_root(*, json_lines: bool) -> None:
    for handler in logging.getLogger().handlers:
        install(handler, json_lines=json_lines)


def configure(*, level: int, json_lines: bool) -> None:
    """Logging for the `dispatcher` command: stderr, masked, text or JSON."""
    logging.basicConfig(level=level, format=TEXT_FORMAT)
    logging.getLogger().setLevel(level)
    install_on_root(json_lines=json_lines)
