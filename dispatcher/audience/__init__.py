"""Who receives: members, their addresses, their consent, and unsubscribe tokens."""
