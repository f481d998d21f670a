"""A campaign's `<style>` rules copied into `style=""` attributes, once, at compile time.

Gmail and many clients drop or ignore `<style>` blocks, so the rules are inlined with
css-inline (Rust, html5ever). The source is still a Jinja template, so each Jinja tag is
swapped for a placeholder that HTML parsing keeps in place (a comment between
elements, a private-use text token inside a tag or for `{{ }}`), then put back.
The `<style>` block itself is kept for the clients that read it (media queries).
"""

from __future__ import annotations

import re

import css_inline

_STYLE = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_COMMENT = re.compile(r"<!--jinja:(\d+)-->")
_TOKEN = re.compile("\ue000(\\d+)\ue001")


def inline_styles(source: str) -> str:
    """`source` with its `<style>` rules inlined; unchanged when there is no `<style>`
    or its CSS is itself templated."""
    css = "\n".join(_STYLE.findall(source))
    if not css.strip() or _JINJA.search(css):
        return source
    originals: list[str] = []

    def hide(match: re.Match[str]) -> str:
        originals.append(match.group(0))
        n = len(originals) - 1
        before = source[: match.start()]
        in_tag = before.rfind("<") > before.rfind(">")
        if match.group(0).startswith("{{") or in_tag:
            return f"\ue000{n}\ue001"
        return f"<!--jinja:{n}-->"

    hidden = _JINJA.sub(hide, source)
    kept = "".join(m.group(0) for m in _STYLE.finditer(source))
    inlined = kept + css_inline.inline_fragment(hidden, css)
    inlined = _COMMENT.sub(lambda m: originals[int(m.group(1))], inlined)
    return _TOKEN.sub(lambda m: originals[int(m.group(1))], inlined)
