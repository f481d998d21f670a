"""The real entry points in their own processes (every other CLI test runs in-process):
the `dispatcher` console script, its imports, and the scheduler stopping on a signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dispatcher.cli.app import ChannelOption, RoleOption
from dispatcher.store.models import Channel, StaffRole
from tests.cli.helpers import ROOT, run, run_process, start
from tests.eventually import eventually

HEAVY = ("sqlalchemy", "sqlmodel", "pydantic", "pydantic_settings", "dramatiq", "rich", "jinja2")


def loaded_after(code: str) -> set[str]:
    """The top-level packages of HEAVY a fresh interpreter has loaded after `code`."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split()) & set(HEAVY)


def test_the_console_script_answers_help_and_a_usage_error_as_a_user_sees_them(
    workdir: Path,
) -> None:
    helped = run_process(workdir, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "Usage: dispatcher" in helped.stdout
    for group in ("members", "campaign", "sms", "bounces", "api-key", "db", "scheduler"):
        assert group in helped.stdout
    wrong = run_process(workdir, "campaign", "sned")
    assert wrong.returncode == 2 and "No such command 'sned'" in wrong.stderr


def test_the_console_script_runs_a_command_on_the_embedded_defaults(workdir: Path) -> None:
    imported = run_process(workdir, "members", "import", "campaigns/members.csv")
    assert imported.returncode == 0, imported.stderr
    listed = run(workdir, "campaign", "list")  # the same database, read in-process
    assert listed.returncode == 0, listed.stderr


def test_help_loads_no_database_settings_queue_or_template_library() -> None:
    assert loaded_after("import dispatcher") == set()
    assert loaded_after("import dispatcher.cli") == set()
    assert (
        loaded_after(
            "import sys; sys.argv = ['dispatcher', '--help']\n"
            "from dispatcher.cli import run\n"
            "try:\n    run()\nexcept SystemExit:\n    pass"
        )
        == set()
    )


def test_importing_the_workers_builds_no_broker() -> None:
    probe = (
        "import dispatcher.workers, dramatiq.broker\nassert dramatiq.broker.global_broker is None"
    )
    assert "dramatiq" in loaded_after(probe)  # and the assertion held


def test_a_redis_or_inline_process_loads_no_rabbitmq_client() -> None:
    # pika and Dramatiq's RabbitmqBroker are loaded by a process that makes one, not by
    # every `campaign send` and worker (a tenth of a second of start-up each).
    probe = (
        "import dispatcher.workers, dispatcher.queue.expansion, dispatcher.inline\n"
        "from dispatcher.queue.broker import build_broker, is_rabbitmq\n"
        "from dispatcher.settings import Settings\n"
        "broker = build_broker(Settings(redis_url='redis://127.0.0.1:6379/15'))\n"
        "assert not is_rabbitmq(broker)\n"
        "import sys\nassert 'pika' not in sys.modules, 'pika loaded'"
    )
    assert "dramatiq" in loaded_after(probe)  # and the assertions held


def test_the_channel_choices_of_the_command_are_the_stores_channels() -> None:
    assert [c.value for c in ChannelOption] == [c.value for c in Channel]
    assert [r.value for r in RoleOption] == [r.value for r in StaffRole]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_scheduler_stops_cleanly_on_a_signal(workdir: Path, sig: signal.Signals) -> None:
    proc = start(workdir, "scheduler", SCHEDULER_INTERVAL="0.05")
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()
    try:
        eventually(lambda: lines or proc.poll() is not None, timeout=60, what="a start line")
        assert lines and lines[0].startswith("scheduler: every 0.05s"), lines
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(10)
    assert proc.returncode == 0, "".join(lines)
    assert "Traceback" not in "".join(lines)
