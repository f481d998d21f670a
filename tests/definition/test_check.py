"""Rendering for many members: each distinct problem once, with the members it hit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dispatcher.definition.campaign import SmsSpec, load_campaign
from dispatcher.definition.check import render_problems, toml_line

TOML = """slug = "s"
name = "n"
channels = ["sms"]

[sms]
body = \"\"\"
سلام {{ member.first_name }}
{{ member.tags[0] }}\"\"\"
"""


def test_toml_line_finds_a_key_in_its_section_and_a_multiline_string_starts_below() -> None:
    assert toml_line(TOML, "sms", "body") == 7
    assert toml_line('[email]\nsubject = "x"\n', "email", "subject") == 2
    assert toml_line('subject = "x"\n', "email", "subject") is None


def test_a_problem_is_reported_once_with_a_few_members_and_a_count(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(TOML, encoding="utf-8")
    spec = load_campaign(path)
    members = [{"external_id": f"M{i}", "email": f"m{i}@example.com", "tags": []} for i in range(9)]
    members.append({"external_id": "OK", "tags": ["vip"]})
    rendered, [problem] = render_problems(spec, spec.templates({}), members, url="u")
    assert rendered == 10 and problem.count == 9 and problem.line == 8
    assert str(problem).startswith(f"{path}:8: sms.body: cannot render: UndefinedError")
    assert "M0 (m***@example.com), M1 (m***@example.com)" in str(problem)
    assert str(problem).endswith("and 4 more)")


def test_anything_before_the_doctype_is_a_warning_naming_it(tmp_path: Path) -> None:
    (tmp_path / "email.html").write_text(
        '<style>p { color: red }</style>{% extends "email_layout.html" %}\n'
        "{% block content %}<p>سلام</p>{% endblock %}\n",
        encoding="utf-8",
    )
    path = tmp_path / "c.toml"
    path.write_text(
        'slug = "s"\nname = "n"\nchannels = ["email"]\n[email]\nsubject = "x"\n'
        'html = "email.html"\n',
        encoding="utf-8",
    )
    spec = load_campaign(path)
    members = [{"external_id": f"M{i}", "tags": []} for i in range(3)]
    templates = spec.templates({"name": "shop"})
    rendered, [problem] = render_problems(spec, templates, members, url="u")
    assert rendered == 3 and problem.warning and problem.count == 3
    assert str(problem).startswith(
        f"{tmp_path / 'email.html'}: email.html: warning: something comes before "
        "<!doctype html> (<style>p { color: red }</style>)"
    )


CODE = "کد شما {{ member.get('code')|fa_digits }}"  # None for a member without one


def test_a_member_field_fa_digits_cannot_show_is_a_problem_naming_the_member(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'slug = "s"\nname = "n"\nchannels = ["sms"]\n[sms]\nbody = "کد شما"\n',
        encoding="utf-8",
    )
    spec = load_campaign(path)
    templates = replace(spec, sms=SmsSpec(text=CODE)).templates({})
    members = [{"external_id": "HAS", "code": "12"}, {"external_id": "NONE", "code": None}]
    _, [problem] = render_problems(spec, templates, members, url="u")
    assert problem.count == 1 and problem.members == ["NONE"] and not problem.warning
    assert "cannot render: ValueError: fa_digits needs text or a number, not None" in str(problem)
