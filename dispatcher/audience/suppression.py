"""The suppression list: addresses that get nothing more on a channel.

Rows are keyed by the address key (`dispatcher.audience.addresses`), not by member, so
an opt-out, a hard bounce or a complaint stops every member with that address, those
imported later included, and survives the erasure of the member who caused it. The
consent checks at expansion (`suppressed`) and at send time (`suppressed_flag`, read
with the delivery) consult it. Only `lift` (an explicit re-subscribe) removes a row.
When an address's suppression starts or ends, each member with it who is opted in on
the channel gets a consent event: the shop's feed shows a suppression that reaches a
member through a shared address (or a bounce) as it shows an opt-out.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    delete,
    exists,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection

from dispatcher.audience.addresses import AddressKeys
from dispatcher.channels import SPECS
from dispatcher.store.db import insert_or_ignore
from dispatcher.store.models import (
    Channel,
    ConsentEvent,
    ConsentSource,
    Member,
    Suppression,
    SuppressionReason,
    utcnow,
)

_S = Suppression.__table__  # type: ignore[attr-defined]
_M = Member.__table__  # type: ignore[attr-defined]
_E = ConsentEvent.__table__  # type: ignore[attr-defined]
# channel -> the member column holding that channel's address key
KEY_COLUMNS = {Channel(name): spec.key for name, spec in SPECS.items()}
ADDRESS_COLUMNS = {Channel(name): spec.address for name, spec in SPECS.items()}
OPT_IN_COLUMNS = {Channel(name): spec.opt_in for name, spec in SPECS.items()}


def reason_of(source: ConsentSource) -> SuppressionReason:
    """The suppression reason an opt-out from `source` records."""
    if source is ConsentSource.BOUNCE:
        return SuppressionReason.BOUNCE
    if source is ConsentSource.COMPLAINT:
        return SuppressionReason.COMPLAINT
    return SuppressionReason.OPTOUT


def suppress(
    conn: Connection,
    address_key: str,
    channel: Channel,
    reason: SuppressionReason,
    source: ConsentSource,
    *,
    now: Any = None,
) -> bool:
    """Suppress an address on a channel; True if it was not already (the first reason
    stays). Inside the caller's transaction."""
    stmt = (
        insert_or_ignore(conn, _S)
        .values(
            address_key=address_key,
            channel=str(channel),
            reason=str(reason),
            source=str(source),
            created_at=now or utcnow(),
        )
        .on_conflict_do_nothing()
        .returning(_S.c.id)
    )
    if conn.execute(stmt).first() is None:
        return False
    _record_reach(conn, address_key, channel, False, source, now or utcnow())
    return True


def suppress_member(
    conn: Connection, member_id: int, channel: Channel, source: ConsentSource, now: Any
) -> None:
    """Suppress the member's address on `channel` (nothing if it has no key yet), as
    one `INSERT ... SELECT` from the member row."""
    key = _M.c[KEY_COLUMNS[channel]]
    chosen = select(
        key,
        literal(str(channel)),
        literal(str(reason_of(source))),
        literal(str(source)),
        literal(now, type_=_S.c.created_at.type),
    ).where(_M.c.id == member_id, key.is_not(None))
    stmt = (
        insert_or_ignore(conn, _S)
        .from_select(["address_key", "channel", "reason", "source", "created_at"], chosen)
        .on_conflict_do_nothing()
    )
    if conn.execute(stmt).rowcount:
        member_key = select(key).where(_M.c.id == member_id).scalar_subquery()
        _record_reach(conn, member_key, channel, False, source, now)


def lift_member(
    conn: Connection,
    member_id: int,
    channel: Channel,
    source: ConsentSource,
    now: Any = None,
    *,
    besides: int | None = None,
) -> int:
    """Remove the suppression of the member's address on `channel` (a re-subscribe
    from `source`); `besides`: a member who recorded their own opt-in."""
    key = select(_M.c[KEY_COLUMNS[channel]]).where(_M.c.id == member_id).scalar_subquery()
    lifted = int(
        conn.execute(
            delete(_S).where(_S.c.channel == str(channel), _S.c.address_key == key)
        ).rowcount
    )
    if lifted:
        _record_reach(conn, key, channel, True, source, now or utcnow(), besides=besides)
    return lifted


def _record_reach(
    conn: Connection,
    key: Any,
    channel: Channel,
    opted_in: bool,
    source: ConsentSource,
    now: Any,
    *,
    besides: int | None = None,
) -> None:
    """A consent event for every member with the address `key` (a value or a scalar
    subquery) who is opted in on `channel` (but `besides`): the suppression starts
    (`opted_in` False) or ends for them."""
    chosen = select(
        _M.c.id,
        literal(str(channel)),
        literal(opted_in, type_=_E.c.opted_in.type),
        literal(str(source)),
        literal(now, type_=_E.c.at.type),
    ).where(_M.c[KEY_COLUMNS[channel]] == key, _M.c[OPT_IN_COLUMNS[channel]] == true())
    if besides is not None:
        chosen = chosen.where(_M.c.id != besides)
    conn.execute(
        insert(_E).from_select(["member_id", "channel", "opted_in", "source", "at"], chosen)
    )


def lift(conn: Connection, address_key: str, channel: Channel) -> bool:
    """Remove an address's suppression on `channel`; True if there was one."""
    stmt = delete(_S).where(_S.c.address_key == address_key, _S.c.channel == str(channel))
    return bool(conn.execute(stmt).rowcount)


def is_suppressed(conn: Connection, address_key: str | None, channel: Channel) -> bool:
    if address_key is None:
        return False
    stmt = select(_S.c.id).where(_S.c.address_key == address_key, _S.c.channel == str(channel))
    return conn.execute(stmt).first() is not None


def suppressed(channel: Channel) -> ColumnElement[bool]:
    """SQL: the member row's address on `channel` is suppressed (for expansion)."""
    key = _M.c[KEY_COLUMNS[channel]]
    return exists(select(_S.c.id).where(_S.c.address_key == key, _S.c.channel == str(channel)))


def suppressed_flag(channel_column: Any) -> ColumnElement[bool]:
    """SQL, with a delivery row: its member's address on its channel is suppressed."""
    key = case(*((channel_column == name, _M.c[spec.key]) for name, spec in SPECS.items()))
    return exists(select(_S.c.id).where(_S.c.address_key == key, _S.c.channel == channel_column))


_FILL = {
    channel: update(_M)
    .where(_M.c.id == bindparam("member_id"))
    .values({KEY_COLUMNS[channel]: bindparam("key")})
    for channel in KEY_COLUMNS
}


def fill_missing_keys(conn: Connection, keys: AddressKeys) -> int:
    """Compute the address keys of members that have an address but no key yet
    (members written before keys existed, or by a path that had no key); how many."""
    filled = 0
    for channel, key_name in KEY_COLUMNS.items():
        address = _M.c[ADDRESS_COLUMNS[channel]]
        rows = conn.execute(
            select(_M.c.id, address).where(
                and_(_M.c[key_name].is_(None), address.is_not(None), address != "")
            )
        ).all()
        if rows:
            conn.execute(
                _FILL[channel],
                [{"member_id": mid, "key": keys.of(channel, value)} for mid, value in rows],
            )
            filled += len(rows)
            _suppress_sticky(conn, channel)
    return filled


def _suppress_sticky(conn: Connection, channel: Channel) -> None:
    """Suppress the addresses of members whose sticky opt-out predates address keys
    (a database upgraded from before suppression existed)."""
    source = _M.c["email_optout_source" if channel is Channel.EMAIL else "sms_optout_source"]
    key = _M.c[KEY_COLUMNS[channel]]
    reason = case(
        (source == str(ConsentSource.BOUNCE), str(SuppressionReason.BOUNCE)),
        (source == str(ConsentSource.COMPLAINT), str(SuppressionReason.COMPLAINT)),
        else_=str(SuppressionReason.OPTOUT),
    )
    chosen = select(
        key, literal(str(channel)), reason, source, literal(utcnow(), type_=_S.c.created_at.type)
    ).where(key.is_not(None), source.is_not(None))
    conn.execute(
        insert_or_ignore(conn, _S)
        .from_select(["address_key", "channel", "reason", "source", "created_at"], chosen)
        .on_conflict_do_nothing()
    )
