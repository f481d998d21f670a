"""`delivery_count` against the deliveries themselves, through every move the real code
makes: expansion, sends, failures, skips, a worker's retry, a crash's re-claim, pause
and resume, retry-failed, a provider that had it after all, cancel and erasure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from dispatcher.audience.addresses import AddressKeys
from dispatcher.definition.campaign import load_campaign
from dispatcher.delivery import control, state
from dispatcher.delivery.privacy import erase_member
from dispatcher.delivery.status import campaign_status, progress
from dispatcher.queue.broker import build_broker
from dispatcher.queue.expansion import enqueue_pending, expand
from dispatcher.settings import Settings
from dispatcher.store import counts
from dispatcher.store.models import Delivery, DeliveryCount, PausedBy, utcnow
from dispatcher.workers.email import deliver_email
from tests.factories import Harness, add_member, harness, update_member, write_campaign
from tests.servers.smtp_server import SmtpServerHandle


@pytest.fixture
def pipeline(
    make_settings: Callable[..., Settings],
    database_url: str,
    redis_url: str,
    redis_namespace: str,
    smtp_server: SmtpServerHandle,
    fast_retries: None,
) -> Iterator[Harness]:
    settings = make_settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_namespace=redis_namespace,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
    )
    with harness(settings, build_broker(settings)) as h:
        yield h


_D = Delivery.__table__  # type: ignore[attr-defined]
_N = DeliveryCount.__table__  # type: ignore[attr-defined]


def counted(engine: Engine) -> dict[tuple[int, str, str], int]:
    """The deliveries counted now, as `delivery_count` should hold them."""
    key = (_D.c.campaign_id, _D.c.channel, _D.c.status)
    with engine.connect() as conn:
        rows = conn.execute(select(*key, func.count()).group_by(*key)).all()
    return {(c, ch, st): n for c, ch, st, n in rows}


def kept(engine: Engine) -> dict[tuple[int, str, str], int]:
    """What `delivery_count` holds per status (a count back at zero is no count)."""
    key = (_N.c.campaign_id, _N.c.channel, _N.c.status)
    with engine.connect() as conn:
        rows = conn.execute(select(*key, func.sum(_N.c.n)).group_by(*key)).all()
    return {(c, ch, st): int(n) for c, ch, st, n in rows if n != 0}


Minutes = dict[tuple[str, str, int], int]


def minutes(engine: Engine) -> tuple[Minutes, Minutes]:
    """The outcomes per minute: as kept, and as the deliveries' moments count them."""
    with engine.connect() as conn:
        found = conn.execute(
            select(_D.c.channel, _D.c.status, counts.moment()).where(
                _D.c.status.in_([str(s) for s in counts.OUTCOMES])
            )
        ).all()
        rows = conn.execute(
            select(_N.c.channel, _N.c.status, _N.c.minute, _N.c.n).where(_N.c.minute != 0)
        ).all()
    counted: Minutes = {}
    for channel, status, at in found:
        key = (channel, status, counts.minute_of(at))
        counted[key] = counted.get(key, 0) + 1
    return {(ch, st, m): n for ch, st, m, n in rows if n}, counted


def assert_counts_match(h: Harness, *, per_minute: bool = True) -> None:
    assert kept(h.engine) == counted(h.engine)
    if per_minute:
        held, counted_now = minutes(h.engine)
        assert held == counted_now


def by_external_id(h: Harness, campaign_id: int) -> dict[str, int]:
    with h.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT m.external_id, d.id FROM delivery d JOIN member m ON m.id = d.member_id "
                "WHERE d.campaign_id = :c"
            ),
            {"c": campaign_id},
        ).all()
    return {ext: i for ext, i in rows}


def test_the_counts_equal_the_deliveries_after_every_move(
    pipeline: Harness, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline
    names = ["A", "B", "C", "D", "E", "GONE", "LATE"]
    members = {n: add_member(h.engine, n, email=f"{n.lower()}@example.com") for n in names}
    campaign = h.send(write_campaign(tmp_path / "one", slug="one")).campaign
    assert campaign.id is not None
    h.broker.flush_all()  # this test delivers by hand, then with a worker
    ids = by_external_id(h, campaign.id)
    assert kept(h.engine) == {(campaign.id, "email", "pending"): 7}  # the expansion's insert
    assert_counts_match(h)

    # A worker claims A and dies: the lease runs out, A is handed back.
    assert h.runtime.deliveries.claim(ids["A"])
    assert_counts_match(h)
    assert control.reclaim_orphans(h.engine, campaign.id, lease=timedelta(0)) == [
        (ids["A"], "email")
    ]
    assert_counts_match(h)

    assert control.pause(h.engine, campaign.id, by=PausedBy.PERSON, reason="check the price")
    control.resume(h.engine, h.broker, campaign.id, h.actors, lease=timedelta(minutes=5))
    h.broker.flush_all()
    assert_counts_match(h)

    # By hand (each call the last attempt): two mailboxes full, one address gone, one
    # member opted out since the expansion.
    update_member(h.engine, members["LATE"].id or 0, email_opt_in=False)
    smtp_server.reject_recipient("gone@example.com")
    smtp_server.inject_temp_failure(code=452, count=2, stage="rcpt", text="4.3.1 mailbox full")
    outcomes = {n: deliver_email(h.runtime, ids[n]) for n in ["A", "B", "C", "GONE", "LATE"]}
    assert outcomes == {"A": "failed", "B": "failed", "C": "sent", "GONE": "failed",
                        "LATE": "skipped"}  # fmt: skip
    assert_counts_match(h)

    # The provider had B after all (failed -> sent).
    with h.engine.begin() as conn:
        assert state.found_sent(conn, ids["B"], "<b@provider>", None, utcnow())
    assert_counts_match(h)

    # Retry the failed: A again, and D and E for the first time, through a worker that
    # meets one more full mailbox (a retry: sending -> pending -> sending -> sent).
    assert control.retry_failed(h.engine, h.broker, campaign.id, h.actors) == 1
    assert_counts_match(h)
    enqueue_pending(h.engine, h.broker, campaign, h.actors)
    smtp_server.inject_temp_failure(code=452, count=1, stage="rcpt", text="4.3.1 mailbox full")
    h.run_workers()
    assert_counts_match(h)
    status = campaign_status(h.engine, "one")["email"]
    assert (status["sent"], status["failed"], status["skipped"]) == (5, 1, 1)

    # A second campaign: cancelled with work left, and a member erased while pending.
    two = h.send(write_campaign(tmp_path / "two", slug="two")).campaign
    assert two.id is not None
    h.broker.flush_all()
    two_ids = by_external_id(h, two.id)
    assert deliver_email(h.runtime, two_ids["A"]) == "sent"
    erase_member(h.engine, "B")  # (its deliveries' moments change: not their minutes)
    assert_counts_match(h, per_minute=False)
    left = counted(h.engine)[(two.id, "email", "pending")]
    assert control.cancel(h.engine, two.id, reason="sent by mistake") == left
    assert_counts_match(h, per_minute=False)
    found = progress(h.engine, "two")
    assert found is not None
    assert {k: v for k, v in found["email"].items() if v} == {
        st: n for (c, _ch, st), n in counted(h.engine).items() if c == two.id
    }
    assert found["email"]["sent"] == 1 and found["email"]["pending"] == 0


def test_recount_rebuilds_a_campaigns_counts(engine: Engine, tmp_path: Path) -> None:
    for n in ("A", "B"):
        add_member(engine, n)
    spec = load_campaign(write_campaign(tmp_path / "c"))
    campaign = expand(engine, spec, keys=AddressKeys(b"k" * 32)).campaign
    assert campaign.id is not None
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM delivery_count"))
        counts.recount(conn, campaign.id)
    assert kept(engine) == {(campaign.id, "email", "pending"): 2}
