"""The docs keep step with the command line: every command and option is documented."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from dcmweb.cli import cli

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _long_names(command: click.Command) -> list[str]:
    names = []
    for param in command.params:
        if isinstance(param, click.Option):
            longs = [o for o in param.opts + param.secondary_opts if o.startswith("--")]
            names.extend(longs[:1] or param.opts[:1])
    return [n for n in names if n != "--help"]


def _options(command: click.Command = cli, path: str = "dcmweb"
             ) -> Iterator[tuple[click.Context, click.Option]]:
    """Every option of every command, with a context to render its help in."""
    ctx = click.Context(command, info_name=path)
    yield from ((ctx, p) for p in command.params if isinstance(p, click.Option))
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _options(sub, f"{path} {name}")


def test_every_number_has_a_word_for_its_placeholder() -> None:
    """Old --help: '--connect-timeout FLOAT RANGE' and '--workers INTEGER RANGE' beside
    '--outage-limit SECONDS'."""
    words = {(ctx.info_name, param.opts[-1]): (param.type, param.metavar)
             for ctx, param in _options()
             if isinstance(param.type, (click.IntRange, click.FloatRange)) and not param.count}
    odd = {key: word for key, (kind, word) in words.items()
           if word not in (("SECONDS", "BYTES/S") if isinstance(kind, click.FloatRange)
                           else ("N", "Q"))}
    assert odd == {}
    assert "RANGE" not in CliRunner().invoke(cli, ["--help"]).output


def test_every_option_with_a_default_shows_it() -> None:
    """Old store --help: '--min-age SECONDS' without its default (0: off)."""
    hidden = [(ctx.info_name, param.opts[-1]) for ctx, param in _options()
              if not (param.is_flag or param.count) and type(param.default) in (int, float, str)
              and "default" not in (param.get_help_record(ctx) or ("", ""))[1]]
    assert hidden == []


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
    from dcmweb.errors import ExitStatus

    result = CliRunner().invoke(cli, ["--help"], terminal_width=80)
    assert result.exit_code == 0
    listed = result.output.split("\n  Exit codes:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed] == [str(int(status)) for status in ExitStatus]
    assert "    4    the study, series, instance or store does not exist (HTTP 404)" in listed
    assert max(map(len, listed)) <= 80
    assert "docs/" not in result.output


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    anchors: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        suffix = 1
        while anchor in anchors:  # a repeated heading gets -1, -2 ...
            anchor = f"{anchor.rstrip('-0123456789')}-{suffix}"
            suffix += 1
        anchors.add(anchor)
    return anchors


def test_every_link_and_named_file_of_the_docs_exists() -> None:
    """Old docs/testserver.md named a servers.md of the developers' workplace, a file
    outside the repository that a user's clone does not have."""
    pages = [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        links = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"`([\w./-]+\.md)`", text)
        for link in links:
            if link.startswith(("http://", "https://")):
                continue
            target, _, anchor = link.partition("#")
            path = (page.parent / target).resolve() if target else page
            if not path.is_relative_to(DOCS.parent) or not path.exists() or (
                    anchor and anchor not in _anchors(path)):
                broken.append(f"{page.name}: {link}")
    assert broken == []


def _documented_commands() -> Iterator[tuple[str, str]]:
    """(page, command line) of every dcmweb command in a code block of the docs (the
    examples of --help are in cli-reference.md); synopses and prose are left out."""
    for page in [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]:
        for block in re.findall(r"```[a-z]*\n(.*?)```", page.read_text(), flags=re.S):
            # a line continued, and the quotes of a command inside a YAML string
            for line in re.sub(r"\s*\\\n\s*", " ", block).replace('\\"', '"').splitlines():
                line = re.sub(r"\s#\s.*$", "", line)  # a comment
                for found in re.finditer(r"(?<![\w.-])dcmweb ((?:\$\(\(.*?\)\)|\$\(.*?\)|"
                                         r"\"[^\"]*\"|(?!\s\s)[^|;&)\"])*)", line):
                    words = found.group(1).split()
                    if "[OPTIONS]" not in words and set(words) & {*cli.commands, "help"}:
                        yield page.name, found.group(0).strip()


def _shell_words(command: str) -> list[str]:
    """The words the shell would pass: HOST a URL, expansions a value, no redirection."""
    command = re.sub(r"\$\(\(.*?\)\)|\$\(.*?\)|\$\{?\w+\}?|\{\}", "1", command)
    words = shlex.split(command.replace("HOST", "http://127.0.0.1:1/dicom-web"))[1:]
    redirected = [i for i, word in enumerate(words) if word[:1] in "<>" or word[:2] == "2>"]
    return words[:redirected[0]] if redirected else words


def test_every_documented_command_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    """An option renamed or dropped, a value out of its choices or range, or a command
    that no longer exists fails here, in whichever page shows it. The profiles are
    usage.md's example config file."""
    usage = (DOCS / "usage.md").read_text()
    [toml] = re.findall(r"```toml\n(.*?)```", usage, flags=re.S)
    (tmp_path / "config.toml").write_text(toml)
    monkeypatch.setenv("DCMWEB_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.chdir(tmp_path)
    commands = list(_documented_commands())
    assert len(commands) > 80
    refused = []
    for page, command in commands:
        words = _shell_words(command)
        for name in words:
            if name.endswith((".json", ".jpg")):  # --metadata and --jpeg must exist
                (tmp_path / name).touch()
        try:
            group: click.Command = cli
            ctx = cli.make_context("dcmweb", words)
            args = [*ctx._protected_args, *ctx.args]
            while isinstance(group, click.Group) and args:
                group = group.commands[args[0]]
                ctx = group.make_context(args[0], args[1:], parent=ctx)
                args = [*ctx._protected_args, *ctx.args] if isinstance(group, click.Group) \
                    else []
        except click.exceptions.Exit:  # --help
            pass
        except (click.ClickException, KeyError) as error:
            refused.append(f"{page}: {command}: {error}")
    assert refused == []
