"""Tokens kept out of the server's access log: `/u/{token}` is logged as `/u/***`
(and a click's `/c/{token}`, which names a delivery, as `/c/***`).

A token is as good as the link in the member's email: whoever reads it can opt the
member out, or back in. uvicorn's access log (`uvicorn.access`) writes each request's
path; `install` adds `MaskTokens` to that logger, whatever configured its handlers.
"""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
_TOKEN = re.compile(r"(/[uc]/)[^/?#\s\"]+")  # unsubscribe and click tokens


def mask_tokens(text: str) -> str:
    """`text` with the token of every `/u/{token}` and `/c/{token}` path replaced by `***`."""
    return _TOKEN.sub(r"\1***", text)


class MaskTokens(logging.Filter):
    """Masks unsubscribe tokens in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask_tokens(a) if isinstance(a, str) else a for a in record.args)
        return True


def install(logger_name: str = ACCESS_LOGGER) -> None:
    """Add `MaskTokens` to the access logger (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, MaskTokens) for f in logger.filters):
        logger.addFilter(MaskTokens())
