"""`dispatcher staff ...`, `dispatcher audit` and `campaign export | import` as a user
runs them."""

from __future__ import annotations

import json
from pathlib import Path

from dispatcher.store.db import make_engine
from dispatcher.store.staff import current_session, sign_in, start_session
from tests.cli.helpers import run, run_with_input

PASSWORD = "a long enough password\n"


def test_staff_are_added_listed_given_a_password_and_removed(workdir: Path) -> None:
    added = run_with_input(
        workdir, PASSWORD, "staff", "add", "sara", "--role", "admin", "--password-stdin"
    )
    assert added.returncode == 0, added.stderr
    assert "added sara (admin)" in added.stdout
    engine = make_engine(f"sqlite:///{workdir / 'dispatcher.db'}")
    found = sign_in(engine, "sara", PASSWORD.strip())
    assert found.staff is not None
    token = start_session(engine, found.staff)
    assert "sara" in run(workdir, "staff", "list").stdout
    changed = run_with_input(
        workdir, "another long password\n", "staff", "password", "sara", "--password-stdin"
    )
    assert changed.returncode == 0, changed.stderr
    assert current_session(engine, token) is None  # its sessions ended
    assert sign_in(engine, "sara", "another long password").staff is not None
    assert run(workdir, "staff", "remove", "sara").returncode == 0
    assert sign_in(engine, "sara", "another long password").staff is None
    audit = run(workdir, "audit", "--since", "2020-01-01", "--json")
    assert audit.returncode == 0, audit.stderr
    actions = [row["action"] for row in json.loads(audit.stdout)]
    assert actions == ["staff-remove", "staff-password", "staff-add"]
    engine.dispose()


def test_a_short_password_or_a_taken_name_is_refused(workdir: Path) -> None:
    short = run_with_input(
        workdir, "short\n", "staff", "add", "ali", "--role", "viewer", "--password-stdin"
    )
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    run_with_input(workdir, PASSWORD, "staff", "add", "ali", "--role", "viewer", "--password-stdin")
    again = run_with_input(
        workdir, PASSWORD, "staff", "add", "ali", "--role", "admin", "--password-stdin"
    )
    assert again.returncode == 1 and "exists already" in again.stderr


def test_a_campaign_file_imported_as_a_draft_exports_the_same_files(workdir: Path) -> None:
    imported = run(workdir, "campaign", "import", "campaigns/yalda-1405.toml")
    assert imported.returncode == 0, imported.stderr
    exported = run(workdir, "campaign", "export", "yalda-1405", "out")
    assert exported.returncode == 0, exported.stderr
    again = run(workdir, "campaign", "validate", "out/campaign.toml")
    assert again.returncode == 0, again.stdout + again.stderr
    for name in ("email.html", "email.txt", "sms.txt"):
        exported_text = (workdir / "out" / name).read_text(encoding="utf-8")
        assert exported_text == (workdir / "campaigns" / "yalda" / name).read_text(encoding="utf-8")
