"""SMTP over aiosmtplib: a small pool of connections kept open and reused.

Each worker process keeps `SMTP_CONNECTIONS` connections. A send borrows one, uses
it, and returns it; a connection that failed is closed and reopened on next use.
Reply codes are sorted into transient (4xx, timeouts, dropped connections) and
permanent (5xx) errors, carrying the code.
"""

from __future__ import annotations

import asyncio
import ssl

import aiosmtplib

from dispatcher.errors import PermanentDeliveryError, TransientDeliveryError
from dispatcher.settings import Settings


class SmtpTransport:
    def __init__(
        self,
        *,
        host: str,
        port: int = 587,
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        connections: int = 4,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self._username = username
        self._password = password
        self.timeout = timeout
        self.size = connections
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] | None = None
        self._slots: asyncio.Semaphore | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpTransport:
        assert settings.smtp_host is not None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            connections=settings.smtp_connections,
            timeout=settings.smtp_timeout,
        )

    def __repr__(self) -> str:
        return f"SmtpTransport(host={self.host!r}, port={self.port}, security={self.security!r})"

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout,
            use_tls=self.security == "tls",
            start_tls=True if self.security == "starttls" else False,
            tls_context=ssl.create_default_context() if self.security != "none" else None,
        )
        await client.connect()
        if self._username:
            await client.login(self._username, self._password or "")
        return client

    async def _borrow(self) -> aiosmtplib.SMTP | None:
        if self._idle is None or self._slots is None:
            self._idle = asyncio.LifoQueue()
            self._slots = asyncio.Semaphore(self.size)
        await self._slots.acquire()
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client.is_connected:
                return client
        return None

    def _give_back(self, client: aiosmtplib.SMTP | None) -> None:
        assert self._idle is not None and self._slots is not None
        if client is not None and client.is_connected:
            self._idle.put_nowait(client)
        self._slots.release()

    async def send(self, *, sender: str, recipient: str, message: bytes, name: str) -> None:
        client = await self._borrow()
        try:
            if client is None:
                client = await self._connect()
            await client.sendmail(sender, [recipient], message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            await _reset(client)
            raise _classify(refused.code, refused.message) from None
        except aiosmtplib.SMTPResponseException as exc:
            await _reset(client)
            raise _classify(exc.code, exc.message) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if client is not None:
                client.close()
            raise TransientDeliveryError(f"connection problem: {type(exc).__name__}") from None
        finally:
            self._give_back(client)

    async def close(self) -> None:
        if self._idle is None:
            return
        while not self._idle.empty():
            client = self._idle.get_nowait()
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


async def _reset(client: aiosmtplib.SMTP | None) -> None:
    """After a refused command, RSET so the connection can be reused; else drop it."""
    if client is None or not client.is_connected:
        return
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        client.close()


def _classify(code: int, message: str) -> TransientDeliveryError | PermanentDeliveryError:
    reason = f"{code} {message}".strip()[:400]
    if 400 <= code < 500:
        return TransientDeliveryError(reason, code=code)
    return PermanentDeliveryError(reason, code=code)
