"""The email transport interface: SMTP (`smtp.py`) and the outbox folder (`outbox.py`)
implement it; `dispatcher.runtime` picks one from the settings."""

from __future__ import annotations

from typing import Protocol


class EmailTransport(Protocol):
    """Hands one finished message to its next hop. Async: many run at once per process.

    `send` raises `TransientDeliveryError` (try again later) or
    `PermanentDeliveryError` (this recipient will never accept it).
    """

    async def send(self, *, sender: str, recipient: str, message: bytes, name: str) -> None: ...

    async def close(self) -> None: ...
