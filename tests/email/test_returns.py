"""Returned mail from files: Maildir, mbox and .eml folders; each report handled once."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from dispatcher.audience.addresses import AddressKeys
from dispatcher.audience.members import import_members
from dispatcher.definition.campaign import load_campaign
from dispatcher.email.bounce import is_hard
from dispatcher.email.returns import ReturnsReader, import_returns
from dispatcher.email.verp import verp_address
from dispatcher.errors import InputError
from dispatcher.queue.expansion import expand
from dispatcher.store.models import ConsentEvent, Delivery, Member, Suppression
from tests.email.reports import arf, dsn, exim, plain
from tests.factories import write_campaign

KEY = b"test-suppression-key"
BOUNCES = "bounces@shop.example"


def deliveries(engine: Engine, tmp_path: Path) -> dict[str, int]:
    """gone@ and b@ as members, a campaign expanded: {external_id: delivery id}."""
    (tmp_path / "m.csv").write_text("external_id,email\nA1,gone@example.com\nB1,b@example.com\n")
    import_members(engine, tmp_path / "m.csv", keys=AddressKeys(KEY))
    expand(engine, load_campaign(write_campaign(tmp_path / "c", tags=None)), keys=AddressKeys(KEY))
    with Session(engine) as session:
        rows = session.exec(select(Member.external_id, Delivery.id).join(Delivery)).all()
    return {external_id: delivery_id or 0 for external_id, delivery_id in rows}


def messages(ids: dict[str, int]) -> list[bytes]:
    return [
        dsn(to=verp_address(BOUNCES, KEY, ids["A1"]), message_id="<unrelated@x>"),
        arf(message_id=f"<delivery-{ids['B1']}@shop.example>"),
        plain(),
    ]


def suppressions(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return sorted((s.reason, s.source) for s in session.exec(select(Suppression)).all())


@pytest.mark.parametrize("layout", ["maildir", "mbox", "eml"])
def test_a_dsn_and_an_arf_report_are_handled_once_each(
    engine: Engine, tmp_path: Path, layout: str
) -> None:
    ids = deliveries(engine, tmp_path)
    path = tmp_path / "returns"
    if layout == "maildir":
        box: mailbox.Mailbox = mailbox.Maildir(path, create=True)
    elif layout == "mbox":
        box = mailbox.mbox(path, create=True)
    else:
        path.mkdir()
    for i, raw in enumerate(messages(ids)):
        if layout == "eml":
            (path / f"{i}.eml").write_bytes(raw)
        else:
            box.add(raw)
    if layout != "eml":
        box.close()
    reader = ReturnsReader(engine, key=KEY, bounce_address=BOUNCES)

    first = import_returns(reader, path)
    assert first.as_dict() == {
        "hard": 1,
        "soft": 0,
        "complaints": 1,
        "unrecognised": 1,
        "duplicates": 0,
    }
    assert suppressions(engine) == [("bounce", "bounce"), ("complaint", "complaint")]
    second = import_returns(reader, path)
    assert (second.hard, second.complaints, second.duplicates) == (0, 0, 2)
    assert suppressions(engine) == [("bounce", "bounce"), ("complaint", "complaint")]
    with Session(engine) as session:
        assert len(session.exec(select(ConsentEvent)).all()) == 1


def test_the_original_message_id_finds_the_delivery_without_verp(
    engine: Engine, tmp_path: Path
) -> None:
    ids = deliveries(engine, tmp_path)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "1.eml").write_bytes(
        dsn(
            to=BOUNCES,
            message_id=f"<delivery-{ids['A1']}@shop.example>",
            status="4.2.2",
            action="delayed",
        )
    )
    counts = import_returns(ReturnsReader(engine, key=KEY, bounce_address=None), tmp_path / "r")
    assert (counts.soft, counts.hard) == (1, 0)
    assert suppressions(engine) == []


def test_a_forged_verp_address_finds_nothing(engine: Engine, tmp_path: Path) -> None:
    ids = deliveries(engine, tmp_path)
    forged = verp_address(BOUNCES, b"another key", ids["A1"])
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "1.eml").write_bytes(dsn(to=forged, message_id="<x@y>"))
    counts = import_returns(ReturnsReader(engine, key=KEY, bounce_address=BOUNCES), tmp_path / "r")
    assert counts.unrecognised == 1 and suppressions(engine) == []


def test_a_file_that_is_not_a_mailbox_is_refused(tmp_path: Path, engine: Engine) -> None:
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError, match="not an mbox"):
        import_returns(ReturnsReader(engine, key=KEY, bounce_address=None), tmp_path / "x.txt")


@pytest.mark.parametrize(
    ("code", "text", "hard"),
    [
        (550, "5.1.1 user unknown", True),
        (550, "5.1.10 recipient address rejected: null MX", True),
        (550, "5.2.2 mailbox full", False),
        (550, "5.7.1 message rejected by policy", False),
        (550, "No such user here", True),
        (553, "mailbox name not allowed", False),
        (551, "User not local; user unknown", True),
        (554, "transaction failed", False),
        (550, "unknown error", False),
        (550, "Recipient address unknown", True),
    ],
)
def test_hard_and_soft_refusals(code: int, text: str, hard: bool) -> None:
    assert is_hard(code, text) is hard


def test_a_non_standard_bounce_is_read_by_flufl_bounce(engine: Engine, tmp_path: Path) -> None:
    ids = deliveries(engine, tmp_path)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "1.eml").write_bytes(
        exim(to="news@shop.example", message_id=f"<delivery-{ids['A1']}@shop.example>")
    )
    counts = import_returns(ReturnsReader(engine, key=KEY, bounce_address=None), tmp_path / "r")
    assert (counts.hard, counts.unrecognised) == (1, 0)
    assert suppressions(engine) == [("bounce", "bounce")]
