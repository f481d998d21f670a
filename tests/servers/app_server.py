"""One of our ASGI apps under uvicorn, in its own process, as production runs it."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import threading
from pathlib import Path

from tests.servers.kavenegar_server import REPO_ROOT, stop_process

# Settings a developer's shell may carry: the server starts from what the test gives.
CLEARED = ("SMTP_", "REDIS_", "DATABASE_", "KAVENEGAR_", "UNSUBSCRIBE_", "SMS_", "API_")
_RUNNING = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class AppServer:
    """`uvicorn TARGET` on a free loopback port; `url` is its base URL."""

    def __init__(self, target: str, env: dict[str, str], log_path: Path, timeout: float = 60.0):
        environ = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED)}
        environ.update(PYTHONPATH=str(REPO_ROOT), **env)
        command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", "0"]
        self.log_path = log_path
        self._drain = None
        self.proc = subprocess.Popen(
            [*command, "--no-access-log"], cwd=REPO_ROOT, env=environ, stderr=subprocess.PIPE
        )
        assert self.proc.stderr is not None
        port, lines = None, []
        while port is None:
            ready, _, _ = select.select([self.proc.stderr], [], [], timeout)
            line = self.proc.stderr.readline() if ready else b""
            if not line:
                self.stop()
                output = b"".join(lines).decode(errors="replace")
                raise RuntimeError(f"uvicorn {target} did not start within {timeout}s:\n{output}")
            lines.append(line)
            found = _RUNNING.search(line)
            port = int(found[1]) if found else None
        self.url = f"http://127.0.0.1:{port}"
        self._drain: threading.Thread | None = None
        log_path.write_bytes(b"".join(lines))
        self._drain = threading.Thread(target=self._keep_log, daemon=True)
        self._drain.start()

    def _keep_log(self) -> None:
        assert self.proc.stderr is not None
        with self.log_path.open("ab") as log:
            for line in self.proc.stderr:
                log.write(line)
                log.flush()

    def stop(self) -> None:
        stop_process(self.proc)
        if self._drain is not None:
            self._drain.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
