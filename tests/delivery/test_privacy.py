"""A member's data on request: export and erasure, on SQLite and PostgreSQL (the API and
the commands over them are tested in tests/api/)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from dispatcher.audience.addresses import AddressKeys
from dispatcher.audience.consent import opt_out
from dispatcher.delivery.privacy import ERASED, erase_member, export_member
from dispatcher.errors import NotFoundError
from dispatcher.store.db import session_scope
from dispatcher.store.models import (
    Campaign,
    Channel,
    ConsentSource,
    Delivery,
    DeliveryStatus,
    Member,
)
from tests.factories import add_member


def deliver(engine: Engine, member_id: int | None, *statuses: DeliveryStatus) -> None:
    """One delivery per status, each of a campaign of its own."""
    assert member_id is not None
    with Session(engine) as session:
        for status in statuses:
            campaign = Campaign(slug=f"c-{status}", name="c", channels="email")
            session.add(campaign)
            session.flush()
            assert campaign.id is not None
            session.add(
                Delivery(
                    campaign_id=campaign.id,
                    member_id=member_id,
                    channel="email",
                    status=status,
                    error_message=f"550 <{member_id}@example.com>",
                    provider_id="42",
                )
            )
        session.commit()


def test_an_unknown_member_is_neither_exported_nor_erased(engine: Engine) -> None:
    add_member(engine, "C1")
    with pytest.raises(NotFoundError, match="C404"):
        export_member(engine, "C404")
    with pytest.raises(NotFoundError, match="C404"):
        erase_member(engine, "C404")
    with Session(engine) as session:
        assert len(session.exec(select(Member)).all()) == 1


def test_erasure_skips_the_pending_keeps_the_rest_and_scrubs_every_row(engine: Engine) -> None:
    gone = add_member(engine, "GONE")
    deliver(engine, gone.id, DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.FAILED)

    erasure = erase_member(engine, "GONE")

    assert (erasure.deliveries_anonymised, erasure.pending_skipped) == (3, 1)
    with Session(engine) as session:
        rows = session.exec(select(Delivery).order_by(Delivery.id)).all()
    assert [(d.member_id, d.status, d.error_message, d.provider_id) for d in rows] == [
        (None, "skipped", ERASED, None),
        (None, "sending", None, None),  # being sent right now: it completes
        (None, "failed", None, None),
    ]
    with pytest.raises(NotFoundError):
        export_member(engine, "GONE")


def test_the_export_shows_a_suppression_that_reaches_the_member_through_a_shared_address(
    engine: Engine,
) -> None:
    key = AddressKeys(b"test-suppression-key").email("home@example.com")
    parent = add_member(engine, "P1", email="home@example.com", email_key=key)
    add_member(engine, "K1", email="home@example.com", email_key=key)
    assert parent.id is not None
    with session_scope(engine) as session:
        opt_out(session, parent.id, Channel.EMAIL, ConsentSource.LINK)

    child = export_member(engine, "K1")
    assert child["consent"]["email"]["opt_in"] is True  # she never opted out herself ...
    suppressed = child["consent"]["email"]["suppressed"]  # ... but gets nothing
    assert (suppressed["reason"], suppressed["source"]) == ("optout", "link")
    assert child["consent"]["sms"]["suppressed"] is None
    assert export_member(engine, "P1")["consent"]["email"]["suppressed"] is not None
