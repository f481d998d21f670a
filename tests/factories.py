"""Builders for test data and a harness that runs the real pipeline end to end."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq import Broker, Worker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import QueueJoinTimeout
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from dispatcher.audience.addresses import address_keys
from dispatcher.definition.campaign import CampaignSpec, load_campaign
from dispatcher.queue.broker import build_broker, use_broker
from dispatcher.queue.expansion import Expansion, enqueue_pending, expand
from dispatcher.runtime import Runtime, set_runtime
from dispatcher.settings import Settings
from dispatcher.store.db import create_schema
from dispatcher.store.models import Delivery, Member, MemberTag
from dispatcher.workers import actors

HTML = """{% extends "email_layout.html" %}{% block content %}
<h1>{{ member.first_name }} عزیز، شب یلدا مبارک</h1>
<p>حراج یلدا در {{ shop.name }} شروع شد.</p>
{% endblock %}
"""


def add_member(engine: Engine, external_id: str, **fields: Any) -> Member:
    """One member; tags given as a list go into MemberTag too."""
    tags = list(fields.pop("tags", ["newsletter"]))
    fields.setdefault("first_name", "مریم")
    fields.setdefault("email", f"{external_id.lower()}@example.com")
    fields.setdefault("mobile", None)
    with Session(engine, expire_on_commit=False) as session:
        member = Member(external_id=external_id, tags=";".join(tags), **fields)
        session.add(member)
        session.flush()
        assert member.id is not None
        for tag in tags:
            session.add(MemberTag(member_id=member.id, tag=tag))
        session.commit()
        return member


def update_member(engine: Engine, member_id: int, **fields: Any) -> None:
    with Session(engine) as session:
        member = session.get(Member, member_id)
        assert member is not None
        for key, value in fields.items():
            setattr(member, key, value)
        session.add(member)
        session.commit()


def write_campaign(
    folder: Path,
    *,
    slug: str = "yalda-test",
    channels: tuple[str, ...] = ("email",),
    tags: list[str] | None = None,
    html: str = HTML,
    sms: str | None = None,
    subject: str = "{{ member.first_name }} عزیز، حراج یلدا",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "email.html").write_text(html, encoding="utf-8")
    lines = [
        f'slug = "{slug}"',
        'name = "حراج شب یلدا"',
        "channels = [" + ", ".join(f'"{c}"' for c in channels) + "]",
    ]
    if tags is not None:
        lines += ["[audience]", "tags = [" + ", ".join(f'"{t}"' for t in tags) + "]"]
    if "email" in channels:
        lines += [
            "[email]",
            f'subject = "{subject}"',
            'html = "email.html"',
        ]
    if "sms" in channels:
        lines += ["[sms]", f'body = "{sms or "{{ member.first_name }} عزیز، حراج یلدا شروع شد"}"']
    path = folder / f"{slug}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Harness:
    """Settings + runtime + broker + worker: the production pipeline in one process."""

    def __init__(self, settings: Settings, broker: Broker | None = None) -> None:
        self.settings = settings
        self.runtime = Runtime.from_settings(settings)
        create_schema(self.runtime.engine)
        self.broker = use_broker(broker or build_broker(settings))
        self.actors = actors()  # declared on it (moved to it if declared before)

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    def send(self, campaign_file: Path) -> Expansion:
        spec: CampaignSpec = load_campaign(campaign_file)
        result = expand(self.engine, spec, keys=address_keys(self.runtime.settings))
        if result.created:
            enqueue_pending(self.engine, self.broker, result.campaign, self.actors)
        return result

    def run_workers(self, timeout_ms: int = 20_000, threads: int = 4) -> None:
        worker = Worker(self.broker, worker_threads=threads, worker_timeout=50)
        worker.start()
        try:
            queues = sorted(self.broker.get_declared_queues())
            if isinstance(self.broker, RabbitmqBroker):
                join_rabbitmq(self.broker, queues, timeout_ms)
            else:
                for queue in queues:
                    self.broker.join(queue, timeout=timeout_ms)
            worker.join()
        finally:
            worker.stop()

    def deliveries(self) -> list[Delivery]:
        with Session(self.engine) as session:
            return list(session.exec(select(Delivery).order_by(Delivery.id)).all())

    def close(self) -> None:
        self.runtime.close()


def join_rabbitmq(broker: RabbitmqBroker, queues: list[str], timeout_ms: int) -> None:
    """Dramatiq's `RabbitmqBroker.join` (10 polls in a row, 100 ms apart, that find no
    message ready or delayed), for all `queues` in the same polls: one quiet second in
    which none of them has a message, instead of one second per queue, each in turn."""
    deadline = time.monotonic() + timeout_ms / 1000
    quiet = 0
    while quiet < 10:
        if time.monotonic() >= deadline:
            raise QueueJoinTimeout(", ".join(queues))
        waiting = sum(sum(broker.get_queue_message_counts(q)[:-1]) for q in queues)
        quiet = quiet + 1 if waiting == 0 else 0
        broker.connection.sleep(0.1)


@contextmanager
def harness(settings: Settings, broker: Broker | None = None) -> Iterator[Harness]:
    h = Harness(settings, broker)
    previous = set_runtime(h.runtime)
    try:
        yield h
    finally:
        set_runtime(previous)
        h.close()
        dramatiq.set_broker(
            build_broker(settings.model_copy(update={"redis_url": None, "broker_url": None}))
        )


# Holds SQLite's write lock (BEGIN IMMEDIATE) until a line arrives on stdin.
LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


@contextmanager
def write_lock_held(database: Path) -> Iterator[Callable[[], None]]:
    """Another process holds the database's write lock; the callable releases it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin = proc.stdin

    def release() -> None:
        if not stdin.closed:
            stdin.write("\n")
            stdin.close()
            proc.wait(timeout=10)

    try:
        assert proc.stdout.readline() == "locked\n"
        yield release
    finally:
        release()
