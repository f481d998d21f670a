"""Consent: opt-out, resubscribe and subscribe, sticky sources, the consent event log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from dispatcher.audience.addresses import AddressKeys
from dispatcher.audience.consent import (
    consent_changes,
    list_optouts,
    opt_out,
    resubscribe,
    subscribe,
)
from dispatcher.audience.suppression import suppress
from dispatcher.errors import NotFoundError
from dispatcher.store.db import session_scope
from dispatcher.store.models import Channel, ConsentEvent, ConsentSource, SuppressionReason
from tests.audience.test_members import events, member, members, run
from tests.factories import add_member


def test_subscribe_clears_the_sticky_opt_out(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, "external_id,email\nC1,a@example.com\n")
    with session_scope(engine) as session:
        opt_out(session, member(engine, "C1").id or 0, Channel.EMAIL, ConsentSource.ONE_CLICK)
    subscribe(engine, "C1", Channel.EMAIL)
    c1 = member(engine, "C1")
    assert c1.email_opt_in and c1.email_optout_source is None
    assert events(engine) == [("email", False, "one-click"), ("email", True, "cli")]
    subscribe(engine, "C1", Channel.EMAIL)  # already subscribed: no new event
    assert len(events(engine)) == 2
    run(engine, tmp_path, "external_id,email_opt_in\nC1,0\n")  # imports rule again
    assert not member(engine, "C1").email_opt_in


def test_subscribe_of_an_unknown_member_raises_not_found(engine: Engine) -> None:
    with pytest.raises(NotFoundError, match="C404"):
        subscribe(engine, "C404", Channel.SMS)


def test_opt_out_is_idempotent(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, "external_id\nC1\n")
    member_id = member(engine, "C1").id or 0
    with session_scope(engine) as session:
        assert opt_out(session, member_id, Channel.SMS, ConsentSource.PROVIDER) is True
        assert opt_out(session, member_id, Channel.SMS, ConsentSource.PROVIDER) is False
    with session_scope(engine) as session:
        assert opt_out(session, member_id, Channel.SMS, ConsentSource.LINK) is False
    c1 = member(engine, "C1")
    assert not c1.sms_opt_in and c1.sms_optout_source == "provider"
    assert events(engine) == [("sms", False, "provider")]


def test_opt_out_composes_with_the_callers_transaction(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, "external_id\nC1\n")
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        opt_out(session, member(engine, "C1").id or 0, Channel.EMAIL, ConsentSource.LINK)
        raise RuntimeError("the caller fails after opting out")
    assert member(engine, "C1").email_opt_in
    assert events(engine) == []


def test_link_opt_out_of_a_member_opted_out_by_import_becomes_sticky(
    engine: Engine, tmp_path: Path
) -> None:
    run(engine, tmp_path, "external_id,email_opt_in\nC1,0\n")
    with session_scope(engine) as session:
        assert not opt_out(session, member(engine, "C1").id or 0, Channel.EMAIL, ConsentSource.LINK)
    assert member(engine, "C1").email_optout_source == "link"
    report = run(engine, tmp_path, "external_id,email_opt_in\nC1,1\n")
    assert report.kept_opted_out == 1
    assert not member(engine, "C1").email_opt_in


def test_opt_out_with_import_source_is_not_sticky(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, "external_id\nC1\n")
    with session_scope(engine) as session:
        opt_out(session, member(engine, "C1").id or 0, Channel.EMAIL, ConsentSource.IMPORT)
    c1 = member(engine, "C1")
    assert not c1.email_opt_in and c1.email_optout_source is None


def test_opt_out_of_an_unknown_member_raises_not_found(engine: Engine) -> None:
    with pytest.raises(NotFoundError), session_scope(engine) as session:
        opt_out(session, 12345, Channel.EMAIL, ConsentSource.LINK)


def test_resubscribe_undoes_an_opt_out_and_is_idempotent(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, "external_id\nC1\n")
    member_id = member(engine, "C1").id or 0
    with session_scope(engine) as session:
        opt_out(session, member_id, Channel.EMAIL, ConsentSource.LINK)
    with session_scope(engine) as session:
        assert resubscribe(session, member_id, Channel.EMAIL, ConsentSource.LINK) is True
        assert resubscribe(session, member_id, Channel.EMAIL, ConsentSource.LINK) is False
    c1 = member(engine, "C1")
    assert c1.email_opt_in and c1.email_optout_source is None
    assert events(engine) == [("email", False, "link"), ("email", True, "link")]
    with pytest.raises(NotFoundError), session_scope(engine) as session:
        resubscribe(session, 12345, Channel.EMAIL, ConsentSource.LINK)


def test_list_optouts_oldest_first_and_since(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, "external_id\nC1\nC2\n")
    ids = {key: m.id or 0 for key, m in members(engine).items()}
    with session_scope(engine) as session:
        opt_out(session, ids["C2"], Channel.SMS, ConsentSource.SMS_KEYWORD)
        opt_out(session, ids["C1"], Channel.EMAIL, ConsentSource.LINK)
        resubscribe(session, ids["C1"], Channel.EMAIL, ConsentSource.LINK)
    times = [datetime(2025, 3, 1, hour, tzinfo=UTC) for hour in (8, 7, 9)]
    with session_scope(engine) as session:
        for consent_event, at in zip(
            session.exec(select(ConsentEvent).order_by(col(ConsentEvent.id))).all(),
            times,
            strict=True,
        ):
            consent_event.at = at
    assert list_optouts(engine, None) == [
        {
            "external_id": "C1",
            "channel": "email",
            "at": "2025-03-01T07:00:00+00:00",
            "source": "link",
        },
        {
            "external_id": "C2",
            "channel": "sms",
            "at": "2025-03-01T08:00:00+00:00",
            "source": "sms-keyword",
        },
    ]
    assert [r["external_id"] for r in list_optouts(engine, datetime(2025, 3, 1, 8))] == ["C2"]
    assert list_optouts(engine, datetime(2025, 3, 1, 8, 0, 1)) == []
    tehran = timezone(timedelta(hours=3, minutes=30))
    since_in_tehran = datetime(2025, 3, 1, 11, 0, tzinfo=tehran)  # 07:30 UTC
    assert [r["external_id"] for r in list_optouts(engine, since_in_tehran)] == ["C2"]
    assert [r["at"] for r in list_optouts(engine, datetime(2025, 3, 1, 7, tzinfo=UTC))] == [
        "2025-03-01T07:00:00+00:00",
        "2025-03-01T08:00:00+00:00",
    ]


def test_subscribe_finds_a_member_by_an_id_typed_with_persian_digits(
    engine: Engine, tmp_path: Path
) -> None:
    run(engine, tmp_path, "external_id,email\nM2010,a@example.com\n")
    with session_scope(engine) as session:
        opt_out(session, member(engine, "M2010").id or 0, Channel.EMAIL, ConsentSource.LINK)
    subscribe(engine, "M۲۰۱۰", Channel.EMAIL)
    assert member(engine, "M2010").email_opt_in


def test_consent_changes_lists_both_directions_oldest_first_with_a_cursor(
    engine: Engine, tmp_path: Path
) -> None:
    run(engine, tmp_path, "external_id,mobile\nC1,09121234567\nC2,09121234568\n")
    ids = {m: member(engine, m).id or 0 for m in ("C1", "C2")}
    with session_scope(engine) as session:
        opt_out(session, ids["C1"], Channel.EMAIL, ConsentSource.LINK)
        opt_out(session, ids["C2"], Channel.SMS, ConsentSource.SMS_KEYWORD)
        resubscribe(session, ids["C1"], Channel.EMAIL, ConsentSource.LINK)
    changes = consent_changes(engine)
    assert [(c.external_id, c.channel, c.opt_in, c.source) for c in changes] == [
        ("C1", "email", False, "link"),
        ("C2", "sms", False, "sms-keyword"),
        ("C1", "email", True, "link"),
    ]
    assert all(c.at.tzinfo is UTC for c in changes)
    assert changes == sorted(changes, key=lambda c: c.id)
    after = consent_changes(engine, after_id=changes[0].id, limit=1)
    assert [c.id for c in after] == [changes[1].id]
    assert consent_changes(engine, since=changes[2].at) == [changes[2]]
    assert consent_changes(engine, since=datetime.now(UTC) + timedelta(minutes=1)) == []


# --------------------------------------------------------------------- the consent feed


def test_consent_changes_are_listed_oldest_first_from_a_position(
    engine: Engine, tmp_path: Path
) -> None:
    run(engine, tmp_path, "external_id,email_opt_in\nC1,1\nC2,1\nC3,1\n")
    for external_id in ("C2", "C1", "C3"):
        with session_scope(engine) as session:
            opt_out(session, member(engine, external_id).id or 0, Channel.SMS, ConsentSource.LINK)
    every = consent_changes(engine)
    assert [(c.external_id, c.channel, c.opt_in, c.source) for c in every] == [
        ("C2", "sms", False, "link"),
        ("C1", "sms", False, "link"),
        ("C3", "sms", False, "link"),
    ]
    assert [c.id for c in every] == sorted(c.id for c in every)
    assert consent_changes(engine, after_id=every[0].id, limit=1) == [every[1]]
    assert consent_changes(engine, after_id=every[-1].id) == []
    assert consent_changes(engine, since=every[1].at) == every[1:]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite: in id order
def test_the_feed_waits_for_an_event_committed_after_a_later_one(
    engine: Engine, tmp_path: Path
) -> None:
    run(engine, tmp_path, "external_id\nC1\nC2\n")
    first, second = member(engine, "C1").id or 0, member(engine, "C2").id or 0
    slow = engine.connect()
    slow.begin()
    insert_event = ConsentEvent.__table__.insert()  # type: ignore[attr-defined]
    slow.execute(
        insert_event,
        {
            "member_id": first,
            "channel": "sms",
            "opted_in": False,
            "source": "link",
            "at": datetime.now(UTC),
        },
    )
    with session_scope(engine) as session:  # takes a later id, commits first
        opt_out(session, second, Channel.SMS, ConsentSource.LINK)
    assert consent_changes(engine, after_id=0) == []  # the earlier id is not committed yet
    slow.commit()
    slow.close()
    assert [c.external_id for c in consent_changes(engine, after_id=0)] == ["C1", "C2"]


def test_the_feed_shows_a_suppression_reaching_members_through_a_shared_address(
    engine: Engine,
) -> None:
    keys = AddressKeys(b"test-suppression-key")
    home, gone = keys.email("home@example.com"), keys.email("gone@example.com")
    parent = add_member(engine, "P1", email="home@example.com", email_key=home)
    add_member(engine, "K1", email="home@example.com", email_key=home)
    add_member(engine, "O1", email="other@example.com", email_key=keys.email("other@example.com"))
    add_member(engine, "G1", email="gone@example.com", email_key=gone)
    add_member(engine, "G2", email="gone@example.com", email_key=gone)
    assert parent.id is not None
    with session_scope(engine) as session:
        opt_out(session, parent.id, Channel.EMAIL, ConsentSource.LINK)
    with session_scope(engine) as session:  # a hard bounce: the address is gone for both
        suppress(session.connection(), gone or "", Channel.EMAIL,
                 SuppressionReason.BOUNCE, ConsentSource.BOUNCE)  # fmt: skip
    with session_scope(engine) as session:  # opted in again: her child's address is back too
        resubscribe(session, parent.id, Channel.EMAIL, ConsentSource.LINK)

    feed = [(c.external_id, c.opt_in, c.source) for c in consent_changes(engine)]
    assert feed == [
        ("P1", False, "link"),
        ("K1", False, "link"),
        ("G1", False, "bounce"),
        ("G2", False, "bounce"),
        ("P1", True, "link"),
        ("K1", True, "link"),
    ]
    again = [(c.external_id, c.opt_in) for c in consent_changes(engine, after_id=0)]
    assert len(again) == 6  # the feed's positions: the events' ids, as before
