"""Run a function over a lazy stream of work items in a bounded pool of threads.

Bounded, because the items may be millions of files: only a few batches are queued at
once. Results come back in completion order as soon as each is done. The threads are
daemons: on Ctrl-C the process ends at once instead of waiting for uploads in flight.

:func:`run_ahead` is the other shape: steps decided in order on the caller's thread,
whose questions to the server (a series search before a file is sent) are answered on
the threads while the steps before them are decided.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Generator, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .limits import ThreadLimit, start_thread
from .record import record

if TYPE_CHECKING:
    from concurrent.futures import Future  # only run_ahead makes them: not for a retrieve

T = TypeVar("T")
R = TypeVar("R")

_STOP = object()
_VALUE = object()  # a value a streaming call yielded on its way
_DONE = object()  # a streaming call has ended


@record(frozen=True)
class Ready(Generic[R]):
    """An item whose result is known without calling the function (a file decided
    without sending): :func:`run_bounded` yields ``result`` as soon as it takes the item,
    so that such results are not held until the next call finishes."""

    result: R


def run_bounded(func: Callable[[T], R], items: Iterable[T | Ready[R]], workers: int, *,
                halt: Callable[[], bool] = lambda: False) -> Iterator[R]:
    """Yield ``func(item)`` for every item, using up to ``workers`` threads (see
    :func:`_run`); a :class:`Ready` item's result is yielded when it is taken."""
    return _run(func, items, workers, halt, streams=False)


def run_bounded_streams(func: Callable[[T], Iterable[R]], items: Iterable[T], workers: int
                        ) -> Iterator[R]:
    """Yield what ``func(item)`` yields, for every item, using up to ``workers``
    threads: each value as soon as its thread has it, not when its item is done (a
    series' files as each is saved, not when the whole series is). Stops as
    :func:`run_bounded` does."""
    return _run(func, items, workers, lambda: False, streams=True)


def _run(func: Callable[[T], Any], items: Iterable[Any], workers: int,
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
            if isinstance(item, Ready):
                yield item.result
            elif streams:
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

    # Started before any item is taken: a limit that refuses them stops the run before
    # anything of it is sent.
    threads: list[threading.Thread] = []
    try:
        for number in range(workers):
            threads.append(start_thread(work, f"dcmweb-{number}", what=(
                f"{workers} worker threads" + (f" (only {len(threads)} started)"
                                               if threads else ""))))
    except ThreadLimit:
        for _ in threads:
            tasks.put(_STOP)
        raise
    source = iter(items)
    exhausted = False
    pending = 0
    failure: BaseException | None = None
    halting = False  # halt() said so: nothing new starts
    try:
        while True:
            while (failure is None and not halting and not exhausted
                   and pending < workers * 2):
                item = next(source, _STOP)
                if item is _STOP:
                    exhausted = True
                elif isinstance(item, Ready):
                    yield item.result
                else:
                    tasks.put(item)
                    pending += 1
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
        pending -= _drop_queued(tasks)
        for _ in threads:
            tasks.put(_STOP)
        if not pending:
            # Every call has ended: the threads are idle, and end at once. A library
            # call leaves none behind (calls still running are not waited for).
            for thread in threads:
                thread.join()


def _drop_queued(tasks: queue.Queue[Any]) -> int:
    """Take the items no thread has started out of the queue; how many there were."""
    dropped = 0
    while True:
        try:
            tasks.get_nowait()
        except queue.Empty:
            return dropped
        dropped += 1


@record(frozen=True)
class Question:
    """What a step asks (a request to the server): ``ask()`` answers it. Questions of one
    ``group`` (a series) share their work: the first runs alone, the others once it has
    ended, so that one thread searches the series and the others find it remembered."""

    ask: Callable[[], Any]
    group: Hashable = None


# A step: a generator that does its local work, yields a Question whenever it needs an
# answer (sent back into it), and returns its result.
Step = Generator[Question, Any, R]


def run_ahead(steps: Iterable[tuple[Hashable, Step[R]]], workers: int, ahead: int, *,
              halt: Callable[[], bool] = lambda: False) -> Iterator[R]:
    """Yield each step's result, in the order of ``steps``, each step run on the caller's
    thread; the questions of up to ``ahead`` steps taken ahead are answered meanwhile on
    up to ``workers`` threads. A step starts (its local work up to its first question)
    when it is taken, and goes on with the answer when its turn comes; a step whose key
    is that of a step not yet done waits to be taken until that one is (a file named
    twice is decided once the first is). A question that raised raises in its step's
    turn; the steps taken after it stay where they are, as they do once ``halt()`` says
    True (asked before each turn). With one worker, each question is answered on the
    caller's thread in its step's turn, and nothing is taken ahead.
    """
    if workers <= 1:
        for _, step in steps:
            yield _answered_inline(step)
        return
    helpers = _Helpers(workers)
    window: deque[_Turn[R]] = deque()
    keys: Counter[Hashable] = Counter()  # the keys of the steps in the window
    source = iter(steps)
    held: tuple[Hashable, Step[R]] | None = None  # taken, waiting for its key's turn
    try:
        while True:
            while len(window) < ahead:
                held = held or next(source, None)
                if held is None or keys[held[0]]:
                    break
                turn = _Turn(*held)
                held = None
                keys[turn.key] += 1
                window.append(turn)
                turn.go_on(helpers, None)
            if not window or halt():
                return
            turn = window[0]
            value = turn.result(helpers)
            window.popleft()
            keys[turn.key] -= 1
            if not keys[turn.key]:
                del keys[turn.key]  # millions of files: only the window's keys are kept
            yield value
    finally:
        helpers.close()


def _answered_inline(step: Step[R]) -> R:
    answer = None
    while True:
        try:
            question = step.send(answer)
        except StopIteration as end:
            return end.value  # type: ignore[no-any-return]
        answer = question.ask()


class _Turn(Generic[R]):
    """A step in the window, and the answer it waits for."""

    def __init__(self, key: Hashable, step: Step[R]) -> None:
        self.key = key
        self.step = step
        self.asked: Future[Any] | None = None  # None: done
        self.value: R | None = None

    def go_on(self, helpers: _Helpers, answer: Any) -> None:
        try:
            question = self.step.send(answer)
        except StopIteration as end:
            self.asked, self.value = None, end.value
        else:
            self.asked = helpers.ask(question)

    def result(self, helpers: _Helpers) -> R:
        while self.asked is not None:
            self.go_on(helpers, self.asked.result())
        return self.value  # type: ignore[return-value]  # set when the step returned


class _Helpers:
    """Up to ``workers`` daemon threads (started as questions come) that answer questions:
    Ctrl-C does not wait for them."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.threads = 0
        self.tasks: queue.Queue[Any] = queue.Queue()
        self.started: list[threading.Thread] = []
        self.lock = threading.Lock()
        # The groups whose first question is being answered: the questions waiting for it.
        self.waiting: dict[Hashable, list[tuple[Question, Future[Any]]]] = {}
        self.closed = False
        self.unanswered = 0  # questions asked and not answered yet

    def ask(self, question: Question) -> Future[Any]:
        from concurrent.futures import Future

        future: Future[Any] = Future()
        with self.lock:
            self.unanswered += 1
        future.add_done_callback(self._answered)
        with self.lock:
            group = question.group
            if group is not None:
                if group in self.waiting:
                    self.waiting[group].append((question, future))
                    return future
                self.waiting[group] = []
                future.add_done_callback(lambda _: self._release(group))
            self._put(question, future)
        return future

    def _answered(self, _: Future[Any]) -> None:
        with self.lock:
            self.unanswered -= 1

    def _release(self, group: Hashable) -> None:
        with self.lock:
            for question, future in self.waiting.pop(group, []):
                self._put(question, future)

    def _put(self, question: Question, future: Future[Any]) -> None:
        if self.closed:
            return
        self.tasks.put((question, future))
        if self.threads < self.workers:
            try:
                self.started.append(start_thread(self._work, f"dcmweb-ask-{self.threads + 1}",
                                                 what=f"{self.workers} worker threads"))
            except ThreadLimit:
                if not self.threads:
                    raise  # no thread would ever answer it
                self.workers = self.threads  # a limit: the threads there are answer it
                return
            self.threads += 1

    def _work(self) -> None:
        while (task := self.tasks.get()) is not _STOP:
            question, future = task
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(question.ask())
                except BaseException as error:  # handed to the step, in its turn
                    future.set_exception(error)

    def close(self) -> None:
        """Questions not started never are; those being answered end unread. When every
        question was answered, the threads are idle: they are waited for (a library call
        leaves none behind)."""
        with self.lock:
            self.closed = True
            _drop_queued(self.tasks)
            for _ in range(self.threads):
                self.tasks.put(_STOP)
            idle = not self.unanswered
        if idle:
            for thread in self.started:
                thread.join()
