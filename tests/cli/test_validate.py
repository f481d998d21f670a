"""`validate` renders for a varied sample of the audience (or everyone), reports each
distinct problem once with the members it hit, points inline templates at their TOML
line, prints the audience per channel and checks send_at."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from dispatcher.sms.text import measure
from tests.cli.conftest import Cli, settings_env
from tests.cli.helpers import run
from tests.factories import HTML, Harness, add_member
from tests.factories import write_campaign as factory_campaign
from tests.servers.kavenegar_server import KavenegarServerHandle

TAGS = ["newsletter", "vip", "tehran", "shiraz"]


def write_members(path: Path, n: int = 600) -> None:
    rows = ["external_id,first_name,last_name,email,mobile,tags"]
    for i in range(n):
        first = "" if i % 97 == 5 else ("Sara" if i % 50 == 7 else "مریم")
        email = "" if i % 31 == 3 else f"m{i}@example.com"
        mobile = f"0912{i:07d}" if i % 3 else ""
        rows.append(f"M{i},{first},احمدی,{email},{mobile},{TAGS[i % 4]}")
    rows.append("LAST,,,last@example.com,,shiraz;vip")  # the one member a bug hits
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def write_campaign(folder: Path, subject: str, sms: str = "سلام") -> Path:
    (folder / "c").mkdir()
    (folder / "c" / "email.html").write_text("<p>سلام {{ member.first_name }}</p>\n", "utf-8")
    path = folder / "c.toml"
    path.write_text(
        'slug = "v-1"\nname = "آزمایش"\nchannels = ["email", "sms"]\n\n[email]\n'
        f'subject = """\n{subject}"""\nhtml = "c/email.html"\n\n[sms]\nbody = "{sms}"\n',
        encoding="utf-8",
    )
    return path


def test_validate_finds_a_problem_only_some_members_hit_and_names_them_once(
    workdir: Path,
) -> None:
    write_members(workdir / "m.csv")
    assert run(workdir, "members", "import", "m.csv").returncode in (0, 1)
    subject = 'سلام\n{% if "vip" in member.tags %}{{ member.first_name[0] }}{% endif %}'
    toml = write_campaign(workdir, subject)
    sampled = run(workdir, "campaign", "validate", str(toml))
    assert sampled.returncode == 1
    assert "rendered for " in sampled.stdout and "a varied sample" in sampled.stdout
    rendered = int(sampled.stdout.split("rendered for ")[1].split()[0])
    assert rendered >= 200
    [problem] = [line for line in sampled.stderr.splitlines() if "cannot render" in line]
    assert f"{toml}:8: email.subject" in problem  # the TOML file, at the template's line
    assert "LAST (l***@example.com)" in problem
    assert "audience now: email 581, sms 400 members" in sampled.stdout

    everyone = run(workdir, "campaign", "validate", str(toml), "--all")
    assert "rendered for 605 members (every member" in everyone.stdout
    [problem] = [line for line in everyone.stderr.splitlines() if "cannot render" in line]
    assert "(3 members: M5 (m***@example.com), M393 (m***@example.com), LAST" in problem


def test_an_inline_sms_body_problem_points_at_its_toml_line(workdir: Path) -> None:
    toml = write_campaign(workdir, "سلام", sms="{{ member.tags[0] }}")
    result = run(workdir, "campaign", "validate", str(toml))
    assert result.returncode == 1
    assert f"{toml}:11: sms.body: cannot render: UndefinedError" in result.stderr
    assert "audience unknown (no database yet)" in result.stdout


def test_a_send_at_in_the_past_is_a_validate_error(workdir: Path) -> None:
    toml = write_campaign(workdir, "سلام")
    toml.write_text('send_at = "1404-01-01 10:00"\n' + toml.read_text("utf-8"), "utf-8")
    result = run(workdir, "campaign", "validate", str(toml))
    assert result.returncode == 1 and "send_at" in result.stderr and "has passed" in result.stderr
    toml.write_text(toml.read_text("utf-8").replace("1404-01-01", "1499-01-01"), "utf-8")
    ok = run(workdir, "campaign", "validate", str(toml))
    assert ok.returncode == 0, ok.stderr
    assert "send_at: " in ok.stdout and "(1499-01-01 10:00)" in ok.stdout


def test_validate_warns_of_anything_before_the_doctype_and_still_passes(workdir: Path) -> None:
    toml = write_campaign(workdir, "سلام")
    (workdir / "c" / "email.html").write_text(
        '<meta name="x">{% extends "email_layout.html" %}'
        "{% block content %}<p>سلام</p>{% endblock %}\n",
        "utf-8",
    )
    checked = run(workdir, "campaign", "validate", str(toml))
    assert checked.returncode == 0, checked.stderr
    [warning] = [line for line in checked.stderr.splitlines() if "doctype" in line]
    assert f"{workdir / 'c' / 'email.html'}: email.html: warning: something comes before" in (
        warning
    )
    assert '(<meta name="x">)' in warning


NARROWED = """slug = "narrow"
name = "آزمایش"
channels = ["email", "sms"]

[audience]
tags = ["newsletter"]
all_tags = ["vip"]
exclude_tags = ["blocked"]
exclude_campaigns = ["old"]

[email]
subject = "سلام {{ member.first_name }}"
html = "email.html"

[sms]
body = "سلام {{ member.first_name }}، حراج یلدا شروع شد"
"""


def test_validate_says_what_each_audience_rule_removed_and_what_the_sms_will_cost(
    pipeline: Callable[..., Harness],
    cli: Cli,
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
) -> None:
    h = pipeline(
        kavenegar_api_key=kavenegar_server.api_key,
        kavenegar_sender="10004346",
        kavenegar_base_url=kavenegar_server.base_url,
        sms_send_window="00:00-24:00",
    )
    members = {
        "A": ["newsletter", "vip"],  # gets it
        "B": ["newsletter"],  # removed by all_tags
        "C": ["newsletter", "vip", "blocked"],  # removed by exclude_tags
        "E": ["newsletter", "vip", "earlier"],  # removed by exclude_campaigns (on SMS)
        "F": ["vip"],  # not tagged
    }
    for i, (name, tags) in enumerate(members.items()):
        add_member(h.engine, name, tags=tags, mobile=f"+98912111000{i}")
    # An earlier SMS to E through Kavenegar: its cost is the price a part is estimated at.
    h.send(factory_campaign(tmp_path / "old", slug="old", channels=("sms",), tags=["earlier"]))
    h.run_workers()
    [earlier] = kavenegar_server.sent()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "email.html").write_text(HTML, encoding="utf-8")
    (tmp_path / "c" / "narrow.toml").write_text(NARROWED, encoding="utf-8")
    env = settings_env(h.settings)

    found = cli("campaign", "validate", str(tmp_path / "c" / "narrow.toml"), "--json", **env)
    assert found.exit_code == 0, found.output
    counts = json.loads(found.stdout)
    removed = {"all_tags": 1, "exclude_tags": 1, "exclude_campaigns": 0}
    assert counts["email"]["tagged"] == 4 and counts["email"]["removed_by"] == removed
    assert counts["email"]["deliveries"] == 2  # A and E: E had no email from `old`
    assert counts["sms"]["removed_by"] == {**removed, "exclude_campaigns": 1}
    assert counts["sms"]["deliveries"] == counts["sms"]["members"] == 1
    parts = measure(f"سلام مریم، حراج یلدا شروع شد\n{h.settings.sms_optout_footer}").parts
    price = earlier["cost"] / measure(earlier["message"]).parts
    assert counts["sms"]["parts"] == parts
    assert counts["sms"]["rials_per_part"] == round(price, 1)
    assert counts["sms"]["cost_estimate_rials"] == round(parts * price)

    text = cli("campaign", "validate", str(tmp_path / "c" / "narrow.toml"), **env)
    assert text.exit_code == 0, text.output
    assert (
        "sms: tags select 4 members; all_tags removed 1, exclude_tags removed 1, "
        "exclude_campaigns removed 1" in text.stdout
    )
    assert f"sms cost: about {round(parts * price):,} rials" in text.stdout
