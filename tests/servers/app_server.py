"""One of our ASGI apps under uvicorn, in its own process, as production runs it."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.servers.kavenegar_server import REPO_ROOT, stop_process

# Settings a developer's shell may carry: the server starts from what the test gives.
CLEARED = (
    "SMTP_",
    "REDIS_",
    "DATABASE_",
    "KAVENEGAR_",
    "UNSUBSCRIBE_",
    "SMS_",
    "API_",
    "SUPPRESSION_",
    "BOUNCE_",
)
_RUNNING = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class AppServer:
    """`uvicorn TARGET` on a free loopback port; `url` is its base URL. Its output goes
    to `log_path`; the port is read from the line uvicorn prints once it listens."""

    def __init__(
        self, target: str, env: dict[str, str], log_path: Path, timeout: float = 60.0
    ) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED)}
        environ.update(PYTHONPATH=str(REPO_ROOT), **env)
        command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", "0"]
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [*command, "--no-access-log"], cwd=REPO_ROOT, env=environ, stderr=subprocess.PIPE
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        port = None
        while port is None:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = b""
            if not line:  # timed out, or the process ended
                self.stop()
                output = log_path.read_text(errors="replace")
                raise RuntimeError(f"uvicorn {target} did not start within {timeout}s:\n{output}")
            found = _RUNNING.search(line)
            port = int(found[1]) if found else None
        self.url = f"http://127.0.0.1:{port}"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with self.log_path.open("ab") as log:
            for line in self.proc.stderr:
                log.write(line)
                log.flush()
                self._lines.put(line)
        self._lines.put(b"")

    def stop(self) -> None:
        stop_process(self.proc)
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
