"""The `dispatcher` commands for running it for real: schedules, control, the
scheduler process and the schema. Registered on the Typer app of `dispatcher.cli`
(which imports this module last); as thin as the rest of the command line.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dispatcher.cli.app import (
    ChannelOption,
    address_keys_of,
    app,
    campaign_app,
    err,
    fail,
    group,
    out,
    queue,
    runtime,
    settings,
)
from dispatcher.errors import DispatcherError

if TYPE_CHECKING:
    from datetime import datetime

    from dramatiq import Broker

    from dispatcher.definition.campaign import CampaignSpec
    from dispatcher.runtime import Runtime
    from dispatcher.settings import Settings
    from dispatcher.store.models import Campaign

db_app = group("The database schema (Alembic migrations).")
app.add_typer(db_app, name="db")


# -- schedules ------------------------------------------------------------------------------


def send_time(
    spec: CampaignSpec, at: str | None, s: Settings, *, now: bool = False
) -> datetime | None:
    """`--at`, else the file's `send_at`, as aware UTC; None (send now) when absent or
    `--now`. A time already past stops the command (exit 2): a mistyped year must not
    send at once."""
    if now:
        if at is not None:
            fail("give --at or --now, not both", code=2)
        return None
    text = at if at is not None else spec.send_at
    if not text:
        return None
    return future_time(text, s, what="--at" if at is not None else "send_at")


def future_time(text: str, s: Settings, *, what: str) -> datetime:
    """A send time a person wrote, which must be in the future (exit 2 otherwise)."""
    from dispatcher.definition.sendtime import future_send_at

    try:
        return future_send_at(text, s.sms_zone, what=what)
    except DispatcherError as exc:
        fail(str(exc), code=2)


def print_scheduled(campaign: Campaign, s: Settings) -> None:
    from dispatcher.definition.sendtime import describe

    assert campaign.send_at is not None
    out.print(
        f"[green]scheduled[/] {campaign.slug} for {describe(campaign.send_at, s.sms_zone)}; "
        "`dispatcher scheduler` launches it then (members are chosen at launch).",
        highlight=False,
    )


def status_notes(campaign_status: dict[str, Any]) -> list[str]:
    """Lines under the status table: schedule, pause and cancel reasons."""
    notes = []
    if campaign_status.get("send_at_local"):
        notes.append(f"scheduled for {campaign_status['send_at_local']}")
    if campaign_status.get("pause_reason"):
        notes.append(f"paused by {campaign_status['paused_by']}: {campaign_status['pause_reason']}")
    if campaign_status.get("cancel_reason"):
        notes.append(f"cancelled: {campaign_status['cancel_reason']}")
    email = campaign_status.get("email") or {}
    if email.get("waiting_for_winner"):
        notes.append(
            f"waiting_for_winner: {email['waiting_for_winner']} (A/B test, of the pending)"
        )
    if email.get("ab_winner"):
        notes.append(f"A/B winner: {email['ab_winner']}")
    return notes


@campaign_app.command("list")
def campaign_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """Every campaign: state, schedule (Gregorian and Jalali) and progress."""
    from dispatcher.delivery.listing import list_campaigns

    rt = runtime()
    rows = list_campaigns(rt.engine, rt.settings.sms_zone)
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table(title="campaigns")
    for name in ("slug", "state", "send at", "send at (Jalali)", "progress", "note"):
        table.add_column(name)
    for row in rows:
        table.add_row(
            row["slug"],
            row["state"],
            row["send_at_local"] or "",
            row["send_at_jalali"] or "",
            f"{row['finished']}/{row['total']}",
            row["note"] or "",
        )
    out.print(table)


# -- control --------------------------------------------------------------------------------


def _campaign(slug: str) -> tuple[Runtime, Any]:
    from dispatcher.delivery.control import find

    rt = runtime()
    try:
        return rt, find(rt.engine, slug)
    except DispatcherError as exc:
        fail(str(exc))


@campaign_app.command("pause")
def campaign_pause(
    slug: str,
    reason: Annotated[
        str, typer.Option("--reason", help="Shown by `status`.")
    ] = "paused by a person",
) -> None:
    """Stop sending within seconds; what is queued is held back, not lost."""
    from dispatcher.delivery.control import pause
    from dispatcher.store.models import PausedBy

    rt, campaign = _campaign(slug)
    if not pause(rt.engine, campaign.id, by=PausedBy.PERSON, reason=reason):
        fail(f"{slug} is {campaign.state}: only a scheduled or sending campaign can be paused")
    out.print(f"[yellow]paused[/] {slug}: {reason}", highlight=False)


@campaign_app.command("resume")
def campaign_resume(slug: str) -> None:
    """Continue a paused campaign, or re-enqueue what Redis lost.

    Pending deliveries, and those sending beyond SEND_LEASE_SECONDS, are enqueued again
    from the database; the SMS pause (no credit...) is cleared too."""
    from dispatcher.delivery.control import resume

    rt, campaign = _campaign(slug)
    broker, actors = queue(rt)
    lease = timedelta(seconds=rt.settings.send_lease_seconds)
    try:
        done = resume(rt.engine, broker, campaign.id, actors, lease=lease)
    except DispatcherError as exc:
        fail(str(exc))
    out.print(
        f"[green]resumed[/] {slug}: {done.state}, {done.enqueued} enqueued"
        + (f", {done.reclaimed} reclaimed past the lease" if done.reclaimed else ""),
        highlight=False,
    )
    if rt.settings.inline and done.enqueued:
        _run_inline(rt, broker, campaign.id)


@campaign_app.command("cancel")
def campaign_cancel(
    slug: str,
    reason: Annotated[str, typer.Option("--reason", help="Recorded on the campaign.")] = (
        "cancelled by a person"
    ),
) -> None:
    """Stop for good: what is left is skipped, with the reason."""
    from dispatcher.delivery.control import cancel

    rt, campaign = _campaign(slug)
    try:
        skipped = cancel(rt.engine, campaign.id, reason=reason)
    except DispatcherError as exc:
        fail(f"{slug} is {campaign.state}: {exc}")
    out.print(f"[red]cancelled[/] {slug}: {skipped} deliveries skipped ({reason})", highlight=False)


@campaign_app.command("retry-failed")
def campaign_retry_failed(
    slug: str,
    channel: Annotated[
        ChannelOption | None, typer.Option("--channel", help="email or sms (default: both)")
    ] = None,
) -> None:
    """Re-queue the deliveries that failed transiently (retries used up); never sent ones."""
    from dispatcher.delivery.control import retry_failed
    from dispatcher.store.models import Channel

    rt, campaign = _campaign(slug)
    broker, actors = queue(rt)
    try:
        n = retry_failed(
            rt.engine, broker, campaign.id, actors, channel=Channel(channel) if channel else None
        )
    except DispatcherError as exc:
        fail(str(exc))
    out.print(f"retry-failed {slug}: {n} deliveries queued again", highlight=False)
    if rt.settings.inline and n:
        _run_inline(rt, broker, campaign.id)


def _run_inline(rt: Runtime, broker: Broker, campaign_id: int) -> None:
    from dispatcher.delivery.control import finish_if_done
    from dispatcher.inline import run_inline

    run_inline(broker, rt.engine, campaign_id, threads=rt.settings.worker_threads)
    finish_if_done(rt.engine, campaign_id)


# -- the scheduler process ------------------------------------------------------------------


@app.command("scheduler")
def scheduler_cmd(
    once: Annotated[
        bool, typer.Option("--once", help="One tick, then exit (cron, tests).")
    ] = False,
) -> None:
    """Launch campaigns when due; re-enqueue what Redis lost; release SMS when the send
    window opens; mark campaigns done; with Kavenegar, sync delivery reports and read
    opt-out replies every SMS_SYNC_INTERVAL seconds."""
    from dispatcher.scheduler import Scheduler

    rt = runtime()
    broker, actors = queue(rt)
    s = rt.settings
    address_keys_of(s)  # SUPPRESSION_KEY: checked at start, not at the first launch
    # A service: what it does (campaigns launched and finished, what it put back) is
    # logged without --verbose.
    scheduler_log = logging.getLogger("dispatcher.scheduler")
    scheduler_log.setLevel(min(scheduler_log.getEffectiveLevel(), logging.INFO))
    scheduler = Scheduler(rt, broker, actors)
    if once:
        tick = scheduler.tick()
        out.print(
            f"scheduler: launched {tick.launched}, reclaimed {tick.reclaimed}, "
            f"requeued {tick.requeued}, sms released {tick.released}, "
            f"finished {tick.finished}"
            + (f", sms sync {tick.sms_sync}" if tick.sms_sync is not None else "")
            + (f", sms inbox {tick.sms_inbox}" if tick.sms_inbox is not None else "")
            + (f", A/B decided {tick.decided}" if tick.decided else ""),
            highlight=False,
        )
        rt.close()
        return
    if s.prometheus:
        from dispatcher.metrics import serve

        serve(rt, broker, actors, port=s.prometheus_port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    err.print(
        f"scheduler: every {s.scheduler_interval:g}s, lease {s.send_lease_seconds}s, "
        f"broker {s.broker_label}"
        + ("" if s.sms_outbox else f", sms sync and inbox every {s.sms_sync_interval:g}s"),
        highlight=False,
    )
    scheduler.run(stop)
    rt.close()


# -- schema ---------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to the newest revision (safe to run again)."""
    from dispatcher.store.db import make_engine
    from dispatcher.store.schema import upgrade

    engine = make_engine(settings().database_url)
    try:
        before, after = upgrade(engine)
    finally:
        engine.dispose()
    if before == after:
        out.print(f"database schema already at {after}")
    else:
        out.print(f"[green]database schema upgraded[/] {before or 'empty'} -> {after}")


@db_app.command("current")
def db_current() -> None:
    """The database's schema revision, and the newest one this version knows."""
    from dispatcher.store.db import make_engine
    from dispatcher.store.schema import current, head

    engine = make_engine(settings().database_url)
    try:
        out.print(f"database: {current(engine) or 'none'}   code: {head()}")
    finally:
        engine.dispose()
