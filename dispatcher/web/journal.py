"""Consent changes kept on disk while SQLite's write lock is held by someone else.

A `members import` or a checkpoint may hold the write lock for longer than a person
(or a mail provider's one-click request) should wait. Such a change is appended here,
flushed to disk, and answered; `dispatcher.web.optout.ConsentWriter` applies what is
kept, in order, as soon as the lock frees (and at the next start of the server), then
clears the file. A crash between the two leaves changes already recorded in the
file: a replay skips every change that a newer consent change of the member has
superseded, so an old opt-out never undoes the member's later opt-in.

The file is `{database}-unsubscribe.journal`, beside the SQLite database (which is on
this host anyway), mode 0600; every use is under the servers' shared `WriteLock`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dispatcher.store.models import Channel, ConsentSource


@dataclass(frozen=True, slots=True)
class Change:
    """One member's consent on one channel, as asked at `at`."""

    member_id: int
    channel: Channel
    opted_in: bool
    source: ConsentSource
    at: datetime
    campaign_id: int | None = None  # the campaign whose link it came from (opt-outs)

    def to_line(self) -> bytes:
        record = {
            "member_id": self.member_id,
            "channel": self.channel.value,
            "opted_in": self.opted_in,
            "source": self.source.value,
            "at": self.at.isoformat(),
            "campaign_id": self.campaign_id,
        }
        return (json.dumps(record) + "\n").encode()

    @classmethod
    def from_line(cls, line: str) -> Change:
        record = json.loads(line)
        return cls(
            member_id=int(record["member_id"]),
            channel=Channel(record["channel"]),
            opted_in=bool(record["opted_in"]),
            source=ConsentSource(record["source"]),
            at=datetime.fromisoformat(record["at"]),
            campaign_id=record.get("campaign_id"),
        )


class Journal:
    """The changes not yet in the database, in the order they were asked."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    @classmethod
    def beside(cls, database: str) -> Journal:
        return cls(Path(f"{database}-unsubscribe.journal"))

    def append(self, change: Change) -> None:
        """Keep `change`; on disk before this returns."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, change.to_line())
            os.fsync(fd)
        finally:
            os.close(fd)

    def pending(self) -> bool:
        """True when some change is kept (one `stat`)."""
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def read(self) -> list[Change]:
        """The changes kept, oldest first (a line torn by a crash is skipped)."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        changes = []
        for line in lines:
            try:
                changes.append(Change.from_line(line))
            except (ValueError, KeyError, TypeError):
                continue
        return changes

    def clear(self) -> None:
        """Everything kept is in the database."""
        self.path.unlink(missing_ok=True)
