"""The machinery under the ``dcmweb`` group: the grammar (options anywhere, HOST optional,
help anywhere), environment variables for every option, the profile's defaults, and the
one place where errors become log lines and exit codes. See the note at the top of
cli.py for how to add an option.
"""

from __future__ import annotations

import math
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from .bounds import LARGEST, Number, Whole
from .errors import DcmwebError, ExitStatus, Terminated, UsageError

# Imported now: out of descriptors, a late import of it would fail as well.
from .limits import late_import_refused
from .output import LOG_FORMATS, Output
from .record import field, record
from .redact import redact_text

if TYPE_CHECKING:
    from .client import Client
    from .config import Profile

LOCAL_WORKERS = 6  # loopback/PACS servers: their CPU, not the wire, is the limit
GOOGLE_WORKERS = 8
ENV_PREFIX = "DCMWEB"
HELP_NAMES = ("-h", "--help")
_PROFILE = "dcmweb.profile"  # ctx.meta key of the Profile in use


@record
class Settings:
    """What the global options decided, handed to every command."""

    given_host: str | None
    multithreading: bool = False
    given_workers: int | None = None
    client_options: dict[str, Any] = field(default_factory=dict)
    output: Output = field(default_factory=Output)
    traceback: bool = False

    @property
    def host(self) -> str:
        """HOST, asked for only by the commands that talk to a server."""
        if not self.given_host:
            raise UsageError("HOST is missing", "give it before the command, set DCMWEB_HOST, "
                             "or choose a profile with a host: dcmweb -p NAME COMMAND")
        return self.given_host

    @property
    def workers(self) -> int:
        if not self.multithreading:
            return self.given_workers or 1
        if self.given_workers:
            return self.given_workers
        from .auth import is_google_host

        return GOOGLE_WORKERS if is_google_host(self.host) else LOCAL_WORKERS

    def client(self) -> Client:
        from .client import Client

        return Client(self.host, workers=self.workers, **self.client_options)


class Finite(click.FloatRange):
    """click's FloatRange for a bounds.Number: without nan, inf and sizes past
    bounds.LARGEST (nan passes every bound, each of its comparisons being false, so an
    outage limit of nan would never end, and a timeout of 1e12 s overflows the clock deep
    inside a request)."""

    def __init__(self, bound: Number) -> None:
        super().__init__(min=bound.low, min_open=bound.low_open)
        self.bound = bound

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        if not self.bound.holds(number):
            self.fail(f"{value!r} is too large (at most {LARGEST:.0f}).", param, ctx)
        return number


def bounded(bound: Whole | Number) -> click.ParamType:
    """The click type of an option whose values the library checks with ``bound``."""
    if isinstance(bound, Whole):
        return click.IntRange(bound.low, bound.high)
    return Finite(bound)


class _Count(click.types.IntRange):
    """A counted flag (-vv): its variable also takes a flag's words, DCMWEB_VERBOSE=yes."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip().isdigit():
            return int(click.BOOL.convert(value, param, ctx))
        return super().convert(value, param, ctx)


class _Lines(click.types.StringParamType):
    envvar_list_splitter = "\n"


_LINES = _Lines()


def long_name(param: click.Parameter) -> str:
    """The option's name as users write it: ``--read-timeout`` -> ``read-timeout``."""
    longs = [opt for opt in param.opts if opt.startswith("--")]
    return (longs or param.opts)[0].lstrip("-")


def options(command: click.Command) -> list[click.Option]:
    return [param for param in command.params if isinstance(param, click.Option)
            and not param.hidden and long_name(param) not in ("help", "version")]


def give_envvars(command: click.Command, prefix: str) -> None:
    """Every option gets DCMWEB_[COMMAND_]LONG_NAME, shown in --help (recursively)."""
    for param in options(command):
        if param.envvar is None:
            param.envvar = f"{prefix}_{long_name(param).replace('-', '_').upper()}"
        param.show_envvar = True
        if param.multiple and param.type is click.STRING:
            param.type = _LINES  # one value per line: header values hold spaces
        if param.count:
            param.type = _Count(min=0)
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            give_envvars(sub, f"{prefix}_{name.replace('-', '_').upper()}")


class _Context(click.Context):
    """A context that owns the usage errors its parsing raises without one: click's
    parser leaves an option's missing value (`retrieve --output` last) without its
    command, and the message then pointed to 'dcmweb --help', which does not list it."""

    @contextmanager
    def scope(self, cleanup: bool = True) -> Iterator[click.Context]:
        try:
            with super().scope(cleanup) as ctx:
                yield ctx
        except click.UsageError as error:
            if error.ctx is None:
                error.ctx = self
            raise


def give_contexts(command: click.Command) -> None:
    """Every command makes a _Context (recursively)."""
    command.context_class = _Context
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            give_contexts(sub)


def _value_options(command: click.Command) -> tuple[set[str], set[str]]:
    """(names of options that take a value, names of all options) of a command and,
    for a group, of its subcommands."""
    takes_value: set[str] = set()
    names: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Option):
            opts = {*param.opts, *param.secondary_opts}
            names |= opts
            if not param.is_flag and not param.count:
                takes_value |= opts
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            sub_values, sub_names = _value_options(sub)
            takes_value |= sub_values
            names |= sub_names
    return takes_value, names


def _looks_like_host(word: str) -> bool:
    return any(mark in word for mark in "/:.")


def _option_value(words: Sequence[str], names: tuple[str, ...]) -> str | None:
    """The value given to one of ``names`` in a list of option words (last one wins)."""
    value = None
    for index, word in enumerate(words):
        for name in names:
            if word == name and index + 1 < len(words):
                value = words[index + 1]
            elif name.startswith("--") and word.startswith(name + "="):
                value = word[len(name) + 1:]
            elif not name.startswith("--") and word.startswith(name) and len(word) > 2:
                value = word[len(name):]
    return value


# The old tool (python-fire) also took its arguments by name: ``search --path instances
# --parameters "..."``, ``retrieve --path P``, ``delete --path P``. Each name is the
# command's first or its last (repeated) argument.
_OLD_FIRST = {"search": "--path", "retrieve": "--path", "delete": "--path"}
_OLD_LAST = {"search": "--parameters", "store": "--masks"}
# python-fire took each named argument with one dash too (`-output=DIR`); click would read
# `-o utput=DIR` and save into a folder named `utput=DIR`.
_OLD_NAMES = {"search": ("-path", "-parameters"), "retrieve": ("-path", "-output", "-type"),
              "delete": ("-path",), "store": ("-masks",)}


def _two_dashes(command: str, words: list[str]) -> list[str]:
    """The old tool's one-dash names of ``command`` given their two dashes (before ``--``)."""
    names = _OLD_NAMES.get(command, ())
    end = words.index("--") if "--" in words else len(words)
    return [f"-{word}" if index < end and word.partition("=")[0] in names else word
            for index, word in enumerate(words)]


def _old_named_arguments(rest: list[str]) -> list[str]:
    """A command's words with the old tool's named arguments made positional."""
    command = rest[0]
    rest = [command, *_two_dashes(command, rest[1:])]
    first, last = _OLD_FIRST.get(command), _OLD_LAST.get(command)
    if first is None and last is None:
        return rest
    words: list[str] = []
    firsts: list[str] = []
    lasts: list[str] = []
    index = 1
    while index < len(rest):
        word = rest[index]
        if word == "--":
            words.extend(rest[index:])
            break
        name, equals, value = word.partition("=")
        target = firsts if name == first else lasts if name == last else None
        if target is None or (not equals and index + 1 == len(rest)):
            words.append(word)  # not one of them, or without its value: click says so
        elif equals:
            target.append(value)
        else:
            index += 1
            target.append(rest[index])
        index += 1
    if lasts and "--" not in words:
        lasts = ["--", *lasts]  # a value may start with '-': it is still an argument
    return [command, *firsts, *words, *lasts]


class DcmwebGroup(click.Group):
    """The grammar (options anywhere, HOST optional, help anywhere), the profile, and the
    one place where errors become output and exit codes."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        if parent is None:
            give_envvars(self, ENV_PREFIX)
            give_contexts(self)
        return super().make_context(info_name, args, parent, **extra)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            try:
                args = self._reorder(ctx, args)
                ctx.default_map = self._profile_defaults(ctx, args)
            except (click.UsageError, DcmwebError) as error:
                if ctx.resilient_parsing:
                    pass  # completing on TAB: complete what can be, never print into it
                elif isinstance(error, DcmwebError) and self._needs_no_settings(args):
                    # Help is what the user who broke the config file needs to fix it.
                    Output().warning(f"{error.message} (ignored)")
                else:
                    raise
        return super().parse_args(ctx, args)

    def _needs_no_settings(self, words: list[str]) -> bool:
        """Help, the version and the completion script: nothing a profile sets is used."""
        command = next((word for word in words if word in self.commands), None)
        before_end = words[:words.index("--")] if "--" in words else words
        return (command in ("help", "completion")
                or any(word in (*HELP_NAMES, "-V", "--version") for word in before_end))

    def _reorder(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Put the words in click's order: global options, --host HOST, command, its args.

        Accepts ``dcmweb [OPTS] [HOST] [OPTS] COMMAND [ARGS and OPTS]``: global options
        found after the command (and not one of the command's own) move to the front;
        ``--help`` before the command becomes the command's help.
        """
        # Before the command any command's option may come (its value is not HOST); after
        # it, only the group's own options move to the front: another command's option is
        # this command's mistake, for its --help to explain.
        takes_value, _ = _value_options(self)
        global_names = {name for param in self.params if isinstance(param, click.Option)
                        for name in (*param.opts, *param.secondary_opts)} - {"-h", "--help"}
        words: list[str] = []
        hosts: list[str] = []
        index = 0
        while index < len(args):
            word = args[index]
            if word in self.commands or word == "--":
                break
            if word.startswith("-") and len(word) > 1:
                words.append(word)
                if word in takes_value and index + 1 < len(args):
                    index += 1
                    words.append(args[index])
            else:
                hosts.append(word)
            index += 1
        rest = args[index:]
        if not rest and hosts:
            # No command: the first word that is not HOST is a mistyped one (click names it).
            start = 1 if _looks_like_host(hosts[0]) else 0
            hosts, rest = hosts[:start], hosts[start:]
        if len(hosts) > 1:
            raise click.UsageError(f"unexpected {hosts[1]!r} before the command "
                                   f"(HOST is {hosts[0]!r})", ctx)
        host = ["--host", hosts[0]] if hosts else []
        if not rest or rest[0] not in self.commands:
            return [*words, *host, *rest]
        if any(word in HELP_NAMES for word in words):
            words = [word for word in words if word not in HELP_NAMES]
            rest = [rest[0], "--help", *rest[1:]]
        rest = _old_named_arguments(rest)
        own_value, own_names = _value_options(self.commands[rest[0]])
        kept: list[str] = [rest[0]]
        index = 1
        while index < len(rest):
            word = rest[index]
            name = word.split("=", 1)[0]
            if word == "--":
                kept.extend(rest[index:])
                break
            target = kept if name in own_names or name not in global_names else words
            target.append(word)
            value_next = name in own_value if target is kept else name in takes_value
            if value_next and "=" not in word:
                if index + 1 == len(rest) and target is words:
                    # Moved to the front, it would take the next word there (HOST) as
                    # its value: say what click says of a command's own option.
                    raise click.BadOptionUsage(name, f"Option '{name}' requires an argument.",
                                               ctx)
                if index + 1 < len(rest):
                    index += 1
                    target.append(rest[index])
            index += 1
        given = _option_value(words, ("--host",))
        if hosts and given is not None and given != hosts[0]:
            # click would take one and drop the other: a delete could go to the wrong store.
            raise click.UsageError(f"two HOSTs: {hosts[0]!r} and --host {given!r}", ctx)
        return [*words, *host, *kept]

    def _profile_defaults(self, ctx: click.Context, words: list[str]) -> dict[str, Any]:
        """click's default_map from the chosen profile: option names -> parameter names."""
        from .config import load_profile

        profile = load_profile(
            _option_value(words, ("--config",)) or os.environ.get(f"{ENV_PREFIX}_CONFIG"),
            _option_value(words, ("-p", "--profile")) or os.environ.get(f"{ENV_PREFIX}_PROFILE"))
        ctx.meta[_PROFILE] = profile  # a bad value in it is reported with its file
        return _defaults_for(self, {**profile.values, **profile.commands}, profile, "")

    def invoke(self, ctx: click.Context) -> Any:
        from .optionnames import as_flags
        from .signals import stop_on_signals

        try:
            # The library's messages name its options as this command line's flags.
            with stop_on_signals(), as_flags():
                return super().invoke(ctx)
        except DcmwebError as error:
            _failed(ctx, error)
        except BrokenPipeError:
            # stdout's reader went away (search | head): it took what it wanted of a
            # listing. Only stdout gets here: without stderr a run goes on (Output), and a
            # report that loses its reader is an error (ReportWriter).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM or SIGHUP (Terminated)
            output = output_of(ctx)
            output.stop_progress()
            if isinstance(stop, Terminated):
                output.error(f"terminated ({stop.signal_name})")
                ctx.exit(int(stop.exit_status))
            output.error("interrupted")
            ctx.exit(int(ExitStatus.INTERRUPTED))
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as error:  # a bug: say so, and how to report it
            with as_flags():
                limit = late_import_refused(error)
            if limit is not None:  # no bug: a limit met mid-run
                _failed(ctx, limit)
            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            if settings and settings.traceback:
                raise
            output_of(ctx).error(f"unexpected error: {type(error).__name__}: "
                                 f"{redact_text(str(error))} "
                                 "(rerun with --traceback and report it)")
            ctx.exit(int(ExitStatus.ERROR))

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        """click's main, with usage errors (and errors in the config file) printed as one
        log line like every other error."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        words = list(sys.argv[1:] if args is None else args)
        try:
            result = super().main(words, prog_name or "dcmweb", complete_var,
                                  standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0
        except click.UsageError as error:
            # No command (`dcmweb`, `dcmweb HOST`, `dcmweb -v`): click's message is the
            # whole help or "Missing command": one line that names the commands instead.
            ctx = error.ctx
            if ctx is not None and isinstance(ctx.command, click.Group) and (
                    isinstance(error, click.exceptions.NoArgsIsHelpError)
                    or error.message == "Missing command."):
                message = (f"missing command (commands: "
                           f"{', '.join(ctx.command.list_commands(ctx))}; "
                           f"see '{ctx.command_path} --help')")
            else:
                message = _usage_message(error)
            _early_output(words, error.ctx).error(message)
            code = error.exit_code
        except click.ClickException as error:
            _early_output(words, getattr(error, "ctx", None)).error(error.format_message())
            code = error.exit_code
        except DcmwebError as error:
            _early_output(words).error(error)
            code = int(error.exit_status)
        except click.Abort:
            _early_output(words).error("aborted")
            code = int(ExitStatus.INTERRUPTED)
        sys.exit(code)


def _usage_message(error: click.UsageError) -> str:
    """click's message in one line; a bad value from the profile names the config file
    (click would name the environment variable)."""
    ctx, param = error.ctx, getattr(error, "param", None)
    profile = ctx.find_root().meta.get(_PROFILE) if ctx else None
    if (ctx and profile and isinstance(error, click.BadParameter) and param and param.name
            and ctx.get_parameter_source(param.name) is ParameterSource.DEFAULT_MAP):
        command = "".join(f"{name}." for name in ctx.command_path.split()[1:])
        return (f"config file {profile.path}: profile {profile.name!r}: {command}"
                f"{long_name(param)}: {error.message.removesuffix('.')}")
    if (ctx and isinstance(error, click.BadParameter) and isinstance(param, click.Option)
            and param.name and error.param_hint is None
            and ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT):
        # click names the option's variable whenever --help shows it; say so only when
        # the value came from it.
        error.param_hint = click.Parameter.get_error_hint(param, ctx)
    where = ctx.command_path if ctx else "dcmweb"
    message = error.format_message()
    if isinstance(error, click.MissingParameter):
        # click lays the choices out on lines ("Choose from:\n\tbash,\n\tzsh"), which the
        # log line would escape; the message holds only dcmweb's own names.
        message = " ".join(message.split())
    return f"{message.removesuffix('.')} (see '{where} --help')"


def _early_output(words: Sequence[str], ctx: click.Context | None = None) -> Output:
    """Where click's usage errors and the config file's go: the run's Output once the
    global options took effect, else one in the --log-format that the words or the
    environment ask for."""
    settings = ctx.find_object(Settings) if ctx else None
    if settings:
        return settings.output
    log_format = (_option_value(words, ("--log-format",))
                  or os.environ.get(f"{ENV_PREFIX}_LOG_FORMAT"))
    return Output(log_format=log_format if log_format in LOG_FORMATS else "text")


def _failed(ctx: click.Context, error: DcmwebError) -> None:
    """End the run with the error's message and exit status."""
    settings = ctx.obj if isinstance(ctx.obj, Settings) else None
    output = settings.output if settings else Output()
    output.stop_progress()
    if settings and settings.traceback:
        output.stderr.write(redact_text(traceback.format_exc()))
    output.error(error)
    ctx.exit(int(error.exit_status))


def output_of(ctx: click.Context) -> Output:
    settings = ctx.find_object(Settings)
    return settings.output if settings else Output()


def profile_of(ctx: click.Context) -> Profile | None:
    """The profile the run uses: the one asked for, or the config file's default-profile."""
    profile = ctx.find_root().meta.get(_PROFILE)
    return profile if profile is not None and profile.name else None


def _defaults_for(command: click.Command, values: dict[str, Any], profile: Profile,
                  where: str) -> dict[str, Any]:
    from .config import option_key

    by_name = {long_name(param): param.name for param in options(command) if param.name}
    defaults: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):  # a command's table; a group's holds its commands'
            sub = command.commands.get(key) if isinstance(command, click.Group) else None
            if sub is None:
                raise UsageError(f"config file {profile.path}: profile {profile.name!r} has "
                                 f"a table [{where}{key}], but there is no command "
                                 f"{(where + key).replace('.', ' ')!r}")
            defaults[key] = _defaults_for(sub, value, profile, f"{where}{key}.")
            continue
        name = by_name.get(option_key(key))
        if name is None:
            command_path = " ".join(["dcmweb", *where.split(".")[:-1]])
            raise UsageError(f"config file {profile.path}: profile {profile.name!r}: unknown "
                             f"setting {where}{key}", f"see '{command_path} --help'")
        defaults[name] = value
    return defaults


# Hands a command the run's Settings (made by the group from the global options).
pass_settings = click.make_pass_decorator(Settings)
