"""The provider rate limit: shared through a real Redis, or in-process without one."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from dispatcher.errors import TransientDeliveryError
from dispatcher.rate_limit import (
    LocalRateLimiter,
    RateLimiterUnavailable,
    RedisRateLimiter,
    build_rate_limiter,
)
from dispatcher.settings import Settings
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.redis


@pytest.fixture
def key() -> Iterator[str]:
    """A key of this test's own, so that parallel runs never share a limiter."""
    name = f"test:{uuid.uuid4().hex}:kavenegar:rate"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(name)
    client.close()


@pytest.fixture
def new_client() -> Iterator[Callable[[], redis.Redis]]:
    """`new_client()`: a separate Redis connection, as another worker process has."""
    clients: list[redis.Redis] = []

    def create() -> redis.Redis:
        client = redis.Redis.from_url(REDIS_URL)
        client.ping()  # fail loudly, here, when Redis is missing
        clients.append(client)
        return client

    yield create
    for client in clients:
        client.close()


def test_calls_are_spaced_to_the_rate(new_client: Callable[[], redis.Redis], key: str) -> None:
    limiter = RedisRateLimiter(new_client(), key=key, rate=50)
    start = time.monotonic()
    for _ in range(26):
        limiter.acquire()
    elapsed = time.monotonic() - start
    assert 0.5 * 0.95 <= elapsed < 5.0  # 25 intervals of 20 ms


def test_the_limit_is_shared_by_every_process(
    new_client: Callable[[], redis.Redis], key: str
) -> None:
    """Four "processes" (own connection, own limiter object) share one budget: 40 calls
    at 40 per second take about a second, not a quarter of one."""
    done: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        limiter = RedisRateLimiter(new_client(), key=key, rate=40)
        for _ in range(10):
            limiter.acquire()
            with lock:
                done.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(done) == 40
    assert max(done) - start >= 39 / 40  # the 40th slot is 39 intervals after the first
    assert max(done) - start < 5


def test_a_busy_limiter_waits_instead_of_refusing(
    new_client: Callable[[], redis.Redis], key: str
) -> None:
    waits: list[float] = []
    limiter = RedisRateLimiter(new_client(), key=key, rate=1, sleep=waits.append)
    for _ in range(5):
        limiter.acquire()  # never raises: the caller's retry budget is untouched
    assert len(waits) == 4  # (the fake sleep returns at once: each call reserved a slot)
    assert waits == pytest.approx([1, 2, 3, 4], abs=0.25)


def test_a_burst_lets_that_many_calls_through_at_once(
    new_client: Callable[[], redis.Redis], key: str
) -> None:
    waits: list[float] = []
    limiter = RedisRateLimiter(new_client(), key=key, rate=1, burst=3, sleep=waits.append)
    for _ in range(4):
        limiter.acquire()
    assert len(waits) == 1  # three went at once, the fourth waited
    assert waits[0] == pytest.approx(1, abs=0.25)


def test_redis_down_is_a_transient_error() -> None:
    client = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    limiter = RedisRateLimiter(client, key="unused", rate=50)
    with pytest.raises(RateLimiterUnavailable) as caught:
        limiter.acquire()
    assert isinstance(caught.value, TransientDeliveryError)
    client.close()


def test_the_local_limiter_spaces_calls_in_one_process() -> None:
    now = [100.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(round(seconds, 6))
        now[0] += seconds

    limiter = LocalRateLimiter(rate=50, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.acquire()
    assert waits == [0.02, 0.02]


def test_the_settings_choose_redis_or_local(make_settings: Callable[..., Settings]) -> None:
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    shared = build_rate_limiter(
        make_settings(redis_url=REDIS_URL, redis_namespace=namespace, kavenegar_rate_limit=7)
    )
    assert isinstance(shared, RedisRateLimiter)
    assert (shared.key, shared.rate) == (f"{namespace}:kavenegar:rate", 7)
    shared.client.close()
    local = build_rate_limiter(make_settings(kavenegar_rate_limit=7))
    assert isinstance(local, LocalRateLimiter) and local.rate == 7
