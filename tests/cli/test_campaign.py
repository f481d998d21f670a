"""The `dispatcher` command as a user runs it: in a fresh folder, on embedded defaults."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.cli.helpers import run


def test_the_demo_sends_the_example_campaign_into_the_outbox(workdir: Path) -> None:
    imported = run(workdir, "members", "import", "campaigns/members.csv")
    assert imported.returncode == 0, imported.stderr
    # The demo's campaign texts too, and the SMS outbox keeps the send window: open it
    # all day so that the campaign finishes at any hour.
    sent = run(
        workdir, "campaign", "send", "campaigns/yalda-1405.toml", SMS_SEND_WINDOW="00:00-24:00"
    )
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


def test_the_demo_outside_the_send_window_sends_the_email_and_keeps_the_sms_waiting(
    workdir: Path,
) -> None:
    hour = datetime.now(ZoneInfo("Asia/Tehran")).hour
    closed = f"{(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00"  # closed right now
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    sent = run(workdir, "campaign", "send", "campaigns/yalda-1405.toml", SMS_SEND_WINDOW=closed)
    assert sent.returncode == 0, sent.stderr
    assert "sms waiting for the send window" in sent.stdout
    status = json.loads(run(workdir, "campaign", "status", "yalda-1405", "--json").stdout)
    assert status["email"]["sent"] == len(list((workdir / "outbox" / "email").glob("*.eml"))) > 0
    assert status["sms"]["sent"] == 0 and status["sms"]["pending"] > 0
    assert not (workdir / "outbox" / "sms").exists() or not any(
        (workdir / "outbox" / "sms").iterdir()
    )


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
    assert not (workdir / "dispatcher.db").exists()  # validate changes nothing


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


def test_send_with_an_empty_audience_exits_2_and_leaves_the_slug_usable(workdir: Path) -> None:
    sent = run(workdir, "campaign", "send", "campaigns/yalda-1405.toml")
    assert sent.returncode == 2, sent.stdout + sent.stderr
    assert "no member is in its audience" in sent.stderr and "--allow-empty" in sent.stderr
    assert "Traceback" not in sent.stderr

    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    again = run(
        workdir, "campaign", "send", "campaigns/yalda-1405.toml", SMS_SEND_WINDOW="00:00-24:00"
    )
    assert again.returncode == 0, again.stderr
    status = json.loads(run(workdir, "campaign", "status", "yalda-1405", "--json").stdout)
    assert status["state"] == "done" and status["email"]["sent"] > 0


def test_send_allow_empty_records_an_empty_campaign(workdir: Path) -> None:
    sent = run(workdir, "campaign", "send", "campaigns/yalda-1405.toml", "--allow-empty")
    assert sent.returncode == 0, sent.stderr
    status = json.loads(run(workdir, "campaign", "status", "yalda-1405", "--json").stdout)
    assert status["state"] == "done"


def test_validate_reports_a_hostile_template_without_a_traceback(workdir: Path) -> None:
    folder = workdir / "campaigns" / "hostile"
    folder.mkdir()
    (folder / "email.html").write_text(
        "<p>{% for i in range(10**8) %}{{ i }}{% endfor %}{{ 'a' * 10**8 }}</p>", encoding="utf-8"
    )
    toml = folder / "c.toml"
    toml.write_text(
        'slug = "h"\nname = "n"\nchannels = ["email", "sms"]\n[email]\nsubject = "x"\n'
        'html = "email.html"\n[sms]\nbody = "' + "سلام " * 40 + '"\n',
        encoding="utf-8",
    )
    result = run(workdir, "campaign", "validate", str(toml), SMS_MAX_PARTS="2")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "email.html" in result.stderr and "range() of more than 10,000 items" in result.stderr
    assert "over SMS_MAX_PARTS (2)" in result.stderr


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
