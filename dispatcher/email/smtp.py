"""SMTP: a small pool of connections kept open and reused, with pipelined sends
(RFC 2920) when the relay offers it, SMTPUTF8 when it must, and every refusal mapped
onto the error tree (throttled, transient, invalid recipient, permanent).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque

import aiosmtplib

from dispatcher.email.address import wire_address
from dispatcher.email.bounce import enhanced_status, is_hard
from dispatcher.errors import (
    InvalidRecipientError,
    MessageError,
    PermanentDeliveryError,
    RelayUnavailable,
    ThrottledError,
    TransientDeliveryError,
)
from dispatcher.logs import mask
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
        self._idle: asyncio.LifoQueue[_Pipe] | None = None
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

    async def _connect(self) -> _Pipe:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout,
            use_tls=self.security == "tls",
            start_tls=self.security == "starttls",
            tls_context=ssl.create_default_context() if self.security != "none" else None,
        )
        await client.connect()
        if client.last_ehlo_response is None:
            await client.ehlo()
        if self._username:
            await client.login(self._username, self._password or "")
        assert client.transport is not None
        return _Pipe(
            client.transport,  # type: ignore[arg-type]
            pipelining=client.supports_extension("pipelining"),
            smtputf8=client.supports_extension("smtputf8"),
        )

    async def probe(self) -> None:
        """Open one connection as a send would (EHLO, STARTTLS, AUTH) and close it;
        RelayUnavailable naming host, port and why when that fails."""
        where = f"SMTP relay {self.host}:{self.port}"
        try:
            async with asyncio.timeout(self.timeout):
                pipe = await self._connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise RelayUnavailable(f"{where}: AUTH refused ({exc.code} {exc.message})") from None
        except (TimeoutError, aiosmtplib.SMTPTimeoutError):
            raise RelayUnavailable(f"{where}: no answer within {self.timeout:g} s") from None
        except ssl.SSLError as exc:
            raise RelayUnavailable(f"{where}: TLS failed ({exc.reason or exc})") from None
        except aiosmtplib.SMTPConnectError as exc:
            reason = exc.__cause__ or exc
            raise RelayUnavailable(f"{where}: cannot connect ({_reason(reason)})") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise RelayUnavailable(f"{where}: {_reason(exc)}") from None
        await pipe.quit()

    async def _borrow(self) -> _Pipe | None:
        if self._idle is None or self._slots is None:
            self._idle = asyncio.LifoQueue()
            self._slots = asyncio.Semaphore(self.size)
        await self._slots.acquire()
        while not self._idle.empty():
            pipe = self._idle.get_nowait()
            if pipe.is_connected:
                return pipe
        return None

    def _give_back(self, pipe: _Pipe | None) -> None:
        assert self._idle is not None and self._slots is not None
        if pipe is not None and pipe.is_connected:
            self._idle.put_nowait(pipe)
        self._slots.release()

    async def send(self, *, sender: str, recipient: str, message: bytes, name: str) -> None:
        """Raises MessageError when the relay cannot take this address (a non-ASCII
        local part without SMTPUTF8); an international domain is sent IDNA-encoded."""
        sender, recipient = wire_address(sender), wire_address(recipient)
        pipe: _Pipe | None = None
        borrowed = False
        try:
            async with asyncio.timeout(self.timeout):  # the wait for a free connection too
                pipe = await self._borrow()
                borrowed = True
                if pipe is None:
                    pipe = await self._connect()
                await pipe.transaction(sender, recipient, message)
        except SmtpReply as exc:
            if pipe is not None:
                await pipe.reset(self.timeout)
            raise _classify(exc.code, exc.text, recipient=exc.stage in ("rcpt", "data")) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if pipe is not None:
                pipe.close()
            raise TransientDeliveryError(f"connection problem: {type(exc).__name__}") from None
        except MessageError as exc:  # refused before a command was written: pipe reusable
            raise MessageError(f"{exc} ({self.host}:{self.port})") from None
        except BaseException:  # cancelled: replies may still be due, so the pipe is unusable
            if pipe is not None:
                pipe.close()
            raise
        finally:
            if borrowed:
                self._give_back(pipe)

    async def close(self) -> None:
        if self._idle is None:
            return
        while not self._idle.empty():
            await self._idle.get_nowait().quit()


class SmtpReply(Exception):
    """Raised (inside this module) when the server refuses a command."""

    def __init__(self, code: int, text: str, stage: str = "") -> None:
        self.code = code
        self.text = text
        self.stage = stage  # mail, rcpt or data: which command was refused
        super().__init__(f"{code} {text}")


class _Pipe(asyncio.Protocol):
    """One open SMTP connection after the greeting, EHLO, STARTTLS and AUTH.

    Replies are parsed as they arrive and handed, in order, to the commands waiting
    for them, so several commands can be in flight (PIPELINING).
    """

    def __init__(
        self, transport: asyncio.WriteTransport, *, pipelining: bool, smtputf8: bool
    ) -> None:
        self.transport = transport
        self.pipelining = pipelining
        self.smtputf8 = smtputf8
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._waiters: deque[asyncio.Future[tuple[int, str]]] = deque()
        self._lost: Exception | None = None
        self._drained: asyncio.Future[None] | None = None
        transport.set_protocol(self)

    @property
    def is_connected(self) -> bool:
        return self._lost is None and not self.transport.is_closing()

    # -- protocol callbacks ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > 65_536:
            self._fail(SmtpProtocolError("reply too long"))
            return
        while True:
            reply = self._next_reply()
            if reply is None:
                return
            if not self._waiters:
                self._fail(SmtpProtocolError(f"unexpected reply {reply[0]}"))
                return
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(reply)

    def _next_reply(self) -> tuple[int, str] | None:
        """The first complete (possibly multi-line) reply in the buffer, removed from it."""
        buf, pos, lines = self._buffer, 0, []
        while True:
            end = buf.find(b"\n", pos)
            if end < 0:
                return None
            line = bytes(buf[pos:end]).rstrip(b"\r")
            pos = end + 1
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                break
        del buf[:pos]
        try:
            code = int(line[:3])
        except ValueError:
            code = 0
        if not 200 <= code <= 599:
            self._fail(SmtpProtocolError(f"malformed reply {line[:40]!r}"))
            return None
        return code, "\n".join(lines).strip()

    def eof_received(self) -> bool:
        self._fail(ConnectionResetError("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("connection lost"))

    def pause_writing(self) -> None:
        self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    def _fail(self, exc: Exception) -> None:
        if self._lost is None:
            self._lost = exc
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()  # retrieved: nobody may await it any more
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(exc)
            self._drained.exception()
        self.transport.close()

    # -- commands ----------------------------------------------------------------------------

    def _write(self, data: bytes, replies: int) -> list[asyncio.Future[tuple[int, str]]]:
        if self._lost is not None:
            raise self._lost
        futures = [self._loop.create_future() for _ in range(replies)]
        self._waiters.extend(futures)
        self.transport.write(data)
        return futures

    async def transaction(self, sender: str, recipient: str, message: bytes) -> None:
        """MAIL, RCPT, DATA and the body; raises SmtpReply for a refusal."""
        for address in (sender, recipient):
            if any(c in address for c in "\r\n<> ") or not address:
                raise SmtpReply(553, "unusable address")
            if not address.isascii() and not self.smtputf8:
                raise MessageError(
                    "the address has a non-ASCII local part and the relay does not offer SMTPUTF8"
                )
        utf8 = "" if sender.isascii() and recipient.isascii() else " SMTPUTF8"
        commands = [
            f"MAIL FROM:<{sender}>{utf8}\r\n".encode(),
            f"RCPT TO:<{recipient}>\r\n".encode(),
            b"DATA\r\n",
        ]
        expected = (250, 250, 354)
        if self.pipelining:
            futures = self._write(b"".join(commands), 3)
            replies = [await f for f in futures]
        else:
            replies = []
            for command in commands:
                replies.append(await self._write(command, 1)[0])
                if replies[-1][0] != expected[len(replies) - 1]:
                    break
        for stage, (code, text), want in zip(_STAGES, replies, expected, strict=False):
            if code != want:
                if replies[-1][0] == 354:  # DATA accepted after all: end it, empty
                    await self._write(b".\r\n", 1)[0]
                raise SmtpReply(code, text, stage)
        body = message.replace(b"\r\n.", b"\r\n..")
        if body.startswith(b"."):
            body = b"." + body
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        [done] = self._write(body + b".\r\n", 1)
        if self._drained is not None:
            await self._drained
        code, text = await done
        if code != 250:
            raise SmtpReply(code, text, "data")

    async def reset(self, timeout: float) -> None:
        """After a refused command, RSET so the connection can be reused; else drop it."""
        if not self.is_connected:
            return
        try:
            async with asyncio.timeout(timeout):
                code, _text = await self._write(b"RSET\r\n", 1)[0]
        except (OSError, TimeoutError, SmtpProtocolError):
            self.close()
            return
        if code != 250:
            self.close()

    async def quit(self) -> None:
        if self.is_connected:
            try:
                async with asyncio.timeout(5):
                    await self._write(b"QUIT\r\n", 1)[0]
            except (OSError, TimeoutError, SmtpProtocolError):
                pass
        self.close()

    def close(self) -> None:
        self._fail(ConnectionAbortedError("closed"))


class SmtpProtocolError(OSError):
    """Raised when the server's replies do not make sense; the connection is dropped."""


SLOW_DOWN_CODES = frozenset({421, 450, 451, 454})  # the relay asks us to slow down
_STAGES = ("mail", "rcpt", "data")


def _reason(exc: BaseException) -> str:
    """One line for a connection error: `Connection refused`, not `[Errno 111] ...`."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def _classify(
    code: int, message: str, *, recipient: bool = False
) -> TransientDeliveryError | PermanentDeliveryError:
    """The error for a refusal: `ThrottledError` for "slow down", `InvalidRecipientError`
    (a hard bounce) when the refusal of RCPT says the mailbox or its domain does not exist."""
    reason = mask(f"{code} {message}".strip())[:400]  # a relay may quote the recipient
    status = enhanced_status(message)
    if code in SLOW_DOWN_CODES:
        return ThrottledError(reason, code=code, status=status)
    if 400 <= code < 500:
        return TransientDeliveryError(reason, code=code, status=status)
    if recipient and is_hard(code, message):
        return InvalidRecipientError(reason, code=code, status=status)
    return PermanentDeliveryError(reason, code=code, status=status)
