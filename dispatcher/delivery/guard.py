"""What stands between an actor and its transport: the shared, adaptive sending rate
(`dispatcher.delivery.throttle`) and the error-storm counter (`dispatcher.delivery.storm`).

An actor calls, around each send::

    guard.before_send()                 # wait for a slot, one per provider call (never a retry)
    ...send...
    guard.sent(campaign)                # the run of failures is over
    guard.failed(engine, campaign, exc) # count it; pause the campaign in a storm
    guard.slow_down(exc)                # "slow down" answer? back off, True

A delivery that met a "slow down" answer (SMTP 421/450/451/454, Kavenegar 451) is not
the recipient's fault: the actor hands it back to `pending` and sends it again later
as a new message, so it costs none of the delivery's retries. Such answers still
count towards the error storm, which bounds a relay that never stops saying it.

One guard per transport per process, built once (`Runtime.guard`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from sqlalchemy.engine import Engine

from dispatcher.delivery import control
from dispatcher.delivery.storm import ErrorStorm
from dispatcher.delivery.throttle import (
    KAVENEGAR_SLOW_DOWN,
    SMTP_SLOW_DOWN,
    AdaptiveRateLimiter,
    LocalAdaptiveRateLimiter,
    build_adaptive_limiter,
)
from dispatcher.errors import DeliveryError
from dispatcher.store.models import Campaign, PausedBy

if TYPE_CHECKING:
    from dispatcher.settings import Settings

log = logging.getLogger("dispatcher.delivery.guard")

SLOW_DOWN_DELAY_MS = 2_000  # a delivery told to slow down is sent again after this
CHANNEL = {"smtp": "email", "kavenegar": "sms"}


@dataclass
class SendGuard:
    transport: str
    limiter: AdaptiveRateLimiter | LocalAdaptiveRateLimiter
    storm: ErrorStorm
    slow_down_codes: frozenset[int]

    def before_send(self) -> None:
        """Wait for the next slot of the transport's shared rate (never refuses)."""
        self.limiter.acquire()

    def sent(self, campaign: Campaign) -> None:
        assert campaign.id is not None
        self.storm.succeeded(campaign.id)

    def slow_down(self, exc: DeliveryError) -> bool:
        """True (and the rate halved) when `exc` is the provider asking to slow down."""
        if exc.code not in self.slow_down_codes:
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

    def failed(self, engine: Engine, campaign: Campaign, exc: DeliveryError) -> bool:
        """Count a failed send; True when it made this campaign pause (error storm)."""
        assert campaign.id is not None
        count = self.storm.failed(campaign.id)
        if count is None:
            return False
        reason = f"{count} {CHANNEL[self.transport]} sends in a row failed; last: {exc}"
        paused = control.pause(engine, campaign.id, by=PausedBy.ERROR_STORM, reason=reason)
        self.storm.reset(campaign.id)
        if paused:
            log.warning(
                "campaign %s paused: %s",
                campaign.slug,
                reason,
                extra={"campaign": campaign.slug, "outcome": "paused"},
            )
        return paused

    def count_failure(
        self, engine: Engine, campaign: Campaign, exc: DeliveryError, *, slow_down: bool = False
    ) -> None:
        """`failed` (and `slow_down`), called once the delivery's state is recorded: a
        Redis error here is logged, never raised, so it cannot leave a delivery
        `sending`."""
        try:
            self.failed(engine, campaign, exc)
            if slow_down:
                self.slow_down(exc)
        except redis.RedisError as err:
            log.warning("could not count a failed %s send (%s)", self.transport, err)


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
        slow_down_codes=SMTP_SLOW_DOWN if transport == "smtp" else KAVENEGAR_SLOW_DOWN,
    )
