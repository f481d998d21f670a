"""A delivery's states, every allowed move between them, and the one statement of each.

    pending -> sending -> sent | failed        pending -> skipped  (unreachable, cancelled, erased)
    sending -> pending  (handed back: a transient failure, or the lease ran out)
    failed  -> pending  (`retry-failed`)       failed -> sent  (the provider had it after all)

Each move is a conditional `UPDATE ... WHERE status = <from>`: a duplicate job, a second
scheduler or a racing pause finds no row to move. No other module writes
`delivery.status`; `groupcommit.py` only batches these statements. Every move also
moves `delivery_count` (per campaign, channel and status), in its transaction, by what
it moved: one upsert row per count, however many deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Update, bindparam, case, select, update
from sqlalchemy.engine import Connection

from dispatcher.channels import spec_of
from dispatcher.hold import Hold
from dispatcher.store import counts
from dispatcher.store.models import (
    Campaign,
    Channel,
    Delivery,
    DeliveryStatus,
    FailureKind,
    Member,
)

__all__ = [
    "CLAIM",
    "FAIL",
    "RELEASE",
    "SENT",
    "SKIP",
    "FailureKind",
    "Loaded",
    "Move",
    "Moved",
    "Where",
    "cancel_pending",
    "claim_statement",
    "count_moved",
    "found_sent",
    "moment",
    "move_statement",
    "reclaim",
    "retries_exhausted",
    "retry_failed",
    "skip_member_pending",
]

_T = Delivery.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Loaded:
    delivery: Delivery
    member: Member
    campaign: Campaign
    # The member's address is on the suppression list for the delivery's channel.
    suppressed: bool = False
    # The campaign's hold on the delivery's channel (paused, waiting for the window).
    hold: Hold | None = None

    def unreachable(self, channel: str) -> str | None:
        """Why the member is not to get this channel now (the send-time consent check:
        opted out, no address, suppressed address); None when reachable."""
        reason = spec_of(channel).unreachable(self.member)
        if reason is not None:
            return reason
        return "address suppressed" if self.suppressed else None


class Move(StrEnum):
    """The moves an actor makes through `groupcommit` (each: from -> to)."""

    CLAIM = "claim"  # pending -> sending (its statement: `claim_statement`)
    SKIP = "skip"  # pending -> skipped
    SENT = "sent"  # sending -> sent
    FAIL = "fail"  # sending -> failed
    RELEASE = "release"  # sending -> pending


CLAIM, SKIP, SENT, FAIL, RELEASE = Move.CLAIM, Move.SKIP, Move.SENT, Move.FAIL, Move.RELEASE

# (from, to, the values every such move sets)
_MOVES: dict[Move, tuple[DeliveryStatus, DeliveryStatus, dict[str, Any]]] = {
    Move.CLAIM: (DeliveryStatus.PENDING, DeliveryStatus.SENDING, {}),
    Move.SKIP: (DeliveryStatus.PENDING, DeliveryStatus.SKIPPED, {}),
    Move.SENT: (
        DeliveryStatus.SENDING,
        DeliveryStatus.SENT,
        {"error_code": None, "error_message": None, "failure_kind": None},
    ),
    Move.FAIL: (DeliveryStatus.SENDING, DeliveryStatus.FAILED, {}),
    Move.RELEASE: (DeliveryStatus.SENDING, DeliveryStatus.PENDING, {"failure_kind": None}),
}
_STATEMENTS: dict[tuple[Move, tuple[str, ...]], Update] = {}


def source(move: Move) -> DeliveryStatus:
    """The status a delivery must have for `move` to move it."""
    return _MOVES[move][0]


def target(move: Move) -> DeliveryStatus:
    """The status `move` gives a delivery."""
    return _MOVES[move][1]


def move_statement(move: Move, keys: tuple[str, ...]) -> Update:
    """`move` for one delivery, as an executemany statement: parameters `b_id`, `b_now`
    and `b_<key>` for each of `keys` (the values the caller sets besides the status)."""
    stmt = _STATEMENTS.get((move, keys))
    if stmt is None:
        src, dst, fixed = _MOVES[move]
        values: dict[str, Any] = {k: v for k, v in fixed.items() if k not in keys}
        values.update({k: bindparam(f"b_{k}") for k in keys})
        if "provider_id" in keys:  # a member erased while it was sending: no provider id
            values["provider_id"] = case(
                (_T.c.member_id.is_(None), None), else_=bindparam("b_provider_id")
            )
        values.setdefault("updated_at", bindparam("b_now"))
        stmt = (
            update(_T)
            .where(_T.c.id == bindparam("b_id"), _T.c.status == src)
            .values(status=dst, **values)
        )
        _STATEMENTS[(move, keys)] = stmt
    return stmt


def moved_ids(conn: Connection, move: Move, ids: set[int], when: datetime) -> set[int]:
    """Which of `ids` this transaction moved with `move` (stamped `when`)."""
    return set(
        conn.execute(
            select(_T.c.id).where(
                _T.c.id.in_(ids), _T.c.status == target(move), _T.c.updated_at == when
            )
        ).scalars()
    )


_CLAIM = (  # built once: a statement built per cycle costs more than it runs for
    update(_T)
    .where(_T.c.id.in_(bindparam("ids", expanding=True)), _T.c.status == DeliveryStatus.PENDING)
    .values(status=DeliveryStatus.SENDING, attempts=_T.c.attempts + 1, updated_at=bindparam("now"))
    .returning(_T.c.id, _T.c.campaign_id, _T.c.channel)
)


def claim_statement() -> Update:
    """pending -> sending for the ids `ids` (at `now`), returning the ids that moved
    with their campaign and channel."""
    return _CLAIM


# -- moves made outside the actors: one statement each --


def cancel_pending(conn: Connection, campaign_id: int, reason: str, now: datetime) -> int:
    """pending -> skipped for every pending delivery of a cancelled campaign."""
    moved: counts.Deltas = {}
    total = 0
    for channel in Channel:  # a channel at a time: its count is the statement's rowcount
        n = int(
            conn.execute(
                update(_T)
                .where(
                    _T.c.campaign_id == campaign_id,
                    _T.c.channel == str(channel),
                    _T.c.status == DeliveryStatus.PENDING,
                )
                .values(status=DeliveryStatus.SKIPPED, error_message=reason[:500], updated_at=now)
            ).rowcount
        )
        counts.delta(moved, campaign_id, str(channel), DeliveryStatus.PENDING, -n, None)
        counts.delta(moved, campaign_id, str(channel), DeliveryStatus.SKIPPED, n, now)
        total += n
    counts.add(conn, moved)
    return total


def skip_member_pending(conn: Connection, member_id: int, reason: str, now: datetime) -> int:
    """pending -> skipped for a member's pending deliveries (erasure)."""
    return _counted(
        conn,
        update(_T)
        .where(_T.c.member_id == member_id, _T.c.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.SKIPPED, error_message=reason[:500], updated_at=now),
        DeliveryStatus.PENDING,
        DeliveryStatus.SKIPPED,
    )


def reclaim(conn: Connection, delivery_id: int, claimed_before: datetime, now: datetime) -> bool:
    """sending -> pending for a delivery claimed before `claimed_before` (the lease)."""
    stmt = (
        update(_T)
        .where(
            _T.c.id == delivery_id,
            _T.c.status == DeliveryStatus.SENDING,
            _T.c.updated_at < claimed_before,
        )
        .values(
            status=DeliveryStatus.PENDING,
            error_message="lease expired (worker lost while sending)",
            updated_at=now,
        )
    )
    return _counted(conn, stmt, DeliveryStatus.SENDING, DeliveryStatus.PENDING) == 1


def retry_failed(conn: Connection, ids: list[int], now: datetime) -> int:
    """failed -> pending for `ids` (whose retries ran out). `provider_status`: what the
    provider said of the failed attempt is not the new attempt's."""
    stmt = (
        update(_T)
        .where(_T.c.id.in_(ids), _T.c.status == DeliveryStatus.FAILED)
        .values(
            status=DeliveryStatus.PENDING,
            failure_kind=None,
            provider_status=None,
            updated_at=now,
        )
    )
    return _counted(conn, stmt, DeliveryStatus.FAILED, DeliveryStatus.PENDING)


def found_sent(
    conn: Connection, delivery_id: int, provider_id: str, provider_status: int | None, now: datetime
) -> bool:
    """failed -> sent: the provider had accepted the message after all."""
    stmt = (
        update(_T)
        .where(_T.c.id == delivery_id, _T.c.status == DeliveryStatus.FAILED)
        .values(
            status=DeliveryStatus.SENT,
            provider_id=provider_id,
            provider_status=provider_status,
            error_code=None,
            error_message=None,
            failure_kind=None,
            updated_at=now,
        )
    )
    return _counted(conn, stmt, DeliveryStatus.FAILED, DeliveryStatus.SENT) == 1


# -- the counts: `delivery_count` follows every move, in the move's transaction --


Where = dict[int, tuple[int, str]]  # delivery id -> (campaign id, channel)
Moved = tuple[Move, int, datetime | None]  # a move made, of which delivery, its moment
WHERE_KEPT = 100_000  # `Where` entries a group commit keeps (forgotten: read again)


def moment(move: Move, values: dict[str, Any], now: datetime) -> datetime | None:
    """The report's moment of a delivery `move` gives an outcome (with `values`, at
    `now`): `coalesce(sent_at, updated_at)` as the statement writes it; else None."""
    if target(move) not in counts.OUTCOMES:
        return None
    at: datetime = values.get("sent_at") or values.get("updated_at") or now
    return at


def count_moved(conn: Connection, moved: list[Moved], where: Where) -> None:
    """The counts of the moves the group commit made, one upsert row per count: each
    delivery's campaign and channel from `where` (those it lacks read in one query)."""
    missing = [i for _move, i, _at in moved if i not in where]
    if missing:
        rows = conn.execute(
            select(_T.c.id, _T.c.campaign_id, _T.c.channel).where(_T.c.id.in_(missing))
        )
        where.update({i: (campaign_id, channel) for i, campaign_id, channel in rows})
    groups: dict[tuple[Move, int, str], list[datetime | None]] = {}
    for move, delivery_id, at in moved:
        # A delivery sending has one more move to come: its place is kept till then.
        campaign_id, channel = where[delivery_id] if move is CLAIM else where.pop(delivery_id)
        moments = groups.get((move, campaign_id, channel))
        if moments is None:
            moments = groups[(move, campaign_id, channel)] = []
        moments.append(at)
    deltas: counts.Deltas = {}
    for (move, campaign_id, channel), moments in groups.items():
        src, dst, _values = _MOVES[move]
        counts.delta(deltas, campaign_id, channel, src, -len(moments), None)
        if dst in counts.OUTCOMES:
            counts.delta_outcomes(deltas, campaign_id, channel, dst, moments)  # type: ignore[arg-type]
        else:
            counts.delta(deltas, campaign_id, channel, dst, len(moments), None)
    counts.add(conn, deltas)
    if len(where) > WHERE_KEPT:  # loaded and never moved (a duplicate job, a held one)
        where.clear()


def _counted(conn: Connection, stmt: Update, src: DeliveryStatus, dst: DeliveryStatus) -> int:
    """Run the move `stmt` (src -> dst), add what it moved to the counts; how many. A move
    out of an outcome takes it from the minute of its moment, read (and locked) first."""
    before: dict[int, datetime] = {}
    if src in counts.OUTCOMES and stmt.whereclause is not None:
        before = {
            i: at
            for i, at in conn.execute(
                select(_T.c.id, counts.moment()).where(stmt.whereclause).with_for_update()
            )
        }
    moved: counts.Deltas = {}
    done = 0
    returning = stmt.returning(_T.c.id, _T.c.campaign_id, _T.c.channel, counts.moment())
    for delivery_id, campaign_id, channel, at in conn.execute(returning):
        counts.delta(moved, campaign_id, channel, src, -1, before.get(delivery_id))
        counts.delta(moved, campaign_id, channel, dst, 1, at)
        done += 1
    counts.add(conn, moved)
    return done


def retries_exhausted() -> Any:
    """The condition of a failed delivery whose transient failures used up the retries:
    the only failures `retry-failed` re-queues and `sms sync` looks up."""
    return (_T.c.status == DeliveryStatus.FAILED) & (
        _T.c.failure_kind == FailureKind.RETRIES_EXHAUSTED
    )
