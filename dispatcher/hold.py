"""A channel's own holds on a campaign, one row per (campaign, channel) in `campaign_hold`:
paused for the account (a reason), or waiting for the send window (its opening).

Which holds a channel may put is its spec's `holds`. Every reader and writer of the
table goes through here; each change is a conditional update, so processes acting at
once cannot undo each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from dispatcher.channels import HoldKind, spec_of
from dispatcher.definition.sendtime import as_utc
from dispatcher.store.db import insert_or_ignore
from dispatcher.store.models import CampaignHold, Delivery, DeliveryStatus

_H = CampaignHold.__table__  # type: ignore[attr-defined]
TABLE = _H
_D = Delivery.__table__  # type: ignore[attr-defined]
_ACTIVE = or_(_H.c.reason.is_not(None), _H.c.waiting_until.is_not(None))
# What the delivery load reads of its channel's hold (outer-joined with `on_delivery`).
COLUMNS = (_H.c.reason, _H.c.waiting_until)


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a campaign's deliveries on `channel` stay pending."""

    channel: str
    paused: str | None = None
    waiting_until: datetime | None = None  # aware, UTC


def fields(hold: Hold | None) -> dict[str, Any]:
    """The `paused` and `waiting_until` keys of a channel's status (None when free)."""
    waiting = hold.waiting_until if hold is not None else None
    return {
        "paused": hold.paused if hold is not None else None,
        "waiting_until": waiting.isoformat() if waiting is not None else None,
    }


def from_row(channel: str, reason: str | None, waiting_until: datetime | None) -> Hold | None:
    """The hold of a row read with `COLUMNS`; None when it holds nothing."""
    if reason is None and waiting_until is None:
        return None
    return Hold(channel, reason, as_utc(waiting_until) if waiting_until is not None else None)


def on_delivery(delivery: Any = _D) -> ColumnElement[bool]:
    """The join condition of a delivery row to its campaign's hold on its channel."""
    return and_(_H.c.campaign_id == delivery.c.campaign_id, _H.c.channel == delivery.c.channel)


# -- reading --------------------------------------------------------------------------------


def holds_of(conn: Connection | Session, campaign_id: int) -> dict[str, Hold]:
    """The campaign's holds, by channel (channels free to send are absent)."""
    return holds_for(conn, [campaign_id]).get(campaign_id, {})


def holds_for(
    conn: Connection | Session, campaign_ids: Iterable[int]
) -> dict[int, dict[str, Hold]]:
    """The holds of several campaigns: `{campaign id: {channel: Hold}}`."""
    ids = list(campaign_ids)
    out: dict[int, dict[str, Hold]] = {}
    if not ids:
        return out
    rows = conn.execute(
        select(_H.c.campaign_id, _H.c.channel, *COLUMNS).where(_H.c.campaign_id.in_(ids), _ACTIVE)
    ).all()
    for campaign_id, channel, reason, waiting in rows:
        hold = from_row(channel, reason, waiting)
        assert hold is not None
        out.setdefault(campaign_id, {})[channel] = hold
    return out


def held_pending(engine: Engine, campaign_id: int) -> int:
    """The campaign's pending deliveries on channels it holds (0 when none is held)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(_D.join(_H, on_delivery(_D)))
                .where(
                    _D.c.campaign_id == campaign_id, _D.c.status == DeliveryStatus.PENDING, _ACTIVE
                )
            ).scalar_one()
        )


def waiting(engine: Engine, channel: str) -> list[int]:
    """Campaigns whose `channel` waits for its send window (and is not paused)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(_H.c.campaign_id)
                .where(
                    _H.c.channel == str(channel),
                    _H.c.waiting_until.is_not(None),
                    _H.c.reason.is_(None),
                )
                .order_by(_H.c.campaign_id)
            ).scalars()
        )


# -- writing --------------------------------------------------------------------------------


def pause(engine: Engine, campaign_id: int, channel: str, reason: str) -> bool:
    """Stop the campaign's `channel` with `reason`; False if it was paused already."""
    _allowed(channel, HoldKind.PAUSE)
    with engine.begin() as conn:
        _ensure(conn, campaign_id, channel)
        return _set(conn, campaign_id, channel, _H.c.reason.is_(None), reason=reason[:500])


def resume(engine: Engine, campaign_id: int, channel: str) -> bool:
    """Clear the pause of the campaign's `channel`; False if it was not paused.

    The pending deliveries still need enqueueing (`campaign resume` does both)."""
    with engine.begin() as conn:
        return _set(conn, campaign_id, channel, _H.c.reason.is_not(None), reason=None)


def resume_all(engine: Engine, campaign_id: int) -> list[str]:
    """Clear the pause of every channel of the campaign; the channels it cleared."""
    with engine.begin() as conn:
        return list(
            conn.execute(
                update(_H)
                .where(_H.c.campaign_id == campaign_id, _H.c.reason.is_not(None))
                .values(reason=None)
                .returning(_H.c.channel)
            ).scalars()
        )


def wait(engine: Engine, campaign_id: int, channel: str, until: datetime) -> bool:
    """Record that the campaign's `channel` waits for `until` (the window's opening);
    False if that was recorded already."""
    _allowed(channel, HoldKind.WINDOW)
    stored = as_utc(until)
    with engine.begin() as conn:
        _ensure(conn, campaign_id, channel)
        changed = or_(_H.c.waiting_until.is_(None), _H.c.waiting_until != stored)
        return _set(conn, campaign_id, channel, changed, waiting_until=stored)


def stop_waiting(engine: Engine, campaign_id: int, channel: str) -> bool:
    """Clear the wait of the campaign's `channel`; False if another process did first."""
    with engine.begin() as conn:
        return _set(conn, campaign_id, channel, _H.c.waiting_until.is_not(None), waiting_until=None)


def forget(conn: Connection | Session, campaign_id: int) -> None:
    """Delete the campaign's holds (the campaign itself is being deleted)."""
    conn.execute(delete(_H).where(_H.c.campaign_id == campaign_id))


def _allowed(channel: str, kind: HoldKind) -> None:
    if kind not in spec_of(channel).holds:
        raise ValueError(f"the {channel} channel has no {kind} hold")


def _ensure(conn: Connection, campaign_id: int, channel: str) -> None:
    conn.execute(
        insert_or_ignore(conn, _H)
        .values(campaign_id=campaign_id, channel=str(channel))
        .on_conflict_do_nothing()
    )


def _set(
    conn: Connection, campaign_id: int, channel: str, when: ColumnElement[bool], **values: Any
) -> bool:
    result = conn.execute(
        update(_H)
        .where(_H.c.campaign_id == campaign_id, _H.c.channel == str(channel), when)
        .values(**values)
    )
    return bool(result.rowcount == 1)
