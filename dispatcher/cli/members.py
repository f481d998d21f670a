"""The `dispatcher members` commands: import, subscribe, optouts, export, erase. Registered on the
Typer app of `dispatcher.cli` (which imports this module last)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from dispatcher.cli.app import (
    ChannelOption,
    address_keys_of,
    err,
    fail,
    members_app,
    out,
    runtime,
    settings,
)
from dispatcher.errors import DispatcherError, InputError


@members_app.command("import")
def members_import(
    file: Annotated[Path, typer.Argument(help="CSV with a header row; external_id required.")],
) -> None:
    """Load or update members from CSV (upsert by external_id)."""
    from dispatcher.audience.members import import_members

    rt = runtime()
    keys = address_keys_of(rt.settings)
    try:
        report = import_members(rt.engine, file, keys=keys)
    except InputError as exc:
        fail(str(exc))
    out.print(
        f"[green]imported[/] {file}: {report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.kept_opted_out} kept opted out "
        f"(opted out through the dispatcher), {len(report.rejected)} rejected",
        highlight=False,
    )
    for row in report.warnings:
        err.print(f"[yellow]warning[/] {row}", highlight=False)
    for shared in report.shared:
        err.print(f"[yellow]warning[/] {file}: {shared}", highlight=False)
    for row in report.rejected:
        err.print(f"[red]rejected[/] {row}", highlight=False)
    if report.rejected:
        raise typer.Exit(1)


@members_app.command("subscribe")
def members_subscribe(
    external_id: str,
    channel: Annotated[ChannelOption, typer.Option("--channel", help="email or sms")],
) -> None:
    """Re-subscribe a member who opted out: the only way to undo a sticky opt-out."""
    from dispatcher.audience.consent import subscribe
    from dispatcher.store.models import Channel

    rt = runtime()
    try:
        subscribe(rt.engine, external_id, Channel(channel))
    except DispatcherError as exc:
        fail(str(exc))
    out.print(f"[green]subscribed[/] {external_id} to {channel}")


class OptoutFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


def _since(value: str | None) -> datetime | None:
    """`--since` read as `--at` is: ISO 8601, or a Gregorian or Jalali date (and time):
    `2025-03-01`, `1405-09-20`, `1405-09-20 08:30`, in SMS_TIMEZONE unless it has an
    offset."""
    from dispatcher.definition.sendtime import parse_send_at

    if value is None:
        return None
    zone = settings().sms_zone
    try:
        return parse_send_at(value, zone)
    except InputError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 or Jalali date or time, e.g. 2025-03-01, "
            f"1405-09-20, '2025-03-01 08:30' ({zone.key}) or 2025-03-01T08:30:00+03:30",
            param_hint="--since",
        ) from None


@members_app.command("optouts")
def members_optouts(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only opt-outs at or after this date or time (ISO 8601 or Jalali "
            "1405-09-20; in SMS_TIMEZONE unless it has an offset, as --at). Passing the "
            "last `at` seen repeats that row, never misses one.",
        ),
    ] = None,
    fmt: Annotated[OptoutFormat, typer.Option("--format", help="csv or json")] = OptoutFormat.CSV,
) -> None:
    """List opt-outs (external_id, channel, at, source), oldest first, to stdout.

    Every opt-out is listed, whatever its source (link, one-click, sms-keyword,
    provider, cli, import), so the shop can mirror them into its member profiles.
    """
    from dispatcher.audience.consent import list_optouts
    from dispatcher.spreadsheet import write_csv

    since_at = _since(since)
    rt = runtime()
    rows = list_optouts(rt.engine, since_at)
    if fmt is OptoutFormat.JSON:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        return
    write_csv(sys.stdout, ["external_id", "channel", "at", "source"], rows)


@members_app.command("consent-changes")
def members_consent_changes(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only changes at or after this date or time (ISO 8601 or Jalali "
            "1405-09-20; in SMS_TIMEZONE unless it has an offset, as --at).",
        ),
    ] = None,
    fmt: Annotated[OptoutFormat, typer.Option("--format", help="csv or json")] = OptoutFormat.CSV,
) -> None:
    """List every change of consent, opt-outs and re-subscribes, oldest first, to stdout.

    Columns: id, external_id, channel, opt_in (1 or 0; JSON true or false), source, at.
    The shop applies them in order to its member profiles.
    """
    from dispatcher.audience.consent import consent_changes
    from dispatcher.spreadsheet import write_csv

    since_at = _since(since)
    changes = consent_changes(runtime().engine, since=since_at)
    if fmt is OptoutFormat.JSON:
        rows = [change.as_json() for change in changes]
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        return
    write_csv(
        sys.stdout,
        ["id", "external_id", "channel", "opt_in", "source", "at"],
        ({**c.as_json(), "opt_in": int(c.opt_in)} for c in changes),
    )


@members_app.command("export")
def members_export(external_id: str) -> None:
    """Print everything stored about a member as JSON (a data-access request)."""
    from dispatcher.delivery.privacy import export_member

    rt = runtime()
    try:
        found = export_member(rt.engine, external_id)
    except DispatcherError as exc:
        fail(str(exc))
    sys.stdout.write(json.dumps(found, ensure_ascii=False, indent=2) + "\n")


@members_app.command("erase")
def members_erase(external_id: str) -> None:
    """Erase a member's personal data; their deliveries stay as anonymous counts."""
    from dispatcher.delivery.privacy import erase_member

    rt = runtime()
    try:
        erasure = erase_member(rt.engine, external_id)
    except DispatcherError as exc:
        fail(str(exc))
    out.print(
        f"[green]erased[/] {external_id}: {erasure.deliveries_anonymised} deliveries kept "
        f"anonymous ({erasure.pending_skipped} pending skipped), "
        f"{erasure.consent_events_anonymised} consent events kept anonymous",
        highlight=False,
    )
