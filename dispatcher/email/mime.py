"""A fast builder for the one message shape we send: multipart/alternative, text then HTML.

The standard library's `EmailMessage` goes through a generic policy and generator
that costs far more than the message itself. Our shape never varies, so the bytes
are written directly: headers folded and RFC 2047-encoded where non-ASCII or too long, bodies in
base64 of UTF-8. Tests parse the result back with the standard library.
"""

from __future__ import annotations

import re
import secrets
from binascii import b2a_base64
from dataclasses import dataclass, field
from email.utils import formatdate, parseaddr

from dispatcher.controlchars import CONTROL, find_control
from dispatcher.email.address import wire_address
from dispatcher.email.verp import signed_message_id
from dispatcher.errors import MessageError

# UTF-8 bytes per RFC 2047 encoded-word: 42 bytes -> 56 base64 characters, so that
# "=?utf-8?b?...?=" is 68 characters and even the first line ("Subject: " + word)
# stays within the 78 that RFC 5322 recommends.
_WORD_BYTES = 42
LINE = 78  # RFC 5322: lines should stay within 78 characters, must within 998
MAX_LINE = 998
# A display name that needs no quoting: atext and spaces (RFC 5322 3.2.3).
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*")


def check_header(name: str, value: str) -> None:
    """Raise MessageError when `value` carries a control character (CR, LF, ...):
    written into a header it would end it and start another."""
    if CONTROL.search(value) is not None:
        raise MessageError(f"{name}: control character {find_control(value)} in a header value")


def encode_header(value: str, *, name: str = "Subject") -> str:
    """An unstructured header value, folded to lines of at most 78 characters.

    ASCII that fits is returned as it is (the fast path); longer ASCII is folded at
    its spaces; non-ASCII, or a word too long to fold, becomes RFC 2047 encoded-words
    (B-encoding, split on UTF-8 character boundaries, one per line).
    """
    if value.isascii():
        if len(value) + len(name) + 2 <= LINE:
            return value
        folded = _fold(value, len(name) + 2)
        if folded is not None:
            return folded
    return _encoded_words(value)


def encode_phrase(value: str, *, name: str) -> str:
    """A display name (From's, List-Id's): as it is when made of atoms, else encoded."""
    if value.isascii() and _ATOMS.fullmatch(value) and "=?" not in value:
        folded = _fold(value, len(name) + 2)
        if folded is not None:
            return folded
    return _encoded_words(value)


def _fold(value: str, used: int) -> str | None:
    """`value` folded at spaces into lines within LINE (the first after `used`
    characters of header name); None when one word is too long for a line."""
    lines: list[str] = []
    current: str | None = None
    room = LINE - used
    for word in value.split(" "):
        if current is None:
            current = word
        elif len(current) + 1 + len(word) <= room:
            current += " " + word
        else:
            lines.append(current)
            current, room = word, LINE - 1  # a continuation line starts with the space
        if len(current) > room:
            return None
    lines.append(current or "")
    return "\r\n ".join(lines)


def _after_colon(name: str, word: str) -> str:
    """` word`, or the word on a line of its own when it would not fit after the name
    (an address or a URL cannot be folded inside)."""
    return f" {word}" if len(name) + 2 + len(word) <= LINE else f"\r\n {word}"


def _encoded_words(value: str) -> str:
    """Written directly: `email.header.Header` gives the same at several times the cost."""
    data = value.encode("utf-8")
    words: list[str] = []
    start, size = 0, len(data)
    while start < size:
        end = min(start + _WORD_BYTES, size)
        while end < size and data[end] & 0xC0 == 0x80:  # never split a character
            end -= 1
        words.append(f"=?utf-8?b?{b2a_base64(data[start:end], newline=False).decode()}?=")
        start = end
    return "\r\n ".join(words)


def encode_address(value: str, *, name: str = "From") -> str:
    """`Name <addr>`, the name encoded when it is not plain ASCII, folded; the domain
    IDNA-encoded."""
    check_header(name, value)
    display, addr = parseaddr(value)
    addr = wire_address(addr)
    if not display:
        return addr
    return _with_phrase(encode_phrase(display, name=name), f"<{addr}>", name=name)


def _with_phrase(phrase: str, angle: str, *, name: str) -> str:
    """`phrase <addr>`, the angle part on a line of its own when it would not fit."""
    _before, newline, last = phrase.rpartition("\n")
    used = len(last) if newline else len(name) + 2 + len(last)
    sep = " " if used + 1 + len(angle) <= LINE else "\r\n "
    return f"{phrase}{sep}{angle}"


def _b64(text: str) -> bytes:
    """Base64 of the UTF-8 text in lines of 76 characters, each ending in CRLF."""
    encoded = b2a_base64(text.encode("utf-8"), newline=False)
    if not encoded:
        return b""
    lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    lines.append(b"")
    return b"\r\n".join(lines)


@dataclass(frozen=True, slots=True)
class MessageHeaders:
    """The per-campaign part of the headers, encoded once."""

    from_header: str
    list_id: str
    domain: str
    reply_to: str | None = None  # encoded, or None for no Reply-To header
    key: bytes | None = field(default=None, repr=False)  # signs the Message-ID

    @classmethod
    def for_campaign(
        cls,
        *,
        mail_from: str,
        slug: str,
        campaign_name: str,
        reply_to: str | None = None,
        key: bytes | None = None,
    ) -> MessageHeaders:
        """`key` (SUPPRESSION_KEY) signs each delivery's Message-ID; without it only
        messages with a Message-ID of their own can be built (test copies)."""
        check_header("List-Id", campaign_name)
        check_header("List-Id", slug)
        from_header = encode_address(mail_from)
        domain = wire_address(parseaddr(mail_from)[1]).rpartition("@")[2] or "localhost"
        list_id = _with_phrase(
            encode_phrase(campaign_name, name="List-Id"), f"<{slug}.{domain}>", name="List-Id"
        )
        if reply_to:
            check_header("Reply-To", reply_to)
        return cls(
            from_header=from_header,
            list_id=list_id,
            domain=domain,
            reply_to=encode_address(reply_to) if reply_to else None,
            key=key,
        )

    def message_id(self, delivery_id: int) -> str:
        """The delivery's Message-ID, signed (`dispatcher.email.verp`): a report that
        quotes it can be matched to the delivery, and no one else can make one."""
        if self.key is None:
            raise MessageError("no key to sign the Message-ID with (SUPPRESSION_KEY)")
        return signed_message_id(self.key, delivery_id, self.domain)


_RUN = secrets.token_hex(6)  # this process's part of every boundary


def build_message(
    headers: MessageHeaders,
    *,
    to: str,
    subject: str,
    text: str,
    html: str,
    delivery_id: int,
    unsubscribe_url: str,
    date: str | None = None,
    message_id: str | None = None,
) -> bytes:
    """The full RFC 5322 message as bytes, CRLF line endings.

    Raises MessageError for a control character in a header value (the last line of
    defence against header injection) or a header line over 998 characters.
    """
    check_header("To", to)
    check_header("Subject", subject)
    check_header("List-Unsubscribe", unsubscribe_url)
    to = wire_address(to)
    if len(to) > MAX_LINE - 4 or len(unsubscribe_url) > MAX_LINE - 20:
        raise MessageError("a header line would be over 998 characters")
    # Both parts are base64, which never holds "=_": the boundary cannot occur in them,
    # so it need not be random per message (a `getrandom` system call each, measured).
    boundary = f"=_{_RUN}.{delivery_id}"
    head = (
        f"From: {headers.from_header}\r\n"
        + (f"Reply-To: {headers.reply_to}\r\n" if headers.reply_to else "")
        + f"To:{_after_colon('To', to)}\r\n"
        f"Subject: {encode_header(subject)}\r\n"
        f"Date: {date or formatdate(localtime=False, usegmt=True)}\r\n"
        f"Message-ID: {message_id or headers.message_id(delivery_id)}\r\n"
        f"List-Id: {headers.list_id}\r\n"
        f"List-Unsubscribe:{_after_colon('List-Unsubscribe', f'<{unsubscribe_url}>')}\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
    ).encode()  # only To may be UTF-8 (RFC 6532, sent with SMTPUTF8)
    mid = (
        f"--{boundary}\r\n"
        'Content-Type: text/html; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
    ).encode("ascii")
    tail = f"--{boundary}--\r\n".encode("ascii")
    return b"".join((head, _b64(text), mid, _b64(html), tail))
