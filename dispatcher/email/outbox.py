"""Outbox mode: each message becomes a file, for the demo and for local development."""

from __future__ import annotations

import os
from pathlib import Path


class OutboxTransport:
    """Writes `<dir>/<name>.eml` atomically (tmp file, then rename)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"OutboxTransport({str(self.directory)!r})"

    async def send(self, *, sender: str, recipient: str, message: bytes, name: str) -> None:
        target = self.directory / f"{name}.eml"
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(message)
        os.replace(tmp, target)

    async def close(self) -> None:
        return None
