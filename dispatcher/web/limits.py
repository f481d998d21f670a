"""Limits and headers, in front of every endpoint (a pure ASGI middleware)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatcher.asgi import replaying

if TYPE_CHECKING:
    from dispatcher.web.pages import Pages

MAX_PATH = 200  # bytes; a token URL is 38 (50 with /resubscribe)
MAX_QUERY = 1024  # bytes; ignored, but tolerated (a mail client may add tracking parameters)
MAX_BODY = 4096  # bytes; a one-click body is 26

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}


class Guard:
    """Refuses an oversized path or query (414) or body (413), or a bad Content-Length
    (400), before any work is done; adds `SECURITY_HEADERS` to every answer.

    The body is read here, at most `max_body` bytes (a larger Content-Length is refused
    unread, a longer stream as soon as it passes the limit), and handed on whole.
    Refusals are rendered with the app's `state.web.pages`, set at start-up.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_path: int = MAX_PATH,
        max_query: int = MAX_QUERY,
        max_body: int = MAX_BODY,
    ) -> None:
        self.app = app
        self.max_path = max_path
        self.max_query = max_query
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        status = self._refused(scope)
        body = b""
        if status is None:
            read = await self._read_body(receive)
            if read is None:
                return  # the client went away
            if len(read) > self.max_body:
                status = 413
            body = read
        if status is not None:
            pages: Pages = scope["app"].state.web.pages
            response = pages.error(status, headers={"Connection": "close"})
            await response(scope, receive, secured)
            return

        await self.app(scope, replaying(body, receive), secured)

    def _refused(self, scope: Scope) -> int | None:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
        if len(raw_path) > self.max_path or len(scope.get("query_string", b"")) > self.max_query:
            return 414
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    return 400
                if int(value) > self.max_body:
                    return 413
        return None

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or its first `max_body + 1` bytes or so; None on disconnect."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk: bytes = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body or not message.get("more_body", False):
                return b"".join(chunks)
