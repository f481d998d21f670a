"""The sending rate of each transport, shared by every worker process through Redis:
GCRA pacing on Redis's clock in one Lua call, adapted AIMD-fashion (halved on a "slow
down" answer, at most once a second, then grown back additively to the configured
rate). Unset rate: unpaced until the provider pushes back. Without Redis,
`LocalAdaptiveRateLimiter` follows the same rules in memory. README: "Rate limits
that adapt".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from dispatcher.errors import RateLimiterUnavailable

if TYPE_CHECKING:
    from dispatcher.settings import Settings

UNLIMITED_START = 64.0  # messages/s after a first backoff when no rate is configured
FLOOR = 0.5  # messages/s: never slower than one message every two seconds
COOLDOWN_MS = 1_000

# KEYS: [1] GCRA slot key, [2] AIMD hash. ARGV: [1] ceiling (0 = none), [2] start when
# unlimited, [3] additive step per second, [4] 1 to reserve a slot, 0 to back off,
# [5] floor, [6] cooldown in microseconds. Returns {wait in microseconds, rate * 1000}.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ceiling = tonumber(ARGV[1])
local cap = ceiling
if cap <= 0 then cap = tonumber(ARGV[2]) end
local step = tonumber(ARGV[3])
local rate = ceiling
local throttled = false
local base = redis.call('HMGET', KEYS[2], 'rate', 'at')
if base[1] then
  local grown = tonumber(base[1]) + step * (now - tonumber(base[2])) / 1000000
  if grown >= cap then
    redis.call('DEL', KEYS[2])
  else
    rate = grown
    throttled = true
  end
end
if ARGV[4] == '0' then
  if throttled and now - tonumber(base[2]) < tonumber(ARGV[6]) then
    return {0, math.floor(rate * 1000)}
  end
  local from = cap
  if throttled then from = rate end
  local new = math.max(tonumber(ARGV[5]), from / 2)
  redis.call('HSET', KEYS[2], 'rate', tostring(new), 'at', string.format('%d', now))
  redis.call('PEXPIRE', KEYS[2], 3600000)
  return {0, math.floor(new * 1000)}
end
if rate <= 0 then
  return {0, 0}
end
local interval = math.floor(1000000 / rate)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - now
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat),
           'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {wait, math.floor(rate * 1000)}
"""


def default_step(ceiling: float | None) -> float:
    return max(0.5, (ceiling or UNLIMITED_START) / 20)


class AdaptiveRateLimiter:
    """`acquire()` waits for the next slot at the current rate; `backoff()` halves it.

    Shared by every process using the same Redis keys.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        key: str,
        ceiling: float | None,
        step: float | None = None,
        floor: float = FLOOR,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.key = key
        self.ceiling = ceiling
        self.step = step if step is not None else default_step(ceiling)
        self.floor = floor
        self._sleep = sleep
        self._clock = clock
        self._script = client.register_script(_SCRIPT)
        self._throttled_checked = -1.0
        self._throttled = False

    def __repr__(self) -> str:
        return f"AdaptiveRateLimiter(key={self.key!r}, ceiling={self.ceiling})"

    @property
    def aimd_key(self) -> str:
        return f"{self.key}:aimd"

    def _run(self, reserve: bool) -> tuple[int, float]:
        args = [
            self.ceiling or 0,
            UNLIMITED_START,
            self.step,
            1 if reserve else 0,
            self.floor,
            COOLDOWN_MS * 1000,
        ]
        try:
            wait_us, rate_milli = self._script(keys=[self.key, self.aimd_key], args=args)
        except redis.RedisError as exc:
            raise RateLimiterUnavailable(f"rate limiter: Redis unavailable ({exc})") from exc
        return int(wait_us), int(rate_milli) / 1000

    def acquire(self) -> None:
        if self.ceiling is None and not self._maybe_throttled():
            return
        wait_us, rate = self._run(reserve=True)
        if self.ceiling is None and rate == 0:
            self._throttled = False
        if wait_us > 0:
            self._sleep(wait_us / 1_000_000)

    def _maybe_throttled(self) -> bool:
        now = self._clock()
        if now - self._throttled_checked >= 1.0:
            self._throttled_checked = now
            try:
                self._throttled = bool(self.client.exists(self.aimd_key))
            except redis.RedisError as exc:
                raise RateLimiterUnavailable(f"rate limiter: Redis unavailable ({exc})") from exc
        return self._throttled

    def backoff(self) -> float:
        """Halve the effective rate (once per second at most); returns the new rate."""
        _, rate = self._run(reserve=False)
        self._throttled = True
        return rate

    def current(self) -> float | None:
        """The effective rate now (messages/s), None when unpaced."""
        raw = self.client.hmget(self.aimd_key, ["rate", "at"])
        if raw[0] is None:
            return self.ceiling
        seconds = self.client.time()
        now = seconds[0] * 1_000_000 + seconds[1]
        grown = float(raw[0]) + self.step * (now - int(float(raw[1] or 0))) / 1_000_000
        cap = self.ceiling or UNLIMITED_START
        if grown >= cap:
            return self.ceiling
        return grown


class LocalAdaptiveRateLimiter:
    """The same inside one process (inline mode, where there is no Redis)."""

    def __init__(
        self,
        *,
        ceiling: float | None,
        step: float | None = None,
        floor: float = FLOOR,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ceiling = ceiling
        self.step = step if step is not None else default_step(ceiling)
        self.floor = floor
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._base: tuple[float, float] | None = None  # (rate after backoff, when)
        self._tat = 0.0

    def __repr__(self) -> str:
        return f"LocalAdaptiveRateLimiter(ceiling={self.ceiling})"

    def _rate(self, now: float) -> float | None:
        cap = self.ceiling or UNLIMITED_START
        if self._base is not None:
            grown = self._base[0] + self.step * (now - self._base[1])
            if grown < cap:
                return grown
            self._base = None
        return self.ceiling

    def current(self) -> float | None:
        with self._lock:
            return self._rate(self._clock())

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            rate = self._rate(now)
            if rate is None:
                return
            tat = max(self._tat, now)
            self._tat = tat + 1.0 / rate
        if tat > now:
            self._sleep(tat - now)

    def backoff(self) -> float:
        with self._lock:
            now = self._clock()
            rate = self._rate(now)
            if self._base is not None and now - self._base[1] < COOLDOWN_MS / 1000:
                return self._base[0]
            new = max(self.floor, (rate or UNLIMITED_START) / 2)
            self._base = (new, now)
            return new


def build_adaptive_limiter(
    settings: Settings, transport: str
) -> AdaptiveRateLimiter | LocalAdaptiveRateLimiter:
    """The adaptive limiter of "smtp" (SMTP_RATE_LIMIT, default none) or "kavenegar"
    (KAVENEGAR_RATE_LIMIT; none in outbox mode): in Redis, shared by every process,
    when REDIS_URL is set."""
    ceiling: float | None
    if transport == "smtp":
        ceiling = settings.smtp_rate_limit
    elif transport == "kavenegar":
        ceiling = None if settings.sms_outbox else float(settings.kavenegar_rate_limit)
    else:
        raise ValueError(f"unknown transport {transport!r}")
    if settings.redis_url is None:
        return LocalAdaptiveRateLimiter(ceiling=ceiling)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    return AdaptiveRateLimiter(
        client, key=f"{settings.redis_namespace}:rate:{transport}", ceiling=ceiling
    )
