"""The ``dcmweb`` command: parse arguments, call the library, hand results to output.

Heavy modules (the HTTP stack, pydicom, google-auth) are imported inside the commands so
that ``dcmweb --help`` stays fast.

How to add an option: add a ``@click.option("--long-name", ...)`` to the command (or to
``cli`` for a global one), with a help text. Nothing else is needed for the rest:

- its environment variable is made from the long name, ``DCMWEB_LONG_NAME`` for a global
  option and ``DCMWEB_COMMAND_LONG_NAME`` for a command's (``DCMWEB_STORE_BATCH_SIZE``),
  and ``--help`` shows it (cligroup.py); an explicit ``envvar=`` is kept;
- a profile in the config file may set it (key ``long-name``; a command's options in
  ``[profiles.NAME.COMMAND]``), through click's ``default_map``;
- a global option is accepted before HOST, between HOST and the command, and after the
  command's arguments (cligroup.py);
- docs/usage.md must mention it (tests/test_docs.py), and docs/cli-reference.md is
  regenerated with ``python -m dcmweb_devtools.clidocs`` (tests/test_cli_reference.py).

Precedence: flag > environment variable > profile > built-in default.
"""

from __future__ import annotations

import gc

# Start-up makes about 17,000 objects that the collector tracks and that live as long as
# the process (modules, functions, classes, click's commands). At the default threshold
# (700) it walks them some 25 times and frees nothing: 3-6 ms of every run. Objects freed
# by reference counting never count toward the threshold, so a long run still collects
# its reference cycles, only in larger rounds.
gc.set_threshold(20_000, 10, 10)

import logging
import os
import sys

import click
from click.core import ParameterSource

from . import __version__, bounds
from .cligroup import (
    GOOGLE_WORKERS,
    HELP_NAMES,
    LOCAL_WORKERS,
    DcmwebGroup,
    Settings,
    bounded,
    pass_settings,
)
from .climeta import completion_command, config_group, help_command
from .cliretrieve import retrieve
from .clistore import store
from .errors import (
    EXIT_MEANINGS,
    ExitStatus,
    UsageError,
)
from .output import (
    FORMATS,
    LOG_FORMATS,
    TEXT_FORMATS,
    Output,
    StderrLogHandler,
    plural,
)


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from .throttle import parse_rate

    try:
        return parse_rate(value) if value else None
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _as_set(ctx: click.Context, name: str) -> str:
    """A global option's flags, and the variable or profile that set it when no flag did."""
    param = next(p for p in ctx.command.params if p.name == name)
    flags = "/".join(param.opts)
    source = ctx.get_parameter_source(name)
    if source is ParameterSource.ENVIRONMENT:
        return f"{flags} (set by {param.envvar})"
    if source is ParameterSource.DEFAULT_MAP:
        return f"{flags} (set by the profile)"
    return flags


def _headers(values: tuple[str, ...]) -> dict[str, str]:
    """-H 'Name: value' words as a dict; the Client checks names and values."""
    from .auth import HEADER_HINT

    headers = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep:  # never echoed: 'Authorization Bearer TOKEN' holds a secret
            raise UsageError("a -H header has no ':' between its name and value", HEADER_HINT)
        headers[name.strip()] = content.strip()
    return headers


def _exit_codes() -> str:
    """The exit codes for the end of ``--help``: a wheel has no docs/exit-codes.md."""
    rows = "\n".join(f"  {int(status):<4} {meaning}"
                     for status, meaning in EXIT_MEANINGS.items())
    return f"\b\nExit codes:\n{rows}"


@click.group("dcmweb", cls=DcmwebGroup, subcommand_metavar="[HOST] COMMAND [ARGS]...",
             context_settings={"help_option_names": list(HELP_NAMES), "max_content_width": 100},
             epilog=_exit_codes())
@click.option("--host", metavar="HOST", help="The DICOMweb base URL or Google store name; "
              "also accepted as the first word before the command.")
@click.option("-p", "--profile", metavar="NAME",
              help="Use the settings of [profiles.NAME] in the config file.")
@click.option("--config", "config_file", metavar="FILE",
              help="Config file [default: $XDG_CONFIG_HOME/dcmweb/config.toml].")
@click.option("-m", "--multithreading", is_flag=True,
              help="Run transfers in parallel (a thread pool).")
@click.option("--workers", type=bounded(bounds.WORKERS), metavar="N",
              help=f"Parallel transfers with -m [default: {GOOGLE_WORKERS} for Google, "
                   f"{LOCAL_WORKERS} otherwise].")
@click.option("--token", envvar="DCMWEB_TOKEN", metavar="TOKEN",
              help="Bearer token to send. Never logged.")
@click.option("--user", envvar="DCMWEB_USER", metavar="USER[:PASS]",
              help="HTTP basic authentication.")
@click.option("--google-auth/--no-google-auth", default=None,
              help="Force Google Application Default Credentials on or off "
                   "[default: on for *.googleapis.com].")
@click.option("-H", "--header", "header_values", multiple=True, metavar="'NAME: VALUE'",
              help="Extra request header; repeatable (one per line in the variable).")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False),
              help="CA certificates to verify TLS with.")
@click.option("--connect-timeout", type=bounded(bounds.CONNECT_TIMEOUT), default=10.0,
              show_default=True, metavar="SECONDS", help="Seconds to wait for a connection.")
@click.option("--read-timeout", type=bounded(bounds.READ_TIMEOUT), default=300.0,
              show_default=True, metavar="SECONDS", help="Seconds without a byte before giving up "
              "(an idle limit, never a whole-transfer deadline).")
@click.option("--retries", type=bounded(bounds.RETRIES), default=5, show_default=True,
              metavar="N",
              help="Retries of one request that keeps failing (408, 502, 504, drops) "
                   "while the server answers others; outages: see --outage-limit.")
@click.option("--request-deadline", type=bounded(bounds.REQUEST_DEADLINE), default=900.0,
              show_default=True, metavar="SECONDS",
              help="Give up one request after this long, all retries and waits included.")
@click.option("--low-speed-limit", type=bounded(bounds.LOW_SPEED_LIMIT), default=1024.0,
              show_default=True, metavar="BYTES/S",
              help="Cut off an answer, or a request's body, slower than this over "
                   "--low-speed-time (0: never).")
@click.option("--low-speed-time", type=bounded(bounds.LOW_SPEED_TIME), default=120.0,
              show_default=True, metavar="SECONDS",
              help="How long a transfer may stay under --low-speed-limit.")
@click.option("--outage-limit", type=bounded(bounds.OUTAGE_LIMIT), default=300.0,
              show_default=True, metavar="SECONDS",
              help="Wait this long for a server that is down or answers 429/503 "
                   "before giving up (all workers share the wait).")
@click.option("--max-rate", metavar="N[/s|/m|/h]",
              callback=_rate, help="At most N requests per second (or minute, hour), "
                                   "all workers together, e.g. to match a quota.")
@click.option("-q", "--quiet", is_flag=True,
              help="Silent on success: only warnings and errors (and the summary of a "
                   "store or retrieve that failed).")
@click.option("-v", "--verbose", count=True, help="Log every HTTP request (secrets hidden).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text",
              show_default=True, help="Log lines on stderr as text or one JSON object each.")
@click.option("--traceback", "show_traceback", is_flag=True,
              help="Show the Python stack on errors, for bug reports.")
@click.version_option(__version__, "-V", "--version", prog_name="dcmweb")
@click.pass_context
def cli(ctx: click.Context, host: str | None, profile: str | None, config_file: str | None,
        multithreading: bool, workers: int | None, token: str | None, user: str | None,
        google_auth: bool | None, header_values: tuple[str, ...], ca_bundle: str | None,
        connect_timeout: float, read_timeout: float, retries: int, request_deadline: float,
        low_speed_limit: float, low_speed_time: float, outage_limit: float,
        max_rate: float | None, quiet: bool, verbose: int, log_format: str,
        show_traceback: bool) -> None:
    """Store, search, retrieve and delete DICOM on a DICOMweb server.

    HOST is the DICOMweb base URL or a Google store name, for example:

    \b
      https://healthcare.googleapis.com/v1/projects/P/locations/L/datasets/D/dicomStores/S/dicomWeb
      http://127.0.0.1:8042/dicom-web
      projects/P/locations/L/datasets/D/dicomStores/S

    It may be left out when DCMWEB_HOST is set or the profile has a host. Options go
    before HOST, between HOST and the command, or after the command's arguments.

    \b
    Examples:
      dcmweb -m HOST store "./**.dcm"
      dcmweb HOST search instances "PatientName=Sally%20Zhang&limit=10"
      dcmweb HOST retrieve studies/1.2.3 --output ./downloads
      dcmweb HOST delete studies/1.2.3
      dcmweb -p prod search
      dcmweb help store

    Every option has an environment variable (shown below) and may be set in a profile
    of the config file; a flag beats its variable, which beats the profile. The exit
    codes are listed at the end.
    """
    output = Output(quiet=quiet, log_format=log_format)
    ctx.obj = Settings(given_host=host, output=output, traceback=show_traceback)
    if quiet and verbose:
        raise UsageError(f"{_as_set(ctx, 'quiet')} and {_as_set(ctx, 'verbose')} cannot be "
                         "used together")
    logger = logging.getLogger("dcmweb")
    logger.handlers[:] = [StderrLogHandler(output)]
    logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    ctx.obj = Settings(
        given_host=host,
        multithreading=multithreading,
        given_workers=workers,
        client_options={
            "token": token, "user": user, "google_auth": google_auth,
            "headers": _headers(header_values), "ca_bundle": ca_bundle,
            "connect_timeout": connect_timeout, "read_timeout": read_timeout,
            "retries": retries, "request_deadline": request_deadline,
            "low_speed_limit": low_speed_limit, "low_speed_time": low_speed_time,
            "outage_limit": outage_limit, "max_rate": max_rate,
        },
        output=output,
        traceback=show_traceback,
    )



@cli.command(short_help="Search studies, series or instances.")
@click.argument("path", required=False, default="studies")
@click.argument("params", nargs=-1)
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="Match an attribute, by keyword or tag (PatientName=DOE^JOHN, "
                   "StudyDate=20200101-20201231); repeatable.")
@click.option("--include", "include", multiple=True, metavar="FIELD",
              help="Ask for an attribute beyond the defaults (keyword, tag, or 'all'); "
                   "repeatable.")
@click.option("--fuzzy", is_flag=True, help="Fuzzy matching of person names (GCP).")
@click.option("--limit", type=bounded(bounds.LIMIT), metavar="N",
              help="Return at most N rows: one request, or pages when N is above the "
                   "server's page cap or --page-size.")
@click.option("--offset", type=bounded(bounds.OFFSET), metavar="N", help="Skip the first N rows.")
@click.option("--format", "fmt", type=click.Choice(FORMATS + TEXT_FORMATS), default="pretty",
              show_default=True, help="JSON array (pretty or compact), one JSON object per "
              "line (jsonl), a table (csv, tsv), the found UIDs one per line (uids), or "
              "their retrieve paths one per line (paths: studies/S/series/R/instances/I).")
@click.option("--fields", metavar="F1,F2", help="Columns of csv/tsv (for them only), by keyword "
              "or tag [default: a few per level]; every column is asked for with includefield; "
              "control characters are escaped.")
@click.option("--page-size", type=bounded(bounds.PAGE_SIZE), metavar="N",
              help="Rows per request when paging, up to the server's cap [default: 2,000; two "
              "pages are held, each row as 5-10 KB of memory].")
@pass_settings
def search(settings: Settings, path: str, params: tuple[str, ...], filters: tuple[str, ...],
           include: tuple[str, ...], fuzzy: bool, limit: int | None, offset: int | None,
           fmt: str, fields: str | None, page_size: int | None) -> None:
    """Search studies, series or instances; print all matches on stdout.

    PATH is studies (default), series, instances, studies/UID/series,
    studies/UID/instances or studies/UID/series/UID/instances. PARAMS is a query
    string ("PatientName=Sally%20Zhang&limit=10") or KEY=VALUE words. Without
    a limit, every page is fetched, past the server's silent caps. What the server
    warns of (a result it cut, a key it ignored) is shown on stderr. A row that
    contradicts a filter of one exact value (the server ignored the key) is left
    out, with a warning (a person name: only the warning). -v logs patient names
    and IDs in the query as ***.

    \b
    Example:
      dcmweb HOST search instances StudyInstanceUID=1.2.3 includefield=all
      dcmweb HOST search --filter PatientName=DOE^JOHN --format csv --fields PatientName,StudyDate
      dcmweb HOST search series --format uids | xargs -n1 echo
      dcmweb HOST search instances StudyDate=20240101 --format paths > list.txt
    """
    from .paths import parse_search_path
    from .search import parse_params
    from .searchformat import path_fields, table_columns, text_lines

    if "=" in path:  # the old tool allowed: search "PatientName=X" (path omitted)
        path, params = "studies", (path, *params)
    url_path, level = parse_search_path(path)
    known = url_path.split("/")[1:-1:2]  # the UIDs the path names: studies/S/series/R/...
    columns = table_columns(level, fields, fmt) or (
        list(path_fields(level)[len(known):]) if fmt == "paths" else [])
    if columns:
        # Servers leave out StudyDescription and others unless asked for.
        include = (*include, *columns) if "all" not in (i.lower() for i in include) else include
    with settings.client() as client:
        rows = client.iter_search(path, parse_params(params), page_size, filters=filters,
                                  include=include, fuzzy=fuzzy, limit=limit, offset=offset)
        if fmt in TEXT_FORMATS:
            settings.output.text_lines(text_lines(rows, fmt, level, columns, known))
        else:
            settings.output.json_rows(rows, fmt)


@cli.command()
@click.argument("path")
@click.option("--timeout", type=bounded(bounds.TIMEOUT), default=600.0, show_default=True,
              metavar="SECONDS",
              help="Seconds to wait for Google's long-running delete operation.")
@click.option("--no-wait", is_flag=True,
              help="Do not wait for Google's operation: print its name on stdout and exit 0 "
                   "(nothing when the delete started none: it is done).")
@click.option("-y", "--yes", is_flag=True,
              help="Delete without asking (a study or series delete asks when stdin is a "
                   "terminal; never otherwise).")
@click.option("--dry-run", is_flag=True,
              help="Print the instances that would be deleted (a search, JSON lines on "
                   "stdout) and delete nothing.")
@pass_settings
def delete(settings: Settings, path: str, timeout: float, no_wait: bool, yes: bool,
           dry_run: bool) -> None:
    """Delete a study, series or instance.

    On Google's API a study or series delete runs as an operation; dcmweb waits
    until it is done (showing its counters) and fails if it ends with an error,
    with failed instances, or with instances still pending.

    \b
    Example:
      dcmweb HOST delete studies/1.2.3/series/4.5.6
      op=$(dcmweb HOST delete studies/1.2.3 --no-wait)  # empty: done, nothing to wait for
      [ -z "$op" ] || dcmweb HOST operations wait "$op"
      dcmweb HOST delete studies/1.2.3 --dry-run | wc -l
    """
    from .delete import parse_delete_path
    from .preview import instances_under
    from .served import served_on

    output = settings.output
    target = parse_delete_path(path)  # what the real delete refuses, its dry run refuses
    ask = not yes and output.interactive and target.level in ("study", "series")
    with settings.client() as client:
        if dry_run or ask:
            # Nothing under the path: not found (exit 4), as the DELETE would be, unasked.
            rows = list(instances_under(client.iter_search, target, "delete",
                                        served=served_on(client.http, client.base_url)))
            what = f"{path} ({plural(len(rows), 'instance')})"
            if dry_run:
                output.json_rows(rows, "jsonl")
                output.summary(f"would delete {what}; nothing deleted (--dry-run)")
                return
            if not output.confirm(f"Delete {what}?"):
                raise UsageError(f"{path} not deleted", "answer y, or give --yes")
        result = client.delete(path, timeout=timeout, wait=not no_wait)
    # An earlier DELETE whose answer was lost ran unseen: its work is in no count.
    unseen = "an earlier DELETE, whose answer was lost, may have "
    if no_wait and result.operation:
        settings.output.text_lines([result.operation + "\n"])
        settings.output.summary(f"deleting {result.path}: operation {result.operation} started"
                                + (f" ({unseen}started another)" if result.answer_lost else ""))
        return
    notes = []
    count = plural(result.counter["success"], "instance") if result.counter else None
    if result.answer_lost and result.operation:
        notes.append((f"the last operation deleted {count}; " if count else "")
                     + f"{unseen}deleted others")
    elif count:
        notes.append(count)
    elif result.answer_lost:
        notes.append("answer lost: the server no longer has it")
    if no_wait:  # stdout stays empty: say why, for the script that expected a name
        notes.append("done at once: no operation to wait for")
    settings.output.summary(f"deleted {result.path}" + (f" ({'; '.join(notes)})" if notes
                                                         else ""))


@cli.group(short_help="Read or wait for Google's long-running operations.")
def operations() -> None:
    """Read or wait for Google's long-running operations (study and series deletes).

    NAME is projects/P/locations/L/datasets/D/operations/ID, or the ID alone (the
    dataset is taken from HOST).

    \b
    Example:
      dcmweb HOST operations get projects/P/locations/L/datasets/D/operations/123
      dcmweb HOST operations wait 123 --timeout 3600
    """


@operations.command("get")
@click.argument("name")
@pass_settings
def operations_get(settings: Settings, name: str) -> None:
    """Print the operation as JSON on stdout, as the server sent it.

    \b
    Example:
      dcmweb HOST operations get 123
    """
    with settings.client() as client:
        operation = client.operation(name)
    settings.output.json_rows([operation.raw], "jsonl")


@operations.command("wait", short_help="Wait until the operation is done.")
@click.argument("name")
@click.option("--timeout", type=bounded(bounds.TIMEOUT), default=600.0, show_default=True,
              metavar="SECONDS",
              help="Seconds to wait before giving up (the operation goes on; exit 5).")
@pass_settings
def operations_wait(settings: Settings, name: str, timeout: float) -> None:
    """Wait until the operation is done, showing its counters; exit 1 if it failed.

    \b
    Example:
      dcmweb HOST operations wait 123 --timeout 3600
    """
    with settings.client() as client:
        operation = client.wait_operation(name, timeout=timeout)
    settings.output.summary(f"operation {operation.name} done: {operation.progress()}")


cli.add_command(retrieve)
cli.add_command(store)
cli.add_command(help_command)
cli.add_command(config_group)
cli.add_command(completion_command)


def main() -> None:
    """The console script (and ``python -m dcmweb``).

    The process ends as soon as the command is done, without the interpreter's teardown:
    freeing every module, class and function made at start-up took 20-40 ms of each run,
    as long as importing click. Nothing needs the teardown: commands close their files,
    journals and connections themselves, and every thread dcmweb starts is a daemon."""
    try:
        cli.main(prog_name="dcmweb")
        code = 0
    except SystemExit as done:
        if done.code is not None and not isinstance(done.code, int):
            raise  # sys.exit("message"): Python prints it
        code = done.code or 0
    os._exit(_flushed(code))


def _flushed(code: int) -> int:
    """The exit status once stdout and stderr are flushed (the output layer flushes as it
    writes, so this is a safety net): a failed last write to stdout is an error, as
    Python's own teardown would have made it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BrokenPipeError:
            pass  # the reader went away (dcmweb ... | head), as during the command
        except (OSError, ValueError) as error:
            # stderr that cannot be written (a full log disk) lost messages, not work.
            if stream is sys.stdout:
                Output().error(f"cannot write to stdout: {error}")
                code = code or int(ExitStatus.ERROR)
    return code


if __name__ == "__main__":
    main()
