"""Running the actors to completion in this process (inline mode, and `--wait`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from dramatiq import Broker, Worker
from dramatiq.brokers.stub import StubBroker
from sqlalchemy.engine import Engine

from dispatcher.delivery.control import get, is_held
from dispatcher.delivery.status import outstanding
from dispatcher.hold import held_pending


class _HoldCheck:
    """Whether all that is left of a campaign are deliveries its channels hold back
    (SMS waiting for the send window, or paused for the account): nothing to wait for
    then. Read at most once a second."""

    def __init__(self, engine: Engine, campaign_id: int) -> None:
        self.engine = engine
        self.campaign_id = campaign_id
        self.next_check = 0.0

    def only_held_left(self, left: int) -> bool:
        if left == 0 or time.monotonic() < self.next_check:
            return False
        self.next_check = time.monotonic() + 1.0
        return held_pending(self.engine, self.campaign_id) >= left


def run_inline(
    broker: Broker,
    engine: Engine,
    campaign_id: int,
    *,
    threads: int = 8,
    on_tick: Callable[[int], None] | None = None,
    stop: Callable[[int], str | None] | None = None,
) -> str | None:
    """Start an in-process Worker and return once the queues are drained and the
    campaign has nothing outstanding, or is paused or cancelled, or has only SMS left
    that wait for the send window or a resume (they stay pending).

    `stop(left)` is asked at every tick; a reason from it ends the run at once (what
    is left stays pending, for `campaign resume`) and is returned.
    """
    assert isinstance(broker, StubBroker)
    held = _HoldCheck(engine, campaign_id)
    worker = Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        while True:
            left = outstanding(engine, campaign_id)
            if on_tick:
                on_tick(left)
            reason = stop(left) if stop else None
            if reason is not None:
                return reason
            if _drained(broker) and (
                left == 0 or is_held(get(engine, campaign_id)) or held.only_held_left(left)
            ):
                break  # done, or paused/cancelled/held: what is left stays pending
            if worker.consumers and not any(
                t.is_alive() for t in worker.consumers.values()
            ):  # pragma: no cover - a dead worker would otherwise hang us
                raise RuntimeError("the in-process worker stopped")
            time.sleep(0.05)
        worker.join()
    finally:
        worker.stop()
    return None


def _drained(broker: StubBroker) -> bool:
    return all(q.unfinished_tasks == 0 for q in broker.queues.values())


def wait_for(engine: Engine, campaign_id: int, on_tick: Callable[[int], None]) -> None:
    """Poll the database until the campaign has nothing outstanding, or is paused or
    cancelled, or has only held SMS left (Redis mode)."""
    held = _HoldCheck(engine, campaign_id)
    while True:
        left = outstanding(engine, campaign_id)
        on_tick(left)
        if left == 0 or is_held(get(engine, campaign_id)) or held.only_held_left(left):
            return
        time.sleep(0.5)
