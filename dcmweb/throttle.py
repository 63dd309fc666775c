"""The request gate: one per :class:`~dcmweb.http.Http`, shared by every worker thread.

Why one gate and not a retry budget per request: when the server is down or
throttling, eight workers each burning their own six attempts end a long run in
seconds while the server comes back a minute later. Through the gate they wait on
one shared backoff instead, and the run gives up only when the server has answered
nothing for ``outage_limit`` seconds in a row.

The gate also shapes the load (issue 8):
- AIMD concurrency: at most ``limit`` requests in flight; the limit starts at the
  worker count, halves when the server pushes back (below) on a request sent after the
  last cut (a burst of refusals to requests already in flight is one cut), and grows by
  one after ``limit`` successes in a row, at most once per ``GROW_INTERVAL`` (a quota
  needs time to show).
- A learned pace on such a 429 (a quota counts requests per second, not in flight):
  the pace becomes a little under the rate the server accepted (every 2xx, searches
  included: the quota counts them) over the last ``RATE_WINDOW``; while requests go
  out at that pace it grows, quickly until it nears the rate measured at the last 429
  and slowly after that.
- The server pushes back when ``PUSHBACK_COUNT`` of the last ``PUSHBACK_WINDOW`` answers
  (2xx, 429 and 503) are 429s or 503s. A sparse 429 or 503 among successes is noise,
  not a quota or an overload: it cuts nothing and teaches no pace. Each had halved the
  concurrency and cut the pace to 95 % of a rate the waits themselves had lowered:
  random 429s to 2 % of a chaos run's uploads drove the pace to 1/s, and 2,000 files
  took 425 s instead of 12. Not "two in a row" either: a refusal comes back in
  milliseconds, before the successes sent with it, so one of eight requests sent
  together after a shared wait was "in a row" a fifth of the time. A quota or an
  overload refuses most requests in flight (a quota also grows the pace past itself
  until it does).
- ``Retry-After`` is shared: every worker waits until then, not only the one that got it
  (but for a request's own 429 or 503, below).
- A lone failure (a drop or a 502 without Retry-After; a 429 or 503, see below), one
  whose news before it was a success, is that request's own: the server works, so it
  neither pauses the other workers nor starts an outage; the request waits its own
  backoff (http.py). A second failure in a row is an outage's, waited out together.
  (Every worker had paused 0.5-1 s for each failure: 8 % of uploads dropped cost a bulk
  store 70 % of its rate.) A lone 429 or 503 is the request's own while the server does
  not push back (above), Retry-After or not: that request waits it alone. Once it
  pushes back, every worker waits, for the quota or the capacity they share.
- ``max_rate``: a token bucket (one token at a time) to stay under a project quota; a
  learned pace never goes above it.

A request holds its slot while it is sent and its headers come back, not while a
streamed body is read (the caller reads it at its own pace).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from itertools import takewhile

from .bounds import MAX_RATE
from .optionnames import option
from .record import record

log = logging.getLogger("dcmweb")

GROW_INTERVAL = 1.0
# The learned pace: how far under the accepted rate it starts after a 429, how much
# history the accepted rate is measured over (and at least how long, so the first few
# requests that rode the server's burst allowance do not pass for its rate), and how
# fast it grows per second while the rate reaches it (PACE_IN_USE of it).
# The history spans a minute because Google counts a project's quota per minute: a
# minute's allowance is used up in a burst, then every request gets a 429 until the next
# minute, and over a shorter history the rate that "got in" would read as nothing.
PACE_MARGIN = 0.95
RATE_WINDOW = 60.0
MIN_RATE_WINDOW = 0.5
PACE_GROWTH_UNKNOWN = 0.20
PACE_GROWTH_NEAR_CEILING = 0.02
NEAR_CEILING = 0.9
PACE_IN_USE = 0.8
PACE_MIN_SAMPLES = 10
# The server pushes back: so many of the last answers are 429/503 (see the module's doc).
PUSHBACK_WINDOW = 8
PUSHBACK_COUNT = 3
LONG_RATE_WAIT = 5.0  # a wait for the rate longer than this is logged at info, not debug


class Outcome(Enum):
    OK = "ok"  # a 2xx (or an accepted status): the server works
    ANSWERED = "answered"  # an error answer that is not unavailability (4xx, 500)
    THROTTLED = "throttled"  # 503: the server asks us to slow down
    OVER_QUOTA = "over quota"  # 429: the same, and a request rate to learn
    UNAVAILABLE = "unavailable"  # 502/504/408, dropped, refused, timed out, DNS
    NEUTRAL = "neutral"  # says nothing about the server (a stale pooled connection)


@record
class GateStats:
    """What the summary can tell: how long the server was unavailable, retries made."""

    retries: int = 0
    throttled: int = 0  # 429/503 answers received
    unavailable_seconds: float = 0.0  # closed outages; see Gate.unavailable_seconds


class Gate:
    def __init__(
        self,
        *,
        max_in_flight: int = 10,
        outage_limit: float = 300.0,
        max_rate: float | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_in_flight = max(1, max_in_flight)
        self.limit = self.max_in_flight
        self.outage_limit = outage_limit
        self.max_rate = max_rate
        self.interval = 1.0 / max_rate if max_rate else 0.0
        self.pace: float | None = None  # learned requests/s after a 429; None: unpaced
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stats = GateStats()
        self._clock = clock
        self._cond = threading.Condition()
        self._cancelled = False
        self._in_flight = 0
        self._waiting = 0  # threads in enter(), waiting for their turn
        self._resume_at = 0.0  # shared backoff / Retry-After: nobody sends before this
        self._asked_until = 0.0  # the part of _resume_at the server asked for (Retry-After)
        self._next_token = 0.0  # token bucket: the next send time allowed by max_rate
        self._failures = 0  # consecutive failure waves, for the backoff exponent
        self._wave_started = float("-inf")
        self._last_cut = float("-inf")
        self._last_change = float("-inf")
        self._successes = 0
        self._down_since: float | None = None
        # When the first failure since the last answer was sent: a lone failure is no
        # outage, but when another follows, the outage began with it.
        self._failing_since: float | None = None
        self._last_failed = 0.0  # when the latest failure came back (own or not)
        # The last answers, newest last: True for a 429 or 503, False for a 2xx.
        self._recent: deque[bool] = deque(maxlen=PUSHBACK_WINDOW)
        self._failed_why: str | None = None  # and what it was: "HTTP 503", "connection refused"
        self.last_ok = float("-inf")
        self._accepted: deque[float] = deque()  # when recent 2xx answers came back
        self._first_sent: float | None = None
        self._pace_grown_at = 0.0
        self._ceiling: float | None = None  # the accepted rate when the last 429 came

    # -- waiting ------------------------------------------------------------------------
    def enter(self, deadline: float, *, within_outage_limit: bool = True) -> float | None:
        """Wait for a slot, the shared backoff and a rate token; the send time, or None
        when ``deadline`` comes first, or the outage limit before the token (unless not
        ``within_outage_limit``: a check that settles what a write left once the run gave
        up). Raises :class:`Cancelled` after :meth:`cancel`."""
        with self._cond:
            self._waiting += 1
            try:
                return self._enter(deadline, within_outage_limit)
            finally:
                self._waiting -= 1

    def _enter(self, deadline: float, within_outage_limit: bool) -> float | None:
        told = False  # the wait for a rate token is logged once, not at every wake-up
        while True:
            if self._cancelled:
                raise Cancelled()
            now = self._clock()
            ready_at = max(self._resume_at, self._next_token)
            # One try at the outage limit, none past it: the backoff ends there, but a
            # rate token may come later (--max-rate 1: a limit of 3 s gave up at 3.8 s).
            # Such a request waits for the limit only (the outage may end meanwhile).
            limit = self._give_up_at() if within_outage_limit else math.inf
            give_up_at = limit if self._next_token > limit else math.inf
            # A shared wait that ends past the deadline: waiting for it would only end
            # in the same failure later (the wait is only ever lengthened meanwhile).
            if now >= deadline or self._resume_at >= deadline or now >= give_up_at:
                return None
            if now >= ready_at and self._in_flight < self.limit:
                self._in_flight += 1
                if self._first_sent is None:
                    self._first_sent = now
                interval = self._interval()
                if interval:
                    self._next_token = max(now, self._next_token) + interval
                return now
            if (not told and now < self._next_token and self._next_token >= self._resume_at
                    and give_up_at == math.inf):
                told = True
                self._log_rate_wait(self._next_token - now)
            wake = deadline if self._in_flight >= self.limit else min(ready_at, deadline)
            self._cond.wait(max(0.0, min(wake - now, give_up_at - now, 1.0)))

    def new_call(self) -> None:
        """A library call begins: when no other request is in flight or waiting, an
        outage seen by earlier calls is over for the clock (its time counted in the
        stats up to its last failure) and the backoff starts again from its first step.
        Else the time between calls, with nothing asked, would count as outage: a third
        failing call gave up at once, reporting the three calls' time and the gaps. A
        Retry-After the server sent still holds."""
        with self._cond:
            if self._in_flight or self._waiting:
                return  # another call is under way: it shares the clock
            if self._down_since is not None:
                self.stats.unavailable_seconds += max(0.0, self._last_failed - self._down_since)
                self._down_since = None
            self._failing_since = None
            self._failures = 0
            self._wave_started = float("-inf")
            self._resume_at = self._asked_until

    def wait_left(self) -> tuple[float, bool]:
        """Seconds until requests may be sent again, and whether the server asked for
        that wait (Retry-After) rather than the shared backoff."""
        with self._cond:
            now = self._clock()
            return max(0.0, self._resume_at - now), self._asked_until >= self._resume_at > now

    def leave(self, outcome: Outcome, sent_at: float, retry_after: float | None = None,
              why: str | None = None, *, ends_outage: bool = True) -> bool:
        """Give the slot back and learn from the outcome (``why``: a failure's cause, for
        :meth:`outage`). True for a failure that is this request's own (see the module's
        doc): the gate holds no one for it, and the caller waits its own backoff before
        a retry. An answer of a request that may not end an outage (``ends_outage``
        False, see Http.request) is neutral, but a 2xx still counts for the rate that got
        in: the searches after lost answers were half of what a paced run sent, and
        leaving them out of the rate cut the pace to half of it."""
        own = False
        with self._cond:
            self._in_flight -= 1
            now = self._clock()
            if outcome is Outcome.OK:
                self._recent.append(False)
                self._accepted.append(now)
                while self._accepted[0] < now - RATE_WINDOW:
                    self._accepted.popleft()
                self._grow_pace(now)
            if outcome is Outcome.NEUTRAL or (
                    not ends_outage and outcome in (Outcome.OK, Outcome.ANSWERED)):
                pass
            elif outcome in (Outcome.OK, Outcome.ANSWERED):
                self._server_answered(now)
                if outcome is Outcome.OK:
                    self.last_ok = now
                    self._successes += 1
                    if (self._successes >= self.limit and self.limit < self.max_in_flight
                            and now - self._last_change >= GROW_INTERVAL):
                        self.limit += 1
                        self._successes = 0
                        self._last_change = now
            else:
                own = self._server_failed(outcome, sent_at, now, retry_after)
                self._failed_why = why
            self._cond.notify_all()
        return own

    def cancel(self) -> None:
        """Wake every waiting thread with :class:`Cancelled` (Ctrl-C, close)."""
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def carried_out(self, sent_at: float) -> None:
        """A write sent at ``sent_at`` whose answer was lost was carried out (a search
        finds what it sent): the server was working, and an outage that began with that
        write's failure is none (its time is not counted as unavailable)."""
        with self._cond:
            if self._failing_since is not None and self._failing_since >= sent_at:
                self._failing_since = None
            if self._down_since is not None and self._down_since >= sent_at:
                self._down_since = None
                self._failures = 0
                self._resume_at = self._asked_until
                self._cond.notify_all()

    # -- what the loop asks -------------------------------------------------------------
    def outage(self) -> tuple[float, str | None]:
        """How long the server has been answering nothing useful (0 when it is up), and
        what the latest request got instead (``HTTP 503``, ``connection refused``; None
        when up or not known)."""
        with self._cond:
            if self._down_since is None:
                return 0.0, None
            return self._clock() - self._down_since, self._failed_why

    def outage_seconds(self) -> float:
        return self.outage()[0]

    def outage_over_limit(self) -> bool:
        return self.outage_seconds() >= self.outage_limit

    def rate_past_outage_limit(self) -> str | None:
        """What holds the next try past the limit of the outage going on (``--max-rate``,
        or the pace learned from 429s), when it does: the run gives up there, as no try
        can come in time (see _enter). None while one can."""
        with self._cond:
            return self._rate_holder() if self._next_token > self._give_up_at() else None

    def outage_left(self, started: float) -> float:
        """Seconds until the run gives up on the outage going on, or on one that a failure
        sent at ``started`` begins."""
        with self._cond:
            since = started if self._down_since is None else self._down_since
            return max(0.0, since + self.outage_limit - self._clock())

    @property
    def unavailable_seconds(self) -> float:
        """Total time the server was unavailable, including an outage still going on."""
        return self.stats.unavailable_seconds + self.outage_seconds()

    # -- internals (called under the lock) ----------------------------------------------
    def _give_up_at(self) -> float:
        """When the run gives up on the outage going on (never while the server is up)."""
        return math.inf if self._down_since is None else self._down_since + self.outage_limit

    def _log_rate_wait(self, seconds: float) -> None:
        """Say why a request waits: a long silent pause (--max-rate 1/m) looks like a hang."""
        log.log(logging.INFO if seconds > LONG_RATE_WAIT else logging.DEBUG,
                "waiting %.1f s before the next request, for %s", seconds, self._rate_holder())

    def _rate_holder(self) -> str:
        """What spaces the requests: ``--max-rate``, or the pace learned from 429s."""
        paced = 1.0 / self.pace if self.pace else 0.0
        return (option("max_rate") if self.interval >= paced
                else "the pace learned from the server's 429 answers")

    def _interval(self) -> float:
        paced = 1.0 / self.pace if self.pace else 0.0
        return max(self.interval, paced)

    def _accepted_rate(self, now: float) -> float:
        """2xx answers per second over the last RATE_WINDOW (shared waits included, so
        the estimate errs low)."""
        started = self._first_sent if self._first_sent is not None else now
        window = min(RATE_WINDOW, max(MIN_RATE_WINDOW, now - started))
        return self._accepted_since(now - window) / window

    def _accepted_since(self, cutoff: float) -> int:
        """2xx answers since ``cutoff``, counted from the newest: on every answer while
        paced this must not walk the whole window."""
        return sum(1 for _ in takewhile(lambda t: t >= cutoff, reversed(self._accepted)))

    def _learn_pace(self, now: float) -> None:
        """A 429 to a request sent after the last cut: pace a little under what got in.
        Too few answers to measure a rate (a 429 at the very start, a lone one, or a
        quota window used up long ago) teach nothing and keep the pace: one of 1/s from
        no data would take minutes to grow back."""
        if self._accepted_since(now - RATE_WINDOW) < PACE_MIN_SAMPLES:
            return
        self._ceiling = self._accepted_rate(now)
        pace = max(1.0, PACE_MARGIN * self._ceiling)
        if self.pace is not None:
            pace = min(pace, PACE_MARGIN * self.pace)
        self.pace = min(pace, self.max_rate) if self.max_rate else pace
        self._pace_grown_at = now
        log.debug("HTTP 429: about %.1f requests/s got in; pacing at %.1f/s",
                  self._ceiling, self.pace)

    def _grow_pace(self, now: float) -> None:
        if self.pace is None:
            return
        elapsed = min(1.0, now - self._pace_grown_at)
        self._pace_grown_at = now
        if self._accepted_since(now - 1.0) < PACE_IN_USE * self.pace:
            return  # the pace is not what limits the rate: growing it would prove nothing
        near = self._ceiling is not None and self.pace >= NEAR_CEILING * self._ceiling
        growth = PACE_GROWTH_NEAR_CEILING if near else PACE_GROWTH_UNKNOWN
        self.pace *= 1.0 + growth * elapsed
        if self.max_rate:
            self.pace = min(self.pace, self.max_rate)

    def _server_answered(self, now: float) -> None:
        self._failures = 0
        self._failing_since = None
        if self._down_since is not None:
            self.stats.unavailable_seconds += now - self._down_since
            self._down_since = None

    def _server_failed(self, outcome: Outcome, sent_at: float, now: float,
                       retry_after: float | None) -> bool:
        """Learn from a failure; True when it is the request's own (nobody waits)."""
        self._successes = 0
        throttled = outcome in (Outcome.THROTTLED, Outcome.OVER_QUOTA)
        pushed_back = False
        if throttled:
            self.stats.throttled += 1
            self._recent.append(True)
            pushed_back = sum(self._recent) >= PUSHBACK_COUNT
            if pushed_back and sent_at >= self._last_cut:
                if outcome is Outcome.OVER_QUOTA:
                    self._learn_pace(now)
                self.limit = max(1, self.limit // 2)
                self._last_cut = self._last_change = now
        # The news before this failure was a success: the server works (a failure that
        # follows another, or comes first, may be an outage's). A 429 or 503 is then the
        # request's own unless the server pushes back, even with a Retry-After: the
        # request waits it alone (every worker had waited each random 429's 1 s).
        own = self.last_ok > self._last_failed and (
            not pushed_back if throttled else retry_after is None)
        self._last_failed = now
        if self._failing_since is None:
            self._failing_since = sent_at
        if own:
            return True
        if self._down_since is None:
            self._down_since = self._failing_since
        if retry_after is not None:  # the server said when: no guessing
            self._asked_until = max(self._asked_until, now + retry_after)
            self._resume_at = max(self._resume_at, self._asked_until)
        elif sent_at >= self._wave_started:
            # Requests sent before the current wave began failed for the same reason: one
            # wave, one step up the backoff (eight workers failing together are one failure).
            self._failures += 1
            self._wave_started = now
            ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (self._failures - 1))
            # Never past the outage limit: one more try at the limit, not a full step later
            # (a limit of 10 s gave up after 11-17 s).
            self._resume_at = max(self._resume_at, min(
                now + jitter(ceiling / 2, ceiling), self._give_up_at()))
        return False


def jitter(low: float, high: float) -> float:
    """A random point between ``low`` and ``high``, from os.urandom: the getrandom system
    call opens no file, where importing ``random`` on the first retry does (random.py),
    and a run out of descriptors (ulimit -n) crashed on it instead of retrying."""
    return low + (high - low) * int.from_bytes(os.urandom(7), "big") / (1 << 56)


class Cancelled(Exception):
    """The gate was cancelled while a thread waited in it."""


_RATE_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str) -> float:
    """Requests per second from ``N``, ``N/s``, ``N/m`` or ``N/h``; ValueError otherwise."""
    number, _, unit = text.strip().partition("/")
    per = _RATE_UNITS.get(unit.strip().lower())
    try:
        value = float(number) if per is not None and number.strip() else float("nan")
    except ValueError:  # "abc": the message below says what a rate is, not float()'s
        value = float("nan")
    if not MAX_RATE.holds(value):
        raise ValueError(f"invalid rate {text!r}: write N, N/s, N/m or N/h with N > 0")
    return value / (per or 1.0)
