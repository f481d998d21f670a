"""The sandboxed Jinja2 environment and each campaign's compiled templates.

Templates are compiled once per campaign (`CampaignTemplates`), then rendered per
member. Campaign HTML always ends up inside `email_layout.html`, whose footer (outside
every block) carries the visible unsubscribe link, so no campaign can forget it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parseaddr
from functools import partial
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import BaseLoader, ChoiceLoader, PackageLoader, StrictUndefined, Template
from jinja2.environment import Environment
from jinja2.exceptions import TemplateNotFound
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dispatcher.definition.persian import FILTERS, TEHRAN
from dispatcher.definition.styles import inline_styles

LAYOUT = "email_layout.html"
HTML_NAME, TEXT_NAME, SUBJECT_NAME, SMS_NAME = (
    "campaign/email.html",
    "campaign/email.txt",
    "campaign/subject.txt",
    "campaign/sms.txt",
)
_WRAP_OPEN = '{% extends "' + LAYOUT + '" %}{% block content %}'
_WRAP_CLOSE = "{% endblock %}"


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def wrap_in_layout(source: str) -> str:
    """Put a fragment inside the layout's content block; leave `{% extends %}` alone.

    The opening tag goes on the fragment's first line, so line numbers in errors
    still match the file.
    """
    if "{% extends" in source or "{%- extends" in source:
        return source
    return _WRAP_OPEN + source + _WRAP_CLOSE


def shop_name(mail_from: str | None) -> str:
    name, _addr = parseaddr(mail_from or "")
    return name or "فروشگاه"


class _CampaignLoader(BaseLoader):
    """Serves a campaign's sources under their names (which error tracebacks keep)."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.sources = sources

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Any]:
        if template not in self.sources:
            raise TemplateNotFound(template)
        return self.sources[template], template, lambda: True


def make_environment(
    sources: dict[str, str], *, zone: ZoneInfo = TEHRAN
) -> ImmutableSandboxedEnvironment:
    """A sandbox that sees the campaign's sources, the package's layouts and the
    Persian filters (`dispatcher.definition.persian`), dates shown in `zone`."""
    env = ImmutableSandboxedEnvironment(
        loader=ChoiceLoader([_CampaignLoader(sources), PackageLoader("dispatcher", "templates")]),
        undefined=StrictUndefined,
        autoescape=lambda name: bool(name) and name.endswith(".html"),
        keep_trailing_newline=False,
        auto_reload=False,
    )
    env.filters.update(FILTERS)
    env.filters["jalali"] = partial(FILTERS["jalali"], zone=zone)
    return env


class CampaignTemplates:
    """A campaign's templates, compiled once; `render_email` runs once per member."""

    def __init__(
        self,
        *,
        subject: str | None = None,
        html: str | None = None,
        text: str | None = None,
        sms: str | None = None,
        campaign: dict[str, Any],
        shop: dict[str, Any],
        zone: ZoneInfo = TEHRAN,
    ) -> None:
        sources = {
            name: src
            for name, src in (
                (SUBJECT_NAME, subject),
                (HTML_NAME, wrap_in_layout(html) if html is not None else None),
                (TEXT_NAME, text),
                (SMS_NAME, sms),
            )
            if src is not None
        }
        self.env = make_environment(sources, zone=zone)
        self.zone = zone
        if html is not None and "<style" in html.lower():
            self.env.parse(html, HTML_NAME)  # syntax errors point at the file's own lines
            sources[HTML_NAME] = wrap_in_layout(inline_styles(html))
        self.globals = {"campaign": campaign, "shop": shop}
        self._compiled: dict[str, Template] = {
            name: self.env.get_template(name, globals=self.globals) for name in sources
        }

    def has(self, name: str) -> bool:
        return name in self._compiled

    def today(self) -> date:
        """The date in the shop's zone (templates see it as `today`)."""
        return datetime.now(self.zone).date()

    def render(self, name: str, context: dict[str, Any]) -> str:
        if "today" not in context:
            context = {**context, "today": self.today()}
        return self._compiled[name].render(context)

    def render_email(
        self, member: dict[str, Any], unsubscribe_url: str, view_url: str | None = None
    ) -> RenderedEmail:
        """Subject, text and HTML for one member; `view_url`: the "نسخهٔ وب" link above
        the content (none in the web copy itself)."""
        ctx = {
            "member": member,
            "unsubscribe_url": unsubscribe_url,
            "view_url": view_url or "",
            "today": self.today(),
        }
        subject = " ".join(self.render(SUBJECT_NAME, ctx).split())
        html = self.render(HTML_NAME, ctx)
        if TEXT_NAME in self._compiled:
            text = self.render(TEXT_NAME, ctx).strip()
        else:
            text = html_to_text(html)
        if unsubscribe_url not in text:
            text += f"\n\n--\nلغو عضویت در خبرنامه: {unsubscribe_url}"
        return RenderedEmail(subject=subject, text=text + "\n", html=html)

    def render_sms(self, member: dict[str, Any]) -> str:
        return self.render(SMS_NAME, {"member": member, "unsubscribe_url": ""}).strip()


class _TextExtractor(HTMLParser):
    _BLOCKS = frozenset(
        {"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "li", "table", "hr"}
    )
    _SKIP = frozenset({"style", "script", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._href: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("• ")
        if tag == "a":
            self._href.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")
        elif tag == "a" and self._href:
            href = self._href.pop()
            if href and href.startswith(("http://", "https://")):
                self.parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """A readable plain-text version of an email's HTML (links kept as URLs)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()
