"""The bounce mailbox over IMAP (`BOUNCE_IMAP_URL`): read what is new, mark it handled.

`imaps://user:password@host[:port]/MAILBOX` is TLS from the start; `imap://` upgrades
with STARTTLS when the server offers it, and is used plain only on loopback. A message
handled (recorded in the database) gets the keyword `$DispatcherHandled` and `\\Seen`,
so the next fetch skips it (an unrecognised or unverified one gets the keyword only:
it stays unread for a person); one that could not be handled (a database error)
stays for the next fetch.
"""

from __future__ import annotations

import contextlib
import imaplib
import ipaddress
import re
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from dispatcher.errors import ConfigurationError, DispatcherError
from dispatcher.feedback.returns import Counts, ReturnsReader

HANDLED = "$DispatcherHandled"
LEFT_FOR_A_PERSON = ("unrecognised", "unverified")
BATCH = 50
_LOOPBACK_NAMES = ("localhost",)


class MailboxError(DispatcherError):
    """Raised when the bounce mailbox cannot be reached or read."""


@dataclass(frozen=True)
class ImapTarget:
    secure: bool
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    mailbox: str = "INBOX"


def parse_imap_url(url: str) -> ImapTarget:
    """BOUNCE_IMAP_URL, parsed; a bad one raises `ConfigurationError` (password not shown)."""
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps") or not parts.hostname or not parts.username:
        raise ConfigurationError(
            "BOUNCE_IMAP_URL must be imaps://user:password@host/MAILBOX (or imap://)"
        )
    secure = parts.scheme == "imaps"
    return ImapTarget(
        secure=secure,
        host=parts.hostname,
        port=parts.port or (993 if secure else 143),
        user=unquote(parts.username),
        password=unquote(parts.password or ""),
        mailbox=unquote(parts.path.lstrip("/")) or "INBOX",
    )


def _loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _connect(target: ImapTarget, timeout: float) -> imaplib.IMAP4:
    context = ssl.create_default_context()
    if target.secure:
        return imaplib.IMAP4_SSL(target.host, target.port, ssl_context=context, timeout=timeout)
    client = imaplib.IMAP4(target.host, target.port, timeout=timeout)
    if "STARTTLS" in client.capabilities:
        client.starttls(ssl_context=context)
    elif not _loopback(target.host):
        client.shutdown()
        raise MailboxError(
            f"{target.host} offers no STARTTLS: use imaps://, or plain imap:// on loopback only"
        )
    return client


def fetch_returns(reader: ReturnsReader, url: str, *, timeout: float = 30.0) -> Counts:
    """Handle every message of the mailbox not yet marked handled; the counts."""
    target = parse_imap_url(url)
    counts = Counts()
    try:
        client = _connect(target, timeout)
        try:
            client.login(target.user, target.password)
            _check(client.select(_quoted(target.mailbox)), "select the mailbox")
            found = _check(client.uid("SEARCH", "UNKEYWORD", HANDLED), "search")
            uids = [u.decode() for u in found[0].split()] if found and found[0] else []
            for start in range(0, len(uids), BATCH):
                for uid, raw in _fetch(client, uids[start : start + BATCH]):
                    outcome = reader.handle(raw)
                    counts.add(outcome)
                    # What was not recorded stays unread, for a person to look at.
                    flags = HANDLED if outcome in LEFT_FOR_A_PERSON else f"{HANDLED} \\Seen"
                    _check(
                        client.uid("STORE", uid, "+FLAGS.SILENT", f"({flags})"),
                        "mark a message handled",
                    )
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()
    except (imaplib.IMAP4.error, OSError) as exc:
        raise MailboxError(f"bounce mailbox {target.host}: {exc}") from exc
    return counts


def _fetch(client: imaplib.IMAP4, uids: list[str]) -> list[tuple[str, bytes]]:
    data = _check(client.uid("FETCH", ",".join(uids), "(UID BODY.PEEK[])"), "fetch")
    out = []
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            found = re.search(rb"UID (\d+)", item[0])
            if found:
                out.append((found[1].decode(), item[1]))
    return out


def _check(answer: tuple[str, list[Any]], what: str) -> list[Any]:
    status, data = answer
    if status != "OK":
        raise MailboxError(f"could not {what}: {data!r}"[:300])
    return data


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
