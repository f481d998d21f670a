"""The `dispatcher` command as a user runs it: a fresh folder holding the example campaigns,
and the command itself run in this process (Typer's CliRunner)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from dispatcher.cli import app
from dispatcher.runtime import set_runtime
from dispatcher.settings import Settings, get_settings
from tests.cli.helpers import CLEARED, ROOT

Cli = Callable[..., Result]


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    shutil.copytree(ROOT / "campaigns", tmp_path / "campaigns")
    yield tmp_path


def settings_env(s: Settings) -> dict[str, str]:
    """The environment that gives a command the settings of a test's `Settings`."""
    assert s.unsubscribe_secret is not None and s.suppression_key is not None
    return {
        "DATABASE_URL": s.database_url,
        "OUTBOX_DIR": str(s.outbox_dir),
        "UNSUBSCRIBE_SECRET": s.unsubscribe_secret.get_secret_value(),
        "SUPPRESSION_KEY": s.suppression_key.get_secret_value(),
        "UNSUBSCRIBE_BASE_URL": s.unsubscribe_base_url,
        "MAIL_FROM": s.mail_from or "",
    }


@pytest.fixture
def cli(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """`cli(*args, **env)`: `dispatcher ARGS` in this process, in `workdir`, with `env`
    on top of a cleared environment; settings are read afresh for each command."""
    monkeypatch.chdir(workdir)  # no .env of the developer's
    for name in [n for n in os.environ if n.startswith(CLEARED)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MAIL_FROM", "فروشگاه نمونه <news@shop.example>")
    monkeypatch.setenv("SMS_SEND_WINDOW", "00:00-24:00")
    runner = CliRunner()

    def invoke(*args: str, **env: str) -> Result:
        get_settings.cache_clear()
        previous = set_runtime(None)
        try:
            return runner.invoke(app, list(args), env=env)
        finally:
            built = set_runtime(previous)
            if built is not None and built is not previous:
                built.close()
            get_settings.cache_clear()

    yield invoke
