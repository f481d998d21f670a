"""Benchmark: members per second through `POST /api/v1/members/batch`.

Starts `uvicorn dispatcher.api:app` (one process, as the Procfile's `api` line) on a free
loopback port against a fresh database (SQLite, and PostgreSQL with --postgres), makes
an API key, then sends batches of --batch members (1,000 by default, the endpoint's
limit) one after another over one keep-alive connection (--connections N: N such
clients side by side), as a shop's sync job would:

1. create: N new members (name, email, mobile, tags, opt-ins);
2. update: the same N again, each with a new mobile and one tag more.

Each phase prints members/s (wall clock, client included: the client shares the
machine) and the members in the database are checked at the end.

    python -m bench.api                       # SQLite, N = 20,000
    python -m bench.api -n 50000 --postgres postgresql+psycopg://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bench.harness import Database  # noqa: E402
from dispatcher.store.apikeys import create_key  # noqa: E402
from tests.servers.app_server import AppServer  # noqa: E402

TARGET = 5000  # members/s the issue asks for


def batches(n: int, size: int, update: bool) -> list[bytes]:
    """The request bodies, built before the clock starts."""
    bodies = []
    for start in range(0, n, size):
        members = []
        for i in range(start, min(n, start + size)):
            mobile = f"0935{i:07d}" if update else f"0912{i:07d}"
            members.append(
                {
                    "external_id": f"S{i:07d}",
                    "first_name": "مریم",
                    "last_name": "رضایی",
                    "email": f"member.{i}@example.com",
                    "mobile": mobile,
                    "email_opt_in": True,
                    "sms_opt_in": i % 10 != 0,
                    "tags": ["newsletter", "vip"] if update else ["newsletter"],
                }
            )
        bodies.append(json.dumps({"members": members}, ensure_ascii=False).encode())
    return bodies


def run_phase(url: str, key: str, bodies: list[bytes], n: int, connections: int) -> float:
    """Send the bodies over `connections` keep-alive connections, each taking the next
    body when its answer is in; members/s from the first request to the last answer."""
    host, port = url.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    todo = iter(bodies)
    lock = threading.Lock()
    applied: list[int] = []

    def client() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=300)
        while True:
            with lock:
                body = next(todo, None)
            if body is None:
                break
            conn.request("POST", "/api/v1/members/batch", body=body, headers=headers)
            answer = conn.getresponse()
            data = json.loads(answer.read())
            if answer.status != 200 or data["errors"]:
                raise SystemExit(f"batch refused: {answer.status} {str(data)[:500]}")
            applied.append(data["applied"])
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    assert sum(applied) == n, (sum(applied), n)
    return n / elapsed


def bench(db: Database, n: int, size: int, connections: int, work: Path) -> list[tuple[str, float]]:
    db.create()
    engine = db.engine()
    key = create_key(engine, "bench")
    server = AppServer(
        "dispatcher.api:app",
        {"DATABASE_URL": db.url, "API_RATE_LIMIT": "1000"},
        work / f"api-{db.kind}.log",
    )
    try:
        create = run_phase(server.url, key, batches(n, size, update=False), n, connections)
        update = run_phase(server.url, key, batches(n, size, update=True), n, connections)
    finally:
        server.stop()
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM member WHERE mobile LIKE '+98935%'"))
        assert stored.scalar() == n
    engine.dispose()
    db.drop()
    return [("create", create), ("update", update)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="members per phase")
    parser.add_argument("--batch", type=int, default=1000, help="members per request")
    parser.add_argument("--connections", type=int, default=1, help="client connections")
    parser.add_argument("--postgres", help="a PostgreSQL URL: run there too")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        databases = [Database.sqlite(work, "api")]
        if args.postgres:
            databases.append(Database.postgres(args.postgres, f"b_{uuid.uuid4().hex[:8]}"))
        worst = float("inf")
        for db in databases:
            for phase, rate in bench(db, args.n, args.batch, args.connections, work):
                worst = min(worst, rate)
                print(
                    f"batch upserts, {db.kind:8} {phase:6}: {rate:8,.0f} members/s (N = {args.n:,})"
                )
    print(f"slowest: {worst:,.0f} members/s (target {TARGET:,})")
    return 0 if worst >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
