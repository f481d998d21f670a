"""`campaign report` as a user runs it: text, --json, --csv and --html."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

from tests.cli.conftest import Cli, settings_env
from tests.cli.helpers import run
from tests.factories import Harness, add_member, update_member, write_campaign


def test_report_prints_json_and_writes_the_csv_and_the_page(workdir: Path) -> None:
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    assert run(workdir, "campaign", "send", "campaigns/yalda-1405.toml").returncode == 0
    text = run(workdir, "campaign", "report", "yalda-1405")
    assert text.returncode == 0, text.stderr
    assert "audience" in text.stdout and "SMS parts" in text.stdout

    result = run(
        workdir, "campaign", "report", "yalda-1405", "--json",
        "--csv", "unsent.csv", "--html", "report.html",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) >= {"slug", "state", "email", "sms"}
    assert report["email"]["sent"] == 5 and report["sms"]["parts"] >= report["sms"]["sent"]
    with (workdir / "unsent.csv").open(encoding="utf-8") as f:
        assert next(csv.reader(f)) == ["external_id", "channel", "address", "status", "reason"]
    page = (workdir / "report.html").read_text("utf-8")
    assert '<html lang="fa" dir="rtl">' in page and "Chart.js v4" in page


def test_report_of_an_unknown_campaign_is_a_clear_error(workdir: Path) -> None:
    result = run(workdir, "campaign", "report", "nope")
    assert result.returncode == 1 and "no campaign with slug 'nope'" in result.stderr


def test_the_csv_of_unsent_recipients_is_formula_safe(
    pipeline: Callable[..., Harness], cli: Cli, tmp_path: Path
) -> None:
    h = pipeline()
    member = add_member(h.engine, '=HYPERLINK("http://x.example","y")', email="f@example.com")
    assert member.id is not None
    h.send(write_campaign(tmp_path / "c"))
    update_member(h.engine, member.id, email_opt_in=False)  # skipped at send time
    h.run_workers()

    result = cli(
        "campaign", "report", "yalda-test", "--csv", "unsent.csv", **settings_env(h.settings)
    )
    assert result.exit_code == 0, result.output
    assert "1 recipients" in result.stdout
    with (tmp_path / "unsent.csv").open(encoding="utf-8") as f:
        [row] = list(csv.DictReader(f))
    assert row["external_id"] == '\'=HYPERLINK("http://x.example","y")'
    assert (row["status"], row["reason"]) == ("skipped", "opted out")


def test_the_text_report_shows_returns_sms_reports_and_tehran_times(
    pipeline: Callable[..., Harness], cli: Cli, tmp_path: Path
) -> None:
    h = pipeline(sms_send_window="00:00-24:00")
    add_member(h.engine, "A", mobile="+989121110001")
    h.send(write_campaign(tmp_path / "c", channels=("email", "sms")))
    h.run_workers()

    result = cli("campaign", "report", "yalda-test", **settings_env(h.settings))
    assert result.exit_code == 0, result.output
    for label in ("bounced", "complained", "delivered (operator's report)", "undelivered"):
        assert label in result.stdout
    [first] = [line for line in result.stdout.splitlines() if "first send" in line][:1]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Asia/Tehran", first), first
    assert "+00:00" not in result.stdout
