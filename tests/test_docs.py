"""The docs keep step with the command line: every command and option is documented."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from dcmweb.cli import cli

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _long_names(command: click.Command) -> list[str]:
    names = []
    for param in command.params:
        if isinstance(param, click.Option):
            longs = [o for o in param.opts + param.secondary_opts if o.startswith("--")]
            names.extend(longs[:1] or param.opts[:1])
    return [n for n in names if n != "--help"]


def test_every_global_option_is_in_usage_md() -> None:
    usage = (DOCS / "usage.md").read_text()
    missing = [name for name in _long_names(cli) if f"`{name}" not in usage]
    assert missing == []


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_and_its_options_are_in_usage_md(name: str) -> None:
    usage = (DOCS / "usage.md").read_text()
    assert f"## {name}" in usage
    section = usage.split(f"## {name}", 1)[1].split("\n## ", 1)[0]
    missing = [opt for opt in _long_names(cli.commands[name]) if opt not in section]
    assert missing == []


def test_every_exit_code_is_in_exit_codes_md() -> None:
    from dcmweb.errors import ExitStatus

    table = (DOCS / "exit-codes.md").read_text()
    for status in ExitStatus:
        assert f"| {int(status)} | {status.name} |" in table


def test_help_lists_every_exit_code_without_the_source_tree() -> None:
    """A wheel has no docs/: old dcmweb's --help ended with "details: docs/exit-codes.md
    in the source", and the codes had a word each."""
    from click.testing import CliRunner

    from dcmweb.errors import ExitStatus

    result = CliRunner().invoke(cli, ["--help"], terminal_width=80)
    assert result.exit_code == 0
    listed = result.output.split("\n  Exit codes:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed] == [str(int(status)) for status in ExitStatus]
    assert "    4    the study, series, instance or store does not exist (HTTP 404)" in listed
    assert max(map(len, listed)) <= 80
    assert "docs/" not in result.output
