"""The API's limits: a body size cap (a pure ASGI middleware) and a rate per key."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from dispatcher.asgi import replaying

MAX_BODY = 1024 * 1024  # bytes: a batch of 1,000 members is about 200 KiB


class BodyLimit:
    """Answers 413 to a body over `max_body` bytes before the endpoint runs: at once for
    a larger Content-Length, as soon as a streamed body passes the limit otherwise."""

    def __init__(self, app: ASGIApp, *, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    def _too_big(self, length: bytes) -> bool:
        """Whether a Content-Length of ASCII digits passes the limit (read without
        `int()` of a 5,000-digit value)."""
        digits = length.lstrip(b"0") or b"0"
        return len(digits) > len(str(self.max_body)) or int(digits) > self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or self._too_big(value)):
                await _refuse(send, 413 if value.isdigit() else 400)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _refuse(send, 413)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        await self.app(scope, replaying(body, receive), send)


_REASONS = {400: "bad Content-Length", 413: f"the body is over {MAX_BODY} bytes"}


async def _refuse(send: Send, status: int) -> None:
    body = json.dumps({"error": _REASONS[status]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RateLimit:
    """A token bucket per key: `rate` requests per second, bursts of `rate` (at least 1).
    In this process only: N API processes allow N times the rate."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def wait(self, key: str) -> int:
        """Take a token for `key`: 0 if there was one, else the seconds to wait."""
        with self._lock:
            now = self.clock()
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / self.rate))
