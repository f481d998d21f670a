"""A campaign's `<style>` rules copied into `style=""` attributes, once, at compile time.

Gmail and many clients drop or ignore `<style>` blocks, so the rules are inlined with
css-inline (Rust, html5ever). The source is still a Jinja template, so each Jinja tag is
swapped for a placeholder that HTML parsing keeps in place (a comment between
elements, a private-use text token inside a tag or for `{{ }}`), then put back; a
`<link>` is hidden the same way, so nothing is ever fetched and it is kept as written.
The `<style>` block itself stays where it is, for the clients that read it.
"""

from __future__ import annotations

import re

import css_inline

from dispatcher.errors import StyleError

_STYLE = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_LINK = re.compile(r"<link\b[^>]*>", re.IGNORECASE)
_COMMENT = re.compile(r"<!--jinja:(\d+)-->")
_TOKEN = re.compile("\ue000(\\d+)\ue001")


def inline_styles(source: str) -> str:
    """`source` with its `<style>` rules inlined; unchanged when there is no `<style>`
    or its CSS is itself templated. Raises `StyleError` (with the `<style>`'s line)
    when css-inline refuses the document."""
    css = "\n".join(_STYLE.findall(source))
    if not css.strip() or _JINJA.search(css):
        return source
    originals: list[str] = []

    def hide(match: re.Match[str]) -> str:
        originals.append(match.group(0))
        n = len(originals) - 1
        before = match.string[: match.start()]
        in_tag = before.rfind("<") > before.rfind(">")
        if match.group(0).startswith("{{") or in_tag:
            return f"\ue000{n}\ue001"
        return f"<!--jinja:{n}-->"

    hidden = _LINK.sub(hide, _JINJA.sub(hide, source))
    try:
        inlined = css_inline.inline_fragment(
            hidden,
            css,
            inline_style_tags=False,  # `css` is their rules, applied once
            keep_style_tags=True,
            keep_link_tags=True,
            load_remote_stylesheets=False,  # never a URL nor a local file
        )
    except css_inline.InlineError as exc:
        found = _STYLE.search(source)
        line = source.count("\n", 0, found.start()) + 1 if found else None
        raise StyleError(
            f"render: email.html: the <style> cannot be inlined: {exc}", line=line
        ) from exc
    # A restored `<link>` may hold a hidden `{{ }}`: comments first, then tokens.
    inlined = _COMMENT.sub(lambda m: originals[int(m.group(1))], inlined)
    return _TOKEN.sub(lambda m: originals[int(m.group(1))], inlined)
