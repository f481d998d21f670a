"""The SMS channel: text, transports (Kavenegar, outbox), holds, send window, sync, inbox."""
