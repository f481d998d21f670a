"""The commands for running it for real, as an operator types them (embedded mode)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from dispatcher.store.db import make_engine
from dispatcher.store.models import Campaign, utcnow
from tests.cli.helpers import run


def test_a_campaign_scheduled_in_jalali_is_listed_then_cancelled(workdir: Path) -> None:
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    sent = run(workdir, "campaign", "send", "campaigns/yalda-1405.toml", "--at", "1499-09-29 10:00")
    assert sent.returncode == 0, sent.stderr
    assert "scheduled" in sent.stdout and "1499-09-29 10:00" in sent.stdout
    [row] = json.loads(run(workdir, "campaign", "list", "--json").stdout)
    assert (row["state"], row["send_at_jalali"], row["total"]) == (
        "scheduled",
        "1499-09-29 10:00",
        0,
    )

    tick = run(workdir, "scheduler", "--once")
    assert tick.returncode == 0 and "launched []" in tick.stdout  # not due for years

    paused = run(workdir, "campaign", "pause", "yalda-1405", "--reason", "wrong price")
    assert paused.returncode == 0, paused.stderr
    status = json.loads(run(workdir, "campaign", "status", "yalda-1405", "--json").stdout)
    assert (status["state"], status["pause_reason"]) == ("paused", "wrong price")
    table = run(workdir, "campaign", "status", "yalda-1405").stdout
    assert "paused by person: wrong price" in table

    cancelled = run(workdir, "campaign", "cancel", "yalda-1405", "--reason", "no sale")
    assert cancelled.returncode == 0, cancelled.stderr
    resumed = run(workdir, "campaign", "resume", "yalda-1405")
    assert resumed.returncode == 1 and "cancelled" in resumed.stderr


def test_db_upgrade_migrates_and_a_production_database_behind_is_refused(workdir: Path) -> None:
    db = f"sqlite:///{workdir / 'prod.db'}"
    refused = run(
        workdir,
        "campaign",
        "list",
        DATABASE_URL=db,
        REDIS_URL="redis://127.0.0.1:1/0",
        UNSUBSCRIBE_SECRET="k" * 20,
    )
    assert refused.returncode == 1 and "dispatcher db upgrade" in refused.stderr
    upgraded = run(workdir, "db", "upgrade", DATABASE_URL=db)
    assert upgraded.returncode == 0 and "upgraded" in upgraded.stdout
    again = run(workdir, "db", "upgrade", DATABASE_URL=db)
    assert "already at" in again.stdout


def test_the_scheduler_logs_each_campaign_it_launches_and_finishes(workdir: Path) -> None:
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    sent = run(workdir, "campaign", "send", "campaigns/yalda-1405.toml", "--at", "1499-09-29 10:00")
    assert sent.returncode == 0, sent.stderr
    engine = make_engine(f"sqlite:///{workdir / 'dispatcher.db'}")
    with engine.begin() as conn:  # the years pass
        conn.execute(update(Campaign).values(send_at=utcnow() - timedelta(minutes=1)))
    engine.dispose()

    tick = run(workdir, "scheduler", "--once")  # no --verbose: a service says what it does
    assert tick.returncode == 0, tick.stderr
    assert "campaign yalda-1405 launched" in tick.stderr
    assert "campaign yalda-1405 finished" in tick.stderr
