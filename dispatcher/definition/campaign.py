"""Campaign files: parse, validate, and freeze into a spec the workers render from.

`load_campaign(path)` reads the TOML and its templates and returns a `CampaignSpec`
or raises `CampaignError` with *every* problem found, each naming the file and
field (and line, for template syntax errors). Nothing here touches the database.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import TemplateSyntaxError
from jinja2.exceptions import TemplateNotFound

from dispatcher.controlchars import find_control
from dispatcher.definition.check import locate, template_line
from dispatcher.definition.links import cached_index, rewrite_text
from dispatcher.definition.measuring import (
    AbSpec,
    parse_ab,
    parse_sms_track_links,
    parse_tracking,
)
from dispatcher.definition.persian import TEHRAN
from dispatcher.definition.rendering import (
    HTML_NAME,
    MAX_SUBJECT_CHARS,
    SMS_NAME,
    SUBJECT_NAME,
    TEXT_NAME,
    CampaignTemplates,
    has_unsubscribe_link,
    wrap_in_layout,
)
from dispatcher.definition.sendtime import parse_send_at
from dispatcher.errors import CampaignError, InputError, RenderError, StyleError
from dispatcher.sms.text import parts_with_footer
from dispatcher.store.models import Channel

_KEYS: dict[str, set[str]] = {
    "": {"slug", "name", "channels", "audience", "email", "sms", "send_at", "tracking", "ab"},
    "audience": {"tags", "all_tags", "exclude_tags", "exclude_campaigns"},
    "email": {"subject", "html", "text", "from", "reply_to"},
    "sms": {"text", "body", "track_links"},
}
SAMPLE_MEMBER: dict[str, Any] = {
    "external_id": "C0000",
    "first_name": "مریم",
    "last_name": "احمدی",
    "email": "maryam@example.com",
    "mobile": "+989121234567",
    "tags": ["newsletter"],
}
# A second, different member: a template that shows the link only to the first fails.
# (Members with missing fields are `validate`'s varied sample's business.)
OTHER_SAMPLE_MEMBER: dict[str, Any] = {
    "external_id": "X-other",
    "first_name": "Ali",
    "last_name": "Karimi",
    "email": "ali@example.org",
    "mobile": "+989121234568",
    "tags": ["newsletter"],
}
SAMPLE_UNSUBSCRIBE_URL = "https://shop.example/u/sample-token"
SAMPLE_CLICK_URL = "https://shop.example/c/" + "x" * 24  # an SMS click link's length


@dataclass(frozen=True)
class EmailSpec:
    subject: str
    html: str
    text: str | None = None
    html_path: str = ""
    text_path: str | None = None
    from_addr: str | None = None  # `[email] from`, instead of MAIL_FROM
    reply_to: str | None = None


@dataclass(frozen=True)
class SmsSpec:
    text: str
    text_path: str | None = None


@dataclass(frozen=True)
class Audience:
    """Who a campaign goes to: members with any of `tags` (None: everyone) and all of
    `all_tags`, none of `exclude_tags`, and not sent any of `exclude_campaigns` (slugs)
    on the same channel."""

    tags: list[str] | None = None
    all_tags: list[str] = field(default_factory=list)
    exclude_tags: list[str] = field(default_factory=list)
    exclude_campaigns: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CampaignSpec:
    """A validated campaign, with its template sources read in."""

    slug: str
    name: str
    channels: list[Channel]
    audience_tags: list[str] | None = None
    audience_all_tags: list[str] = field(default_factory=list)
    audience_exclude_tags: list[str] = field(default_factory=list)
    audience_exclude_campaigns: list[str] = field(default_factory=list)
    email: EmailSpec | None = None
    sms: SmsSpec | None = None
    send_at: str | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # `[tracking] clicks`, `[sms] track_links`, `[ab]` (`dispatcher.definition.measuring`)
    track_clicks: bool = True
    sms_track_links: bool = False
    ab: AbSpec | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["channels"] = [str(c) for c in self.channels]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CampaignSpec:
        return cls(
            slug=data["slug"],
            name=data["name"],
            channels=[Channel(c) for c in data["channels"]],
            audience_tags=data.get("audience_tags"),
            audience_all_tags=data.get("audience_all_tags") or [],
            audience_exclude_tags=data.get("audience_exclude_tags") or [],
            audience_exclude_campaigns=data.get("audience_exclude_campaigns") or [],
            email=EmailSpec(**data["email"]) if data.get("email") else None,
            sms=SmsSpec(**data["sms"]) if data.get("sms") else None,
            send_at=data.get("send_at"),
            source=data.get("source", ""),
            extra=data.get("extra") or {},
            track_clicks=data.get("track_clicks", False),  # frozen before tracking: off
            sms_track_links=data.get("sms_track_links", False),
            ab=AbSpec.from_json(data.get("ab")),
        )

    @property
    def audience(self) -> Audience:
        return Audience(
            tags=self.audience_tags,
            all_tags=self.audience_all_tags,
            exclude_tags=self.audience_exclude_tags,
            exclude_campaigns=self.audience_exclude_campaigns,
        )

    def send_time(self, zone: ZoneInfo = TEHRAN) -> datetime:
        """When it is sent (aware UTC): `send_at` (expansion records the real one, or
        the launch time); for a file not sent yet without one, now."""
        if self.send_at:
            try:
                return parse_send_at(self.send_at, zone)
            except InputError:
                pass
        return datetime.now(UTC)

    def link_index(self) -> dict[str, int]:
        """The campaign's trackable links -> their index (`dispatcher.definition.links`)."""
        email, sms = self.email, self.sms
        return cached_index(
            email.html if email else None,
            email.text if email else None,
            sms.text if sms else None,
            (self.slug, self.name, self.send_time() if self.send_at else None),
        )

    def templates(self, shop: dict[str, Any], *, zone: ZoneInfo = TEHRAN) -> CampaignTemplates:
        """Compile this campaign's templates (once per campaign per process)."""
        return CampaignTemplates(
            subject=self.email.subject if self.email else None,
            html=self.email.html if self.email else None,
            text=self.email.text if self.email else None,
            sms=self.sms.text if self.sms else None,
            subjects=self.ab.subjects if self.ab else None,
            campaign={"slug": self.slug, "name": self.name, "send_at": self.send_time(zone)},
            shop=shop,
            zone=zone,
        )


class _Problems:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[str] = []

    def add(self, where: str, reason: str, *, file: Path | None = None, line: int | None = None):
        loc = str(file or self.path) + (f":{line}" if line else "")
        self.items.append(f"{loc}: {where}: {reason}")


def _read_template(base: Path, rel: object, where: str, problems: _Problems) -> str | None:
    if not isinstance(rel, str) or not rel:
        problems.add(where, "must be a path to a template file, relative to the campaign file")
        return None
    target = (base / rel).resolve()
    if not target.is_relative_to(base.resolve()):
        problems.add(where, f"{rel!r} points outside the campaign's folder")
        return None
    try:
        return target.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add(where, f"template file {rel!r} not found")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(where, f"template file {rel!r} cannot be read: {exc}")
    return None


def _unknown_keys(table: dict[str, Any], section: str, problems: _Problems) -> None:
    for key in table:
        allowed = _KEYS.get(section, set())
        if key not in allowed:
            where = f"{section}.{key}" if section else key
            problems.add(where, f"unknown key (expected one of: {', '.join(sorted(allowed))})")


def load_campaign(
    path: Path,
    *,
    sms_footer: str | None = None,
    sms_max_parts: int = 4,
    allowed_from_domains: list[str] | None = None,
) -> CampaignSpec:
    """Parse and validate a campaign file; raise CampaignError listing every problem.

    With `sms_footer` (SMS_OPTOUT_FOOTER), an SMS over `sms_max_parts` (SMS_MAX_PARTS)
    for a sample member, counted as sent (footer included, `sms.text`), is a problem.
    `allowed_from_domains` (ALLOWED_FROM_DOMAINS): the domains `[email] from` may use.
    """
    problems = _Problems(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CampaignError(str(path), ["file not found"]) from None
    except (UnicodeDecodeError, OSError) as exc:
        raise CampaignError(str(path), [f"cannot read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(str(path), [f"not valid TOML: {exc}"]) from None

    base = path.parent
    _unknown_keys(data, "", problems)
    for section in ("audience", "email", "sms"):
        if section in data:
            if isinstance(data[section], dict):
                _unknown_keys(data[section], section, problems)
            else:
                problems.add(section, "must be a table, e.g. [" + section + "]")

    slug = data.get("slug")
    if not isinstance(slug, str) or not slug.strip():
        problems.add("slug", "required: a short unique name such as 'yalda-1405'")
        slug = ""
    elif not all(c.isalnum() or c in "-_." for c in slug) or len(slug) > 128:
        problems.add("slug", "use letters, digits, '-', '_' or '.' (at most 128)")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.add("name", "required: the campaign's name")
        name = ""
    elif found := find_control(name):
        problems.add("name", f"a control character ({found}) cannot go into a header")

    channels: list[Channel] = []
    raw_channels = data.get("channels")
    if not isinstance(raw_channels, list) or not raw_channels:
        problems.add("channels", 'required: a list such as ["email"] or ["email", "sms"]')
    else:
        for c in raw_channels:
            try:
                channels.append(Channel(c))
            except ValueError:
                problems.add("channels", f"unknown channel {c!r} (expected 'email' or 'sms')")
        if len(set(channels)) != len(channels):
            problems.add("channels", "a channel is listed twice")

    tags: list[str] | None = None
    lists: dict[str, list[str]] = {}
    audience = data.get("audience")
    if isinstance(audience, dict):
        for key in ("tags", "all_tags", "exclude_tags", "exclude_campaigns"):
            if key not in audience:
                continue
            raw = audience[key]
            if not isinstance(raw, list) or not all(isinstance(t, str) and t.strip() for t in raw):
                what = "campaign slugs" if key == "exclude_campaigns" else "tag names"
                problems.add(f"audience.{key}", f"must be a list of {what}")
            else:
                lists[key] = [t.strip() for t in raw]
        tags = lists.get("tags")
        if slug and slug in lists.get("exclude_campaigns", []):
            problems.add("audience.exclude_campaigns", "names this campaign itself")
        excluded = set(lists.get("exclude_tags", []))
        empty = excluded & set(lists.get("all_tags", []))
        if tags and set(tags) <= excluded:
            empty |= set(tags)
        if empty:
            problems.add(
                "audience.exclude_tags",
                f"{', '.join(sorted(empty))} also required by tags/all_tags: nobody is left",
            )

    ab = parse_ab(data, Channel.EMAIL in channels, problems.add)
    if ab is not None and isinstance(data.get("email"), dict):
        data["email"].setdefault("subject", ab.subjects[0])  # the subject is variant A's
    email = _email_section(data, base, Channel.EMAIL in channels, problems)
    if email is not None:
        email = _senders(data["email"], email, allowed_from_domains or [], problems)
    sms = _sms_section(data, base, Channel.SMS in channels, problems)

    send_at = data.get("send_at")
    if send_at is not None and not isinstance(send_at, str):
        send_at = send_at.isoformat() if hasattr(send_at, "isoformat") else None
        if send_at is None:
            problems.add("send_at", "must be a date and time such as 2026-12-20T10:00:00+03:30")
    if isinstance(send_at, str):
        try:
            parse_send_at(send_at, TEHRAN)
        except InputError as exc:
            problems.add("send_at", str(exc))

    spec = CampaignSpec(
        slug=slug,
        name=name,
        channels=channels,
        audience_tags=tags,
        audience_all_tags=lists.get("all_tags", []),
        audience_exclude_tags=lists.get("exclude_tags", []),
        audience_exclude_campaigns=lists.get("exclude_campaigns", []),
        email=email,
        sms=sms,
        send_at=send_at,
        source=str(path),
        track_clicks=parse_tracking(data, problems.add),
        sms_track_links=parse_sms_track_links(data, problems.add),
        ab=ab,
    )
    if spec.email or spec.sms:
        _check_templates(spec, base, problems, sms_footer=sms_footer, sms_max_parts=sms_max_parts)
    if problems.items:
        raise CampaignError(str(path), problems.items)
    return spec


def _email_section(
    data: dict[str, Any], base: Path, wanted: bool, problems: _Problems
) -> EmailSpec | None:
    section = data.get("email")
    if not wanted:
        if isinstance(section, dict):
            problems.add("email", 'section given but "email" is not in channels')
        return None
    if not isinstance(section, dict):
        problems.add("email", "required when channels include 'email': subject and html")
        return None
    subject = section.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        problems.add("email.subject", "required: the subject line (a Jinja2 template)")
    elif found := find_control(subject.replace("\n", " ")):  # a line break in the
        # template is only layout: the rendered subject is folded onto one line
        problems.add("email.subject", f"a control character ({found}) cannot go into a header")
    html = _read_template(base, section.get("html"), "email.html", problems)
    text = None
    if "text" in section:
        text = _read_template(base, section["text"], "email.text", problems)
    if not isinstance(subject, str) or html is None:
        return None
    return EmailSpec(
        subject=subject,
        html=html,
        text=text,
        html_path=str(section["html"]),
        text_path=str(section["text"]) if text is not None else None,
    )


def _senders(
    section: dict[str, Any], email: EmailSpec, domains: list[str], problems: _Problems
) -> EmailSpec:
    """`from` and `reply_to`: one address each (with an optional display name)."""
    found: dict[str, str | None] = {"from": None, "reply_to": None}
    for key in found:
        value = section.get(key)
        if value is None:
            continue
        _name, addr = parseaddr(value) if isinstance(value, str) else ("", "")
        if (
            not isinstance(value, str)
            or "@" not in addr
            or any(c in value for c in "\r\n")
            or "," in addr
        ):
            problems.add(f"email.{key}", 'must be one address, e.g. "فروشگاه <news@shop.example>"')
            continue
        domain = addr.rpartition("@")[2].lower()
        if key == "from" and domains and domain not in domains:
            problems.add(
                "email.from",
                f"{domain} is not an allowed sender domain (ALLOWED_FROM_DOMAINS: "
                f"{', '.join(domains)})",
            )
            continue
        found[key] = value.strip()
    return replace(email, from_addr=found["from"], reply_to=found["reply_to"])


def _sms_section(
    data: dict[str, Any], base: Path, wanted: bool, problems: _Problems
) -> SmsSpec | None:
    section = data.get("sms")
    if not wanted:
        if isinstance(section, dict):
            problems.add("sms", 'section given but "sms" is not in channels')
        return None
    if not isinstance(section, dict):
        problems.add("sms", "required when channels include 'sms': text or body")
        return None
    if ("text" in section) == ("body" in section):
        problems.add("sms", "give exactly one of text (a template file) or body (inline)")
        return None
    if "body" in section:
        body = section["body"]
        if not isinstance(body, str) or not body.strip():
            problems.add("sms.body", "must be the message text (a Jinja2 template)")
            return None
        return SmsSpec(text=body)
    text = _read_template(base, section["text"], "sms.text", problems)
    return SmsSpec(text=text, text_path=str(section["text"])) if text is not None else None


def _check_templates(
    spec: CampaignSpec,
    base: Path,
    problems: _Problems,
    *,
    sms_footer: str | None,
    sms_max_parts: int,
) -> None:
    """Compile every template, then render each for two sample members."""
    try:
        templates = spec.templates({"name": "فروشگاه نمونه"})
    except TemplateSyntaxError as exc:
        at = locate(spec, exc.name or "")
        problems.add(
            at.where,
            f"template syntax error: {exc.message}",
            file=at.file,
            line=at.line(exc.lineno),
        )
        return
    except TemplateNotFound as exc:
        problems.add("email.html", f"extends or includes a template that does not exist: {exc}")
        return
    except StyleError as exc:  # css-inline refused the HTML: the `<style>`'s line
        at = locate(spec, HTML_NAME)
        reason = str(exc).removeprefix("render: email.html: ")
        problems.add(at.where, reason, file=at.file, line=exc.line)
        return
    for name in (SUBJECT_NAME, HTML_NAME, TEXT_NAME, SMS_NAME):
        if not templates.has(name):
            continue
        at = locate(spec, name)
        where, file = at.where, at.file
        for member in (SAMPLE_MEMBER, OTHER_SAMPLE_MEMBER):
            try:
                out = templates.render(
                    name, {"member": member, "unsubscribe_url": SAMPLE_UNSUBSCRIBE_URL}
                )
            except RenderError as exc:
                cause = exc.__cause__
                if isinstance(cause, TemplateNotFound):
                    reason = f"extends or includes a template that does not exist: {cause}"
                    problems.add(where, reason)
                else:
                    line = at.line(template_line(cause or exc, name))
                    reason = str(cause or exc).removeprefix("render: ")
                    problems.add(
                        where, f"cannot render for a sample member: {reason}", file=file, line=line
                    )
                break
            if name == SMS_NAME and spec.sms_track_links:  # measured as sent: links rewritten
                out = rewrite_text(out, spec.link_index(), lambda _: SAMPLE_CLICK_URL)
            limits = (sms_footer, sms_max_parts)
            if not _rendered_ok(name, out, member, where, file, problems, limits):
                break
    if (
        spec.email
        and wrap_in_layout(spec.email.html) is spec.email.html
        and "email_layout.html" not in spec.email.html
    ):
        problems.add(
            "email.html",
            'extends a layout other than "email_layout.html"',
            file=base / spec.email.html_path,
        )


def _rendered_ok(
    name: str,
    out: str,
    member: dict[str, Any],
    where: str,
    file: Path,
    problems: _Problems,
    sms_limits: tuple[str | None, int],
) -> bool:
    """Check one rendered template against the limits; False after a problem."""
    sample = "a sample member" if member is SAMPLE_MEMBER else "another sample member"
    if name == HTML_NAME and not has_unsubscribe_link(out, SAMPLE_UNSUBSCRIBE_URL):
        problems.add(
            where,
            f"the rendered HTML for {sample} has no visible unsubscribe link: extend "
            '"email_layout.html" (or give a fragment, which is wrapped in it) for every member',
            file=file,
        )
        return False
    if name == SUBJECT_NAME and len(" ".join(out.split())) > MAX_SUBJECT_CHARS:
        problems.add(
            where,
            f"the subject for {sample} is {len(' '.join(out.split()))} characters, "
            f"over the limit of {MAX_SUBJECT_CHARS}",
        )
        return False
    sms_footer, sms_max_parts = sms_limits
    if name == SMS_NAME and sms_footer is not None:
        parts = parts_with_footer(out.strip(), sms_footer)
        if parts > sms_max_parts:
            problems.add(
                where,
                f"the SMS for {sample} is {parts} parts (footer included), over "
                f"SMS_MAX_PARTS ({sms_max_parts})",
                file=file,
            )
            return False
    return True
