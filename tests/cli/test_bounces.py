"""`dispatcher bounces import` as a user runs it: one line of counts, or JSON."""

from __future__ import annotations

import json
from email import message_from_bytes
from pathlib import Path

from tests.cli.helpers import run
from tests.feedback.reports import dsn, plain


def test_bounces_import_prints_counts_and_suppresses_the_address(workdir: Path) -> None:
    (workdir / "m.csv").write_text(
        "external_id,email,tags\nA1,gone@example.com,newsletter\nB1,b@example.com,newsletter\n",
        encoding="utf-8",
    )
    assert run(workdir, "members", "import", "m.csv").returncode == 0
    sent = run(workdir, "campaign", "send", "campaigns/yalda-1405.toml")
    assert sent.returncode == 0, sent.stderr
    returns = workdir / "returns"
    returns.mkdir()
    # The Message-ID the dispatcher gave the email to gone@ (in the outbox).
    [message_id] = [
        m["Message-ID"]
        for m in (message_from_bytes(f.read_bytes()) for f in (workdir / "outbox").rglob("*.eml"))
        if m["To"] == "gone@example.com"
    ]
    (returns / "1.eml").write_bytes(dsn(to="news@shop.example", message_id=message_id))
    (returns / "2.eml").write_bytes(plain())

    first = run(workdir, "bounces", "import", "returns", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "hard": 1,
        "soft": 0,
        "complaints": 0,
        "unrecognised": 1,
        "unverified": 0,
        "duplicates": 0,
    }
    again = run(workdir, "bounces", "import", "returns")
    assert again.returncode == 0, again.stderr
    assert (
        "hard 0, soft 0, complaints 0, unrecognised 1, unverified 0, duplicates 1" in again.stdout
    )

    validated = run(workdir, "campaign", "validate", "campaigns/yalda-1405.toml", "--json")
    assert json.loads(validated.stdout)["email"]["excluded_by"]["suppressed"] == 1
    missing = run(workdir, "bounces", "import", "nowhere")
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_bounces_fetch_without_a_mailbox_says_which_setting(workdir: Path) -> None:
    result = run(workdir, "bounces", "fetch")
    assert result.returncode == 1 and "BOUNCE_IMAP_URL" in result.stderr
