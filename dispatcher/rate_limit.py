"""A limit on calls per second to a provider, shared by every worker process.

`KAVENEGAR_RATE_LIMIT` calls per second is a property of the Kavenegar account, not
of one process, so the limiter lives in Redis: `RedisRateLimiter` runs GCRA (the
"generic cell rate algorithm", a token bucket kept as one timestamp) in a Lua
script on Redis's clock, so every process, whatever its own clock, agrees. Without
Redis (inline mode: one process) `LocalRateLimiter` runs the same algorithm in
memory.

`acquire()` never refuses: it *reserves* the next free slot and sleeps until it.
A busy limiter therefore slows the workers down instead of raising, and costs no
retry of the actor's budget. With `burst=1` (the default) calls are spaced evenly,
`1/rate` seconds apart, so no one-second span ever sees more than `rate` calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import redis

from dispatcher.errors import TransientDeliveryError

if TYPE_CHECKING:
    from dispatcher.settings import Settings

REDIS_KEY = "dispatcher:kavenegar:rate"  # under REDIS_NAMESPACE's default

# KEYS[1]: the limiter's key. ARGV[1]: microseconds between calls (1e6 / rate).
# ARGV[2]: burst tolerance in microseconds. Reserves the next slot and returns how
# many microseconds the caller must wait before using it (0: now).
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat),
           'PX', math.ceil((new_tat - now) / 1000) + 1000)
return wait
"""


class RateLimiterUnavailable(TransientDeliveryError):
    """Raised when the shared limiter's Redis cannot be reached (nothing was sent)."""


class RateLimiter(Protocol):
    """Blocks until one more call may go."""

    def acquire(self) -> None: ...


class RedisRateLimiter:
    """`rate` calls per second across every process that shares `key` on this Redis."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        key: str = REDIS_KEY,
        rate: float,
        burst: int = 1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.client = client
        self.key = key
        self.rate = rate
        self.interval_us = int(1_000_000 / rate)
        self.tolerance_us = self.interval_us * (burst - 1)
        self._sleep = sleep
        self._script = client.register_script(_GCRA)

    def __repr__(self) -> str:
        return f"RedisRateLimiter(key={self.key!r}, rate={self.rate})"

    def acquire(self) -> None:
        try:
            wait_us = int(self._script(keys=[self.key], args=[self.interval_us, self.tolerance_us]))
        except redis.RedisError as exc:
            raise RateLimiterUnavailable(f"rate limiter: Redis unavailable ({exc})") from exc
        if wait_us > 0:
            self._sleep(wait_us / 1_000_000)


class LocalRateLimiter:
    """The same limit inside one process (inline mode, where there is no Redis)."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.interval = 1.0 / rate
        self.tolerance = self.interval * (burst - 1)
        self._clock = clock
        self._sleep = sleep
        self._tat = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalRateLimiter(rate={self.rate})"

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            wait = tat - self.tolerance - now
            self._tat = tat + self.interval
        if wait > 0:
            self._sleep(wait)


def build_rate_limiter(settings: Settings) -> RateLimiter:
    """Shared through Redis when REDIS_URL is set, in-process otherwise."""
    if settings.redis_url:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
        key = f"{settings.redis_namespace}:kavenegar:rate"
        return RedisRateLimiter(client, key=key, rate=settings.kavenegar_rate_limit)
    return LocalRateLimiter(rate=settings.kavenegar_rate_limit)
