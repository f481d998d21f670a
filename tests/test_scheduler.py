"""Schedules: send times as people write them, the scheduler's launch, its race, its
repair of what Redis lost, and its SMS housekeeping (the send window, Kavenegar's
delivery reports and opt-out replies) against the Kavenegar test server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher.audience.addresses import AddressKeys
from dispatcher.definition.campaign import load_campaign
from dispatcher.definition.sendtime import describe, parse_send_at
from dispatcher.delivery.control import find
from dispatcher.delivery.listing import list_campaigns
from dispatcher.email.verp import verp_address
from dispatcher.errors import InputError
from dispatcher.queue.broker import build_broker
from dispatcher.queue.expansion import expand
from dispatcher.runtime import Runtime
from dispatcher.scheduler import Scheduler
from dispatcher.settings import Settings
from dispatcher.store.models import Campaign, CampaignState, Member, utcnow
from tests.conftest import BrokerUnderTest
from tests.factories import add_member, harness, write_campaign
from tests.feedback.reports import dsn
from tests.servers.imap_server import ImapServerHandle
from tests.servers.kavenegar_server import KavenegarServerHandle

TEHRAN = ZoneInfo("Asia/Tehran")
YALDA = datetime(2026, 12, 20, 6, 30, tzinfo=UTC)  # 10:00 in Tehran

KEYS = AddressKeys(b"test-suppression-key")


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-20T10:00:00+03:30",
        "2026-12-20 10:00",
        "2026-12-20T10:00",
        "1405-09-29 10:00",
        "۱۴۰۵-۰۹-۲۹ ۱۰:۰۰",
        "2026-12-20T06:30:00Z",
    ],
)
def test_a_send_time_is_read_in_any_of_the_accepted_forms(text: str) -> None:
    assert parse_send_at(text, TEHRAN) == YALDA


def test_a_send_time_is_shown_in_both_calendars_and_bad_ones_are_refused() -> None:
    assert describe(YALDA, TEHRAN) == "2026-12-20 10:00 (1405-09-29 10:00) Asia/Tehran"
    for bad in ("tomorrow", "1405-13-01 10:00", "2026-02-30 10:00"):
        with pytest.raises(InputError):
            parse_send_at(bad, TEHRAN)


def broker_settings(
    make_settings: Callable[..., Settings], database_url: str, broker: BrokerUnderTest
) -> Settings:
    return make_settings(database_url=database_url, **broker.settings)


def test_a_scheduled_campaign_launches_when_due_with_the_audience_of_that_time(
    make_settings: Callable[..., Settings],
    database_url: str,
    broker_under_test: BrokerUnderTest,
    tmp_path: Path,
) -> None:
    settings = broker_settings(make_settings, database_url, broker_under_test)
    with harness(settings, build_broker(settings)) as h:
        add_member(h.engine, "C1")
        send_at = utcnow() + timedelta(hours=1)
        spec = load_campaign(write_campaign(tmp_path / "c"))
        result = expand(h.engine, spec, send_at=send_at, keys=KEYS)
        assert result.campaign.state == CampaignState.SCHEDULED and h.deliveries() == []
        add_member(h.engine, "C2")  # joins before the send time: included

        scheduler = Scheduler(h.runtime, h.broker, h.actors, clock=utcnow)
        assert scheduler.tick().launched == []
        later = Scheduler(h.runtime, h.broker, h.actors, clock=lambda: send_at)
        assert later.tick().launched == ["yalda-test"]
        assert len(h.deliveries()) == 2
        assert broker_under_test.queued("email") == 2
        [row] = list_campaigns(h.engine, TEHRAN)
        assert row["state"] == "sending" and row["total"] == 2
        assert row["send_at_jalali"] == describe(send_at, TEHRAN).split("(")[1].split(")")[0]
        h.run_workers()
        assert later.tick().finished == ["yalda-test"]


def test_two_schedulers_at_once_launch_each_campaign_once(
    make_settings: Callable[..., Settings],
    database_url: str,
    broker_under_test: BrokerUnderTest,
    tmp_path: Path,
) -> None:
    settings = broker_settings(make_settings, database_url, broker_under_test)
    with harness(settings, build_broker(settings)) as h:
        for i in range(20):
            add_member(h.engine, f"C{i}")
        due = utcnow() - timedelta(seconds=1)
        for n in range(5):
            spec = load_campaign(write_campaign(tmp_path / f"c{n}", slug=f"yalda-{n}"))
            expand(h.engine, spec, send_at=due, keys=KEYS)
        runtimes = [Runtime.from_settings(settings) for _ in range(2)]  # own engines
        schedulers = [Scheduler(rt, h.broker, h.actors) for rt in runtimes]
        barrier = threading.Barrier(2)
        launched: list[list[str]] = [[], []]

        def run(i: int) -> None:
            barrier.wait()
            launched[i] = schedulers[i].tick().launched

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for rt in runtimes:
            rt.close()

        assert sorted(launched[0] + launched[1]) == [f"yalda-{n}" for n in range(5)]
        assert len(h.deliveries()) == 5 * 20
        assert broker_under_test.queued("email") == 5 * 20  # enqueued once each


def test_the_scheduler_re_enqueues_pending_work_that_the_broker_lost(
    make_settings: Callable[..., Settings],
    database_url: str,
    broker_under_test: BrokerUnderTest,
    tmp_path: Path,
) -> None:
    settings = broker_settings(make_settings, database_url, broker_under_test)
    with harness(settings, build_broker(settings)) as h:
        for i in range(10):
            add_member(h.engine, f"C{i}")
        h.send(write_campaign(tmp_path / "c"))
        scheduler = Scheduler(h.runtime, h.broker, h.actors, grace=timedelta(0))
        assert scheduler.tick().requeued == {}  # every message still in the broker
        broker_under_test.lose_queues()  # as a broker restarted without persistence
        assert scheduler.tick().requeued == {"yalda-test": 10}
        assert scheduler.tick().requeued == {}  # queued again: not twice
        h.run_workers()
        assert scheduler.tick().finished == ["yalda-test"]
        assert find(h.engine, "yalda-test").state == CampaignState.DONE


# -- SMS housekeeping: the send window, delivery reports, opt-out replies -------------------

SENDER = "10004346"
NOON = datetime(2025, 12, 21, 12, 0, tzinfo=TEHRAN)


def kavenegar_settings(
    make_settings: Callable[..., Settings],
    database_url: str,
    server: KavenegarServerHandle,
    **extra: object,
) -> Settings:
    return make_settings(
        database_url=database_url,
        kavenegar_api_key=server.api_key,
        kavenegar_sender=SENDER,
        kavenegar_base_url=server.base_url,
        **extra,
    )


def sms_campaign(tmp_path: Path) -> Path:
    return write_campaign(tmp_path / "c", channels=("sms",), sms="حراج یلدا")


def api_calls(server: KavenegarServerHandle, since: int = 0) -> list[str]:
    return [r["path"].rsplit("/", 1)[1].removesuffix(".json") for r in server.requests()[since:]]


def load_member(engine: Engine, member_id: int | None) -> Member:
    with Session(engine) as session:
        found = session.get(Member, member_id)
        assert found is not None
        return found


def test_a_tick_after_08_tehran_releases_the_sms_held_overnight(
    make_settings: Callable[..., Settings],
    database_url: str,
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
) -> None:
    settings = kavenegar_settings(make_settings, database_url, kavenegar_server)
    with harness(settings) as h:
        for i in range(3):
            add_member(h.engine, f"C{i}", mobile=f"+98912123456{i}")
        h.runtime.clock = lambda: datetime(2025, 12, 21, 23, 0, tzinfo=TEHRAN)
        h.send(sms_campaign(tmp_path))
        h.run_workers()  # 23:00 in Tehran: every SMS waits, pending
        assert kavenegar_server.sent() == []

        at_0759 = datetime(2025, 12, 22, 7, 59, tzinfo=TEHRAN)
        assert Scheduler(h.runtime, h.broker, h.actors, clock=lambda: at_0759).tick().released == {}

        at_0800 = datetime(2025, 12, 22, 8, 0, tzinfo=TEHRAN)
        h.runtime.clock = lambda: at_0800
        scheduler = Scheduler(h.runtime, h.broker, h.actors, clock=lambda: at_0800)
        released = scheduler.tick()
        assert released.released == {"yalda-test": 3}
        # Inline mode (no Redis, no worker processes): the tick has sent them itself,
        # and found the campaign done.
        assert len(kavenegar_server.sent()) == 3
        assert released.finished == ["yalda-test"]
        assert scheduler.tick().released == {}  # released once


def test_inline_a_launch_at_night_returns_and_leaves_its_sms_for_the_morning(
    make_settings: Callable[..., Settings],
    database_url: str,
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
) -> None:
    settings = kavenegar_settings(make_settings, database_url, kavenegar_server)
    with harness(settings) as h:
        for i in range(2):
            add_member(h.engine, f"C{i}", mobile=f"+98912123456{i}")
        night = datetime(2025, 12, 21, 23, 0, tzinfo=TEHRAN)
        h.runtime.clock = lambda: night
        expand(h.engine, load_campaign(sms_campaign(tmp_path)), send_at=night, keys=KEYS)
        ticks: list[Any] = []

        def tick() -> None:
            ticks.append(Scheduler(h.runtime, h.broker, h.actors, clock=lambda: night).tick())

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        thread.join(30)
        assert ticks, "the tick is still waiting for SMS held until the morning"
        assert ticks[0].launched == ["yalda-test"]
        assert kavenegar_server.sent() == []
        assert {d.status for d in h.deliveries()} == {"pending"}


def test_one_of_two_schedulers_syncs_reports_and_replies_and_a_14_opts_out(
    make_settings: Callable[..., Settings],
    database_url: str,
    broker_under_test: BrokerUnderTest,
    redis_url: str,
    redis_namespace: str,
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
) -> None:
    settings = kavenegar_settings(  # beside RabbitMQ, the schedulers agree through REDIS_URL
        make_settings,
        database_url,
        kavenegar_server,
        **{"redis_url": redis_url, "redis_namespace": redis_namespace},
        **{k: v for k, v in broker_under_test.settings.items() if not k.startswith("redis")},
    )
    with harness(settings, build_broker(settings)) as h:
        delivered = add_member(h.engine, "C1", mobile="+989121234561")
        blocks = add_member(h.engine, "C2", mobile="+989121234562")
        replies = add_member(h.engine, "C3", mobile="+989121234563")
        h.runtime.clock = lambda: NOON
        h.send(sms_campaign(tmp_path))
        h.run_workers()
        messageids: dict[int | None, int] = {
            d.member_id: int(d.provider_id or 0) for d in h.deliveries()
        }
        kavenegar_server.set_status(messageids[delivered.id], 10)
        kavenegar_server.set_status(messageids[blocks.id], 14)  # blocks advertising SMS
        kavenegar_server.add_inbox("09121234563", "لغو", line=SENDER)
        before = len(kavenegar_server.requests())

        other = Runtime.from_settings(settings)  # a second scheduler process
        try:
            schedulers = [
                Scheduler(rt, h.broker, h.actors, clock=lambda: NOON) for rt in (h.runtime, other)
            ]
            ticks = [s.tick() for s in schedulers] + [s.tick() for s in schedulers]
        finally:
            other.close()

        [synced] = [t.sms_sync for t in ticks if t.sms_sync is not None]
        assert (synced["checked"], synced["delivered"], synced["blocked"]) == (3, 1, 1)
        assert synced["opted_out"] == 1
        [inbox] = [t.sms_inbox for t in ticks if t.sms_inbox is not None]
        assert (inbox["opt_out_replies"], inbox["opted_out"]) == (1, 1)
        assert sorted(api_calls(kavenegar_server, before)) == ["receive", "status"]  # once each
        gone = load_member(h.engine, blocks.id)
        assert (gone.sms_opt_in, gone.sms_optout_source) == (False, "provider")
        replied = load_member(h.engine, replies.id)
        assert (replied.sms_opt_in, replied.sms_optout_source) == (False, "sms-keyword")
        assert load_member(h.engine, delivered.id).sms_opt_in
        by_member: dict[int | None, int | None] = {
            d.member_id: d.provider_status for d in h.deliveries()
        }
        assert (by_member[delivered.id], by_member[blocks.id]) == (10, 14)


def test_without_redis_the_sync_runs_at_most_every_sms_sync_interval(
    make_settings: Callable[..., Settings],
    sqlite_url: str,
    kavenegar_server: KavenegarServerHandle,
) -> None:
    settings = kavenegar_settings(make_settings, sqlite_url, kavenegar_server, sms_sync_interval=60)
    with harness(settings) as h:
        now = [NOON]
        scheduler = Scheduler(h.runtime, h.broker, h.actors, clock=lambda: now[0])
        assert scheduler.tick().sms_sync is not None
        now[0] = NOON + timedelta(seconds=59)
        tick = scheduler.tick()
        assert (tick.sms_sync, tick.sms_inbox) == (None, None)
        now[0] = NOON + timedelta(seconds=60)
        assert scheduler.tick().sms_inbox is not None


def test_a_451_during_the_sync_is_logged_and_slows_the_senders_down(
    make_settings: Callable[..., Settings],
    sqlite_url: str,
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = kavenegar_settings(make_settings, sqlite_url, kavenegar_server)
    with harness(settings) as h:
        add_member(h.engine, "C1", mobile="+989121234561")
        h.runtime.clock = lambda: NOON
        h.send(sms_campaign(tmp_path))
        h.run_workers()
        kavenegar_server.fail_next(451, methods=["status"])
        tick = Scheduler(h.runtime, h.broker, h.actors, clock=lambda: NOON).tick()
        assert tick.sms_sync is None and tick.sms_inbox is not None  # the tick went on
        assert tick.finished == ["yalda-test"]
        assert "sms sync failed" in caplog.text and "451" in caplog.text
        limiter = h.runtime.guard("kavenegar").limiter
        assert limiter.current() is not None and limiter.current() < 50  # type: ignore[operator]


def test_in_outbox_mode_the_scheduler_asks_kavenegar_nothing(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    with harness(make_settings(database_url=sqlite_url)) as h:
        tick = Scheduler(h.runtime, h.broker, h.actors, clock=lambda: NOON).tick()
        assert (tick.sms_sync, tick.sms_inbox) == (None, None)


def test_the_scheduler_reads_the_bounce_mailbox_every_bounce_interval(
    make_settings: Callable[..., Settings],
    database_url: str,
    imap_server: ImapServerHandle,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        database_url=database_url,
        bounce_imap_url=imap_server.url,
        bounce_address="bounces@shop.example",
        bounce_interval=60,
    )
    with harness(settings) as h:
        add_member(h.engine, "C1", email="gone@example.com")
        h.send(write_campaign(tmp_path / "c", tags=None))
        h.run_workers()
        [delivery] = h.deliveries()
        verp = verp_address("bounces@shop.example", settings.suppression_key_bytes(), delivery.id)
        imap_server.append(dsn(to=verp, message_id="<unrelated@x>"))
        now = [NOON]
        scheduler = Scheduler(h.runtime, h.broker, h.actors, clock=lambda: now[0])
        assert scheduler.tick().bounces == {
            "hard": 1,
            "soft": 0,
            "complaints": 0,
            "unrecognised": 0,
            "unverified": 0,
            "duplicates": 0,
        }
        now[0] = NOON + timedelta(seconds=59)
        assert scheduler.tick().bounces is None
        now[0] = NOON + timedelta(seconds=60)
        assert scheduler.tick().bounces == {
            "hard": 0,
            "soft": 0,
            "complaints": 0,
            "unrecognised": 0,
            "unverified": 0,
            "duplicates": 0,
        }


def test_a_duty_that_fails_is_logged_and_the_other_duties_still_run(
    make_settings: Callable[..., Settings],
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with harness(make_settings(database_url=database_url)) as h:
        add_member(h.engine, "C1", email="c1@example.com")
        send_at = utcnow() + timedelta(hours=1)
        for slug in ("broken", "yalda-test"):
            spec = load_campaign(write_campaign(tmp_path / slug, slug=slug))
            expand(h.engine, spec, send_at=send_at, keys=KEYS)
        with h.engine.begin() as conn:  # a row no code expects: its launch raises
            conn.execute(update(Campaign).where(col(Campaign.slug) == "broken").values(spec="{"))
        stop = threading.Event()
        ticks: list[datetime] = []

        def clock() -> datetime:
            ticks.append(send_at)
            if len(ticks) == 2:
                stop.set()  # `run` ends after its second tick
            return send_at

        scheduler = Scheduler(h.runtime, h.broker, h.actors, clock=clock)
        with caplog.at_level(logging.INFO, logger="dispatcher.scheduler"):
            scheduler.run(stop, interval=0.01)
        assert len(ticks) == 2
        assert "scheduler: launch of campaign" in caplog.text and "Traceback" in caplog.text
        # The other campaign was launched, sent inline, and finished; both logged.
        assert "campaign yalda-test launched" in caplog.text
        assert "campaign yalda-test finished" in caplog.text
        assert find(h.engine, "yalda-test").state == CampaignState.DONE
        assert find(h.engine, "broken").state == CampaignState.SCHEDULED
