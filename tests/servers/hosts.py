"""Test "hosts": network namespaces of the test's own (`ip netns`), each joined to this
machine by a veth pair, and a TCP relay that makes services listening on 127.0.0.1
(PostgreSQL, the broker, the SMTP server) answer on the host side of each pair.

Where the machine does not allow namespaces (not root, no `ip`), `HostNetwork.create`
returns None with the reason, and the caller runs its hosts as plain processes.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass, field


@dataclass
class Host:
    """One namespace: its name, and the address of this machine as it sees it."""

    namespace: str
    gateway: str  # where the relay answers for it

    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *args]


@dataclass
class HostNetwork:
    hosts: list[Host] = field(default_factory=list)

    @classmethod
    def create(cls, count: int) -> tuple[HostNetwork | None, str]:
        """`count` namespaces, or None and why not."""
        if shutil.which("ip") is None:
            return None, "no `ip` command (iproute2)"
        net = cls()
        tag = uuid.uuid4().hex[:6]
        subnet = int(tag[:2], 16)  # 10.231.<subnet>.0/24: one /30 per host
        try:
            for i in range(count):
                ns, outside, inside = f"dsp{tag}{i}", f"v{tag}{i}h", f"v{tag}{i}n"
                gateway, address = f"10.231.{subnet}.{4 * i + 1}", f"10.231.{subnet}.{4 * i + 2}"
                _ip("netns", "add", ns)
                net.hosts.append(Host(ns, gateway))
                _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
                _ip("link", "set", inside, "netns", ns)
                _ip("addr", "add", f"{gateway}/30", "dev", outside)
                _ip("link", "set", outside, "up")
                _ip("netns", "exec", ns, "ip", "addr", "add", f"{address}/30", "dev", inside)
                _ip("netns", "exec", ns, "ip", "link", "set", inside, "up")
                _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        except subprocess.CalledProcessError as exc:
            net.close()
            reason = (exc.stderr or b"").decode(errors="replace").strip()
            return None, f"`{' '.join(exc.cmd)}` failed: {reason or exc.returncode}"
        return net, ""

    def close(self) -> None:
        for host in self.hosts:  # the veth pair goes with its namespace
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
        self.hosts.clear()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class TcpRelay:
    """Forwards connections to `listen:port` to `127.0.0.1:port`, in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def add(self, listen: str, port: int) -> None:
        async def start() -> None:
            self._servers.append(await asyncio.start_server(self._relay(port), listen, port))

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    @staticmethod
    def _relay(port: int):  # type: ignore[no-untyped-def]
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                try:
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                except OSError:
                    pass
                finally:
                    dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        return handle

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:  # the connections still open
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
