"""Run a function over a lazy stream of work items in a bounded pool of threads.

Bounded, because the items may be millions of files: only a few batches are queued at
once. Results come back in completion order as soon as each is done. The threads are
daemons: on Ctrl-C the process ends at once instead of waiting for uploads in flight.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_STOP = object()
_VALUE = object()  # a value a streaming call yielded on its way
_DONE = object()  # a streaming call has ended


def run_bounded(func: Callable[[T], R], items: Iterable[T], workers: int, *,
                halt: Callable[[], bool] = lambda: False) -> Iterator[R]:
    """Yield ``func(item)`` for every item, using up to ``workers`` threads (see
    :func:`_run`)."""
    return _run(func, items, workers, halt, streams=False)


def run_bounded_streams(func: Callable[[T], Iterable[R]], items: Iterable[T], workers: int
                        ) -> Iterator[R]:
    """Yield what ``func(item)`` yields, for every item, using up to ``workers``
    threads: each value as soon as its thread has it, not when its item is done (a
    series' files as each is saved, not when the whole series is). Stops as
    :func:`run_bounded` does."""
    return _run(func, items, workers, lambda: False, streams=True)


def _run(func: Callable[[T], Any], items: Iterable[T], workers: int,
         halt: Callable[[], bool], *, streams: bool) -> Iterator[Any]:
    """Yield ``func(item)`` for every item (with ``streams``, each value it yields),
    using up to ``workers`` threads.

    When a call raises, no new items start; the calls already running finish and
    their results are yielded; then the first exception is raised. ``halt`` is asked
    before each call (in the worker threads) and after each result: once it says True,
    no new items start either (none is taken from ``items``), and the calls already
    running finish and their results are yielded. When the caller stops (``close()``,
    leaving its loop), no new items start; the calls already running finish in their
    threads and their results are dropped.
    """
    if workers <= 1:
        for item in items:
            if streams:
                yield from func(item)
            else:
                yield func(item)
            if halt():
                return
        return
    tasks: queue.Queue[Any] = queue.Queue()
    # (True, result), (False, exception), or (None, None): halted before it started;
    # with streams, (_VALUE, value) for each value, then (True, _DONE).
    results: queue.Queue[tuple[bool | object | None, Any]] = queue.Queue()

    def work() -> None:
        while (item := tasks.get()) is not _STOP:
            if halt():  # the caller stopped while the item waited in the queue
                results.put((None, None))
                continue
            try:
                if streams:
                    for value in func(item):
                        results.put((_VALUE, value))
                    results.put((True, _DONE))
                else:
                    results.put((True, func(item)))
            except BaseException as error:  # handed to the caller's thread
                results.put((False, error))

    threads = [threading.Thread(target=work, name=f"dcmweb-{n}", daemon=True)
               for n in range(workers)]
    for thread in threads:
        thread.start()
    source = iter(items)
    exhausted = False
    pending = 0
    failure: BaseException | None = None
    halting = False  # halt() said so: nothing new starts
    try:
        while True:
            while (failure is None and not halting and not exhausted
                   and pending < workers * 2):
                try:
                    tasks.put(next(source))
                    pending += 1
                except StopIteration:
                    exhausted = True
            if not pending:
                break
            ok, value = results.get()
            if ok is _VALUE:
                yield value
                continue
            pending -= 1
            if ok and value is not _DONE:
                yield value
            elif ok is False and failure is None:
                failure = value
                pending -= _drop_queued(tasks)  # what has not started yet never will
            if not halting and halt():
                halting = True
                pending -= _drop_queued(tasks)
        if failure is not None:
            raise failure
    except GeneratorExit:
        raise
    except BaseException:
        # Stopped while waiting for the next item or result (Ctrl-C, SIGTERM, a listing
        # that failed): calls that have finished are still handed over, so that the
        # summary counts what is done; running ones are not waited for.
        while True:
            try:
                ok, value = results.get_nowait()
            except queue.Empty:
                break
            if ok and value is not _DONE:
                yield value
        raise
    finally:
        # However the run ends (an error, Ctrl-C, the caller leaving its loop: close()),
        # queued items never start; calls already running finish unread.
        _drop_queued(tasks)
        for _ in threads:
            tasks.put(_STOP)


def _drop_queued(tasks: queue.Queue[Any]) -> int:
    """Take the items no thread has started out of the queue; how many there were."""
    dropped = 0
    while True:
        try:
            tasks.get_nowait()
        except queue.Empty:
            return dropped
        dropped += 1
