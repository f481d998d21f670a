"""A member's data on request: everything stored about them (`export_member`), and its
erasure (`erase_member`).

Erasure deletes the member row and its tags; its deliveries stay as anonymous rows (no
member, no provider id, no error text) so that campaign counts stay right, a pending
one skipped; its consent events stay as anonymous history (channel, opt-in, source,
time), so the consent feed's positions hold. Rows that hold no personal data (the keyed hashes
of suppressed addresses, the campaigns) are left alone. On SQLite the deleted bytes are
overwritten (`secure_delete`) and the WAL is emptied into the file before returning, so
the address is nowhere in the database's files; PostgreSQL keeps old row versions until
a VACUUM (README, "Integrating the shop").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Select, case, delete, select, update
from sqlalchemy.engine import Engine

from dispatcher.audience.normalise import external_id_forms
from dispatcher.delivery.state import skip_member_pending
from dispatcher.errors import NotFoundError
from dispatcher.store.db import sqlite_checkpoint
from dispatcher.store.models import (
    Campaign,
    ConsentEvent,
    Delivery,
    Member,
    MemberTag,
    Suppression,
    utcnow,
)

ERASED = "member erased"  # the error_message of a pending delivery skipped by an erasure

_MEMBER = Member.__table__  # type: ignore[attr-defined]
_TAG = MemberTag.__table__  # type: ignore[attr-defined]
_EVENT = ConsentEvent.__table__  # type: ignore[attr-defined]
_DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
_CAMPAIGN = Campaign.__table__  # type: ignore[attr-defined]
_SUPPRESSION = Suppression.__table__  # type: ignore[attr-defined]
_PROFILE = (
    "external_id",
    "first_name",
    "last_name",
    "email",
    "mobile",
    "mobile_invalid",
    "updated_at",
)


@dataclass(frozen=True)
class Erasure:
    """What an erasure did: deliveries and consent events kept as anonymous rows, and
    pending deliveries skipped."""

    deliveries_anonymised: int
    pending_skipped: int
    consent_events_anonymised: int


def _named(query: Select[Any], external_id: str) -> Select[Any]:
    """`query` for the member an id names, looked up as the import stores it (`M۲۰۱۰`
    is `M2010`); the form as typed only when no member has the stored form."""
    forms = external_id_forms(external_id)
    stored_first = case((_MEMBER.c.external_id == forms[0], 0), else_=1)
    return query.where(_MEMBER.c.external_id.in_(forms)).order_by(stored_first).limit(1)


def export_member(engine: Engine, external_id: str) -> dict[str, Any]:
    """Everything stored about a member, as JSON-ready values (times in ISO 8601 UTC).

    Keys: the profile (`external_id`, `first_name`, `last_name`, `email`, `mobile`,
    `mobile_invalid`, `tags`, `updated_at`), `consent` (per channel: `opt_in`, the
    sticky `optout_source`, and `suppressed`: the address's suppression, which may
    come from another member with the same address, or None), `consent_history`
    (oldest first) and `deliveries` (per campaign and channel: status, attempts,
    provider status, error, last change).
    Raises `NotFoundError` for an unknown `external_id`.
    """
    with engine.connect() as conn:
        member = conn.execute(_named(select(_MEMBER), external_id)).mappings().first()
        if member is None:
            raise NotFoundError(f"no member with external_id {external_id!r}")
        member_id = member["id"]
        tags = conn.execute(
            select(_TAG.c.tag).where(_TAG.c.member_id == member_id).order_by(_TAG.c.tag)
        ).scalars()
        history = conn.execute(
            select(_EVENT.c.channel, _EVENT.c.opted_in, _EVENT.c.source, _EVENT.c.at)
            .where(_EVENT.c.member_id == member_id)
            .order_by(_EVENT.c.id)
        ).all()
        suppressions = {
            channel: conn.execute(
                select(
                    _SUPPRESSION.c.reason, _SUPPRESSION.c.source, _SUPPRESSION.c.created_at
                ).where(
                    _SUPPRESSION.c.address_key == member[key_column],
                    _SUPPRESSION.c.channel == channel,
                )
            ).first()
            for channel, key_column in (("email", "email_key"), ("sms", "mobile_key"))
        }
        deliveries = conn.execute(
            select(
                _CAMPAIGN.c.slug,
                _CAMPAIGN.c.name,
                _DELIVERY.c.channel,
                _DELIVERY.c.status,
                _DELIVERY.c.attempts,
                _DELIVERY.c.provider_status,
                _DELIVERY.c.error_code,
                _DELIVERY.c.error_message,
                _DELIVERY.c.updated_at,
            )
            .join(_CAMPAIGN, _CAMPAIGN.c.id == _DELIVERY.c.campaign_id)
            .where(_DELIVERY.c.member_id == member_id)
            .order_by(_DELIVERY.c.id)
        ).all()
    profile: dict[str, Any] = {key: _json(member[key]) for key in _PROFILE}
    profile["tags"] = list(tags)
    return {
        **profile,
        "consent": {
            channel: {
                "opt_in": member[f"{channel}_opt_in"],
                "optout_source": member[f"{channel}_optout_source"],
                "suppressed": _suppression(suppressions[channel]),
            }
            for channel in ("email", "sms")
        },
        "consent_history": [
            {"channel": channel, "opt_in": opted_in, "source": source, "at": _json(at)}
            for channel, opted_in, source, at in history
        ],
        "deliveries": [
            {
                "campaign": slug,
                "campaign_name": name,
                "channel": channel,
                "status": status,
                "attempts": attempts,
                "provider_status": provider_status,
                "error_code": error_code,
                "error_message": error_message,
                "updated_at": _json(updated_at),
            }
            for (
                slug,
                name,
                channel,
                status,
                attempts,
                provider_status,
                error_code,
                error_message,
                updated_at,
            ) in deliveries
        ],
    }


def erase_member(engine: Engine, external_id: str) -> Erasure:
    """Erase a member's personal data (see the module's docstring); all or nothing.

    Returns once the erasure is committed and, on SQLite, checkpointed into the
    database file with the deleted bytes overwritten (`OperationalError` if a reader
    kept the WAL busy: the erasure is committed, call again). Raises `NotFoundError`
    for an unknown `external_id`, after the same checkpoint: a repeated call answers
    "not found" only once the files are clean.
    """
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as conn:
            if sqlite:  # overwrite what is deleted, on this connection (FAST on the others)
                conn.exec_driver_sql("PRAGMA secure_delete = ON")
                conn.commit()
            try:
                with conn.begin():
                    return _erase(conn, external_id)
            finally:
                if sqlite:
                    conn.exec_driver_sql("PRAGMA secure_delete = FAST")
                    conn.commit()
    finally:
        if sqlite:
            sqlite_checkpoint(engine)


def _erase(conn: Connection, external_id: str) -> Erasure:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # no opt-out slips in between
    member_id = conn.execute(_named(select(_MEMBER.c.id), external_id).with_for_update()).scalar()
    if member_id is None:
        raise NotFoundError(f"no member with external_id {external_id!r}")
    # The member's deliveries locked first: the counts' rows, locked by the skip below
    # until the commit, are then never wanted while a delivery's lock is awaited.
    conn.execute(select(_DELIVERY.c.id).where(_DELIVERY.c.member_id == member_id).with_for_update())
    now = utcnow()
    skipped = skip_member_pending(conn, member_id, ERASED, now)
    anonymised = conn.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.member_id == member_id)
        .values(
            member_id=None,
            provider_id=None,
            error_message=case((_DELIVERY.c.error_message == ERASED, ERASED), else_=None),
            updated_at=now,
        )
    ).rowcount
    events = conn.execute(
        update(_EVENT).where(_EVENT.c.member_id == member_id).values(member_id=None)
    ).rowcount
    conn.execute(delete(_TAG).where(_TAG.c.member_id == member_id))
    conn.execute(delete(_MEMBER).where(_MEMBER.c.id == member_id))
    return Erasure(
        deliveries_anonymised=anonymised,
        pending_skipped=skipped,
        consent_events_anonymised=events,
    )


def _suppression(row: Any) -> dict[str, Any] | None:
    """The suppression of the member's address (perhaps caused by another member who
    shares it, or by a bounce): nothing is sent to it, whatever `opt_in` says."""
    if row is None:
        return None
    reason, source, since = row
    return {"reason": reason, "source": source, "since": _json(since)}


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        at = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return at.isoformat()
    return value
