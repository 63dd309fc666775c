"""The low-speed limit, both ways: fewer than ``limit`` bytes per second over ``seconds``
seconds ends a transfer, like curl's --speed-limit/--speed-time.

A server that trickles an answer one byte every two seconds, or takes a request's body
one packet at a time, is never cut off by a read timeout (each byte moves in time). The
answer's meter is in body.py, the request's in wire.py; both judge a window that passed
with nothing moving too (0 bytes/s), since no wait goes past :meth:`SpeedMeter.judge_by`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .record import record


@record(frozen=True)
class LowSpeed:
    """Cut a transfer slower than ``limit`` bytes/s for ``seconds`` seconds (0: never)."""

    limit: float = 1024.0
    seconds: float = 120.0


class SpeedMeter:
    """Judges one transfer's rate, window by window. ``too_slow(count, seconds)`` makes the
    exception raised for a window that moved only ``count`` bytes in ``seconds``."""

    def __init__(self, limit: LowSpeed, too_slow: Callable[[int, float], Exception]) -> None:
        self.limit = limit
        self.too_slow = too_slow
        self.on = bool(limit.limit and limit.seconds)
        self.window_start = time.monotonic()
        self.window_bytes = 0

    def judge_by(self) -> float | None:
        """The ``time.monotonic()`` at which the rate is judged next (no wait may pass
        it, so that a total stall is judged too), or None when it never is."""
        return self.window_start + self.limit.seconds if self.on else None

    def add(self, count: int) -> None:
        """``count`` more bytes moved (0: a wait reached :meth:`judge_by` with nothing);
        raises when the window that ended was too slow, else a new one starts."""
        if not self.on:
            return
        self.window_bytes += count
        now = time.monotonic()
        elapsed = now - self.window_start
        if elapsed < self.limit.seconds:
            return
        if self.window_bytes / elapsed < self.limit.limit:
            raise self.too_slow(self.window_bytes, elapsed)
        self.window_start, self.window_bytes = now, 0
