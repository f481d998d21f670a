"""Expansion: the campaign and its deliveries recorded together, or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from dispatcher.definition.campaign import load_campaign
from dispatcher.errors import EmptyAudienceError
from dispatcher.queue.expansion import expand
from dispatcher.store.models import Campaign, Delivery
from tests.factories import add_member, write_campaign


def recorded(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        campaigns = len(session.exec(select(Campaign)).all())
        deliveries = len(session.exec(select(Delivery)).all())
    return campaigns, deliveries


def test_an_empty_audience_is_refused_and_nothing_is_recorded(
    engine: Engine, tmp_path: Path
) -> None:
    spec = load_campaign(write_campaign(tmp_path / "c"))
    with pytest.raises(EmptyAudienceError, match="no member is in its audience"):
        expand(engine, spec, allow_empty=False)
    assert recorded(engine) == (0, 0)

    add_member(engine, "C1")  # the slug is still usable
    result = expand(engine, spec, allow_empty=False)
    assert result.created and result.eligible == {"email": 1}


def test_an_audience_nobody_can_be_reached_in_is_empty_too(engine: Engine, tmp_path: Path) -> None:
    add_member(engine, "C1", email_opt_in=False)
    add_member(engine, "C2", tags=["vip"])
    spec = load_campaign(write_campaign(tmp_path / "c", tags=["newsletter"]))
    with pytest.raises(EmptyAudienceError):
        expand(engine, spec, allow_empty=False)
    assert recorded(engine) == (0, 0)


def test_a_scheduled_campaign_with_an_empty_audience_is_refused_too(
    engine: Engine, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    spec = load_campaign(write_campaign(tmp_path / "c"))
    at = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(EmptyAudienceError):
        expand(engine, spec, send_at=at, allow_empty=False)
    assert recorded(engine) == (0, 0)
    assert expand(engine, spec, send_at=at, allow_empty=True).created


def test_allow_empty_records_the_campaign_with_no_deliveries(
    engine: Engine, tmp_path: Path
) -> None:
    spec = load_campaign(write_campaign(tmp_path / "c"))
    result = expand(engine, spec, allow_empty=True)
    assert result.created and result.eligible == {"email": 0}
    assert recorded(engine) == (1, 0)
