"""Opt-out replies between Kavenegar and the database: each sender is written to the
`sms_inbox_spool` table in a transaction of its own before the opt-out is applied, so
a reply Kavenegar hands out once is never lost; any scheduler replays what is left.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher.store.models import InboxOptOut


class OptOutSpool:
    """The senders of opt-out replies fetched and not recorded yet, in the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __repr__(self) -> str:
        return "OptOutSpool(sms_inbox_spool)"

    def add(self, senders: list[str]) -> list[int]:
        """Keep these senders until `remove`; committed before this returns. Their ids."""
        if not senders:
            return []
        rows = [InboxOptOut(sender=s) for s in senders]
        with Session(self.engine, expire_on_commit=False) as session:
            session.add_all(rows)
            session.commit()
        return [r.id for r in rows if r.id is not None]

    def pending(self) -> list[tuple[int, str]]:
        """`(id, sender)` of every sender kept, oldest first."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(col(InboxOptOut.id), col(InboxOptOut.sender)).order_by(col(InboxOptOut.id))
            ).all()
        return [(int(i), str(s)) for i, s in rows]

    def remove(self, session: Session, ids: list[int]) -> None:
        """Drop these senders, in the caller's transaction (the one that records them)."""
        if ids:
            session.execute(delete(InboxOptOut).where(col(InboxOptOut.id).in_(ids)))

    def adopt_file(self, path: Path) -> int:
        """Move the senders an old spool file holds into the table; delete the file."""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return 0
        senders = []
        for line in lines:
            try:
                senders.append(str(json.loads(line)["sender"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash while it was written
        self.add(senders)
        path.unlink(missing_ok=True)
        return len(senders)
