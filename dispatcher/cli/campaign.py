"""`dispatcher campaign validate | preview | send | status`."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dispatcher.errors import CampaignError, DispatcherError, EmptyAudienceError, RenderError

if TYPE_CHECKING:
    from rich.progress import Progress

    from dispatcher.definition.campaign import CampaignSpec
    from dispatcher.definition.rendering import CampaignTemplates
    from dispatcher.settings import Settings

from dispatcher.cli.app import (
    address_keys_of,
    campaign_app,
    err,
    fail,
    out,
    queue,
    runtime,
    settings,
)
from dispatcher.cli.ops import print_scheduled, send_time, status_notes

# -- campaigns ------------------------------------------------------------------------------


def load_or_exit(file: Path) -> CampaignSpec:
    """The campaign file, validated; its problems printed and exit 1 otherwise."""
    from dispatcher.plan import load_checked

    try:
        return load_checked(file, settings())
    except CampaignError as exc:
        err.print(f"[bold red]{file}: {len(exc.problems)} problem(s)[/]", highlight=False)
        for problem in exc.problems:
            err.print(f"  [red]-[/] {problem}", highlight=False)
        raise typer.Exit(1) from None


@campaign_app.command("preview")
def campaign_preview(
    file: Path,
    member: Annotated[
        str | None, typer.Option("--member", help="external_id to render for")
    ] = None,
) -> None:
    """Render the subject, text and HTML for one member (or a sample member)."""
    from sqlmodel import Session, col, select

    from dispatcher.audience.normalise import external_id_forms
    from dispatcher.definition.campaign import SAMPLE_MEMBER, SAMPLE_UNSUBSCRIBE_URL
    from dispatcher.store.models import Channel, Member

    spec = load_or_exit(file)
    rt = runtime()
    context, url = dict(SAMPLE_MEMBER), SAMPLE_UNSUBSCRIBE_URL
    if member is not None:
        with Session(rt.engine) as session:
            found = session.exec(
                select(Member).where(col(Member.external_id).in_(external_id_forms(member)))
            ).first()
        if found is None:
            fail(f"no member with external_id {member!r}")
        assert found.id is not None
        context = found.template_context()
        url = rt.unsubscribe_url(found.id, Channel.EMAIL)
    from dispatcher.compose import compile_templates

    templates = compile_templates(spec, rt.settings)
    try:
        _preview(spec, templates, context, url, rt.settings)
    except RenderError as exc:
        fail(f"{file}: {exc}")


def _preview(
    spec: CampaignSpec,
    templates: CampaignTemplates,
    context: dict[str, Any],
    url: str,
    s: Settings,
) -> None:
    from dispatcher.compose import compose_email, compose_sms

    if spec.email:
        rendered = compose_email(templates, context, unsubscribe_url=url, view_url=None)
        out.rule("subject")
        out.print(rendered.subject, highlight=False, markup=False)
        out.rule("text")
        out.print(rendered.text, highlight=False, markup=False)
        out.rule("html")
        out.print(rendered.html, highlight=False, markup=False)
    if spec.sms:
        sms = compose_sms(templates, context, footer=s.sms_optout_footer, max_parts=s.sms_max_parts)
        out.rule("sms")
        out.print(sms.text, highlight=False, markup=False)
        out.print(f"sms: {sms.length}", highlight=False)


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
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty", help="Record the campaign even if no member is in its audience."
        ),
    ] = False,
    now: Annotated[
        bool, typer.Option("--now", help="Send at once, whatever send_at says.")
    ] = False,
    reuse_slug: Annotated[
        bool,
        typer.Option(
            "--reuse-slug", help="Send again a cancelled campaign that never sent anything."
        ),
    ] = False,
) -> None:
    """Expand the campaign into deliveries and enqueue them (inline mode: send them now).

    With `--at` (or `send_at` in the file) the campaign is recorded as scheduled and
    `dispatcher scheduler` launches it when due."""
    from dispatcher.delivery.control import finish_if_done
    from dispatcher.inline import run_inline, wait_for
    from dispatcher.queue.expansion import enqueue_pending, expand
    from dispatcher.store.models import Channel

    spec = load_or_exit(file)
    rt = runtime()
    broker, actors = queue(rt)
    s = rt.settings
    if Channel.EMAIL in spec.channels and not s.mail_from:
        fail("MAIL_FROM is required to send email, e.g. MAIL_FROM='Shop <news@shop.example>'")
    out.print(f"broker: [bold]{s.broker_label}[/]   email transport: [bold]{s.transport_label}[/]")
    if Channel.SMS in spec.channels:
        out.print(f"sms transport: [bold]{s.sms_transport_label}[/]", highlight=False)
    send_at = send_time(spec, at, s, now=now)
    relay_watched = s.inline and not s.outbox and Channel.EMAIL in spec.channels
    if relay_watched and send_at is None:
        from dispatcher.email.relay import check_relay
        from dispatcher.errors import RelayUnavailable

        try:
            check_relay(s)  # before anything is recorded: the slug stays usable
        except RelayUnavailable as exc:
            fail(f"{exc}; nothing was recorded", code=2)
    try:
        keys = address_keys_of(s)
        result = expand(
            rt.engine,
            spec,
            send_at=send_at,
            allow_empty=allow_empty,
            keys=keys,
            reuse_slug=reuse_slug,
        )
    except EmptyAudienceError as exc:
        fail(
            f"{exc}. Is DATABASE_URL the one the members were imported into? "
            "--allow-empty records it anyway.",
            code=2,
        )
    except DispatcherError as exc:
        fail(str(exc))
    campaign = result.campaign
    assert campaign.id is not None
    if result.reusable:
        fail(
            f"{spec.slug} was cancelled before it sent anything; nothing was sent now. "
            "Send it under this slug with `--reuse-slug`, or give the campaign a new slug",
            code=2,
        )
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
    stopped: str | None = None
    with _progress() as progress:
        task = progress.add_task("enqueue", total=total)
        enqueue_pending(rt.engine, broker, campaign, actors, lambda n: progress.advance(task, n))
        if s.inline or wait:
            send_task = progress.add_task("send", total=total)

            def tick(left: int) -> None:
                progress.update(send_task, completed=total - left)

            if s.inline:
                from dispatcher.email.relay import RelayWatch

                stopped = run_inline(
                    broker,
                    rt.engine,
                    campaign.id,
                    threads=s.worker_threads,
                    on_tick=tick,
                    stop=RelayWatch(s) if relay_watched else None,
                )
            else:
                wait_for(rt.engine, campaign.id, tick)
    finish_if_done(rt.engine, campaign.id)
    rt.close()
    if stopped is not None:
        err.print(
            f"[bold red]error:[/] {stopped}; sending stopped. What was not sent stays "
            f"pending: `dispatcher campaign resume {spec.slug}` once the relay is back.",
            highlight=False,
        )
    _print_status(spec.slug)
    if stopped is not None:
        raise typer.Exit(1)


def _progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
    # One row per count, one column per channel: it fits any terminal.
    from rich.table import Table

    table = Table(title=f"{status['name']} ({status['slug']}): {status['state']}")
    channels = [channel for channel in ("email", "sms") if channel in status]
    table.add_column("")
    for channel in channels:
        table.add_column(channel, justify="right")
    for name in [*STATUSES, "excluded", "bounced", "complained"]:
        table.add_row(name, *(str(status[channel][name]) for channel in channels))
    out.print(table)

    for line in status_notes(status):
        out.print(line, highlight=False)
    if "sms" in status:
        _print_sms_status(status["sms"], rt.settings)


# -- sms ------------------------------------------------------------------------------------


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
