"""Commands about dcmweb itself, which need no HOST: ``help``, ``config show`` and
``completion``."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack

import click
from click.core import ParameterSource
from click.shell_completion import BashComplete, add_completion_class, split_arg_string

from .cligroup import long_name, options, output_of, profile_of
from .errors import UsageError

SHELLS = ("bash", "zsh", "fish")


@click.command("help", short_help="Show the help of dcmweb or of a command.")
@click.argument("command_names", metavar="[COMMAND]...", nargs=-1)
@click.pass_context
def help_command(ctx: click.Context, command_names: tuple[str, ...]) -> None:
    """Show the help of dcmweb or of one command (same as COMMAND --help).

    \b
    Example:
      dcmweb help store
      dcmweb help operations wait
    """
    current = ctx.find_root()
    with ExitStack() as contexts:
        for name in command_names:  # down through groups: operations, then wait
            group = current.command
            missing = f"no command {' '.join(command_names)!r}"
            if not isinstance(group, click.Group):
                raise UsageError(missing, f"{current.command_path} has no subcommands")
            command = group.get_command(current, name)
            if command is None:
                raise UsageError(missing, f"commands: {', '.join(group.list_commands(current))}")
            current = contexts.enter_context(click.Context(command, info_name=name,
                                                           parent=current))
        output_of(ctx).text(current.command.get_help(current))


@click.group("config", short_help="Show the settings dcmweb would use.")
def config_group() -> None:
    """Show the settings dcmweb would use (flags, environment, profile)."""


_SOURCES = {
    ParameterSource.COMMANDLINE: "flag",
    ParameterSource.ENVIRONMENT: "env",
    ParameterSource.DEFAULT_MAP: "profile",
    ParameterSource.DEFAULT: "default",
}


def _setting_lines(ctx: click.Context, prefix: str, changed_only: bool) -> list[str]:
    from .config import redact

    lines = []
    for param in options(ctx.command):
        name = long_name(param)
        if param.name is None or name in ("config", "profile"):
            continue
        source = ctx.get_parameter_source(param.name)
        if changed_only and source not in (ParameterSource.ENVIRONMENT,
                                           ParameterSource.DEFAULT_MAP):
            continue
        value = ctx.params.get(param.name)
        if ctx.resilient_parsing and source in (ParameterSource.ENVIRONMENT,
                                                ParameterSource.DEFAULT_MAP):
            # Resilient parsing (a command's context without its arguments) turns a bad
            # value into None: convert it again, so that it is reported, not hidden.
            value = param.process_value(ctx, param.consume_value(ctx, {})[0])
        value = redact(name, value)
        if isinstance(value, tuple):
            value = list(value)
        where = _SOURCES.get(source, "default") if source else "default"
        if source is ParameterSource.ENVIRONMENT and isinstance(param.envvar, str):
            where = f"env {param.envvar}"
        shown = "(not set)" if value is None else json.dumps(value)
        lines.append(f"{prefix}{name} = {shown}  # {where}")
    return lines


@config_group.command("show", short_help="Print the effective settings and their sources.")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the effective settings and where each comes from; secrets are hidden.

    Global settings first, then each command's settings that the environment or the
    profile changes.

    \b
    Example:
      dcmweb -p prod config show
    """
    from .config import default_path

    root = ctx.find_root()
    profile = profile_of(ctx)
    named = ("(none)" if profile is None else profile.name if root.params.get("profile")
             else f"{profile.name} (default-profile)")
    config = root.params.get("config_file") or default_path()
    lines = [f"# config file: {config}", f"# profile: {named}"]
    lines += _setting_lines(root, "", changed_only=False)
    lines += _command_lines(root, "")
    output_of(ctx).text("\n".join(lines))


def _command_lines(parent: click.Context, prefix: str) -> list[str]:
    """The settings the environment or the profile changes, of every command under a
    group, and of the commands of its groups (operations.wait.timeout)."""
    group = parent.command
    assert isinstance(group, click.Group)
    lines = []
    for name in group.list_commands(parent):
        command = group.get_command(parent, name)
        if command is None:
            continue
        with command.make_context(name, [], parent=parent, resilient_parsing=True) as sub:
            lines += _setting_lines(sub, f"{prefix}{name}.", changed_only=True)
            if isinstance(command, click.Group):
                lines += _command_lines(sub, f"{prefix}{name}.")
    return lines


class _BashComplete(BashComplete):
    """bash splits words at ':' (COMP_WORDBREAKS): http://127.0.0.1:8042/dicom-web
    arrives as five words. The script also passes the line as typed, which is split
    here as the shell splits a command's arguments."""

    source_template = BashComplete.source_template.replace(
        "COMP_CWORD=$COMP_CWORD", 'COMP_CWORD=$COMP_CWORD COMP_LINE="$COMP_LINE" '
        "COMP_POINT=$COMP_POINT")

    def get_completion_args(self) -> tuple[list[str], str]:
        line, point = os.environ.get("COMP_LINE"), os.environ.get("COMP_POINT", "")
        if line is None or not point.isdigit():  # a script written by an older dcmweb
            return super().get_completion_args()
        typed = line[:int(point)]
        words = split_arg_string(typed)
        incomplete = words.pop() if words and not typed[-1:].isspace() else ""
        return words[1:], incomplete


add_completion_class(_BashComplete, "bash")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion_command(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    \b
    Install it:
      bash: dcmweb completion bash > ~/.local/share/bash-completion/completions/dcmweb
      zsh:  dcmweb completion zsh > ~/.zfunc/_dcmweb   (with fpath+=~/.zfunc)
      fish: dcmweb completion fish > ~/.config/fish/completions/dcmweb.fish
    """
    from click.shell_completion import get_completion_class

    root = ctx.find_root()
    completion_class = get_completion_class(shell)
    assert completion_class is not None  # every choice is one click knows
    script = completion_class(root.command, {}, "dcmweb", "_DCMWEB_COMPLETE").source()
    output_of(ctx).text(script)
