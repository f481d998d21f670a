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

from dispatcher.cli import err, fail, members_app, out, runtime
from dispatcher.errors import DispatcherError, InputError
from dispatcher.store.models import Channel


@members_app.command("import")
def members_import(
    file: Annotated[Path, typer.Argument(help="CSV with a header row; external_id required.")],
) -> None:
    """Load or update members from CSV (upsert by external_id)."""
    from dispatcher.audience.members import import_members

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
    from dispatcher.audience.consent import subscribe

    rt = runtime()
    try:
        subscribe(rt.engine, external_id, channel)
    except DispatcherError as exc:
        fail(str(exc))
    out.print(f"[green]subscribed[/] {external_id} to {channel}")


class OptoutFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or time, e.g. 2025-03-01 or "
            "2025-03-01T08:30:00+03:30",
            param_hint="--since",
        ) from None


@members_app.command("optouts")
def members_optouts(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only opt-outs at or after this date or time (ISO 8601; UTC unless it has "
            "an offset). Passing the last `at` seen repeats that row, never misses one.",
        ),
    ] = None,
    fmt: Annotated[OptoutFormat, typer.Option("--format", help="csv or json")] = OptoutFormat.CSV,
) -> None:
    """List opt-outs (external_id, channel, at, source), oldest first, to stdout.

    Every opt-out is listed, whatever its source (link, one-click, sms-keyword,
    provider, cli, import), so the shop can mirror them into its member profiles.
    """
    import csv

    from dispatcher.audience.consent import list_optouts

    since_at = _since(since)
    rt = runtime()
    rows = list_optouts(rt.engine, since_at)
    if fmt is OptoutFormat.JSON:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        return
    writer = csv.DictWriter(
        sys.stdout, fieldnames=["external_id", "channel", "at", "source"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)


@members_app.command("export")
def members_export(external_id: str) -> None:
    """Print everything stored about a member as JSON (a data-access request)."""
    from dispatcher.audience.privacy import export_member

    rt = runtime()
    try:
        found = export_member(rt.engine, external_id)
    except DispatcherError as exc:
        fail(str(exc))
    sys.stdout.write(json.dumps(found, ensure_ascii=False, indent=2) + "\n")


@members_app.command("erase")
def members_erase(external_id: str) -> None:
    """Erase a member's personal data; their deliveries stay as anonymous counts."""
    from dispatcher.audience.privacy import erase_member

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
