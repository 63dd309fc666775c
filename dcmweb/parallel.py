"""Run a function over a lazy stream of work items in a bounded thread pool.

Bounded, because the items may be millions of files: only a few batches are in
flight at once. Results come back in completion order as soon as each is done.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def run_bounded(func: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """Yield ``func(item)`` for every item, using up to ``workers`` threads.

    When a call raises, no new items start; the calls already running finish and
    their results are yielded; then the first exception is raised.
    """
    if workers <= 1:
        for item in items:
            yield func(item)
        return
    pending: set[cf.Future[R]] = set()
    failure: BaseException | None = None
    source = iter(items)
    executor = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dcmweb")
    try:
        while True:
            while failure is None and len(pending) < workers * 2:
                item = next(source, None)
                if item is None:
                    break
                pending.add(executor.submit(func, item))
            if not pending:
                break
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in done:
                error = future.exception()
                if error is None:
                    yield future.result()
                elif failure is None:
                    failure = error
        if failure is not None:
            raise failure
    finally:
        # On Ctrl-C (or the caller closing the generator) drop what has not started.
        executor.shutdown(wait=failure is not None, cancel_futures=True)
