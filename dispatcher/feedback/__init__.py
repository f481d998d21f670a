"""Follow-up workflows after sending: what providers tell us, recorded as one event."""
