"""The dispatcher's benchmark, side by side with the plain approach: `python -m bench`.

On loopback, against the real processes (`dispatcher campaign send`, `dramatiq
dispatcher.workers:setup`), on SQLite and on PostgreSQL:

1. expansion: deliveries per second from `campaign send` (process start) until every
   job is enqueued in the broker (Redis, and RabbitMQ: `--broker`, default both);
2. email end to end: messages per second from the first delivery recorded to the last,
   with the workers on `--processes` processes, against an SMTP sink in its own process;
3. the baseline (`../shared/bench/naive_peer.py`: one job per recipient, stdlib
   EmailMessage, a new SMTP connection per message) on the same machine, same N, same
   sink, and the ratio;
4. SMS end to end against the Kavenegar test server (when the SMS actor exists);
5. memory: peak RSS of `campaign send` and of a worker process at N and at 10N.

    python -m bench                       # N = 100,000 members
    python -m bench --million             # N = 1,000,000
    python -m bench --members 20000 --skip-postgres --only email --only baseline

Every phase is bounded in time; keys go under a Redis namespace of this run's own (db
14 by default) and are deleted at the end, and PostgreSQL tables under a schema of this
run's own, dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import harness as h

PHASES = ("expansion", "email", "baseline", "sms", "memory")


@dataclass
class Report:
    n: int
    rows: dict[str, dict[str, str]] = field(default_factory=dict)  # measure -> db -> value
    notes: list[str] = field(default_factory=list)

    def put(self, measure: str, db: str, value: str) -> None:
        self.rows.setdefault(measure, {})[db] = value
        print(f"  {db:<10} {measure}: {value}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=100_000, help="N (default 100,000)")
    ap.add_argument("--million", action="store_true", help="N = 1,000,000")
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--only", action="append", choices=PHASES, help="repeatable")
    ap.add_argument("--processes", type=int, default=0, help="worker processes (0: the Procfile's)")
    ap.add_argument("--threads", type=int, default=0, help="worker threads (0: the Procfile's)")
    ap.add_argument("--sink", choices=("auto", "postfix", "asyncio"), default="auto")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    ap.add_argument(
        "--broker",
        action="append",
        choices=h.BROKERS,
        help="repeatable (default: both); RabbitMQ in a virtual host of this run's own",
    )
    ap.add_argument(
        "--rabbitmq-url",
        default="amqp://guest:guest@127.0.0.1:5672",
        help="RabbitMQ without a virtual host (one is added with rabbitmqctl, then deleted)",
    )
    ap.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        default=h.REPO.parent / "shared" / "bench" / "naive_peer.py",
        help="the plain approach to compare with (default ../shared/bench/naive_peer.py)",
    )
    ap.add_argument(
        "--memory-seconds",
        type=float,
        default=60.0,
        help="how long the worker runs on the 10N queue for its memory reading",
    )
    ap.add_argument(
        "--sms-members", type=int, default=10_000, help="N for the SMS phase (default 10,000)"
    )
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md's table")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = ap.parse_args(argv)
    if args.million:
        args.members = 1_000_000
    if args.processes <= 0:
        args.processes = procfile_option("processes", os.cpu_count() or 1)
    if args.threads <= 0:
        args.threads = procfile_option("threads", 8)
    args.only = set(args.only or PHASES)
    args.broker = list(dict.fromkeys(args.broker or h.BROKERS))
    return args


def procfile_option(name: str, default: int) -> int:
    """`--processes` or `--threads` of the Procfile's worker line (Dramatiq's default
    when it has none)."""
    text = (h.REPO / "Procfile").read_text("utf-8")
    found = re.search(rf"--{name}\s+(\d+)", text)
    return int(found.group(1)) if found else default


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.ns = f"bench{os.getpid()}"
        self.report = Report(args.members)
        self.sink: h.Sink | None = None
        self.email_rates: dict[str, float] = {}
        self.broker = args.broker[0]  # the broker of the phase running
        self.vhost = f"bench{os.getpid()}"

    def label(self, kind: str) -> str:
        """The report's column: the database, and the broker when it is not Redis."""
        label = "SQLite" if kind == "sqlite" else "PostgreSQL"
        return label if self.broker == "redis" else f"{label}, RabbitMQ"

    def clean(self) -> None:
        """Empty the broker between phases."""
        h.delete_keys(self.args.redis_url, self.ns)
        if self.broker == "rabbitmq":
            h.delete_queues(self.rabbitmq_url)

    @property
    def rabbitmq_url(self) -> str:
        return f"{self.args.rabbitmq_url.rstrip('/')}/{self.vhost}"

    # -- one database -----------------------------------------------------------------------

    def database(self, kind: str, tag: str) -> h.Database:
        if kind == "sqlite":
            return h.Database.sqlite(self.work, tag)
        return h.Database.postgres(self.args.postgres_url, f"bench_{os.getpid()}")

    def env(self, db: h.Database, **extra: str) -> dict[str, str]:
        assert self.sink is not None
        if self.broker == "rabbitmq":  # Redis stays for the shared counters
            extra = {"BROKER_URL": self.rabbitmq_url, **extra}
        return h.env_for(
            db, redis_url=self.args.redis_url, namespace=self.ns, sink_port=self.sink.port, **extra
        )

    def expand(self, db: h.Database, n: int, slug: str, channels: list[str]) -> h.Ran:
        """Fresh database, N members, then `campaign send` (expansion + enqueue)."""
        db.create()
        seeded = h.seed_members(db, n)
        print(f"  {db.kind:<10} seeded {n:,} members in {seeded:.1f}s", flush=True)
        folder = self.work / slug
        file = h.write_campaign(folder, slug, channels)
        return h.run_cli(
            ["campaign", "send", str(file)], self.env(db), folder, timeout=60 + n / 2_000
        )

    def run_database(self, kind: str) -> None:
        a, r, n = self.args, self.report, self.args.members
        label = self.label(kind)
        wants = a.only & {"expansion", "email", "memory"}
        if not wants:
            return
        db = self.database(kind, "email")
        slug = f"bench-email-{kind}"
        try:
            ran = self.expand(db, n, slug, ["email"])
            engine = db.engine()
            enqueued = h.campaign_outcome(engine, slug).counts.get("pending", 0)
            r.put(
                "expansion: deliveries enqueued / s (wall, process start included)",
                label,
                f"{h.rate(enqueued, ran.seconds)} ({enqueued:,} in {ran.seconds:.2f}s)",
            )
            r.put(f"memory: `campaign send` peak RSS, N={n:,}", label, f"{ran.peak_rss_mb:.0f} MB")
            if a.only & {"email", "memory"}:
                late = h.opt_out_after_expansion(db, 1000)
                self.email(db, engine, slug, label, enqueued, late)
            engine.dispose()
        finally:
            db.drop()
            self.clean()

    def email(
        self, db: h.Database, engine: object, slug: str, label: str, enqueued: int, late: int
    ) -> None:
        a, r = self.args, self.report
        env = self.env(db)
        t0 = time.perf_counter()
        with h.workers(env, self.work, processes=a.processes, threads=a.threads) as proc:
            h.wait_until_done(engine, slug, proc, timeout=120 + enqueued / 300)  # type: ignore[arg-type]
            wall = time.perf_counter() - t0
            rss = h.worker_peak_rss(proc)
        out = h.campaign_outcome(engine, slug)  # type: ignore[arg-type]
        sent = out.counts.get("sent", 0)
        skipped = out.counts.get("skipped", 0)
        if skipped > late or sent + skipped != enqueued:
            raise h.BenchError(f"{label}: unexpected outcome {out.counts} ({late} opted out late)")
        span = out.span
        self.email_rates[label] = sent / wall
        r.put(
            "email: messages / s, first to last delivery recorded",
            label,
            f"{h.rate(sent, span)} ({sent:,} sent, {skipped} skipped at send time, {span:.1f}s)",
        )
        r.put(
            "email: messages / s, worker start-up included (as the baseline)",
            label,
            f"{h.rate(sent, wall)} ({wall:.1f}s)",
        )
        r.put(f"memory: worker process peak RSS, N={a.members:,}", label, f"{rss:.0f} MB")

    # -- baseline ----------------------------------------------------------------------------

    def baseline(self) -> None:
        a, r = self.args, self.report
        if not a.baseline.exists():
            print(f"baseline: {a.baseline} not found; skipped (pass --baseline PATH)", flush=True)
            r.notes.append(f"baseline skipped: {a.baseline.name} not found")
            return
        assert self.sink is not None
        cmd = [
            sys.executable, str(a.baseline), "--members", str(a.members),
            "--smtp-port", str(self.sink.port), "--redis-url", a.redis_url,
            "--processes", str(a.processes),
        ]  # fmt: skip
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=120 + a.members / 50, cwd=self.work
            )
        except subprocess.TimeoutExpired:
            r.notes.append("baseline: no end in time")
            return
        line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]
        found = re.search(r"(\d+) messages \((\d+) sent\) in ([\d.]+) s", line)
        if done.returncode != 0 or not found:
            raise h.BenchError(f"baseline failed: {line}")
        sent, seconds = int(found.group(2)), float(found.group(3))
        base = sent / seconds
        r.put(
            "baseline (naive_peer, SQLite): messages / s, start-up included",
            "SQLite",
            f"{base:,.0f}/s ({sent:,} sent in {seconds:.1f}s)",
        )
        for label, ours in self.email_rates.items():
            r.put(
                "ratio: ours / baseline (start-up included, same N, same sink)",
                label,
                f"{ours / base:.1f}x",
            )

    # -- memory at 10N ------------------------------------------------------------------------

    def memory_10n(self) -> None:
        kinds = ["sqlite"] + ([] if self.args.skip_postgres else ["postgres"])
        for kind in kinds:
            self.memory_10n_on(kind)

    def memory_10n_on(self, kind: str) -> None:
        """`campaign send` at 10N (its memory, and the expansion rate at that size), then
        the workers on that queue for a while (their memory)."""
        a, r = self.args, self.report
        label = self.label(kind)
        n10 = a.members * 10
        db = self.database(kind, "memory")
        slug = "bench-memory"
        try:
            ran = self.expand(db, n10, slug, ["email"])
            engine = db.engine()
            before = h.outstanding(engine, slug)
            r.put(
                f"memory: `campaign send` peak RSS, 10N={n10:,}",
                label,
                f"{ran.peak_rss_mb:.0f} MB ({ran.seconds:.1f}s)",
            )
            r.put(
                f"expansion at 10N={n10:,}: deliveries enqueued / s (wall, process start included)",
                label,
                f"{h.rate(before, ran.seconds)} ({before:,} in {ran.seconds:.1f}s)",
            )
            with h.workers(
                self.env(db), self.work, processes=a.processes, threads=a.threads
            ) as proc:
                deadline = time.monotonic() + a.memory_seconds
                while time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.5)
                rss = h.worker_peak_rss(proc)
            done = before - h.outstanding(engine, slug)
            r.put(
                f"memory: worker process peak RSS, 10N={n10:,} queue",
                label,
                f"{rss:.0f} MB (after {done:,} messages in {a.memory_seconds:.0f}s)",
            )
            engine.dispose()
        finally:
            db.drop()
            self.clean()

    # -- all --------------------------------------------------------------------------------

    def run(self) -> None:
        a = self.args
        self.sink = h.start_sink(a.sink, self.work / "sink.log")
        print(
            f"sink: {self.sink.kind} on 127.0.0.1:{self.sink.port}; N = {a.members:,}; "
            f"workers: {a.processes} processes x {a.threads} threads",
            flush=True,
        )
        if "rabbitmq" in a.broker:
            h.add_vhost(self.vhost)
        try:
            kinds = ["sqlite"] + ([] if a.skip_postgres else ["postgres"])
            for broker in a.broker:
                self.broker = broker
                print(f"broker: {broker}", flush=True)
                for kind in kinds:
                    with self.loads(f"{self.label(kind)}: expansion, email"):
                        self.run_database(kind)
                if "sms" in a.only:
                    with self.loads(f"{broker}: SMS"):
                        self.sms()
                if "memory" in a.only:
                    with self.loads(f"{broker}: 10N"):
                        self.memory_10n()
            if "baseline" in a.only:
                with self.loads("baseline"):
                    self.baseline()
        finally:
            self.sink.stop()
            h.delete_keys(a.redis_url, self.ns)
            if "rabbitmq" in a.broker:
                h.delete_vhost(self.vhost)

    @contextlib.contextmanager
    def loads(self, what: str) -> Iterator[None]:
        """The 1-minute load average at the start and the end of a run (a note each): a
        figure measured on a busy machine says so next to it."""
        start = os.getloadavg()[0]
        try:
            yield
        finally:
            end = os.getloadavg()[0]
            self.report.notes.append(f"load average {what}: {start:.1f} at start, {end:.1f} at end")
            print(f"  load average {start:.1f} -> {end:.1f}", flush=True)

    def sms(self) -> None:
        from bench.sms import run_sms

        run_sms(self)


def machine() -> list[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = "unknown"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    import sqlite3

    def version(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return out.strip().splitlines()[0] if out.strip() else "unknown"

    pg = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", "show server_version", "test"]
    return [
        f"- CPU: {os.cpu_count()} cores (`nproc`), {cpu}; memory {mem}",
        f"- {platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"- SQLite {sqlite3.sqlite_version}; "
        f"PostgreSQL {version(pg)}; "
        f"Redis {version(['redis-server', '--version'])}; "
        f"RabbitMQ {version(['rabbitmqctl', '-q', 'version'])}",
    ]


def table(report: Report, labels: list[str]) -> str:
    lines = ["| measure | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for measure, values in report.rows.items():
        lines.append(f"| {measure} | " + " | ".join(values.get(x, "") for x in labels) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dispatcher-bench-"))
    bench = Bench(args, work)
    failed: BaseException | None = None
    try:
        bench.run()
    except (h.BenchError, KeyboardInterrupt) as exc:
        failed = exc
        print(f"bench: {exc}", file=sys.stderr)
    finally:
        if args.keep or failed:
            print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    databases = ["SQLite"] + ([] if args.skip_postgres else ["PostgreSQL"])
    labels = [
        db if broker == "redis" else f"{db}, RabbitMQ" for broker in args.broker for db in databases
    ]
    out = table(bench.report, labels)
    print()
    print("\n".join(machine()))
    print(
        f"N = {args.members:,} members; workers {args.processes} x {args.threads} threads; "
        f"sink: {bench.sink.kind if bench.sink else '?'}"
    )
    print()
    print(out)
    for note in bench.report.notes:
        print(f"note: {note}")
    if args.write and not failed:
        write_results(bench, out)
    return 1 if failed else 0


def write_results(bench: Bench, out: str) -> None:
    path = h.REPO / "bench" / "RESULTS.md"
    body = path.read_text("utf-8") if path.exists() else "# Benchmark results\n\n"
    a = bench.args
    block = "\n".join([
        "<!-- bench:begin (written by `python -m bench --write`) -->",
        *machine(),
        f"- N = {a.members:,} members; workers {a.processes} processes x {a.threads} threads; "
        f"sink: {bench.sink.kind if bench.sink else '?'}; run {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        out,
        "",
        *(f"- {note}" for note in bench.report.notes),
        "<!-- bench:end -->",
    ])  # fmt: skip
    if "<!-- bench:begin" in body:
        body = re.sub(r"<!-- bench:begin.*?<!-- bench:end -->", lambda _m: block, body, flags=re.S)
    else:
        body += "\n" + block + "\n"
    path.write_text(body, "utf-8")


if __name__ == "__main__":
    sys.exit(main())
