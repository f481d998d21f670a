"""What the benchmark runs on: databases, members, campaign files, and the real processes
(`dispatcher campaign send`, `dramatiq dispatcher.workers:setup`, an SMTP sink), each bounded
in time, with their peak memory read from the kernel.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, func, text
from sqlalchemy import select as sql_select
from sqlalchemy.engine import Engine

from dispatcher.audience.addresses import AddressKeys
from dispatcher.store.db import create_schema, make_engine
from dispatcher.store.models import Campaign, Delivery, DeliveryStatus, Member, MemberTag

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SECRET = "bench-secret-0123456789abcdef"
MAIL_FROM = "فروشگاه نمونه <news@shop.example>"
OPTED_OUT_EVERY = 10  # like the baseline: one member in ten is not subscribed


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s" if seconds > 0 else "n/a"


class BenchError(RuntimeError):
    """Raised when a step of the benchmark fails or runs out of time."""


# -- databases ------------------------------------------------------------------------------


@dataclass
class Database:
    kind: str  # "sqlite" or "postgres"
    url: str
    schema: str | None = None
    admin_url: str | None = None

    @classmethod
    def sqlite(cls, folder: Path, name: str) -> Database:
        path = folder / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return cls("sqlite", f"sqlite:///{path}")

    @classmethod
    def postgres(cls, base_url: str, schema: str) -> Database:
        sep = "&" if "?" in base_url else "?"
        return cls(
            "postgres",
            f"{base_url}{sep}options=-csearch_path%3D{schema}",
            schema=schema,
            admin_url=base_url,
        )

    def engine(self) -> Engine:
        return make_engine(_sqlalchemy_url(self.url))

    def create(self) -> None:
        if self.schema:
            self.drop()
            admin = make_engine(_sqlalchemy_url(self.admin_url or ""))
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {self.schema}"))
            admin.dispose()
        engine = self.engine()
        try:  # the schema as `dispatcher db upgrade` makes it, where migrations exist
            from dispatcher.store.schema import upgrade
        except ImportError:
            create_schema(engine)
        else:
            upgrade(engine)
        engine.dispose()

    def drop(self) -> None:
        if self.schema:
            admin = make_engine(_sqlalchemy_url(self.admin_url or ""))
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE"))
            admin.dispose()
        else:
            path = self.url.removeprefix("sqlite:///")
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)


def _sqlalchemy_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _defaults(table: Table, given: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every column of the table with a value: ours, or the model's scalar default."""
    out: list[tuple[str, Any]] = []
    for column in table.columns:
        if column.name in given:
            out.append((column.name, given[column.name]))
        elif column.default is not None and getattr(column.default, "is_scalar", False):
            out.append((column.name, column.default.arg))  # type: ignore[attr-defined]
        elif not column.nullable and not column.primary_key:
            raise BenchError(f"no value for {table.name}.{column.name} (a new column?)")
    return out


def seed_members(db: Database, n: int, chunk: int = 50_000) -> float:
    """N members tagged `newsletter`, one in ten opted out of email; returns seconds.

    Written through the driver directly (COPY on PostgreSQL), so that seeding a million
    members takes seconds; columns the models add later get their defaults.
    """
    now = datetime.now(UTC).replace(tzinfo=None)
    mtable: Table = Member.__table__  # type: ignore[attr-defined]
    ttable: Table = MemberTag.__table__  # type: ignore[attr-defined]
    sample = {
        "id": 1,
        "external_id": "B1",
        "first_name": "مریم",
        "last_name": "احمدی",
        "email": "u1@example.com",
        "mobile": "+989120000001",
        "email_opt_in": True,
        "sms_opt_in": True,
        "mobile_invalid": False,
        "tags": "newsletter",
        "updated_at": now,
        "email_key": "",
        "mobile_key": "",
    }
    keys = AddressKeys(SECRET.encode())  # = SUPPRESSION_KEY: keys as `members import` sets
    columns = [name for name, _ in _defaults(mtable, sample)]
    fixed = dict(_defaults(mtable, sample))
    names = ("مریم", "علی", "زهرا", "رضا", "فاطمه", "حسین", "سارا", "محمد")

    def member_rows(lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
        for i in range(lo, hi):
            row = dict(fixed)
            row.update(
                id=i,
                external_id=f"B{i}",
                first_name=names[i % len(names)],
                email=f"u{i}@example.com",
                mobile=f"+98912{i:07d}",
                email_opt_in=i % OPTED_OUT_EVERY != 0,
                email_key=keys.email(f"u{i}@example.com"),
                mobile_key=keys.mobile(f"+98912{i:07d}"),
            )
            yield tuple(row[c] for c in columns)

    t0 = time.perf_counter()
    engine = db.engine()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for lo in range(1, n + 1, chunk):
            hi = min(lo + chunk, n + 1)
            if db.kind == "postgres":
                with cur.copy(  # type: ignore[attr-defined]
                    f"COPY {mtable.name} ({', '.join(columns)}) FROM STDIN"
                ) as copy:
                    for row in member_rows(lo, hi):
                        copy.write_row(row)
                with cur.copy(f"COPY {ttable.name} (member_id, tag) FROM STDIN") as copy:  # type: ignore[attr-defined]
                    for i in range(lo, hi):
                        copy.write_row((i, "newsletter"))
            else:
                marks = ", ".join("?" for _ in columns)
                cur.executemany(
                    f"INSERT INTO {mtable.name} ({', '.join(columns)}) VALUES ({marks})",
                    (
                        tuple(v.isoformat(" ") if isinstance(v, datetime) else v for v in r)
                        for r in member_rows(lo, hi)
                    ),
                )
                cur.executemany(
                    f"INSERT INTO {ttable.name} (member_id, tag) VALUES (?, ?)",
                    ((i, "newsletter") for i in range(lo, hi)),
                )
            raw.commit()
        if db.kind == "postgres":
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{mtable.name}', 'id'), {n})")
            raw.commit()
            # As autovacuum leaves a members table that has been there a while (statistics,
            # and the visibility map that lets index-only scans skip the heap), not as a
            # COPY a second ago does.
            raw.driver_connection.autocommit = True  # type: ignore[attr-defined]
            cur.execute(f"VACUUM ANALYZE {mtable.name}")
            cur.execute(f"VACUUM ANALYZE {ttable.name}")
            raw.driver_connection.autocommit = False  # type: ignore[attr-defined]
        cur.close()
    finally:
        raw.close()
        engine.dispose()
    return time.perf_counter() - t0


def opt_out_after_expansion(db: Database, every: int) -> int:
    """Opt every `every`-th member out *after* expansion: the workers must skip them."""
    engine = db.engine()
    with engine.begin() as conn:
        n = conn.execute(
            text(
                "UPDATE member SET email_opt_in = :f, sms_opt_in = :f, "
                "email_optout_source = 'link', sms_optout_source = 'link' "
                "WHERE id % :every = 7"
            ),
            {"f": False, "every": every},
        ).rowcount
    engine.dispose()
    return int(n)


@dataclass
class Outcome:
    counts: dict[str, int]
    first: datetime | None
    last: datetime | None

    @property
    def done(self) -> int:
        return sum(v for k, v in self.counts.items() if k not in ("pending", "sending"))

    @property
    def span(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return (self.last - self.first).total_seconds()


def campaign_outcome(engine: Engine, slug: str) -> Outcome:
    """Counts by status, and the first and last time a delivery was recorded."""
    with engine.connect() as conn:
        cid = conn.execute(sql_select(Campaign.id).where(Campaign.slug == slug)).scalar_one()
        counts = dict(
            conn.execute(  # type: ignore[arg-type]
                sql_select(Delivery.status, func.count())
                .where(Delivery.campaign_id == cid)
                .group_by(Delivery.status)
            ).all()
        )
        first, last = conn.execute(
            sql_select(func.min(Delivery.updated_at), func.max(Delivery.updated_at)).where(
                Delivery.campaign_id == cid,
                Delivery.status != DeliveryStatus.PENDING,
            )
        ).one()
    return Outcome(counts={str(k): int(v) for k, v in counts.items()}, first=first, last=last)


def outstanding(engine: Engine, slug: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sql_select(func.count())
                .select_from(Delivery)
                .join(Campaign, Campaign.id == Delivery.campaign_id)  # type: ignore[arg-type]
                .where(
                    Campaign.slug == slug,
                    Delivery.status.in_(  # type: ignore[attr-defined]
                        [DeliveryStatus.PENDING, DeliveryStatus.SENDING]
                    ),
                )
            ).scalar_one()
        )


# -- campaign files ---------------------------------------------------------------------


def write_campaign(folder: Path, slug: str, channels: list[str]) -> Path:
    """The example campaign (campaigns/yalda-1405.toml, its templates) as `slug`, on `channels`."""
    import tomllib

    folder.mkdir(parents=True, exist_ok=True)
    src = REPO / "campaigns"
    shutil.copytree(src / "yalda", folder / "yalda", dirs_exist_ok=True)
    example = tomllib.loads((src / "yalda-1405.toml").read_text("utf-8"))
    lines = [
        f"slug = {json.dumps(slug)}",
        f"name = {json.dumps(example['name'], ensure_ascii=False)}",
        f"channels = {json.dumps(channels)}",
        "[audience]",
        'tags = ["newsletter"]',
    ]
    for channel in channels:
        lines.append(f"[{channel}]")
        for key, value in example[channel].items():
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    path = folder / f"{slug}.toml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Sink:
    kind: str
    port: int
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop(self.proc)


def start_sink(kind: str, log: Path) -> Sink:
    """Postfix's smtp-sink when installed (and kind allows), else bench/sink.py."""
    binary = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if os.access("/usr/sbin/smtp-sink", os.X_OK) else None
    )
    if kind in ("auto", "postfix") and binary:
        port = free_port()
        args = [binary, "-4", f"127.0.0.1:{port}", "1024"]
        if os.geteuid() == 0:
            args[1:1] = ["-u", "nobody"]
        with open(log, "ab") as err:
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
        wait_port(port)
        return Sink("postfix smtp-sink", port, proc)
    if kind == "postfix":
        raise BenchError("smtp-sink is not installed (apt-get install postfix)")
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sink"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    if not ready:
        stop(proc)
        raise BenchError("bench.sink did not start")
    port = json.loads(proc.stdout.readline())["port"]
    return Sink("bench.sink (asyncio)", port, proc)


def stop(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def env_for(
    db: Database, *, redis_url: str, namespace: str, sink_port: int, **extra: str
) -> dict[str, str]:
    """The settings of the CLI and the workers, as environment variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "KAVENEGAR_"))}
    env.update(
        DATABASE_URL=db.url,
        REDIS_URL=redis_url,
        REDIS_NAMESPACE=namespace,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(sink_port),
        SMTP_SECURITY="none",
        MAIL_FROM=MAIL_FROM,
        UNSUBSCRIBE_SECRET=SECRET,
        SUPPRESSION_KEY=SECRET,
        UNSUBSCRIBE_BASE_URL="https://shop.example",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Ran:
    seconds: float
    peak_rss_mb: float
    output: str


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> Ran:
    """Run `dispatcher ...` to completion; wall time and the kernel's peak RSS for it."""
    t0 = time.perf_counter()
    out = cwd / "cli.log"
    with open(out, "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "dispatcher"), *args], env=env, cwd=cwd, stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise BenchError(f"dispatcher {' '.join(args)}: no end after {timeout:.0f}s")
            time.sleep(0.01)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text_out = out.read_text("utf-8", errors="replace")
    if proc.returncode != 0:
        tail = text_out[-3000:]
        raise BenchError(f"dispatcher {' '.join(args)} exited {proc.returncode}:\n{tail}")
    return Ran(seconds, usage.ru_maxrss / 1024, text_out)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@contextmanager
def workers(
    env: dict[str, str], cwd: Path, *, processes: int, threads: int, extra: list[str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`dramatiq dispatcher.workers:setup` for the duration of the block."""
    log = open(cwd / "workers.log", "ab")  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(
        [
            str(BIN / "dramatiq"),
            "dispatcher.workers:setup",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            *(extra or []),
        ],
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=log,
    )
    try:
        yield proc
    finally:
        stop(proc, timeout=30)
        log.close()


def worker_peak_rss(proc: subprocess.Popen[bytes]) -> float:
    """The largest peak RSS among the worker processes (dramatiq forks one per --processes)."""
    return max((peak_rss_mb(c) for c in children(proc.pid)), default=0.0)


def wait_until_done(
    engine: Engine, slug: str, proc: subprocess.Popen[bytes], timeout: float, poll: float = 0.2
) -> float:
    """Poll the database until nothing is outstanding; returns the wall time it took."""
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    while True:
        if outstanding(engine, slug) == 0:
            return time.perf_counter() - t0
        if proc.poll() is not None:
            raise BenchError(f"the workers exited early ({proc.returncode}); see workers.log")
        if time.monotonic() > deadline:
            raise BenchError(f"{slug}: still outstanding after {timeout:.0f}s")
        time.sleep(poll)


BROKERS = ("redis", "rabbitmq")


def add_vhost(vhost: str) -> None:
    """A RabbitMQ virtual host of this run's own, for guest (rabbitmqctl, as root)."""
    for args in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def delete_vhost(vhost: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=120)


def delete_queues(url: str, queues: tuple[str, ...] = ("email", "sms")) -> None:
    """Delete the dispatcher's queues (with their delay and dead-letter queues)."""
    import pika
    from dramatiq.common import dq_name, xq_name

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for queue in queues:
            for name in (queue, dq_name(queue), xq_name(queue)):
                channel.queue_delete(name)
    finally:
        connection.close()


def delete_keys(redis_url: str, namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(f"{namespace}*", count=5000))
        for lo in range(0, len(keys), 5000):
            client.delete(*keys[lo : lo + 5000])
    finally:
        client.close()
