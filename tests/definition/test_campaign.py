"""Campaign files: every problem reported with file, field (and line); valid files load."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.definition.campaign import CampaignSpec, load_campaign
from dispatcher.definition.rendering import has_unsubscribe_link
from dispatcher.errors import CampaignError
from dispatcher.store.models import Channel

EXAMPLE = Path(__file__).parents[2] / "campaigns" / "yalda-1405.toml"


def write_campaign(tmp_path: Path, toml: str, html: str | None = None) -> Path:
    templates = {} if html is None else {"t/email.html": html}
    for name, body in templates.items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    path = tmp_path / "c.toml"
    path.write_text(toml, encoding="utf-8")
    return path


GOOD = """
slug = "t-1"
name = "آزمایش"
channels = ["email"]
[email]
subject = "{{ member.first_name }} عزیز"
html = "t/email.html"
"""


def problems_of(path: Path) -> list[str]:
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    return info.value.problems


def test_the_shipped_example_campaign_is_valid() -> None:
    spec = load_campaign(EXAMPLE)
    assert spec.slug == "yalda-1405"
    assert Channel.EMAIL in spec.channels
    assert spec.audience_tags == ["newsletter"]


def test_a_valid_campaign_loads_with_its_template_sources(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, GOOD, html="<p>سلام {{ member.first_name }}</p>")
    spec = load_campaign(path)
    assert spec.email is not None and "سلام" in spec.email.html
    assert spec.audience_tags is None
    assert CampaignSpec.from_json(spec.to_json()) == spec


def test_unknown_keys_are_reported_with_their_section(tmp_path: Path) -> None:
    toml = GOOD + 'colour = "red"\n[audience]\ntag = ["x"]\n'
    problems = problems_of(write_campaign(tmp_path, toml, html="<p>x</p>"))
    assert any("colour: unknown key" in p for p in problems)
    assert any("audience.tag: unknown key" in p for p in problems)


def test_missing_template_names_the_field_and_file(tmp_path: Path) -> None:
    problems = problems_of(write_campaign(tmp_path, GOOD))
    assert problems == [
        f"{tmp_path / 'c.toml'}: email.html: template file 't/email.html' not found"
    ]


def test_template_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, GOOD, html="<p>a</p>\n<p>b</p>\n{% if %}\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{tmp_path / 't/email.html'}:3: email.html: template syntax error")


def test_undefined_variable_is_found_by_rendering_for_a_sample_member(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, GOOD, html="<p>a</p>\n<p>{{ member.nickname }}</p>\n")
    [problem] = problems_of(path)
    assert f"{tmp_path / 't/email.html'}:2: email.html: cannot render" in problem
    assert "nickname" in problem


def test_undefined_variable_in_the_subject_is_reported(tmp_path: Path) -> None:
    toml = GOOD.replace("member.first_name", "customer.name")
    problems = problems_of(write_campaign(tmp_path, toml, html="<p>x</p>"))
    assert any("email.subject: cannot render" in p and "customer" in p for p in problems)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    toml = 'name = ""\nchannels = ["fax"]\nwhatever = 1\n'
    problems = problems_of(write_campaign(tmp_path, toml))
    text = "\n".join(problems)
    for expected in ("slug: required", "name: required", "unknown channel 'fax'", "whatever"):
        assert expected in text


def test_not_toml_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("slug = \n", encoding="utf-8")
    [problem] = problems_of(path)
    assert "not valid TOML" in problem


def test_a_template_path_may_not_escape_the_campaign_folder(tmp_path: Path) -> None:
    toml = GOOD.replace("t/email.html", "../../etc/passwd")
    [problem] = problems_of(write_campaign(tmp_path, toml))
    assert "outside the campaign's folder" in problem


def test_a_layout_that_drops_the_unsubscribe_link_is_refused(tmp_path: Path) -> None:
    html = '{% extends "own.html" %}'
    path = write_campaign(tmp_path, GOOD, html=html)
    problems = problems_of(path)
    assert any("does not exist" in p or "unsubscribe" in p for p in problems)


def test_sandbox_blocks_unsafe_attribute_access(tmp_path: Path) -> None:
    html = "<p>{{ member.__class__.__mro__ }}</p>"
    problems = problems_of(write_campaign(tmp_path, GOOD, html=html))
    assert any("cannot render" in p for p in problems)


# -- hostile campaign files: headers, limits, the unsubscribe link ---------------------------


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        (GOOD.replace('name = "آزمایش"', 'name = "Promo\\r\\nBcc: all@example.com"'), "name"),
        (GOOD.replace('subject = "', 'subject = "Hi\\r\\nBcc: all@example.com '), "email.subject"),
        (GOOD.replace('name = "آزمایش"', 'name = "Promo\\u0007"'), "name"),
    ],
)
def test_a_control_character_in_a_header_value_is_a_problem(
    tmp_path: Path, toml: str, field: str
) -> None:
    problems = problems_of(write_campaign(tmp_path, toml, html="<p>x</p>"))
    assert any(f": {field}: a control character" in p for p in problems), problems


def test_a_subject_over_the_limit_is_a_problem(tmp_path: Path) -> None:
    toml = GOOD.replace('subject = "', 'subject = "' + "Yalda sale " * 30)
    problems = problems_of(write_campaign(tmp_path, toml, html="<p>x</p>"))
    assert any("email.subject" in p and "over the limit of 200" in p for p in problems)


@pytest.mark.parametrize(
    "html",
    [
        '{% if member.external_id == "C0000" %}{% extends "email_layout.html" %}{% endif %}'
        "<p>only the sample member sees the link</p>",
        '{% if member.external_id == "C0000" %}<a href="{{ unsubscribe_url }}">x</a>{% endif %}'
        '{# {% extends "email_layout.html" %} #}',
        '<!-- <a href="{{ unsubscribe_url }}">x</a> -->{# {% extends "email_layout.html" %} #}',
    ],
)
def test_a_link_shown_only_to_the_sample_member_or_hidden_is_a_problem(
    tmp_path: Path, html: str
) -> None:
    path = write_campaign(tmp_path, GOOD, html=html)
    try:
        spec = load_campaign(path)
    except CampaignError as exc:
        assert any("unsubscribe link" in p for p in exc.problems), exc.problems
        return
    # Not a problem only because the fragment is now wrapped in the layout after all.
    assert spec.email is not None
    rendered = spec.templates({"name": "s"}).render_email(
        {"external_id": "C9", "first_name": "x", "tags": []}, "https://s.example/u/T"
    )
    assert has_unsubscribe_link(rendered.html, "https://s.example/u/T")


@pytest.mark.parametrize(
    "expression",
    [
        "{{ 'a' * 10**8 }}",
        "{% for i in range(10**8) %}{{ i }}{% endfor %}",
        "{{ 7 ** (10**9) }}",
        "{{ '%0100000000d' % 1 }}",
        "{{ 'a'.ljust(10**8) }}",
        "{{ 'a'|center(10**8) }}",
        "{{ '{:100000000}'.format(1) }}",
        "{% for i in range(10000) %}{% for j in range(10000) %}xxxxxxxxxx{% endfor %}{% endfor %}",
        "{{ 1 / 0 }}",
        "{{ member.tags[5] }}",
    ],
)
def test_a_hostile_template_is_a_reported_problem_found_cheaply(
    tmp_path: Path, expression: str
) -> None:
    import time

    path = write_campaign(tmp_path, GOOD, html=f"<p>{expression}</p>")
    started = time.process_time()  # CPU time: a busy machine does not make it fail
    problems = problems_of(path)
    assert time.process_time() - started < 2.0
    assert any("email.html" in p and "cannot render for a sample member" in p for p in problems)


def test_an_sms_over_sms_max_parts_is_a_problem(tmp_path: Path) -> None:
    toml = 'slug = "s-1"\nname = "x"\nchannels = ["sms"]\n[sms]\nbody = "' + "سلام " * 60 + '"\n'
    path = write_campaign(tmp_path, toml)
    with pytest.raises(CampaignError) as info:
        load_campaign(path, sms_footer="لغو11", sms_max_parts=4)
    assert any("SMS_MAX_PARTS (4)" in p for p in info.value.problems)
    assert load_campaign(path, sms_footer="لغو11", sms_max_parts=5)


def test_campaign_send_at_is_the_recorded_send_time_for_templates(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'slug = "s"\nname = "n"\nchannels = ["sms"]\nsend_at = "1405-09-29 10:00"\n'
        "[sms]\nbody = \"{{ campaign.send_at|jalali('%d %B') }}\"\n",
        encoding="utf-8",
    )
    spec = load_campaign(path)
    assert spec.templates({"name": "x"}).render_sms({}) == "۲۹ آذر"


def test_a_send_at_that_is_no_time_is_a_validate_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'slug = "s"\nname = "n"\nchannels = ["sms"]\nsend_at = "1405-13-40"\n[sms]\nbody = "x"\n',
        encoding="utf-8",
    )
    with pytest.raises(CampaignError, match="send_at"):
        load_campaign(path)


def test_audience_keys_are_loaded_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    head = 'slug = "s"\nname = "n"\nchannels = ["sms"]\n[sms]\nbody = "x"\n[audience]\n'
    path.write_text(
        head + 'all_tags = ["vip"]\nexclude_tags = ["staff"]\nexclude_campaigns = ["y-1404"]\n',
        encoding="utf-8",
    )
    spec = load_campaign(path)
    assert (spec.audience.all_tags, spec.audience.exclude_tags) == (["vip"], ["staff"])
    assert CampaignSpec.from_json(spec.to_json()).audience == spec.audience
    path.write_text(
        head + 'all_tags = "vip"\nexclude_tags = ["vip"]\nexclude_campaigns = ["s"]\n',
        encoding="utf-8",
    )
    with pytest.raises(CampaignError) as caught:
        load_campaign(path)
    problems = "\n".join(caught.value.problems)
    assert "audience.all_tags: must be a list of tag names" in problems
    assert "audience.exclude_campaigns: names this campaign itself" in problems


def test_a_sender_outside_the_allowed_domains_is_a_validate_error(tmp_path: Path) -> None:
    path = write_campaign(
        tmp_path,
        'slug = "s"\nname = "n"\nchannels = ["email"]\n[email]\nsubject = "x"\n'
        'html = "t/email.html"\nfrom = "Shop <news@other.example>"\nreply_to = "not an address"\n',
        "<p>x</p>",
    )
    with pytest.raises(CampaignError) as caught:
        load_campaign(path, allowed_from_domains=["shop.example"])
    problems = "\n".join(caught.value.problems)
    assert "email.from: other.example is not an allowed sender domain" in problems
    assert "email.reply_to: must be one address" in problems
    fine = path.read_text(encoding="utf-8").replace("other.example", "shop.example")
    path.write_text(fine.replace("not an address", "help@shop.example"), encoding="utf-8")
    spec = load_campaign(path, allowed_from_domains=["shop.example"])
    assert spec.email is not None and spec.email.from_addr == "Shop <news@shop.example>"
