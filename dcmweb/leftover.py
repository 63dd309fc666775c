"""What a retrieve run that stopped left undone: the items (studies, series, instances,
frames, paths) it never asked for, or whose transfer the stop cut off.

A run takes its items from a lazy source (a listing, a list of paths) a few at a time.
:class:`Tally` follows each from taken to finished, keeping only the unfinished ones, so
that a run stopped by a full disk, an outage or a refused token can say how much is
missing instead of counting one failure. Items are tallied in groups: each on its own,
or (a list of paths) by the path they come from, the unit the user gave.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any, Generic, TypeVar

from .errors import DcmwebError, NotFoundError
from .record import field, record

T = TypeVar("T")

# How long a run stopped by a local write error lists the rest of its source (the server
# still answers) to count what it never asked for; past it the rest is not counted.
REST_COUNT_SECONDS = 5.0


@record
class Leftover:
    """The items a stopped run did not finish, by unit ("study", "series", "instance",
    "frame", "path")."""

    cut_off: Counter[str] = field(default_factory=Counter)  # asked for, then stopped
    never: Counter[str] = field(default_factory=Counter)  # never asked for
    uncounted: bool = False  # the source (a listing) held more: not counted

    @property
    def items(self) -> Counter[str]:
        return self.cut_off + self.never


class _Group:
    """Items that finish together: one item, or the items of one path of a list."""

    __slots__ = ("begun", "closed", "open", "unit")

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.open = 0  # items taken and not finished
        self.begun = False
        self.closed = False  # no more items come to it


class Taken(Generic[T]):
    """An item as the run took it, with the group it finishes (None: not tallied, e.g. a
    listing's failure, which is a result already)."""

    __slots__ = ("group", "item")

    def __init__(self, item: T, group: _Group | None) -> None:
        self.item = item
        self.group = group


class Tally:
    """The unfinished items of one run; its threads begin and finish them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._unfinished: set[_Group] = set()
        self._opened = 0
        self._expected: tuple[int, str] | None = None  # groups in all, and their unit
        self._rest: tuple[Iterator[Any], Callable[[Any], str | None]] | None = None
        self._exhausted = True

    def expect(self, count: int, unit: str) -> None:
        """The run has ``count`` groups of ``unit`` in all (the paths of a list): those
        never opened are counted as never asked for."""
        self._expected = (count, unit)

    def group(self, unit: str) -> _Group:
        group = _Group(unit)
        with self._lock:
            self._opened += 1
            self._unfinished.add(group)
        return group

    def take(self, item: T, group: _Group | None) -> Taken[T]:
        if group is not None:
            with self._lock:
                group.open += 1
        return Taken(item, group)

    def close(self, group: _Group) -> None:
        with self._lock:
            group.closed = True
            self._settle(group)

    def begin(self, taken: Taken[Any]) -> None:
        if taken.group is not None:
            taken.group.begun = True  # only ever set: no lock needed

    def finish(self, taken: Taken[Any]) -> None:
        if taken.group is not None:
            with self._lock:
                taken.group.open -= 1
                self._settle(taken.group)

    def _settle(self, group: _Group) -> None:
        if group.closed and not group.open:
            self._unfinished.discard(group)

    def each(self, items: Iterable[T], unit: Callable[[T], str | None]) -> Iterator[Taken[T]]:
        """Each item as a group of its own (``unit(item)`` None: not tallied); the rest
        of ``items`` can be counted when the run stops (see :meth:`left`)."""
        source = iter(items)
        self._rest = (source, unit)
        # A list is known whole once its last item is taken; a listing when it has ended.
        size = len(items) if isinstance(items, Sized) else None
        self._exhausted = size == 0
        try:
            first = next(source)
        except StopIteration:
            self._exhausted = True
            return
        except NotFoundError:
            # A listing that finds nothing under its path (a study with no instance):
            # nothing of it is left, the error says it all.
            self._exhausted = True
            raise
        for number, item in enumerate(itertools.chain([first], source), start=1):
            kind = unit(item)
            group = None if kind is None else self.group(kind)
            taken = self.take(item, group)
            if group is not None:
                self.close(group)
            self._exhausted = number == size
            yield taken
        self._exhausted = True

    def left(self, *, count_rest: bool = False) -> Leftover:
        """What is unfinished now. ``count_rest``: read the rest of the source given to
        :meth:`each` (a listing: requests to a server that still answers) for at most
        REST_COUNT_SECONDS, and count it as never asked for."""
        left = Leftover()
        with self._lock:
            for group in self._unfinished:
                (left.cut_off if group.begun else left.never)[group.unit] += 1
            if self._expected is not None:
                count, unit = self._expected
                if count > self._opened:  # a count of 0 would read as something left
                    left.never[unit] += count - self._opened
        left.uncounted = not self._exhausted
        if self._rest is not None and left.uncounted and count_rest:
            left.uncounted = not self._count_rest(left.never)
        return left

    def _count_rest(self, never: Counter[str]) -> bool:
        """Add the rest of the source to ``never``; whether all of it was counted."""
        assert self._rest is not None  # given by each()
        source, unit = self._rest
        deadline = time.monotonic() + REST_COUNT_SECONDS
        try:
            for item in source:
                kind = unit(item)
                if kind is not None:
                    never[kind] += 1
                if time.monotonic() > deadline:
                    return False
        except DcmwebError:  # the listing broke: what it gave is counted, the rest is not
            return False
        self._exhausted = True
        return True
