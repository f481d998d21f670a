"""Returned mail from files: Maildir, mbox and .eml folders; each report handled once."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from dispatcher.audience.addresses import AddressKeys
from dispatcher.audience.members import import_members
from dispatcher.definition.campaign import load_campaign
from dispatcher.email.bounce import is_hard
from dispatcher.email.verp import signed_message_id, verp_address
from dispatcher.errors import InputError
from dispatcher.feedback.returns import ReturnsReader, import_returns
from dispatcher.queue.expansion import expand
from dispatcher.store.models import Bounce, ConsentEvent, Delivery, Member, Suppression
from tests.factories import write_campaign
from tests.feedback.reports import arf, deeply_nested, dsn, exim, plain, without_from

KEY = b"test-suppression-key"
BOUNCES = "bounces@shop.example"


def deliveries(engine: Engine, tmp_path: Path) -> dict[str, int]:
    """gone@ and b@ as members, a campaign expanded: {external_id: delivery id}."""
    (tmp_path / "m.csv").write_text("external_id,email\nA1,gone@example.com\nB1,b@example.com\n")
    import_members(engine, tmp_path / "m.csv", keys=AddressKeys(KEY))
    expand(engine, load_campaign(write_campaign(tmp_path / "c", tags=None)), keys=AddressKeys(KEY))
    with Session(engine) as session:
        rows = session.exec(
            select(Member.external_id, Delivery.id).join(
                Delivery, col(Delivery.member_id) == col(Member.id)
            )
        ).all()
    return {external_id: delivery_id or 0 for external_id, delivery_id in rows}


def ours(delivery_id: int) -> str:
    """The Message-ID the dispatcher gave a delivery's email."""
    return signed_message_id(KEY, delivery_id, "shop.example")


def messages(ids: dict[str, int]) -> list[bytes]:
    return [
        dsn(to=verp_address(BOUNCES, KEY, ids["A1"]), message_id="<unrelated@x>"),
        arf(message_id=ours(ids["B1"]), return_path=verp_address(BOUNCES, KEY, ids["B1"])),
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
        "unverified": 0,
        "duplicates": 0,
    }
    assert suppressions(engine) == [("bounce", "bounce"), ("complaint", "complaint")]
    second = import_returns(reader, path)
    assert (second.hard, second.complaints, second.duplicates) == (0, 0, 2)
    assert suppressions(engine) == [("bounce", "bounce"), ("complaint", "complaint")]
    with Session(engine) as session:
        recorded = session.exec(
            select(Member.external_id, ConsentEvent.source)
            .join(Member)
            .order_by(col(ConsentEvent.id))
        ).all()
    # The hard bounce's suppression reaches A1 (in the feed); the complaint opts B1 out.
    assert list(recorded) == [("A1", "bounce"), ("B1", "complaint")]


def test_the_signed_message_id_and_the_recipient_find_the_delivery_without_verp(
    engine: Engine, tmp_path: Path
) -> None:
    ids = deliveries(engine, tmp_path)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "1.eml").write_bytes(
        dsn(to=BOUNCES, message_id=ours(ids["A1"]), status="4.2.2", action="delayed")
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
    assert counts.unverified == 1 and suppressions(engine) == []


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
    (tmp_path / "r" / "1.eml").write_bytes(exim(to="news@shop.example", message_id=ours(ids["A1"])))
    counts = import_returns(ReturnsReader(engine, key=KEY, bounce_address=None), tmp_path / "r")
    assert (counts.hard, counts.unrecognised) == (1, 0)
    assert suppressions(engine) == [("bounce", "bounce")]


def untouched(engine: Engine) -> None:
    """No bounce, suppression or consent change recorded; every member still opted in."""
    with Session(engine) as session:
        assert session.exec(select(Bounce)).all() == []
        assert session.exec(select(Suppression)).all() == []
        assert session.exec(select(ConsentEvent)).all() == []
        assert all(m.email_opt_in for m in session.exec(select(Member)).all())


@pytest.mark.parametrize("bounce_address", [None, BOUNCES])
def test_forged_complaints_and_a_forged_dsn_change_nothing(
    engine: Engine, tmp_path: Path, bounce_address: str | None
) -> None:
    rows = "".join(f"M{n},m{n}@example.com\n" for n in range(1, 21))
    (tmp_path / "m.csv").write_text("external_id,email\n" + rows)
    import_members(engine, tmp_path / "m.csv", keys=AddressKeys(KEY))
    expand(engine, load_campaign(write_campaign(tmp_path / "c", tags=None)), keys=AddressKeys(KEY))
    with Session(engine) as session:
        sent = {
            m.email: d.id or 0
            for m, d in session.exec(
                select(Member, Delivery).join(Delivery, col(Delivery.member_id) == col(Member.id))
            )
        }
    folder = tmp_path / "r"
    folder.mkdir()
    for n in range(1, 21):  # bare counters from any domain: what the old reader believed
        forged = arf(message_id=f"<delivery-{n}@anything.invalid>", own_id=f"<f{n}@x>")
        (folder / f"arf{n}.eml").write_bytes(forged)
    (folder / "dsn.eml").write_bytes(
        dsn(to=BOUNCES, message_id="<delivery-5@shop.example>", recipient="nobody@attacker.example")
    )
    # A genuine signed Message-ID (leaked in a forward) about someone else's address.
    (folder / "leaked.eml").write_bytes(
        dsn(
            to=BOUNCES,
            message_id=ours(sent["m3@example.com"]),
            recipient="nobody@attacker.example",
            own_id="<leak@x>",
        )
    )
    counts = import_returns(ReturnsReader(engine, key=KEY, bounce_address=bounce_address), folder)
    assert (counts.unverified, counts.hard, counts.complaints) == (22, 0, 0)
    untouched(engine)


def test_with_verp_a_signed_message_id_alone_is_not_believed(
    engine: Engine, tmp_path: Path
) -> None:
    ids = deliveries(engine, tmp_path)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "1.eml").write_bytes(dsn(to=BOUNCES, message_id=ours(ids["A1"])))
    counts = import_returns(ReturnsReader(engine, key=KEY, bounce_address=BOUNCES), tmp_path / "r")
    assert counts.unverified == 1
    untouched(engine)


def test_a_message_that_cannot_be_parsed_is_unrecognised_and_the_next_is_handled(
    engine: Engine, tmp_path: Path
) -> None:
    ids = deliveries(engine, tmp_path)
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "1.eml").write_bytes(without_from(message_id=ours(ids["A1"])))
    (folder / "2.eml").write_bytes(deeply_nested())
    (folder / "3.eml").write_bytes(dsn(to=BOUNCES, message_id=ours(ids["A1"])))
    counts = import_returns(ReturnsReader(engine, key=KEY, bounce_address=None), folder)
    assert (counts.unrecognised, counts.hard) == (2, 1)
    assert suppressions(engine) == [("bounce", "bounce")]
