"""Returned mail: DSNs and ARF complaints read from a mailbox, matched to deliveries.

Anyone can send mail to the bounce mailbox, so a report is believed only with proof:
with `BOUNCE_ADDRESS`, the VERP address it names must verify (`verp`); without, the
original's signed Message-ID (`<d.REF.TAG@domain>`) must verify **and** the report
must be about the delivery's address. Anything else is `unverified`, left for a
person. Each message is handled in its own transaction and recorded once
(`report_id`: its Message-ID, or a hash of its bytes); one that cannot be parsed is
`unrecognised`, and the next one is handled.
"""

from __future__ import annotations

import hashlib
import logging
import mailbox
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from email import message_from_bytes, policy
from pathlib import Path

from sqlalchemy.engine import Connection, Engine

from dispatcher.audience.addresses import AddressKeys
from dispatcher.email.bounce import Report, parse_report
from dispatcher.email.verp import delivery_of, delivery_of_message_id
from dispatcher.errors import InputError
from dispatcher.feedback.bounces import delivery_target
from dispatcher.feedback.event import EventKind, ProviderEvent, record
from dispatcher.store.db import session_scope
from dispatcher.store.models import BounceKind, Channel

log = logging.getLogger("dispatcher.bounces")

_VERP_SHAPE = r"{local}\+[0-9a-z]{{1,13}}-[0-9a-f]{{10}}@{domain}"


@dataclass
class Counts:
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    unrecognised: int = 0  # not a report (or not one that can be parsed)
    unverified: int = 0  # a report that does not prove it is about one of our deliveries
    duplicates: int = 0  # reports handled before (a second import of the same mailbox)

    def add(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.as_dict().items())


_OUTCOME = {BounceKind.HARD: "hard", BounceKind.SOFT: "soft", BounceKind.COMPLAINT: "complaints"}


class ReturnsReader:
    """Handles returned messages for one deployment (its bounce address and key)."""

    def __init__(self, engine: Engine, *, key: bytes, bounce_address: str | None) -> None:
        self.engine = engine
        self.key = key
        self.bounce_address = bounce_address
        self._keys = AddressKeys(key)
        self._verp: re.Pattern[str] | None = None
        if bounce_address:
            local, _, domain = bounce_address.rpartition("@")
            pattern = _VERP_SHAPE.format(local=re.escape(local), domain=re.escape(domain))
            self._verp = re.compile(pattern, re.IGNORECASE)

    def handle(self, raw: bytes) -> str:
        """Handle one message; its outcome: a `Counts` field name. A database error
        is raised (the message can be handled later); nothing the message holds is."""
        try:
            message = message_from_bytes(raw, policy=policy.compat32)
            report = parse_report(message)
            own_id = str(message.get("Message-ID") or "").strip()
        except Exception as exc:  # hostile input to parsers we do not own:
            # flufl.bounce raises IndexError without a From, the email package
            # RecursionError on deep nesting ...: this message only, never the rest.
            log.warning(
                "a returned message could not be parsed (%s); left for a person",
                type(exc).__name__,
            )
            return "unrecognised"
        if report is None:
            return "unrecognised"
        report_id = "r:" + hashlib.sha256(own_id.encode() if own_id else raw).hexdigest()[:40]
        with session_scope(self.engine) as session:
            delivery_id = self._delivery(session.connection(), raw, report)
            if delivery_id is None:
                return "unverified"
            complaint = report.kind is BounceKind.COMPLAINT
            event = ProviderEvent(
                EventKind.COMPLAINED if complaint else EventKind.BOUNCED,
                Channel.EMAIL,
                delivery_id=delivery_id,
                report_id=report_id,
                hard=report.kind is BounceKind.HARD,
                status=report.status,
            )
            recorded = record(session, event)
        return _OUTCOME[report.kind] if recorded else "duplicates"

    def _delivery(self, conn: Connection, raw: bytes, report: Report) -> int | None:
        """The delivery the report proves it is about, else None (see the module)."""
        if self.bounce_address and self._verp is not None:
            text = raw.decode("utf-8", "replace")
            for address in [*report.to, *self._verp.findall(text)]:
                found = delivery_of(address, self.bounce_address, self.key)
                if found is not None:
                    return found
            return None
        about = {self._keys.email(address) for address in report.recipients}
        for message_id in report.message_ids:
            found = delivery_of_message_id(message_id, self.key)
            if found is None:
                continue
            target = delivery_target(conn, found)
            if target is not None and target[2] is not None and target[2] in about:
                return found
        return None


def messages_at(path: Path) -> Iterator[bytes]:
    """The raw messages of a Maildir folder, an mbox file or a folder of `.eml` files."""
    if path.is_dir():
        if (path / "cur").is_dir() and (path / "new").is_dir():
            maildir = mailbox.Maildir(path, create=False)
            for key in sorted(maildir.keys()):
                yield maildir.get_bytes(key)
            return
        for file in sorted(path.glob("*.eml")):
            yield file.read_bytes()
        return
    if not path.is_file():
        raise InputError(f"{path}: no such file or folder")
    with path.open("rb") as head:
        if head.read(5) != b"From ":
            raise InputError(f"{path}: not an mbox file (nor a Maildir or a folder of .eml)")
    box = mailbox.mbox(path, create=False)
    try:
        for key in box.iterkeys():
            yield box.get_bytes(key)
    finally:
        box.close()


def import_returns(reader: ReturnsReader, path: Path) -> Counts:
    """Handle every message at `path` (see `messages_at`)."""
    counts = Counts()
    for raw in messages_at(path):
        counts.add(reader.handle(raw))
    return counts
