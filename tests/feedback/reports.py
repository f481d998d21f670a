"""Returned mail as mailbox providers send it: an RFC 3464 DSN and an RFC 5965 ARF report."""

from __future__ import annotations


def dsn(
    *,
    to: str,
    message_id: str,
    status: str = "5.1.1",
    action: str = "failed",
    own_id: str = "<dsn-1@mx.example.net>",
    recipient: str = "gone@example.com",
) -> bytes:
    """A delivery status notification about one recipient, with the original's headers."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {own_id}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n'
        "\r\n"
        "--B1\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "Your message could not be delivered.\r\n"
        "--B1\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        "\r\n"
        "--B1\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        "From: news@shop.example\r\n"
        f"To: {recipient}\r\n"
        f"Message-ID: {message_id}\r\n"
        "Subject: Yalda\r\n"
        "\r\n"
        "--B1--\r\n"
    ).encode()


def arf(
    *,
    message_id: str,
    own_id: str = "<arf-1@fbl.example.net>",
    recipient: str = "b@example.com",
    return_path: str = "news@shop.example",
) -> bytes:
    """A feedback-loop complaint (abuse) carrying the original message (whose
    Return-Path is the envelope sender: the VERP address when there is one)."""
    return (
        "From: Feedback Loop <fbl@example.net>\r\n"
        "To: abuse@shop.example\r\n"
        "Subject: Complaint\r\n"
        f"Message-ID: {own_id}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="B2"\r\n'
        "\r\n"
        "--B2\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "This is an abuse report.\r\n"
        "--B2\r\n"
        "Content-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\n"
        "User-Agent: ExampleFBL/1.0\r\n"
        "Version: 1\r\n"
        "\r\n"
        "--B2\r\n"
        "Content-Type: message/rfc822\r\n\r\n"
        f"Return-Path: <{return_path}>\r\n"
        "From: news@shop.example\r\n"
        f"To: {recipient}\r\n"
        f"Message-ID: {message_id}\r\n"
        "Subject: Yalda\r\n"
        "\r\n"
        "Hello\r\n"
        "--B2--\r\n"
    ).encode()


def without_from(*, message_id: str) -> bytes:
    """A bounce-like note without a From header (flufl.bounce raises IndexError)."""
    return (
        "To: bounces@shop.example\r\n"
        "Subject: Undeliverable\r\n"
        "\r\n"
        "The following address(es) failed:\r\n\r\n  gone@example.com\r\n\r\n"
        f"Message-ID: {message_id}\r\n"
    ).encode()


def deeply_nested(depth: int = 3000) -> bytes:
    """A multipart nested `depth` deep (the email package recurses on each level)."""
    head = "From: x@example.net\r\nTo: bounces@shop.example\r\nSubject: deep\r\n"
    lines = [head + 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b0"\r\n']
    for level in range(1, depth):
        lines.append(f'--b{level - 1}\r\nContent-Type: multipart/mixed; boundary="b{level}"\r\n')
    lines.append(f"--b{depth - 1}\r\nContent-Type: text/plain\r\n\r\nhi\r\n")
    lines.extend(f"--b{level}--\r\n" for level in reversed(range(depth)))
    return "\r\n".join(lines).encode()


def plain() -> bytes:
    return b"From: someone@example.net\r\nTo: bounces@shop.example\r\nSubject: hi\r\n\r\nhello\r\n"


def exim(*, to: str, message_id: str) -> bytes:
    """A bounce in Exim's own format (no DSN), the original returned inline."""
    return (
        "Return-path: <>\r\n"
        "From: Mail Delivery System <Mailer-Daemon@mx.example.net>\r\n"
        f"To: {to}\r\n"
        "X-Failed-Recipients: gone@example.com\r\n"
        "Subject: Mail delivery failed: returning message to sender\r\n"
        "Message-Id: <E1OLFV6@mx.example.net>\r\n"
        "\r\n"
        "This message was created automatically by mail delivery software.\r\n\r\n"
        "A message that you sent could not be delivered to one or more of its\r\n"
        "recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
        "  gone@example.com\r\n"
        "    host mx.example.com [192.0.2.4]: 550 5.1.1 user unknown\r\n\r\n"
        "------ This is a copy of the message, including all the headers. ------\r\n\r\n"
        f"Message-ID: {message_id}\r\n"
        "From: news@shop.example\r\n"
        "To: gone@example.com\r\n"
        "Subject: Yalda\r\n\r\nHello\r\n"
    ).encode()
