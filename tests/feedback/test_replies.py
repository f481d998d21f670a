"""Opt-out replies to the sender line (`sms inbox`), against the real
Kavenegar-speaking server and a real database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from dispatcher.feedback import replies
from dispatcher.feedback.inbox import OptOutSpool
from dispatcher.feedback.replies import is_opt_out_reply, read_inbox
from tests.factories import Harness, add_member
from tests.feedback.sms import SENDER, load_member, send_sms_campaign
from tests.servers.kavenegar_server import KavenegarServerHandle


def test_an_inbox_reply_laghv_opts_the_member_out(
    h: Harness, kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    leaves = add_member(h.engine, "C1", mobile="+989121234567")
    stays = add_member(h.engine, "C2", mobile="+989121234568")
    kavenegar_server.add_inbox("09121234567", "لغو", line=SENDER)
    kavenegar_server.add_inbox("+98 912 123 4568", "ممنون، عالی بود", line=SENDER)
    kavenegar_server.add_inbox("09350000000", "11", line=SENDER)  # no such member

    assert read_inbox(h.runtime) == {
        "received": 3,
        "opt_out_replies": 2,
        "opted_out": 1,
        "unmatched": 1,
        "ignored": 1,
        "replayed": 0,
    }
    assert OptOutSpool(h.engine).pending() == []  # cleared once recorded
    gone = load_member(h, leaves.id)
    assert (gone.sms_opt_in, gone.sms_optout_source) == (False, "sms-keyword")
    assert gone.email_opt_in  # only SMS
    assert load_member(h, stays.id).sms_opt_in
    assert read_inbox(h.runtime)["received"] == 0  # each reply is read once

    send_sms_campaign(h, tmp_path)  # and the next campaign does not text them
    assert [m["receptor"] for m in kavenegar_server.sent()] == ["09121234568"]


@pytest.mark.parametrize(
    "reply",
    ["لغو", " لغو ", "لغو11", "لغو 11", "لغو ۱۱", "11", "۱۱", "١١", "1 1", "STOP", "Stop.",
     "stop!", "لـغو", "ل\u200cغو", "\u200fلغو\u200f"],
)  # fmt: skip
def test_opt_out_words_in_every_script_and_spacing(reply: str) -> None:
    assert is_opt_out_reply(reply)


@pytest.mark.parametrize(
    "reply", ["", "سلام", "111", "1111", "لغو لغو", "لغو نکنید", "stop please", "12", "لغو 🙏"]
)
def test_other_replies_are_not_opt_outs(reply: str) -> None:
    assert not is_opt_out_reply(reply)


def test_an_opt_out_reply_fetched_when_the_database_fails_is_recorded_next_time(
    h: Harness, kavenegar_server: KavenegarServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaves = add_member(h.engine, "C1", mobile="+989121234567")
    kavenegar_server.add_inbox("09121234567", "لغو", line=SENDER)
    real = replies.record

    def database_gone(*args: object, **kwargs: object) -> bool:
        raise OperationalError("UPDATE member ...", None, Exception("server closed the connection"))

    monkeypatch.setattr(replies, "record", database_gone)
    with pytest.raises(OperationalError):
        read_inbox(h.runtime)
    assert load_member(h, leaves.id).sms_opt_in  # not recorded ...
    spool = OptOutSpool(h.engine)
    assert [s for _, s in spool.pending()] == ["09121234567"]  # ... but kept, in the database

    monkeypatch.setattr(replies, "record", real)
    counts = read_inbox(h.runtime)  # Kavenegar has nothing more: it handed the reply out

    assert (counts["received"], counts["replayed"], counts["opted_out"]) == (0, 1, 1)
    gone = load_member(h, leaves.id)
    assert (gone.sms_opt_in, gone.sms_optout_source) == (False, "sms-keyword")
    assert spool.pending() == []


def test_an_opt_out_reply_one_scheduler_could_not_record_is_recorded_by_another_host(
    sms_harness: Callable[..., Harness],
    kavenegar_server: KavenegarServerHandle,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    here = sms_harness(sms_inbox_spool=tmp_path / "host-a" / "spool.jsonl")
    leaves = add_member(here.engine, "C1", mobile="+989121234567")
    kavenegar_server.add_inbox("09121234567", "لغو", line=SENDER)
    real = replies.record

    def database_gone(*args: object, **kwargs: object) -> bool:
        raise OperationalError("UPDATE member ...", None, Exception("server closed the connection"))

    monkeypatch.setattr(replies, "record", database_gone)
    with pytest.raises(OperationalError):
        read_inbox(here.runtime)  # host A fetched the reply, then lost the database
    monkeypatch.setattr(replies, "record", real)
    assert load_member(here, leaves.id).sms_opt_in

    # Host B shares the database, not host A's disk.
    there = sms_harness(sms_inbox_spool=tmp_path / "host-b" / "spool.jsonl")
    counts = read_inbox(there.runtime)
    assert (counts["received"], counts["replayed"], counts["opted_out"]) == (0, 1, 1)
    gone = load_member(there, leaves.id)
    assert (gone.sms_opt_in, gone.sms_optout_source) == (False, "sms-keyword")
    assert not (tmp_path / "host-a").exists()  # nothing of it on a host's disk
