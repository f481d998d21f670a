"""Transports: one small interface, several backends (SMTP, outbox folder, Kavenegar)."""

from dispatcher.transports.base import EmailTransport, build_email_transport

__all__ = ["EmailTransport", "build_email_transport"]
