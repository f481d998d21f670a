"""What the endpoint reads and writes: one member's consent on one channel.

The writes are `dispatcher.audience.consent.opt_out` and `resubscribe`, in one short
transaction each; a member whose consent would not change costs one read, no write.
These are blocking calls: `dispatcher.web.app` decides where they run.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dispatcher.audience.consent import opt_out, resubscribe
from dispatcher.audience.tokens import TokenClaims
from dispatcher.errors import TokenError
from dispatcher.masking import mask_email, mask_mobile
from dispatcher.store.models import Channel, ConsentSource, Member

_MEMBER: Table = Member.__table__  # type: ignore[attr-defined]
# Prepared once: a Core statement costs a quarter of an ORM query per request.
_LOOKUP = {
    channel: select(_MEMBER.c[address], _MEMBER.c[opted_in], _MEMBER.c[source]).where(
        _MEMBER.c.id == bindparam("member_id")
    )
    for channel, (address, opted_in, source) in {
        Channel.EMAIL: ("email", "email_opt_in", "email_optout_source"),
        Channel.SMS: ("mobile", "sms_opt_in", "sms_optout_source"),
    }.items()
}
_PING = select(_MEMBER.c.id).limit(1)


@dataclass(frozen=True, slots=True)
class Subscriber:
    """What the pages show of a member, for one channel: never the whole address."""

    address: str | None  # masked
    opted_in: bool
    sticky: bool  # opted out through the dispatcher (an import cannot undo it)


class WriteLock:
    """Hands SQLite's one write lock from one worker process to the next at once.

    A second SQLite writer polls with sleeps of 1, 2, 5, 10... ms (its busy handler) and,
    against a worker that writes again and again, can lose that race many times in a
    row. An exclusive `flock` on a file beside the database queues the workers' write
    transactions in the kernel instead. A no-op for other databases.
    """

    def __init__(self, engine: Engine) -> None:
        self._fd: int | None = None
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            try:
                self._fd = os.open(f"{database}-unsubscribe.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:  # no such folder: no database either, and every query says so
                self._fd = None

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._fd is None:
            yield
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read(conn: Connection, claims: TokenClaims) -> Subscriber:
    row = conn.execute(_LOOKUP[claims.channel], {"member_id": claims.member_id}).first()
    if row is None:
        raise TokenError("no such member")  # the same 400 page as a forged token
    value, is_in, sticky_source = row
    masked = None
    if value:
        masked = mask_email(value) if claims.channel is Channel.EMAIL else mask_mobile(value)
    return Subscriber(address=masked, opted_in=bool(is_in), sticky=sticky_source is not None)


def look_up(engine: Engine, claims: TokenClaims) -> Subscriber:
    """The member a genuine token names; TokenError if there is none. Writes nothing."""
    with engine.connect() as conn:
        return _read(conn, claims)


def unsubscribe(
    engine: Engine, lock: WriteLock, claims: TokenClaims, source: ConsentSource
) -> tuple[Subscriber, bool]:
    """Opt the member out of the token's channel; True if this changed their consent."""
    with Session(engine) as session:
        found = _read(session.connection(), claims)
        if not found.opted_in and found.sticky:
            return found, False
        with lock.held():
            changed = opt_out(
                session, claims.member_id, claims.channel, source, campaign_id=claims.campaign_id
            )
            session.commit()
        return found, changed


def undo(engine: Engine, lock: WriteLock, claims: TokenClaims) -> tuple[Subscriber, bool]:
    """Opt the member back in (source `link`); True if this changed their consent."""
    with Session(engine) as session:
        found = _read(session.connection(), claims)
        if found.opted_in and not found.sticky:
            return found, False
        with lock.held():
            changed = resubscribe(session, claims.member_id, claims.channel, ConsentSource.LINK)
            session.commit()
        return found, changed


def ping(engine: Engine) -> None:
    """Raise (a SQLAlchemyError) unless the database answers, with our schema in it."""
    with engine.connect() as conn:
        conn.execute(_PING)
