"""Opt-outs against a busy database: another process holds SQLite's write lock (as a
large `members import` does), or a PostgreSQL row lock. Nothing is lost, and pages
and /healthz keep answering meanwhile. Driven over HTTP with Starlette's TestClient,
whose requests from several threads run concurrently on the app's one event loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from starlette.testclient import TestClient

from dispatcher.audience.consent import opt_out, set_consent
from dispatcher.audience.tokens import TokenSigner
from dispatcher.settings import Settings
from dispatcher.store.db import make_engine
from dispatcher.store.models import Channel, ConsentEvent, ConsentSource, Member, utcnow
from dispatcher.web import create_app
from dispatcher.web.app import WRITE_THREADS
from dispatcher.web.journal import Change, Journal
from tests.eventually import eventually
from tests.factories import add_member, write_lock_held

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
FAST = 1.0  # seconds: what "answers at once" means here, on a loaded machine


def url(token: str) -> str:
    return f"/u/{token}"


def reload(engine: Engine, member_id: int) -> Member:
    with Session(engine) as session:
        found = session.get(Member, member_id)
        assert found is not None
        return found


def events(engine: Engine) -> list[ConsentEvent]:
    with Session(engine) as session:
        return list(session.exec(select(ConsentEvent).order_by(col(ConsentEvent.id))).all())


def answered_fast(pool: ThreadPoolExecutor, request: Callable[[], httpx.Response]) -> int:
    """The status of `request`, which must answer within FAST seconds."""
    start = time.monotonic()
    status = pool.submit(request).result(timeout=10).status_code
    assert time.monotonic() - start < FAST, "the server held the request back"
    return status


@pytest.fixture
def sqlite_db(tmp_path: Path, sqlite_url: str) -> Path:
    return tmp_path / "test.db"


# ----------------------------------------------------------------------------- SQLite


def test_on_sqlite_an_opt_out_meeting_a_held_write_lock_is_kept_then_recorded_when_it_frees(
    make_settings: Callable[..., Settings], sqlite_url: str, sqlite_db: Path
) -> None:
    settings = make_settings(
        database_url=sqlite_url, unsubscribe_busy_timeout=2.0, unsubscribe_retry_interval=0.05
    )
    engine = make_engine(sqlite_url)
    member = add_member(engine, "C1", email="ali@example.com", mobile="+989121234567")
    other = add_member(engine, "C2", email="sara@example.com")
    assert member.id is not None and other.id is not None
    signer = TokenSigner(settings.unsubscribe_keys())
    email, sms = signer.sign(member.id, Channel.EMAIL), signer.sign(member.id, Channel.SMS)
    page = url(signer.sign(other.id, Channel.EMAIL))
    with (
        TestClient(create_app(settings)) as client,
        write_lock_held(sqlite_db) as release,
        ThreadPoolExecutor(4) as pool,
    ):
        asked = datetime.now(UTC)
        posting: Future[httpx.Response] = pool.submit(client.post, url(email), data=ONE_CLICK)
        rounds = 0
        while not posting.done():  # it waits for the lock: pages and /healthz do not
            assert answered_fast(pool, lambda: client.get("/healthz")) == 200
            assert answered_fast(pool, lambda: client.get(page)) == 200
            rounds += 1
        assert rounds >= 2
        answer = posting.result()
        assert answer.status_code == 200 and "عضویت شما لغو شد" in answer.text
        assert reload(engine, member.id).email_opt_in  # kept, not in the database yet
        again = client.get(url(email))  # the page already says so
        assert again.status_code == 200 and "پیش‌تر لغو شده" in again.text

        # While something is kept, the next opt-out does not wait for the lock at all.
        assert answered_fast(pool, lambda: client.post(url(sms), data=ONE_CLICK)) == 200
        assert events(engine) == []

        release()  # the import commits: both are recorded, in order, with their time
        eventually(lambda: not reload(engine, member.id).sms_opt_in)
        after = reload(engine, member.id)
        assert not after.email_opt_in and after.email_optout_source == "one-click"
        recorded = [(e.channel, e.opted_in, e.source) for e in events(engine)]
        assert recorded == [("email", False, "one-click"), ("sms", False, "one-click")]
        at = events(engine)[0].at.replace(tzinfo=UTC)
        assert abs((at - asked).total_seconds()) < 1.5  # when asked, not when recorded
        assert client.get(url(email)).status_code == 200
    assert not Path(f"{sqlite_db}-unsubscribe.journal").exists()
    engine.dispose()


def test_on_sqlite_changes_kept_when_the_server_stops_are_recorded_in_order_at_its_next_start(
    make_settings: Callable[..., Settings], sqlite_url: str, sqlite_db: Path
) -> None:
    settings = make_settings(
        database_url=sqlite_url, unsubscribe_busy_timeout=0.2, unsubscribe_retry_interval=0.05
    )
    engine = make_engine(sqlite_url)
    member = add_member(engine, "C1", email="ali@example.com")
    assert member.id is not None
    token = TokenSigner(settings.unsubscribe_keys()).sign(member.id, Channel.EMAIL)
    with write_lock_held(sqlite_db):
        with TestClient(create_app(settings)) as client:
            assert client.post(url(token), data=ONE_CLICK).status_code == 200
            undone = client.post(url(token) + "/resubscribe")
            assert undone.status_code == 200 and "دوباره فعال شد" in undone.text
            assert client.post(url(token)).status_code == 200  # out again, by the button
        # Stopped while the lock is still held: the three are on disk, nowhere else.
        assert Path(f"{sqlite_db}-unsubscribe.journal").exists()
    assert reload(engine, member.id).email_opt_in and events(engine) == []

    with TestClient(create_app(settings)):
        pass  # the next start records them before it serves
    after = reload(engine, member.id)
    assert not after.email_opt_in and after.email_optout_source == "link"
    assert [(e.opted_in, e.source) for e in events(engine)] == [
        (False, "one-click"),
        (True, "link"),
        (False, "link"),
    ]
    engine.dispose()


def test_on_sqlite_a_crash_after_the_journal_was_recorded_never_replays_an_old_opt_out(
    make_settings: Callable[..., Settings], sqlite_url: str, sqlite_db: Path
) -> None:
    settings = make_settings(database_url=sqlite_url, unsubscribe_retry_interval=0.05)
    engine = make_engine(sqlite_url)
    member = add_member(engine, "C1", email="ali@example.com")
    assert member.id is not None
    journal = Journal.beside(str(sqlite_db))
    kept = Change(member.id, Channel.EMAIL, False, ConsentSource.ONE_CLICK, utcnow())
    journal.append(kept)
    with Session(engine) as session:  # the flush committed it, then the server died ...
        opt_out(session, member.id, Channel.EMAIL, ConsentSource.ONE_CLICK, at=kept.at)
        session.commit()
    set_consent(engine, "C1", Channel.EMAIL, True, ConsentSource.CLI)  # ... she came back
    assert journal.pending()

    with TestClient(create_app(settings)):
        pass  # the next start replays the journal
    assert reload(engine, member.id).email_opt_in  # her newer opt-in stands
    assert [(e.opted_in, e.source) for e in events(engine)] == [(False, "one-click"), (True, "cli")]
    assert not journal.pending()
    engine.dispose()


# ------------------------------------------------------------------------- PostgreSQL


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_on_postgresql_opt_outs_waiting_for_a_row_lock_hold_no_page_back(
    make_settings: Callable[..., Settings], database_url: str, engine: Engine
) -> None:
    settings = make_settings(database_url=database_url)
    member = add_member(engine, "C1", email="ali@example.com")
    other = add_member(engine, "C2", email="sara@example.com")
    assert member.id is not None and other.id is not None
    signer = TokenSigner(settings.unsubscribe_keys())
    token, page = signer.sign(member.id, Channel.EMAIL), url(signer.sign(other.id, Channel.EMAIL))
    waiting = WRITE_THREADS + 2  # more than the write threads: they all wait
    with (
        TestClient(create_app(settings)) as client,
        ThreadPoolExecutor(waiting + 2) as pool,
        engine.connect() as importer,
    ):
        lock = importer.begin()  # an import's transaction holds the member's row
        importer.execute(update(Member).where(col(Member.id) == member.id).values(last_name="x"))
        try:
            posts = [pool.submit(client.post, url(token), data=ONE_CLICK) for _ in range(waiting)]
            with engine.connect() as conn:
                eventually(lambda: _lock_waits(conn, importer) >= WRITE_THREADS)
            assert answered_fast(pool, lambda: client.get("/healthz")) == 200
            assert answered_fast(pool, lambda: client.get(page)) == 200
            assert not any(p.done() for p in posts)
        finally:
            lock.commit()
        assert [p.result(timeout=30).status_code for p in posts] == [200] * waiting
    after = reload(engine, member.id)
    assert not after.email_opt_in and after.email_optout_source == "one-click"
    assert [(e.opted_in, e.source) for e in events(engine)] == [(False, "one-click")]


def _lock_waits(conn: Any, holder: Any) -> int:
    """Sessions waiting, directly or behind one another, for the `holder` connection's
    lock (a waiter for a row waits for the first waiter's tuple lock)."""
    pid = holder.execute(text("SELECT pg_backend_pid()")).scalar_one()
    found = conn.execute(
        text(
            "WITH RECURSIVE w(pid) AS (SELECT CAST(:pid AS int) UNION "
            "SELECT a.pid FROM pg_stat_activity a, w WHERE w.pid = ANY(pg_blocking_pids(a.pid))) "
            "SELECT count(*) - 1 FROM w"
        ),
        {"pid": pid},
    ).scalar_one()
    conn.rollback()
    return int(found)
