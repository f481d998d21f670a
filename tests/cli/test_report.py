"""`campaign report` as a user runs it: text, --json, --csv and --html."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.cli.helpers import run


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
