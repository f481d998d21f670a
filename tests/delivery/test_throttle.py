"""Sending rates: paced and shared through a real Redis (every process, whatever its
connection), waiting instead of refusing, adapting (AIMD) to "slow down" answers; and
an SMTP 4xx storm end to end. Kavenegar's 451 end to end: `tests/workers/test_sms.py`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from dispatcher.delivery.status import campaign_status
from dispatcher.delivery.throttle import (
    UNLIMITED_START,
    AdaptiveRateLimiter,
    LocalAdaptiveRateLimiter,
    build_adaptive_limiter,
)
from dispatcher.errors import RateLimiterUnavailable, TransientDeliveryError
from dispatcher.queue.broker import build_broker
from dispatcher.settings import Settings
from dispatcher.store.models import DeliveryStatus
from tests.eventually import eventually
from tests.factories import add_member, harness, write_campaign
from tests.servers.smtp_server import SmtpServerHandle


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def new_client(redis_url: str) -> Iterator[Callable[[], redis.Redis]]:
    """`new_client()`: a separate Redis connection, as another worker process has."""
    clients: list[redis.Redis] = []

    def create() -> redis.Redis:
        c = redis.Redis.from_url(redis_url)
        clients.append(c)
        return c

    yield create
    for c in clients:
        c.close()


def test_calls_are_spaced_evenly_to_the_rate(client: redis.Redis, redis_namespace: str) -> None:
    limiter = AdaptiveRateLimiter(client, key=f"{redis_namespace}:rate:kavenegar", ceiling=50)
    start = time.monotonic()
    for _ in range(26):
        limiter.acquire()
    elapsed = time.monotonic() - start
    assert 0.5 * 0.95 <= elapsed < 5.0  # 25 intervals of 20 ms


def test_the_rate_is_shared_by_every_process(
    new_client: Callable[[], redis.Redis], redis_namespace: str
) -> None:
    """Four "processes" (own connection, own limiter object) share one budget: 40 calls
    at 40 per second take about a second, not a quarter of one."""
    key = f"{redis_namespace}:rate:kavenegar"
    done: list[float] = []
    lock = threading.Lock()

    def process() -> None:
        limiter = AdaptiveRateLimiter(new_client(), key=key, ceiling=40)
        for _ in range(10):
            limiter.acquire()
            with lock:
                done.append(time.monotonic())

    threads = [threading.Thread(target=process) for _ in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(done) == 40
    assert max(done) - start >= 39 / 40  # the 40th slot is 39 intervals after the first
    assert max(done) - start < 5


def test_a_busy_limiter_waits_instead_of_refusing(
    client: redis.Redis, redis_namespace: str
) -> None:
    waits: list[float] = []
    limiter = AdaptiveRateLimiter(
        client, key=f"{redis_namespace}:rate:kavenegar", ceiling=1, sleep=waits.append
    )
    for _ in range(5):
        limiter.acquire()  # never raises: the caller's retry budget is untouched
    assert len(waits) == 4  # (the fake sleep returns at once: each call reserved a slot)
    assert waits == pytest.approx([1, 2, 3, 4], abs=0.25)


def test_redis_down_is_a_transient_error() -> None:
    down = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    limiter = AdaptiveRateLimiter(down, key="unused", ceiling=50)
    with pytest.raises(RateLimiterUnavailable) as caught:
        limiter.acquire()
    assert isinstance(caught.value, TransientDeliveryError)  # nothing sent, retried later
    down.close()


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
    eventually(lambda: limiter.current() == 40, timeout=5, what="recovered")  # +20/s
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


def test_the_in_process_limiter_spaces_calls_in_one_process() -> None:
    now = [100.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(round(seconds, 6))
        now[0] += seconds

    limiter = LocalAdaptiveRateLimiter(ceiling=50, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.acquire()
    assert waits == [0.02, 0.02]


def test_the_settings_choose_redis_or_local_with_keys_under_the_namespace(
    make_settings: Callable[..., Settings], redis_url: str, redis_namespace: str
) -> None:
    kavenegar = {"kavenegar_api_key": "k", "kavenegar_sender": "10004346"}
    shared = build_adaptive_limiter(
        make_settings(
            redis_url=redis_url,
            redis_namespace=redis_namespace,
            kavenegar_rate_limit=7,
            smtp_rate_limit=30,
            **kavenegar,
        ),
        "kavenegar",
    )
    assert isinstance(shared, AdaptiveRateLimiter)
    assert (shared.key, shared.ceiling) == (f"{redis_namespace}:rate:kavenegar", 7)
    shared.client.close()
    local = build_adaptive_limiter(make_settings(kavenegar_rate_limit=7, **kavenegar), "kavenegar")
    assert isinstance(local, LocalAdaptiveRateLimiter) and local.ceiling == 7
    # SMS to the outbox reach no provider: not paced (until something says slow down).
    assert build_adaptive_limiter(make_settings(), "kavenegar").ceiling is None
    assert build_adaptive_limiter(make_settings(smtp_rate_limit=30), "smtp").ceiling == 30


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
