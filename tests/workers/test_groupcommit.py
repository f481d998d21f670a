"""Group commit: moves of different kinds in one batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dispatcher import delivery
from dispatcher.groupcommit import GroupCommit, _Request, run_batch
from dispatcher.models import DeliveryStatus
from tests.factories import Harness, add_member, write_campaign


def move(delivery_id: int, target: DeliveryStatus) -> _Request:
    values = {"status": target, "error_code": 451, "error_message": "busy"}
    return _Request("move", delivery_id, str(DeliveryStatus.SENDING), values)


def test_releases_and_failures_in_one_batch_report_each_row(
    pipeline: Callable[..., Harness], tmp_path: Path
) -> None:
    h = pipeline()
    for i in range(3):
        add_member(h.engine, f"C{i}")
    h.send(write_campaign(tmp_path / "c"))
    ids = [d.id for d in h.deliveries()]
    assert None not in ids
    released, failed, not_sending = (i for i in ids if i is not None)
    assert delivery.claim(h.engine, released) and delivery.claim(h.engine, failed)
    GroupCommit(h.engine)  # configures the mappers, as the runtime does

    batch = [
        move(released, DeliveryStatus.PENDING),
        move(failed, DeliveryStatus.FAILED),
        move(not_sending, DeliveryStatus.FAILED),  # still pending: does not move
    ]
    with h.engine.connect() as conn:
        results = run_batch(conn, batch)
        conn.commit()

    assert results == [True, True, False]
    status = {d.id: d.status for d in h.deliveries()}
    assert [status[released], status[failed], status[not_sending]] == [
        "pending",
        "failed",
        "pending",
    ]
