"""`campaign report`: what a campaign did, per channel. Registered on `campaign_app`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dispatcher.cli.app import campaign_app, err, fail, out, runtime
from dispatcher.errors import DispatcherError

CSV_COLUMNS = ("external_id", "channel", "address", "status", "reason")
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
        clicks_file = _write_clicks_csv(report, csv_file)
        (err if as_json else out).print(f"wrote {clicks_file}: clicks per link", highlight=False)
    if html_file is not None:
        html_file.write_text(render_page(report, zone), encoding="utf-8")
        (err if as_json else out).print(f"wrote {html_file}", highlight=False)
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    _print(report)
    _print_clicks(report)


def _print(report: dict[str, Any]) -> None:
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


# -- clicks and the A/B test (`dispatcher.delivery.clickreport`) --


def _write_clicks_csv(report: dict[str, Any], recipients_csv: Path) -> Path:
    """Clicks per channel, variant and link, beside the recipients' CSV
    (`NAME-clicks.csv`)."""
    path = recipients_csv.with_name(f"{recipients_csv.stem}-clicks.csv")
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CLICK_COLUMNS)
        for channel in ("email", "sms"):
            for link in report.get(channel, {}).get("clicks", []):
                writer.writerow([channel, *(link[c] for c in CLICK_COLUMNS[1:])])
    return path


def _print_clicks(report: dict[str, Any]) -> None:
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
