"""A spooling SMTP server for tests (aiosmtpd), run in its own process.

Run it with::

    python -m tests.servers.smtp_server --port P --spool DIR [--control-port C] [--auth USER:PASS]

``--port 0`` / ``--control-port 0`` (the defaults) pick free ports.  Once listening, the server
prints one JSON line on stdout: ``{"port": P, "control_port": C}``.  No TLS.  With ``--auth``
the server requires AUTH PLAIN or LOGIN with exactly those credentials before MAIL.

Spool format: every accepted message is stored once per RCPT as ``DIR/NNNNNNNN.eml`` (the raw
bytes of DATA, dot-unstuffed, as received) next to ``DIR/NNNNNNNN.json`` with the envelope:
``{"mail_from", "rcpt_to", "seq", "connection", "peer", "received_at"}``.  ``NNNNNNNN`` is a
sequence number in arrival order; ``connection`` numbers the SMTP connections from 1.  Both files
are written to a ``.*.tmp`` name and renamed (the ``.json`` first), so an ``.eml`` that is
visible is complete and has its sidecar.

Control channel: a TCP port speaking one JSON object per line each way.  Requests are
``{"cmd": ...}`` with ``cmd`` one of ``ping``, ``stats`` (-> ``connections``, ``messages``),
``fail`` (``stage`` "mail"|"rcpt"|"data", ``code``, ``text``, ``count``: reply that instead of
250 to the next ``count`` such commands), ``reject`` (``address``: 550 5.1.1 for that RCPT,
for good), ``drop`` (``count``, ``store``: close the connection after the next ``count`` DATA
bodies without replying, storing them or not), ``delay`` (``seconds``, ``count``: wait before
replying to DATA), ``smtputf8`` (``offer``: whether connections opened from now on
offer SMTPUTF8; on by default) and ``reset`` (clear injections, counters and the spool,
offer SMTPUTF8 again).  Answers are
``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``.  ``SmtpServerHandle`` wraps all this.
"""

import argparse
import asyncio
import contextlib
import email
import email.policy
import json
import os
import socket
import time
import warnings
from email.message import EmailMessage
from pathlib import Path
from typing import Any, NamedTuple

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.eventually import eventually
from tests.servers.kavenegar_server import spawn_server, stop_process, watch_stdin


class Faults:
    """Failure injections, changed through the control channel."""

    def __init__(self) -> None:
        self.fail: dict[str, list[Any]] = {}  # stage -> [reply, remaining]
        self.rejected: set[str] = set()
        self.drop = 0
        self.drop_store = False
        self.delay = 0.0
        self.delay_count = 0

    def take_failure(self, stage: str) -> str | None:
        entry = self.fail.get(stage)
        if not entry:
            return None
        entry[1] -= 1
        if entry[1] <= 0:
            del self.fail[stage]
        return entry[0]


class SpoolHandler:
    """aiosmtpd handler: applies the injections and writes accepted mail to the spool."""

    def __init__(self, spool: Path, *, pipelining: bool = True) -> None:
        self.spool = spool
        self.pipelining = pipelining  # offered in EHLO, as Postfix does
        self.faults = Faults()
        self.connections = 0
        self.messages = 0
        self.closed = 0  # connections ended (a DATA still running is cancelled then)
        self.seq = 0
        self.smtputf8 = True

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        # The client pipelined when RCPT (and DATA) arrived with MAIL, before its answer.
        session.pipelined = bool(getattr(server._reader, "_buffer", b""))  # type: ignore[attr-defined]
        failure = self.faults.take_failure("mail")
        if failure:
            return failure
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() in self.faults.rejected:
            return "550 5.1.1 no such user"
        failure = self.faults.take_failure("rcpt")
        if failure:
            return failure
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        faults = self.faults
        if faults.delay_count > 0:
            faults.delay_count -= 1
            await asyncio.sleep(faults.delay)
        failure = faults.take_failure("data")
        if failure:
            return failure
        if faults.drop > 0:
            faults.drop -= 1
            if faults.drop_store:
                self.store(server, session, envelope)
            assert server.transport is not None
            server.transport.close()
            await asyncio.sleep(5)  # connection_lost() cancels us long before this ends
            return "421 4.3.0 connection dropped"
        self.store(server, session, envelope)
        return "250 OK queued"

    def store(self, server: SMTP, session: Session, envelope: Envelope) -> None:
        raw = envelope.original_content or b""
        for rcpt in envelope.rcpt_tos:
            self.seq += 1
            self.messages += 1
            name = f"{self.seq:08d}"
            meta = {
                "mail_from": envelope.mail_from,
                "rcpt_to": rcpt,
                "mail_options": list(envelope.mail_options),
                "seq": self.seq,
                "connection": getattr(server, "connection_number", 0),
                "pipelined": getattr(session, "pipelined", False),
                "peer": list(session.peer) if session.peer else None,
                "received_at": time.time(),
            }
            _write_atomic(self.spool / f"{name}.json", json.dumps(meta).encode("utf-8"))
            _write_atomic(self.spool / f"{name}.eml", raw)

    def reset(self) -> None:
        self.faults = Faults()
        self.smtputf8 = True
        self.connections = 0
        self.messages = 0
        self.closed = 0
        for path in self.spool.iterdir():
            if path.suffix in (".eml", ".json"):
                path.unlink(missing_ok=True)

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd, faults = request["cmd"], self.faults
        if cmd == "stats":
            return {
                "ok": True,
                "connections": self.connections,
                "messages": self.messages,
                "closed": self.closed,
            }
        if cmd == "fail":
            reply = f"{request['code']} {request['text']}"
            faults.fail[request["stage"]] = [reply, request["count"]]
        elif cmd == "reject":
            faults.rejected.add(request["address"].lower())
        elif cmd == "drop":
            faults.drop, faults.drop_store = request["count"], request.get("store", False)
        elif cmd == "delay":
            faults.delay, faults.delay_count = request["seconds"], request["count"]
        elif cmd == "smtputf8":
            self.smtputf8 = bool(request["offer"])
        elif cmd == "reset":
            self.reset()
        elif cmd != "ping":
            raise KeyError(cmd)
        return {"ok": True}

    async def control_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = self.control(json.loads(line))
                except (KeyError, ValueError, TypeError) as exc:
                    answer = {"ok": False, "error": repr(exc)}
                writer.write(json.dumps(answer).encode("utf-8") + b"\n")
                await writer.drain()
        finally:
            writer.close()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class CountingSMTP(SMTP):
    """aiosmtpd's SMTP protocol, numbering the connections it serves."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        handler: SpoolHandler = self.event_handler
        handler.connections += 1
        self.connection_number = handler.connections
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)  # cancels a command still being handled
        handler: SpoolHandler = self.event_handler
        handler.closed += 1


def make_authenticator(user: str, password: str) -> Any:
    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (
            user.encode("utf-8"),
            password.encode("utf-8"),
        )
        return AuthResult(success=ok, handled=False)

    return authenticate


async def serve(args: argparse.Namespace) -> None:
    spool = Path(args.spool)
    spool.mkdir(parents=True, exist_ok=True)
    handler = SpoolHandler(spool, pipelining=not args.no_pipelining)
    options: dict[str, Any] = {
        "hostname": "smtp.test",
        "ident": "test-smtp",
        "enable_SMTPUTF8": True,
    }
    if args.auth:
        user, _, password = args.auth.partition(":")
        options.update(
            authenticator=make_authenticator(user, password),
            auth_required=True,
            auth_require_tls=False,
        )
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(
        lambda: CountingSMTP(handler, **{**options, "enable_SMTPUTF8": handler.smtputf8}),
        args.host,
        args.port,
    )
    control = await asyncio.start_server(handler.control_client, args.host, args.control_port)
    ports = {
        "port": smtp.sockets[0].getsockname()[1],
        "control_port": control.sockets[0].getsockname()[1],
    }
    print(json.dumps(ports), flush=True)
    async with smtp, control:
        await asyncio.gather(smtp.serve_forever(), control.serve_forever())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--spool", required=True)
    parser.add_argument("--auth", default=None, help="USER:PASS; then AUTH is required")
    parser.add_argument("--no-pipelining", action="store_true", help="do not offer PIPELINING")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # aiosmtpd warns about AUTH without TLS, on purpose here
    if args.watch_stdin:
        watch_stdin()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


# --- client side ---------------------------------------------------------------------------


class SpooledMessage(NamedTuple):
    """One stored message for one recipient; unpacks as ``(mail_from, rcpt_to, raw)``."""

    mail_from: str
    rcpt_to: str
    raw: bytes

    @property
    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


class SmtpServerHandle:
    """Test-side handle of a running spooling SMTP server."""

    def __init__(
        self, proc: Any, host: str, port: int, control_port: int, spool: Path, auth: str | None
    ) -> None:
        self.proc, self.host, self.port, self.control_port = proc, host, port, control_port
        self.spool, self.auth = spool, auth

    def _control(self, cmd: str, **fields: Any) -> dict[str, Any]:
        with socket.create_connection((self.host, self.control_port), timeout=10) as sock:
            sock.sendall(json.dumps({"cmd": cmd, **fields}).encode("utf-8") + b"\n")
            with sock.makefile("rb") as reader:
                answer = json.loads(reader.readline())
        if not answer.get("ok"):
            raise RuntimeError(f"SMTP control {cmd!r} failed: {answer}")
        return answer

    def messages(self) -> list[SpooledMessage]:
        """Stored messages in arrival order, one per (message, recipient)."""
        found = []
        for path in sorted(self.spool.glob("[0-9]*.eml")):
            meta = json.loads(path.with_suffix(".json").read_bytes())
            found.append(SpooledMessage(meta["mail_from"], meta["rcpt_to"], path.read_bytes()))
        return found

    def envelopes(self) -> list[dict[str, Any]]:
        """The JSON sidecars (mail_from, rcpt_to, mail_options, seq, connection, pipelined,
        peer, received_at)."""
        return [
            json.loads(p.with_suffix(".json").read_bytes())
            for p in sorted(self.spool.glob("[0-9]*.eml"))
        ]

    def connection_count(self) -> int:
        """SMTP connections opened since start (or the last reset)."""
        return self._control("stats")["connections"]

    def closed_count(self) -> int:
        """SMTP connections ended since start (or the last reset), by either side."""
        return self._control("stats")["closed"]

    def inject_temp_failure(
        self, code: int = 451, count: int = 1, stage: str = "rcpt", text: str | None = None
    ) -> None:
        """Reply ``code text`` to the next ``count`` MAIL/RCPT/DATA commands of ``stage``."""
        if stage not in ("mail", "rcpt", "data"):
            raise ValueError(f"unknown stage {stage!r}")
        text = text or ("4.3.0 try later" if code < 500 else "5.3.0 rejected")
        self._control("fail", stage=stage, code=code, text=text, count=count)

    def reject_recipient(self, address: str) -> None:
        """Answer RCPT TO ``address`` with ``550 5.1.1 no such user`` (until reset)."""
        self._control("reject", address=address)

    def drop_after_data(self, count: int = 1, store: bool = False) -> None:
        """Close the connection after the next ``count`` DATA bodies, without replying."""
        self._control("drop", count=count, store=store)

    def delay_data(self, seconds: float, count: int = 1) -> None:
        """Wait ``seconds`` before replying to the next ``count`` DATA bodies."""
        self._control("delay", seconds=seconds, count=count)

    def offer_smtputf8(self, offer: bool) -> None:
        """Whether connections opened from now on offer SMTPUTF8 (until reset: they do)."""
        self._control("smtputf8", offer=offer)

    def reset(self) -> None:
        """Clear injections, the connection count and the spool; offer SMTPUTF8 again."""
        self._control("reset")

    def wait_for(self, count: int, timeout: float = 5.0) -> list[SpooledMessage]:
        """Poll until at least ``count`` messages are stored; return them."""
        return eventually(
            lambda: (found := self.messages()) and len(found) >= count and found,
            timeout=timeout,
            what=lambda: f"{len(self.messages())} of {count} messages stored",
        )

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> "SmtpServerHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_smtp_server(
    tmp_path: Path,
    auth: str | tuple[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
    pipelining: bool = True,
) -> SmtpServerHandle:
    """Start the server in a subprocess, spooling to ``tmp_path/smtp-spool``, on free ports."""
    if isinstance(auth, tuple):
        auth = ":".join(auth)
    spool = tmp_path / "smtp-spool"
    spool.mkdir(parents=True, exist_ok=True)
    args = ["--host", host, "--spool", str(spool)] + (["--auth", auth] if auth else [])
    if not pipelining:
        args.append("--no-pipelining")
    proc, ready = spawn_server("tests.servers.smtp_server", args, tmp_path / "smtp-server.log")
    handle = SmtpServerHandle(proc, host, ready["port"], ready["control_port"], spool, auth)
    try:
        handle._control("ping")
    except Exception:
        handle.stop()
        raise
    return handle


if __name__ == "__main__":
    main()
