"""The SMTP transport on its own, against the real SMTP server of the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from dispatcher.email.smtp import SmtpTransport
from dispatcher.errors import (
    DeliveryError,
    InvalidRecipientError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
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


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one at a time"])
def test_messages_and_a_refused_recipient_over_one_connection_with_and_without_pipelining(
    smtp_server_factory: Callable[..., SmtpServerHandle], pipelining: bool
) -> None:
    server = smtp_server_factory(pipelining=pipelining)
    server.reject_recipient("gone@example.com")
    transport = SmtpTransport(host=server.host, port=server.port, security="none", connections=1)
    recipients = ["a@example.com", "gone@example.com", "b@example.com"]

    async def send_all() -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        try:
            for n, rcpt in enumerate(recipients):
                try:
                    await transport.send(
                        sender="news@shop.example", recipient=rcpt, message=MESSAGE, name=str(n)
                    )
                    outcomes.append(None)
                except DeliveryError as exc:
                    outcomes.append(exc)
        finally:
            await transport.close()
        return outcomes

    outcomes = asyncio.run(send_all())
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], InvalidRecipientError | PermanentDeliveryError)
    assert outcomes[1].code == 550
    envelopes = server.envelopes()
    assert [e["rcpt_to"] for e in envelopes] == ["a@example.com", "b@example.com"]
    assert {e["connection"] for e in envelopes} == {1}  # the refusal did not cost the connection
    assert [e["pipelined"] for e in envelopes] == [pipelining, pipelining]
