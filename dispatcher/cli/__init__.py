"""The `dispatcher` command: thin; parses, calls the modules, prints with Rich."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dispatcher.errors import CampaignError, DispatcherError
from dispatcher.settings import Settings, get_settings
from dispatcher.store.models import Channel

if TYPE_CHECKING:
    from dispatcher.definition.campaign import CampaignSpec
    from dispatcher.definition.rendering import CampaignTemplates
    from dispatcher.runtime import Runtime

app = typer.Typer(
    help="Send the shop's newsletter by email and promotions by SMS; honour every opt-out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
members_app = typer.Typer(help="Load members and manage their consent.", no_args_is_help=True)
campaign_app = typer.Typer(
    help="Validate, preview, send and follow campaigns.", no_args_is_help=True
)
app.add_typer(members_app, name="members")
app.add_typer(campaign_app, name="campaign")
sms_app = typer.Typer(
    help="SMS after sending: delivery reports, opt-out replies, the send window.",
    no_args_is_help=True,
)
app.add_typer(sms_app, name="sms")
api_key_app = typer.Typer(
    help="Keys of the shop's private API (`uvicorn dispatcher.api:app`).", no_args_is_help=True
)
app.add_typer(api_key_app, name="api-key")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return get_settings()
    except DispatcherError as exc:
        fail(str(exc))


def runtime() -> Runtime:
    """Build this process's runtime from the settings, with the schema in place."""
    from dispatcher.runtime import Runtime, set_runtime
    from dispatcher.store.schema import ensure_current

    try:
        rt = Runtime.from_settings(settings())
        # The embedded demo (inline, SQLite) migrates itself; production is told to.
        embedded = rt.settings.inline and rt.engine.dialect.name == "sqlite"
        ensure_current(rt.engine, auto_upgrade=embedded)
    except DispatcherError as exc:
        fail(str(exc))
    set_runtime(rt)
    return rt


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each delivery.")] = False,
) -> None:
    from dispatcher.logs import configure

    configure(
        level=logging.INFO if verbose else logging.WARNING,
        json_lines=settings().log_format == "json",
    )


def run() -> None:
    """The console script. A database that cannot be opened or answered is one clear
    line naming the (password-free) URL, not a traceback."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    try:
        app(prog_name="dispatcher")
    except SQLAlchemyError as exc:
        try:
            url = make_url(get_settings().database_url).render_as_string(hide_password=True)
        except (DispatcherError, SQLAlchemyError, ValueError):
            url = "DATABASE_URL"
        reason = getattr(exc, "orig", None) or (exc.args[0] if exc.args else type(exc).__name__)
        err.print(f"[bold red]error:[/] database {url}: {reason}", highlight=False)
        raise SystemExit(1) from None


# -- campaigns ------------------------------------------------------------------------------


def _load(file: Path) -> CampaignSpec:
    from dispatcher.definition.campaign import load_campaign

    try:
        return load_campaign(file)
    except CampaignError as exc:
        err.print(f"[bold red]{file}: {len(exc.problems)} problem(s)[/]", highlight=False)
        for problem in exc.problems:
            err.print(f"  [red]-[/] {problem}", highlight=False)
        raise typer.Exit(1) from None


@campaign_app.command("validate")
def campaign_validate(file: Path) -> None:
    """Check a campaign file and its templates; change nothing."""
    spec = _load(file)
    out.print(
        f"[green]ok[/] {file}: {spec.slug} ({', '.join(spec.channels)})",
        highlight=False,
    )
    if spec.sms:
        _print_sms_length(spec, audience=True)


@campaign_app.command("preview")
def campaign_preview(
    file: Path,
    member: Annotated[
        str | None, typer.Option("--member", help="external_id to render for")
    ] = None,
) -> None:
    """Render the subject, text and HTML for one member (or a sample member)."""
    from sqlmodel import Session, select

    from dispatcher.definition.campaign import SAMPLE_MEMBER, SAMPLE_UNSUBSCRIBE_URL
    from dispatcher.store.models import Member

    spec = _load(file)
    rt = runtime()
    context, url = dict(SAMPLE_MEMBER), SAMPLE_UNSUBSCRIBE_URL
    if member is not None:
        with Session(rt.engine) as session:
            found = session.exec(select(Member).where(Member.external_id == member)).first()
        if found is None:
            fail(f"no member with external_id {member!r}")
        assert found.id is not None
        context = found.template_context()
        url = rt.unsubscribe_url(found.id, Channel.EMAIL)
    templates = spec.templates(rt.shop())
    if spec.email:
        rendered = templates.render_email(context, url)
        out.rule("subject")
        out.print(rendered.subject, highlight=False, markup=False)
        out.rule("text")
        out.print(rendered.text, highlight=False, markup=False)
        out.rule("html")
        out.print(rendered.html, highlight=False, markup=False)
    if spec.sms:
        from dispatcher.sms.text import measure, with_footer

        text = with_footer(templates.render_sms(context), rt.settings.sms_optout_footer)
        out.rule("sms")
        out.print(text, highlight=False, markup=False)
        out.print(f"sms: {measure(text)}", highlight=False)


@campaign_app.command("send")
def campaign_send(
    file: Path,
    wait: Annotated[bool, typer.Option("--wait", help="With Redis: wait until done.")] = False,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="Schedule instead: '2026-12-20 10:00' (SMS_TIMEZONE), Jalali "
            "'1405-09-29 10:00', or ISO 8601 with an offset. Overrides send_at.",
        ),
    ] = None,
) -> None:
    """Expand the campaign into deliveries and enqueue them (inline mode: send them now).

    With `--at` (or `send_at` in the file) the campaign is recorded as scheduled and
    `dispatcher scheduler` launches it when due."""
    from dispatcher.cli.ops import print_scheduled, send_time
    from dispatcher.delivery.status import mark_done_if_finished
    from dispatcher.inline import run_inline, wait_for
    from dispatcher.queue.expansion import enqueue_pending, expand
    from dispatcher.workers import ACTORS, broker

    spec = _load(file)
    rt = runtime()
    s = rt.settings
    if Channel.EMAIL in spec.channels and not s.mail_from:
        fail("MAIL_FROM is required to send email, e.g. MAIL_FROM='Shop <news@shop.example>'")
    out.print(f"broker: [bold]{s.broker_label}[/]   email transport: [bold]{s.transport_label}[/]")
    if Channel.SMS in spec.channels:
        out.print(f"sms transport: [bold]{s.sms_transport_label}[/]", highlight=False)
    send_at = send_time(spec, at, s)
    result = expand(rt.engine, spec, send_at=send_at)
    campaign = result.campaign
    assert campaign.id is not None
    if not result.created:
        out.print(
            f"[yellow]{spec.slug} was sent before[/] (state {campaign.state}); nothing new is "
            "sent. See `dispatcher campaign status`.",
            highlight=False,
        )
        return
    if send_at is not None:
        print_scheduled(campaign, s)
        return
    total = sum(result.eligible.values())
    for channel in spec.channels:
        out.print(
            f"{channel}: {result.eligible[channel]} deliveries, "
            f"{result.excluded[channel]} excluded (opted out or no address)"
        )
    with _progress() as progress:
        task = progress.add_task("enqueue", total=total)
        enqueue_pending(rt.engine, broker, campaign, ACTORS, lambda n: progress.advance(task, n))
        if s.inline or wait:
            send_task = progress.add_task("send", total=total)

            def tick(left: int) -> None:
                progress.update(send_task, completed=total - left)

            if s.inline:
                run_inline(broker, rt.engine, campaign.id, threads=s.worker_threads, on_tick=tick)
            else:
                wait_for(rt.engine, campaign.id, tick)
    mark_done_if_finished(rt.engine, campaign.id)
    rt.close()
    _print_status(spec.slug)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=not sys.stdout.isatty(),
    )


@campaign_app.command("status")
def campaign_status_cmd(
    slug: str,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Progress of a campaign, per channel, counted from the database."""
    _print_status(slug, as_json=as_json)


def _print_status(slug: str, *, as_json: bool = False) -> None:
    from dispatcher.delivery.status import STATUSES, campaign_status

    rt = runtime()
    try:
        status = campaign_status(rt.engine, slug, rt.settings.sms_zone)
    except DispatcherError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(status, ensure_ascii=False))
        return
    table = Table(title=f"{status['name']} ({status['slug']}): {status['state']}")
    table.add_column("channel")
    for name in [*STATUSES, "excluded"]:
        table.add_column(name, justify="right")
    for channel in ("email", "sms"):
        if channel in status:
            row = status[channel]
            table.add_row(channel, *(str(row[n]) for n in [*STATUSES, "excluded"]))
    out.print(table)
    from dispatcher.cli.ops import status_notes

    for line in status_notes(status):
        out.print(line, highlight=False)
    if "sms" in status:
        _print_sms_status(status["sms"], rt.settings)


# -- sms ------------------------------------------------------------------------------------


def _print_sms_length(spec: CampaignSpec, *, audience: bool) -> None:
    """The SMS for a sample member: characters and parts; with `audience`, the total."""
    from dispatcher.definition.campaign import SAMPLE_MEMBER
    from dispatcher.sms.text import measure, with_footer

    s = settings()
    templates = spec.templates({"name": "فروشگاه نمونه"})
    text = with_footer(templates.render_sms(dict(SAMPLE_MEMBER)), s.sms_optout_footer)
    out.print(f"sms: {measure(text)} for a sample member, footer included", highlight=False)
    if audience:
        out.print(f"sms audience: {_audience_parts(spec, templates, s)}", highlight=False)


def _audience_parts(spec: CampaignSpec, templates: CampaignTemplates, s: Settings) -> str:
    """Members and SMS parts for the audience, read from the database if there is one.

    Changes nothing: a SQLite file that does not exist is not created.
    """
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from dispatcher.sms.text import audience_parts
    from dispatcher.store.db import make_engine

    url = make_url(s.database_url)
    if url.get_backend_name() == "sqlite" and not (
        url.database and url.database != ":memory:" and Path(url.database).exists()
    ):
        return "audience unknown (no database yet)"
    engine = make_engine(s.database_url)
    try:
        if not inspect(engine).has_table("member"):
            return "audience unknown (no members imported yet)"
        total = audience_parts(
            engine, templates, footer=s.sms_optout_footer, tags=spec.audience_tags
        )
    except SQLAlchemyError as exc:
        return f"audience unknown (database: {type(exc).__name__})"
    finally:
        engine.dispose()
    return f"{total.members} members, {total.parts} SMS parts in all"


def _print_sms_status(row: dict[str, Any], s: Settings) -> None:

    from dispatcher.sms.window import describe

    if row.get("delivered") or row.get("undelivered"):
        out.print(
            f"sms reported by the operator: {row['delivered']} delivered, "
            f"{row['undelivered']} not delivered",
            highlight=False,
        )
    if row.get("paused"):
        out.print(
            f"[yellow]sms paused:[/] {row['paused']}; {row['pending']} wait for "
            "`dispatcher campaign resume`",
            highlight=False,
        )
    elif row.get("waiting_until") and row.get("pending"):
        opens = describe(datetime.fromisoformat(row["waiting_until"]), s.sms_zone)
        out.print(
            f"[yellow]sms waiting for the send window[/] ({s.sms_send_window}): "
            f"{row['pending']} go at {opens} (`dispatcher sms release`)",
            highlight=False,
        )


def _sms_runtime() -> Runtime:
    rt: Runtime = runtime()
    if rt.settings.sms_outbox:
        fail("KAVENEGAR_API_KEY is not set: SMS go to the outbox; there is nothing to ask")
    return rt


@sms_app.command("sync")
def sms_sync() -> None:
    """Record Kavenegar's delivery reports of recent SMS (14 = blocked: opt the member out)."""
    from dispatcher.sms.sync import sync_statuses

    rt = _sms_runtime()
    try:
        counts = sync_statuses(rt)
    except DispatcherError as exc:
        fail(str(exc))
    finally:
        rt.close()
    out.print("sms sync: " + ", ".join(f"{n} {k}" for k, n in counts.items()), highlight=False)


@sms_app.command("inbox")
def sms_inbox() -> None:
    """Read replies to the sender line; opt out of SMS whoever answered an opt-out word."""
    from dispatcher.sms.sync import read_inbox

    rt = _sms_runtime()
    try:
        counts = read_inbox(rt)
    except DispatcherError as exc:
        fail(str(exc))
    finally:
        rt.close()
    out.print("sms inbox: " + ", ".join(f"{n} {k}" for k, n in counts.items()), highlight=False)


@sms_app.command("release")
def sms_release() -> None:
    """Enqueue the SMS that waited for the send window, once it is open (inline: send)."""
    from dispatcher.delivery.status import mark_done_if_finished
    from dispatcher.inline import run_inline
    from dispatcher.sms.hold import release_waiting_sms, window_closed_until
    from dispatcher.sms.window import describe
    from dispatcher.workers import ACTORS, broker

    rt = runtime()
    s = rt.settings
    opening = window_closed_until(s, rt.clock())
    if opening is not None:
        out.print(f"the SMS send window is closed; it opens at {describe(opening, s.sms_zone)}")
        return
    released = release_waiting_sms(rt, broker, actor=ACTORS["sms"])
    out.print(f"sms release: {sum(released.values())} SMS enqueued", highlight=False)
    if s.inline:
        for campaign_id in released:
            run_inline(broker, rt.engine, campaign_id, threads=s.worker_threads)
            mark_done_if_finished(rt.engine, campaign_id)
    rt.close()


# The members commands, and those for running it for real (schedules, control,
# scheduler, db), live in their own modules, registered on the apps above.
from dispatcher.cli import apikeys, members, ops  # noqa: E402, F401
