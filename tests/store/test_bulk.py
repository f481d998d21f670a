"""Bulk inserts and updates, on SQLite (executemany) and PostgreSQL (unnest)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine

from dispatcher.store.bulk import insert_rows, update_rows
from dispatcher.store.models import Member

MEMBER = Member.__table__  # type: ignore[attr-defined]
AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def row(i: int) -> dict[str, object]:
    return {
        "external_id": f"C{i}",
        "first_name": "مریم",
        "last_name": "",
        "email": None if i % 2 else f"c{i}@example.com",
        "mobile": None,
        "email_opt_in": bool(i % 3),
        "sms_opt_in": True,
        "mobile_invalid": False,
        "tags": "",
        "updated_at": AT,
    }


def test_rows_are_inserted_and_updated_each_with_its_own_values(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_rows(conn, MEMBER, [row(i) for i in range(5)])
    with engine.connect() as conn:
        ids = dict(conn.execute(select(MEMBER.c.external_id, MEMBER.c.id)).all())
    with engine.begin() as conn:
        update_rows(
            conn,
            MEMBER,
            ("email", "sms_opt_in"),
            [
                {"id": ids["C1"], "email": "new@example.com", "sms_opt_in": False},
                {"id": ids["C2"], "email": None, "sms_opt_in": True},
            ],
        )
    with engine.connect() as conn:
        stored = conn.execute(
            select(
                MEMBER.c.external_id, MEMBER.c.email, MEMBER.c.email_opt_in, MEMBER.c.sms_opt_in
            ).order_by(MEMBER.c.id)
        ).all()
    assert [tuple(r) for r in stored] == [
        ("C0", "c0@example.com", False, True),
        ("C1", "new@example.com", True, False),
        ("C2", None, True, True),
        ("C3", None, False, True),
        ("C4", "c4@example.com", True, True),
    ]
