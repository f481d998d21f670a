"""Every command shown in README.md and docs/*.md runs as pasted: it splits as a shell
splits it, and a `dispatcher` command names a real command with valid options and
arguments (parsed by the command line itself, never run); a `make` target exists.
A docs file added later is read too."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main
from typer import Exit
from typer._click import Context
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

from dispatcher.cli import app

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"", "sh", "bash", "shell", "console"}
# The programs whose lines are commands to paste (other lines of a block are output).
PROGRAMS = {"dispatcher", "make", "dramatiq", "uvicorn", "curl", "redis-server", "python"}
OPERATORS = {"|", "||", "&&", ";", "&"}
REDIRECTIONS = {">", ">>", "<", "2>", "2>>", "&>"}
ASSIGNMENT = re.compile(r"[A-Z_][A-Z0-9_]*=")


@dataclass(frozen=True)
class Shown:
    """One command line of a shell code block: where it is, and its text."""

    path: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def shown_commands(path: Path) -> list[Shown]:
    found: list[Shown] = []
    fence: str | None = None
    pending: Shown | None = None  # a command going on: a backslash, or an open quote
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if pending is not None:  # the block ended inside it: shown as it is
                found.append(pending)
                pending = None
            fence = None if fence is not None else stripped[3:].strip().lower()
            continue
        if fence not in SHELL:
            continue
        if pending is not None:
            text = pending.text
            text += stripped if text.endswith("\n") else " " + stripped
            shown = Shown(path, pending.line, text)
        else:
            shown = Shown(path, number, stripped.removeprefix("$ "))
            words = shown.text.split()
            while words and ASSIGNMENT.match(words[0]):
                words.pop(0)
            if not words or words[0] not in PROGRAMS:
                continue  # output, or a comment
        if shown.text.endswith("\\"):
            pending = Shown(path, shown.line, shown.text[:-1])
        elif _open_quote(shown.text):  # a quoted string goes on to the next line
            pending = Shown(path, shown.line, shown.text + "\n")
        else:
            pending = None
            found.append(shown)
    return found


def _open_quote(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return True
    return False


COMMANDS = [shown for path in DOCS for shown in shown_commands(path)]


def simple_commands(text: str) -> list[list[str]]:
    """The simple commands of a shell line, as the shell splits them: without comments,
    redirections and variable assignments."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands: list[list[str]] = [[]]
    redirected = False
    for token in lexer:
        if token in OPERATORS:
            commands.append([])
        elif token in REDIRECTIONS or token.endswith((">", "<")):
            redirected = True
        elif redirected:
            redirected = False
        elif commands[-1] or not ASSIGNMENT.match(token):
            commands[-1].append(token)
    return [words for words in commands if words]


def parse_dispatcher(args: list[str]) -> Context:
    """The context `dispatcher ARGS` would run in: every group resolved down to the
    command, its options and arguments parsed and converted; nothing is run."""
    ctx = typer.main.get_command(app).make_context("dispatcher", list(args))
    while isinstance(ctx.command, TyperGroup):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            raise UsageError("a command is missing", ctx)
        name, command, rest = ctx.command.resolve_command(ctx, rest)
        assert name is not None and command is not None
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) > 50
    assert {shown.path.name for shown in COMMANDS} >= {"README.md", "guide.md", "operating.md"}


@pytest.mark.parametrize("shown", COMMANDS, ids=str)
def test_every_command_in_the_docs_runs_as_pasted(shown: Shown) -> None:
    try:
        commands = simple_commands(shown.text)
    except ValueError as exc:  # an unclosed quote
        pytest.fail(f"{shown}: {shown.text!r} does not split as a shell splits it: {exc}")
    for words in commands:
        if words[0] == "dispatcher":
            try:
                parse_dispatcher(words[1:])
            except Exit as exc:  # --help
                if exc.exit_code != 0:
                    pytest.fail(f"{shown}: {shown.text!r}: exit {exc.exit_code}")
            except UsageError as exc:
                pytest.fail(f"{shown}: {shown.text!r}: {exc.format_message()}")
        elif words[0] == "make":
            makefile = (ROOT / "Makefile").read_text()
            for target in words[1:]:
                if not re.search(rf"^{re.escape(target)}:", makefile, re.M):
                    pytest.fail(f"{shown}: {shown.text!r}: the Makefile has no target {target}")


@pytest.mark.parametrize(
    "text",
    [
        "dispatcher campaign test c.toml --to me@shop.example --to 0912 123 4567",
        "dispatcher campaign sned c.toml",
        "dispatcher campaign send c.toml --at",
        "dispatcher members optouts --format xml",
        "dispatcher campaign status yalda-1405 [--json]",
        "dispatcher members import 'members.csv",
        "make deploy",
    ],
)
def test_a_command_that_would_fail_when_pasted_is_found(text: str) -> None:
    with pytest.raises(pytest.fail.Exception):
        test_every_command_in_the_docs_runs_as_pasted(Shown(ROOT / "README.md", 1, text))


def test_a_pastable_command_passes() -> None:
    text = (
        "MAIL_FROM='Shop <news@shop.example>' dispatcher campaign send c.toml"
        " --at '1405-09-29 18:00' > log.txt  # a note"
    )
    test_every_command_in_the_docs_runs_as_pasted(Shown(ROOT / "README.md", 1, text))
