"""A fast builder for the one message shape we send: multipart/alternative, text then HTML.

The standard library's `EmailMessage` goes through a generic policy and generator
that costs far more than the message itself. Our shape never varies, so the bytes
are written directly: headers folded and RFC 2047-encoded where non-ASCII, bodies in
base64 of UTF-8. Tests parse the result back with the standard library.
"""

from __future__ import annotations

import secrets
from binascii import b2a_base64
from dataclasses import dataclass
from email.utils import formataddr, formatdate, parseaddr

# UTF-8 bytes per RFC 2047 encoded-word: 42 bytes -> 56 base64 characters, so that
# "=?utf-8?b?...?=" is 68 characters and even the first line ("Subject: " + word)
# stays within the 78 that RFC 5322 recommends.
_WORD_BYTES = 42


def encode_header(value: str) -> str:
    """An unstructured header value, RFC 2047-encoded only when it is not ASCII.

    Written directly (B-encoding, words split on UTF-8 character boundaries, folded
    with CRLF + space): `email.header.Header` gives the same result at several times
    the cost, and a subject is encoded once per message.
    """
    if value.isascii():
        return value
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


def encode_address(value: str) -> str:
    """`Name <addr>` with the display name encoded when it is not ASCII."""
    name, addr = parseaddr(value)
    if not name:
        return addr
    return formataddr((name, addr), charset="utf-8")


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

    @classmethod
    def for_campaign(
        cls, *, mail_from: str, slug: str, campaign_name: str, reply_to: str | None = None
    ) -> MessageHeaders:
        _name, addr = parseaddr(mail_from)
        domain = addr.rpartition("@")[2] or "localhost"
        list_id = f"{encode_header(campaign_name)} <{slug}.{domain}>"
        return cls(
            from_header=encode_address(mail_from),
            list_id=list_id,
            domain=domain,
            reply_to=encode_address(reply_to) if reply_to else None,
        )

    def message_id(self, delivery_id: int) -> str:
        return f"<delivery-{delivery_id}@{self.domain}>"


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
    """The full RFC 5322 message as bytes, CRLF line endings."""
    if "\r" in to or "\n" in to:
        raise ValueError("line break in a recipient address")
    # Both parts are base64, which never holds "=_": the boundary cannot occur in them,
    # so it need not be random per message (a `getrandom` system call each, measured).
    boundary = f"=_{_RUN}.{delivery_id}"
    head = (
        f"From: {headers.from_header}\r\n"
        + (f"Reply-To: {headers.reply_to}\r\n" if headers.reply_to else "")
        + f"To: {to}\r\n"
        f"Subject: {encode_header(subject)}\r\n"
        f"Date: {date or formatdate(localtime=False, usegmt=True)}\r\n"
        f"Message-ID: {message_id or headers.message_id(delivery_id)}\r\n"
        f"List-Id: {headers.list_id}\r\n"
        f"List-Unsubscribe: <{unsubscribe_url}>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
    ).encode("ascii")
    mid = (
        f"--{boundary}\r\n"
        'Content-Type: text/html; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
    ).encode("ascii")
    tail = f"--{boundary}--\r\n".encode("ascii")
    return b"".join((head, _b64(text), mid, _b64(html), tail))
