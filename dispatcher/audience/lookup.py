"""Finding members by what a person types: an external id, an email address or a mobile,
in any case, with Persian digits, as `0912...` or `+98912...`. Addresses are looked up
by their address key (indexed), never by scanning."""

from __future__ import annotations

from contextlib import suppress

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher.audience.addresses import AddressKeys
from dispatcher.audience.normalise import (
    external_id_forms,
    normalise_email,
    normalise_mobile,
    to_ascii_digits,
)
from dispatcher.store.models import Member


def find_members(engine: Engine, keys: AddressKeys, typed: str, *, limit: int = 50) -> list[Member]:
    """Members whose external id, email or mobile is `typed`, in id order."""
    typed = typed.strip()
    if not typed:
        return []
    where: list[ColumnElement[bool]] = [col(Member.external_id).in_(external_id_forms(typed))]
    ascii_typed = to_ascii_digits(typed)
    if "@" in ascii_typed:
        for form in _emails(ascii_typed):
            where.append(col(Member.email_key) == keys.email(form))
    else:
        with suppress(ValueError):  # not a mobile: the id may still match
            where.append(col(Member.mobile_key) == keys.mobile(normalise_mobile(ascii_typed)))
    with Session(engine) as session:
        return list(
            session.execute(
                select(Member).where(or_(*where)).order_by(col(Member.id)).limit(limit)
            ).scalars()
        )


def _emails(typed: str) -> list[str]:
    try:
        return [normalise_email(typed)]
    except ValueError:
        return [typed]
