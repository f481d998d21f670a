"""The unsubscribe endpoint behind every email footer and `List-Unsubscribe` header.

    GET  /u/{token}              a page with a button; changes nothing (mail scanners
                                 and link previewers open every link)
    POST /u/{token}              opts the member out of the token's channel: from that
                                 button (source `link`) or as an RFC 8058 one-click
                                 request, body `List-Unsubscribe=One-Click` (`one-click`)
    POST /u/{token}/resubscribe  the undo button of the confirmation page
    GET  /healthz                200 when the database answers

Every answer is a page with the same security headers: no redirect, no cookie, no
script. A bad token (malformed, tampered with, truncated, signed by no configured key,
or naming no member) gets the same 400 page, and `TokenSigner.verify` costs the same
however much of it was right. A request whose path or body is too large is refused
before any work is done. No database call runs on the event loop. The opt-out is
committed before the answer is sent or, on SQLite when another process holds the
write lock, kept in a journal on disk and recorded once the lock frees; the workers
read consent at send time, so a delivery still queued is skipped.

`unsubscribe_server.py` at the top level is `create_app()`, for uvicorn.
"""

# The app
from dispatcher.web.app import create_app

# Limits and headers
from dispatcher.web.limits import MAX_BODY, MAX_PATH, MAX_QUERY, SECURITY_HEADERS

__all__ = ["MAX_BODY", "MAX_PATH", "MAX_QUERY", "SECURITY_HEADERS", "create_app"]
