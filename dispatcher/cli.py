"""The `dispatcher` command: thin; parses, calls the modules, prints with Rich."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dispatcher.errors import CampaignError, DispatcherError, InputError
from dispatcher.models import Channel
from dispatcher.settings import Settings, get_settings

app = typer.Typer(
    help="Send the shop's newsletter by email and promotions by SMS; honour every opt-out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
members_app = typer.Typer(help="Load members and manage their consent.", no_args_is_help=True)
campaign_app = typer.Typer(help="Validate, preview, send and follow campaigns.", no_args_is_help=True)
app.add_typer(members_app, name="members")
app.add_typer(campaign_app, name="campaign")

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


def runtime():  # type: ignore[no-untyped-def]
    """Build this process's runtime from the settings, with the schema in place."""
    from dispatcher.db import create_schema
    from dispatcher.runtime import Runtime, set_runtime

    try:
        rt = Runtime.from_settings(settings())
    except DispatcherError as exc:
        fail(str(exc))
    create_schema(rt.engine)
    set_runtime(rt)
    return rt


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each delivery.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


# -- members ------------------------------------------------------------------------------


@members_app.command("import")
def members_import(
    file: Annotated[Path, typer.Argument(help="CSV with a header row; external_id required.")],
) -> None:
    """Load or update members from CSV (upsert by external_id)."""
    from dispatcher.members import import_members

    rt = runtime()
    try:
        report = import_members(rt.engine, file)
    except InputError as exc:
        fail(str(exc))
    out.print(
        f"[green]imported[/] {file}: {report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.kept_opted_out} kept opted out "
        f"(opted out through the dispatcher), {len(report.rejected)} rejected",
        highlight=False,
    )
    for row in report.rejected:
        err.print(f"[red]rejected[/] {row}", highlight=False)
    if report.rejected:
        raise typer.Exit(1)


@members_app.command("subscribe")
def members_subscribe(
    external_id: str,
    channel: Annotated[Channel, typer.Option("--channel", help="email or sms")],
) -> None:
    """Re-subscribe a member who opted out: the only way to undo a sticky opt-out."""
    from dispatcher.members import subscribe

    rt = runtime()
    try:
        subscribe(rt.engine, external_id, channel)
    except DispatcherError as exc:
        fail(str(exc))
    out.print(f"[green]subscribed[/] {external_id} to {channel}")


# -- campaigns ------------------------------------------------------------------------------


def _load(file: Path):  # type: ignore[no-untyped-def]
    from dispatcher.campaigns import load_campaign

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


@campaign_app.command("preview")
def campaign_preview(
    file: Path,
    member: Annotated[str | None, typer.Option("--member", help="external_id to render for")] = None,
) -> None:
    """Render the subject, text and HTML for one member (or a sample member)."""
    from dispatcher.campaigns import SAMPLE_MEMBER, SAMPLE_UNSUBSCRIBE_URL
    from sqlmodel import Session, select

    from dispatcher.models import Member

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


@campaign_app.command("send")
def campaign_send(
    file: Path,
    wait: Annotated[bool, typer.Option("--wait", help="With Redis: wait until done.")] = False,
) -> None:
    """Expand the campaign into deliveries and enqueue them (inline mode: send them now)."""
    from dispatcher.expansion import enqueue_pending, expand
    from dispatcher.inline import run_inline, wait_for
    from dispatcher.status import mark_done_if_finished
    from dispatcher.workers import ACTORS, broker

    spec = _load(file)
    rt = runtime()
    s = rt.settings
    if Channel.EMAIL in spec.channels and not s.mail_from:
        fail("MAIL_FROM is required to send email, e.g. MAIL_FROM='Shop <news@shop.example>'")
    out.print(f"broker: [bold]{s.broker_label}[/]   email transport: [bold]{s.transport_label}[/]")
    result = expand(rt.engine, spec)
    campaign = result.campaign
    assert campaign.id is not None
    if not result.created:
        out.print(
            f"[yellow]{spec.slug} was sent before[/] (state {campaign.state}); nothing new is "
            "sent. See `dispatcher campaign status`.",
            highlight=False,
        )
        return
    total = sum(result.eligible.values())
    for channel in spec.channels:
        out.print(
            f"{channel}: {result.eligible[channel]} deliveries, "
            f"{result.excluded[channel]} excluded (opted out or no address)"
        )
    with _progress() as progress:
        task = progress.add_task("enqueue", total=total)
        enqueue_pending(
            rt.engine, broker, campaign, ACTORS, lambda n: progress.advance(task, n)
        )
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
    from dispatcher.status import STATUSES, campaign_status

    rt = runtime()
    try:
        status = campaign_status(rt.engine, slug)
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
