"""The allowed values of every numeric option, in one place: the CLI builds its click
types from them (cligroup.bounded) and the library checks Client's arguments against
them, so ``Client(read_timeout=0)`` is refused like ``--read-timeout 0``.

Kept free of imports beyond errors: ``Client()`` is on every command's start-up path.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import SupportsIndex

from .errors import UsageError
from .record import record

# Seconds (or bytes per second) past this overflow the clock deep inside a request.
LARGEST = 1e9


@record(frozen=True)
class Whole:
    """A whole number from ``low`` to ``high`` (None: no upper bound)."""

    low: int
    high: int | None = None

    def check(self, name: str, value: object) -> int:
        """``value`` if it is within the bounds, else a UsageError naming ``name``."""
        # numpy's integers too; bool is an int, but workers=True is a mistake
        number = None
        if isinstance(value, SupportsIndex) and not isinstance(value, bool):
            number = operator.index(value)
        if number is None:
            raise UsageError(f"{name} must be a whole number ({self}), not {value!r}")
        if number < self.low or (self.high is not None and number > self.high):
            raise UsageError(f"{name} must be {self}, not {value!r}")
        return number

    def __str__(self) -> str:
        return f"from {self.low} to {self.high}" if self.high is not None else \
            f"at least {self.low}"


@record(frozen=True)
class Number:
    """A finite number of at least ``low`` (more than ``low`` when ``low_open``), at
    most LARGEST."""

    low: float
    low_open: bool = False

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return math.isfinite(value) and above and value <= LARGEST

    def check(self, name: str, value: object) -> float:
        """``value`` as a float if it is within the bounds, else a UsageError naming
        ``name``."""
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise UsageError(f"{name} must be a number ({self}), not {value!r}")
        if not self.holds(float(value)):
            raise UsageError(f"{name} must be {self}, finite and at most {LARGEST:.0f}, "
                             f"not {value!r}")
        return float(value)

    def __str__(self) -> str:
        return f"{'above' if self.low_open else 'at least'} {self.low:g}"


WORKERS = Whole(1, 64)
RETRIES = Whole(0, 20)
BACKOFF = Number(0)
CONNECT_TIMEOUT = Number(0.1)
READ_TIMEOUT = Number(0.1)
REQUEST_DEADLINE = Number(1)
LOW_SPEED_LIMIT = Number(0)
LOW_SPEED_TIME = Number(1)
OUTAGE_LIMIT = Number(0)
MAX_RATE = Number(0, low_open=True)  # requests per second
BATCH_SIZE = Whole(1, 1000)
BATCH_BYTES = Whole(1)
LIMIT = Whole(1)
OFFSET = Whole(0)
PAGE_SIZE = Whole(1)
TIMEOUT = Number(1)  # delete and operations wait
QUALITY = Whole(1, 100)  # rendered JPEG
PROGRESS_EVERY = Number(0)
MIN_AGE = Number(0)  # seconds since a file was last modified (store --min-age)
