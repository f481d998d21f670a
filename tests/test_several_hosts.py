"""One campaign, several machines: two worker hosts and a scheduler host, each a process
tree with its own working directory (no shared files) and, where the machine allows,
its own network namespace, all on one PostgreSQL and one broker (Redis, RabbitMQ).
One worker host is killed (SIGKILL) mid-campaign; the other finishes the campaign.

And no host keeps state of its own: nothing is written under a working directory
during the campaign (inline mode, the embedded demo, is the only mode that may).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher.store.db import make_engine
from dispatcher.store.models import Campaign, CampaignState, Delivery, DeliveryStatus
from dispatcher.store.schema import upgrade
from tests.conftest import POSTGRES_URL, BrokerUnderTest
from tests.factories import add_member, write_campaign
from tests.servers.hosts import Host, HostNetwork, TcpRelay
from tests.servers.smtp_server import SmtpServerHandle

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent
MEMBERS = 300
DEADLINE_S = 120


class Machine:
    """One host: a working directory of its own, its environment, its processes."""

    def __init__(self, name: str, root: Path, env: dict[str, str], host: Host | None) -> None:
        self.name = name
        self.cwd = root / name
        self.cwd.mkdir()
        self.logs = root / "logs"  # outside every working directory
        self.logs.mkdir(exist_ok=True)
        self.env = env
        self.host = host
        self.procs: list[subprocess.Popen[bytes]] = []

    def _argv(self, *args: str) -> list[str]:
        return self.host.command(*args) if self.host else list(args)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{self.name}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            self._argv(*args),
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def run(self, *args: str) -> str:
        result = subprocess.run(
            self._argv(sys.executable, "-m", "dispatcher", *args),
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def worker(self) -> subprocess.Popen[bytes]:
        return self.start(
            str(BIN / "dramatiq"), "dispatcher.workers:setup", "--processes", "1", "--threads", "4"
        )

    def scheduler(self) -> subprocess.Popen[bytes]:
        return self.start(sys.executable, "-m", "dispatcher", "scheduler")

    def kill(self) -> None:
        """SIGKILL every process of this host (each is a process group)."""
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder`: its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def via(url: str, address: str) -> str:
    """`url` with its host replaced by `address` (the port kept)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    port = f":{parts.port}" if parts.port else ""
    hostport = f"{address}{port}"
    return urlunsplit(
        parts._replace(netloc=f"{netloc[0]}@{hostport}" if len(netloc) == 2 else hostport)
    )


@pytest.fixture
def schema_url() -> Iterator[str]:
    """A PostgreSQL schema of this test's own, migrated as by `dispatcher db upgrade`."""
    schema = f"h_{uuid.uuid4().hex[:10]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def network() -> Iterator[HostNetwork | None]:
    net, reason = HostNetwork.create(3)
    if net is None:
        warnings.warn(
            f"hosts run as plain processes, without network namespaces: {reason}",
            pytest.PytestWarning,
            stacklevel=1,
        )
    yield net
    if net is not None:
        net.close()


def wait_until_done(engine: Engine, machines: list[Machine], slug: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        with Session(engine) as session:
            state = session.execute(
                select(Campaign.state).where(col(Campaign.slug) == slug)
            ).scalar_one()
        if state == CampaignState.DONE:
            return
        time.sleep(0.3)  # other processes, other hosts: polling the database is all there is
    logs = "\n".join(
        p.read_text(errors="replace")[-2000:] for p in sorted(machines[0].logs.glob("*.log"))
    )
    pytest.fail(f"campaign {slug} not done after {DEADLINE_S}s\n{logs}")


@pytest.mark.filterwarnings("default::pytest.PytestWarning")
def test_two_worker_hosts_share_a_campaign_and_one_killed_loses_nothing(
    tmp_path: Path,
    schema_url: str,
    broker_under_test: BrokerUnderTest,
    smtp_server: SmtpServerHandle,
    network: HostNetwork | None,
) -> None:
    engine = make_engine(schema_url)
    upgrade(engine)
    for i in range(MEMBERS):
        add_member(engine, f"C{i:04d}", email=f"member{i:04d}@example.com")
    smtp_server.delay_data(0.03, count=100_000)  # ~130 messages/s a host

    relay = TcpRelay() if network else None
    machines = []
    for i, name in enumerate(("scheduler-host", "worker-host-a", "worker-host-b")):
        host = network.hosts[i] if network else None
        address = host.gateway if host else "127.0.0.1"
        if relay is not None and host is not None:
            for url in (schema_url, broker_under_test.url):
                relay.add(address, urlsplit(url).port or 0)
            relay.add(address, smtp_server.port)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            "PYTHONDONTWRITEBYTECODE": "1",
            "DATABASE_URL": via(schema_url, address),
            **{
                k: via(v, address) if k.endswith("_URL") else v
                for k, v in broker_under_test.env.items()
            },
            "REDIS_HEARTBEAT_TIMEOUT_MS": "2000",
            "SEND_LEASE_SECONDS": "5",
            "SCHEDULER_INTERVAL": "0.5",
            "SMTP_HOST": address,
            "SMTP_PORT": str(smtp_server.port),
            "SMTP_SECURITY": "none",
            "SMTP_TIMEOUT": "2",
            "MAIL_FROM": "فروشگاه نمونه <news@shop.example>",
            "UNSUBSCRIBE_SECRET": "test-secret-key-0123456789",
            "SUPPRESSION_KEY": "test-suppression-key",
            "UNSUBSCRIBE_BASE_URL": "https://shop.example",
            "LOG_FORMAT": "json",
        }
        machines.append(Machine(name, tmp_path, env, host))
    scheduler_host, host_a, host_b = machines
    campaign = write_campaign(scheduler_host.cwd / "campaigns", slug="two-hosts")
    before = {m.name: snapshot(m.cwd) for m in machines}

    try:
        scheduler_host.run("campaign", "send", str(campaign))
        host_a.worker()
        host_b.worker()
        scheduler_host.scheduler()
        smtp_server.wait_for(60, timeout=60)
        host_a.kill()  # SIGKILL, mid-campaign: the machine is gone
        accepted_at_kill = len(smtp_server.messages())
        with Session(engine) as session:
            in_flight = set(
                session.execute(
                    select(Delivery.id).where(col(Delivery.status) == DeliveryStatus.SENDING)
                ).scalars()
            )
        assert accepted_at_kill < MEMBERS, "the campaign finished before the kill"
        wait_until_done(engine, machines, "two-hosts")  # host b alone finishes it
        after = {m.name: snapshot(m.cwd) for m in machines}
    finally:
        for machine in machines:
            machine.kill()
        if relay is not None:
            relay.close()

    per_member = collections.Counter(m.rcpt_to for m in smtp_server.messages())
    assert set(per_member) == {f"member{i:04d}@example.com" for i in range(MEMBERS)}
    twice = [rcpt for rcpt, n in per_member.items() if n > 1]
    assert len(twice) <= len(in_flight), (twice, in_flight)  # only what was on the wire
    with Session(engine) as session:
        statuses = collections.Counter(session.execute(select(Delivery.status)).scalars())
        per_delivery = collections.Counter(session.execute(select(Delivery.member_id)).scalars())
    assert statuses == {DeliveryStatus.SENT: MEMBERS}  # each delivery recorded once
    assert set(per_delivery.values()) == {1}
    assert after == before, "a host wrote under its working directory during the campaign"
    engine.dispose()
