"""Consent: opt-outs and opt-ins on a channel and the rules every part follows (sticky
opt-outs, the address suppressed with them), the consent event log, and
`consent_changes`, the feed of both directions. README: "One person, one message, one
consent".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, false, insert, true, update
from sqlalchemy import select as core_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from dispatcher.audience.normalise import external_id_forms
from dispatcher.audience.suppression import lift_member, suppress_member
from dispatcher.channels import SPECS
from dispatcher.errors import NotFoundError
from dispatcher.store.db import session_scope
from dispatcher.store.models import Channel, ConsentEvent, ConsentSource, Member, utcnow

# channel -> (opt-in column, sticky opt-out source column)
CONSENT_COLUMNS = {Channel(name): (s.opt_in, s.optout_source) for name, s in SPECS.items()}


def subscribe(engine: Engine, external_id: str, channel: Channel) -> None:
    """Opt a member back in on `channel`, whatever opted them out (`members subscribe`).

    Clears the sticky opt-out source and records a `ConsentEvent` with source `cli`;
    does nothing when the member is already opted in. Raises `NotFoundError` for an
    unknown `external_id`.
    """
    set_consent(engine, external_id, channel, True, ConsentSource.CLI)


def set_consent(
    engine: Engine, external_id: str, channel: Channel, opt_in: bool, source: ConsentSource
) -> bool:
    """Opt a member out of `channel` (`opt_out`) or back in (`resubscribe`: undoes a
    sticky opt-out), by external id, in a transaction of its own; True if it changed.
    Raises `NotFoundError` for an unknown `external_id`."""
    with session_scope(engine) as session:
        member_id = session.exec(
            select(Member.id).where(col(Member.external_id).in_(external_id_forms(external_id)))
        ).first()
        if member_id is None:
            raise NotFoundError(f"no member with external_id {external_id!r}")
        if opt_in:
            return resubscribe(session, member_id, channel, source)
        return opt_out(session, member_id, channel, source)


def _statements(channel: Channel) -> dict[str, Any]:
    """The conditional updates of one channel, built once (statement building is most
    of a consent write's CPU); values are bound per call."""
    opt_name, source_name = CONSENT_COLUMNS[channel]
    opt, source = _MEMBER.c[opt_name], _MEMBER.c[source_name]
    by_id = _MEMBER.c.id == bindparam("member_id")
    stamp: dict[str, Any] = {"updated_at": bindparam("now")}
    return {
        "out": update(_MEMBER).where(by_id, opt == true()).values({opt_name: False, **stamp}),
        "out_sticky": update(_MEMBER)
        .where(by_id, opt == true())
        .values({opt_name: False, source_name: bindparam("source"), **stamp}),
        "stick": update(_MEMBER)
        .where(by_id, source.is_(None))
        .values({source_name: bindparam("source")}),
        "in": update(_MEMBER)
        .where(by_id, opt == false())
        .values({opt_name: True, source_name: None, **stamp}),
        "unstick": update(_MEMBER).where(by_id, source.is_not(None)).values({source_name: None}),
    }


_MEMBER = Member.__table__  # type: ignore[attr-defined]
_STATEMENTS = {channel: _statements(channel) for channel in CONSENT_COLUMNS}
_EXISTS = select(_MEMBER.c.id).where(_MEMBER.c.id == bindparam("member_id"))
_RECORD = insert(ConsentEvent.__table__)  # type: ignore[attr-defined]


def opt_out(
    session: Session,
    member_id: int,
    channel: Channel,
    source: ConsentSource,
    *,
    at: datetime | None = None,
    campaign_id: int | None = None,
) -> bool:
    """Opt a member out of `channel`; return True if they were opted in.

    Every source but `import` is sticky: it is stored in the member's
    `<channel>_optout_source`, so that no import opts them back in. Records a
    `ConsentEvent` for the change. Idempotent: for a member already opted out it
    records nothing and returns False, except that a sticky source now replaces a
    missing one (a member opted out by an import who then unsubscribes through a
    link stays out whatever the next import says).

    Works inside the caller's transaction (nothing is committed here); the update is
    one conditional statement, so two simultaneous opt-outs record one event. `at` is
    when the member asked (default: now). Raises `NotFoundError` for an unknown member.
    """
    channel, source = Channel(channel), ConsentSource(source)
    statements, conn, now = _STATEMENTS[channel], session.connection(), at or utcnow()
    params = {"member_id": member_id, "now": now, "source": source.value}
    sticky = source is not ConsentSource.IMPORT
    if conn.execute(statements["out_sticky" if sticky else "out"], params).rowcount:
        _record(conn, member_id, channel, False, source, now, campaign_id=campaign_id)
        if sticky:  # the address too: every member with it, now and imported later
            suppress_member(conn, member_id, channel, source, now)
        return True
    _require_member(conn, member_id)
    if sticky and conn.execute(statements["stick"], params).rowcount:
        suppress_member(conn, member_id, channel, source, now)
    return False


def resubscribe(
    session: Session,
    member_id: int,
    channel: Channel,
    source: ConsentSource,
    *,
    at: datetime | None = None,
) -> bool:
    """Opt a member back in on `channel` (the unsubscribe page's undo); True if changed.

    Clears the sticky opt-out source and records a `ConsentEvent` with `source`.
    Idempotent: returns False and records nothing for a member already opted in.
    Works inside the caller's transaction; `at` as for `opt_out`. Raises `NotFoundError`
    for an unknown member.
    """
    channel, source = Channel(channel), ConsentSource(source)
    statements, conn, now = _STATEMENTS[channel], session.connection(), at or utcnow()
    params = {"member_id": member_id, "now": now}
    if conn.execute(statements["in"], params).rowcount:
        _record(conn, member_id, channel, True, source, now)
        lift_member(conn, member_id, channel, source, now, besides=member_id)
        return True
    _require_member(conn, member_id)
    conn.execute(statements["unstick"], params)  # an opted-in member has no sticky source
    lift_member(conn, member_id, channel, source, now)  # the address's, whatever its reason
    return False


def list_optouts(engine: Engine, since: datetime | None = None) -> list[dict[str, str]]:
    """Every opt-out event (any source), oldest first, for the shop to mirror.

    Rows are `{"external_id", "channel", "at", "source"}`; `at` is ISO 8601 in UTC
    (`2025-03-01T08:30:00.123456+00:00`). `since` keeps events at or after that
    moment (inclusive, so passing the last `at` seen repeats that event rather than
    risking to miss one); a naive `since` is taken as UTC.
    """
    stmt = (
        select(
            col(Member.external_id),
            col(ConsentEvent.channel),
            col(ConsentEvent.at),
            col(ConsentEvent.source),
        )
        .join(Member, col(Member.id) == col(ConsentEvent.member_id))
        .where(col(ConsentEvent.opted_in) == false())
        .order_by(col(ConsentEvent.at), col(ConsentEvent.id))
    )
    if since is not None:
        since = _utc(since)
        stmt = stmt.where(col(ConsentEvent.at) >= since)
    with session_scope(engine) as session:
        rows = session.exec(stmt).all()
    return [
        {
            "external_id": external_id,
            "channel": channel,
            "at": _utc(at).isoformat(),
            "source": source,
        }
        for external_id, channel, at, source in rows
    ]


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One change of a member's consent, as the shop's feed shows it."""

    id: int  # the event's id: the feed's position
    external_id: str | None  # None: the member was erased since
    channel: str
    opt_in: bool
    source: str
    at: datetime  # UTC

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "external_id": self.external_id,
            "channel": self.channel,
            "opt_in": self.opt_in,
            "source": self.source,
            "at": self.at.isoformat(),
        }


# An id missing from the events read (a transaction that took its id but has not
# committed yet, or rolled back) holds the feed back this long after the next event.
SETTLE = timedelta(seconds=30)
_EVENT = ConsentEvent.__table__  # type: ignore[attr-defined]
_CHANGES = (
    core_select(
        _EVENT.c.id,
        _MEMBER.c.external_id,
        _EVENT.c.channel,
        _EVENT.c.opted_in,
        _EVENT.c.source,
        _EVENT.c.at,
    )
    .select_from(_EVENT.outerjoin(_MEMBER, _MEMBER.c.id == _EVENT.c.member_id))
    .order_by(_EVENT.c.id)
)


def consent_changes(
    engine: Engine,
    *,
    since: datetime | None = None,
    after_id: int | None = None,
    limit: int | None = None,
) -> list[ConsentChange]:
    """Every consent change (opt-outs and re-subscribes, any source), oldest first.

    `after_id` resumes after the last change seen (its `id`); `since` keeps changes
    at or after that moment (naive = UTC); `limit` caps the list. An erased
    member's events stay, with `external_id` None.

    A list that stops before `limit` is not the end: on PostgreSQL, which hands out
    ids before the commit, an id missing after `after_id` (a transaction not yet
    committed) stops the list there until it appears, or until `SETTLE` after the
    next event, when it is taken as rolled back. So resuming from the last id never
    skips an event committed late. (SQLite's one writer at a time commits in id order.)
    """
    stmt = _CHANGES
    if after_id is not None:
        stmt = stmt.where(_EVENT.c.id > after_id)
    if since is not None:
        stmt = stmt.where(_EVENT.c.at >= _utc(since))
    if limit is not None:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    settled = utcnow() - SETTLE
    changes: list[ConsentChange] = []
    gaps = engine.dialect.name == "postgresql" and since is None
    expected = after_id + 1 if after_id is not None and gaps else None
    for event_id, external_id, channel, opted_in, source, at in rows:
        at = _utc(at)
        if expected is not None and event_id != expected and at > settled:
            break  # a gap: an earlier event may still commit
        expected = event_id + 1
        changes.append(ConsentChange(event_id, external_id, channel, opted_in, source, at))
    return changes


def _utc(at: datetime) -> datetime:
    """An aware UTC datetime (SQLite hands back naive UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _require_member(conn: Connection, member_id: int) -> None:
    if conn.execute(_EXISTS, {"member_id": member_id}).first() is None:
        raise NotFoundError(f"no member with id {member_id}")


def _record(
    conn: Connection,
    member_id: int,
    channel: Channel,
    opted_in: bool,
    source: ConsentSource,
    at: datetime,
    *,
    campaign_id: int | None = None,
) -> None:
    conn.execute(
        _RECORD,
        {
            "member_id": member_id,
            "channel": channel.value,
            "opted_in": opted_in,
            "source": source.value,
            "at": at,
            "campaign_id": campaign_id,
        },
    )


def flag_mobile_invalid(engine: Engine, member_id: int, mobile: str) -> None:
    """Flag the number the SMS provider rejected for good (not a number changed since)."""
    with engine.begin() as conn:
        conn.execute(
            update(Member)
            .where(col(Member.id) == member_id, col(Member.mobile) == mobile)
            .values(mobile_invalid=True, updated_at=utcnow())
        )
