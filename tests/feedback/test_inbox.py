"""The spool of opt-out replies between Kavenegar and the opt-out: a table, so that any
scheduler on any host replays what another one fetched (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from dispatcher.feedback.inbox import OptOutSpool
from dispatcher.store.db import make_engine


def test_senders_are_kept_in_the_database_until_removed_with_their_opt_out(
    engine: Engine, database_url: str
) -> None:
    spool = OptOutSpool(engine)
    assert spool.pending() == []
    first = spool.add(["09121234567"])
    assert spool.add([]) == []
    spool.add(["+989121234568", "۰۹۱۲۱۲۳۴۵۶۹"])
    kept = ["09121234567", "+989121234568", "۰۹۱۲۱۲۳۴۵۶۹"]
    assert [s for _, s in spool.pending()] == kept

    elsewhere = make_engine(database_url)  # another process, on another host: the same rows
    try:
        assert [s for _, s in OptOutSpool(elsewhere).pending()] == kept
    finally:
        elsewhere.dispose()

    with Session(engine) as session:
        spool.remove(session, first)
        session.rollback()  # the opt-out was not recorded: the sender stays
    assert len(spool.pending()) == 3
    with Session(engine) as session:
        spool.remove(session, first)
        session.commit()
    assert [s for _, s in spool.pending()] == kept[1:]


def test_what_an_old_spool_file_holds_moves_into_the_table(engine: Engine, tmp_path: Path) -> None:
    old = tmp_path / ".dispatcher-inbox-spool.jsonl"
    old.write_text(
        json.dumps({"sender": "09121234567"}) + "\n" + '{"sender": "0912', encoding="utf-8"
    )  # the last line cut short by a crash
    spool = OptOutSpool(engine)
    assert spool.adopt_file(old) == 1
    assert [s for _, s in spool.pending()] == ["09121234567"]
    assert not old.exists()
    assert spool.adopt_file(old) == 0  # no file: nothing to do


def test_the_repr_shows_no_number(engine: Engine) -> None:
    spool = OptOutSpool(engine)
    spool.add(["09121234567"])
    assert "0912" not in repr(spool)
