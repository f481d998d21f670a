"""Group commit: moves of different kinds in one batch; callers on an event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

from dispatcher.delivery import groupcommit, state
from dispatcher.delivery.groupcommit import GroupCommit, _Request, run_batch
from dispatcher.delivery.state import FailureKind, Loaded, Move
from tests.factories import Harness, add_member, write_campaign


def campaign_of(
    pipeline: Callable[..., Harness], tmp_path: Path, members: int
) -> tuple[Harness, list[int]]:
    """A harness with a sent email campaign of `members` members; its delivery ids."""
    h = pipeline()
    for i in range(members):
        add_member(h.engine, f"C{i}")
    h.send(write_campaign(tmp_path / "c"))
    ids = [d.id for d in h.deliveries() if d.id is not None]
    assert len(ids) == members
    return h, ids


def move(delivery_id: int, move: Move) -> _Request:
    values: dict[str, object] = {"error_code": 451, "error_message": "busy"}
    if move is state.FAIL:
        values["failure_kind"] = FailureKind.RETRIES_EXHAUSTED
    return _Request("move", delivery_id, move, values)


def test_releases_and_failures_in_one_batch_report_each_row(
    pipeline: Callable[..., Harness], tmp_path: Path
) -> None:
    h, (released, failed, not_sending) = campaign_of(pipeline, tmp_path, 3)
    db = h.runtime.deliveries
    assert db.claim(released) and db.claim(failed)

    batch = [
        move(released, state.RELEASE),
        move(failed, state.FAIL),
        move(not_sending, state.FAIL),  # still pending: does not move
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


def _sendable(loaded: Loaded) -> bool:
    return True


def test_coroutines_on_one_loop_are_answered_together_and_one_claim_wins(
    pipeline: Callable[..., Harness], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h, ids = campaign_of(pipeline, tmp_path, 40)
    db = GroupCommit(h.engine)

    async def both() -> tuple[list[tuple[Any, bool]], list[bool]]:
        # Every delivery asked for twice (a duplicate job): one of the two claims wins.
        begun = await asyncio.gather(*(db.begin_async(i, _sendable) for i in ids + ids))
        sent = await asyncio.gather(*(db.mark_sent_async(i, provider_id=f"<{i}@x>") for i in ids))
        return begun, sent

    try:
        begun, sent = asyncio.run(both())
    finally:
        db.close()
    claimed_by = {i: 0 for i in ids}
    for i, (loaded, claimed) in zip(ids + ids, begun, strict=True):
        assert loaded is not None and loaded.delivery.id == i and loaded.member.email
        claimed_by[i] += claimed
    assert set(claimed_by.values()) == {1}
    assert sent == [True] * len(ids)
    assert {d.status for d in h.deliveries()} == {"sent"}
    # One callback on the loop per database cycle, not one per request.
    assert db.loop_answers == 3 * len(ids) and db.loop_wakeups == db.cycles < 3 * len(ids)


def test_a_database_error_reaches_the_awaiting_coroutine(
    pipeline: Callable[..., Harness], tmp_path: Path
) -> None:
    h, [delivery_id] = campaign_of(pipeline, tmp_path, 1)
    broken = create_engine("sqlite:///" + str(tmp_path / "missing" / "no.db"))
    db = GroupCommit(broken)
    try:
        with pytest.raises(SQLAlchemyError):
            asyncio.run(db.begin_async(delivery_id, _sendable))
    finally:
        db.close()
    assert h.deliveries()[0].status == "pending"


def test_a_caller_that_gave_up_does_not_disturb_the_others(
    pipeline: Callable[..., Harness], tmp_path: Path
) -> None:
    h, (first, second) = campaign_of(pipeline, tmp_path, 2)
    db = GroupCommit(h.engine)

    async def one_cancelled() -> tuple[Any, bool]:
        with db._cond:  # the database thread waits: both requests go in one cycle
            gone = asyncio.ensure_future(db.begin_async(first, _sendable))
            kept = asyncio.ensure_future(db.begin_async(second, _sendable))
            await asyncio.sleep(0)  # both asked
            assert len(db._queue) == 2
            gone.cancel()
        return await asyncio.wait_for(kept, 10)

    try:
        loaded, claimed = asyncio.run(one_cancelled())
    finally:
        db.close()
    assert loaded is not None and loaded.delivery.id == second and claimed
    status = {d.id: d.status for d in h.deliveries()}
    assert status == {first: "sending", second: "sending"}  # the cycle ran both claims


def test_a_connection_lost_between_cycles_is_replaced_unnoticed(
    pipeline: Callable[..., Harness], tmp_path: Path, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("needs a server to drop the connection")
    h, (first, second, third) = campaign_of(pipeline, tmp_path, 3)
    db = GroupCommit(h.engine)
    try:
        assert db.claim(first)
        assert db._conn is not None  # kept for the next cycle
        pid = db._conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        db._conn.rollback()
        with h.engine.connect() as admin:  # as a server restart would
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        assert db.claim(second)  # once more on a fresh connection, as a ping would
        assert db.claim(third)
    finally:
        db.close()
    assert {d.id: d.status for d in h.deliveries()} == {
        first: "sending",
        second: "sending",
        third: "sending",
    }


def test_a_failed_cycle_leaves_no_transaction_behind_on_the_kept_connection(
    pipeline: Callable[..., Harness], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h, (first, second) = campaign_of(pipeline, tmp_path, 2)
    real = groupcommit.run_batch
    calls: list[int] = []

    def fails_once(conn: Any, batch: list[_Request], *where: Any) -> list[Any]:
        calls.append(len(batch))
        if len(calls) == 1:  # a statement error: on PostgreSQL the transaction is aborted
            conn.exec_driver_sql("SELECT no_such_column FROM delivery")
        return real(conn, batch, *where)

    monkeypatch.setattr(groupcommit, "run_batch", fails_once)
    db = GroupCommit(h.engine)
    try:
        with pytest.raises(SQLAlchemyError):
            db.claim(first)
        assert db.claim(second)  # not "current transaction is aborted"
        assert db.claim(first)
    finally:
        db.close()
