"""A delivery's states, every allowed move between them, and the one statement of each.

    pending -> sending -> sent | failed        pending -> skipped  (unreachable, cancelled, erased)
    sending -> pending  (handed back: a transient failure, or the lease ran out)
    failed  -> pending  (`retry-failed`)       failed -> sent  (the provider had it after all)

Each move is a conditional `UPDATE ... WHERE status = <from>`: a duplicate job, a second
scheduler or a racing pause finds no row to move. No other module writes
`delivery.status`; `groupcommit.py` only batches these statements.
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
from dispatcher.store.models import Campaign, Delivery, DeliveryStatus, FailureKind, Member

__all__ = [
    "FAIL",
    "RELEASE",
    "SENT",
    "SKIP",
    "FailureKind",
    "Loaded",
    "Move",
    "cancel_pending",
    "claim_statement",
    "found_sent",
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

    SKIP = "skip"  # pending -> skipped
    SENT = "sent"  # sending -> sent
    FAIL = "fail"  # sending -> failed
    RELEASE = "release"  # sending -> pending


SKIP, SENT, FAIL, RELEASE = Move.SKIP, Move.SENT, Move.FAIL, Move.RELEASE

# (from, to, the values every such move sets)
_MOVES: dict[Move, tuple[DeliveryStatus, DeliveryStatus, dict[str, Any]]] = {
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
    .returning(_T.c.id)
)


def claim_statement() -> Update:
    """pending -> sending for the ids `ids` (at `now`), returning the ids that moved."""
    return _CLAIM


# -- moves made outside the actors: one statement each --


def cancel_pending(conn: Connection, campaign_id: int, reason: str, now: datetime) -> int:
    """pending -> skipped for every pending delivery of a cancelled campaign."""
    return int(
        conn.execute(
            update(_T)
            .where(_T.c.campaign_id == campaign_id, _T.c.status == DeliveryStatus.PENDING)
            .values(status=DeliveryStatus.SKIPPED, error_message=reason[:500], updated_at=now)
        ).rowcount
    )


def skip_member_pending(conn: Connection, member_id: int, reason: str, now: datetime) -> int:
    """pending -> skipped for a member's pending deliveries (erasure)."""
    return int(
        conn.execute(
            update(_T)
            .where(_T.c.member_id == member_id, _T.c.status == DeliveryStatus.PENDING)
            .values(status=DeliveryStatus.SKIPPED, error_message=reason[:500], updated_at=now)
        ).rowcount
    )


def reclaim(conn: Connection, delivery_id: int, claimed_before: datetime, now: datetime) -> bool:
    """sending -> pending for a delivery claimed before `claimed_before` (the lease)."""
    result = conn.execute(
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
    return bool(result.rowcount == 1)


def retry_failed(conn: Connection, ids: list[int], now: datetime) -> int:
    """failed -> pending for `ids` (whose retries ran out). `provider_status`: what the
    provider said of the failed attempt is not the new attempt's."""
    return int(
        conn.execute(
            update(_T)
            .where(_T.c.id.in_(ids), _T.c.status == DeliveryStatus.FAILED)
            .values(
                status=DeliveryStatus.PENDING,
                failure_kind=None,
                provider_status=None,
                updated_at=now,
            )
        ).rowcount
    )


def found_sent(
    conn: Connection, delivery_id: int, provider_id: str, provider_status: int | None, now: datetime
) -> bool:
    """failed -> sent: the provider had accepted the message after all."""
    result = conn.execute(
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
    return bool(result.rowcount == 1)


def retries_exhausted() -> Any:
    """The condition of a failed delivery whose transient failures used up the retries:
    the only failures `retry-failed` re-queues and `sms sync` looks up."""
    return (_T.c.status == DeliveryStatus.FAILED) & (
        _T.c.failure_kind == FailureKind.RETRIES_EXHAUSTED
    )
