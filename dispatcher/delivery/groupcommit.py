"""Group commit: the delivery steps (load, claim, record) of many worker threads, run by
one database thread per process in shared transactions, one commit per cycle.

A claim is still the conditional `UPDATE ... WHERE status = 'pending'`, and a caller
returns only once its change has committed. The email path asks from the event loop
(`begin_async`, `mark_sent_async`): one wake-up of the loop per cycle. A cycle that
fails as a whole is run again request by request, so one bad request fails only its
caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import configure_mappers

from dispatcher import hold
from dispatcher.audience.suppression import suppressed_flag
from dispatcher.delivery import state
from dispatcher.delivery.state import FailureKind, Loaded, Move
from dispatcher.store.models import Campaign, Delivery, Member, utcnow

log = logging.getLogger("dispatcher.delivery.groupcommit")

MAX_BATCH = 1000  # requests per cycle (SQLite allows 32,766 bound parameters)
WAIT_S = 300.0  # a caller gives up (and its job is retried) after this
IDLE_S = 5.0  # a connection unused this long goes back to the pool (which checks it)

_T = Delivery.__table__  # type: ignore[attr-defined]
_M = Member.__table__  # type: ignore[attr-defined]
_C = Campaign.__table__  # type: ignore[attr-defined]
_DELIVERY_KEYS = [c.key for c in _T.c]
_MEMBER_KEYS = [c.key for c in _M.c]
_CAMPAIGN_COLUMNS = [c for c in _C.c if c.key != "spec"]
_CAMPAIGN_KEYS = [c.key for c in _CAMPAIGN_COLUMNS]
_CAMPAIGN_AT = _DELIVERY_KEYS.index("campaign_id")
_LOAD = (
    select(*_T.c, *_M.c, suppressed_flag(_T.c.channel), *hold.COLUMNS)
    .join(_M, _M.c.id == _T.c.member_id)
    .outerjoin(hold.TABLE, hold.on_delivery(_T))
    .where(_T.c.id.in_(bindparam("ids", expanding=True)))
)
_CAMPAIGNS = select(*_CAMPAIGN_COLUMNS).where(_C.c.id.in_(bindparam("ids", expanding=True)))
_Model = TypeVar("_Model", Delivery, Member, Campaign)


@dataclass(slots=True)
class _Request:
    kind: str  # "load", "begin", "claim" or "move"
    delivery_id: int
    move: Move | None = None
    values: dict[str, Any] = field(default_factory=dict)
    future: Future[Any] = field(default_factory=Future)
    sendable: Callable[[Loaded], bool] | None = None  # "begin": claim it if this says so
    waiter: asyncio.Future[Any] | None = None  # asked from an event loop: settled there


class GroupCommit:
    """One database thread per process that batches `load`, `claim` and the moves."""

    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH) -> None:
        configure_mappers()  # model attributes read from `__dict__` need their mappers
        self.engine = engine
        self.max_batch = max_batch
        self._queue: list[_Request] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None  # the database thread's own, kept between cycles
        self._used_at = 0.0
        self._closed = False
        self.cycles = 0
        self.requests = 0
        self.loop_wakeups = 0  # callbacks scheduled on event loops (one per loop per cycle)
        self.loop_answers = 0  # requests answered through them

    # -- the delivery steps of `state`, without the engine --

    def load(self, delivery_id: int) -> Loaded | None:
        """The delivery with its member and campaign (its `spec` deferred), read now."""
        result: Loaded | None = self._call(_Request("load", delivery_id))
        return result

    def begin(
        self, delivery_id: int, sendable: Callable[[Loaded], bool]
    ) -> tuple[Loaded | None, bool]:
        """`load`, then `claim` in the same cycle if `sendable(loaded)`: one round trip.

        Returns what was loaded and whether this caller claimed it. `sendable` runs on
        the database thread, on the rows just read: it must be quick and not raise.
        """
        result: tuple[Loaded | None, bool] = self._call(
            _Request("begin", delivery_id, sendable=sendable)
        )
        return result

    async def begin_async(
        self, delivery_id: int, sendable: Callable[[Loaded], bool]
    ) -> tuple[Loaded | None, bool]:
        """`begin`, awaited on an event loop instead of blocking a thread."""
        result: tuple[Loaded | None, bool] = await self._await(
            _Request("begin", delivery_id, sendable=sendable)
        )
        return result

    async def mark_sent_async(self, delivery_id: int, **values: Any) -> bool:
        """`mark_sent`, awaited on an event loop: done once the change is committed."""
        return bool(await self._await(_Request("move", delivery_id, state.SENT, values)))

    def claim(self, delivery_id: int) -> bool:
        """pending -> sending. False when another job got there first."""
        return bool(self._call(_Request("claim", delivery_id)))

    def skip(self, delivery_id: int, reason: str) -> bool:
        """pending -> skipped."""
        return self._move(delivery_id, state.SKIP, error_message=reason[:500])

    def mark_sent(self, delivery_id: int, **values: Any) -> bool:
        """sending -> sent, with e.g. provider_id."""
        return self._move(delivery_id, state.SENT, **values)

    def mark_failed(
        self, delivery_id: int, code: int | None, reason: str, kind: FailureKind
    ) -> bool:
        """sending -> failed, with the code, reason and kind of failure."""
        return self._move(delivery_id, state.FAIL, error_code=code,
                          error_message=reason[:500], failure_kind=str(kind))  # fmt: skip

    def release(self, delivery_id: int, code: int | None, reason: str) -> bool:
        """sending -> pending, after a transient failure, so the retry can claim it."""
        return self._move(delivery_id, state.RELEASE, error_code=code, error_message=reason[:500])

    def close(self) -> None:
        """Finish what was asked, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(30)

    # -- machinery --------------------------------------------------------------------------

    def _move(self, delivery_id: int, move: Move, **values: Any) -> bool:
        return bool(self._call(_Request("move", delivery_id, move, values)))

    def _call(self, request: _Request) -> Any:
        return self._submit(request).result(WAIT_S)

    async def _await(self, request: _Request) -> Any:
        request.waiter = asyncio.get_running_loop().create_future()
        self._submit(request)
        return await request.waiter

    def _submit(self, request: _Request) -> Future[Any]:
        with self._cond:
            if self._closed:
                raise RuntimeError("the group commit is closed")
            self._queue.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dispatcher-db", daemon=True)
                self._thread.start()
            self._cond.notify()
        return request.future

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
            if not batch:  # closed, and everything asked is done
                self._drop_connection()
                return
            try:
                self._cycle(batch)
            except Exception as exc:  # a bug: its callers raise it, the thread goes on
                self._settle(
                    [(request, None, exc) for request in batch if not request.future.done()]
                )

    def _cycle(self, batch: list[_Request]) -> None:
        self.cycles += 1
        self.requests += len(batch)
        try:
            try:
                kept = self._conn is not None
                conn = self._connection()
                results = run_batch(conn, batch)
            except DBAPIError as exc:
                if not (kept and exc.connection_invalidated):
                    raise
                # The kept connection died since the last cycle (nothing of this one
                # was committed): once more on a fresh one, as the pool's ping would.
                self._drop_connection()
                conn = self._connection()
                results = run_batch(conn, batch)
            conn.commit()
        except BaseException as exc:
            self._drop_connection()  # rolled back; the next cycle checks out a fresh one
            if not isinstance(exc, SQLAlchemyError | OSError):
                raise
            if len(batch) == 1:
                self._settle([(batch[0], None, exc)])
                return
            log.warning("group commit of %d requests failed (%s); one by one", len(batch), exc)
            for request in batch:
                self._cycle([request])
            return
        self._settle(
            [(request, result, None) for request, result in zip(batch, results, strict=True)]
        )

    def _connection(self) -> Connection:
        """The thread's connection, kept open between busy cycles: checking one out of the
        pool each cycle cost a round trip (the pool's liveness ping) per cycle. After a
        pause it goes back, and the pool checks the next one."""
        now = time.monotonic()
        if self._conn is not None and (self._conn.invalidated or now - self._used_at > IDLE_S):
            self._drop_connection()
        if self._conn is None:
            self._conn = self.engine.connect()
        self._used_at = now
        return self._conn

    def _settle(self, outcomes: list[tuple[_Request, Any, BaseException | None]]) -> None:
        wakeups, answers = _settle(outcomes)
        self.loop_wakeups += wakeups
        self.loop_answers += answers

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError, OSError):
                conn.close()


def _settle(outcomes: list[tuple[_Request, Any, BaseException | None]]) -> tuple[int, int]:
    """Each request's result or exception to its caller: a thread's future at once (a
    wake-up each), and everything asked from one event loop in one callback there (one
    wake-up of the loop per cycle, however many coroutines wait)."""
    on_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Request, Any, BaseException | None]]] = {}
    for outcome in outcomes:
        request, result, exc = outcome
        if exc is None:
            request.future.set_result(result)
        else:
            request.future.set_exception(exc)
        if request.waiter is not None:
            on_loop.setdefault(request.waiter.get_loop(), []).append(outcome)
    for loop, settled in on_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle_waiters, settled)
    return len(on_loop), sum(len(settled) for settled in on_loop.values())


def _settle_waiters(outcomes: list[tuple[_Request, Any, BaseException | None]]) -> None:
    for request, result, exc in outcomes:
        waiter = request.waiter
        assert waiter is not None
        if waiter.done():  # cancelled: its caller gave up
            continue
        if exc is None:
            waiter.set_result(result)
        else:
            waiter.set_exception(exc)


def run_batch(conn: Connection, batch: list[_Request]) -> list[Any]:
    """Every request of the batch on one connection, in one transaction; results in order."""
    now = utcnow()
    results: dict[int, Any] = {}  # index in batch -> result
    loads = [i for i, r in enumerate(batch) if r.kind in ("load", "begin")]
    found: dict[int, Loaded] = {}
    if loads:
        found = load_many(conn, {batch[i].delivery_id for i in loads})
        for i in loads:
            results[i] = found.get(batch[i].delivery_id)
    claims = [
        i
        for i, r in enumerate(batch)
        if r.kind == "claim"
        or (r.kind == "begin" and results[i] is not None and _sendable(r, results[i]))
    ]
    if claims:
        won = claim_many(conn, [batch[i].delivery_id for i in claims], now)
        for i in claims:
            # The same delivery claimed twice in one batch (a duplicate job): one wins.
            results[i] = batch[i].delivery_id in won
            won.discard(batch[i].delivery_id)
    for i, r in enumerate(batch):
        if r.kind == "begin":
            results[i] = (found.get(r.delivery_id), results[i] is True)
    # Grouped by move: `move_many` tells which rows moved by their status.
    groups: dict[tuple[Move, tuple[str, ...]], list[int]] = defaultdict(list)
    for i, r in enumerate(batch):
        if r.kind == "move":
            assert r.move is not None
            groups[(r.move, tuple(sorted(r.values)))].append(i)
    for (move, keys), members in groups.items():
        moved = move_many(conn, move, keys, [batch[i] for i in members], now)
        for i in members:
            results[i] = batch[i].delivery_id in moved
            moved.discard(batch[i].delivery_id)
    return [results[i] for i in range(len(batch))]


def _sendable(request: _Request, loaded: Loaded) -> bool:
    assert request.sendable is not None
    return request.sendable(loaded)


def _values(cls: type[_Model], keys: list[str], row: Any) -> _Model:
    """A model instance holding a row's values, built as the ORM builds one from a row
    (`__new__`, then the values into `__dict__`), less the ORM's session state: a
    detached, read-only value, as `delivery.load` returns (and a tenth of the ORM's
    cost per row)."""
    obj = cls.__new__(cls)
    obj.__dict__.update(zip(keys, row, strict=True))
    return obj


def load_many(conn: Connection, ids: set[int]) -> dict[int, Loaded]:
    """Deliveries with their member, campaign and the campaign's hold on the channel:
    two Core queries for all of them.

    The campaign's `spec` (its frozen files, the one large column) is left out: the
    runtime reads it once per process, when it compiles the campaign.
    """
    rows = conn.execute(_LOAD, {"ids": list(ids)}).all()
    if not rows:
        return {}
    campaigns = {
        row[0]: _values(Campaign, _CAMPAIGN_KEYS, row)
        for row in conn.execute(_CAMPAIGNS, {"ids": list({r[_CAMPAIGN_AT] for r in rows})})
    }
    out: dict[int, Loaded] = {}
    split, channel_at = len(_DELIVERY_KEYS), _DELIVERY_KEYS.index("channel")
    for row in rows:
        out[row[0]] = Loaded(
            delivery=_values(Delivery, _DELIVERY_KEYS, row[:split]),
            member=_values(Member, _MEMBER_KEYS, row[split:-3]),
            campaign=campaigns[row[_CAMPAIGN_AT]],
            suppressed=bool(row[-3]),
            hold=hold.from_row(row[channel_at], row[-2], row[-1]),
        )
    return out


def claim_many(conn: Connection, ids: list[int], now: Any) -> set[int]:
    """pending -> sending for all of them at once; the ids that moved."""
    return set(conn.execute(state.claim_statement(), {"ids": list(set(ids)), "now": now}).scalars())


def move_many(
    conn: Connection, move: Move, keys: tuple[str, ...], requests: list[_Request], now: Any
) -> set[int]:
    """`move` for each request (same value names), one executemany; the ids moved."""
    stmt = state.move_statement(move, keys)
    rows = [{"b_id": r.delivery_id, **{f"b_{k}": r.values[k] for k in keys}} for r in requests]
    if "updated_at" not in keys:
        for row in rows:
            row["b_now"] = now
    moved = conn.execute(stmt, rows).rowcount
    ids = {r.delivery_id for r in requests}
    if moved == len(rows) and len(ids) == len(rows):
        return ids
    # Some did not move (no longer in the move's source): find out which, exactly. Every
    # row this transaction moved carries its `now` (the write lock is still held).
    return state.moved_ids(conn, move, ids, requests[0].values.get("updated_at", now))
