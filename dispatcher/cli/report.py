"""`campaign report`: what a campaign did, per channel. Registered on `campaign_app`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dispatcher.cli.app import campaign_app, err, fail, out, runtime
from dispatcher.errors import DispatcherError

CSV_COLUMNS = ("external_id", "channel", "address", "status", "reason")


@campaign_app.command("report")
def campaign_report_cmd(
    slug: str,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object, a key per channel.")
    ] = False,
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", help="Write the failed and skipped recipients (masked) here."),
    ] = None,
    html_file: Annotated[
        Path | None,
        typer.Option("--html", help="Write a self-contained page with charts (Persian, RTL)."),
    ] = None,
) -> None:
    """Audience, sent, failed by reason, skipped, excluded, opt-outs, SMS parts and cost,
    first and last send and the rate; per channel."""
    from dispatcher.delivery.report import campaign_report, unsent_recipients
    from dispatcher.delivery.report_page import render_page

    rt = runtime()
    zone = rt.settings.sms_zone
    try:
        report = campaign_report(rt.engine, slug, zone)
    except DispatcherError as exc:
        fail(str(exc))
    if csv_file is not None:
        with csv_file.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            rows = 0
            for recipient in unsent_recipients(rt.engine, slug):
                writer.writerow([getattr(recipient, c) for c in CSV_COLUMNS])
                rows += 1
        (err if as_json else out).print(f"wrote {csv_file}: {rows} recipients", highlight=False)
    if html_file is not None:
        html_file.write_text(render_page(report, zone), encoding="utf-8")
        (err if as_json else out).print(f"wrote {html_file}", highlight=False)
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    _print(report)


def _print(report: dict[str, Any]) -> None:
    from rich.table import Table

    out.print(f"{report['name']} ({report['slug']}): {report['state']}", highlight=False)
    for channel in ("email", "sms"):
        if channel not in report:
            continue
        c = report[channel]
        table = Table(title=channel, show_header=False)
        table.add_column("")
        table.add_column("", justify="right")
        for label, key in (
            ("audience", "audience"),
            ("sent", "sent"),
            ("failed", "failed"),
            ("skipped at send time", "skipped"),
            ("pending", "pending"),
            ("excluded", "excluded"),
            ("opt-outs caused", "optouts"),
        ):
            table.add_row(label, f"{c[key]:,}")
        if channel == "sms":
            table.add_row("SMS parts", f"{c['parts']:,}")
            table.add_row("cost (rials, from Kavenegar)", f"{c['cost_rials']:,}")
        table.add_row("first send", c["first_sent"] or "-")
        table.add_row("last send", c["last_sent"] or "-")
        rate = c["per_minute_rate"]
        table.add_row("rate", f"{rate:,}/min" if rate is not None else "-")
        out.print(table)
        for title, key in (
            ("failed", "failed_by_reason"),
            ("skipped", "skipped_by_reason"),
            ("excluded", "excluded_by"),
        ):
            for reason, n in c[key].items():
                out.print(f"  {title}: {n:,} {reason}", highlight=False, markup=False)
