"""Rendering a campaign for many members, each distinct problem reported once.

`validate` renders every template for a varied sample of the audience (or everyone);
a template that works for one member can fail for another (`{{ member.tags[0] }}`
with no tags, a `toman` of an empty field). Problems are grouped by template, line
and message, with the members each hit (masked). A template written inline in the
campaign file (`[email] subject`, `[sms] body`) is located in that file, at its line.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatcher.definition.rendering import (
    HTML_NAME,
    SMS_NAME,
    SUBJECT_NAME,
    TEXT_NAME,
    CampaignTemplates,
    before_doctype,
)
from dispatcher.errors import RenderError
from dispatcher.masking import mask_email, mask_mobile

if TYPE_CHECKING:
    from dispatcher.definition.campaign import CampaignSpec

SHOWN = 5  # members named per problem; the rest are counted
# Members no database holds, added to every sample: the corners templates trip on.
EDGE_MEMBERS: list[dict[str, Any]] = [
    {"external_id": "(sample: no name)", "first_name": "", "last_name": "", "tags": []},
    {"external_id": "(sample: latin name)", "first_name": "Sara", "last_name": "Smith"},
    {"external_id": "(sample: no address)", "email": "", "mobile": "", "tags": []},
]
_DEFAULTS = {"first_name": "مریم", "last_name": "احمدی", "email": "", "mobile": "", "tags": []}


@dataclass(frozen=True)
class Location:
    """Where a template's source is: the campaign field, its file, the line it starts at."""

    where: str
    file: Path
    first_line: int = 1  # the file line of the template's line 1

    def line(self, template_line: int | None) -> int | None:
        if template_line is None:
            return self.first_line if self.first_line > 1 else None
        return self.first_line + template_line - 1


@dataclass
class RenderProblem:
    location: Location
    line: int | None
    message: str
    members: list[str] = field(default_factory=list)
    count: int = 0
    warning: bool = False  # shown, but `validate` still passes

    def __str__(self) -> str:
        loc = str(self.location.file) + (f":{self.line}" if self.line else "")
        who = ", ".join(self.members)
        if self.count > len(self.members):
            who += f" and {self.count - len(self.members)} more"
        kind = "warning: " if self.warning else ""
        return f"{loc}: {self.location.where}: {kind}{self.message} ({self.count} members: {who})"


def toml_line(source: str, section: str, key: str) -> int | None:
    """The line of `key = ...` in `[section]` of a TOML text (1-based), where a template
    written inline starts (the next line, for a `\"\"\"` string that opens a line)."""
    current = ""
    lines = source.splitlines()
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        header = re.fullmatch(r"\[([^\[\]]+)\]\s*(#.*)?", stripped)
        if header:
            current = header.group(1).strip()
        elif current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
            value = stripped.split("=", 1)[1].strip()
            return number + 1 if value in ('"""', "'''") else number
    return None


def locate(spec: CampaignSpec, name: str) -> Location:
    """The field, file and first line a compiled template name came from."""
    toml = Path(spec.source)
    base = toml.parent
    if name == HTML_NAME and spec.email:
        return Location("email.html", base / spec.email.html_path)
    if name == TEXT_NAME and spec.email and spec.email.text_path:
        return Location("email.text", base / spec.email.text_path)
    if name == SMS_NAME and spec.sms and spec.sms.text_path:
        return Location("sms.text", base / spec.sms.text_path)
    section, key = ("sms", "body") if name == SMS_NAME else ("email", "subject")
    try:
        first = toml_line(toml.read_text(encoding="utf-8"), section, key) or 1
    except OSError:
        first = 1
    return Location(f"{section}.{key}", toml, first)


def template_line(exc: BaseException, name: str) -> int | None:
    """The template line an error was raised at (Jinja keeps it in the traceback)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == name or frame.filename.endswith(name):
            line = frame.lineno
    return line


def label(member: dict[str, Any]) -> str:
    """`C1002 (a***@example.com)`: enough to find the member, nothing more."""
    address = member.get("email") or ""
    shown = mask_email(address) if address else mask_mobile(member.get("mobile") or "")
    ext = member.get("external_id", "?")
    return f"{ext} ({shown})" if address or member.get("mobile") else str(ext)


def render_problems(
    spec: CampaignSpec, templates: CampaignTemplates, members: Iterable[dict[str, Any]], *, url: str
) -> tuple[int, list[RenderProblem]]:
    """Render every template for each member: (members rendered, distinct problems)."""
    found: dict[tuple[str, int | None, str], RenderProblem] = {}
    names = [n for n in (SUBJECT_NAME, HTML_NAME, TEXT_NAME, SMS_NAME) if templates.has(n)]
    locations = {n: locate(spec, n) for n in names}
    rendered = 0
    for member in members:
        context = {**_DEFAULTS, **member}
        rendered += 1
        for name in names:
            location = locations[name]
            try:
                out = templates.render(name, {"member": context, "unsubscribe_url": url})
            except RenderError as error:  # the template's own error is its cause
                exc = error.__cause__ or error
                line = location.line(template_line(exc, name))
                reason = str(exc).removeprefix("render: ")
                message = f"cannot render: {type(exc).__name__}: {reason}"
                _count(found, RenderProblem(location, line, message), context)
                continue
            before = before_doctype(out) if name == HTML_NAME else ""
            if before:
                message = (
                    f"something comes before <!doctype html> ({before}): browsers and mail "
                    "clients show the email in quirks mode; put it inside a block"
                )
                _count(found, RenderProblem(location, None, message, warning=True), context)
    return rendered, list(found.values())


def _count(
    found: dict[tuple[str, int | None, str], RenderProblem],
    problem: RenderProblem,
    member: dict[str, Any],
) -> None:
    """Count `member` under `problem` (the first of its kind is kept)."""
    kept = found.setdefault((problem.location.where, problem.line, problem.message), problem)
    kept.count += 1
    if len(kept.members) < SHOWN:
        kept.members.append(label(member))
