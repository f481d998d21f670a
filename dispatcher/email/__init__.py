"""The email channel: message bytes, and the transports (SMTP, outbox folder)."""
