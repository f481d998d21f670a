"""The journal of consent changes kept while SQLite's write lock is held elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dispatcher.store.models import Channel, ConsentSource
from dispatcher.web.journal import Change, Journal

AT = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)


def test_changes_are_kept_in_order_on_disk_for_this_user_only_until_cleared(
    tmp_path: Path,
) -> None:
    journal = Journal.beside(str(tmp_path / "dispatcher.db"))
    assert journal.path == tmp_path / "dispatcher.db-unsubscribe.journal"
    assert not journal.pending() and journal.read() == []
    out = Change(7, Channel.EMAIL, False, ConsentSource.ONE_CLICK, AT)
    back = Change(7, Channel.EMAIL, True, ConsentSource.LINK, AT)
    journal.append(out)
    journal.append(back)
    assert journal.pending()
    assert journal.path.stat().st_mode & 0o777 == 0o600
    assert Journal(journal.path).read() == [out, back]  # another process reads the same
    journal.clear()
    assert not journal.pending() and not journal.path.exists()
    journal.clear()  # twice: nothing to do


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    kept = Change(1, Channel.SMS, False, ConsentSource.LINK, AT)
    journal.append(kept)
    with journal.path.open("a", encoding="utf-8") as f:
        f.write('{"member_id": 2, "chan')
    assert journal.read() == [kept]
