"""The scheduler's Prometheus collector reads queue depth and progress at scrape time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dispatcher.queue.broker import build_broker
from dispatcher.settings import Settings
from tests.factories import add_member, harness, write_campaign

prometheus_client = pytest.importorskip("prometheus_client")


def test_queue_depth_and_campaign_counters_are_exported(
    make_settings: Callable[..., Settings],
    database_url: str,
    redis_url: str,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    from dispatcher.metrics import DispatcherCollector

    settings = make_settings(
        database_url=database_url, redis_url=redis_url, redis_namespace=redis_namespace
    )
    with harness(settings, build_broker(settings)) as h:
        for i in range(3):
            add_member(h.engine, f"C{i}")
        h.send(write_campaign(tmp_path / "c"))
        registry = prometheus_client.CollectorRegistry()
        registry.register(DispatcherCollector(h.runtime, h.broker, h.actors))
        sample = registry.get_sample_value
        assert sample("dispatcher_queue_messages", {"queue": "email"}) == 3
        assert sample("dispatcher_campaigns", {"state": "sending"}) == 1
        labels = {"campaign": "yalda-test", "channel": "email", "status": "pending"}
        assert sample("dispatcher_deliveries", labels) == 3
        h.broker.flush_all()
