"""The HTTP session: headers, timeouts, retries with backoff, and error mapping.

One loop handles every retry, so that a retried upload always gets a freshly built
body (``body`` is a factory called once per attempt) and a 401 refreshes the
credential exactly once. urllib3's own retries are off: they cannot rebuild bodies.
"""

from __future__ import annotations

import email.utils
import errno
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from . import __version__
from .auth import Auth, NoAuth
from .errors import (
    AnswerLost,
    AuthError,
    DcmwebError,
    NotFoundError,
    ServerError,
    UnavailableError,
    UsageError,
)
from .rawquery import CaretAdapter

log = logging.getLogger("dcmweb")

USER_AGENT = f"dcmweb/{__version__}"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# A refused connection is retried briefly (a server restarting), never for long:
# a user with a wrong port should hear about it in about a second.
REFUSED_ATTEMPTS = 3
REFUSED_DELAY = 0.3

BodyFactory = Callable[[], Any]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; ``attempts`` counts the first try."""

    attempts: int = 6
    base: float = 1.0
    cap: float = 30.0
    retry_after_cap: float = 300.0

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class HttpConfig:
    connect_timeout: float = 10.0
    # Idle time between bytes, never a deadline for the whole transfer.
    read_timeout: float = 300.0
    retry: RetryPolicy = RetryPolicy()
    verify: bool | str = True
    headers: Mapping[str, str] | None = None
    pool_size: int = 10


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def read_limited(response: requests.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of a body: a hostile server may send one without end."""
    data = bytearray()
    for chunk in response.iter_content(64 * 1024):
        data += chunk
        if len(data) >= limit:
            break
    return bytes(data[:limit])


def server_message(response: requests.Response) -> str:
    """The human part of an error body."""
    try:
        raw = read_limited(response, 64 * 1024)
    except requests.RequestException:
        return ""
    return body_message(raw.decode(response.encoding or "utf-8", "replace"))


def body_message(text: str) -> str:
    """Google's error envelope, Orthanc's JSON error, or the first line of text."""
    text = text.strip()
    if text[:1] in "{[":
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            error = payload.get("error")
            if isinstance(error, dict) and error.get("message"):
                return str(error["message"])
            if isinstance(error, str):
                return error
            parts = [str(payload[k]) for k in ("Message", "Details") if payload.get(k)]
            return ": ".join(parts)
        if payload is not None:
            return ""  # JSON with nothing readable (e.g. a DICOM data set)
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first_line[:300]


_HINTS = {
    401: "check the credentials: --token, --user, or 'gcloud auth application-default login'",
    403: "the credentials are valid but lack permission on this store",
    400: "the server refused the request as malformed; check the path and parameters",
    404: "check the HOST URL and the UIDs in the path",
}


def error_for_response(response: requests.Response, what: str, attempts: int = 1) -> DcmwebError:
    status = response.status_code
    detail = server_message(response)
    message = f"{what} failed: HTTP {status} {response.reason or ''}".rstrip()
    if detail:
        message += f": {detail}"
    if status in RETRY_STATUSES and attempts > 1:
        message += f" (after {attempts} attempts)"
    hint = _HINTS.get(status)
    if status in (401, 403):
        return AuthError(message, hint)
    if status == 404:
        return NotFoundError(message, hint)
    if status == 400:
        return UsageError(message, hint)
    if status in RETRY_STATUSES:
        return UnavailableError(message, "the server is overloaded or down; try again later")
    return ServerError(message, hint, status=status)


def _connection_failure(exc: Exception) -> tuple[str, bool]:
    """A short reason, and whether it is a refused connection."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError) or (
            isinstance(current, OSError) and current.errno == errno.ECONNREFUSED
        ):
            return "connection refused", True
        name = type(current).__name__
        if name == "NameResolutionError" or "Name or service not known" in str(current):
            return "host name not found", False
        current = current.__cause__ or current.__context__ or (
            current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "no answer within the read timeout", False
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out", False
    return "connection dropped", False


class Http:
    """A requests.Session with dcmweb's headers, timeouts, retries and error mapping."""

    def __init__(self, auth: Auth | None = None, config: HttpConfig | None = None) -> None:
        self.auth: Auth = auth or NoAuth()
        self.config = config or HttpConfig()
        self.session = requests.Session()
        # Queries keep '^' unescaped: Orthanc does not decode %5E (see rawquery.py).
        adapter = CaretAdapter(pool_connections=4, pool_maxsize=max(self.config.pool_size, 1),
                              max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers.update(self.config.headers or {})
        self.session.verify = self.config.verify
        self._closed = threading.Event()

    def close(self) -> None:
        """Stop waiting in backoff sleeps and release pooled connections."""
        self._closed.set()
        self.session.close()

    def sleep(self, seconds: float) -> None:
        """Wait, unless the session is closed meanwhile (Ctrl-C in another thread)."""
        if self._closed.wait(seconds):
            raise UnavailableError("cancelled")

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str | None = None,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        body: BodyFactory | None = None,
        stream: bool = False,
        accept_status: Container[int] = (),
        retry_sent: bool = True,
    ) -> requests.Response:
        """Send with retries; return a 2xx response (or one in ``accept_status``).

        ``body`` is called before every attempt, so each attempt sends a complete body.
        Anything else raises a :class:`DcmwebError` subclass.

        ``retry_sent=False`` is for writes whose blind resend is not safe (a STOW to a
        server that refuses duplicates): a connection that fails after it was open (a
        drop, a read timeout) raises :class:`AnswerLost` instead of being retried, so the
        caller can ask the server what it now holds. A refused connection or a connect
        timeout, which surely did not reach the server, is still retried here.
        """
        what = what or f"{method} {urlsplit(url).path}"
        policy = self.config.retry
        timeout = (self.config.connect_timeout, self.config.read_timeout)
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            data = body() if body is not None else None
            merged = dict(headers or {})
            merged.update(self.auth.headers())
            started = time.monotonic()
            try:
                response = self.session.request(
                    method, url, params=params, headers=merged, data=data,
                    stream=stream, timeout=timeout,
                )
            except requests.exceptions.InvalidHeader:
                # requests quotes the whole header value, which may be a token: never show it.
                raise UsageError(
                    f"{what} failed: a header value has a line break or leading whitespace",
                    "check --token, --user, -H and their environment variables",
                ) from None
            except requests.exceptions.SSLError as exc:
                raise UnavailableError(
                    f"{what} failed: TLS error: {exc}",
                    "pass --ca-bundle FILE if the server uses a private certificate authority",
                ) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                reason, refused = _connection_failure(exc)
                if not (retry_sent or refused or reason == "host name not found"
                        or isinstance(exc, requests.exceptions.ConnectTimeout)):
                    raise AnswerLost(f"{what}: {reason} after the request was sent") from exc
                limit = min(REFUSED_ATTEMPTS, policy.attempts) if refused else policy.attempts
                if reason == "host name not found" or attempt >= limit:
                    host = urlsplit(url).netloc
                    tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                    raise UnavailableError(
                        f"{what} failed: cannot reach {host}: {reason}{tries}",
                        "check the HOST URL and that the server is running",
                    ) from exc
                # The first drop is often a stale pooled connection: retry at once.
                if refused:
                    delay = REFUSED_DELAY
                else:
                    delay = 0.0 if attempt == 1 else policy.backoff(attempt)
                log.info("%s: %s; retrying in %.1f s", what, reason, delay)
                self.sleep(delay)
                continue
            finally:
                close = getattr(data, "close", None)
                if close is not None:
                    close()
            status = response.status_code
            log.debug("%s %s -> %s in %.0f ms", method, url, status,
                      (time.monotonic() - started) * 1000)
            if status == 401 and not refreshed and self.auth.refresh():
                refreshed = True
                response.close()
                continue
            if 200 <= status < 300 or status in accept_status:
                return response
            if status in RETRY_STATUSES and attempt < policy.attempts:
                wait = parse_retry_after(response.headers.get("Retry-After"))
                delay = (min(wait, policy.retry_after_cap) if wait is not None
                         else policy.backoff(attempt))
                log.info("%s: HTTP %s; retrying in %.1f s (attempt %d of %d)",
                         what, status, delay, attempt + 1, policy.attempts)
                response.close()
                self.sleep(delay)
                continue
            try:
                raise error_for_response(response, what, attempt)
            finally:
                response.close()
