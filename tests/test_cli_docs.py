"""The CLI answers --help everywhere, and the docs show only commands and options it has.

Everything about the CLI comes from click's introspection of `runner.cli:cli`, so a new
command or option needs no change here. The docs are read as Markdown: fenced shell blocks
line by line (a `|` is a shell pipe, `#` starts a comment), table cells (`\\|` is an escaped
pipe, in tslake's usage lines an alternative: `--sample N \\| --sensor-ids a,b`), and
inline code spans.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from runner.cli import cli

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs/RUNBOOK.md")

FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "zsh"}
CODE_SPAN = re.compile(r"`([^`]+)`")
TABLE_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")
# `tslake` as a program name (after a space, a path's `/` or a backtick, not `.tslake/` or
# `tslake_...`) followed by a command or an option.
TSLAKE = re.compile(r"(?:^|(?<=[\s/`]))tslake[ \t]+(?=[a-z-])")
# Where a shell line stops being tslake's arguments.
SHELL_END = re.compile(r"\s#|[|;&()<>`]")
OPTION = re.compile(r"^\[?(--?[A-Za-z][\w-]*)")


# --- the CLI --------------------------------------------------------------------------


def walk(
    command: click.Command, path: tuple[str, ...] = (), parent: click.Context | None = None
) -> Iterator[tuple[tuple[str, ...], click.Command, click.Context]]:
    """Every command under `command` (itself first), with its words after `tslake`."""
    ctx = command.make_context(
        " ".join(("tslake", *path)), [], parent=parent, resilient_parsing=True
    )
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, f"tslake {' '.join(path)} lists {name!r} but cannot load it"
            yield from walk(sub, (*path, name), ctx)


COMMANDS = {path: (command, ctx) for path, command, ctx in walk(cli)}


def option_names(path: tuple[str, ...]) -> set[str]:
    command, ctx = COMMANDS[path]
    return {
        name
        for param in command.get_params(ctx)
        if isinstance(param, click.Option)
        for name in (*param.opts, *param.secondary_opts)
    }


def test_the_walk_finds_nested_commands() -> None:
    assert () in COMMANDS
    assert any(len(path) == 1 for path in COMMANDS)
    assert any(len(path) == 2 for path in COMMANDS)  # e.g. tslake launchd install


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda path: " ".join(("tslake", *path)))
def test_every_command_answers_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="tslake")
    assert result.exit_code == 0, result.output
    assert f"Usage: {' '.join(('tslake', *path))} " in result.output


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda path: " ".join(("tslake", *path)))
def test_every_command_has_help_text(path: tuple[str, ...]) -> None:
    command, ctx = COMMANDS[path]
    assert command.get_short_help_str().strip(), f"tslake {' '.join(path)} has no help text"
    for param in command.get_params(ctx):
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"tslake {' '.join(path)} {param.opts[0]} has no help text"


# --- the docs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Mention:
    where: str  # "README.md:63"
    words: tuple[str, ...]  # what follows `tslake`

    def __str__(self) -> str:
        return f"{self.where}: tslake {' '.join(self.words)}"


def invocations(text: str, *, shell: bool) -> Iterator[tuple[str, ...]]:
    """The words after each `tslake` in `text`: up to a pipe, `;`, `&&` or a comment in a
    shell line; in a usage line (`shell=False`) `|` separates alternatives."""
    for match in TSLAKE.finditer(text):
        rest = text[match.end():]
        if shell:
            end = SHELL_END.search(rest)
            rest = rest[: end.start()] if end else rest
        else:
            rest = rest.replace("\\|", " ").replace("|", " ")
        yield tuple(rest.split())


def mentions(doc: str, text: str) -> Iterator[Mention]:
    """Every `tslake ...` in fenced shell blocks, table rows and inline code of `text`."""
    fence: str | None = None  # the fence's language while inside one
    paragraph: list[tuple[int, str]] = []

    def prose() -> Iterator[Mention]:
        joined = "\n".join(line for _, line in paragraph)
        first = paragraph[0][0] if paragraph else 0
        for span in CODE_SPAN.finditer(joined):
            lineno = first + joined.count("\n", 0, span.start())
            for words in invocations(span.group(1).replace("\n", " "), shell=True):
                yield Mention(f"{doc}:{lineno}", words)
        paragraph.clear()

    for lineno, line in enumerate(text.splitlines(), start=1):
        opening = FENCE.match(line)
        if fence is not None:
            if opening:
                fence = None
            elif fence in SHELL_LANGUAGES:
                for words in invocations(line, shell=True):
                    yield Mention(f"{doc}:{lineno}", words)
            continue
        if opening:
            yield from prose()
            fence = opening.group(2).lower()
        elif line.lstrip().startswith("|"):
            yield from prose()
            yield from table_row(f"{doc}:{lineno}", line)
        elif not line.strip() or line.lstrip().startswith("#"):
            yield from prose()
        else:
            paragraph.append((lineno, line))
    yield from prose()


def table_row(where: str, line: str) -> Iterator[Mention]:
    """A cell's code spans after a `tslake ...` span that start with an option (`--x`,
    `[--x ...]`) continue its usage: `tslake parity --all` / `--start T --end T`."""
    for cell in TABLE_CELL_SEPARATOR.split(line):
        current: list[str] | None = None
        for span in CODE_SPAN.findall(cell):
            found = list(invocations(span, shell=False))
            if found:
                if current is not None:
                    yield Mention(where, tuple(current))
                *complete, last = found
                yield from (Mention(where, words) for words in complete)
                current = list(last)
            elif current is not None and span.lstrip("[").startswith("-"):
                current.extend(span.replace("\\|", " ").replace("|", " ").split())
        if current is not None:
            yield Mention(where, tuple(current))


def problems(words: tuple[str, ...]) -> list[str]:
    """What in `tslake <words>` the CLI does not have."""
    path: tuple[str, ...] = ()
    rest = list(words)
    while rest and not rest[0].startswith(("-", "[")):
        command, _ = COMMANDS[path]
        if not isinstance(command, click.Group):
            break  # an argument of a command
        if (*path, rest[0]) not in COMMANDS:
            return [f"`{' '.join(('tslake', *path))}` has no command {rest[0]!r}"]
        path = (*path, rest.pop(0))
    known = option_names(path)
    usage = " ".join(("tslake", *path))
    found = []
    for word in rest:
        option = OPTION.match(word)
        if option and option.group(1).split("=")[0] not in known:
            found.append(f"`{usage}` has no option {option.group(1)}")
    command, _ = COMMANDS[path]
    if isinstance(command, click.Group) and not rest:
        found.append(f"`{usage}` is a group: name one of its commands")
    return found


def documented() -> list[Mention]:
    return [
        mention
        for doc in DOCS
        for mention in mentions(doc, (ROOT / doc).read_text(encoding="utf-8"))
    ]


MENTIONS = documented()


@pytest.mark.parametrize("doc", DOCS)
def test_the_docs_show_tslake_commands(doc: str) -> None:
    assert any(mention.where.startswith(f"{doc}:") for mention in MENTIONS)


@pytest.mark.parametrize("mention", MENTIONS, ids=str)
def test_documented_commands_and_options_exist(mention: Mention) -> None:
    assert problems(mention.words) == [], str(mention)


# --- the parser itself ----------------------------------------------------------------


def test_a_table_cell_with_escaped_pipes_and_continued_spans() -> None:
    row = (
        "| `tslake parity --all` / `--start T --end T [--sample N \\| --sensor-ids a,b]`"
        " `[--report FILE.md]` | exact comparison; `--report` writes `FILE.json` |"
    )
    (mention,) = table_row("X:1", row)
    assert mention.words == (
        "parity", "--all", "--start", "T", "--end", "T", "[--sample", "N", "--sensor-ids",
        "a,b]", "[--report", "FILE.md]",
    )


def test_shell_lines_stop_at_pipes_and_comments() -> None:
    text = "\n".join([
        "```bash",
        "tslake inspect | jq '.datasets'",
        "sudo .venv/bin/tslake launchd install --mode service   # or --mode timer",
        "dbt run          # or: tslake tick  (locks, prints a JSON summary)",
        "```",
        "```sql",
        "GRANT pg_read_all_stats TO <tslake role>;",
        "```",
    ])
    assert [m.words for m in mentions("X", text)] == [
        ("inspect",),
        ("launchd", "install", "--mode", "service"),
        ("tick",),
    ]


def test_inline_spans_across_lines_and_names_that_are_not_the_program() -> None:
    text = (
        "parity names it; `tslake repair --start D\n--end D+1` re-exports those days.\n"
        "Data under `.tslake/storage`, `tslake_ticks_total`, and `tslake` alone.\n"
    )
    assert [str(m) for m in mentions("X", text)] == ["X:1: tslake repair --start D --end D+1"]


def test_problems_names_unknown_commands_and_options() -> None:
    assert problems(("tick",)) == []
    assert problems(("no-such-command",)) == ["`tslake` has no command 'no-such-command'"]
    assert problems(("tick", "--no-such")) == ["`tslake tick` has no option --no-such"]
    assert problems(("launchd",)) == ["`tslake launchd` is a group: name one of its commands"]
