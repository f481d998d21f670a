"""`bounces fetch` against a real IMAP server (Dovecot): each report handled once."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from dispatcher.email.verp import verp_address
from dispatcher.errors import ConfigurationError
from dispatcher.feedback.imap import HANDLED, MailboxError, fetch_returns, parse_imap_url
from dispatcher.feedback.returns import ReturnsReader
from dispatcher.store.models import Suppression
from tests.feedback.reports import arf, dsn, without_from
from tests.feedback.test_returns import BOUNCES, KEY, deliveries, messages
from tests.servers.imap_server import ImapServerHandle


def test_a_dsn_and_an_arf_report_in_the_mailbox_are_handled_once_each(
    engine: Engine, tmp_path: Path, imap_server: ImapServerHandle
) -> None:
    ids = deliveries(engine, tmp_path)
    for raw in messages(ids):
        imap_server.append(raw)
    imap_server.append(without_from(message_id="<x@y>"))  # flufl.bounce: IndexError
    imap_server.append(arf(message_id=f"<delivery-{ids['A1']}@any.invalid>", own_id="<f@x>"))
    reader = ReturnsReader(engine, key=KEY, bounce_address=BOUNCES)

    first = fetch_returns(reader, imap_server.url)
    assert (first.hard, first.complaints, first.unrecognised, first.unverified) == (1, 1, 2, 1)
    flags = imap_server.flags()
    assert all(HANDLED in f for f in flags)
    # What was not recorded (unrecognised, unparseable, unverified) stays unread.
    assert ["\\Seen" in f for f in flags] == [True, True, False, False, False]
    second = fetch_returns(reader, imap_server.url)
    assert second.as_dict() == {
        "hard": 0,
        "soft": 0,
        "complaints": 0,
        "unrecognised": 0,
        "unverified": 0,
        "duplicates": 0,
    }
    imap_server.append(
        dsn(
            to=verp_address(BOUNCES, KEY, ids["B1"]),
            message_id="<unrelated@x>",
            status="4.2.2",
            action="delayed",
            own_id="<dsn-2@mx.example.net>",
        )
    )
    third = fetch_returns(reader, imap_server.url)
    assert (third.hard, third.soft) == (0, 1)
    with Session(engine) as session:
        assert len(session.exec(select(Suppression)).all()) == 2


def test_an_unreachable_server_is_a_mailbox_error_without_the_password(engine: Engine) -> None:
    reader = ReturnsReader(engine, key=KEY, bounce_address=None)
    with pytest.raises(MailboxError) as caught:
        fetch_returns(reader, "imap://u:hidden-pass@127.0.0.1:1/INBOX", timeout=2)
    assert "hidden-pass" not in str(caught.value)


def test_a_bad_url_names_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="BOUNCE_IMAP_URL"):
        parse_imap_url("imap://host-without-user/INBOX")
    target = parse_imap_url("imaps://u%40x:p%3Aw@mail.example:1993/Bounces")
    assert (target.user, target.password, target.port, target.mailbox) == (
        "u@x",
        "p:w",
        1993,
        "Bounces",
    )
    assert "p:w" not in repr(target)
