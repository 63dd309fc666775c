"""docs/cli-reference.md: every command's --help, generated (a test fails when it is stale).

    python -m dcmweb_devtools.clidocs      # rewrite docs/cli-reference.md
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click

from dcmweb.cli import cli
from dcmweb.cligroup import ENV_PREFIX, give_envvars

PATH = Path(__file__).resolve().parent.parent / "docs" / "cli-reference.md"
WIDTH = 100  # fixed, so the page does not depend on the terminal it is made in


def _contexts(command: click.Command, ctx: click.Context) -> Iterator[click.Context]:
    yield ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _contexts(sub, click.Context(sub, info_name=name, parent=ctx,
                                                        terminal_width=WIDTH))


def render() -> str:
    give_envvars(cli, ENV_PREFIX)
    # The group's context settings (help option names) as in a real run: click caches
    # the help option per command on first use.
    settings = {**cli.context_settings, "terminal_width": WIDTH, "max_content_width": WIDTH}
    root = click.Context(cli, info_name="dcmweb", **settings)
    parts = ["# dcmweb command reference", "",
             "Generated from `--help` by `python -m dcmweb_devtools.clidocs`; do not edit by",
             "hand. The guide with examples is [usage.md](usage.md).", ""]
    for ctx in _contexts(cli, root):
        parts += [f"## {ctx.command_path}", "", "```", ctx.command.get_help(ctx), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    PATH.write_text(render())
    print(f"wrote {PATH}")
