"""The unsubscribe endpoint behind every email footer and `List-Unsubscribe` header, and
the web copy of an email (`/v/{token}`). `unsubscribe_server.py` serves `create_app()`.
README: "The unsubscribe endpoint".
"""

# The app
from dispatcher.web.app import create_app

# Limits and headers
from dispatcher.web.limits import MAX_BODY, MAX_PATH, MAX_QUERY, SECURITY_HEADERS

__all__ = ["MAX_BODY", "MAX_PATH", "MAX_QUERY", "SECURITY_HEADERS", "create_app"]
