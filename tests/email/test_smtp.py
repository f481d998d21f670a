"""The SMTP transport on its own, against the real SMTP server of the tests."""

from __future__ import annotations

import asyncio
import time

import pytest

from dispatcher.email.smtp import SmtpTransport
from dispatcher.errors import TransientDeliveryError
from tests.servers.smtp_server import SmtpServerHandle

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


def test_the_wait_for_a_free_connection_counts_in_the_timeout(
    smtp_server: SmtpServerHandle,
) -> None:
    transport = SmtpTransport(
        host=smtp_server.host, port=smtp_server.port, security="none", connections=1, timeout=1.0
    )
    smtp_server.delay_data(seconds=3.0)  # holds the one connection past the timeout

    async def two_sends() -> list[BaseException | None]:
        sends = [
            transport.send(
                sender="a@shop.example", recipient=f"{n}@example.com", message=MESSAGE, name=str(n)
            )
            for n in range(2)
        ]
        try:
            return await asyncio.gather(*sends, return_exceptions=True)
        finally:
            await transport.close()

    started = time.monotonic()
    outcomes = asyncio.run(two_sends())
    assert [type(o) for o in outcomes] == [TransientDeliveryError, TransientDeliveryError]
    assert time.monotonic() - started < 2.0


def test_an_unusable_address_is_not_quoted_in_the_error(smtp_server: SmtpServerHandle) -> None:
    transport = SmtpTransport(host=smtp_server.host, port=smtp_server.port, security="none")

    async def send() -> None:
        try:
            await transport.send(
                sender="a@shop.example",
                recipient="bad address@example.com",
                message=MESSAGE,
                name="x",
            )
        finally:
            await transport.close()

    with pytest.raises(Exception) as raised:
        asyncio.run(send())
    assert raised.value.args and "bad address" not in str(raised.value)
    assert "553" in str(raised.value)
