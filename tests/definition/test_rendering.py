"""Rendering: RTL layout with the unsubscribe footer, autoescape, text derived from HTML."""

from __future__ import annotations

from dispatcher.definition.rendering import CampaignTemplates, html_to_text, shop_name

MEMBER = {"first_name": "<b>علی</b>", "last_name": "", "email": "", "mobile": "", "tags": []}
URL = "https://shop.example/u/TOKEN"


def templates(html: str, text: str | None = None) -> CampaignTemplates:
    return CampaignTemplates(
        subject="{{ member.first_name }} عزیز\nخط دوم",
        html=html,
        text=text,
        campaign={"slug": "s", "name": "حراج"},
        shop={"name": "فروشگاه نمونه"},
    )


def test_a_fragment_is_wrapped_in_the_rtl_layout_with_the_unsubscribe_footer() -> None:
    out = templates("<p>سلام</p>").render_email(MEMBER, URL)
    assert '<html lang="fa" dir="rtl">' in out.html
    assert "direction:rtl" in out.html
    assert f'href="{URL}"' in out.html and "لغو عضویت" in out.html
    assert "فروشگاه نمونه" in out.html


def test_html_is_autoescaped_but_subject_and_text_are_not() -> None:
    out = templates("<p>{{ member.first_name }}</p>", "سلام {{ member.first_name }}").render_email(
        MEMBER, URL
    )
    assert "&lt;b&gt;علی&lt;/b&gt;" in out.html
    assert out.subject == "<b>علی</b> عزیز خط دوم"  # one line, never a header break
    assert out.text.startswith("سلام <b>علی</b>")


def test_text_is_derived_from_html_when_not_given_and_keeps_the_unsubscribe_url() -> None:
    out = templates(
        '<h1>یلدا</h1><p>بخرید <a href="https://shop.example/y">اینجا</a></p>'
    ).render_email(MEMBER, URL)
    assert "یلدا" in out.text
    assert "اینجا (https://shop.example/y)" in out.text
    assert URL in out.text
    assert "<" not in out.text.replace("<b>", "").replace("</b>", "")


def test_a_text_template_without_the_link_gets_it_appended() -> None:
    out = templates("<p>x</p>", "فقط متن").render_email(MEMBER, URL)
    assert out.text.rstrip().endswith(URL)


def test_html_to_text_drops_style_and_script() -> None:
    assert html_to_text("<style>p{}</style><script>x()</script><p>سلام</p>") == "سلام"


def test_shop_name_comes_from_the_from_header() -> None:
    assert shop_name("فروشگاه نمونه <news@shop.example>") == "فروشگاه نمونه"
    assert shop_name("news@shop.example") == "فروشگاه"


def test_a_template_that_shows_the_link_to_some_members_only_fails_for_the_others() -> None:
    import pytest

    from dispatcher.errors import RenderError

    t = templates(
        '{% if member.first_name == "Sample" %}{% extends "email_layout.html" %}{% endif %}'
        "<p>no link for you</p>"
    )
    assert f'href="{URL}"' in t.render_email({**MEMBER, "first_name": "Sample"}, URL).html
    with pytest.raises(RenderError, match="no visible unsubscribe link"):
        t.render_email(MEMBER, URL)


def test_an_extends_hidden_in_a_comment_does_not_keep_the_layout_out() -> None:
    out = templates('{# {% extends "email_layout.html" %} #}<p>سلام</p>').render_email(MEMBER, URL)
    assert f'href="{URL}"' in out.html and "<p>سلام</p>" in out.html


def test_rendering_stops_at_the_size_limit() -> None:
    import time

    import pytest

    from dispatcher.errors import RenderError

    t = templates(
        "{% for i in range(10000) %}{% for j in range(10000) %}xx{% endfor %}{% endfor %}"
    )
    started = time.monotonic()
    with pytest.raises(RenderError, match="over 500,000 characters"):
        t.render_email(MEMBER, URL)
    assert time.monotonic() - started < 2.0


def test_control_characters_never_reach_the_subject() -> None:
    out = templates("<p>x</p>").render_email({**MEMBER, "first_name": "Ali\x07\x1b[31m"}, URL)
    assert out.subject == "Ali عزیز خط دوم"


def test_a_style_block_is_inlined_at_compile_time_and_jinja_survives() -> None:
    html = (
        "<style>.price{color:#c00} td.cell{padding:4px}</style>"
        '<p class="price" title="{{ member.first_name }}">{{ 1250000|toman }}</p>'
        "<table>{% for i in [1, 2] %}<tr>"
        '<td class="cell {% if i > 1 %}big{% endif %}">{{ i }}</td></tr>{% endfor %}</table>'
    )
    out = templates(html).render_email(MEMBER, URL).html
    assert 'class="price" title="&lt;b&gt;علی&lt;/b&gt;" style="color: #c00;"' in out
    assert "۱٬۲۵۰٬۰۰۰ تومان" in out
    assert 'class="cell " style="padding: 4px;">1<' in out
    assert 'class="cell big" style="padding: 4px;">2<' in out
    assert "<style>.price{color:#c00}" in out  # kept for the clients that read it


def test_a_templated_style_block_is_left_as_it_is() -> None:
    html = "<style>.a{color:{{ 'red' }}}</style><p class=\"a\">x</p>"
    out = templates(html).render_email(MEMBER, URL).html
    assert '<p class="a">x</p>' in out and "<style>.a{color:red}</style>" in out
