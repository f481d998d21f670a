"""Console staff: accounts with argon2 password hashes, sign-in with a lockout, and
server-side sessions (the cookie carries a random token; only its SHA-256 is stored).

Five wrong passwords for one account lock it for 15 minutes. Checking a name that
does not exist costs one hash too, and answers the same, so a stranger learns nothing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from dispatcher.errors import InputError, NotFoundError
from dispatcher.store.models import Staff, StaffRole, StaffSession, utcnow

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
IDLE = timedelta(hours=8)
MIN_PASSWORD = 10
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_HASHER = PasswordHasher()  # argon2id, the library's (RFC 9106) parameters
_DUMMY: dict[int, str] = {}  # a hash to check an unknown name against, per hasher
_UNKNOWN: dict[str, tuple[int, datetime | None]] = {}


@dataclass(frozen=True)
class StaffMember:
    """An account as the console and `staff list` see it (never its hash)."""

    id: int
    name: str
    role: StaffRole
    created_at: datetime
    locked_until: datetime | None = None


class SignIn:
    """How a sign-in went: `staff` set when it succeeded; `locked` when the account is
    (or just became) locked. A wrong name and a wrong password look the same."""

    def __init__(self, staff: StaffMember | None = None, *, locked: bool = False) -> None:
        self.staff = staff
        self.locked = locked


@dataclass(frozen=True)
class SessionInfo:
    """A live session: who, and the CSRF token of its forms."""

    staff: StaffMember
    csrf_token: str


def _member(row: Staff) -> StaffMember:
    assert row.id is not None
    return StaffMember(row.id, row.name, StaffRole(row.role), row.created_at, row.locked_until)


def use_hasher(hasher: PasswordHasher) -> PasswordHasher:
    """Hash new passwords with `hasher` (tests use cheap parameters); returns the one
    before. Hashes made with other parameters still verify, and are redone at sign-in."""
    global _HASHER
    previous, _HASHER = _HASHER, hasher
    return previous


def _dummy() -> str:
    if id(_HASHER) not in _DUMMY:
        _DUMMY[id(_HASHER)] = _HASHER.hash("not a password of anyone")
    return _DUMMY[id(_HASHER)]


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InputError(f"the password must be at least {MIN_PASSWORD} characters")


def add_staff(engine: Engine, name: str, role: StaffRole, password: str) -> StaffMember:
    """A new account; InputError for a bad or taken name or a short password."""
    if not _NAME.fullmatch(name):
        raise InputError(f"{name!r}: use letters, digits, '.', '_', '@' or '-' (at most 64)")
    check_password(password)
    row = Staff(name=name, role=str(role), password_hash=_HASHER.hash(password))
    with Session(engine, expire_on_commit=False) as session:
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            raise InputError(f"staff {name!r} exists already") from None
    return _member(row)


def list_staff(engine: Engine) -> list[StaffMember]:
    with Session(engine) as session:
        rows = session.execute(select(Staff).order_by(col(Staff.name))).scalars()
        return [_member(row) for row in rows]


def find_staff(engine: Engine, name: str) -> StaffMember:
    with Session(engine) as session:
        row = session.execute(select(Staff).where(col(Staff.name) == name)).scalar()
    if row is None:
        raise NotFoundError(f"no staff named {name!r}")
    return _member(row)


def remove_staff(engine: Engine, name: str) -> StaffMember:
    """Delete the account and end its sessions."""
    found = find_staff(engine, name)
    with engine.begin() as conn:
        conn.execute(delete(StaffSession).where(col(StaffSession.staff_id) == found.id))
        conn.execute(delete(Staff).where(col(Staff.id) == found.id))
    return found


def set_password(engine: Engine, name: str, password: str) -> StaffMember:
    """A new password: the lockout is lifted and every session of the account ended."""
    check_password(password)
    found = find_staff(engine, name)
    with engine.begin() as conn:
        conn.execute(
            update(Staff)
            .where(col(Staff.id) == found.id)
            .values(password_hash=_HASHER.hash(password), failed_logins=0, locked_until=None)
        )
        conn.execute(delete(StaffSession).where(col(StaffSession.staff_id) == found.id))
    return found


def sign_in(engine: Engine, name: str, password: str, *, now: datetime | None = None) -> SignIn:
    """Check a name and password, counting failures: the fifth wrong one in a row locks
    the account for 15 minutes, and a locked account refuses even the right password.
    An unknown name costs one hash and answers as a wrong password does."""
    now = now or utcnow()
    with Session(engine, expire_on_commit=False) as session:
        row = session.execute(select(Staff).where(col(Staff.name) == name)).scalar()
        if row is None:
            _verify(_dummy(), password)
            return SignIn(locked=_unknown_failure(name, now))
        if row.locked_until is not None and _aware(row.locked_until) > now:
            return SignIn(locked=True)
        if _verify(row.password_hash, password):
            row.failed_logins, row.locked_until = 0, None
            if _HASHER.check_needs_rehash(row.password_hash):
                row.password_hash = _HASHER.hash(password)
            session.commit()
            return SignIn(_member(row))
        failures = (0 if row.locked_until is not None else row.failed_logins) + 1
        row.failed_logins, row.locked_until = failures, None
        if failures >= MAX_FAILURES:
            row.failed_logins, row.locked_until = 0, now + LOCKOUT
        session.commit()
        return SignIn(locked=row.locked_until is not None)


def _unknown_failure(name: str, now: datetime) -> bool:
    """Count a failure for a name no account has, as for one that exists (in this
    process), so that the answers cannot tell them apart."""
    if len(_UNKNOWN) > 10_000:
        _UNKNOWN.clear()
    failures, locked_until = _UNKNOWN.get(name, (0, None))
    if locked_until is not None and locked_until > now:
        return True
    failures = (0 if locked_until is not None else failures) + 1
    _UNKNOWN[name] = (0, now + LOCKOUT) if failures >= MAX_FAILURES else (failures, None)
    return failures >= MAX_FAILURES


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def start_session(engine: Engine, staff: StaffMember) -> str:
    """A new session for `staff`; returns its token (for the cookie, never stored)."""
    token = secrets.token_urlsafe(32)
    with Session(engine) as session:
        session.add(
            StaffSession(
                token_hash=_digest(token), staff_id=staff.id, csrf_token=secrets.token_urlsafe(32)
            )
        )
        session.commit()
    return token


def current_session(
    engine: Engine, token: str | None, *, now: datetime | None = None
) -> SessionInfo | None:
    """The live session of a cookie's token (its idle time renewed), or None: no token,
    an unknown one, or one idle longer than 8 hours (then deleted)."""
    if not token:
        return None
    now = now or utcnow()
    with Session(engine) as session:
        found = session.execute(
            select(StaffSession, Staff)
            .join(Staff, col(Staff.id) == col(StaffSession.staff_id))
            .where(col(StaffSession.token_hash) == _digest(token))
        ).first()
        if found is None:
            return None
        row, staff = found
        if _aware(row.last_seen) + IDLE < now:
            session.execute(delete(StaffSession).where(col(StaffSession.id) == row.id))
            session.commit()
            return None
        if now - _aware(row.last_seen) > timedelta(minutes=1):  # one write a minute at most
            session.execute(
                update(StaffSession).where(col(StaffSession.id) == row.id).values(last_seen=now)
            )
            session.commit()
        return SessionInfo(_member(staff), row.csrf_token)


def end_session(engine: Engine, token: str | None) -> None:
    if token:
        with engine.begin() as conn:
            conn.execute(delete(StaffSession).where(col(StaffSession.token_hash) == _digest(token)))
