"""The audit log: every change made in the console, and by `dispatcher staff`, as a row
(who, what, which campaign or member by id, when, from which address)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from dispatcher.store.models import AuditEvent, utcnow

_TABLE = AuditEvent.__table__  # type: ignore[attr-defined]


def record(
    engine: Engine,
    actor: str,
    action: str,
    *,
    campaign_id: int | None = None,
    member_id: int | None = None,
    detail: str = "",
    address: str | None = None,
) -> None:
    """Write one audit row, in a transaction of its own."""
    with engine.begin() as conn:
        conn.execute(
            insert(_TABLE).values(
                at=utcnow(),
                actor=actor[:64],
                action=action[:64],
                campaign_id=campaign_id,
                member_id=member_id,
                detail=detail[:500],
                address=address[:64] if address else None,
            )
        )


def events(
    engine: Engine, *, since: datetime | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Audit rows, newest first, at or after `since`."""
    query = select(_TABLE).order_by(col(AuditEvent.id).desc())
    if since is not None:
        query = query.where(col(AuditEvent.at) >= since)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [{**row, "at": row["at"].isoformat() if row["at"] is not None else None} for row in rows]
