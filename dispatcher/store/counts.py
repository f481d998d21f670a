"""`delivery_count`: how many of a campaign's deliveries of a channel are in each status
(the outcomes also per minute, with their first and last moment).

Written only with the moves that change a delivery's status (`dispatcher.delivery.state`)
and the expansion's insert, in their transaction, and read instead of counting the
deliveries: progress in one indexed query, and the report's chart, however large the
campaign. Every writer adds to the rows in key order, so two transactions never wait
for each other's rows in a circle.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    null,
    select,
)
from sqlalchemy.engine import Connection

from dispatcher.store.db import insert_or_ignore
from dispatcher.store.models import Delivery, DeliveryCount, DeliveryStatus

__all__ = [
    "OUTCOMES",
    "Deltas",
    "add",
    "add_inserted",
    "delta",
    "delta_outcomes",
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

# (campaign id, channel, status, minute) -> (n to add, first and last moment of those added)
Deltas = dict[tuple[int, str, str, int], tuple[int, datetime | None, datetime | None]]


def minute_of(moment: datetime) -> int:
    """The `minute` of an outcome at `moment` (UTC if naive, as SQLite gives it back)."""
    at = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(at.timestamp() // 60)


def add(conn: Connection, deltas: Deltas) -> None:
    """Add `deltas` to the counts: one upsert row per count (zeros left out), in key
    order, with one statement built once per database kind."""
    rows = [
        {"b_campaign_id": c, "b_channel": ch, "b_status": st, "b_minute": m, "b_n": n,
         "b_first": first, "b_last": last}
        for (c, ch, st, m), (n, first, last) in sorted(deltas.items())
        if n
    ]  # fmt: skip
    if not rows:
        return
    stmt = _ADD.get(conn.dialect.name)
    if stmt is None:
        values: dict[str, Any] = {k: bindparam(f"b_{k}") for k in (*_KEY, "n", "first", "last")}
        stmt = _ADD[conn.dialect.name] = _upsert(conn, insert_or_ignore(conn, _N).values(values))
    conn.execute(stmt, rows)


_ADD: dict[str, Insert] = {}


def delta(
    deltas: Deltas, campaign_id: int, channel: str, status: str, n: int, at: datetime | None
) -> None:
    """Add to `deltas` `n` deliveries (-n: taken away) of `status`; an outcome's at its
    moment `at` (that of the report: sent, else last changed)."""
    outcome = status in OUTCOMES and at is not None
    key = (campaign_id, channel, str(status), minute_of(at) if outcome and at else 0)
    total, first, last = deltas.get(key, (0, None, None))
    if outcome and n >= 0:
        first = at if first is None or (at and at < first) else first
        last = at if last is None or (at and at > last) else last
    deltas[key] = (total + n, first, last)


def delta_outcomes(
    deltas: Deltas, campaign_id: int, channel: str, status: str, moments: list[datetime]
) -> None:
    """Add to `deltas` one delivery of the outcome `status` at each of `moments` (a
    batch's: most often all in one minute, counted at once)."""
    first, last = min(moments), max(moments)
    if minute_of(first) != minute_of(last):
        for at in moments:
            delta(deltas, campaign_id, channel, status, 1, at)
        return
    delta(deltas, campaign_id, channel, status, len(moments), first)
    delta(deltas, campaign_id, channel, status, 0, last)


def add_inserted(conn: Connection, campaign_id: int, channel: str, n: int) -> None:
    """`n` new pending deliveries of the campaign's `channel` (the expansion's insert)."""
    deltas: Deltas = {}
    delta(deltas, campaign_id, channel, DeliveryStatus.PENDING, n, None)
    add(conn, deltas)


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
