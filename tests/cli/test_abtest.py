"""`campaign ab-pick` as a user runs it, and the A/B test in `status` and `report`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.cli.helpers import run

AB = """slug = "yalda-ab"
name = "حراج شب یلدا"
channels = ["email"]

[email]
html = "yalda/email.html"

[ab]
subjects = ["حراج یلدا شروع شد", "{{ member.first_name }}، یلدا با ۴۰٪ تخفیف"]
test_share = 0.4
decide_after = "2h"
winner_by = "manual"
"""


def subjects(workdir: Path) -> list[str]:
    import email
    from email import policy

    return sorted(
        str(email.message_from_bytes(p.read_bytes(), policy=policy.default)["Subject"])
        for p in (workdir / "outbox" / "email").glob("*.eml")
    )


def test_ab_pick_sends_the_chosen_subject_to_the_rest_once(workdir: Path) -> None:
    (workdir / "campaigns" / "ab.toml").write_text(AB, encoding="utf-8")
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    validated = run(workdir, "campaign", "validate", "campaigns/ab.toml")
    assert validated.returncode == 0, validated.stderr
    sent = run(workdir, "campaign", "send", "campaigns/ab.toml")
    assert sent.returncode == 0, sent.stderr
    assert len(subjects(workdir)) == 2
    status = json.loads(run(workdir, "campaign", "status", "yalda-ab", "--json").stdout)
    assert status["email"]["waiting_for_winner"] == 4 and status["state"] == "sending"
    assert "waiting_for_winner: 4" in run(workdir, "campaign", "status", "yalda-ab").stdout

    wrong = run(workdir, "campaign", "ab-pick", "yalda-ab", "E")
    assert wrong.returncode == 1 and "no variant 'E' (its variants: A, B)" in wrong.stderr
    picked = run(workdir, "campaign", "ab-pick", "yalda-ab", "b")
    assert picked.returncode == 0, picked.stderr
    assert "A/B winner yalda-ab: B; 4 enqueued" in picked.stdout
    got = subjects(workdir)
    assert len(got) == 6 and sum(s.startswith("حراج یلدا شروع شد") for s in got) == 1
    again = run(workdir, "campaign", "ab-pick", "yalda-ab", "A")
    assert again.returncode == 1 and "decided already (winner B, manual)" in again.stderr
    assert len(subjects(workdir)) == 6

    report = run(workdir, "campaign", "report", "yalda-ab", "--json", "--csv", "unsent.csv")
    assert report.returncode == 0, report.stderr
    ab = json.loads(report.stdout)["ab"]
    assert ab["winner"] == "B" and ab["decided_by"] == "manual" and ab["p_value"] is None
    assert [(v["name"], v["sent"], v["unique_clicks"], v["opt_outs"]) for v in ab["variants"]] == [
        ("A", 1, 0, 0),
        ("B", 5, 0, 0),
    ]
    with (workdir / "unsent-clicks.csv").open(encoding="utf-8") as f:
        assert next(csv.reader(f)) == ["channel", "variant", "url", "clicks", "unique", "scanner"]
    text = run(workdir, "campaign", "report", "yalda-ab")
    assert "A/B test:" in text.stdout and "winner: B (manual)" in text.stdout
    assert "0 unique clickers" in text.stdout


def test_a_wrong_ab_table_fails_validate_with_the_field(workdir: Path) -> None:
    (workdir / "campaigns" / "ab.toml").write_text(
        AB.replace("test_share = 0.4", "test_share = 2"), encoding="utf-8"
    )
    result = run(workdir, "campaign", "validate", "campaigns/ab.toml")
    assert result.returncode == 1
    assert "campaigns/ab.toml: ab.test_share: must be a number between 0 and 1" in result.stderr
