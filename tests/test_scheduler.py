"""Schedules: send times as people write them, the scheduler's launch, its race, and
its repair of what Redis lost."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis

from dispatcher.broker import build_broker
from dispatcher.campaigns import load_campaign
from dispatcher.control import find
from dispatcher.errors import InputError
from dispatcher.expansion import expand
from dispatcher.listing import list_campaigns
from dispatcher.models import CampaignState, utcnow
from dispatcher.runtime import Runtime
from dispatcher.schedule import describe, parse_send_at
from dispatcher.scheduler import Scheduler
from dispatcher.settings import Settings
from tests.factories import add_member, harness, write_campaign

TEHRAN = ZoneInfo("Asia/Tehran")
YALDA = datetime(2026, 12, 20, 6, 30, tzinfo=UTC)  # 10:00 in Tehran


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


def redis_settings(
    make_settings: Callable[..., Settings], database_url: str, redis_url: str, namespace: str
) -> Settings:
    return make_settings(database_url=database_url, redis_url=redis_url, redis_namespace=namespace)


def test_a_scheduled_campaign_launches_when_due_with_the_audience_of_that_time(
    make_settings: Callable[..., Settings],
    database_url: str,
    redis_url: str,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    settings = redis_settings(make_settings, database_url, redis_url, redis_namespace)
    with harness(settings, build_broker(settings)) as h:
        add_member(h.engine, "C1")
        send_at = utcnow() + timedelta(hours=1)
        spec = load_campaign(write_campaign(tmp_path / "c"))
        result = expand(h.engine, spec, send_at=send_at)
        assert result.campaign.state == CampaignState.SCHEDULED and h.deliveries() == []
        add_member(h.engine, "C2")  # joins before the send time: included

        scheduler = Scheduler(h.runtime, h.broker, h.actors, clock=utcnow)
        assert scheduler.tick().launched == []
        later = Scheduler(h.runtime, h.broker, h.actors, clock=lambda: send_at)
        assert later.tick().launched == ["yalda-test"]
        assert len(h.deliveries()) == 2
        client = redis.Redis.from_url(redis_url)
        assert client.llen(f"{redis_namespace}:email") == 2
        [row] = list_campaigns(h.engine, TEHRAN)
        assert row["state"] == "sending" and row["total"] == 2
        assert row["send_at_jalali"] == describe(send_at, TEHRAN).split("(")[1].split(")")[0]
        h.run_workers()
        assert later.tick().finished == ["yalda-test"]
        client.close()


def test_two_schedulers_at_once_launch_each_campaign_once(
    make_settings: Callable[..., Settings],
    database_url: str,
    redis_url: str,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    settings = redis_settings(make_settings, database_url, redis_url, redis_namespace)
    with harness(settings, build_broker(settings)) as h:
        for i in range(20):
            add_member(h.engine, f"C{i}")
        due = utcnow() - timedelta(seconds=1)
        for n in range(5):
            spec = load_campaign(write_campaign(tmp_path / f"c{n}", slug=f"yalda-{n}"))
            expand(h.engine, spec, send_at=due)
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
        client = redis.Redis.from_url(redis_url)
        assert client.llen(f"{redis_namespace}:email") == 5 * 20  # enqueued once each
        client.close()


def test_the_scheduler_re_enqueues_pending_work_that_redis_lost(
    make_settings: Callable[..., Settings],
    database_url: str,
    redis_url: str,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    settings = redis_settings(make_settings, database_url, redis_url, redis_namespace)
    with harness(settings, build_broker(settings)) as h:
        for i in range(10):
            add_member(h.engine, f"C{i}")
        h.send(write_campaign(tmp_path / "c"))
        scheduler = Scheduler(h.runtime, h.broker, h.actors, grace=timedelta(0))
        assert scheduler.tick().requeued == {}  # every message still in Redis
        h.broker.flush_all()  # as a Redis restarted without persistence
        assert scheduler.tick().requeued == {"yalda-test": 10}
        assert scheduler.tick().requeued == {}  # queued again: not twice
        h.run_workers()
        assert scheduler.tick().finished == ["yalda-test"]
        assert find(h.engine, "yalda-test").state == CampaignState.DONE
