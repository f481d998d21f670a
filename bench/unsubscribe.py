"""Benchmark: RFC 8058 one-click unsubscribe POSTs against the real server.

Seeds N members in a temporary SQLite database, starts `uvicorn unsubscribe_server:app`
on a free loopback port (2 workers by default), then runs these phases, each bounded
in time (--duration) and in requests:

1. closed loop, new members: C connections, each sending one POST after another as
   fast as the server answers; every request unsubscribes a member not yet out (a real
   write: one UPDATE, one INSERT, one commit). The throughput the server sustains.
2. closed loop, members already out: the same, replaying tokens already used (one
   read, no write), as when a mail provider repeats a one-click request.
3. open loop at each of --rates (new members): POSTs due on a fixed schedule over a
   pool of connections, each latency counted from the moment the request was due, so
   a stalled server is not hidden by a client that waits for it: p50/p99 at that
   offered load. A rate the server cannot keep up with (over a second of backlog) is
   reported as saturated, and higher rates are skipped.

Requests carry `List-Unsubscribe=One-Click` as application/x-www-form-urlencoded, as
Gmail sends them. Each phase prints requests/s, latency p50/p99/max, and the CPU used
per request by the server processes and by the client, which shares the machine (read
from /proc, so it means something even when other work loads the machine). At the end,
the one-click opt-outs recorded in the database are checked against the 200 answers
to new members. The client is a minimal HTTP/1.1 keep-alive client on asyncio streams
(standard library only); `--client wrk` runs phase 1 with wrk instead, if installed.

    python bench/unsubscribe.py                          # 2 workers, 16 connections
    python bench/unsubscribe.py --workers 1 --rates 250,500 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dispatcher.audience.tokens import TokenSigner  # noqa: E402
from dispatcher.store.db import create_schema, make_engine  # noqa: E402
from dispatcher.store.models import Channel  # noqa: E402

SECRET = "bench-unsubscribe-secret-0123456789"
BODY = b"List-Unsubscribe=One-Click"


@dataclass
class Result:
    label: str
    elapsed: float = 0.0
    server_cpu: float = 0.0  # seconds of CPU used by the server processes
    client_cpu: float = 0.0  # seconds of CPU used by this (client) process
    latencies: list[float] = field(default_factory=list)  # seconds
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    saturated: float | None = None  # open loop: seconds after which the backlog passed 1 s

    def report(self) -> str:
        n = len(self.latencies)
        if not n:
            return f"{self.label}: no request completed ({self.errors} errors)"
        lat = sorted(self.latencies)
        cores = os.cpu_count() or 1
        p50, p99 = _quantile(lat, 0.50), _quantile(lat, 0.99)
        head = self.label
        if self.saturated is not None:
            head += f" SATURATED (over 1 s of backlog after {self.saturated:.1f} s; stopped)"
        return (
            f"{head}: {n} requests in {self.elapsed:.2f} s = {n / self.elapsed:,.0f} req/s; "
            f"latency p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, "
            f"max {lat[-1] * 1000:.2f} ms, mean {statistics.fmean(lat) * 1000:.2f} ms; "
            f"statuses {dict(sorted(self.statuses.items()))}, errors {self.errors}\n"
            f"  CPU per request: server {self.server_cpu / n * 1000:.3f} ms, "
            f"client {self.client_cpu / n * 1000:.3f} ms"
            + (
                f" (at this cost the server alone on {cores} cores could answer about "
                f"{cores * n / max(self.server_cpu, 1e-9):,.0f} req/s)"
                if self.label.startswith("closed")
                else ""
            )
        )


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------------ server, data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def seed(db: Path, members: int) -> list[str]:
    """N members in a fresh database; their email unsubscribe tokens, in order."""
    url = f"sqlite:///{db}"
    engine = make_engine(url)
    create_schema(engine)
    engine.dispose()
    rows = [(f"B{i:07d}", f"m{i}@example.com", f"+98912{i:07d}") for i in range(members)]
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO member (external_id, first_name, last_name, email, mobile, "
            "email_opt_in, sms_opt_in, mobile_invalid, tags, updated_at) "
            "VALUES (?, '', '', ?, ?, 1, 1, 0, '', CURRENT_TIMESTAMP)",
            rows,
        )
        ids = [r[0] for r in conn.execute("SELECT id FROM member ORDER BY id")]
    signer = TokenSigner([SECRET.encode()])
    return [signer.sign(i, Channel.EMAIL) for i in ids]


def start_server(
    workdir: Path, db: Path, port: int, workers: int, http: str, loop: str
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "UNSUBSCRIBE_SECRET": SECRET,
        "MAIL_FROM": "فروشگاه نمونه <news@shop.example>",
        "UNSUBSCRIBE_BASE_URL": f"http://127.0.0.1:{port}",
    }
    env.pop("REDIS_URL", None)
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "unsubscribe_server:app",
        "--app-dir",
        str(ROOT),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--http",
        http,
        "--loop",
        loop,
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    # cwd: a directory of its own, so that no `.env` of the developer's is read.
    return subprocess.Popen(cmd, cwd=workdir, env=env, start_new_session=True)


def cpu_seconds(group: int) -> float:
    """CPU time (user + system) used so far by every process of a process group."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == group:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


async def measure(group: int, phase: Awaitable[Result]) -> Result:
    """Run a phase; record the CPU used meanwhile by the server's processes and this one."""
    server, client = cpu_seconds(group), time.process_time()
    result = await phase
    result.server_cpu = cpu_seconds(group) - server
    result.client_cpu = time.process_time() - client
    return result


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            conn = await Connection.open(port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        status = await conn.request(b"GET", b"/healthz", b"")
        conn.close()
        if status == 200:
            return
        await asyncio.sleep(0.1)
    raise SystemExit("the server did not become healthy in time")


# --------------------------------------------------------------------------- client


class Connection:
    """One HTTP/1.1 keep-alive connection: a request, then its whole response."""

    _LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, method: bytes, path: bytes, body: bytes) -> int:
        head = b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, path)
        if body:
            head += (
                b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n"
                % len(body)
            )
        self.writer.write(head + b"\r\n" + body)
        response = await self.reader.readuntil(b"\r\n\r\n")
        match = self._LENGTH.search(response)
        if match:
            await self.reader.readexactly(int(match.group(1)))
        return int(response[9:12])

    def close(self) -> None:
        self.writer.close()


class Tokens:
    """Token paths: `fresh()` names a member not unsubscribed yet, `replay()` one that is."""

    def __init__(self, tokens: list[str]) -> None:
        self._paths = [f"/u/{t}".encode() for t in tokens]
        self._next = 0
        self._replayed = 0

    def fresh(self) -> bytes:
        if self._next >= len(self._paths):
            raise SystemExit("ran out of members: raise --members")
        path = self._paths[self._next]
        self._next += 1
        return path

    def replay(self) -> bytes:
        path = self._paths[self._replayed % max(self._next, 1)]
        self._replayed += 1
        return path

    def left(self) -> int:
        return len(self._paths) - self._next


async def closed_loop(
    port: int,
    next_path: Callable[[], bytes],
    connections: int,
    duration: float,
    limit: int,
    label: str,
) -> Result:
    result = Result(label)
    deadline = time.perf_counter() + duration
    budget = [limit]

    async def run() -> None:
        conn = await Connection.open(port)
        try:
            while budget[0] > 0 and time.perf_counter() < deadline:
                budget[0] -= 1
                path = next_path()
                start = time.perf_counter()
                try:
                    status = await conn.request(b"POST", path, BODY)
                except (OSError, asyncio.IncompleteReadError):
                    result.errors += 1
                    conn.close()
                    conn = await Connection.open(port)
                    continue
                result.latencies.append(time.perf_counter() - start)
                result.statuses[status] = result.statuses.get(status, 0) + 1
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(run() for _ in range(connections)))
    result.elapsed = time.perf_counter() - start
    return result


async def open_loop(
    port: int, next_path: Callable[[], bytes], rate: float, duration: float, pool: int
) -> Result:
    """Requests due at fixed times; latency counted from when each was due. Stops early,
    marked saturated, once more than a second's worth of requests is waiting."""
    result = Result(f"open loop, {rate:,.0f} req/s offered")
    due: asyncio.Queue[float | None] = asyncio.Queue()

    async def run() -> None:
        conn = await Connection.open(port)
        try:
            while (when := await due.get()) is not None:
                try:
                    status = await conn.request(b"POST", next_path(), BODY)
                except (OSError, asyncio.IncompleteReadError):
                    result.errors += 1
                    conn.close()
                    conn = await Connection.open(port)
                    continue
                result.latencies.append(time.perf_counter() - when)
                result.statuses[status] = result.statuses.get(status, 0) + 1
        finally:
            conn.close()

    workers = [asyncio.create_task(run()) for _ in range(pool)]
    start = time.perf_counter()
    for i in range(int(rate * duration)):
        when = start + i / rate
        delay = when - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if due.qsize() > rate:
            result.saturated = time.perf_counter() - start
            break
        due.put_nowait(when)
    while not due.empty():  # a saturated run does not wait for its backlog
        due.get_nowait()
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    result.elapsed = time.perf_counter() - start
    return result


def wrk_closed_loop(
    port: int, tokens: Tokens, connections: int, duration: float, workdir: Path
) -> str:
    """The closed loop with wrk (C, so the client costs less CPU); returns its summary."""
    count = min(tokens.left(), 200_000)
    paths = [tokens.fresh().decode() for _ in range(count)]
    listing = workdir / "paths.txt"
    listing.write_text("\n".join(paths) + "\n")
    script = workdir / "oneclick.lua"
    threads = 2
    script.write_text(
        f"""
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  paths = {{}}
  for line in io.lines("{listing}") do paths[#paths + 1] = line end
  i = id
end
request = function()
  local path = paths[i]
  i = i + {threads}
  if i > #paths then i = id end
  return wrk.format("POST", path,
    {{["Content-Type"] = "application/x-www-form-urlencoded"}}, "{BODY.decode()}")
end
"""
    )
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{int(duration)}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    ).stdout
    wanted = ("Latency ", "50%", "99%", "requests in", "Requests/sec", "Non-2xx", "Socket errors")
    return "\n".join(line for line in out.splitlines() if any(w in line for w in wanted))


def recorded_one_clicks(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM consent_event WHERE source = 'one-click' AND NOT opted_in"
        ).fetchone()
    return int(n)


# ----------------------------------------------------------------------------- main


async def bench(args: argparse.Namespace, workdir: Path) -> int:
    db = workdir / "bench.db"
    t = time.perf_counter()
    tokens = Tokens(seed(db, args.members))
    print(f"seeded {args.members:,} members in {time.perf_counter() - t:.1f} s")
    port = free_port()
    proc = start_server(workdir, db, port, args.workers, args.http, args.loop)
    fresh_ok = 0
    try:
        await wait_healthy(port, proc)
        loop = args.loop if args.loop != "auto" else "uvloop" if find_spec("uvloop") else "asyncio"
        http = (
            args.http if args.http != "auto" else "httptools" if find_spec("httptools") else "h11"
        )
        print(
            f"server: uvicorn unsubscribe_server:app, {args.workers} worker(s) ({loop}, {http}), "
            f"127.0.0.1:{port}, SQLite (WAL); {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f} before the run"
        )
        warm = await closed_loop(port, tokens.fresh, args.connections, 3, 2000, "warm-up")
        fresh_ok += warm.statuses.get(200, 0)
        c = args.connections
        if args.client == "wrk":
            print(f"closed loop, new members (wrk, {c} connections, {args.duration:.0f} s):")
            before = cpu_seconds(proc.pid)
            print(wrk_closed_loop(port, tokens, c, args.duration, workdir))
            print(f"  server CPU: {cpu_seconds(proc.pid) - before:.2f} s")
        else:
            phase = closed_loop(
                port,
                tokens.fresh,
                c,
                args.duration,
                args.max_requests,
                f"closed loop, new members, {c} connections",
            )
            result = await measure(proc.pid, phase)
            fresh_ok += result.statuses.get(200, 0)
            print(result.report())
        phase = closed_loop(
            port,
            tokens.replay,
            c,
            args.duration,
            args.max_requests,
            f"closed loop, members already out (no write), {c} connections",
        )
        print((await measure(proc.pid, phase)).report())
        for rate in sorted(args.rates):
            if args.client == "wrk" or tokens.left() < rate * args.duration:
                print(f"open loop, {rate:,.0f} req/s: skipped (not enough members left)")
                continue
            result = await measure(
                proc.pid, open_loop(port, tokens.fresh, rate, args.duration, args.pool)
            )
            fresh_ok += result.statuses.get(200, 0)
            print(result.report())
            if result.saturated is not None:
                break
    finally:
        stop_server(proc)
    events = recorded_one_clicks(db)
    print(f"one-click opt-outs recorded: {events:,}; load average now {os.getloadavg()[0]:.1f}")
    if args.client != "wrk" and events != fresh_ok:
        print(f"MISMATCH: {fresh_ok:,} answers 200 to new members, {events:,} opt-outs recorded")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=150_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16, help="closed loops")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--max-requests", type=int, default=40_000, help="per closed loop")
    parser.add_argument(
        "--rates",
        type=lambda v: [float(r) for r in v.split(",") if r.strip()],
        default=[500.0, 1000.0, 2000.0],
        help="open-loop rates, comma-separated (empty: none)",
    )
    parser.add_argument("--pool", type=int, default=64, help="open-loop connections")
    parser.add_argument("--client", choices=["asyncio", "wrk"], default="asyncio")
    parser.add_argument("--http", choices=["auto", "h11", "httptools"], default="auto")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    args = parser.parse_args()
    if args.client == "wrk" and shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk); use --client asyncio")
    with tempfile.TemporaryDirectory(prefix="bench-unsubscribe-") as tmp:
        return asyncio.run(bench(args, Path(tmp)))


if __name__ == "__main__":
    raise SystemExit(main())
