"""`campaign report`: what a campaign did, per channel. Registered on `campaign_app`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from dispatcher.cli.app import campaign_app, err, fail, out, runtime
from dispatcher.errors import DispatcherError
from dispatcher.spreadsheet import write_csv

CLICK_COLUMNS = ("channel", "variant", "url", "clicks", "unique", "scanner")


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
    from dispatcher.delivery.report import RECIPIENT_COLUMNS, campaign_report, unsent_recipients
    from dispatcher.delivery.report_page import render_page

    rt = runtime()
    zone = rt.settings.sms_zone
    try:
        report = campaign_report(rt.engine, slug, zone)
    except DispatcherError as exc:
        fail(str(exc))
    if csv_file is not None:
        rows = 0

        def counted() -> Iterator[dict[str, Any]]:
            nonlocal rows
            for recipient in unsent_recipients(rt.engine, slug):
                rows += 1
                yield asdict(recipient)

        with csv_file.open("w", encoding="utf-8", newline="") as f:
            write_csv(f, list(RECIPIENT_COLUMNS), counted())
        (err if as_json else out).print(f"wrote {csv_file}: {rows} recipients", highlight=False)
        clicks_file = _write_clicks_csv(report, csv_file)
        (err if as_json else out).print(f"wrote {clicks_file}: clicks per link", highlight=False)
    if html_file is not None:
        html_file.write_text(render_page(report, zone), encoding="utf-8")
        (err if as_json else out).print(f"wrote {html_file}", highlight=False)
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    _print(report, zone)
    _print_clicks(report)


def _print(report: dict[str, Any], zone: ZoneInfo) -> None:
    from rich.table import Table

    out.print(f"{report['name']} ({report['slug']}): {report['state']}", highlight=False)
    for channel in ("email", "sms"):
        if channel not in report:
            continue
        c = report[channel]
        table = Table(title=channel, show_header=False)
        table.add_column("")
        table.add_column("", justify="right")
        rows = [
            ("audience", "audience"),
            ("sent", "sent"),
            ("failed", "failed"),
            ("skipped at send time", "skipped"),
            ("pending", "pending"),
            ("excluded", "excluded"),
            ("opt-outs caused", "optouts"),
        ]
        if channel == "email":
            rows += [("bounced", "bounced"), ("complained", "complained")]
        else:
            rows += [
                ("delivered (operator's report)", "delivered"),
                ("undelivered (operator's report)", "undelivered"),
                ("SMS parts", "parts"),
                ("cost (rials, from Kavenegar)", "cost_rials"),
            ]
        for label, key in rows:
            table.add_row(label, f"{c[key]:,}")
        table.add_row("first send", _local(c["first_sent"], zone))
        table.add_row("last send", _local(c["last_sent"], zone))
        rate = c["per_minute_rate"]
        table.add_row("rate", f"{rate:,}/min" if rate is not None else "-")
        out.print(table)
        for title, key in (
            ("failed", "failed_by_reason"),
            ("skipped", "skipped_by_reason"),
            ("excluded", "excluded_by"),
        ):
            for reason, n in c[key].items():
                if not n:
                    continue
                out.print(f"  {title}: {n:,} {reason}", highlight=False, markup=False)


def _local(moment: str | None, zone: ZoneInfo) -> str:
    """An ISO time of the report as a person in `zone` reads it, to the second."""
    if moment is None:
        return "-"
    return f"{datetime.fromisoformat(moment).astimezone(zone):%Y-%m-%d %H:%M:%S} {zone.key}"


# -- clicks and the A/B test (`dispatcher.delivery.clickreport`) --


def _write_clicks_csv(report: dict[str, Any], recipients_csv: Path) -> Path:
    """Clicks per channel, variant and link, beside the recipients' CSV
    (`NAME-clicks.csv`)."""
    path = recipients_csv.with_name(f"{recipients_csv.stem}-clicks.csv")
    rows = (
        {**link, "channel": channel}
        for channel in ("email", "sms")
        for link in report.get(channel, {}).get("clicks", [])
    )
    with path.open("w", encoding="utf-8", newline="") as f:
        write_csv(f, list(CLICK_COLUMNS), rows)
    return path


def _print_clicks(report: dict[str, Any]) -> None:
    from rich.table import Table

    for channel in ("email", "sms"):
        c = report.get(channel)
        if not c or "clicks" not in c:
            continue
        out.print(
            f"{channel} clicks: {c['unique_clicks']:,} unique clickers, click rate "
            f"{c['click_rate']:.1%} (unique clickers / sent), {c['scanner_clicks']:,} by "
            "link scanners (counted apart)",
            highlight=False,
        )
        if len(c["click_variants"]) > 1:
            for v in c["click_variants"]:
                out.print(
                    f"  variant {v['variant']}: {v['unique_clicks']:,} of {v['sent']:,} sent "
                    f"({v['click_rate']:.1%})",
                    highlight=False,
                )
        if c["clicks"]:
            table = Table(title=f"{channel} links")
            for name in ("url", "variant", "clicks", "unique", "scanner"):
                table.add_column(name, justify="left" if name == "url" else "right")
            for link in c["clicks"]:
                table.add_row(
                    link["url"] or "-",
                    link["variant"],
                    *(f"{link[k]:,}" for k in ("clicks", "unique", "scanner")),
                )
            out.print(table)
    ab = report.get("ab")
    if ab:
        out.print("A/B test:", highlight=False)
        for v in ab["variants"]:
            out.print(
                f"  {v['name']}: {v['subject']} — sent {v['sent']:,}, unique clicks "
                f"{v['unique_clicks']:,} ({v['click_rate']:.1%}), opt-outs {v['opt_outs']:,}",
                highlight=False,
                markup=False,
            )
        if ab["winner"] is None:
            out.print(f"  not decided yet (after {ab['decide_after']})", highlight=False)
        else:
            p = f", p = {ab['p_value']}" if ab["p_value"] is not None else ""
            out.print(f"  winner: {ab['winner']} ({ab['decided_by']}{p})", highlight=False)
