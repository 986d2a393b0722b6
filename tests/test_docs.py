"""Every command has --help text with a real example and a page in docs/ (sqlite-utils' habit)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from ferdata.cli import app

DOCS = Path(__file__).parents[1] / "docs"
README = (Path(__file__).parents[1] / "README.md").read_text()


def commands() -> list[tuple[str, object]]:
    """(path, command) for every leaf command, e.g. ('tag add', ...)."""
    root = typer.main.get_command(app)
    found = []

    def walk(prefix: str, group) -> None:
        for name, cmd in group.commands.items():
            path = f"{prefix} {name}".strip()
            if hasattr(cmd, "commands"):  # a group such as `tag`
                walk(path, cmd)
            else:
                found.append((path, cmd))

    walk("", root)
    return found


COMMANDS = commands()


def test_the_contract_commands_that_exist_are_registered():
    names = {path.split()[0] for path, _ in COMMANDS}
    assert {"ingest", "align", "relabel", "pairs", "stats"} <= names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS])
def test_help_has_an_example_and_a_docs_page(path):
    result = CliRunner().invoke(app, [*path.split(), "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    example = [line for line in result.output.splitlines() if "Example:" in line]
    assert example and f"ferdata {path}" in example[0], f"no 'Example: ferdata {path} ...' in the help"
    top = path.split()[0]
    assert (DOCS / f"{top}.md").is_file(), f"docs/{top}.md is missing"
    assert f"ferdata {top}" in README, f"the README has no example of ferdata {top}"


SHARED = {"--quiet", "--verbose", "--help"}  # every command's, documented once in docs/cli.md


@pytest.mark.parametrize("path,command", COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_option_is_on_the_commands_page(path, command):
    page = (DOCS / f"{path.split()[0]}.md").read_text()
    options = [p for p in command.params if p.param_type_name == "option" and not SHARED & set(p.opts)]
    missing = [p.opts[0] for p in options if not any(f"`{name}" in page or f"{name}`" in page or f"{name}/" in page
                                                     for name in [*p.opts, *p.secondary_opts])]
    assert not missing, f"docs/{path.split()[0]}.md does not mention {', '.join(missing)}"


def test_the_conventions_page_lists_every_json_command():
    page = (DOCS / "cli.md").read_text()
    table = page[page.index("| command | the document |"):]
    with_json = [path for path, command in COMMANDS if any("--json" in p.opts for p in command.params)]
    assert len(with_json) >= 12
    for path in with_json:
        assert f"`{path}`" in table or f"`{path.split()[0]} {path.split()[1]}`" in table, f"docs/cli.md: no `{path}` in the --json table"
    for shared in ("--version", "-h", "--install-completion", "--show-completion", "-q/--quiet", "-v/--verbose", "exit"):
        assert shared in page.lower() if shared == "exit" else shared in page
    assert "docs/cli.md" in README and "--version" in README
