"""The `dispatcher` command as a user runs it: `run` (and `run_with_input`) in this
process (Typer's CliRunner, through the console script's own `run()`), `start` in a
subprocess for the few tests that act while it runs or that check the real entry point.

An in-process run starts as fresh as a new process would: a cleared environment with
the test's variables on top, settings read once at its start, and no settings, runtime,
broker, logging handlers or signal handlers left behind for the next one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dramatiq.broker
from typer.testing import CliRunner

import dispatcher.cli
from dispatcher.queue.broker import use_broker
from dispatcher.runtime import set_runtime
from dispatcher.settings import get_settings

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
# SMS at any hour unless a test sets the window: the outbox keeps it, as Kavenegar does.
DEFAULTS = {
    "MAIL_FROM": "فروشگاه نمونه <news@shop.example>",
    "SMS_SEND_WINDOW": "00:00-24:00",
}


@dataclass(frozen=True)
class Ran:
    """What a finished `dispatcher` run left: as `subprocess.CompletedProcess` names it."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def _environ(env: dict[str, str]) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED)}
    environ.update(DEFAULTS, PYTHONPATH=str(ROOT))
    environ.update(env)
    return environ


def run(workdir: Path, *args: str, **env: str) -> Ran:
    """`dispatcher ARGS` in `workdir`, with `env` on top of a cleared environment."""
    return _run(workdir, args, env)


def run_with_input(workdir: Path, stdin: str, *args: str, **env: str) -> Ran:
    """`run`, with `stdin` on the command's standard input."""
    return _run(workdir, args, env, stdin)


def _run(
    workdir: Path, args: tuple[str, ...], env: dict[str, str], stdin: str | None = None
) -> Ran:
    changes: dict[str, str | None] = {k: None for k in os.environ if k.startswith(CLEARED)}
    changes.update(DEFAULTS)
    changes.update(env)
    isolation = CliRunner().isolation(input=stdin, env=changes)
    with _fresh_process(workdir), isolation as (out, err, _):
        try:
            dispatcher.cli.run(list(args))
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except Exception:  # what the interpreter does with an uncaught exception
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return Ran(args, code, stdout, stderr)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)  # `SystemExit("message")`: printed, status 1
    return 1


@contextlib.contextmanager
def _fresh_process(workdir: Path) -> Iterator[None]:
    """Working directory, settings, runtime, broker, logging and signal handlers as a new
    process has them, put back afterwards."""
    cwd = os.getcwd()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    signals = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    broker = dramatiq.broker.global_broker
    root.handlers.clear()  # a new process has none: `logging.basicConfig` adds its own
    get_settings.cache_clear()
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(cwd)
        get_settings.cache_clear()
        runtime = set_runtime(None)
        if runtime is not None:
            runtime.close()
        if broker is not None and dramatiq.broker.global_broker is not broker:
            use_broker(broker)
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        for sig, handler in signals.items():
            signal.signal(sig, handler)


def start(workdir: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """`dispatcher ARGS` in a subprocess, without waiting: the caller acts meanwhile,
    then `communicate()`s."""
    return subprocess.Popen(
        [*DISPATCHER, *args],
        cwd=workdir,
        env=_environ(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_process(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`dispatcher ARGS` in a subprocess through the console script, as a user runs it."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("dispatcher")), *args],
        cwd=workdir,
        env=_environ(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
