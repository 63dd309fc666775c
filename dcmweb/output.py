"""The only place that writes to stdout and stderr.

stdout carries data (search results, help, scripts), so it pipes; stderr carries log
lines, progress, warnings and errors, every one in the same shape::

    2026-11-26T16:40:00.123+01:00 dcmweb: info: PATH uploaded as URL
    2026-11-26T16:40:00.456+01:00 dcmweb: error: PATH failed: REASON

or, with ``--log-format json``, one JSON object per line with ``time``, ``level`` and
``message``. The message texts are the old tool's ("PATH uploaded as URL",
"Transferred SIZE in N files"), so scripts that grep them keep working.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, cast

from .errors import DcmwebError, LocalFileError
from .redact import redact_text

if TYPE_CHECKING:
    from .bulkrecords import BulkOptions, Summary
    from .inputs import InputSpec
    from .progress import Ticker
    from .storefiles import StoreOptions

FORMATS = ("pretty", "compact", "jsonl")
LOG_FORMATS = ("text", "json")
TEXT_FORMATS = ("csv", "tsv", "uids", "paths")  # written by searchformat.py
# Set on a log record that announces a retry: --quiet hides it (cron mails only trouble).
TRANSIENT = "dcmweb_transient"
_NOTHING = object()
BAR_SECONDS = 0.5  # how often the progress bar is redrawn
# C0 and C1 control characters (and DEL) as escapes, \n as the two characters '\' 'n':
# a terminal shown them raw could be sent escape sequences by a server or a file name.
CONTROL_ESCAPES = {code: ({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(chr(code))
                          or f"\\x{code:02x}")
                   for code in (*range(0x20), *range(0x7F, 0xA0))}


def _devnull() -> IO[str]:
    return open(os.devnull, "w", encoding="utf-8")


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# How a line of text shows a name or a server's words, as ``ls -b`` does: a backslash
# doubled, control characters escaped (C1 ones by their UTF-8 bytes, \xc2\x85), a byte
# of a name that is not UTF-8 (Python keeps it as a lone surrogate, U+DC80 to U+DCFF) as
# \xNN, any other lone surrogate (JSON allows "\ud800") as \uNNNN. Each shown text reads
# back one way only: the name a\xff (four characters) is shown a\\xff, the name with
# the byte 0xFF a\xff; \xNN is always the byte NN.
_SHOWN = {**CONTROL_ESCAPES, ord("\\"): "\\\\",
          **{code: "".join(f"\\x{byte:02x}" for byte in chr(code).encode())
             for code in range(0x80, 0xA0)},
          **{code: (f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}")
             for code in range(0xD800, 0xE000)}}


def shown(text: str) -> str:
    """``text`` as a text line (a log line, a CSV report's cell) shows it, unambiguous
    and safe for a terminal (see _SHOWN)."""
    return text.translate(_SHOWN)


def readable(text: str) -> str:
    """Text that can be written as UTF-8: the bytes of a file name that are not UTF-8
    (which Python keeps as lone surrogates) become \\xNN escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 file``, ``2 files``, ``0 instances``; ``nouns`` where an s is not the plural
    (``1 study``, ``2 studies``)."""
    return f"{count} {noun}" if count == 1 else f"{count} {nouns or noun + 's'}"


def timestamp() -> str:
    """Local time with its offset, to the millisecond (RFC 3339): sortable and unambiguous."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


class _Guarded:
    """A stream whose failed writes (a full disk behind ``> FILE``) are a LocalFileError
    that names it, instead of an OSError taken for a bug. A closed pipe stays a
    BrokenPipeError: the reader went away, which ends a listing without a failure
    (dcmweb ... search | head), and a report with one (report.py)."""

    def __init__(self, stream: Any, name: str) -> None:
        self._stream = stream
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._stream, attribute)

    @property
    def buffer(self) -> _Guarded | None:
        buffer = getattr(self._stream, "buffer", None)
        return None if buffer is None else _Guarded(buffer, self._name)

    def write(self, data: Any) -> int:
        with self._failing():
            return int(self._stream.write(data))

    def flush(self) -> None:
        with self._failing():
            self._stream.flush()

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as error:
            self._discard()
            raise LocalFileError(f"cannot write to {self._name}: "
                                 f"{error.strerror or error}") from None

    def _discard(self) -> None:
        """Send the rest to /dev/null: said once, what is still buffered must not fail
        again at exit ("cannot write to stdout: [Errno 28] ..." a second time)."""
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)


class Output:
    """Writers for data, log lines, a progress bar, and errors."""

    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None, *,
                 quiet: bool = False, progress: bool | None = None,
                 log_format: str = "text") -> None:
        # A wrapper may start dcmweb with fd 0, 1 or 2 closed: Python then has None there.
        self._stdout = stdout or (cast("IO[str]", _Guarded(sys.stdout, "stdout"))
                                  if sys.stdout else None)
        # Without stderr the run still does its work; the exit status tells how it went.
        self.stderr = stderr or sys.stderr or _devnull()
        self.stdin = sys.stdin
        self.quiet = quiet  # info lines (per-file lines and the summary) hidden
        self.log_format = log_format
        # A bar only on a terminal: in a cron log carriage returns are noise.
        isatty = getattr(self.stderr, "isatty", lambda: False)()
        self.show_progress = (not quiet and isatty) if progress is None else progress
        self._bar: Any = None
        self._ticker: Ticker | None = None  # redraws the bar
        self._redraw: Callable[[], None] = lambda: None

    @property
    def stdout(self) -> IO[str]:
        if self._stdout is None:
            raise LocalFileError("cannot write to stdout: it is closed",
                                 "run dcmweb with its output open, e.g. > FILE")
        return self._stdout

    # stderr ----------------------------------------------------------------
    def write_err(self, text: str) -> None:
        try:
            if self._bar is not None:
                self._bar.write(text, file=self.stderr)
            else:
                # One write per line: worker threads log too, and print() writes the text
                # and its newline separately, so two lines could run into each other.
                self.stderr.write(text + "\n")
                self.stderr.flush()
        except OSError:
            # stderr's reader went away (2>&1 | head, a log collector that died), or its
            # log cannot be written (a full disk, EIO): the run goes on without its
            # messages, and its exit status still says how it went.
            self.stderr = _devnull()

    def line(self, level: str, message: str) -> None:
        """One log line in the chosen format; every stderr line goes through here."""
        message = redact_text(message)  # a server may quote the credentials it was sent
        if self.log_format == "json":
            # JSON escapes by itself: the message as it is (a byte of a name that is not
            # UTF-8 as \udcXX), as JSON lines reports write names.
            text = json.dumps({"time": timestamp(), "level": level, "message": message})
        else:
            # Names and server messages come from outside: a line break in a file name
            # would start a forged line (a fake summary) in a grepped cron log; shown as
            # a CSV report shows them.
            text = f"{timestamp()} dcmweb: {level}: {shown(message)}"
        self.write_err(text)

    def debug(self, message: str) -> None:
        self.line("debug", message)

    def log(self, message: str) -> None:
        """A per-item line, hidden by --quiet."""
        if not self.quiet:
            self.line("info", message)

    def summary(self, message: str, *, failed: bool = False) -> None:
        """A closing line; --quiet is silent on success, so it hides this one too, but
        shows it after a failure (a cron mail says how far the run got)."""
        if failed:
            self.line("info", message)
        else:
            self.log(message)

    def warning(self, message: str) -> None:
        """Shown even with --quiet."""
        self.line("warning", message)

    def error(self, error: DcmwebError | str) -> None:
        """The error's message, then each line added to it (see DcmwebError.add_line)."""
        if isinstance(error, DcmwebError):
            for text in (error.headline, *error.notes):
                self.line("error", text)
        else:
            self.line("error", error)

    # stdout ----------------------------------------------------------------
    # stdin -----------------------------------------------------------------
    @property
    def interactive(self) -> bool:
        """Someone can answer a question: stdin is a terminal (never in cron or CI)."""
        return self.stdin is not None and self.stdin.isatty()

    def confirm(self, question: str) -> bool:
        """Ask on the terminal, read y/N from stdin; anything else, or no answer (end of
        input), is no. With stderr sent to a log the question goes to stdin's terminal:
        in the log no one would see it, and the run would seem to hang."""
        self.stop_progress()
        with self._screen() as screen:
            screen.write(f"{question} [y/N]: ")
            screen.flush()
            try:
                answer = self.stdin.readline()
            except KeyboardInterrupt:  # Ctrl-C, not "no": the error goes below the question
                screen.write("\n")
                raise
        return answer.strip().lower() in ("y", "yes")

    @contextlib.contextmanager
    def _screen(self) -> Iterator[IO[str]]:
        if getattr(self.stderr, "isatty", lambda: False)():
            yield self.stderr
            return
        try:
            terminal = open(os.ttyname(self.stdin.fileno()), "w")  # noqa: SIM115
        except (OSError, ValueError):
            yield self.stderr
            return
        with terminal:
            yield terminal

    def text(self, text: str) -> None:
        """Plain text for the user to read or pipe (help, completion scripts, settings)."""
        self.stdout.write(text if text.endswith("\n") else text + "\n")
        self.stdout.flush()

    def start_progress(self, done: Callable[[], int], *,
                       total: Callable[[], int | None] = lambda: None,
                       note: Callable[[], str] = lambda: "") -> None:
        """On a terminal, a bar in bytes (``done`` so far, of ``total`` once known, with
        rate and ETA) and ``note`` after it (files, failures). A thread redraws it twice
        a second from these: its clock and bytes move while one large file is on its way."""
        if not self.show_progress:
            return
        from tqdm import tqdm

        from .progress import Ticker

        self._bar = tqdm(total=None, unit="B", unit_scale=True, file=self.stderr,
                         leave=False, dynamic_ncols=True)
        self._redraw = lambda: self._draw(done, total, note)
        self._ticker = Ticker(BAR_SECONDS, self._redraw)

    def _draw(self, done: Callable[[], int], total: Callable[[], int | None],
              note: Callable[[], str]) -> None:
        bar = self._bar
        if bar is None:
            return
        size = total()
        if size is not None and bar.total != size:
            bar.total = size
        bar.set_postfix_str(note(), refresh=False)
        now = done()
        if now > bar.n:
            bar.update(now - bar.n)  # for the rate; it may skip drawing (mininterval)
        bar.refresh()

    def stop_progress(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
            self._redraw()  # the last counts: a run shorter than a redraw shows them too
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def json_rows(self, rows: Iterable[Any], fmt: str = "pretty") -> int:
        """Stream rows as one JSON array (pretty or compact) or JSON lines."""
        out = self.stdout
        count = 0
        # Pull the first row before writing: a search that fails at once prints nothing.
        source = iter(rows)
        first = next(source, _NOTHING)
        rows = source if first is _NOTHING else itertools.chain([first], source)
        if fmt == "jsonl":
            for row in rows:
                out.write(json.dumps(row, sort_keys=True) + "\n")
                count += 1
            out.flush()
            return count
        pretty = fmt == "pretty"
        out.write("[")
        for row in rows:
            out.write("," if count else "")
            if pretty:
                text = json.dumps(row, indent=2, sort_keys=True)
                out.write("\n  " + text.replace("\n", "\n  "))
            else:
                out.write(json.dumps(row, sort_keys=True, separators=(",", ":")))
            count += 1
        out.write("\n]\n" if pretty and count else "]\n")
        out.flush()
        return count


    def text_lines(self, lines: Iterable[str]) -> int:
        """Write lines (each with its newline) to stdout as they come: CSV, TSV, UIDs."""
        out = self.stdout
        count = 0
        for line in lines:
            try:
                out.write(line)
            except UnicodeEncodeError:
                # A lone surrogate ("\ud800" is valid JSON) or a character stdout's
                # encoding lacks: escaped as \ud800, as JSON lines escape it.
                encoding = getattr(out, "encoding", None) or "utf-8"
                out.write(line.encode(encoding, "backslashreplace").decode(encoding))
            count += 1
        out.flush()
        return count

    def data(self, payload: bytes | str) -> None:
        """A whole answer (metadata JSON or XML) on stdout."""
        if isinstance(payload, bytes):
            self.stdout.flush()
            buffer = getattr(self.stdout, "buffer", None)
            if buffer is not None:
                buffer.write(payload)
                buffer.flush()
                return
            payload = payload.decode("utf-8", "replace")
        self.stdout.write(payload)
        self.stdout.flush()


class StderrLogHandler(logging.Handler):
    """Routes the library's log records (retries, warnings) through Output."""

    def __init__(self, output: Output) -> None:
        super().__init__()
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        if self.output.quiet and getattr(record, TRANSIENT, False):
            return  # a retry: if it does not get through, the error that follows says so
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            self.output.error(message)
        elif record.levelno >= logging.WARNING:
            self.output.warning(message)
        elif record.levelno >= logging.INFO:
            self.output.log(message)
        else:
            self.output.debug(message)


def describe_start(url: str, spec: InputSpec, store: StoreOptions, bulk: BulkOptions,
                   report: str | None = None, max_rate: float | None = None) -> str:
    """The opening line of a store run: where to (secrets hidden), from where (the
    inputs as given), and the options that change what or how it sends. Never a file's
    contents: no patient data."""
    from .redact import redact_url

    inputs = [*spec.masks, *(f"list {name}" for name in spec.files_from)]
    batching = "single-part" if store.single_part else f"batch-size {store.batch_size}"
    settings = [plural(store.workers, "worker"), batching]
    settings += [f"{name} {value}" for name, value in (
        ("max-rate", max_rate and f"{max_rate:.3g}/s"),
        ("journal", bulk.journal), ("report", report),
        ("min-age", bulk.min_age and f"{bulk.min_age:g} s"),
        ("shard", spec.shard and f"{spec.shard.index}/{spec.shard.count}"),
        ("on-conflict", bulk.on_conflict if bulk.on_conflict != "fail" else None),
        ("include", ",".join(spec.include)), ("exclude", ",".join(spec.exclude)),
        ("storage-class", store.storage_class), ("study", store.study_uid)) if value]
    settings += [flag for flag, on in (("retry-failed", bulk.retry_failed),
                                       ("skip-existing", bulk.skip_existing),
                                       ("verify-journal", bulk.verify_journal),
                                       ("dry-run", bulk.dry_run)) if on]
    return f"store to {redact_url(url)} from {', '.join(inputs)} ({'; '.join(settings)})"


def describe_summary(summary: Summary, *, dry_run: bool = False,
                     unavailable_seconds: float = 0.0) -> str:
    """The closing line of a store run (with how long the server was unavailable)."""
    counts = summary.counts
    extras: list[str] = []
    for status in ("failed", "skipped", "already stored"):
        if counts[status] and not (dry_run and status == "skipped"):
            extras.append(f"{counts[status]} {status}")
    if counts["conflict"]:
        extras.append(plural(counts["conflict"], "conflict"))
    if counts["too new"]:
        extras.append(f"{counts['too new']} too new (left for a later run)")
    if summary.unconfirmed:
        extras.append(f"{summary.unconfirmed} unconfirmed (sent, no answer: the server may "
                      f"hold {'it' if summary.unconfirmed == 1 else 'them'})")
    not_attempted = "not attempted (and the rest of the input, not counted)" if (
        summary.rest_uncounted) else "not attempted"
    for number, label in ((summary.not_attempted, not_attempted),
                          (summary.not_retried, "not retried (not failed in the journal)"),
                          (summary.gone_from_server, ("to send again" if dry_run else "sent again")
                           + " (stored by an earlier run, gone from the server)"),
                          (summary.excluded, "excluded"),
                          (summary.excluded_folders, "folder" + "s" * (
                              summary.excluded_folders != 1) + " excluded (not walked)"),
                          (summary.other_shards, "left to other shards")):
        if number:
            extras.append(f"{number} {label}")
    if unavailable_seconds >= 1:
        extras.append(f"server unavailable for {unavailable_seconds:.0f} s")
    if dry_run:
        line = (f"Dry run: would send {plural(summary.would_send, 'file')} "
                f"({human_size(summary.would_send_bytes)}, "
                f"{plural(len(summary.studies), 'study', 'studies')})")
        reasons = [_count_skipped(reason, number)
                   for reason, number in summary.skip_reasons.items()]
        if reasons:
            extras.append(f"skipped: {', '.join(reasons)}")
    else:
        line = (f"Transferred {human_size(summary.stored_bytes)} in "
                f"{plural(counts['stored'], 'file')}")
    return line + (f"; {', '.join(extras)}" if extras else "")


def _count_skipped(reason: str, number: int) -> str:
    """``2 empty files``, ``1 not DICOM``; a reason without nouns (an old journal's) as
    ``REASON: N``, which reads right for any number."""
    from .storefiles import SKIP_COUNTS

    nouns = SKIP_COUNTS.get(reason)
    return plural(number, *nouns) if nouns else f"{reason}: {number}"
