"""A draft: a campaign written in the console, kept in the database as its form, and
the same campaign as a file with its templates (`campaign export` / `campaign import`).

A draft is checked by writing it out as a campaign file and loading that with
`load_campaign`, so the console and the command line find the very same problems.
"""

from __future__ import annotations

import json
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dispatcher.definition.campaign import CampaignSpec, load_campaign
from dispatcher.errors import CampaignError, InputError

FILE = "campaign.toml"
HTML_FILE, TEXT_FILE, SMS_FILE = "email.html", "email.txt", "sms.txt"
LISTS = ("tags", "all_tags", "exclude_tags", "exclude_campaigns")


@dataclass
class Draft:
    """The console's form of a campaign (its field names are the form's)."""

    slug: str = ""
    name: str = ""
    channels: list[str] = field(default_factory=lambda: ["email"])
    subject: str = ""
    from_: str = ""
    reply_to: str = ""
    html: str = ""
    text: str = ""
    sms_text: str = ""
    tags: list[str] = field(default_factory=list)
    all_tags: list[str] = field(default_factory=list)
    exclude_tags: list[str] = field(default_factory=list)
    exclude_campaigns: list[str] = field(default_factory=list)
    send_at: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["from"] = data.pop("from_")
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Draft:
        known = {f.name for f in fields(cls)}
        values = {("from_" if k == "from" else k): v for k, v in data.items()}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_form(cls, form: Mapping[str, Any], channels: list[str]) -> Draft:
        """From the console's form: `channels` is every value of the field; each tag
        list is written comma- or line-separated."""

        def text(name: str) -> str:
            value = form.get(name)
            return value.replace("\r\n", "\n") if isinstance(value, str) else ""

        def listed(name: str) -> list[str]:
            raw = text(name).replace("،", ",").replace("\n", ",")
            return [t.strip() for t in raw.split(",") if t.strip()]

        return cls(
            slug=text("slug").strip(),
            name=text("name").strip(),
            channels=[c for c in ("email", "sms") if c in channels],
            subject=text("subject").strip(),
            from_=text("from").strip(),
            reply_to=text("reply_to").strip(),
            html=text("html"),
            text=text("text"),
            sms_text=text("sms_text"),
            **{name: listed(name) for name in LISTS},
            send_at=text("send_at").strip(),
        )

    @classmethod
    def from_spec(cls, spec: CampaignSpec) -> Draft:
        """A campaign already recorded, as a draft (to export it, or to start from it)."""
        email, sms = spec.email, spec.sms
        return cls(
            slug=spec.slug,
            name=spec.name,
            channels=[str(c) for c in spec.channels],
            subject=email.subject if email else "",
            from_=(email.from_addr or "") if email else "",
            reply_to=(email.reply_to or "") if email else "",
            html=email.html if email else "",
            text=(email.text or "") if email else "",
            sms_text=sms.text if sms else "",
            tags=list(spec.audience_tags or []),
            all_tags=list(spec.audience_all_tags),
            exclude_tags=list(spec.audience_exclude_tags),
            exclude_campaigns=list(spec.audience_exclude_campaigns),
            send_at=spec.send_at or "",
        )

    def files(self) -> dict[str, str]:
        """The campaign file and its templates, by file name."""
        lines = [f"slug = {_q(self.slug)}", f"name = {_q(self.name)}"]
        lines.append(f"channels = {_list(self.channels)}")
        if self.send_at:
            lines.append(f"send_at = {_q(self.send_at)}")
        out: dict[str, str] = {}
        audience = [f"{k} = {_list(getattr(self, k))}" for k in LISTS if getattr(self, k)]
        if audience:
            lines += ["", "[audience]", *audience]
        if "email" in self.channels:
            lines += ["", "[email]", f"subject = {_q(self.subject)}", f"html = {_q(HTML_FILE)}"]
            out[HTML_FILE] = self.html
            if self.text.strip():
                lines.append(f"text = {_q(TEXT_FILE)}")
                out[TEXT_FILE] = self.text
            if self.from_:
                lines.append(f"from = {_q(self.from_)}")
            if self.reply_to:
                lines.append(f"reply_to = {_q(self.reply_to)}")
        if "sms" in self.channels:
            lines += ["", "[sms]", f"text = {_q(SMS_FILE)}"]
            out[SMS_FILE] = self.sms_text
        return {FILE: "\n".join(lines) + "\n", **out}

    def write(self, folder: Path) -> Path:
        """Write the campaign file and its templates into `folder`; the file's path."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in self.files().items():
            (folder / name).write_text(content, encoding="utf-8")
        return folder / FILE

    def check(self, **load: Any) -> tuple[CampaignSpec | None, list[str]]:
        """Load it as `campaign validate` loads a file: (spec, []) or (None, problems),
        each problem naming the field (`email.html:3: ...` for a template's line)."""
        with tempfile.TemporaryDirectory(prefix="draft-") as tmp:
            path = self.write(Path(tmp))
            try:
                spec = load_campaign(path, **load)
            except CampaignError as exc:
                return None, [p.replace(f"{tmp}/", "") for p in exc.problems]
        return _sourced(spec, self.slug), []


def _sourced(spec: CampaignSpec, slug: str) -> CampaignSpec:
    return replace(spec, source=f"draft {slug}")


def read_file(path: Path) -> Draft:
    """A campaign file and its templates as a draft (problems are the draft's to show:
    only a file that is not TOML, or a template outside its folder, is refused)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as a campaign file: {exc}") from None
    email, sms, audience = (_table(data, name) for name in ("email", "sms", "audience"))
    send_at: Any = data.get("send_at")
    return Draft(
        slug=str(data.get("slug", "")),
        name=str(data.get("name", "")),
        channels=[str(c) for c in data.get("channels", []) if isinstance(c, str)],
        subject=str(email.get("subject", "")),
        from_=str(email.get("from", "")),
        reply_to=str(email.get("reply_to", "")),
        html=_template(path, email.get("html")),
        text=_template(path, email.get("text")),
        sms_text=str(sms["body"]) if "body" in sms else _template(path, sms.get("text")),
        **{k: [str(t) for t in audience.get(k, []) or []] for k in LISTS},
        send_at=send_at.isoformat() if hasattr(send_at, "isoformat") else str(send_at or ""),
    )


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    found = data.get(name)
    return found if isinstance(found, dict) else {}


def from_upload(name: str, content: bytes) -> Draft:
    """An uploaded campaign file (templates inline or none) as a draft."""
    with tempfile.TemporaryDirectory(prefix="upload-") as tmp:
        path = Path(tmp) / (Path(name).name or FILE)
        path.write_bytes(content)
        return read_file(path)


def _template(path: Path, rel: object) -> str:
    if not isinstance(rel, str) or not rel:
        return ""
    base = path.parent.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise InputError(f"{path}: {rel!r} points outside the campaign's folder")
    try:
        return target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""  # the draft's check names the missing template


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


def _list(values: list[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"
