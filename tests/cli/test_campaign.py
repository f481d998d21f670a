"""The `dispatcher` command as a user runs it: in a fresh folder, on embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.helpers import run


def test_the_demo_sends_the_example_campaign_into_the_outbox(workdir: Path) -> None:
    imported = run(workdir, "members", "import", "campaigns/members.csv")
    assert imported.returncode == 0, imported.stderr
    sent = run(workdir, "campaign", "send", "campaigns/yalda-1405.toml")
    assert sent.returncode == 0, sent.stderr
    assert "in-process (inline)" in sent.stdout and "outbox" in sent.stdout
    status = json.loads(run(workdir, "campaign", "status", "yalda-1405", "--json").stdout)
    email = status["email"]
    assert status["slug"] == "yalda-1405" and status["state"] == "done"
    assert set(email) == {
        *("pending", "sending", "sent", "skipped", "failed", "excluded"),
        *("excluded_by", "bounced", "complained"),
    }
    assert set(email["excluded_by"]) == {
        "opted_out",
        "no_address",
        "duplicate_address",
        "suppressed",
    }
    assert sum(email["excluded_by"].values()) == email["excluded"]
    key_file = workdir / ".dispatcher-suppression-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    emls = list((workdir / "outbox" / "email").glob("*.eml"))
    assert email["sent"] == len(emls) > 0
    assert email["excluded"] > 0  # the sample has members opted out or without email

    again = run(workdir, "campaign", "send", "campaigns/yalda-1405.toml")
    assert again.returncode == 0 and "nothing new" in again.stdout
    assert len(list((workdir / "outbox" / "email").glob("*.eml"))) == len(emls)


def test_validate_reports_problems_and_exits_non_zero(workdir: Path) -> None:
    bad = workdir / "campaigns" / "bad.toml"
    bad.write_text(
        'slug = "b"\nname = "n"\nchannels = ["email"]\n[email]\nsubject = "x"\n'
        'html = "missing.html"\n',
        encoding="utf-8",
    )
    result = run(workdir, "campaign", "validate", str(bad))
    assert result.returncode == 1
    assert "email.html: template file 'missing.html' not found" in result.stderr
    assert not (workdir / "dispatcher.store.db").exists()  # validate changes nothing


def test_preview_renders_for_a_member(workdir: Path) -> None:
    run(workdir, "members", "import", "campaigns/members.csv")
    result = run(workdir, "campaign", "preview", "campaigns/yalda-1405.toml", "--member", "C1001")
    assert result.returncode == 0, result.stderr
    assert "مریم عزیز، حراج یلدا شروع شد" in result.stdout
    assert 'dir="rtl"' in result.stdout and "/u/" in result.stdout


def test_import_with_bad_rows_imports_the_rest_and_exits_non_zero(workdir: Path) -> None:
    csv = workdir / "m.csv"
    csv.write_text(
        "external_id,first_name,email,mobile\n"
        "A1,علی,ali@example.com,09121234567\n"
        "A2,رضا,not-an-email,09121234568\n",
        encoding="utf-8",
    )
    result = run(workdir, "members", "import", str(csv))
    assert result.returncode == 1
    assert "m.csv:3: email" in result.stderr
    assert "1 created" in result.stdout


def test_status_of_an_unknown_campaign_is_a_clear_error(workdir: Path) -> None:
    result = run(workdir, "campaign", "status", "nope")
    assert result.returncode == 1 and "no campaign with slug 'nope'" in result.stderr


def test_a_database_that_cannot_be_opened_is_one_clear_line(workdir: Path) -> None:
    result = run(workdir, "campaign", "status", "x", DATABASE_URL="sqlite:////no/such/dir/x.db")
    assert result.returncode == 1
    assert "database sqlite:////no/such/dir/x.db: unable to open database file" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_counts_why_members_get_no_delivery_and_import_warns_of_shared_addresses(
    workdir: Path,
) -> None:
    members = workdir / "m.csv"
    members.write_text(
        "external_id,email,mobile,email_opt_in,tags\n"
        "A1,sara@example.com,09125550001,1,newsletter\n"
        "A2,SARA@example.com,09125550001,1,newsletter\n"
        "B1,b@example.com,,0,newsletter\n"
        "C1,,,1,newsletter\n",
        encoding="utf-8",
    )
    imported = run(workdir, "members", "import", "m.csv")
    assert imported.returncode == 0, imported.stderr
    assert "line 3 (A2) and line 2 (A1) share the email address" in imported.stderr
    assert "sara@" not in imported.stderr

    found = run(workdir, "campaign", "validate", "campaigns/yalda-1405.toml", "--json")
    assert found.returncode == 0, found.stderr
    email = json.loads(found.stdout)["email"]
    assert email["deliveries"] == 1
    assert email["excluded_by"] == {
        "opted_out": 1,
        "no_address": 1,
        "duplicate_address": 1,
        "suppressed": 0,
    }
    text = run(workdir, "campaign", "validate", "campaigns/yalda-1405.toml")
    assert "duplicate_address 1" in text.stdout
