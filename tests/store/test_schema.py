"""Migrations on SQLite and PostgreSQL: from empty, from revision 0001 with rows in it,
from a database the first version created without Alembic; and models == migrations."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from dispatcher.delivery.control import find
from dispatcher.errors import SchemaError
from dispatcher.store import schema
from dispatcher.store.db import make_engine
from dispatcher.store.models import Campaign, CampaignState
from tests.conftest import POSTGRES_URL, _pg_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database with no table at all."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield engine
        engine.dispose()
        return
    name = f"m_{uuid.uuid4().hex[:10]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    engine = make_engine(_pg_url(name))
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
    admin.dispose()


def test_an_empty_database_upgrades_to_the_models(empty_engine: Engine) -> None:
    assert schema.upgrade(empty_engine) == (None, schema.head())
    with empty_engine.connect() as conn:
        assert schema.differences(conn) == []
    assert schema.upgrade(empty_engine) == (schema.head(), schema.head())  # again: nothing


def test_a_database_at_the_first_revision_upgrades_in_place_with_its_rows(
    empty_engine: Engine,
) -> None:
    schema.upgrade(empty_engine, schema.FIRST)
    created = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO campaign (slug, name, channels, state, spec, excluded, created_at)"
                " VALUES ('old', 'قدیمی', 'email', 'done', '{}', '{}', :at)"
            ),
            {"at": created},
        )
    with pytest.raises(SchemaError, match="dispatcher db upgrade"):
        schema.ensure_current(empty_engine, auto_upgrade=False)
    assert schema.upgrade(empty_engine) == (schema.FIRST, schema.head())
    old = find(empty_engine, "old")
    assert old.state == CampaignState.DONE and old.launched_at == created
    assert old.send_at is None and old.pause_reason is None


def test_a_database_created_without_alembic_is_recognised(empty_engine: Engine) -> None:
    SQLModel.metadata.create_all(empty_engine)  # as the first version (and the tests) did
    schema.ensure_current(empty_engine, auto_upgrade=False)  # same tables: not behind
    assert schema.upgrade(empty_engine) == (schema.head(), schema.head())
    with Session(empty_engine) as session:
        session.add(Campaign(slug="s", name="n", channels="email"))
        session.commit()


def test_an_embedded_database_upgrades_itself(empty_engine: Engine) -> None:
    schema.ensure_current(empty_engine, auto_upgrade=True)
    assert schema.current(empty_engine) == schema.head()


def test_the_first_versions_tables_without_alembic_upgrade_in_place(empty_engine: Engine) -> None:
    schema.upgrade(empty_engine, schema.FIRST)
    with empty_engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))  # the spine used create_all
    assert schema.current(empty_engine) is None
    assert schema.upgrade(empty_engine) == (schema.FIRST, schema.head())
    with empty_engine.connect() as conn:
        assert schema.differences(conn) == []


def test_the_head_the_commands_check_is_the_newest_migration() -> None:
    assert schema.head() == schema.scripts_head()  # bump schema.HEAD with each migration


def test_revision_0008_gives_old_failed_deliveries_their_failure_kind(
    empty_engine: Engine,
) -> None:
    schema.upgrade(empty_engine, "0007")
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO campaign (slug, name, channels, state, spec, excluded, created_at)"
                " VALUES ('old', 'قدیمی', 'email', 'done', '{}', '{}', :at)"
            ),
            {"at": at},
        )
        for i, (status, message) in enumerate(
            [
                ("failed", "retries exhausted: 451 try later"),
                ("failed", "render: email.html: the HTML has no visible unsubscribe link"),
                ("failed", "550 5.1.1 no such user"),
                ("sent", None),
            ]
        ):
            conn.execute(
                text(
                    "INSERT INTO delivery (id, campaign_id, channel, status, attempts,"
                    " error_message, updated_at) VALUES (:id, (SELECT id FROM campaign),"
                    " 'email', :status, 1, :message, :at)"
                ),
                {"id": i + 1, "status": status, "message": message, "at": at},
            )
    schema.upgrade(empty_engine, "0008")
    with empty_engine.connect() as conn:
        kinds = conn.execute(text("SELECT failure_kind FROM delivery ORDER BY id")).scalars()
        assert list(kinds) == ["retries-exhausted", "render", "permanent", None]


def test_revision_0012_moves_the_sms_holds_to_campaign_hold_and_back(
    empty_engine: Engine,
) -> None:
    from alembic import command

    schema.upgrade(empty_engine, "0010")
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with empty_engine.begin() as conn:
        for slug, reason, waiting in [
            ("paused", "no credit (Kavenegar 418)", None),
            ("waiting", None, at),
            ("free", None, None),
        ]:
            conn.execute(
                text(
                    "INSERT INTO campaign (slug, name, channels, state, spec, excluded,"
                    " created_at, sms_paused_reason, sms_waiting_until)"
                    " VALUES (:slug, :slug, 'sms', 'sending', '{}', '{}', :at, :reason, :waiting)"
                ),
                {"slug": slug, "at": at, "reason": reason, "waiting": waiting},
            )
    schema.upgrade(empty_engine, "0012")
    query = (
        "SELECT c.slug, h.channel, h.reason, h.waiting_until FROM campaign_hold h"
        " JOIN campaign c ON c.id = h.campaign_id ORDER BY c.slug"
    )
    with empty_engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(text(query))]
    assert [row[:3] for row in rows] == [
        ("paused", "sms", "no credit (Kavenegar 418)"),
        ("waiting", "sms", None),
    ]
    waiting_until = rows[1][3]
    assert waiting_until is not None
    assert str(waiting_until).startswith("2026-12-01 10:00:00")

    with empty_engine.begin() as conn:
        command.downgrade(schema.config(conn), "0010")
    with empty_engine.connect() as conn:
        back = conn.execute(
            text("SELECT slug, sms_paused_reason FROM campaign ORDER BY slug")
        ).all()
    assert [tuple(row) for row in back] == [
        ("free", None),
        ("paused", "no credit (Kavenegar 418)"),
        ("waiting", None),
    ]


def test_revision_0011_counts_the_deliveries_already_there(empty_engine: Engine) -> None:
    schema.upgrade(empty_engine, "0010")
    at = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)
    sent_at = datetime(2026, 12, 1, 10, 2, 5, tzinfo=UTC)
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO campaign (slug, name, channels, state, spec, excluded, created_at)"
                " VALUES ('old', 'قدیمی', 'email,sms', 'sending', '{}', '{}', :at)"
            ),
            {"at": at},
        )
        rows = [("email", "sent", sent_at)] * 2 + [
            ("email", "failed", None),
            ("sms", "pending", None),
        ]
        for i, (channel, status, sent) in enumerate(rows):
            conn.execute(
                text(
                    "INSERT INTO delivery (id, campaign_id, channel, status, attempts, updated_at,"
                    " sent_at) VALUES (:id, (SELECT id FROM campaign), :channel, :status, 1, :at,"
                    " :sent)"
                ),
                {"id": i + 1, "channel": channel, "status": status, "at": at, "sent": sent},
            )
    schema.upgrade(empty_engine, "0011")
    minute = int(at.timestamp() // 60)
    with empty_engine.connect() as conn:
        found = conn.execute(
            text("SELECT channel, status, minute, n FROM delivery_count ORDER BY 1, 2, 3")
        ).all()
    assert [tuple(r) for r in found] == [
        ("email", "failed", minute, 1),
        ("email", "sent", int(sent_at.timestamp() // 60), 2),
        ("sms", "pending", 0, 1),
    ]


def test_revision_0013_drops_the_delivery_keys_with_its_rows_and_puts_them_back(
    empty_engine: Engine,
) -> None:
    from alembic import command
    from sqlalchemy import inspect

    def keys() -> set[str]:
        return {k["referred_table"] for k in inspect(empty_engine).get_foreign_keys("delivery")}

    schema.upgrade(empty_engine, "0012")
    assert keys() == {"campaign", "member"}
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO campaign (id, slug, name, channels, state, spec, excluded, created_at)"
                " VALUES (7, 'c', 'c', 'email', 'sending', '{}', '{}', :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO member (id, external_id, first_name, last_name, email,"
                " email_opt_in, sms_opt_in, mobile_invalid, tags, updated_at)"
                " VALUES (3, 'M3', 'M', 'N', 'm3@example.com', true, true, false, '', :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO delivery (campaign_id, member_id, channel, status, attempts,"
                " updated_at) VALUES (7, 3, 'email', 'pending', 0, :at)"
            ),
            {"at": at},
        )

    schema.upgrade(empty_engine, "0013")
    assert keys() == set()
    with empty_engine.connect() as conn:
        assert schema.differences(conn) == []
        rows = conn.execute(text("SELECT campaign_id, member_id, status FROM delivery")).all()
    assert [tuple(row) for row in rows] == [(7, 3, "pending")]

    with empty_engine.begin() as conn:
        command.downgrade(schema.config(conn), "0012")
    assert keys() == {"campaign", "member"}
    with empty_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM delivery")).scalar_one() == 1
