"""A worker process says its broker and transports when it has booted."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from dramatiq import Worker

from dispatcher.queue.broker import build_broker
from dispatcher.settings import Settings


def test_a_worker_says_its_broker_and_transports_at_start(
    make_settings: Callable[..., Settings],
    redis_url: str,
    redis_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(
        redis_url=redis_url, smtp_host="relay.example", smtp_port=2525, smtp_security="none"
    )
    broker = build_broker(settings, namespace=redis_namespace)
    worker = Worker(broker, worker_threads=1)
    with caplog.at_level(logging.INFO, logger="dispatcher.workers"):
        worker.start()
        worker.stop()
    broker.close()
    [line] = [r.getMessage() for r in caplog.records if r.name == "dispatcher.workers"]
    assert line == (
        f"worker: broker redis ({redis_url}), email transport smtp (relay.example:2525, none), "
        f"sms transport {settings.sms_transport_label}"
    )
