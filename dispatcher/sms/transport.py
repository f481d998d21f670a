"""The SMS transport interface and what a provider answers.

`KavenegarTransport` (the real thing) and `SmsOutbox` (one JSON line per message under
`OUTBOX_DIR/sms/`) implement it; `dispatcher.runtime` picks one from the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SmsResult:
    """What the provider answered for one message (None where it says nothing)."""

    messageid: int | None
    cost: int | None
    status: int | None


class SmsTransport(Protocol):
    """Hands one SMS to its next hop. Synchronous: each worker thread sends its own.

    `send` passes `localid` on, so that the provider drops a repeat of the same
    message; it raises `TransientDeliveryError` (try again later) or a
    `PermanentDeliveryError` (never for this recipient). `status_by_localid` says
    whether a message with this `localid` was accepted (None: it was not).

    `paces_calls`: True when `send` takes the shared rate slot itself, one per provider
    call (`batch.KavenegarBatcher`), so the caller must not take one per message.
    """

    paces_calls: bool

    def send(self, *, receptor: str, message: str, localid: int, campaign: str) -> SmsResult: ...

    def status_by_localid(self, localid: int) -> SmsResult | None: ...

    def close(self) -> None: ...
