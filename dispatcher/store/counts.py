"""`delivery_count`: how many of a campaign's deliveries of a channel are in each status
(the outcomes also per minute, with their first and last moment).

Written only with the moves that change a delivery's status (`dispatcher.delivery.state`)
and the expansion's insert, in their transaction, and read instead of counting the
deliveries: progress in one indexed query, and the report's chart, however large the
campaign. Every writer adds to the rows in key order, so two transactions never wait
for each other's rows in a circle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Insert,
    Integer,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.engine import Connection

from dispatcher.store.db import insert_or_ignore
from dispatcher.store.models import Delivery, DeliveryCount, DeliveryStatus

__all__ = [
    "OUTCOMES",
    "Deltas",
    "Moves",
    "add",
    "add_inserted",
    "add_moved",
    "delta",
    "minute_of",
    "moment",
    "of_campaigns",
    "per_minute",
    "recount",
]

_T = Delivery.__table__  # type: ignore[attr-defined]
_N = DeliveryCount.__table__  # type: ignore[attr-defined]
_KEY = ("campaign_id", "channel", "status", "minute")
OUTCOMES = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)

# (campaign id, channel, status, minute) -> (n to add, the moment of those added or None)
Deltas = dict[tuple[int, str, str, int], tuple[int, datetime | None]]
Moves = dict[tuple[DeliveryStatus, DeliveryStatus], set[int]]  # (from, to) -> ids moved


def minute_of(moment: datetime) -> int:
    """The `minute` of an outcome at `moment` (UTC if naive, as SQLite gives it back)."""
    at = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(at.timestamp() // 60)


def add(conn: Connection, deltas: Deltas) -> None:
    """Add `deltas` to the counts: one upsert row per count (zeros left out)."""
    rows = [
        {
            "campaign_id": c,
            "channel": ch,
            "status": st,
            "minute": m,
            "n": n,
            "first": at,
            "last": at,
        }
        for (c, ch, st, m), (n, at) in sorted(deltas.items())
        if n
    ]
    if rows:
        conn.execute(_upsert(conn, insert_or_ignore(conn, _N).values(rows)))


def delta(
    deltas: Deltas, campaign_id: int, channel: str, status: str, n: int, at: datetime | None
) -> None:
    """Add to `deltas` `n` deliveries (-n: taken away) of `status`; an outcome's at the
    moment `at` (the one moment of all the deltas a writer adds)."""
    outcome = status in OUTCOMES and at is not None
    key = (campaign_id, channel, str(status), minute_of(at) if outcome and at else 0)
    deltas[key] = (deltas.get(key, (0, None))[0] + n, at if outcome and n > 0 else None)


def add_inserted(conn: Connection, campaign_id: int, channel: str, n: int) -> None:
    """`n` new pending deliveries of the campaign's `channel` (the expansion's insert)."""
    deltas: Deltas = {}
    delta(deltas, campaign_id, channel, DeliveryStatus.PENDING, n, None)
    add(conn, deltas)


def add_moved(conn: Connection, moved: Moves) -> None:
    """The counts of the deliveries this transaction moved, `{(from, to): ids}` (`from`
    pending or sending), in one statement: it reads the ids' campaigns, channels and
    moments and adds -1 at `from` and +1 at `to`, one upsert row per count however
    many ids."""
    moves = tuple(sorted(m for m, ids in moved.items() if ids))
    if not moves:
        return
    stmt = _ADD_MOVED.get((conn.dialect.name, moves))
    if stmt is None:
        stmt = _ADD_MOVED[(conn.dialect.name, moves)] = _add_moved_statement(conn, moves)
    conn.execute(stmt, {f"ids{k}": list(moved[m]) for k, m in enumerate(moves)})


_ADD_MOVED: dict[tuple[str, tuple[tuple[DeliveryStatus, DeliveryStatus], ...]], Insert] = {}


def _no_moment() -> Any:
    return cast(null(), DateTime(timezone=True))


def moment() -> Any:
    """The SQL of a delivery's moment in the report: when it was sent, else its last change."""
    return func.coalesce(_T.c.sent_at, _T.c.updated_at)


def _epoch_minute(conn: Connection) -> Any:
    """The SQL of `minute_of(coalesce(sent_at, updated_at))`."""
    if conn.dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", moment()) / 60), Integer)
    return cast(func.strftime("%s", moment()), Integer) // 60


def _add_moved_statement(
    conn: Connection, moves: Sequence[tuple[DeliveryStatus, DeliveryStatus]]
) -> Insert:
    parts = []
    for k, (src, dst) in enumerate(moves):
        if src in OUTCOMES:
            raise ValueError(f"{src} -> {dst}: a move out of an outcome is counted by `add`")
        ids = _T.c.id.in_(bindparam(f"ids{k}", expanding=True))
        minute = _epoch_minute(conn) if dst in OUTCOMES else literal(0)
        at = moment() if dst in OUTCOMES else _no_moment()
        to = (_T.c.campaign_id, _T.c.channel, minute)
        parts.append(
            select(
                *to[:2],
                literal(str(dst)).label("status"),
                minute.label("minute"),
                func.count().label("n"),
                func.min(at).label("first"),
                func.max(at).label("last"),
            )
            .where(ids)
            .group_by(*to)
        )
        parts.append(
            select(
                _T.c.campaign_id,
                _T.c.channel,
                literal(str(src)).label("status"),
                literal(0).label("minute"),
                (-func.count()).label("n"),
                _no_moment().label("first"),
                _no_moment().label("last"),
            )
            .where(ids)
            .group_by(_T.c.campaign_id, _T.c.channel)
        )
    deltas = union_all(*parts).subquery("deltas")
    total = func.sum(deltas.c.n)
    key = [deltas.c.campaign_id, deltas.c.channel, deltas.c.status, deltas.c.minute]
    rows = (
        select(*key, total, func.min(deltas.c.first), func.max(deltas.c.last))
        .group_by(*key)
        .having(total != 0)
        .order_by(*key)
    )
    return _upsert(
        conn, insert_or_ignore(conn, _N).from_select([*_KEY, "n", "first", "last"], rows)
    )


def _upsert(conn: Connection, stmt: Any) -> Insert:
    """`stmt` (an INSERT into `delivery_count`) adding to a count that exists."""
    least, greatest = (
        (func.least, func.greatest) if conn.dialect.name == "postgresql" else (func.min, func.max)
    )
    new = stmt.excluded

    def either(pick: Any, old: Any, came: Any) -> Any:  # NULL: no moment (yet)
        return pick(func.coalesce(old, came), func.coalesce(came, old))

    result: Insert = stmt.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={
            "n": _N.c.n + new.n,
            "first": either(least, _N.c.first, new.first),
            "last": either(greatest, _N.c.last, new.last),
        },
    )
    return result


def of_campaigns(conn: Connection, ids: Iterable[int]) -> dict[int, dict[tuple[str, str], int]]:
    """`{campaign id: {(channel, status): n}}` of `ids`: one indexed query."""
    out: dict[int, dict[tuple[str, str], int]] = {}
    wanted = list(ids)
    if not wanted:
        return out
    for campaign_id, channel, status, n in conn.execute(
        select(_N.c.campaign_id, _N.c.channel, _N.c.status, func.sum(_N.c.n))
        .where(_N.c.campaign_id.in_(wanted))
        .group_by(_N.c.campaign_id, _N.c.channel, _N.c.status)
    ):
        out.setdefault(campaign_id, {})[(channel, status)] = int(n)
    return out


def per_minute(
    conn: Connection, campaign_id: int, channel: str
) -> list[tuple[str, int, int, datetime | None, datetime | None]]:
    """The campaign's outcomes of `channel` per minute: (status, minute, n, first, last)."""
    return [
        (status, int(minute), int(n), first, last)
        for status, minute, n, first, last in conn.execute(
            select(_N.c.status, _N.c.minute, _N.c.n, _N.c.first, _N.c.last).where(
                _N.c.campaign_id == campaign_id,
                _N.c.channel == channel,
                _N.c.status.in_([str(s) for s in OUTCOMES]),
                _N.c.n != 0,
            )
        )
    ]


def recount(conn: Connection, campaign_id: int) -> None:
    """The campaign's counts counted again from its deliveries (after rows written
    without the moves: a benchmark's seed, a repair)."""
    outcome = _T.c.status.in_([str(s) for s in OUTCOMES])
    minute = case((outcome, _epoch_minute(conn)), else_=0)
    at = case((outcome, moment()), else_=_no_moment())
    conn.execute(_N.delete().where(_N.c.campaign_id == campaign_id))
    conn.execute(
        _N.insert().from_select(
            [*_KEY, "n", "first", "last"],
            select(
                _T.c.campaign_id,
                _T.c.channel,
                _T.c.status,
                minute,
                func.count(),
                func.min(at),
                func.max(at),
            )
            .where(_T.c.campaign_id == campaign_id)
            .group_by(_T.c.campaign_id, _T.c.channel, _T.c.status, minute),
        )
    )
