"""Running the actors to completion in this process (inline mode, and `--wait`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from dramatiq import Broker, Worker
from dramatiq.brokers.stub import StubBroker
from sqlalchemy.engine import Engine

from dispatcher.control import get, is_held
from dispatcher.status import outstanding


def run_inline(
    broker: Broker,
    engine: Engine,
    campaign_id: int,
    *,
    threads: int = 8,
    on_tick: Callable[[int], None] | None = None,
) -> None:
    """Start an in-process Worker and return once the campaign has nothing outstanding
    and the queues are drained."""
    assert isinstance(broker, StubBroker)
    worker = Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        while True:
            left = outstanding(engine, campaign_id)
            if on_tick:
                on_tick(left)
            if _drained(broker) and (left == 0 or is_held(get(engine, campaign_id))):
                break  # done, or paused/cancelled: what is left stays pending
            if worker.consumers and not any(
                t.is_alive() for t in worker.consumers.values()
            ):  # pragma: no cover - a dead worker would otherwise hang us
                raise RuntimeError("the in-process worker stopped")
            time.sleep(0.05)
        worker.join()
    finally:
        worker.stop()


def _drained(broker: StubBroker) -> bool:
    return all(q.unfinished_tasks == 0 for q in broker.queues.values())


def wait_for(engine: Engine, campaign_id: int, on_tick: Callable[[int], None]) -> None:
    """Poll the database until the campaign has nothing outstanding (Redis mode)."""
    while True:
        left = outstanding(engine, campaign_id)
        on_tick(left)
        if left == 0 or is_held(get(engine, campaign_id)):
            return
        time.sleep(0.5)
