"""API keys: created once and shown once, stored as their SHA-256 only, revocable.

A key is 256 random bits, so a plain SHA-256 is enough to make the stored form
useless to whoever reads the database (no password stretching needed). Checking a
presented key costs the same whether it is missing, wrong or revoked: the hash of
what was presented (empty when nothing was) is looked up, and the answer is the same.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from dispatcher.errors import InputError, NotFoundError
from dispatcher.store.models import ApiKey, utcnow

PREFIX = "dsp_"  # recognisable in a leaked config file or a secret scanner
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KEY = ApiKey.__table__  # type: ignore[attr-defined]
_LOOK_UP = select(_KEY.c.name, _KEY.c.key_hash, _KEY.c.revoked_at).where(
    _KEY.c.key_hash == bindparam("digest")
)


@dataclass(frozen=True)
class KeyInfo:
    """A key as `api-key list` shows it (never the key itself)."""

    name: str
    created_at: datetime
    revoked_at: datetime | None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def create_key(engine: Engine, name: str) -> str:
    """A new key named `name`; returns the key (the only time it is seen).

    Raises `InputError` for a bad name or one already used (even by a revoked key).
    """
    if not _NAME.fullmatch(name):
        raise InputError(f"{name!r} is not a key name: 1 to 64 letters, digits, '.', '_' or '-'")
    key = PREFIX + secrets.token_urlsafe(32)
    try:
        with engine.begin() as conn:
            conn.execute(insert(_KEY).values(name=name, key_hash=digest(key), created_at=utcnow()))
    except IntegrityError:
        raise InputError(f"a key named {name!r} exists already (revoked keys too)") from None
    return key


def list_keys(engine: Engine) -> list[KeyInfo]:
    """Every key, oldest first, revoked ones too."""
    stmt = select(_KEY.c.name, _KEY.c.created_at, _KEY.c.revoked_at).order_by(_KEY.c.id)
    with engine.connect() as conn:
        return [KeyInfo(*row) for row in conn.execute(stmt)]


def revoke_key(engine: Engine, name: str) -> bool:
    """Revoke the key named `name`; False if it was revoked already. Raises
    `NotFoundError` for an unknown name."""
    with engine.begin() as conn:
        changed = conn.execute(
            update(_KEY)
            .where(_KEY.c.name == name, _KEY.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        ).rowcount
        if changed:
            return True
        if conn.execute(select(_KEY.c.id).where(_KEY.c.name == name)).first() is None:
            raise NotFoundError(f"no API key named {name!r}")
    return False


def authenticate(engine: Engine, authorization: str | None) -> str | None:
    """The name of the valid key in an `Authorization: Bearer KEY` header, else None."""
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        presented = ""
    wanted = digest(presented.strip())
    with engine.connect() as conn:
        row = conn.execute(_LOOK_UP, {"digest": wanted}).first()
    stored = row.key_hash if row is not None else "0" * 64
    same = hmac.compare_digest(stored, wanted)
    if row is None or not same or row.revoked_at is not None:
        return None
    name: str = row.name
    return name
