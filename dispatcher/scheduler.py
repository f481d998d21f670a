"""`dispatcher scheduler`: launches campaigns when due, and keeps running ones honest:
orphans back after the lease, what Redis lost re-enqueued, waiting SMS released, done
campaigns marked, and (with Kavenegar, a bounce mailbox) the periodic jobs, each taken
by one scheduler at a time. README: "Running it for real".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import redis
from dramatiq import Actor, Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select
from sqlmodel import Session, col

from dispatcher import hold
from dispatcher.audience.addresses import address_keys
from dispatcher.delivery import control
from dispatcher.delivery.abdecision import Decision, decide
from dispatcher.delivery.abdecision import due as ab_due
from dispatcher.delivery.clicks import purge_seen
from dispatcher.errors import DeliveryError, DispatcherError
from dispatcher.feedback.imap import fetch_returns
from dispatcher.feedback.release import release_waiting_sms
from dispatcher.feedback.replies import read_inbox
from dispatcher.feedback.reports import sync_statuses
from dispatcher.feedback.returns import ReturnsReader
from dispatcher.inline import run_inline
from dispatcher.queue.abtest import not_waiting
from dispatcher.queue.broker import enqueue_many, queue_is_empty
from dispatcher.queue.expansion import enqueue_pending, launch, pending_ids
from dispatcher.runtime import Runtime
from dispatcher.store.models import (
    Campaign,
    CampaignState,
    Channel,
    Delivery,
    DeliveryStatus,
    utcnow,
)

log = logging.getLogger("dispatcher.scheduler")

REQUEUE_GRACE = timedelta(seconds=30)
_T = TypeVar("_T")
PURGE_EVERY_S = 3600.0  # old unique-clicker hashes are looked for hourly


@dataclass
class Tick:
    """What one tick did, by campaign slug."""

    launched: list[str] = field(default_factory=list)
    reclaimed: dict[str, int] = field(default_factory=dict)
    requeued: dict[str, int] = field(default_factory=dict)
    released: dict[str, int] = field(default_factory=dict)  # SMS let go by the window
    finished: list[str] = field(default_factory=list)
    sms_sync: dict[str, int] | None = None  # counts, when this tick ran the sync
    sms_inbox: dict[str, int] | None = None  # counts, when this tick read the inbox
    bounces: dict[str, int] | None = None  # counts, when this tick read the bounce mailbox
    decided: dict[str, str] = field(default_factory=dict)  # A/B tests: slug -> winner
    click_hashes_purged: int | None = None  # when this tick purged old click hashes

    def __bool__(self) -> bool:
        return bool(
            self.launched
            or self.reclaimed
            or self.requeued
            or self.released
            or self.finished
            or self.decided
            or bool(self.click_hashes_purged)
            or any((self.sms_sync or {}).values())
            or any((self.sms_inbox or {}).values())
            or any((self.bounces or {}).values())
        )


class Scheduler:
    def __init__(
        self,
        rt: Runtime,
        broker: Broker,
        actors: dict[str, Actor],
        *,
        clock: Callable[[], datetime] = utcnow,
        grace: timedelta = REQUEUE_GRACE,
    ) -> None:
        self.rt = rt
        self.engine = rt.engine
        self.broker = broker
        self.actors = actors
        self.clock = clock
        self.grace = grace
        self.lease = timedelta(seconds=rt.settings.send_lease_seconds)
        self._next_run: dict[str, datetime] = {}  # without Redis: job -> when due again
        self._redis_client: redis.Redis | None = None  # REDIS_URL beside another broker

    def run(self, stop: threading.Event, *, interval: float | None = None) -> None:
        """Tick until `stop` is set; a tick that fails is logged, and the next one runs."""
        interval = interval or self.rt.settings.scheduler_interval
        while not stop.is_set():
            self._duty("tick", self.tick)
            stop.wait(interval)

    def tick(self) -> Tick:
        """Every duty once; one that fails (any error) is logged and the others go on."""
        report = Tick()
        now = self.clock()
        for campaign_id in self._ids(CampaignState.SCHEDULED, due=now):
            self._duty(f"launch of campaign {campaign_id}", self._launch, campaign_id, now, report)
        for campaign_id in self._ids(CampaignState.SENDING):
            self._duty(f"campaign {campaign_id}", self._recover, campaign_id, now, report)
        for campaign_id in ab_due(self.engine, now):
            self._duty(
                f"a/b decision of campaign {campaign_id}", self.decide_ab, campaign_id, now, report
            )
        if Channel.SMS in self.actors:
            self._duty("sms release", self._release_sms, now, report)
        for campaign_id in self._ids(CampaignState.SENDING):
            self._duty(f"finish of campaign {campaign_id}", self._finish, campaign_id, now, report)
        if not self.rt.settings.sms_outbox:
            self._duty("sms sync and inbox", self._sms_housekeeping, now, report)
        s = self.rt.settings
        if s.bounce_imap_url is not None and self._claim("bounces", now, s.bounce_interval):
            report.bounces = self._duty("bounces fetch", self._fetch_bounces)
        if self._claim("click-purge", now, PURGE_EVERY_S):
            report.click_hashes_purged = self._duty(
                "click hash purge",
                lambda: purge_seen(self.engine, days=s.click_dedupe_days, now=now),
            )
        if report:
            log.info("scheduler: %s", report, extra={"outcome": "tick"})
        return report

    def _duty(self, name: str, job: Callable[..., _T], *args: Any) -> _T | None:
        """`job(*args)`; None when it raised. The scheduler runs for months: one
        duty's error (a bug, a corrupt row, a parser's surprise) is logged with its
        traceback and tried again next tick, never the end of the process."""
        try:
            return job(*args)
        except Exception:  # the one place that keeps the long-running process alive
            log.exception(
                "scheduler: %s failed; tried again next tick", name, extra={"outcome": "failed"}
            )
            return None

    def _finish(self, campaign_id: int, now: datetime, report: Tick) -> None:
        if control.finish_if_done(self.engine, campaign_id, now=now):
            slug = control.get(self.engine, campaign_id).slug
            report.finished.append(slug)
            log.info("campaign %s finished", slug, extra={"campaign": slug, "outcome": "finished"})

    def _ids(self, state: CampaignState, *, due: datetime | None = None) -> list[int]:
        query = select(col(Campaign.id)).where(col(Campaign.state) == state)
        if due is not None:
            query = query.where(col(Campaign.send_at) <= due)
        with Session(self.engine) as session:
            return [i for i in session.execute(query.order_by(col(Campaign.id))).scalars()]

    def _launch(self, campaign_id: int, now: datetime, report: Tick) -> None:
        expansion = launch(self.engine, campaign_id, now=now, keys=address_keys(self.rt.settings))
        if expansion is None:
            return  # another scheduler (or a person: pause, cancel) got there first
        campaign = expansion.campaign
        report.launched.append(campaign.slug)
        log.info(
            "campaign %s launched: %s",
            campaign.slug,
            expansion.eligible,
            extra={"campaign": campaign.slug, "outcome": "launched"},
        )
        enqueue_pending(self.engine, self.broker, campaign, self.actors)
        assert campaign.id is not None
        self._send_inline(campaign.id)

    def decide_ab(
        self, campaign_id: int, now: datetime, report: Tick, winner: str | None = None
    ) -> Decision | None:
        """Decide an A/B test (by its clicks, or `winner`) once, then enqueue the rest."""
        decision = decide(self.engine, campaign_id, now=now, winner=winner)
        if decision is None:
            return None  # decided already (another scheduler, or by hand)
        slug = control.get(self.engine, campaign_id).slug
        report.decided[slug] = decision.winner
        log.info(
            "campaign %s: A/B winner %s (%s, p=%s); %d enqueued",
            slug,
            decision.winner,
            decision.decided_by,
            decision.p_value,
            len(decision.waiting_ids),
            extra={"campaign": slug, "outcome": "ab-decided"},
        )
        actor = self.actors[Channel.EMAIL]
        enqueue_many(self.broker, (actor.message(i) for i in decision.waiting_ids))
        self._send_inline(campaign_id)
        return decision

    def _send_inline(self, campaign_id: int) -> None:
        """Inline mode (no Redis, so no workers): send what was just enqueued, here."""
        if isinstance(self.broker, StubBroker):
            run_inline(
                self.broker, self.engine, campaign_id, threads=self.rt.settings.worker_threads
            )

    def _recover(self, campaign_id: int, now: datetime, report: Tick) -> None:
        campaign = control.get(self.engine, campaign_id)
        reclaimed = control.reclaim_orphans(self.engine, campaign_id, lease=self.lease)
        if reclaimed:
            report.reclaimed[campaign.slug] = len(reclaimed)
            for channel in {ch for _, ch in reclaimed}:
                ids = [i for i, ch in reclaimed if ch == channel]
                enqueue_many(self.broker, (self.actors[channel].message(i) for i in ids))
            log.warning(
                "campaign %s: %d deliveries were sending beyond the lease; re-enqueued",
                campaign.slug,
                len(reclaimed),
                extra={"campaign": campaign.slug, "outcome": "reclaimed"},
            )
        with self.engine.connect() as conn:
            holds = hold.holds_of(conn, campaign_id)
        for channel in campaign.channel_list():
            if str(channel) in holds:
                continue  # held by the channel itself (no credit, send window)
            actor = self.actors[channel]
            if not self._queue_empty(actor.queue_name):
                continue
            if not self._stale_pending(campaign_id, channel, now - self.grace):
                continue
            n = sum(
                enqueue_many(self.broker, (actor.message(i) for i in ids))
                for ids in pending_ids(self.engine, campaign_id, channel)
            )
            report.requeued[campaign.slug] = report.requeued.get(campaign.slug, 0) + n
            log.warning(
                "campaign %s: %d pending %s deliveries had no message in Redis; re-enqueued",
                campaign.slug,
                n,
                channel,
                extra={"campaign": campaign.slug, "outcome": "requeued"},
            )

    def _release_sms(self, now: datetime, report: Tick) -> None:
        actor = self.actors[Channel.SMS]
        released = release_waiting_sms(self.engine, self.rt.settings, self.broker, actor, now=now)
        for campaign_id, n in released.items():
            slug = control.get(self.engine, campaign_id).slug
            report.released[slug] = n
            log.info(
                "campaign %s: the SMS send window is open; %d SMS enqueued",
                slug,
                n,
                extra={"campaign": slug, "outcome": "released"},
            )
            self._send_inline(campaign_id)

    def _sms_housekeeping(self, now: datetime, report: Tick) -> None:
        if self._claim("sms-sync", now):
            sync = partial(sync_statuses, self.rt, now=now)
            report.sms_sync = self._duty("sms sync", self._kavenegar, "sms sync", sync)
        if self._claim("sms-inbox", now):
            inbox = partial(read_inbox, self.rt)
            report.sms_inbox = self._duty("sms inbox", self._kavenegar, "sms inbox", inbox)

    def _fetch_bounces(self) -> dict[str, int] | None:
        """`bounces fetch`: read the bounce mailbox; a failure is logged, tried again
        after BOUNCE_INTERVAL."""
        s = self.rt.settings
        assert s.bounce_imap_url is not None
        try:
            reader = ReturnsReader(
                self.engine, key=s.suppression_key_bytes(), bounce_address=s.bounce_address
            )
            counts = fetch_returns(reader, s.bounce_imap_url.get_secret_value()).as_dict()
        except DispatcherError as exc:
            log.warning(
                "bounces fetch failed: %s; next try in %gs",
                exc,
                s.bounce_interval,
                extra={"outcome": "failed"},
            )
            return None
        log.info("bounces fetch: %s", counts, extra={"outcome": "bounces-fetch"})
        return counts

    def _kavenegar(self, name: str, job: Callable[[], dict[str, int]]) -> dict[str, int] | None:
        """Run a Kavenegar job; a failure is logged (and a 451 slows the senders too)."""
        try:
            counts = job()
        except DeliveryError as exc:
            self.rt.guard("kavenegar").slow_down(exc)
            log.warning(
                "%s failed: %s; next try in %gs",
                name,
                exc,
                self.rt.settings.sms_sync_interval,
                extra={"outcome": "failed"},
            )
            return None
        log.info("%s: %s", name, counts, extra={"outcome": name.replace(" ", "-")})
        return counts

    def _claim(self, job: str, now: datetime, every: float | None = None) -> bool:
        """True for the one scheduler that runs `job` now; then for no one during
        `every` seconds, default SMS_SYNC_INTERVAL (a key with a TTL in Redis, the
        broker's or REDIS_URL's beside RabbitMQ; this process's memory without)."""
        every = every or self.rt.settings.sms_sync_interval
        client = self._redis()
        if client is not None:
            key = f"{self.rt.settings.redis_namespace}:scheduler:{job}"
            ttl_ms = max(1, round(every * 1000))
            return bool(client.set(key, now.isoformat(), nx=True, px=ttl_ms))
        due = self._next_run.get(job)
        if due is not None and now < due:
            return False
        self._next_run[job] = now + timedelta(seconds=every)
        return True

    def _redis(self) -> redis.Redis | None:
        """The Redis shared by the schedulers: the broker's, else REDIS_URL's (RabbitMQ)."""
        if isinstance(self.broker, RedisBroker):
            return self.broker.client
        if (
            self._redis_client is None
            and self.rt.settings.redis_url
            and not self.rt.settings.inline
        ):
            self._redis_client = redis.Redis.from_url(self.rt.settings.redis_url, socket_timeout=5)
        return self._redis_client

    def _queue_empty(self, queue: str) -> bool:
        """True when the broker holds no message of `queue`, queued or delayed (on Redis,
        in flight too); an unknown broker, or one that cannot tell, is never guessed."""
        return queue_is_empty(self.broker, queue) is True

    def _stale_pending(self, campaign_id: int, channel: str, before: datetime) -> bool:
        with Session(self.engine) as session:
            return (
                session.execute(
                    select(col(Delivery.id))
                    .where(
                        col(Delivery.campaign_id) == campaign_id,
                        col(Delivery.channel) == channel,
                        col(Delivery.status) == DeliveryStatus.PENDING,
                        col(Delivery.updated_at) < before,
                        not_waiting(),
                    )
                    .limit(1)
                ).first()
                is not None
            )
