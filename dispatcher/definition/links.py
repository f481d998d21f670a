"""Link tracking: a campaign's links, and a rendered message with them rewritten.

`campaign_links` lists the `http`/`https` links of a campaign's templates, written out
or built from the campaign alone (`{{ campaign.slug }}` in a UTM tag; never one built
per member), in a fixed order: a link's index is its place in that list, which the
click token carries and the redirect looks up. The
`rewrite_*` functions are pure: they swap each listed link of a rendered part for
`url_for(index)` and leave everything else (`mailto:`, `tel:`, `#`, the unsubscribe
and web-copy links, links not in the list) as it is.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from functools import lru_cache

from dispatcher.definition.rendering import make_environment

MAX_LINKS = 250  # links tracked per campaign (the token's index is one byte)
# An href in HTML: the attribute's value, quoted either way.
# No `\b` before `href`: it costs a test at every position (3x the whole rewrite), and
# an `href` after a word character is no attribute of HTML anyway.
_HREF = re.compile(r"""(href\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
# A URL in plain text: up to whitespace, a quote or a closing bracket.
_URL = re.compile(r"""https?://[^\s<>"'()\[\]{}«»]+""", re.IGNORECASE)
# The same two, case-sensitive: searched in a lower-cased copy they start with a literal,
# which the regex engine finds with a fast scan instead of trying every position.
_HREF_LOWER = re.compile(_HREF.pattern, re.DOTALL)
_URL_LOWER = re.compile(_URL.pattern)
# The same in a template's source, where `{{ ... }}` may be part of it.
_SOURCE_URL = re.compile(r"""https?://(?:[^\s<>"'()\[\]{}«»]|\{\{.*?\}\})+""", re.IGNORECASE)
_TRAILING = ".,;:!?،؛"  # punctuation that ends a sentence, not the URL
_TEMPLATE = ("{{", "{%", "{#")

UrlFor = Callable[[int], str]
Render = Callable[[str], "str | None"]  # a link's template source -> the link, or None


def _trim(url: str) -> str:
    return url.rstrip(_TRAILING)


def _trackable(url: str) -> bool:
    lowered = url.lower()
    return lowered.startswith(("http://", "https://")) and not any(t in url for t in _TEMPLATE)


def campaign_links(
    html: str | None,
    text: str | None = None,
    sms: str | None = None,
    render: Render | None = None,
) -> list[str]:
    """The campaign's trackable links in order of first appearance: the HTML's hrefs,
    then the text part's and the SMS's URLs; each once, at most MAX_LINKS. `render`
    makes a link whose source is a template (None: it depends on the member)."""
    found: list[str] = []
    seen: set[str] = set()

    def add(sources: Iterable[str]) -> None:
        for source in sources:
            url: str | None = source
            if render is not None and any(t in source for t in _TEMPLATE):
                url = render(source)
            if url is None:
                continue
            if url not in seen and _trackable(url) and len(found) < MAX_LINKS:
                seen.add(url)
                found.append(url)

    if html:
        add(html_lib.unescape(m.group(3).strip()) for m in _HREF.finditer(html))
    for source in (text, sms):
        if source:
            add(_trim(m.group(0)) for m in _SOURCE_URL.finditer(source))
    return found


def link_index(links: list[str]) -> dict[str, int]:
    """URL -> index, for the rewrite functions."""
    return {url: i for i, url in enumerate(links)}


def _spans(pattern: re.Pattern[str], lower: re.Pattern[str], s: str) -> Iterator[re.Match[str]]:
    """`pattern.finditer(s)` (case-insensitive), found faster: `lower` (the same pattern,
    case-sensitive) in `s.lower()`. The two find the same spans whenever lower-casing
    keeps every character's place, since nothing but the letters of `href`/`http` in the
    patterns has a case; the groups are then read from `s` itself."""
    folded = s.lower()
    if len(folded) != len(s):  # a character lower-cased into two (e.g. "İ"): the slow way
        yield from pattern.finditer(s)
        return
    for found in lower.finditer(folded):
        match = pattern.match(s, found.start())
        if match is not None:  # always: the same span, with `s`'s own letters
            yield match


def _rewrite(
    s: str, matches: Iterator[re.Match[str]], swap: Callable[[re.Match[str]], str | None]
) -> str:
    pieces: list[str] = []
    done = 0
    for match in matches:
        new = swap(match)
        if new is not None:
            pieces += (s[done : match.start()], new)
            done = match.end()
    if not pieces:
        return s
    pieces.append(s[done:])
    return "".join(pieces)


def rewrite_html(html: str, index: dict[str, int], url_for: UrlFor) -> str:
    """Every href of `html` that is one of the campaign's links, as `url_for(i)`."""
    if not index:
        return html

    def swap(match: re.Match[str]) -> str | None:
        i = index.get(html_lib.unescape(match.group(3).strip()))
        if i is None:
            return None
        quote = match.group(2)
        return f"{match.group(1)}{quote}{html_lib.escape(url_for(i))}{quote}"

    return _rewrite(html, _spans(_HREF, _HREF_LOWER, html), swap)


def rewrite_text(text: str, index: dict[str, int], url_for: UrlFor) -> str:
    """Every URL of a plain-text part (email text, SMS) that is one of the campaign's
    links, as `url_for(i)`; the punctuation after it stays."""
    if not index:
        return text

    def swap(match: re.Match[str]) -> str | None:
        whole = match.group(0)
        url = _trim(whole)
        i = index.get(url)
        if i is None:
            return None
        return url_for(i) + whole[len(url) :]

    return _rewrite(text, _spans(_URL, _URL_LOWER, text), swap)


@lru_cache(maxsize=64)
def cached_index(
    html: str | None,
    text: str | None,
    sms: str | None,
    campaign: tuple[str, str, datetime | None] = ("", "", None),
) -> dict[str, int]:
    """`link_index(campaign_links(...))`, computed once per campaign (a campaign's
    source strings are the same objects message after message: their hash is computed
    once too). `campaign`: its slug, name and send time, which links may use."""
    slug, name, send_at = campaign
    context = {"campaign": {"slug": slug, "name": name, "send_at": send_at}}
    env = make_environment({})

    def render(source: str) -> str | None:
        try:
            return env.from_string(source).render(context).strip()
        except Exception:  # a member's field (undefined here), or a broken link: untracked
            return None

    return link_index(campaign_links(html, text, sms, render))
