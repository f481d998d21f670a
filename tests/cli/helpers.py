"""One way to run the `dispatcher` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
DISPATCHER = [sys.executable, "-m", "dispatcher"]
# Settings a developer's shell may carry: a test starts from the embedded defaults.
CLEARED = (
    "SMTP_",
    "REDIS_",
    "DATABASE_",
    "KAVENEGAR_",
    "UNSUBSCRIBE_",
    "SMS_",
    "BOUNCE_",
    "SUPPRESSION_",
    "API_",
)


def _environ(env: dict[str, str]) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED)}
    # SMS at any hour unless a test sets the window: the outbox keeps it, as Kavenegar does.
    environ.update(
        MAIL_FROM="فروشگاه نمونه <news@shop.example>",
        PYTHONPATH=str(ROOT),
        SMS_SEND_WINDOW="00:00-24:00",
    )
    environ.update(env)
    return environ


def run(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`dispatcher ARGS` in `workdir`, with `env` on top of a cleared environment."""
    return subprocess.run(
        [*DISPATCHER, *args],
        cwd=workdir,
        env=_environ(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def start(workdir: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """`run`, without waiting: the caller acts meanwhile, then `communicate()`s."""
    return subprocess.Popen(
        [*DISPATCHER, *args],
        cwd=workdir,
        env=_environ(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_with_input(
    workdir: Path, stdin: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`run`, with `stdin` on the command's standard input."""
    return subprocess.run(
        [*DISPATCHER, *args],
        cwd=workdir,
        env=_environ(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
