"""What both actors need to know about Dramatiq's retries."""

from __future__ import annotations

from dramatiq.middleware import CurrentMessage


def is_last_attempt(max_retries: int) -> bool:
    """True when a transient failure now must be final (no retry is left).

    Outside a worker (a direct call, as in a script) there is no message to retry,
    so every attempt is the last.
    """
    message = CurrentMessage.get_current_message()
    if message is None:
        return True
    return int(message.options.get("retries", 0)) >= max_retries
