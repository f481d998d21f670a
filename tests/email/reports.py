"""Returned mail as mailbox providers send it: an RFC 3464 DSN and an RFC 5965 ARF report."""

from __future__ import annotations


def dsn(
    *,
    to: str,
    message_id: str,
    status: str = "5.1.1",
    action: str = "failed",
    own_id: str = "<dsn-1@mx.example.net>",
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
        "Final-Recipient: rfc822; gone@example.com\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        "\r\n"
        "--B1\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        "From: news@shop.example\r\n"
        "To: gone@example.com\r\n"
        f"Message-ID: {message_id}\r\n"
        "Subject: Yalda\r\n"
        "\r\n"
        "--B1--\r\n"
    ).encode()


def arf(*, message_id: str, own_id: str = "<arf-1@fbl.example.net>") -> bytes:
    """A feedback-loop complaint (abuse) carrying the original message."""
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
        "From: news@shop.example\r\n"
        "To: b@example.com\r\n"
        f"Message-ID: {message_id}\r\n"
        "Subject: Yalda\r\n"
        "\r\n"
        "Hello\r\n"
        "--B2--\r\n"
    ).encode()


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
