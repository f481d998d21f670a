"""The sandboxed Jinja2 environment and each campaign's compiled templates.

Templates are compiled once per campaign (`CampaignTemplates`), then rendered per
member. Campaign HTML ends up inside `email_layout.html`, whose footer (outside every
block) carries the visible unsubscribe link; every rendered HTML is checked for it.
The sandbox has limits (`LimitedSandbox`): rendered sizes, ranges, and the operators
and calls that could build a huge string; any failure is a `RenderError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parseaddr
from functools import partial
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import BaseLoader, ChoiceLoader, PackageLoader, StrictUndefined, Template
from jinja2.environment import Environment
from jinja2.exceptions import SecurityError, TemplateNotFound
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import escape

from dispatcher.controlchars import strip_controls
from dispatcher.definition.persian import FILTERS, TEHRAN
from dispatcher.definition.styles import inline_styles
from dispatcher.errors import RenderError

LAYOUT = "email_layout.html"
HTML_NAME, TEXT_NAME, SUBJECT_NAME, SMS_NAME = (
    "campaign/email.html",
    "campaign/email.txt",
    "campaign/subject.txt",
    "campaign/sms.txt",
)
# Limits, in characters (see the README's "Template limits").
MAX_HTML_CHARS = 500_000
MAX_TEXT_CHARS = 200_000
MAX_SUBJECT_CHARS = 200  # for the sample member, at validate
MAX_VALUE_CHARS = 1_000_000  # any one string a template builds (`*`, `%`, a width)
MAX_RANGE = 10_000  # items of one `range()`
_DIGITS = re.compile(r"\d+")
_EXTENDS = re.compile(r"\{%[-+]?\s*extends\b")
_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_DOCTYPE = re.compile(r"\s*<!doctype\s+html[\s>]", re.IGNORECASE)
_WRAP_OPEN = '{% extends "' + LAYOUT + '" %}{% block content %}'
_WRAP_CLOSE = "{% endblock %}"


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def variant_subject_name(variant: str) -> str:
    """The template name of an A/B variant's subject."""
    return f"campaign/subject.{variant}.txt"


def wrap_in_layout(source: str) -> str:
    """Put a fragment inside the layout's content block; leave `{% extends %}` alone.

    The opening tag goes on the fragment's first line, so line numbers in errors
    still match the file.
    """
    if _EXTENDS.search(_COMMENT.sub("", source)):
        return source
    return _WRAP_OPEN + source + _WRAP_CLOSE


def has_unsubscribe_link(html: str, unsubscribe_url: str) -> bool:
    """Whether `html` links to `unsubscribe_url` outside HTML comments."""
    needle = f'href="{escape(unsubscribe_url)}"'
    if needle not in html:
        return False
    return "<!--" not in html or needle in _HTML_COMMENT.sub("", html)


def before_doctype(html: str) -> str:
    """What a rendered page has before its `<!doctype html>` (a browser then shows it
    in quirks mode), shortened; "" when the doctype comes first."""
    if _DOCTYPE.match(html):
        return ""
    at = html.lower().find("<!doctype")
    if at < 0:
        return "(no <!doctype html>)"
    found = " ".join(html[:at].split())
    return found if len(found) <= 60 else found[:60] + "..."


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


def _too_big(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > MAX_VALUE_CHARS


def _check_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if any(_too_big(a) for a in args) or any(_too_big(v) for v in kwargs.values()):
        raise SecurityError(f"a size over {MAX_VALUE_CHARS:,} is not allowed in a template")


def _check_format(fmt: object) -> None:
    """Refuse a format string with a width or precision over the limit (`%0100000000d`)."""
    if isinstance(fmt, str) and any(
        len(d) > 7 or int(d) > MAX_VALUE_CHARS for d in _DIGITS.findall(fmt)
    ):
        raise SecurityError(f"a width over {MAX_VALUE_CHARS:,} is not allowed in a template")


def bounded_range(*args: int) -> range:
    """`range`, at most MAX_RANGE items."""
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise SecurityError(f"range() of more than {MAX_RANGE:,} items is not allowed")
    return rng


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, refusing what would build a huge value *before* it
    is built: `'a' * 10**8`, `10 ** 10 ** 10`, `'%0100000000d' % 1`,
    `'a'.ljust(10**8)`, `'a'|center(10**8)`, `range(10**8)`."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, op: str, left: Any, right: Any) -> Any:
        if op == "*":
            size = _sized(left) or _sized(right)
            times = right if _sized(left) else left
            if size and isinstance(times, int) and size * times > MAX_VALUE_CHARS:
                raise SecurityError(f"a value over {MAX_VALUE_CHARS:,} characters")
        elif op == "**":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and abs(left) > 1
                and right * max(abs(left).bit_length(), 1) > 4096
            ):
                raise SecurityError("a power too large for a template")
        elif op == "%":
            _check_format(left)
        return super().call_binop(context, op, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(getattr(__obj, "__self__", None), str):  # str methods: widths, format
            _check_args(args, kwargs)
            if getattr(__obj, "__name__", "") in ("format", "format_map"):
                _check_format(__obj.__self__)
        return super().call(__context, __obj, *args, **kwargs)


def _limited_filter(func: Callable[..., Any], checks_format: bool) -> Callable[..., Any]:
    def limited(*args: Any, **kwargs: Any) -> Any:
        _check_args(args, kwargs)
        if checks_format and args:
            _check_format(args[0])
        return func(*args, **kwargs)

    for attr in ("jinja_pass_arg",):  # pass_context / pass_environment / pass_eval_context
        if hasattr(func, attr):
            setattr(limited, attr, getattr(func, attr))
    return limited


def make_environment(
    sources: dict[str, str], *, zone: ZoneInfo = TEHRAN
) -> ImmutableSandboxedEnvironment:
    """A limited sandbox that sees the campaign's sources, the package's layouts and the
    Persian filters (`dispatcher.definition.persian`), dates shown in `zone`."""
    env = LimitedSandbox(
        loader=ChoiceLoader([_CampaignLoader(sources), PackageLoader("dispatcher", "templates")]),
        undefined=StrictUndefined,
        autoescape=lambda name: bool(name) and name.endswith(".html"),
        keep_trailing_newline=False,
        auto_reload=False,
    )
    env.globals["range"] = bounded_range
    for name in ("center", "indent", "format"):
        env.filters[name] = _limited_filter(env.filters[name], checks_format=name == "format")
    env.filters.update(FILTERS)
    env.filters["jalali"] = partial(FILTERS["jalali"], zone=zone)
    return env


def _limit_of(name: str) -> int:
    return MAX_HTML_CHARS if name == HTML_NAME else MAX_TEXT_CHARS


class CampaignTemplates:
    """A campaign's templates, compiled once; `render_email` runs once per member."""

    def __init__(
        self,
        *,
        subject: str | None = None,
        html: str | None = None,
        text: str | None = None,
        sms: str | None = None,
        subjects: list[str] | None = None,
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
        for variant, source in zip("ABCD", subjects or [], strict=False):  # an A/B test's
            sources[variant_subject_name(variant)] = source
        self.env = make_environment(sources, zone=zone)
        self.zone = zone
        if html is not None and "<style" in html.lower():
            self.env.parse(html, HTML_NAME)  # syntax errors point at the file's own lines
            sources[HTML_NAME] = wrap_in_layout(inline_styles(html))
        self.globals = {"campaign": campaign, "shop": shop}
        self._compiled: dict[str, Template] = {
            name: self.env.get_template(name, globals=self.globals) for name in sources
        }
        for template in self._compiled.values():
            # Jinja keeps a template's globals as a ChainMap over the environment's, and
            # copies them into every render's context: one flat dict, made once, is the
            # same lookups at a third of the cost per message.
            template.globals = dict(template.globals)

    def has(self, name: str) -> bool:
        return name in self._compiled

    def today(self) -> date:
        """The date in the shop's zone (templates see it as `today`)."""
        return datetime.now(self.zone).date()

    def render(self, name: str, context: dict[str, Any]) -> str:
        """One template, rendered; stops as soon as the output passes its limit.

        Raises RenderError for anything that goes wrong (the template's error, a limit,
        a MemoryError), the original chained as its cause.
        """
        if "today" not in context:
            context = {**context, "today": self.today()}
        limit = _limit_of(name)
        try:
            return _joined(self._compiled[name].generate(context), limit, name)
        except RenderError:
            raise
        except Exception as exc:  # the template's own error, whatever it is: reported
            reason = str(exc) or type(exc).__name__
            raise RenderError(f"render: {_FIELDS.get(name, name)}: {reason}") from exc

    def render_email(
        self,
        member: dict[str, Any],
        unsubscribe_url: str,
        view_url: str | None = None,
        variant: str | None = None,
    ) -> RenderedEmail:
        """Subject, text and HTML for one member; `view_url`: the "نسخهٔ وب" link above
        the content (none in the web copy itself); `variant`: an A/B test's subject
        ("A".."D"; None: the campaign's). RenderError when the HTML lacks the
        visible unsubscribe link (a template that prints it only for some members)."""
        ctx = {
            "member": member,
            "unsubscribe_url": unsubscribe_url,
            "view_url": view_url or "",
            "today": self.today(),
        }
        name = variant_subject_name(variant) if variant else SUBJECT_NAME
        subject = strip_controls(" ".join(self.render(name, ctx).split()))
        html = self.render(HTML_NAME, ctx)
        if not has_unsubscribe_link(html, unsubscribe_url):
            raise RenderError("render: email.html: the HTML has no visible unsubscribe link")
        if TEXT_NAME in self._compiled:
            text = self.render(TEXT_NAME, ctx).strip()
        else:
            text = html_to_text(html)
        if unsubscribe_url not in text:
            text += f"\n\n--\nلغو عضویت در خبرنامه: {unsubscribe_url}"
        return RenderedEmail(subject=subject, text=text + "\n", html=html)

    def render_sms(self, member: dict[str, Any]) -> str:
        return self.render(SMS_NAME, {"member": member, "unsubscribe_url": ""}).strip()


_FIELDS = {
    SUBJECT_NAME: "email.subject",
    HTML_NAME: "email.html",
    TEXT_NAME: "email.text",
    SMS_NAME: "sms",
}


def _joined(chunks: Iterator[str], limit: int, name: str) -> str:
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise RenderError(
                f"render: {_FIELDS.get(name, name)}: over {limit:,} characters (the limit)"
            )
        parts.append(chunk)
    return "".join(parts)


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
