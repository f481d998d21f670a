"""Benchmark: how fast each page of the marketer's console answers at a real shop's size.

Seeds N members (1,000,000 by default) and a campaign of one email delivery each (half
of them sent, one in fifty failed), a draft with the same audience, and an admin; starts
`uvicorn dispatcher.console:app` (one process, as the Procfile's `console` line) and
asks each page --requests times, one request after another, signed in as a browser is.
Prints the median and the p95 of each page in milliseconds (target: p95 < 300 ms; the
progress refresh is one indexed query).

    python -m bench.console --postgres postgresql+psycopg://postgres@127.0.0.1/test
    python -m bench.console -n 100000 --postgres ...     # smaller, quicker
    python -m bench.console -n 20000                      # SQLite
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bench.harness import SECRET, Database, seed_members, write_campaign  # noqa: E402
from dispatcher.audience.addresses import AddressKeys  # noqa: E402
from dispatcher.definition.campaign import load_campaign  # noqa: E402
from dispatcher.definition.draft import Draft  # noqa: E402
from dispatcher.queue.drafts import create_draft  # noqa: E402
from dispatcher.queue.expansion import expand  # noqa: E402
from dispatcher.store import counts  # noqa: E402
from dispatcher.store.models import StaffRole  # noqa: E402
from dispatcher.store.staff import add_staff  # noqa: E402
from tests.servers.app_server import AppServer  # noqa: E402

TARGET_MS = 300
PASSWORD = "bench password 0123456789"
SLUG, DRAFT = "bench-yalda", "bench-draft"


def seed(db: Database, n: int, folder: Path) -> None:
    t0 = time.perf_counter()
    seed_members(db, n)
    print(f"members: {n:,} in {time.perf_counter() - t0:.1f}s", flush=True)
    engine = db.engine()
    spec = load_campaign(write_campaign(folder, SLUG, ["email"]))
    t0 = time.perf_counter()
    campaign = expand(engine, spec, keys=AddressKeys(SECRET.encode())).campaign
    with engine.begin() as conn:  # half sent over ten minutes, one in fifty failed
        conn.execute(
            text(
                "UPDATE delivery SET status = 'sent', attempts = 1, "
                "sent_at = CAST(:start AS timestamptz) + (id % 600) * interval '1 second' "
                "WHERE campaign_id = :c "
                "AND id % 2 = 0"
                if db.kind == "postgres"
                else "UPDATE delivery SET status = 'sent', attempts = 1, "
                "sent_at = datetime(:start, '+' || (id % 600) || ' seconds') "
                "WHERE campaign_id = :c AND id % 2 = 0"
            ),
            {"c": campaign.id, "start": "2026-12-20 06:30:00"},
        )
        conn.execute(
            text(
                "UPDATE delivery SET status = 'failed', attempts = 5, error_code = 421, "
                "error_message = 'try later' WHERE campaign_id = :c AND id % 50 = 1"
            ),
            {"c": campaign.id},
        )
        counts.recount(conn, campaign.id or 0)  # the moves above were made by hand
    if db.kind == "postgres":  # as autovacuum leaves them: index-only scans possible
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE delivery"))
            conn.execute(text("VACUUM ANALYZE member"))
    print(f"campaign: {n:,} deliveries in {time.perf_counter() - t0:.1f}s", flush=True)
    html = (folder / "yalda" / "email.html").read_text("utf-8")
    subject = "{{ member.first_name }}، سلام"
    draft = Draft(slug=DRAFT, name="پیش‌نویس", subject=subject, html=html, tags=["newsletter"])
    create_draft(engine, draft)
    add_staff(engine, "bench", StaffRole.ADMIN, PASSWORD)
    engine.dispose()


def sign_in(client: httpx.Client) -> None:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    answer = client.post(
        "/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token[1]}
    )
    assert answer.status_code == 303, answer.text


def measure(client: httpx.Client, path: str, requests: int) -> list[float]:
    client.get(path)  # warm: templates compiled, connections open
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert answer.status_code == 200, f"{path}: {answer.status_code}"
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="members and deliveries")
    parser.add_argument("--requests", type=int, default=20, help="per page")
    parser.add_argument("--postgres", metavar="URL", help="PostgreSQL (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        folder = Path(tmp)
        if args.postgres:
            db = Database.postgres(args.postgres, f"bench_console_{uuid.uuid4().hex[:8]}")
        else:
            db = Database.sqlite(folder, "console")
        db.create()
        try:
            seed(db, args.n, folder / "campaign")
            env = {
                "DATABASE_URL": db.url,
                "SUPPRESSION_KEY": SECRET,
                "UNSUBSCRIBE_SECRET": SECRET,
                "MAIL_FROM": "فروشگاه <news@shop.example>",
                "CONSOLE_INSECURE_COOKIES": "1",
                "REDIS_URL": "redis://127.0.0.1:6379/15",
            }
            server = AppServer("dispatcher.console:app", env, folder / "console.log")
            try:
                with httpx.Client(base_url=server.url, timeout=120) as client:
                    sign_in(client)
                    pages = [
                        "/campaigns",
                        f"/campaigns/{SLUG}",
                        f"/campaigns/{SLUG}/progress",
                        f"/campaigns/{DRAFT}/edit",
                        f"/campaigns/{SLUG}/preview",
                        "/campaigns/new",
                        "/members?q=%DB%B0%DB%B9%DB%B1%DB%B2%DB%B0%DB%B0%DB%B0%DB%B1%DB%B2%DB%B3%DB%B4",
                        "/members/B1234",
                        "/suppressions",
                        "/audit",
                    ]
                    print(f"\n{db.kind}, {args.n:,} members, {args.requests} requests each")
                    print(f"{'page':<46} {'median':>8} {'p95':>8}")
                    for path in pages:
                        times = sorted(measure(client, path, args.requests))
                        p95 = times[max(0, round(0.95 * len(times)) - 1)]
                        flag = "" if p95 < TARGET_MS else "  over 300 ms"
                        shown = path if len(path) < 46 else path[:43] + "..."
                        print(
                            f"{shown:<46} {statistics.median(times):>6.0f}ms {p95:>6.0f}ms{flag}",
                            flush=True,
                        )
            finally:
                server.stop()
        finally:
            db.drop()


if __name__ == "__main__":
    main()
