"""Safe scheduling: a past time is refused, a schedule moved, a cancelled slug reused."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.helpers import run

YALDA = "campaigns/yalda-1405.toml"


def campaigns(workdir: Path) -> list[dict[str, object]]:
    listed = run(workdir, "campaign", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows: list[dict[str, object]] = json.loads(listed.stdout)
    return rows


def test_a_send_time_in_the_past_is_refused_and_nothing_is_recorded(workdir: Path) -> None:
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    refused = run(workdir, "campaign", "send", YALDA, "--at", "1404-09-29 10:00")
    assert refused.returncode == 2
    assert "has passed" in refused.stderr and "--now" in refused.stderr
    assert campaigns(workdir) == []
    assert not (workdir / "outbox").exists()


def test_a_past_send_at_in_the_file_is_refused_unless_now_is_given(workdir: Path) -> None:
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    source = (workdir / YALDA).read_text(encoding="utf-8")
    (workdir / YALDA).write_text('send_at = "1404-09-29 10:00"\n' + source, encoding="utf-8")
    assert run(workdir, "campaign", "send", YALDA).returncode == 2
    assert campaigns(workdir) == []
    sent = run(workdir, "campaign", "send", YALDA, "--now")
    assert sent.returncode == 0, sent.stderr
    [row] = campaigns(workdir)
    assert row["state"] == "done"


def test_now_and_at_together_are_refused(workdir: Path) -> None:
    both = run(workdir, "campaign", "send", YALDA, "--now", "--at", "1499-01-01 10:00")
    assert both.returncode == 2 and "not both" in both.stderr


def test_reschedule_moves_a_scheduled_campaign_and_refuses_a_past_time(workdir: Path) -> None:
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    assert run(workdir, "campaign", "send", YALDA, "--at", "1499-09-29 10:00").returncode == 0
    moved = run(workdir, "campaign", "reschedule", "yalda-1405", "--at", "1499-10-01 09:30")
    assert moved.returncode == 0, moved.stderr
    assert "1499-10-01 09:30" in moved.stdout
    [row] = campaigns(workdir)
    assert (row["state"], row["send_at_jalali"]) == ("scheduled", "1499-10-01 09:30")

    past = run(workdir, "campaign", "reschedule", "yalda-1405", "--at", "1400-01-01 10:00")
    assert past.returncode == 2 and "has passed" in past.stderr
    [row] = campaigns(workdir)
    assert row["send_at_jalali"] == "1499-10-01 09:30"


def test_a_campaign_already_sending_cannot_be_rescheduled(workdir: Path) -> None:
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    assert run(workdir, "campaign", "send", YALDA).returncode == 0
    moved = run(workdir, "campaign", "reschedule", "yalda-1405", "--at", "1499-10-01 09:30")
    assert moved.returncode == 1 and "only a scheduled campaign" in moved.stderr


def test_a_cancelled_campaign_that_sent_nothing_is_sent_again_with_reuse_slug(
    workdir: Path,
) -> None:
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    assert run(workdir, "campaign", "send", YALDA, "--at", "1499-09-29 10:00").returncode == 0
    assert run(workdir, "campaign", "cancel", "yalda-1405").returncode == 0
    plain = run(workdir, "campaign", "send", YALDA)
    assert plain.returncode == 2 and "--reuse-slug" in plain.stderr
    assert "was sent before" not in plain.stdout
    again = run(workdir, "campaign", "send", YALDA, "--reuse-slug")
    assert again.returncode == 0, again.stderr
    [row] = campaigns(workdir)
    assert row["state"] == "done" and row["finished"] == row["total"]
    status = json.loads(run(workdir, "campaign", "status", "yalda-1405", "--json").stdout)
    emls = list((workdir / "outbox" / "email").glob("*.eml"))
    assert len(emls) == status["email"]["sent"] > 0


def test_reuse_slug_is_refused_for_a_campaign_that_sent(workdir: Path) -> None:
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    assert run(workdir, "campaign", "send", YALDA).returncode == 0
    again = run(workdir, "campaign", "send", YALDA, "--reuse-slug")
    assert again.returncode == 1 and "only a cancelled campaign" in again.stderr
