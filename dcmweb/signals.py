"""Stopping a run: Ctrl-C (SIGINT) and SIGTERM end every command within a second.

SIGTERM (what ``timeout``, systemd and Kubernetes send) is turned into
:class:`~dcmweb.errors.Terminated`, a kind of KeyboardInterrupt, raised in the main
thread: every cleanup written for Ctrl-C then runs for it too (the summary so far,
partial files removed, the session closed so that worker threads stop waiting). The
main thread never waits for a worker thread without a signal reaching it (queues,
futures and events wake up for signals), and worker threads are daemons, so nothing
holds the exit. A second signal while stopping ends the process at once.
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

from .errors import ExitStatus, Terminated

T = TypeVar("T")


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside, SIGINT raises KeyboardInterrupt and SIGTERM raises Terminated (in
    the main thread only: elsewhere Python cannot install signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = False
    logger = logging.getLogger("dcmweb")

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        terminated = signum == signal.SIGTERM
        if stopping or _deferral.pending is not None:  # being handled: the user insists
            os._exit(ExitStatus.TERMINATED if terminated else ExitStatus.INTERRUPTED)
        if _deferral.depth:
            _deferral.pending = signum  # raised when the bookkeeping is done (deferred)
            return
        stopping = True
        # Worker threads are not waited for; what they still log (a retry of a request
        # nobody waits for) would only blur the summary and the last line.
        for sink in logger.handlers:
            sink.addFilter(main_thread_only)
        raise Terminated() if terminated else KeyboardInterrupt()

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT,
                                                                   signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        # Once stopping, worker threads stay muted: the summary and the final
        # 'interrupted' line are written after this block and must come last.
        if not stopping:
            for sink in logger.handlers:
                sink.removeFilter(main_thread_only)


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


def handed_over(run: Iterator[T]) -> Iterator[T]:
    """What a run (a generator) still hands over when a signal stopped its caller, not
    the run itself (it came while the caller was recording a result): the signal is
    passed on to the run, and the results it yields as it stops (the work it finished)
    come out here. A run that the signal stopped itself has handed them over already;
    an iterator that is not a generator has nothing to hand over."""
    throw = getattr(run, "throw", None)
    if throw is None:
        return
    with suppress(KeyboardInterrupt, StopIteration):
        result = throw(KeyboardInterrupt())
        while True:
            yield result
            result = next(run)


def main_thread_only(record: logging.LogRecord) -> bool:
    return record.thread == threading.main_thread().ident
