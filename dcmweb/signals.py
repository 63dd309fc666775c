"""Stopping a run: Ctrl-C (SIGINT), SIGTERM and SIGHUP end every command within a second.

SIGTERM (what ``timeout``, systemd and Kubernetes send) is turned into
:class:`~dcmweb.errors.Terminated`, a kind of KeyboardInterrupt, raised in the main
thread: every cleanup written for Ctrl-C then runs for it too (the summary so far,
partial files removed, the session closed so that worker threads stop waiting). SIGHUP
(the terminal went away: ssh dropped, its window closed) is :class:`~dcmweb.errors.HungUp`,
a Terminated: the report and the journal are completed all the same, while the lines
written to the lost terminal go nowhere (output.py). The main thread never waits for a
worker thread without a signal reaching it (queues, futures and events wake up for
signals), and worker threads are daemons, so nothing holds the exit. A second signal
while stopping ends the process at once, except SIGHUP: a hang-up comes twice (from the
kernel, then from the shell passing it on to its jobs), and is no one insisting.
Under ``nohup`` (SIGHUP ignored when dcmweb starts) it stays ignored.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import TypeVar

from .errors import ExitStatus, HungUp, Terminated

T = TypeVar("T")


# The signals that stop a run, and what each raises in the main thread (no SIGHUP on
# Windows).
_HANGUP: int | None = getattr(signal, "SIGHUP", None)
_RAISED: dict[int, type[KeyboardInterrupt]] = {signal.SIGINT: KeyboardInterrupt,
                                                signal.SIGTERM: Terminated}
if _HANGUP is not None:
    _RAISED[_HANGUP] = HungUp


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside, SIGINT raises KeyboardInterrupt, SIGTERM Terminated and SIGHUP
    HungUp (in the main thread only: elsewhere Python cannot install signal handlers);
    SIGHUP ignored when the run starts (``nohup``) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping: type[KeyboardInterrupt] | None = None  # what the signal raised
    logger = logging.getLogger("dcmweb")

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        raised = _RAISED[signum]
        if stopping or _deferral.pending is not None:  # being handled
            if raised is HungUp:
                return  # the same hang-up again (see above): the stop goes on
            os._exit(_exit_status(raised))  # the user insists
        if _deferral.depth:
            _deferral.pending = signum  # raised when the bookkeeping is done (deferred)
            return
        stopping = raised
        # Worker threads are not waited for; what they still log (a retry of a request
        # nobody waits for) would only blur the summary and the last line.
        for sink in logger.handlers:
            sink.addFilter(main_thread_only)
        raise raised()

    hangup = signal.getsignal(_HANGUP) if _HANGUP else None
    previous = {number: signal.signal(number, stop) for number in _RAISED
                if number != _HANGUP or hangup is not signal.SIG_IGN}  # nohup: ignored
    try:
        yield
    finally:
        for number, handler in previous.items():
            # A hang-up's second SIGHUP may come after this block, while the closing line
            # is written: it must not kill the process before its exit status is set.
            signal.signal(number, signal.SIG_IGN if stopping is HungUp and number == _HANGUP
                          else handler)
        # Once stopping, worker threads stay muted: the summary and the final
        # 'interrupted' line are written after this block and must come last.
        if not stopping:
            for sink in logger.handlers:
                sink.removeFilter(main_thread_only)


def _exit_status(raised: type[KeyboardInterrupt]) -> int:
    return (raised.exit_status if issubclass(raised, Terminated)
            else ExitStatus.INTERRUPTED)


class _Deferral:
    depth = 0  # deferred() blocks entered and not left
    pending: int | None = None  # the signal that came inside one


_deferral = _Deferral()


@contextmanager
def deferred() -> Iterator[None]:
    """A signal that comes inside is raised when the block ends, so that one file's
    bookkeeping (its count, journal entry and report row) is never cut in half. Only
    while :func:`stop_on_signals` handles the signals (the CLI); a second signal inside
    still ends the process at once."""
    _deferral.depth += 1
    try:
        yield
    finally:
        _deferral.depth -= 1
        if not _deferral.depth and _deferral.pending is not None:
            signum, _deferral.pending = _deferral.pending, None
            signal.raise_signal(signum)  # the handler runs again, now outside


@contextmanager
def resumed() -> Iterator[None]:
    """Inside a :func:`deferred` block, signals are raised again at once (for requests
    that may take minutes); one that came before is raised on entry."""
    depth, _deferral.depth = _deferral.depth, 0
    try:
        if _deferral.pending is not None:
            signum, _deferral.pending = _deferral.pending, None
            signal.raise_signal(signum)
        yield
    finally:
        _deferral.depth = depth


def handed_over(run: Iterator[T], stop: KeyboardInterrupt) -> Iterator[T]:
    """What a run (a generator) still hands over when a signal stopped its caller, not
    the run itself (it came while the caller was recording a result): the signal's
    ``stop`` is passed on to the run (which may note on it what it left undone), and the
    results it yields as it stops (the work it finished) come out here. A run that the
    signal stopped itself has handed them over already; an iterator that is not a
    generator has nothing to hand over."""
    throw = getattr(run, "throw", None)
    if throw is None:
        return
    with suppress(KeyboardInterrupt, StopIteration):
        result = throw(stop)
        while True:
            yield result
            result = next(run)


def main_thread_only(record: logging.LogRecord) -> bool:
    return record.thread == threading.main_thread().ident
