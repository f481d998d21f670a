"""What stands between an actor and its transport: the shared, adaptive sending rate
(`throttle`) and the error-storm counter (`storm`), one guard per transport per process.
A failure that makes a storm returns the reason; the caller pauses the campaign."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis

from dispatcher.delivery.storm import ErrorStorm
from dispatcher.delivery.throttle import (
    AdaptiveRateLimiter,
    LocalAdaptiveRateLimiter,
    build_adaptive_limiter,
)
from dispatcher.errors import DeliveryError, ThrottledError
from dispatcher.store.models import Campaign

if TYPE_CHECKING:
    from dispatcher.settings import Settings

log = logging.getLogger("dispatcher.delivery.guard")

SLOW_DOWN_DELAY_MS = 2_000  # a delivery told to slow down is sent again after this
TRIPPED_S = 30.0  # at most this long, a storm this process counted holds its jobs back
CHANNEL = {"smtp": "email", "kavenegar": "sms"}


@dataclass
class SendGuard:
    transport: str
    limiter: AdaptiveRateLimiter | LocalAdaptiveRateLimiter
    storm: ErrorStorm
    # campaign id -> when this process counted its error storm, until the pause is written
    tripped: dict[int, float] = field(default_factory=dict)

    def before_send(self) -> None:
        """Wait for the next slot of the transport's shared rate (never refuses)."""
        self.limiter.acquire()

    def sent(self, campaign: Campaign) -> None:
        assert campaign.id is not None
        self.storm.succeeded(campaign.id)

    def slow_down(self, exc: DeliveryError) -> bool:
        """True (and the rate halved) when `exc` is the provider asking to slow down."""
        if not isinstance(exc, ThrottledError):
            return False
        rate = self.limiter.backoff()
        log.info(
            "%s said %s: sending rate now %.1f/s",
            self.transport,
            exc.code,
            rate,
            extra={"outcome": "slow-down"},
        )
        return True

    def failed(self, campaign: Campaign, exc: DeliveryError) -> str | None:
        """Count a failed send; the reason to pause the campaign when it makes an error
        storm (the caller pauses it), else None."""
        assert campaign.id is not None
        count = self.storm.failed(campaign.id)
        if count is None:
            return None
        self.storm.reset(campaign.id)
        self.tripped[campaign.id] = time.monotonic()
        return f"{count} {CHANNEL[self.transport]} sends in a row failed; last: {exc}"

    def is_tripped(self, campaign_id: int | None) -> bool:
        """Whether this process counted an error storm of the campaign whose pause may not
        be written yet (on a busy database that takes a while, and the campaign still
        reads as sending meanwhile)."""
        at = self.tripped.get(campaign_id) if campaign_id is not None else None
        return at is not None and time.monotonic() - at < TRIPPED_S

    def pause_written(self, campaign_id: int) -> None:
        """The storm's pause is in the database: its state says it from now on."""
        self.tripped.pop(campaign_id, None)

    def count_failure(
        self, campaign: Campaign, exc: DeliveryError, *, slow_down: bool = False
    ) -> str | None:
        """`failed` (and `slow_down`), called once the delivery's state is recorded: a
        Redis error here is logged, never raised, so it cannot leave a delivery
        `sending`. A `repeated` failure (one provider call's, met by another message
        of the campaign it carried) was counted with the first."""
        if exc.repeated:
            return None
        try:
            storm = self.failed(campaign, exc)
            if slow_down:
                self.slow_down(exc)
        except redis.RedisError as err:
            log.warning("could not count a failed %s send (%s)", self.transport, err)
            return None
        return storm


def build_guard(settings: Settings, transport: str) -> SendGuard:
    """The guard of "smtp" or "kavenegar", shared through Redis when REDIS_URL is set."""
    client = None
    if settings.redis_url:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    storm = ErrorStorm(
        limit=settings.max_send_errors,
        client=client,
        prefix=f"{settings.redis_namespace}:storm:{CHANNEL[transport]}",
    )
    return SendGuard(
        transport=transport,
        limiter=build_adaptive_limiter(settings, transport),
        storm=storm,
    )
