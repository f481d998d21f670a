"""Crash safety with real processes, on Redis and on RabbitMQ: `dramatiq
dispatcher.workers:setup` killed with SIGKILL mid-campaign, and the broker losing its queues
mid-campaign (a Redis flush; RabbitMQ's queues deleted). Counted at a real SMTP server.

The promise: every subscribed member gets exactly one email, except that a worker
killed while a message was on the wire may send that one again after the lease
(SEND_LEASE_SECONDS); see `dispatcher.delivery.control`.
"""

from __future__ import annotations

import collections
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher.store.db import make_engine
from dispatcher.store.models import Campaign, CampaignState, Delivery, DeliveryStatus
from dispatcher.store.schema import upgrade
from tests.conftest import BrokerUnderTest
from tests.eventually import eventually
from tests.factories import add_member, write_campaign
from tests.servers.smtp_server import SmtpServerHandle

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent


def procfile(process: str) -> list[str]:
    """The command of one of the Procfile's processes, split as a shell would."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name == process:
            return shlex.split(command)
    raise LookupError(process)


MEMBERS = 200
DEADLINE_S = 90


class Deployment:
    """The Procfile's processes on a test database, broker and SMTP server."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, name: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp_path / f"{name}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            args, env=self.env, cwd=self.tmp_path, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        self.procs.append(proc)
        return proc

    def worker(self) -> subprocess.Popen[bytes]:
        """The Procfile's worker command, with fewer processes and threads."""
        program, *args = procfile("worker")
        assert program == "dramatiq"
        return self.start(
            str(BIN / program), *args, "--processes", "1", "--threads", "4", name="worker"
        )

    def scheduler(self) -> subprocess.Popen[bytes]:
        return self.start(sys.executable, "-m", "dispatcher", "scheduler", name="scheduler")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "dispatcher", *args],
            env=self.env,
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the whole process group (dramatiq's main process and its workers)."""
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def close(self) -> None:
        for proc in self.procs:
            self.kill(proc)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.tmp_path.glob("*.log"))


@pytest.fixture
def deployment(
    tmp_path: Path, broker_under_test: BrokerUnderTest, smtp_server: SmtpServerHandle
) -> Iterator[tuple[Deployment, Engine]]:
    database_url = f"sqlite:///{tmp_path / 'dispatcher.db'}"
    engine = make_engine(database_url)
    upgrade(engine)  # the migrations, as an operator's `dispatcher db upgrade`
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        **broker_under_test.env,
        "REDIS_HEARTBEAT_TIMEOUT_MS": "2000",  # a dead worker's messages back in seconds
        "SEND_LEASE_SECONDS": "5",
        "SCHEDULER_INTERVAL": "0.5",
        "SMTP_HOST": smtp_server.host,
        "SMTP_PORT": str(smtp_server.port),
        "SMTP_SECURITY": "none",
        "SMTP_TIMEOUT": "2",
        "MAIL_FROM": "فروشگاه نمونه <news@shop.example>",
        "UNSUBSCRIBE_SECRET": "test-secret-key-0123456789",
        "SUPPRESSION_KEY": "test-suppression-key",
        "UNSUBSCRIBE_BASE_URL": "https://shop.example",
        "LOG_FORMAT": "json",
    }
    for i in range(MEMBERS):
        add_member(engine, f"C{i:04d}", email=f"member{i:04d}@example.com")
    smtp_server.delay_data(0.03, count=100_000)  # ~130 messages/s with 4 threads
    dep = Deployment(tmp_path, env)
    yield dep, engine
    dep.close()
    engine.dispose()


def wait_until_done(engine: Engine, dep: Deployment, slug: str) -> None:

    def done() -> bool:
        with Session(engine) as session:
            state = session.execute(
                select(Campaign.state).where(col(Campaign.slug) == slug)
            ).scalar_one()
        return state == CampaignState.DONE

    # Other processes: polling the database is all there is.
    eventually(done, timeout=DEADLINE_S, interval=0.2, what=lambda: f"{slug} done\n{dep.logs()}")


def statuses(engine: Engine) -> collections.Counter[str]:
    with Session(engine) as session:
        return collections.Counter(session.execute(select(Delivery.status)).scalars())


def sending_ids(engine: Engine) -> set[int]:
    with Session(engine) as session:
        return set(
            session.execute(
                select(Delivery.id).where(col(Delivery.status) == DeliveryStatus.SENDING)
            ).scalars()
        )


def test_a_worker_killed_mid_campaign_loses_nothing_and_sends_each_email_once(
    deployment: tuple[Deployment, Engine], smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    dep, engine = deployment
    dep.cli("campaign", "send", str(write_campaign(tmp_path / "c", slug="crash")))
    worker = dep.worker()
    smtp_server.wait_for(40, timeout=30)
    dep.kill(worker)  # SIGKILL, mid-campaign
    accepted_at_kill = len(smtp_server.messages())
    in_flight = sending_ids(engine)
    assert accepted_at_kill < MEMBERS, "the campaign finished before the kill"

    dep.worker()
    dep.scheduler()  # reclaims deliveries left `sending` past the lease; marks done
    wait_until_done(engine, dep, "crash")

    per_member = collections.Counter(m.rcpt_to for m in smtp_server.messages())
    assert set(per_member) == {f"member{i:04d}@example.com" for i in range(MEMBERS)}
    twice = [rcpt for rcpt, n in per_member.items() if n > 1]
    # The bound: only a message that was on the wire at the kill can arrive twice.
    assert len(twice) <= len(in_flight), (twice, in_flight)
    assert max(per_member.values()) <= 2
    assert statuses(engine) == {DeliveryStatus.SENT: MEMBERS}


def test_the_broker_losing_its_queues_mid_campaign_is_repaired_by_resume(
    deployment: tuple[Deployment, Engine],
    smtp_server: SmtpServerHandle,
    tmp_path: Path,
    broker_under_test: BrokerUnderTest,
) -> None:
    dep, engine = deployment
    dep.cli("campaign", "send", str(write_campaign(tmp_path / "c", slug="flush")))
    dep.worker()
    smtp_server.wait_for(40, timeout=30)
    broker_under_test.lose_queues()  # as a broker restarted without persistence

    resumed = dep.cli("campaign", "resume", "flush")
    assert "enqueued" in resumed.stdout
    dep.scheduler()
    wait_until_done(engine, dep, "flush")

    per_member = collections.Counter(m.rcpt_to for m in smtp_server.messages())
    assert len(per_member) == MEMBERS
    assert set(per_member.values()) == {1}  # nothing lost, nothing twice
    assert statuses(engine) == {DeliveryStatus.SENT: MEMBERS}
