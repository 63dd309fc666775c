"""Injected faults and the log of received requests.

Both are shared by all handler threads, so every change happens under a lock.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..redact import HIDDEN, hide_query_credentials, is_credential_header


@dataclass
class Fault:
    """What to do to the next `count` requests that match `method`, `path_contains` and
    `body_contains` (text the request's body holds: a file's UID, to fail the requests
    that carry that file, as a proxy refusing it would).

    `after=True` handles the request as usual and then drops the connection instead of
    answering: the work is done but the answer is lost; with a `status` too, it answers
    that status instead (a redirect after the work is done). `cut=True` likewise, after
    sending the status line, the header fields and the first half of the body. `stall=S`
    sends that half too, then holds the connection open S seconds before closing it (a
    server that stops sending mid-answer). A 3xx `status` sends `location` (default: the
    request's own path and query).
    """

    status: int | None = None
    count: int = 1
    retry_after: str | None = None
    drop: bool = False
    delay: float = 0.0
    method: str | None = None
    path_contains: str | None = None
    after: bool = False
    cut: bool = False
    location: str | None = None
    stall: float = 0.0
    body_contains: str | None = None

    def matches(self, method: str, path: str, body: Path | None = None) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path_contains is not None and self.path_contains not in path:
            return False
        return self.body_contains is None or (
            body is not None and self.body_contains.encode() in body.read_bytes())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        """Build from the JSON body of `POST /_control/faults`; raises ValueError."""
        known = {
            "status",
            "count",
            "retry_after",
            "drop",
            "delay",
            "method",
            "path_contains",
            "after",
            "cut",
            "location",
            "stall",
            "body_contains",
        }
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        fault = cls(**data)
        fault.validate()
        return fault

    def validate(self) -> None:
        # The JSON of /_control/faults brings any type: a string status or a "false"
        # drop must be refused here, not fail (or act) on every request it meets.
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None and item.default is None:
                continue
            kinds = _FIELD_TYPES[item.name]
            if isinstance(value, bool) != (kinds == (bool,)) or not isinstance(value, kinds):
                shown = json.dumps(value, default=repr)
                raise ValueError(f"{item.name} must be {_TYPE_NAMES[kinds]}, not {shown}")
        if self.status is not None and not (100 <= self.status <= 599):
            raise ValueError("status must be an HTTP status code")
        if self.count < 1:
            raise ValueError("count must be at least 1")
        for name in ("delay", "stall"):  # NaN and Infinity too: JSON brings them
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite number of seconds, at least 0, not "
                                 f"{getattr(self, name)}")


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "status": (int,), "count": (int,), "retry_after": (str,), "drop": (bool,),
    "delay": (int, float), "method": (str,), "path_contains": (str,), "after": (bool,),
    "cut": (bool,), "location": (str,), "stall": (int, float), "body_contains": (str,),
}  # fmt: skip
_TYPE_NAMES: dict[tuple[type, ...], str] = {
    (int,): "an integer", (int, float): "a number", (str,): "a string", (bool,): "true or false",
}  # fmt: skip


class Quota:
    """A request quota like a cloud project's: ``rate`` requests per second (a token
    bucket holding up to ``burst``); above it the server answers 429 with Retry-After."""

    message = "Quota exceeded: too many requests per second"

    def __init__(self, rate: float, burst: float | None = None,
                 retry_after: str = "1") -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self.retry_after = retry_after
        self.allowed = 0
        self.refused = 0
        self._tokens = self.burst
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                self.allowed += 1
                return True
            self.refused += 1
            return False


class WindowQuota:
    """A quota counted per fixed window, as Google counts a project's requests per
    minute: ``limit`` requests from each ``window`` seconds' start, then 429 until the
    next window. Retry-After only when ``retry_after`` is set (Google's 429s may not
    say when): a client must find the pace by itself."""

    message = "Quota exceeded: too many requests in this quota window"

    def __init__(self, limit: int, window: float = 60.0, retry_after: str | None = None) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be at least 1 and window positive")
        self.limit = limit
        self.window = window
        self.retry_after = retry_after
        self.allowed = 0
        self.refused = 0
        self._start = time.monotonic()
        self._used = 0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._start >= self.window:
                self._start += (now - self._start) // self.window * self.window
                self._used = 0
            if self._used < self.limit:
                self._used += 1
                self.allowed += 1
                return True
            self.refused += 1
            return False


# What a chaos run injects, by name: the fault each kind stands for.
CHAOS_KINDS: dict[str, dict[str, Any]] = {
    "lost": {"after": True},  # stored, then the connection dropped: the answer is lost
    "cut": {"cut": True},  # stored, then the answer cut half-way through its body
    "drop": {"drop": True},  # dropped before the request is handled
    "500": {"status": 500},
    "503": {"status": 503, "retry_after": "0"},
    "429": {"status": 429, "retry_after": "1"},
    "307": {"status": 307},
    "302": {"status": 302},
}


class Chaos:
    """Faults at random with a fixed seed: each matching request gets kind K with
    probability ``rates[K]``. ``injected`` counts what was done, by kind."""

    def __init__(self, seed: int, rates: dict[str, float], method: str | None = "POST") -> None:
        unknown = set(rates) - set(CHAOS_KINDS)
        if unknown:
            raise ValueError(f"unknown chaos kinds: {', '.join(sorted(unknown))}")
        if sum(rates.values()) > 1:
            raise ValueError("chaos rates add up to more than 1")
        self.random = random.Random(seed)
        self.rates = rates
        self.method = method.upper() if method else None  # matched in any case, as Fault's
        self.injected: Counter[str] = Counter()

    def pick(self, method: str) -> Fault | None:
        """Called under the FaultQueue lock: the draws happen in request order."""
        if self.method is not None and method.upper() != self.method:
            return None
        draw = self.random.random()
        for kind, rate in self.rates.items():
            if draw < rate:
                self.injected[kind] += 1
                return Fault(**CHAOS_KINDS[kind])
            draw -= rate
        return None


class FaultQueue:
    """FIFO list of faults; the first matching one is used and counted down. Then, when
    set, the chaos generator may pick a random one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.chaos: Chaos | None = None

    def set_chaos(self, chaos: Chaos | None) -> None:
        with self._lock:
            self.chaos = chaos

    def add(self, fault: Fault) -> None:
        fault.validate()
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str, body: Path | None = None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path, body):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
            return self.chaos.pick(method) if self.chaos is not None else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)


@dataclass
class RequestRecord:
    """One received request. Also readable like a dict: record["status"]."""

    method: str
    path: str
    headers: dict[str, str]
    body_length: int
    body_sha256: str
    status: int | None = None
    complete: bool = True  # False when the client went away mid-body
    time: float = field(default=0.0)
    # The client's TCP port: requests with the same one came over one connection.
    client_port: int = 0

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        """The record as ``GET /_control/requests`` shows it: credentials are hidden
        (``Bearer ***``, ``?access_token=***``), since a client may send a real Google
        token to a test server."""
        shown = asdict(self)
        shown["path"] = hide_query_credentials(self.path)
        shown["headers"] = {name: _hidden(name, value) for name, value in self.headers.items()}
        return shown


def _hidden(name: str, value: str) -> str:
    if not is_credential_header(name, value):
        return value
    scheme, space, _ = value.partition(" ")
    return f"{scheme} {HIDDEN}" if space and name.lower().endswith("authorization") else HIDDEN


class RequestLog:
    """Append-only list of RequestRecord, safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self.items.append(record)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self.items)

    def clear(self) -> None:
        with self._lock:
            self.items.clear()

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(self.snapshot())
