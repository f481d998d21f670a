"""`delivery_count`: how many of a campaign's deliveries of a channel are in each status.

Written only with the moves that change a delivery's status (`dispatcher.delivery.state`)
and the expansion's insert, in their transaction, and read instead of counting the
deliveries: progress in one indexed query however large the campaign. Every writer adds
to the rows in key order, so two transactions never wait for each other's row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Insert, bindparam, func, literal, select, union_all
from sqlalchemy.engine import Connection

from dispatcher.store.db import insert_or_ignore
from dispatcher.store.models import Delivery, DeliveryCount, DeliveryStatus

__all__ = ["Deltas", "Moves", "add", "add_inserted", "add_moved", "of_campaigns", "recount"]

_T = Delivery.__table__  # type: ignore[attr-defined]
_N = DeliveryCount.__table__  # type: ignore[attr-defined]
_KEY = ("campaign_id", "channel", "status")

Deltas = Counter[tuple[int, str, str]]  # (campaign id, channel, status) -> n to add
Moves = dict[tuple[DeliveryStatus, DeliveryStatus], set[int]]  # (from, to) -> ids moved


def add(conn: Connection, deltas: Deltas) -> None:
    """Add `deltas` to the counts: one upsert row per count (zeros left out)."""
    rows = [
        {"campaign_id": c, "channel": ch, "status": st, "n": n}
        for (c, ch, st), n in sorted(deltas.items())
        if n
    ]
    if rows:
        conn.execute(_upsert(insert_or_ignore(conn, _N).values(rows)))


def add_inserted(conn: Connection, campaign_id: int, channel: str, n: int) -> None:
    """`n` new pending deliveries of the campaign's `channel` (the expansion's insert)."""
    add(conn, Counter({(campaign_id, channel, str(DeliveryStatus.PENDING)): n}))


def add_moved(conn: Connection, moved: Moves) -> None:
    """The counts of the deliveries this transaction moved, `{(from, to): ids}`, in one
    statement: it finds the ids' campaigns and channels and adds -1 at `from` and +1 at
    `to`, one upsert row per (campaign, channel, status) however many ids."""
    moves = tuple(sorted(m for m, ids in moved.items() if ids))
    if not moves:
        return
    stmt = _ADD_MOVED.get((conn.dialect.name, moves))
    if stmt is None:
        stmt = _ADD_MOVED[(conn.dialect.name, moves)] = _add_moved_statement(conn, moves)
    conn.execute(stmt, {f"ids{k}": list(moved[m]) for k, m in enumerate(moves)})


_ADD_MOVED: dict[tuple[str, tuple[tuple[DeliveryStatus, DeliveryStatus], ...]], Insert] = {}


def _add_moved_statement(
    conn: Connection, moves: Sequence[tuple[DeliveryStatus, DeliveryStatus]]
) -> Insert:
    parts = []
    for k, (src, dst) in enumerate(moves):
        moved = (
            select(_T.c.campaign_id, _T.c.channel, func.count().label("n"))
            .where(_T.c.id.in_(bindparam(f"ids{k}", expanding=True)))
            .group_by(_T.c.campaign_id, _T.c.channel)
            .cte(f"moved{k}")
        )
        for status, sign in ((dst, 1), (src, -1)):
            parts.append(
                select(
                    moved.c.campaign_id,
                    moved.c.channel,
                    literal(str(status)).label("status"),
                    (moved.c.n * sign).label("n"),
                )
            )
    deltas = union_all(*parts).subquery("deltas")
    total = func.sum(deltas.c.n)
    key = [deltas.c.campaign_id, deltas.c.channel, deltas.c.status]
    rows = select(*key, total).group_by(*key).having(total != 0).order_by(*key)
    return _upsert(insert_or_ignore(conn, _N).from_select([*_KEY, "n"], rows))


def _upsert(stmt: Any) -> Insert:
    """`stmt` (an INSERT into `delivery_count`) adding to a count that exists."""
    result: Insert = stmt.on_conflict_do_update(
        index_elements=list(_KEY), set_={"n": _N.c.n + stmt.excluded.n}
    )
    return result


def of_campaigns(conn: Connection, ids: Iterable[int]) -> dict[int, dict[tuple[str, str], int]]:
    """`{campaign id: {(channel, status): n}}` of `ids`: one indexed query."""
    out: dict[int, dict[tuple[str, str], int]] = {}
    wanted = list(ids)
    if not wanted:
        return out
    for campaign_id, channel, status, n in conn.execute(
        select(_N.c.campaign_id, _N.c.channel, _N.c.status, _N.c.n).where(
            _N.c.campaign_id.in_(wanted)
        )
    ):
        out.setdefault(campaign_id, {})[(channel, status)] = int(n)
    return out


def recount(conn: Connection, campaign_id: int) -> None:
    """The campaign's counts counted again from its deliveries (after rows written
    without the moves: a benchmark's seed, a repair)."""
    conn.execute(_N.delete().where(_N.c.campaign_id == campaign_id))
    conn.execute(
        _N.insert().from_select(
            [*_KEY, "n"],
            select(_T.c.campaign_id, _T.c.channel, _T.c.status, func.count())
            .where(_T.c.campaign_id == campaign_id)
            .group_by(_T.c.campaign_id, _T.c.channel, _T.c.status),
        )
    )
