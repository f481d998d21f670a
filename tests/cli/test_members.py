"""`dispatcher members ...` as a user runs it."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import run


def test_ids_typed_with_persian_digits_find_the_member_everywhere(workdir: Path) -> None:
    (workdir / "m.csv").write_text(
        "external_id,first_name,email\nM۲۰۱۰,Ali,ali@example.com\n", encoding="utf-8"
    )
    assert run(workdir, "members", "import", "m.csv").returncode == 0
    for typed in ("M2010", "M۲۰۱۰", "M٢٠١٠"):
        preview = run(
            workdir, "campaign", "preview", "campaigns/yalda-1405.toml", "--member", typed
        )
        assert preview.returncode == 0, preview.stderr
        assert "Ali" in preview.stdout
    subscribed = run(workdir, "members", "subscribe", "M۲۰۱۰", "--channel", "email")
    assert subscribed.returncode == 0, subscribed.stderr


def test_import_warns_about_control_characters_and_non_ascii_local_parts(workdir: Path) -> None:
    (workdir / "m.csv").write_text(
        "external_id,first_name,email\nC1,Ali\x07\x1b[31m,a@example.com\nC2,Sara,üser@example.com\n",
        encoding="utf-8",
    )
    result = run(workdir, "members", "import", "m.csv")
    assert result.returncode == 0, result.stderr
    assert "m.csv:2: first_name: control characters removed" in result.stderr
    assert "m.csv:3: email:" in result.stderr and "SMTPUTF8" in result.stderr
    assert "\x1b" not in result.stdout + result.stderr
