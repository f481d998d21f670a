"""Benchmark: link clicks (`GET /c/{token}`) against the real server while a campaign sends.

Seeds N members in a temporary SQLite database and a campaign with five links, sent
an hour ago (so its clicks count as people's); starts `uvicorn unsubscribe_server:app`
on a free loopback port, and a second campaign's `dispatcher campaign send` (inline:
workers rendering and writing every email, and recording each delivery, on the same
database) beside it. Then, while that campaign sends:

1. closed loop: C connections clicking as fast as the server answers, each click a
   random delivery's random link: the clicks/s the server sustains.
2. open loop at --rate clicks/s (default 2,000): clicks due on a fixed schedule, each
   latency counted from when it was due: p50/p99 at that load.

Each phase prints clicks/s and latency p50/p99/max. At the end the server is stopped
(it writes its last batch) and the clicks in the database are checked against the
302 answers: every click counted, none twice.

    python bench/clicks.py                    # 20,000 members, 2,000 clicks/s
    python bench/clicks.py --members 5000 --rate 3000 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.unsubscribe import (  # noqa: E402
    SECRET,
    Connection,
    Result,
    free_port,
    measure,
    start_server,
    stop_server,
    wait_healthy,
)
from dispatcher.audience.addresses import address_keys  # noqa: E402
from dispatcher.audience.clicktoken import ClickSigner  # noqa: E402
from dispatcher.definition.campaign import load_campaign  # noqa: E402
from dispatcher.queue.expansion import expand  # noqa: E402
from dispatcher.settings import load_settings  # noqa: E402
from dispatcher.store.db import create_schema, make_engine  # noqa: E402

LINKS = [f"https://shop.example/yalda/{i}" for i in range(5)]
HTML = (
    '{% extends "email_layout.html" %}{% block content %}<p>{{ member.first_name }}</p>'
    + "".join(f'<p><a href="{url}">پیوند {i}</a></p>' for i, url in enumerate(LINKS))
    + "{% endblock %}"
)
SUPPRESSION = "bench-suppression-key-0123456789"


def write_campaign(folder: Path, slug: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "email.html").write_text(HTML, encoding="utf-8")
    path = folder / f"{slug}.toml"
    path.write_text(
        f'slug = "{slug}"\nname = "بنچ"\nchannels = ["email"]\n'
        '[email]\nsubject = "حراج"\nhtml = "email.html"\n',
        encoding="utf-8",
    )
    return path


def seed(workdir: Path, db: Path, members: int) -> list[bytes]:
    """N members; a campaign sent to all of them an hour ago; click paths, shuffled."""
    engine = make_engine(f"sqlite:///{db}")
    create_schema(engine)
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO member (external_id, first_name, last_name, email, mobile, "
            "email_opt_in, sms_opt_in, mobile_invalid, tags, updated_at) "
            "VALUES (?, 'مریم', '', ?, NULL, 1, 1, 0, '', CURRENT_TIMESTAMP)",
            [(f"B{i:07d}", f"m{i}@example.com") for i in range(members)],
        )
    settings = load_settings(
        database_url=f"sqlite:///{db}", suppression_key=SUPPRESSION, _env_file=None
    )
    spec = load_campaign(write_campaign(workdir / "clicked", "clicked"))
    campaign = expand(engine, spec, keys=address_keys(settings)).campaign
    engine.dispose()
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat(" ")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE delivery SET status = 'sent', sent_at = ?", (an_hour_ago,))
        conn.execute("UPDATE campaign SET state = 'done'")
        ids = [r[0] for r in conn.execute("SELECT id FROM delivery")]
    signer = ClickSigner([SECRET.encode()])
    assert campaign.id is not None
    paths = [
        f"/c/{signer.sign(campaign.id, link, None, i)}".encode()
        for i in ids
        for link in range(len(LINKS))
    ]
    random.shuffle(paths)
    return paths


def start_sending(workdir: Path, db: Path) -> subprocess.Popen[bytes]:
    """`dispatcher campaign send` of a second campaign to everyone, inline, beside."""
    path = write_campaign(workdir / "sending", "sending")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "UNSUBSCRIBE_SECRET": SECRET,
        "SUPPRESSION_KEY": SUPPRESSION,
        "MAIL_FROM": "فروشگاه نمونه <news@shop.example>",
        "OUTBOX_DIR": str(workdir / "outbox"),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("REDIS_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "campaign", "send", str(path)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def closed_loop(port: int, paths: list[bytes], connections: int, duration: float) -> Result:
    result = Result(f"closed loop, {connections} connections")
    deadline = time.perf_counter() + duration

    async def run(offset: int) -> None:
        conn = await Connection.open(port)
        i = offset
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                status = await conn.request(b"GET", paths[i % len(paths)], b"")
                result.latencies.append(time.perf_counter() - start)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                i += connections
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(run(k) for k in range(connections)))
    result.elapsed = time.perf_counter() - start
    return result


async def open_loop(
    port: int, paths: list[bytes], rate: float, duration: float, pool: int
) -> Result:
    """Clicks due at fixed times; latency from when each was due."""
    result = Result(f"open loop, {rate:,.0f} clicks/s offered")
    due: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def run() -> None:
        conn = await Connection.open(port)
        try:
            while (item := await due.get()) is not None:
                when, path = item
                status = await conn.request(b"GET", path, b"")
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
        due.put_nowait((when, paths[-1 - i % len(paths)]))
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    result.elapsed = time.perf_counter() - start
    return result


def counted(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute("SELECT coalesce(sum(clicks + scanner), 0) FROM click_count").fetchone()
    return int(n)


async def bench(args: argparse.Namespace, workdir: Path) -> int:
    db = workdir / "bench.db"
    print(f"seeding {args.members:,} members and a sent campaign ...", flush=True)
    paths = seed(workdir, db, args.members)
    port = free_port()
    server = start_server(workdir, db, port, args.workers, "httptools", "uvloop")
    sender = None
    try:
        await wait_healthy(port, server)
        sender = start_sending(workdir, db)
        print(f"server: {args.workers} worker(s); a campaign of {args.members:,} sending beside")
        results = [
            await measure(server.pid, closed_loop(port, paths, args.connections, args.duration)),
            await measure(server.pid, open_loop(port, paths, args.rate, args.duration, 64)),
        ]
        for result in results:
            print(result.report().replace("req/s", "clicks/s"), flush=True)
        still_sending = sender.poll() is None
        print(f"the campaign was {'still ' if still_sending else 'done '}sending at the end")
    finally:
        if sender is not None:
            stop_server(sender)
        stop_server(server)
    answered = sum(r.statuses.get(302, 0) for r in results)
    recorded = counted(db)
    print(f"clicks answered 302: {answered:,}; counted in the database: {recorded:,}")
    return 0 if recorded == answered else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/clicks.py", description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn workers (default 1)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rate", type=float, default=2000.0, help="open loop, clicks/s")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-clicks-") as tmp:
        return asyncio.run(bench(args, Path(tmp)))


if __name__ == "__main__":
    raise SystemExit(main())
