"""Is the SMTP relay there? Asked before an inline run, and while it seems stuck."""

from __future__ import annotations

import asyncio
import time

from dispatcher.email.smtp import SmtpTransport
from dispatcher.errors import RelayUnavailable
from dispatcher.settings import Settings


def check_relay(settings: Settings) -> None:
    """Connect to SMTP_HOST once (EHLO, STARTTLS and AUTH as configured), then close;
    RelayUnavailable naming host, port and why when that fails."""
    asyncio.run(SmtpTransport.from_settings(settings).probe())


class RelayWatch:
    """For a run in this process: once no delivery has been finished for `stall_s`
    seconds, ask the relay (at most every `stall_s`); its answer when it does not."""

    def __init__(self, settings: Settings, *, stall_s: float = 3.0) -> None:
        self.settings = settings
        self.stall_s = stall_s
        self._left: int | None = None
        self._since = time.monotonic()

    def __call__(self, left: int) -> str | None:
        now = time.monotonic()
        if left != self._left:
            self._left, self._since = left, now
            return None
        if now - self._since < self.stall_s:
            return None
        self._since = now
        try:
            check_relay(self.settings)
        except RelayUnavailable as exc:
            return str(exc)
        return None
