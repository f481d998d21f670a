"""Link rewriting: pure functions over rendered parts."""

from __future__ import annotations

import html as html_lib
import random
import re

from dispatcher.definition.links import (
    campaign_links,
    link_index,
    rewrite_html,
    rewrite_text,
)

HTML = """
<p><a href="https://shop.example/yalda?utm=1&amp;x=2">حراج</a>
<a href='http://shop.example/old'>قدیمی</a>
<a href="mailto:help@shop.example">ایمیل</a> <a href="tel:+982112345678">تلفن</a>
<a href="#top">بالا</a> <a href="{{ member.ref_url }}">دعوت</a>
<a href="https://shop.example/yalda?utm=1&amp;x=2">دوباره</a></p>
"""
TEXT = "ببینید: https://shop.example/text-only. و http://shop.example/old!"


def url_for(i: int) -> str:
    return f"https://t.example/c/tok{i}"


def test_campaign_links_are_the_written_http_links_in_order_each_once() -> None:
    assert campaign_links(HTML, TEXT, "پیامک https://s.example/x") == [
        "https://shop.example/yalda?utm=1&x=2",
        "http://shop.example/old",
        "https://shop.example/text-only",
        "https://s.example/x",
    ]


def test_html_links_are_rewritten_but_not_mailto_tel_anchors_or_unlisted_ones() -> None:
    index = link_index(campaign_links(HTML))
    rendered = HTML.replace("{{ member.ref_url }}", "https://shop.example/ref/C1")
    rendered += '<a href="https://shop.example/u/TOKEN">لغو عضویت</a>'
    out = rewrite_html(rendered, index, url_for)
    assert out.count('href="https://t.example/c/tok0"') == 2
    assert "href='https://t.example/c/tok1'" in out
    for kept in ("mailto:help@shop.example", "tel:+982112345678", "#top"):
        assert f'href="{kept}"' in out
    assert 'href="https://shop.example/ref/C1"' in out  # built per member: not tracked
    assert 'href="https://shop.example/u/TOKEN"' in out  # the unsubscribe link stays
    assert "shop.example/yalda" not in out


def test_text_links_are_rewritten_and_the_punctuation_after_them_stays() -> None:
    index = link_index(campaign_links(None, TEXT))
    out = rewrite_text(TEXT + "\nلغو: https://shop.example/u/TOKEN", index, url_for)
    assert out.startswith("ببینید: https://t.example/c/tok0. و https://t.example/c/tok1!")
    assert out.endswith("https://shop.example/u/TOKEN")


def test_nothing_changes_without_links() -> None:
    assert rewrite_html(HTML, {}, url_for) == HTML
    assert rewrite_text(TEXT, {}, url_for) == TEXT


def test_links_built_from_the_campaign_are_tracked_but_not_those_built_per_member() -> None:
    from dispatcher.definition.links import cached_index

    html = (
        '<a href="https://shop.example/y?utm_campaign={{ campaign.slug }}&amp;a=1">y</a>'
        '<a href="https://shop.example/r/{{ member.external_id }}">r</a>'
    )
    text = "https://shop.example/y?utm_campaign={{ campaign.slug }}&a=1 و {{ member.email }}"
    index = cached_index(html, text, None, ("yalda-1405", "حراج", None))
    assert index == {"https://shop.example/y?utm_campaign=yalda-1405&a=1": 0}


def test_the_example_campaigns_link_is_tracked() -> None:
    from pathlib import Path

    from dispatcher.definition.campaign import load_campaign

    spec = load_campaign(Path(__file__).parents[2] / "campaigns" / "yalda-1405.toml")
    assert list(spec.link_index()) == [
        "https://shop.example/yalda?utm_source=newsletter&utm_campaign=yalda-1405"
    ]


def test_the_fast_scan_finds_exactly_what_the_case_insensitive_patterns_find() -> None:
    # The rewrite scans a lower-cased copy (a literal prefix the regex engine finds
    # fast); it must swap the same links as the case-insensitive patterns would,
    # whatever the letters' case, and with characters that lower-case into two.
    index = {"http://a.example/x": 0, "https://a.example/y?a=1&b=2": 1, "HTTPS://a.example/z": 2}
    pieces = [
        "href", "HREF", "HrEf", "=", " ", '"', "'", "http://a.example/x", "HTTP://a.example/x",
        "https://a.example/y?a=1&amp;b=2", "https://a.example/y?a=1&b=2", "HTTPS://a.example/z",
        "İ", "ſ", "K", "x", "\n", ".", "،", "<a ", ">",
        'href="http://a.example/x"', "HREF='https://a.example/y?a=1&amp;b=2'",
        'hReF = " HTTPS://a.example/z "', 'href="http://a.example/x.', "http://a.example/x!",
    ]  # fmt: skip
    rng = random.Random(1405)

    def html_swap(m: re.Match[str]) -> str:
        i = index.get(html_lib.unescape(m.group(3).strip()))
        if i is None:
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{html_lib.escape(url_for(i))}{m.group(2)}"

    def text_swap(m: re.Match[str]) -> str:
        url = m.group(0).rstrip(".,;:!?،؛")
        i = index.get(url)
        return m.group(0) if i is None else url_for(i) + m.group(0)[len(url) :]

    href = re.compile(r"""(href\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
    url = re.compile(r"""https?://[^\s<>"'()\[\]{}«»]+""", re.IGNORECASE)
    swapped = 0
    for _ in range(5000):
        s = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        expected_html = href.sub(html_swap, s)
        assert rewrite_html(s, index, url_for) == expected_html, s
        assert rewrite_text(s, index, url_for) == url.sub(text_swap, s), s
        swapped += expected_html != s
    assert swapped > 100  # the strings did exercise the swap
