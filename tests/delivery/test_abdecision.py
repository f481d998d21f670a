"""A/B subjects end to end: expansion assigns the test share, the Redis workers send it,
members click over HTTP, the scheduler decides once and the rest get the winner."""

from __future__ import annotations

import email
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session, col
from starlette.testclient import TestClient

from dispatcher.audience.clicktoken import ClickSigner
from dispatcher.delivery.abdecision import VariantStats, choose, decide, p_value
from dispatcher.delivery.report import campaign_report
from dispatcher.delivery.status import campaign_status
from dispatcher.scheduler import Scheduler
from dispatcher.store.models import Campaign, Delivery, DeliveryStatus, utcnow
from dispatcher.web import create_app
from tests.factories import Harness, add_member, write_campaign

Pipeline = Callable[..., Harness]
SUBJECTS = ("حراج یلدا", "یلدا: ۵۰٪ تخفیف")
BROWSER = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/128.0"}
HTML = """{% extends "email_layout.html" %}{% block content %}
<p><a href="https://shop.example/yalda">حراج</a></p>{% endblock %}
"""
ROOT = Path(__file__).resolve().parents[2]


def ab_campaign(folder: Path, *, share: float = 0.5, winner_by: str = "clicks") -> Path:
    path = write_campaign(folder, html=HTML)
    subjects = ", ".join(f'"{s}"' for s in SUBJECTS)
    extra = f'[ab]\nsubjects = [{subjects}]\ntest_share = {share}\ndecide_after = "2h"\n'
    path.write_text(
        path.read_text(encoding="utf-8") + extra + f'winner_by = "{winner_by}"\n', "utf-8"
    )
    return path


@pytest.fixture
def h(pipeline: Pipeline, redis_url: str, redis_namespace: str) -> Harness:
    return pipeline(redis_url=redis_url, redis_namespace=redis_namespace)


def deliveries(h: Harness) -> list[Delivery]:
    with Session(h.engine) as session:
        return list(session.execute(select(Delivery).order_by(col(Delivery.id))).scalars())


def subjects_sent(h: Harness) -> Counter[str]:
    """Subject -> emails in the outbox; every delivery's file once."""
    found: Counter[str] = Counter()
    for path in (h.settings.outbox_dir / "email").glob("*.eml"):
        found[email.message_from_bytes(path.read_bytes(), policy=policy.default)["Subject"]] += 1
    return found


def click(h: Harness, client: TestClient, variant: str, how_many: int) -> None:
    """`how_many` of the variant's recipients click the link (a minute after the send)."""
    signer = ClickSigner(h.settings.unsubscribe_keys())
    campaign_id = deliveries(h)[0].campaign_id
    mine = [d for d in deliveries(h) if d.variant == variant and d.status == DeliveryStatus.SENT]
    for d in mine[:how_many]:
        assert d.id is not None
        response = client.get(f"/c/{signer.sign(campaign_id, 0, variant, d.id)}", headers=BROWSER)
        assert response.status_code == 302
    client.app.state.web.clicks.flush()  # type: ignore[attr-defined]


def sent_a_minute_ago(h: Harness) -> datetime:
    from sqlalchemy import update

    launched = utcnow()
    with h.engine.begin() as conn:
        conn.execute(update(Delivery).values(sent_at=launched - timedelta(minutes=1)))
    return launched


def test_the_test_share_gets_the_variants_evenly_and_the_rest_waits(
    h: Harness, tmp_path: Path
) -> None:
    for i in range(40):
        add_member(h.engine, f"M{i:02}")
    h.send(ab_campaign(tmp_path / "c", share=0.3))
    h.run_workers()
    variants = Counter(d.variant for d in deliveries(h))
    assert variants == {"A": 6, "B": 6, None: 28}
    assert subjects_sent(h) == {SUBJECTS[0]: 6, SUBJECTS[1]: 6}
    status = campaign_status(h.engine, "yalda-test")["email"]
    assert status["waiting_for_winner"] == 28 and status["sent"] == 12
    assert status["ab_winner"] is None


def test_the_variant_clicked_more_goes_to_the_rest_after_decide_after(
    h: Harness, tmp_path: Path
) -> None:
    for i in range(40):
        add_member(h.engine, f"M{i:02}")
    h.send(ab_campaign(tmp_path / "c"))
    h.run_workers()
    launched = sent_a_minute_ago(h)
    with TestClient(create_app(h.settings), follow_redirects=False) as client:
        click(h, client, "A", 1)
        click(h, client, "B", 9)
    early = Scheduler(h.runtime, h.broker, h.actors, clock=lambda: launched + timedelta(hours=1))
    assert early.tick().decided == {}
    later = Scheduler(h.runtime, h.broker, h.actors, clock=lambda: launched + timedelta(hours=3))
    assert later.tick().decided == {"yalda-test": "B"}
    assert later.tick().decided == {}  # once
    h.run_workers()
    assert subjects_sent(h) == {SUBJECTS[0]: 10, SUBJECTS[1]: 30}
    assert all(d.status == DeliveryStatus.SENT for d in deliveries(h))
    ab = campaign_report(h.engine, "yalda-test")["ab"]
    assert ab["winner"] == "B" and ab["decided_by"] == "clicks" and ab["p_value"] < 0.05
    assert [(v["name"], v["subject"], v["unique_clicks"]) for v in ab["variants"]] == [
        ("A", SUBJECTS[0], 1),
        ("B", SUBJECTS[1], 9),
    ]
    assert [v["sent"] for v in ab["variants"]] == [10, 30]


def test_equal_clicks_send_a_and_say_no_clear_winner(h: Harness, tmp_path: Path) -> None:
    for i in range(20):
        add_member(h.engine, f"M{i:02}")
    h.send(ab_campaign(tmp_path / "c"))
    h.run_workers()
    launched = sent_a_minute_ago(h)
    with TestClient(create_app(h.settings), follow_redirects=False) as client:
        click(h, client, "A", 3)
        click(h, client, "B", 3)
    later = Scheduler(h.runtime, h.broker, h.actors, clock=lambda: launched + timedelta(hours=3))
    assert later.tick().decided == {"yalda-test": "A"}
    h.run_workers()
    assert subjects_sent(h) == {SUBJECTS[0]: 15, SUBJECTS[1]: 5}
    ab = campaign_report(h.engine, "yalda-test")["ab"]
    assert ab["winner"] == "A" and ab["decided_by"] == "no clear winner"
    assert ab["p_value"] == 1.0


def test_a_manual_test_waits_for_a_pick(h: Harness, tmp_path: Path) -> None:
    for i in range(10):
        add_member(h.engine, f"M{i:02}")
    h.send(ab_campaign(tmp_path / "c", winner_by="manual"))
    h.run_workers()
    far = Scheduler(h.runtime, h.broker, h.actors, clock=lambda: utcnow() + timedelta(days=9))
    assert far.tick().decided == {}
    campaign_id = deliveries(h)[0].campaign_id
    with pytest.raises(Exception, match="no variant 'E'"):
        decide(h.engine, campaign_id, now=utcnow(), winner="E")
    decision = far.decide_ab(campaign_id, utcnow(), far.tick(), winner="B")
    assert decision is not None and len(decision.waiting_ids) == 5
    assert decide(h.engine, campaign_id, now=utcnow(), winner="A") is None
    h.run_workers()
    assert subjects_sent(h) == {SUBJECTS[0]: 3, SUBJECTS[1]: 7}


KILLED = """
import sys, time
from dispatcher.delivery.abdecision import decide
from dispatcher.store.db import make_engine
from dispatcher.store.models import utcnow

def stop_here():
    print("deciding", flush=True)
    time.sleep(600)

decide(make_engine(sys.argv[1]), int(sys.argv[2]), now=utcnow(), winner="B",
       before_commit=stop_here)
"""


def test_a_scheduler_killed_mid_decision_leaves_it_to_be_made_once(
    h: Harness, tmp_path: Path
) -> None:
    for i in range(20):
        add_member(h.engine, f"M{i:02}")
    h.send(ab_campaign(tmp_path / "c"))
    h.run_workers()
    campaign_id = deliveries(h)[0].campaign_id
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, h.settings.database_url, str(campaign_id)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "deciding\n"
    proc.kill()  # between its writes and its commit
    proc.wait()
    with Session(h.engine) as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.ab_state == "testing" and not campaign.ab_winner
    assert Counter(d.variant for d in deliveries(h)) == {"A": 5, "B": 5, None: 10}
    scheduler = Scheduler(h.runtime, h.broker, h.actors)
    decision = scheduler.decide_ab(campaign_id, utcnow(), scheduler.tick(), winner="A")
    assert decision is not None and len(decision.waiting_ids) == 10
    h.run_workers()
    assert subjects_sent(h) == {SUBJECTS[0]: 15, SUBJECTS[1]: 5}  # one email each
    assert Counter(d.variant for d in deliveries(h)) == {"A": 15, "B": 5}


def test_the_z_test_and_the_choice() -> None:
    assert p_value(90, 1000, 60, 1000) < 0.05 < p_value(66, 1000, 60, 1000)
    assert p_value(0, 0, 5, 10) == 1.0 and p_value(0, 10, 0, 10) == 1.0
    winner, by, p = choose([VariantStats("A", 1000, 60), VariantStats("B", 1000, 90)])
    assert (winner, str(by)) == ("B", "clicks") and p < 0.05
    a = [VariantStats("A", 100, 5), VariantStats("B", 100, 20), VariantStats("C", 100, 18)]
    assert choose(a)[:2] == ("A", "no clear winner")  # B does not beat C
