"""Prometheus metrics, opt-in with `PROMETHEUS=1` (the `[metrics]` extra): Dramatiq's
middleware in the workers, and the scheduler's `dispatcher_*` gauges read from the
database and Redis at scrape time, on `PROMETHEUS_PORT`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dramatiq import Actor, Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name
from sqlalchemy import func, select
from sqlmodel import Session, col

from dispatcher.delivery.control import LIVE
from dispatcher.errors import ConfigurationError
from dispatcher.runtime import Runtime
from dispatcher.store.models import Campaign, Delivery


class DispatcherCollector:
    """Reads queue depths and campaign progress when Prometheus scrapes."""

    def __init__(self, rt: Runtime, broker: Broker, actors: dict[str, Actor]) -> None:
        self.rt = rt
        self.broker = broker
        self.queues = sorted({a.queue_name for a in actors.values()})

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        queue = GaugeMetricFamily(
            "dispatcher_queue_messages", "Messages waiting in a queue.", labels=["queue"]
        )
        if isinstance(self.broker, RedisBroker):
            pipe = self.broker.client.pipeline(transaction=False)
            names = [n for q in self.queues for n in (q, dq_name(q))]
            for name in names:
                pipe.llen(f"{self.broker.namespace}:{name}")
            for name, depth in zip(names, pipe.execute(), strict=True):
                queue.add_metric([name], depth)
        yield queue

        campaigns = GaugeMetricFamily(
            "dispatcher_campaigns", "Campaigns per state.", labels=["state"]
        )
        deliveries = GaugeMetricFamily(
            "dispatcher_deliveries",
            "Deliveries of live campaigns per channel and status.",
            labels=["campaign", "channel", "status"],
        )
        with Session(self.rt.engine) as session:
            for state, n in session.execute(
                select(col(Campaign.state), func.count()).group_by(col(Campaign.state))
            ).all():
                campaigns.add_metric([state], n)
            for slug, channel, status, n in session.execute(
                select(
                    col(Campaign.slug), col(Delivery.channel), col(Delivery.status), func.count()
                )
                .join(Campaign, col(Campaign.id) == col(Delivery.campaign_id))
                .where(col(Campaign.state).in_(list(LIVE)))
                .group_by(Campaign.slug, Delivery.channel, Delivery.status)
            ).all():
                deliveries.add_metric([slug, channel, status], n)
        yield campaigns
        yield deliveries


def serve(rt: Runtime, broker: Broker, actors: dict[str, Actor], *, port: int) -> None:
    """Serve the collector on `port` from a background thread."""
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise ConfigurationError(
            "PROMETHEUS=1 needs prometheus_client: pip install 'campaign-dispatcher[metrics]'"
        ) from None
    registry = CollectorRegistry()
    registry.register(DispatcherCollector(rt, broker, actors))
    start_http_server(port, registry=registry)
