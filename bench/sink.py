"""A minimal, fast SMTP sink for the benchmark: accepts everything, keeps nothing.

Speaks just enough ESMTP for a client that pipelines (EHLO advertises PIPELINING,
8BITMIME and SIZE): every command is answered 250 (DATA 354, QUIT 221), each DATA body
is read up to the lone dot and counted, never stored. `XCOUNT` answers `250 <n>` with the
number of messages accepted so far, so the benchmark can check what arrived.

    python -m bench.sink [--host 127.0.0.1] [--port 0]

prints one JSON line, `{"port": P}`, once listening. Postfix's `smtp-sink` (written in
C, so it leaves more of the CPU to the workers) is preferred when installed; this one is
the fallback that needs nothing but the standard library.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

EHLO = (
    b"250-sink.localhost\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 52428800\r\n"
    b"250 ENHANCEDSTATUSCODES\r\n"
)


class Counter:
    messages = 0
    connections = 0


class SinkProtocol(asyncio.Protocol):
    """One connection: a line parser that switches to body mode after DATA."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        Counter.connections += 1
        transport.write(b"220 sink.localhost ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out: list[bytes] = []
        buf = self.buf
        pos = 0
        while True:
            if self.in_data:
                # The body ends with CRLF.CRLF (or is just ".\r\n" for an empty body).
                end = buf.find(b"\r\n.\r\n", max(pos - 2, 0))
                if end < 0:
                    if buf[pos : pos + 3] == b".\r\n":
                        end, stop = pos, pos + 3
                    else:
                        break
                else:
                    stop = end + 5
                pos = stop
                self.in_data = False
                Counter.messages += 1
                out.append(b"250 2.0.0 Ok: queued\r\n")
                continue
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            verb = bytes(buf[pos : pos + 4]).upper()
            pos = nl + 1
            if verb in (b"EHLO", b"HELO"):
                out.append(EHLO if verb == b"EHLO" else b"250 sink.localhost\r\n")
            elif verb == b"DATA":
                self.in_data = True
                out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                if buf[pos : pos + 3] == b".\r\n":
                    continue
            elif verb == b"QUIT":
                out.append(b"221 2.0.0 Bye\r\n")
                assert self.transport is not None
                self.transport.write(b"".join(out))
                self.transport.close()
                return
            elif verb == b"XCOU":
                out.append(f"250 {Counter.messages}\r\n".encode())
            else:
                out.append(b"250 2.0.0 Ok\r\n")
        del buf[:pos]
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SinkProtocol, host, port, backlog=512, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(json.dumps({"port": bound}) + "\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def count_messages(host: str, port: int, timeout: float = 5.0) -> int:
    """Ask a running bench sink how many messages it accepted."""
    import socket

    with socket.create_connection((host, port), timeout=timeout) as sock:
        f = sock.makefile("rwb")
        f.readline()
        f.write(b"XCOUNT\r\nQUIT\r\n")
        f.flush()
        return int(f.readline().split()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
