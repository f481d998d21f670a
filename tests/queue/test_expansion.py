"""Expansion: one delivery per address and channel, why the others get none, and the
campaign recorded with its deliveries or not at all."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from dispatcher.audience.addresses import AddressKeys
from dispatcher.audience.consent import opt_out, resubscribe
from dispatcher.audience.members import import_members
from dispatcher.definition.campaign import CampaignSpec, load_campaign
from dispatcher.delivery.status import campaign_status
from dispatcher.errors import EmptyAudienceError
from dispatcher.queue.expansion import expand
from dispatcher.store.db import session_scope
from dispatcher.store.models import Campaign, Channel, ConsentSource, Delivery, Member, Suppression
from tests.factories import Harness, add_member, write_campaign
from tests.servers.smtp_server import SmtpServerHandle

Pipeline = Callable[..., Harness]
KEYS = AddressKeys(b"test-suppression-key")  # = the test settings' SUPPRESSION_KEY
SHARED = (
    "external_id,email,mobile\n"
    "A1,sara@example.com,09125550001\n"
    "A2,SARA@example.com,+98 912 555 0001\n"
)


def ids(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {m.external_id: m.id or 0 for m in session.exec(select(Member)).all()}


def smtp(server: SmtpServerHandle) -> dict[str, object]:
    return {"smtp_host": server.host, "smtp_port": server.port, "smtp_security": "none"}


def test_members_sharing_an_address_get_one_message_per_channel(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server))
    (tmp_path / "m.csv").write_text(SHARED + "B1,other@example.com,09125550002\n")
    report = import_members(h.engine, tmp_path / "m.csv", keys=KEYS)
    assert [(s.line, s.first_line) for s in report.shared] == [(3, 2), (3, 2)]

    result = h.send(write_campaign(tmp_path / "c", channels=("email", "sms"), tags=None))
    h.run_workers()

    assert result.eligible == {"email": 2, "sms": 2}
    by_member = {(d.channel, d.member_id) for d in h.deliveries()}
    first = ids(h.engine)["A1"]  # the lowest member id of the address gets it
    assert ("email", first) in by_member and ("sms", first) in by_member
    assert sorted(m.rcpt_to for m in smtp_server.wait_for(2)) == [
        "other@example.com",
        "sara@example.com",
    ]
    status = campaign_status(h.engine, "yalda-test")
    for channel in ("email", "sms"):
        assert status[channel]["excluded_by"] == {
            "opted_out": 0,
            "no_address": 0,
            "duplicate_address": 1,
            "suppressed": 0,
        }
        assert status[channel]["bounced"] == 0 and status[channel]["complained"] == 0


def test_excluded_by_counts_each_reason_once(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(
        "external_id,email,email_opt_in\n"
        "A1,sara@example.com,1\n"
        "A2,Sara@Example.com,1\n"
        "A3,sara@example.com,1\n"
        "B1,b@example.com,0\n"
        "C1,,1\n"
        "D1,d@example.com,1\n"
        "E1,e@example.com,1\n"
    )
    import_members(engine, tmp_path / "m.csv", keys=KEYS)
    with session_scope(engine) as session:
        opt_out(session, ids(engine)["E1"], Channel.EMAIL, ConsentSource.LINK)
        add = Member(external_id="E2", email="E@example.com")  # no key yet: filled at expansion
        session.add(add)

    result = expand(engine, load_campaign(write_campaign(tmp_path / "c", tags=None)), keys=KEYS)

    assert result.eligible == {"email": 2}  # sara (A1) and D1
    assert result.excluded_by["email"] == {
        "opted_out": 2,  # B1 by import, E1 by its link
        "no_address": 1,
        "duplicate_address": 2,
        "suppressed": 1,  # E2, imported after E1 left with that address
    }
    with Session(engine) as session:
        members = {d.member_id for d in session.exec(select(Delivery)).all()}
    assert members == {ids(engine)["A1"], ids(engine)["D1"]}


@pytest.mark.parametrize(
    "source",
    [
        ConsentSource.LINK,
        ConsentSource.ONE_CLICK,
        ConsentSource.SMS_KEYWORD,
        ConsentSource.PROVIDER,
        ConsentSource.COMPLAINT,
        ConsentSource.BOUNCE,
    ],
)
def test_an_opt_out_by_any_path_stops_every_member_with_that_address_until_resubscribe(
    engine: Engine, tmp_path: Path, source: ConsentSource
) -> None:
    import_members(engine, _csv(tmp_path, SHARED), keys=KEYS)
    channel = (
        Channel.SMS
        if source in (ConsentSource.SMS_KEYWORD, ConsentSource.PROVIDER)
        else Channel.EMAIL
    )
    with session_scope(engine) as session:
        opt_out(session, ids(engine)["A1"], channel, source)
    import_members(
        engine,
        _csv(tmp_path, "external_id,email,mobile\nA3,sara@EXAMPLE.com,09125550001\n"),
        keys=KEYS,
    )

    first = expand(
        engine,
        load_campaign(
            write_campaign(tmp_path / "c1", slug="one", channels=("email", "sms"), tags=None)
        ),
        keys=KEYS,
    )
    assert first.eligible[str(channel)] == 0
    assert first.excluded_by[str(channel)]["suppressed"] == 2  # A2, and A3 imported later
    other = Channel.EMAIL if channel is Channel.SMS else Channel.SMS
    assert first.eligible[str(other)] == 1

    with session_scope(engine) as session:
        resubscribe(session, ids(engine)["A1"], channel, ConsentSource.CLI)
    again = expand(
        engine,
        load_campaign(
            write_campaign(tmp_path / "c2", slug="two", channels=("email", "sms"), tags=None)
        ),
        keys=KEYS,
    )
    assert again.eligible[str(channel)] == 1


def _both(tmp_path: Path, slug: str) -> CampaignSpec:
    return load_campaign(
        write_campaign(tmp_path / slug, slug=slug, channels=("email", "sms"), tags=None)
    )


def _csv(tmp_path: Path, content: str) -> Path:
    path = tmp_path / f"m{len(list(tmp_path.glob('m*.csv')))}.csv"
    path.write_text(content)
    return path


def test_the_send_time_check_sees_an_opt_out_by_another_member_with_the_address(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server))
    import_members(h.engine, _csv(tmp_path, SHARED), keys=KEYS)
    h.send(write_campaign(tmp_path / "c", tags=None))  # A1 gets the delivery
    with session_scope(h.engine) as session:
        opt_out(session, ids(h.engine)["A2"], Channel.EMAIL, ConsentSource.ONE_CLICK)
    h.run_workers()

    [delivery] = h.deliveries()
    assert delivery.member_id == ids(h.engine)["A1"]
    assert (delivery.status, delivery.error_message) == ("skipped", "address suppressed")
    assert smtp_server.messages() == []


def test_an_opt_out_from_before_address_keys_suppresses_the_address_at_the_next_expansion(
    engine: Engine, tmp_path: Path
) -> None:
    with session_scope(engine) as session:  # as an older version left them: no keys
        session.add(
            Member(
                external_id="OLD",
                email="sara@example.com",
                email_opt_in=False,
                email_optout_source="link",
            )
        )
        session.add(Member(external_id="NEW", email="Sara@Example.com"))
    result = expand(engine, load_campaign(write_campaign(tmp_path / "c", tags=None)), keys=KEYS)
    assert result.eligible == {"email": 0}
    assert result.excluded_by["email"]["suppressed"] == 1


def test_a_repeated_opt_out_writes_nothing_more(engine: Engine, tmp_path: Path) -> None:
    import_members(engine, _csv(tmp_path, SHARED), keys=KEYS)
    with session_scope(engine) as session:
        assert opt_out(session, ids(engine)["A1"], Channel.EMAIL, ConsentSource.LINK)
        assert not opt_out(session, ids(engine)["A1"], Channel.EMAIL, ConsentSource.ONE_CLICK)
    with Session(engine) as session:
        [row] = session.exec(select(Suppression)).all()
    assert (row.reason, row.source) == ("optout", "link")


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
        expand(engine, spec, allow_empty=False, keys=KEYS)
    assert recorded(engine) == (0, 0)

    add_member(engine, "C1")  # the slug is still usable
    result = expand(engine, spec, allow_empty=False, keys=KEYS)
    assert result.created and result.eligible == {"email": 1}


def test_an_audience_nobody_can_be_reached_in_is_empty_too(engine: Engine, tmp_path: Path) -> None:
    add_member(engine, "C1", email_opt_in=False)
    add_member(engine, "C2", tags=["vip"])
    spec = load_campaign(write_campaign(tmp_path / "c", tags=["newsletter"]))
    with pytest.raises(EmptyAudienceError):
        expand(engine, spec, allow_empty=False, keys=KEYS)
    assert recorded(engine) == (0, 0)


def test_a_scheduled_campaign_with_an_empty_audience_is_refused_too(
    engine: Engine, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    spec = load_campaign(write_campaign(tmp_path / "c"))
    at = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(EmptyAudienceError):
        expand(engine, spec, send_at=at, allow_empty=False, keys=KEYS)
    assert recorded(engine) == (0, 0)
    assert expand(engine, spec, send_at=at, allow_empty=True, keys=KEYS).created


def test_allow_empty_records_the_campaign_with_no_deliveries(
    engine: Engine, tmp_path: Path
) -> None:
    spec = load_campaign(write_campaign(tmp_path / "c"))
    result = expand(engine, spec, allow_empty=True, keys=KEYS)
    assert result.created and result.eligible == {"email": 0}
    assert recorded(engine) == (1, 0)
