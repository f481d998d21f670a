"""SMS outbox mode: each message becomes one JSON line, for the demo and local work.

`OUTBOX_DIR/sms/<campaign>.jsonl`, one object per line: `localid` (the delivery id),
`campaign`, `receptor`, `message`, `parts`, `encoding`, `at` (UTC, ISO 8601). Lines are
appended whole under an exclusive lock (a thread lock, and `flock` for the other
worker processes), so concurrent senders never interleave.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dispatcher.sms.text import measure
from dispatcher.sms.transport import SmsResult


class SmsOutbox:
    """Writes SMS to JSON-lines files instead of a provider."""

    paces_calls = False  # the caller takes a rate slot per message (there is no ceiling)

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SmsOutbox({str(self.directory)!r})"

    def send(self, *, receptor: str, message: str, localid: int, campaign: str) -> SmsResult:
        length = measure(message)
        record = {
            "localid": localid,
            "campaign": campaign,
            "receptor": receptor,
            "message": message,
            "parts": length.parts,
            "encoding": length.encoding,
            "at": datetime.now(UTC).isoformat(),
        }
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        path = self.directory / f"{_safe(campaign)}.jsonl"
        with self._lock:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)  # also releases the flock
        return SmsResult(messageid=None, cost=None, status=None)

    def status_by_localid(self, localid: int) -> SmsResult | None:
        """Whether a line with this localid was written (a scan: outbox mode is small)."""
        for record in self.records():
            if record.get("localid") == localid:
                return SmsResult(messageid=None, cost=None, status=None)
        return None

    def records(self, campaign: str | None = None) -> list[dict[str, Any]]:
        """Every message written (of one campaign, or all), oldest first per file."""
        pattern = f"{_safe(campaign)}.jsonl" if campaign else "*.jsonl"
        out: list[dict[str, Any]] = []
        for path in sorted(self.directory.glob(pattern)):
            with open(path, encoding="utf-8") as f:
                out.extend(json.loads(line) for line in f if line.strip())
        return out

    def close(self) -> None:
        return None


def _safe(campaign: str) -> str:
    """A campaign slug as a file name (slugs are validated; this is belt and braces)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in campaign) or "sms"
