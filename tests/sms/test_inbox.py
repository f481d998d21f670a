"""The spool of opt-out replies between Kavenegar and the database."""

from __future__ import annotations

from pathlib import Path

from dispatcher.sms.inbox import OptOutSpool


def test_senders_are_kept_on_disk_for_this_user_only_until_cleared(tmp_path: Path) -> None:
    spool = OptOutSpool(tmp_path / "spool" / "inbox.jsonl")
    assert spool.pending() == []
    spool.add(["09121234567"])
    spool.add([])
    spool.add(["+989121234568", "۰۹۱۲۱۲۳۴۵۶۹"])
    assert spool.pending() == ["09121234567", "+989121234568", "۰۹۱۲۱۲۳۴۵۶۹"]
    assert spool.path.stat().st_mode & 0o777 == 0o600
    assert OptOutSpool(spool.path).pending() == spool.pending()  # another process reads it
    spool.clear()
    assert spool.pending() == [] and not spool.path.exists()
    spool.clear()  # twice: nothing to do


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    spool = OptOutSpool(tmp_path / "inbox.jsonl")
    spool.add(["09121234567"])
    with spool.path.open("a", encoding="utf-8") as f:
        f.write('{"sender": "0912')  # the write a crash interrupted
    assert spool.pending() == ["09121234567"]


def test_the_repr_shows_no_number(tmp_path: Path) -> None:
    spool = OptOutSpool(tmp_path / "inbox.jsonl")
    spool.add(["09121234567"])
    assert "0912" not in repr(spool)
