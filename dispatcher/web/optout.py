"""What the endpoint reads and writes: one member's consent on one channel.

The writes are `dispatcher.audience.consent.opt_out` and `resubscribe`, in one short
transaction each; a member whose consent would not change costs one read, no write.
On SQLite, a write that meets the lock held elsewhere is kept in a `Journal` and
applied once it frees. These are blocking calls: `dispatcher.web.app` runs them on
threads, never on the event loop.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC

from sqlalchemy import Connection, Table, bindparam, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from dispatcher.audience.consent import opt_out, resubscribe
from dispatcher.audience.tokens import TokenClaims
from dispatcher.errors import NotFoundError, TokenError
from dispatcher.masking import mask_email, mask_mobile
from dispatcher.store.models import Channel, ConsentEvent, ConsentSource, Member, utcnow
from dispatcher.web.journal import Change, Journal

log = logging.getLogger("dispatcher.web")
SQLITE_BUSY, SQLITE_LOCKED = 5, 6
FLUSH_WAIT_MS = 100  # how long a retry of the journal waits for SQLite's lock

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


def _apply(session: Session, changes: list[Change], *, replay: bool = False) -> list[bool]:
    """Write `changes` in order and commit; whether each changed consent. A change of
    a member who no longer exists is dropped.

    `replay`: the changes come from the journal, some perhaps committed already (a
    crash between the commit and the journal's removal). A change is skipped when the
    member's consent on that channel changed after it was asked: re-applying it would
    undo the newer change (an old opt-out over the member's later opt-in).
    """
    results = []
    for c in changes:
        if replay and _superseded(session.connection(), c):
            results.append(False)
            continue
        try:
            if c.opted_in:
                changed = resubscribe(session, c.member_id, c.channel, c.source, at=c.at)
            else:
                changed = opt_out(
                    session, c.member_id, c.channel, c.source, at=c.at, campaign_id=c.campaign_id
                )
            results.append(changed)
        except NotFoundError:
            results.append(False)
    session.commit()
    return results


_EVENT: Table = ConsentEvent.__table__  # type: ignore[attr-defined]
_LAST_CHANGE = select(func.max(_EVENT.c.at)).where(
    _EVENT.c.member_id == bindparam("member_id"), _EVENT.c.channel == bindparam("channel")
)


def _superseded(conn: Connection, change: Change) -> bool:
    """True when the member's consent on the change's channel changed after it."""
    last = conn.execute(
        _LAST_CHANGE, {"member_id": change.member_id, "channel": change.channel.value}
    ).scalar()
    if last is None:
        return False
    last = last.replace(tzinfo=UTC) if last.tzinfo is None else last.astimezone(UTC)
    asked = change.at.replace(tzinfo=UTC) if change.at.tzinfo is None else change.at
    return bool(last > asked)


def _busy(exc: OperationalError) -> bool:
    """True for SQLite's "database is locked" (another connection holds the write lock)."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)


@contextmanager
def _brief_wait(conn: Connection) -> Iterator[None]:
    """On this connection SQLite waits at most `FLUSH_WAIT_MS` for the lock (a retry
    comes soon), so that a retry never holds the opt-outs asked meanwhile back."""
    usual = int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one())
    conn.exec_driver_sql(f"PRAGMA busy_timeout = {min(usual, FLUSH_WAIT_MS)}")
    conn.commit()
    try:
        yield
    finally:
        conn.rollback()
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {usual}")
        conn.commit()


class ConsentWriter:
    """The opt-outs and undos of one server process. Blocking: run it on one thread.

    A change is written at once when the database lets it, within the engine's busy
    timeout. On SQLite, one that meets the write lock held longer than that is kept in
    the `Journal` and counts as done; so does every change asked while the journal
    holds something (the order is kept, and nobody waits for a lock known to be held
    by someone else). `flush`, called every second or so, applies what is kept.
    """

    def __init__(self, engine: Engine, lock: WriteLock, journal: Journal | None) -> None:
        self.engine = engine
        self.lock = lock
        self.journal = journal

    def unsubscribe(self, claims: TokenClaims, source: ConsentSource) -> tuple[Subscriber, bool]:
        """Opt the member out of the token's channel; True if this changes their consent."""
        with Session(self.engine) as session:
            found = self._with_kept(_read(session.connection(), claims), claims)
            if not found.opted_in and found.sticky:
                return found, False
            change = Change(
                claims.member_id, claims.channel, False, source, utcnow(), claims.campaign_id
            )
            return found, self._write(session, change, found)

    def undo(self, claims: TokenClaims) -> tuple[Subscriber, bool]:
        """Opt the member back in (source `link`); True if this changes their consent."""
        with Session(self.engine) as session:
            found = self._with_kept(_read(session.connection(), claims), claims)
            if found.opted_in and not found.sticky:
                return found, False
            change = Change(claims.member_id, claims.channel, True, ConsentSource.LINK, utcnow())
            return found, self._write(session, change, found)

    def look_up(self, claims: TokenClaims) -> Subscriber:
        """The member a genuine token names, with the changes the journal keeps for
        them; TokenError if there is none. Writes nothing, takes no lock."""
        return self._with_kept(look_up(self.engine, claims), claims)

    def flush(self) -> int:
        """Apply the changes kept in the journal, if the lock is free; how many."""
        if self.journal is None or not self.journal.pending():
            return 0
        with self.lock.held():
            kept = self.journal.read()
            try:
                with self.engine.connect() as conn, _brief_wait(conn), Session(bind=conn) as s:
                    _apply(s, kept, replay=True)
            except OperationalError as exc:
                if not _busy(exc):
                    raise
                return 0
            self.journal.clear()
        if kept:
            log.info("%d consent changes kept while the database was locked: recorded", len(kept))
        return len(kept)

    def _with_kept(self, found: Subscriber, claims: TokenClaims) -> Subscriber:
        """`found` as it will be once the journal's changes are recorded."""
        if self.journal is None or not self.journal.pending():
            return found
        same = (claims.member_id, claims.channel)
        kept = [c for c in self.journal.read() if (c.member_id, c.channel) == same]
        if not kept:
            return found
        return replace(found, opted_in=kept[-1].opted_in, sticky=not kept[-1].opted_in)

    def _write(self, session: Session, change: Change, found: Subscriber) -> bool:
        """Record `change` (or keep it); whether it changes `found`'s consent."""
        with self.lock.held():
            if self.journal is not None and self.journal.pending():
                self.journal.append(change)  # behind the others: `flush` keeps the order
                return found.opted_in != change.opted_in
            try:
                [changed] = _apply(session, [change])
            except OperationalError as exc:
                if self.journal is None or not _busy(exc):
                    raise
                self.journal.append(change)
                log.warning(
                    "member %s: %s of %s kept until the database is unlocked",
                    change.member_id,
                    "opt-in" if change.opted_in else "opt-out",
                    change.channel.value,
                )
                return found.opted_in != change.opted_in
            return changed


def ping(engine: Engine) -> None:
    """Raise (a SQLAlchemyError) unless the database answers, with our schema in it."""
    with engine.connect() as conn:
        conn.execute(_PING)
