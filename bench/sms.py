"""The SMS part of the benchmark: `send_sms` end to end against the Kavenegar test server.

The test server (`tests/servers/kavenegar_server.py`, in its own process) answers
each `sms/send` and `sms/sendarray` (the workers' batches, KAVENEGAR_BATCH) like
Kavenegar does. The bench lifts KAVENEGAR_RATE_LIMIT (Kavenegar's
own limit, 50 calls/s by default, would be all it measures) and opens the send window
to the whole day, so the figure is what the pipeline itself does.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bench import harness as h

if TYPE_CHECKING:
    from bench.__main__ import Bench


def run_sms(bench: Bench) -> None:
    a, r = bench.args, bench.report
    try:
        from dispatcher.workers import sms  # noqa: F401
        from tests.servers.kavenegar_server import start_kavenegar_server
    except ImportError as exc:
        r.notes.append(f"SMS skipped: {exc}")
        print(f"sms: skipped ({exc})", flush=True)
        return
    n = min(a.members, a.sms_members)
    server = start_kavenegar_server("bench-key", log_path=bench.work / "kavenegar.log")
    try:
        kinds = ["sqlite"] + ([] if a.skip_postgres else ["postgres"])
        for kind in kinds:
            label = bench.label(kind)
            db = bench.database(kind, "sms")
            slug = f"bench-sms-{kind}"
            env = bench.env(
                db,
                KAVENEGAR_API_KEY="bench-key",
                KAVENEGAR_SENDER="10004346",
                KAVENEGAR_BASE_URL=server.base_url,
                KAVENEGAR_RATE_LIMIT="1000000",
                SMS_SEND_WINDOW="00:00-24:00",
            )
            try:
                db.create()
                h.seed_members(db, n)
                folder = bench.work / slug
                file = h.write_campaign(folder, slug, ["sms"])
                h.run_cli(["campaign", "send", str(file)], env, folder, timeout=60 + n / 2_000)
                engine = db.engine()
                t0 = time.perf_counter()
                with h.workers(env, bench.work, processes=a.processes, threads=a.threads) as proc:
                    h.wait_until_done(engine, slug, proc, timeout=120 + n / 50)
                    wall = time.perf_counter() - t0
                out = h.campaign_outcome(engine, slug)
                engine.dispose()
                sent = out.counts.get("sent", 0)
                eligible = sum(out.counts.values())  # every member: none opted out of SMS
                r.put(
                    f"SMS: messages / s, first to last delivery recorded (N={n:,})",
                    label,
                    f"{h.rate(sent, out.span)} ({sent:,} sent of {eligible:,}, wall {wall:.1f}s)",
                )
                server.reset()
            finally:
                db.drop()
                bench.clean()
    finally:
        server.stop()
