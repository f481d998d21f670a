"""`dispatcher members ...` as a user runs it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import Session

from dispatcher.audience.consent import opt_out
from dispatcher.definition.sendtime import parse_send_at
from dispatcher.store.models import Channel, ConsentSource
from tests.cli.conftest import Cli, settings_env
from tests.cli.helpers import run
from tests.factories import Harness, add_member


def test_ids_typed_with_persian_digits_find_the_member_everywhere(workdir: Path) -> None:
    (workdir / "m.csv").write_text(
        "external_id,first_name,email\nM۲۰۱۰,Ali,ali@example.com\n", encoding="utf-8"
    )
    assert run(workdir, "members", "import", "m.csv").returncode == 0
    for typed in ("M2010", "M۲۰۱۰", "M٢٠١٠"):
        preview = run(
            workdir, "campaign", "preview", "campaigns/yalda-1405.toml", "--member", typed
        )
        assert preview.returncode == 0, preview.stderr
        assert "Ali" in preview.stdout
    subscribed = run(workdir, "members", "subscribe", "M۲۰۱۰", "--channel", "email")
    assert subscribed.returncode == 0, subscribed.stderr


def test_import_warns_about_control_characters_and_non_ascii_local_parts(workdir: Path) -> None:
    (workdir / "m.csv").write_text(
        "external_id,first_name,email\nC1,Ali\x07\x1b[31m,a@example.com\nC2,Sara,üser@example.com\n",
        encoding="utf-8",
    )
    result = run(workdir, "members", "import", "m.csv")
    assert result.returncode == 0, result.stderr
    assert "m.csv:2: first_name: control characters removed" in result.stderr
    assert "m.csv:3: email:" in result.stderr and "SMTPUTF8" in result.stderr
    assert "\x1b" not in result.stdout + result.stderr


def test_since_reads_a_time_without_offset_in_tehran_as_at_does(
    pipeline: Callable[..., Harness], cli: Cli
) -> None:
    h = pipeline()
    member = add_member(h.engine, "C1", email="a@example.com")
    assert member.id is not None
    at = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)  # 09:30 in Tehran, 1405-09-10
    with Session(h.engine) as session:
        opt_out(session, member.id, Channel.EMAIL, ConsentSource.LINK, at=at)
        session.commit()
    env = settings_env(h.settings)

    def listed(since: str) -> list[str]:
        result = cli("members", "optouts", "--since", since, "--format", "json", **env)
        assert result.exit_code == 0, result.output
        return [row["external_id"] for row in json.loads(result.stdout)]

    # Tehran wall-clock times, as `campaign send --at` reads them (UTC would be 3:30 later).
    assert parse_send_at("1405-09-10 09:00", ZoneInfo("Asia/Tehran")) < at
    assert listed("1405-09-10 09:00") == ["C1"]
    assert listed("2026-12-01 09:00") == ["C1"]
    assert listed("1405-09-10 09:31") == []
    assert listed("2026-12-01T09:00:00+00:00") == []  # an offset is taken as written
    help_text = cli("members", "optouts", "--help", **env).stdout
    assert "UTC" not in help_text and "SMS_TIMEZONE" in help_text
