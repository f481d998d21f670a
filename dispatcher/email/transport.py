"""The email transport interface and the one place a backend is chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    pass


class EmailTransport(Protocol):
    """Hands one finished message to its next hop. Async: many run at once per process.

    `send` raises `TransientDeliveryError` (try again later) or
    `PermanentDeliveryError` (this recipient will never accept it).
    """

    async def send(self, *, sender: str, recipient: str, message: bytes, name: str) -> None: ...

    async def close(self) -> None: ...
