"""Opt-out replies between Kavenegar and the database.

Kavenegar hands each reply to the sender line out once: `sms/receive` marks what it
returns as read. A reply fetched and then lost to a database error, or to a crash
before the commit, would be an opt-out never recorded, and the member would go on
getting SMS after writing «لغو». So the senders of opt-out replies are written here
first (appended, flushed to disk, readable by this user only), recorded in the
database, and only then cleared; whatever is still here at the next `sms inbox` is
recorded first. Recording an opt-out twice changes nothing, so a replay is harmless.

Only what is needed to opt the member out is kept: the number, nothing of the text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class OptOutSpool:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"OptOutSpool({self.path})"

    def add(self, senders: list[str]) -> None:
        """Keep these senders' opt-outs until `clear`; on disk before this returns."""
        if not senders:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            data = "".join(json.dumps({"sender": s}) + "\n" for s in senders).encode()
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def pending(self) -> list[str]:
        """The senders kept and not cleared yet (a torn last line is skipped)."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        senders = []
        for line in lines:
            try:
                senders.append(str(json.loads(line)["sender"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash while it was written
        return senders

    def clear(self) -> None:
        """Everything kept is recorded in the database."""
        self.path.unlink(missing_ok=True)
