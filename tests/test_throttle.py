"""Adaptive sending rates: shared through real Redis, and an SMTP 4xx storm end to end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from dispatcher.broker import build_broker
from dispatcher.models import DeliveryStatus
from dispatcher.settings import Settings
from dispatcher.status import campaign_status
from dispatcher.throttle import (
    UNLIMITED_START,
    AdaptiveRateLimiter,
    LocalAdaptiveRateLimiter,
)
from tests.factories import add_member, harness, write_campaign
from tests.servers.smtp_server import SmtpServerHandle


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def test_the_rate_is_shared_by_every_limiter_on_the_same_key(
    client: redis.Redis, redis_namespace: str
) -> None:
    key = f"{redis_namespace}:rate:smtp"
    limiters = [AdaptiveRateLimiter(client, key=key, ceiling=50) for _ in range(4)]
    start = time.monotonic()
    threads = [
        threading.Thread(target=lambda lim=lim: [lim.acquire() for _ in range(10)])
        for lim in limiters
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 40 calls at 50/s, evenly spaced: the last one 0.78 s after the first.
    assert time.monotonic() - start >= 0.7


def test_a_backoff_halves_the_rate_once_a_second_and_it_grows_back(
    client: redis.Redis, redis_namespace: str
) -> None:
    key = f"{redis_namespace}:rate:smtp"
    limiter = AdaptiveRateLimiter(client, key=key, ceiling=40, step=20)
    other = AdaptiveRateLimiter(client, key=key, ceiling=40, step=20)
    assert limiter.current() == 40
    assert limiter.backoff() == 20
    assert other.backoff() == pytest.approx(20, abs=0.5)  # within the cooldown: once
    assert other.current() is not None and other.current() < 25  # type: ignore[operator]
    time.sleep(1.05)
    assert limiter.current() == 40  # +20/s for a second: recovered
    assert not client.exists(limiter.aimd_key) or limiter.current() == 40


def test_an_unlimited_transport_is_paced_only_after_the_relay_pushes_back(
    client: redis.Redis, redis_namespace: str
) -> None:
    limiter = AdaptiveRateLimiter(client, key=f"{redis_namespace}:rate:smtp", ceiling=None)
    start = time.monotonic()
    for _ in range(100):
        limiter.acquire()
    assert time.monotonic() - start < 0.5
    assert limiter.backoff() == UNLIMITED_START / 2
    assert limiter.current() == pytest.approx(UNLIMITED_START / 2, abs=1)


def test_the_in_process_limiter_follows_the_same_rules() -> None:
    now = [0.0]
    limiter = LocalAdaptiveRateLimiter(ceiling=10, step=1, clock=lambda: now[0])
    assert limiter.backoff() == 5
    now[0] = 0.5
    assert limiter.backoff() == 5  # cooldown
    now[0] = 2.0
    assert limiter.current() == pytest.approx(7)
    now[0] = 10.0
    assert limiter.current() == 10


def test_an_smtp_4xx_storm_slows_sending_down_then_everything_is_sent_once(
    make_settings: Callable[..., Settings],
    database_url: str,
    redis_url: str,
    redis_namespace: str,
    smtp_server: SmtpServerHandle,
    tmp_path: Path,
    client: redis.Redis,
) -> None:
    settings = make_settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_namespace=redis_namespace,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
        smtp_rate_limit=200,
        max_send_errors=50,
    )
    with harness(settings, build_broker(settings)) as h:
        from dispatcher.workers import email as email_worker

        for i in range(20):
            add_member(h.engine, f"C{i}")
        smtp_server.inject_temp_failure(code=421, count=12, stage="mail", text="4.7.0 slow down")
        email_worker.send_email.options.update(max_retries=0)  # a retry would fail it
        try:
            h.send(write_campaign(tmp_path / "c"))
            h.run_workers()
        finally:
            email_worker.send_email.options.pop("max_retries")
        deliveries = h.deliveries()
        assert {d.status for d in deliveries} == {DeliveryStatus.SENT}
        assert sorted(m.rcpt_to for m in smtp_server.messages()) == sorted(
            f"c{i}@example.com" for i in range(20)
        )
        assert campaign_status(h.engine, "yalda-test")["state"] == "sending"  # not paused
        assert client.exists(f"{redis_namespace}:rate:smtp:aimd")  # it did back off
        assert h.runtime.guard("smtp").limiter.current() < 200  # type: ignore[operator]
