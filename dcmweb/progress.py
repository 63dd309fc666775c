"""Progress as the user sees it: the store's per-file lines, a bar on a terminal, and
plain progress lines on a timer in a cron log; part of the output layer (it writes only
through :class:`~dcmweb.output.Output`).

The counts come from the run (a callback per file) and the bytes from the transport
(:class:`~dcmweb.wire.Traffic`), read by a thread on a timer: a line or a redraw comes
while one large file is still on its way, not only when a file finishes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .limits import ThreadLimit, start_thread
from .output import Output, human_size, plural

if TYPE_CHECKING:
    from .bulkrecords import Outcome

log = logging.getLogger("dcmweb")

MIN_TICK = 0.1  # seconds: --progress-every 0.000001 must not spin a core


class Ticker:
    """Calls ``tick`` every ``seconds`` in a daemon thread until :meth:`stop`."""

    def __init__(self, seconds: float, tick: Callable[[], None]) -> None:
        self._seconds = max(seconds, MIN_TICK)
        self._tick = tick
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._thread = start_thread(self._run, "dcmweb-progress",
                                        what="the thread that shows progress")
        except ThreadLimit as error:  # the run itself needs no thread of its own
            log.warning("%s (a memory or process limit): no progress is shown",
                        error.message)

    def _run(self) -> None:
        while not self._stopped.wait(self._seconds):
            self._tick()

    def stop(self) -> None:
        """No tick after this returns (one under way is waited for)."""
        self._stopped.set()
        if self._thread not in (None, threading.current_thread()):
            self._thread.join()


def per_time(count: float, seconds: float, unit: str) -> str:
    """A rate in a unit that shows it: ``1.1 files/s``, ``6.0 files/min``, ``2.0
    files/h`` (never ``0.0 files/s`` for one file a minute)."""
    rate = count / max(seconds, 1e-9)
    for per, scale in (("s", 1), ("min", 60), ("h", 3600)):
        if rate * scale >= 1 or per == "h":
            return f"{rate * scale:.1f} {unit}/{per}"
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """``17 s``, ``3 min``, ``2.5 h``: as precise as an estimate deserves."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 100 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class StorePrinter:
    """The store command's per-file lines and progress.

    Stored files get the old tool's 'uploaded as' line; files not sent because the
    journal or the server has them are listed only with -v. On a terminal a bar counts
    bytes (with rate, ETA, files and failures); without one (cron, CI) a plain progress
    line comes every ``every`` seconds while the run lasts (with ``every_asked``, even
    with --quiet: a long cron run asked for them).

    Bytes done (the bar, the ETA once ``total_bytes`` is known): each file decided counts
    whole, whatever its fate (a file that fails unsent too: else the job never ends),
    and the requests on their way count what went out of them (``sending``). Bytes
    ``sent``: the same less the files decided without a request. Each file counts once:
    a body sent again (a retry, a batch split) counts only while it goes.
    """

    def __init__(self, output: Output, verbose: bool = False,
                 total: Callable[[], int | None] = lambda: None, every: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, *,
                 every_asked: bool = False,
                 stopped: Callable[[], bool] = lambda: False,
                 sending: Callable[[], int] = lambda: 0,
                 awaiting: Callable[[], int] = lambda: 0,
                 total_bytes: Callable[[], int | None] = lambda: None,
                 outage: Callable[[], tuple[float, str | None]] = lambda: (0.0, None),
                 outage_limit: float | None = None) -> None:
        self.output = output
        self.verbose = verbose
        self.total = total  # the progress total in files, once counted
        self.total_bytes = total_bytes  # and in bytes
        self.sending = sending  # bytes of the requests on their way (see wire.Traffic)
        self.awaiting = awaiting  # requests sent whole whose answer has not begun
        # Seconds the server has refused or not answered in a row (0: up) with what it
        # answered last, and when the run gives up on it: with -q the retry lines are
        # hidden, and a progress line with a frozen count and a climbing ETA would not say
        # that the server refuses.
        self.outage = outage
        self.outage_limit = outage_limit
        self.stopped = stopped  # the run has ended: no more progress lines
        self.every = every
        self.every_asked = every_asked
        self.clock = clock
        self.started = clock()
        self.files = self.failed = self.bytes = 0
        self.decided_bytes = 0  # of the files decided, whatever their fate
        self.unsent = 0  # of those decided without a request carrying them
        self._ticker: Ticker | None = None

    def start(self) -> None:
        """The bar on a terminal, else the timer of the plain lines (``every`` 0: none)."""
        output = self.output
        if output.show_progress:
            output.start_progress(self.done_bytes, total=self.total_bytes, note=self.note)
        elif self.every and (self.every_asked or not output.quiet):
            self._ticker = Ticker(self.every, self.tick)

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self.output.stop_progress()

    def sent(self) -> int:
        """Bytes of the job sent: the files decided after a request carried them, and
        what went out of the requests on their way."""
        return self.decided_bytes - self.unsent + self.sending()

    def done_bytes(self) -> int:
        """Bytes of the job done: the files decided, and what went out of the requests on
        their way."""
        done = self.decided_bytes + self.sending()
        total = self.total_bytes()
        return done if total is None else min(done, total)

    def note(self) -> str:
        total = self.total()
        files = f"{self.files}/{total} files" if total is not None else plural(
            self.files, "file")
        return files + (f", {self.failed} failed" if self.failed else "") + (
            f", {down}" if (down := self.outage_note()) else "")

    def outage_note(self) -> str | None:
        """``server unavailable (HTTP 503) for 2 min, retrying up to 5 min``, or None (the
        server is up, or failed for less than a second: one retry is no news). Past the
        limit no request is retried (a search may still settle what one left):
        ``..., past the outage limit (5 min)``."""
        down, why = self.outage()
        if down < 1:
            return None
        answered = f"server unavailable{f' ({why})' if why else ''} for {duration(down)}"
        if not self.outage_limit:
            return f"{answered}, retrying"
        if down >= self.outage_limit:
            return f"{answered}, past the outage limit ({duration(self.outage_limit)})"
        return f"{answered}, retrying up to {duration(self.outage_limit)}"

    def tick(self) -> None:
        """The plain progress line, unless the run has stopped (what comes then is the
        files' fate, not progress)."""
        if self.stopped():
            return
        line = self.progress_line(self.clock())
        if self.every_asked:
            self.output.line("info", line)  # not hidden by --quiet
        else:
            self.output.log(line)

    def __call__(self, outcome: Outcome) -> None:
        output = self.output
        self.files += 1
        self.failed += outcome.status == "failed"
        self.bytes += outcome.size if outcome.status == "stored" else 0
        self.decided_bytes += outcome.size
        self.unsent += 0 if outcome.sent else outcome.size
        notes = [n for n in (outcome.message, outcome.confirmed_by == "search"
                             and "confirmed by search") if n]
        note = f" ({'; '.join(notes)})" if notes else ""
        if outcome.status == "stored":
            where = outcome.retrieve_url or outcome.uids[2]
            output.log(f"{outcome.path} uploaded as {where}{note}")
        elif outcome.status == "already stored":
            if self.verbose:
                output.log(f"{outcome.path} already stored{note}")
        elif outcome.status == "skipped":
            if not outcome.known:
                output.warning(f"skipped {outcome.path}: {outcome.message}")
            elif self.verbose:  # the journal has it from an earlier run: not news
                output.log(f"skipped {outcome.path}: {outcome.message} (as on earlier runs)")
        elif outcome.status == "conflict":
            output.warning(f"{outcome.path} not stored, the server holds other bytes under "
                           f"its UIDs (--on-conflict skip){note}")
        elif outcome.status == "unconfirmed":
            output.warning(f"{outcome.path} unconfirmed: {outcome.message}")
        elif outcome.status == "too new":  # not trouble: a later run sends it
            output.log(f"{outcome.path} not sent yet: {outcome.message}")
        else:
            output.error(f"{outcome.path} failed: {outcome.message}")

    def progress_line(self, now: float) -> str:
        elapsed = now - self.started
        total = self.total()
        files = (plural(self.files, "file") if total is None
                 else f"{self.files} of {plural(total, 'file')}")
        sent = self.sent()
        # No file rate before the first file: "0 of 3 files" says it.
        rate = f"{per_time(self.files, elapsed, 'files')}, " if self.files else ""
        line = (f"progress: {files}, {human_size(self.bytes)} stored, {self.failed} failed, "
                f"{rate}{human_size(sent)} sent at {human_size(sent / max(elapsed, 1e-9))}/s")
        total_bytes = self.total_bytes()
        done = self.done_bytes()
        undecided = (total or 0) - self.files  # self.files counts the failed ones too
        if down := self.outage_note():
            line += f", {down}"  # no time left to tell: it is the server's to decide
        elif total_bytes is not None and done >= total_bytes and undecided > 0:
            # Every byte counted: the time left is not "0 s". It is the server's to take
            # while requests wait for its answers; else the last bodies are still going
            # (their heads and multipart boundaries counted past the files' bytes), and
            # there is nothing true to estimate.
            if self.awaiting():
                line += ", waiting for the server's answers"
        elif total_bytes is not None and done > 0 and elapsed > 0:
            line += f", about {duration((total_bytes - done) * elapsed / done)} left"
        return line
