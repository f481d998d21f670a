"""Tests of the spooling SMTP test server itself, driven with aiosmtplib."""

import asyncio
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest

from tests.servers.smtp_server import SmtpServerHandle

RAW = b"Subject: raw\r\n\r\nline one\r\n.leading dot\r\n"


def make_message(to: str, n: int = 0) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "news@shop.example"
    message["To"] = to
    message["Subject"] = f"خبرنامه {n}"
    message.set_content(f"سلام {n}")
    return message


def client(server: SmtpServerHandle) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname=server.host, port=server.port, start_tls=False, timeout=5)


def test_spool_and_connection_reuse(smtp_server: SmtpServerHandle) -> None:
    async def session() -> None:
        async with client(smtp_server) as smtp:
            for n in range(3):
                await smtp.send_message(make_message(f"user{n}@example.org", n))
            await smtp.sendmail("bounce@shop.example", ["a@example.org", "b@example.org"], RAW)

    asyncio.run(session())
    messages = smtp_server.wait_for(5)
    assert smtp_server.connection_count() == 1
    assert [m.rcpt_to for m in messages] == [
        "user0@example.org",
        "user1@example.org",
        "user2@example.org",
        "a@example.org",
        "b@example.org",
    ]
    assert messages[0].mail_from == "news@shop.example"
    assert messages[0].parsed["Subject"] == "خبرنامه 0"
    assert messages[0].parsed.get_content().rstrip() == "سلام 0"
    mail_from, rcpt_to, raw = messages[4]
    assert (mail_from, rcpt_to, raw) == ("bounce@shop.example", "b@example.org", RAW)
    assert {e["connection"] for e in smtp_server.envelopes()} == {1}

    asyncio.run(session())
    assert smtp_server.connection_count() == 2


def test_many_messages_over_few_connections(smtp_server: SmtpServerHandle) -> None:
    async def worker(w: int) -> None:
        async with client(smtp_server) as smtp:
            for n in range(50):
                await smtp.send_message(make_message(f"u{w}-{n}@example.org", n))

    async def run() -> None:
        await asyncio.gather(*(worker(w) for w in range(4)))

    asyncio.run(run())
    assert len(smtp_server.wait_for(200)) == 200
    assert smtp_server.connection_count() == 4


def test_temp_failure_on_rcpt_then_success(smtp_server: SmtpServerHandle) -> None:
    smtp_server.inject_temp_failure(451, count=2, stage="rcpt")

    async def session() -> None:
        async with client(smtp_server) as smtp:
            for _ in range(2):
                with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
                    await smtp.send_message(make_message("a@example.org"))
                assert info.value.recipients[0].code == 451
                assert "4.3.0 try later" in info.value.recipients[0].message
            await smtp.send_message(make_message("a@example.org"))

    asyncio.run(session())
    assert [m.rcpt_to for m in smtp_server.messages()] == ["a@example.org"]


def test_temp_failure_on_data(smtp_server: SmtpServerHandle) -> None:
    smtp_server.inject_temp_failure(451, count=1, stage="data")

    async def session() -> None:
        async with client(smtp_server) as smtp:
            with pytest.raises(aiosmtplib.SMTPDataError) as info:
                await smtp.send_message(make_message("a@example.org"))
            assert info.value.code == 451
            await smtp.send_message(make_message("a@example.org", 1))

    asyncio.run(session())
    assert [m.parsed["Subject"] for m in smtp_server.messages()] == ["خبرنامه 1"]


def test_rejected_recipient_gets_550(smtp_server: SmtpServerHandle) -> None:
    smtp_server.reject_recipient("Ghost@Example.org")

    async def session() -> dict[str, aiosmtplib.SMTPResponse]:
        async with client(smtp_server) as smtp:
            errors, _ = await smtp.sendmail(
                "news@shop.example", ["ghost@example.org", "real@example.org"], RAW
            )
            return errors

    errors = asyncio.run(session())
    assert errors["ghost@example.org"].code == 550
    assert errors["ghost@example.org"].message == "5.1.1 no such user"
    assert [m.rcpt_to for m in smtp_server.messages()] == ["real@example.org"]


@pytest.mark.parametrize("store", [False, True])
def test_drop_after_data(smtp_server: SmtpServerHandle, store: bool) -> None:
    smtp_server.drop_after_data(1, store=store)

    async def session() -> None:
        async with client(smtp_server) as smtp:
            with pytest.raises(aiosmtplib.SMTPServerDisconnected):
                await smtp.send_message(make_message("lost@example.org"))
        async with client(smtp_server) as smtp:
            await smtp.send_message(make_message("next@example.org"))

    asyncio.run(session())
    expected = ["lost@example.org", "next@example.org"] if store else ["next@example.org"]
    assert [m.rcpt_to for m in smtp_server.messages()] == expected
    assert smtp_server.connection_count() == 2


def test_delay_data(smtp_server: SmtpServerHandle) -> None:
    smtp_server.delay_data(0.3, count=1)

    async def session() -> None:
        async with client(smtp_server) as smtp:
            await smtp.send_message(make_message("slow@example.org"))

    started = time.monotonic()
    asyncio.run(session())
    assert time.monotonic() - started >= 0.3
    assert len(smtp_server.messages()) == 1


def test_auth_required_when_configured(
    smtp_server_factory: Callable[..., SmtpServerHandle],
) -> None:
    server = smtp_server_factory(auth=("mailer", "s3cret"))

    async def send(username: str | None = None, password: str | None = None) -> None:
        await aiosmtplib.send(
            make_message("a@example.org"),
            hostname=server.host,
            port=server.port,
            username=username,
            password=password,
            start_tls=False,
            timeout=5,
        )

    async def attempts() -> None:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as info:
            await send()
        assert info.value.code == 530
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await send("mailer", "wrong")
        await send("mailer", "s3cret")
        async with client(server) as smtp:
            await smtp.ehlo()
            await smtp.auth_login("mailer", "s3cret")
            await smtp.send_message(make_message("b@example.org"))

    asyncio.run(attempts())
    assert [m.rcpt_to for m in server.wait_for(2)] == ["a@example.org", "b@example.org"]


def test_reset_clears_everything(smtp_server: SmtpServerHandle) -> None:
    async def send_one() -> None:
        async with client(smtp_server) as smtp:
            await smtp.send_message(make_message("a@example.org"))

    asyncio.run(send_one())
    smtp_server.reject_recipient("a@example.org")
    smtp_server.reset()
    assert smtp_server.messages() == []
    assert smtp_server.connection_count() == 0
    asyncio.run(send_one())
    assert len(smtp_server.messages()) == 1


def test_pool_restarts_a_stopped_server(
    smtp_server_pool: Any, smtp_server: SmtpServerHandle
) -> None:
    smtp_server.stop()
    assert not smtp_server.is_alive()
    fresh = smtp_server_pool.get()
    assert fresh is not smtp_server
    assert fresh.is_alive()
    assert fresh.connection_count() == 0


def test_smtputf8_is_offered_or_not_per_test(smtp_server: SmtpServerHandle) -> None:
    async def offers() -> bool:
        client = aiosmtplib.SMTP(hostname=smtp_server.host, port=smtp_server.port)
        await client.connect()
        await client.ehlo()
        try:
            return client.supports_extension("smtputf8")
        finally:
            await client.quit()

    assert asyncio.run(offers())
    smtp_server.offer_smtputf8(False)
    assert not asyncio.run(offers())
    smtp_server.reset()
    assert asyncio.run(offers())
