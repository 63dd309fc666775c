"""The HTTP session: headers, timeouts, and the one loop of retries, backoff and redirects.

One loop handles every retry, so that a retried upload always gets a freshly built
body (``body`` is a factory called once per attempt) and a 401 refreshes the
credential exactly once. The transport (transport.py) never retries: it cannot rebuild
bodies. What an answer or a failure means (an outage, a wrong HOST, the error a status
maps to) is decided in failures.py; the loop acts on it.

The rules (docs/exit-codes.md says what the user sees):
- Redirects are followed here, never by the transport: a write (anything but GET/HEAD) is
  never redirected (requests would turn a POST into a GET and report its 200), and a
  GET follows only to the same origin.
- While the server is unavailable (failures.py says when) every worker waits on the
  shared backoff of :class:`~dcmweb.throttle.Gate`, and the run gives up after
  ``outage_limit`` seconds without an answer. 408/502/504 and drops that one request
  keeps getting while the server answers others are its own failures, limited by
  ``retry.attempts``.
- A 500 is retried twice, then reported with the server's message.
- An unknown host name before the server ever answered is reported at once, a refused
  connection (or one closed without a byte of answer) after 3 tries 0.3 s apart (about
  a second): a wrong HOST or port.
- A proxy's refusal (407, or a CONNECT refused) is said at once; its 502/503/504 to a
  CONNECT are waited out as an outage.
- The status line and headers must arrive whole by the request deadline.
- ``request_deadline`` bounds one request with all its retries and waits; it is longer
  than ``outage_limit`` by default so that outages are ridden out. It never cuts a
  transfer that makes progress (the low-speed limit judges those).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Container, Mapping
from typing import Any
from urllib.parse import urlsplit

from . import __version__
from .auth import Auth, NoAuth
from .body import TooSlowError, read_all, set_low_speed
from .errors import (
    AnswerLost,
    AuthError,
    DcmwebError,
    ServerError,
    TokenUnavailable,
    UnavailableError,
    UnreadableAnswer,
    UsageError,
)
from .failures import (
    BROKEN_CODING_HINT,
    CODING_HINT,
    OUTCOME_UNKNOWN_STATUSES,
    PORT_HINT,
    PROXY_HINT,
    PROXY_OUTAGE_STATUSES,
    THROTTLE_STATUSES,
    UNAVAILABLE_HINT,
    UNAVAILABLE_STATUSES,
    classify,
    error_for_response,
    header_hint,
    parse_retry_after,
    proxy_credentials_hint,
    proxy_for,
    redirect_error,
    redirect_target,
    same_origin,
    status_outcome,
)
from .neterrors import (
    InvalidHeader,
    InvalidURL,
    ProxyRefused,
    TLSError,
    TransportError,
    UndecodableBody,
)
from .optionnames import option
from .output import TRANSIENT
from .record import field, record
from .redact import redact_text, redact_url
from .speed import LowSpeed
from .throttle import Cancelled, Gate, GateStats, Outcome, jitter
from .transport import Response, Transport

__all__ = ["SERVER_ERROR_RETRIES", "Deadline", "Http", "HttpConfig", "RetryPolicy"]

log = logging.getLogger("dcmweb")

USER_AGENT = f"dcmweb/{__version__}"
SERVER_ERROR_RETRIES = 2  # a 500 is usually a verdict ("cannot transcode"); try twice more
# A refused connection before the server ever answered is a wrong HOST or port: tell
# the user in about a second. Once it has answered, a refusal is a restart: wait it out.
REFUSED_ATTEMPTS = 3
REFUSED_DELAY = 0.3
MAX_REDIRECTS = 10
# What a call meets when Client.close() (in another thread) ends the waits it was in.
CLOSED = "cancelled: the client was closed during the call"
READ_METHODS = frozenset({"GET", "HEAD"})

BodyFactory = Callable[[], Any]


@record(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; ``attempts`` counts the first try."""

    attempts: int = 6
    base: float = 1.0
    cap: float = 30.0
    retry_after_cap: float = 300.0

    def backoff(self, attempt: int) -> float:
        return jitter(0, min(self.cap, self.base * 2 ** (attempt - 1)))


@record(frozen=True)
class HttpConfig:
    connect_timeout: float = 10.0
    # Idle time between bytes, never a deadline for the whole transfer.
    read_timeout: float = 300.0
    retry: RetryPolicy = RetryPolicy()
    verify: bool | str = True
    headers: Mapping[str, str] | None = None
    pool_size: int = 10  # also the gate's starting (and highest) concurrency
    request_deadline: float = 900.0
    low_speed: LowSpeed = field(default_factory=LowSpeed)
    outage_limit: float = 300.0
    max_rate: float | None = None  # requests per second, all workers together


@record(frozen=True)
class Deadline:
    """A caller's own time limit for one request (``operations wait --timeout``): how
    messages name it and what to try. The request deadline still holds when shorter."""

    seconds: float
    name: str
    hint: str




class Http:
    """A connection pool with dcmweb's headers, timeouts, retries and error mapping."""

    def __init__(self, auth: Auth | None = None, config: HttpConfig | None = None) -> None:
        self.auth: Auth = auth or NoAuth()
        self.config = config or HttpConfig()
        # Credentials travel as headers; a ~/.netrc entry is used only without them.
        self.transport = Transport(pool_size=self.config.pool_size,
                                   verify=self.config.verify,
                                   headers={"User-Agent": USER_AGENT,
                                            **(self.config.headers or {})})
        policy = self.config.retry
        self.gate = Gate(max_in_flight=self.config.pool_size,
                         outage_limit=self.config.outage_limit, max_rate=self.config.max_rate,
                         backoff_base=policy.base, backoff_cap=policy.cap)
        self._closed = threading.Event()
        self._answered = threading.Event()  # the server answered once: refusals are restarts
        self.last_retry_line: tuple[str, float] = ("", 0.0)  # (reason and attempt, when)

    @property
    def stats(self) -> GateStats:
        """Retries made and seconds the server was unavailable (for summaries)."""
        self.gate.stats.unavailable_seconds = self.gate.unavailable_seconds
        return self.gate.stats

    def retried(self) -> None:
        """A request goes again: counted in :attr:`stats` (also a write its caller resends
        after a lost answer, once a search found the server without it)."""
        self.gate.stats.retries += 1

    def close(self) -> None:
        """Stop waiting in backoff sleeps and release pooled connections."""
        self._closed.set()
        self.gate.cancel()
        self.transport.close()

    def begin_call(self) -> None:
        """A library call starts: it counts its own outage (see Gate.new_call)."""
        self.gate.new_call()

    def retry_after_limit(self, started: float) -> tuple[float, str]:
        """The longest a Retry-After is waited for a request sent at ``started``, and what
        sets it: ``retry_after_cap`` (a server asking for a day must not stall a nightly
        job for a day) or the rest of the outage limit (one more try at the limit, as for
        the backoff: a longer wait would give up past it)."""
        cap = self.config.retry.retry_after_cap
        left = self.gate.outage_left(started)
        return (left, "the outage limit") if left < cap else (cap, "the cap")

    def outage_note(self) -> str | None:
        """Why to give up once the server has been unavailable for ``outage_limit``
        seconds in a row, or once the request rate holds the next try past that; None
        while the outage may still be waited out."""
        down = f"the server was unavailable for {self.gate.outage_seconds():.0f} s"
        if self.gate.outage_over_limit():
            return f"{down}, the outage limit"
        held = self.gate.rate_past_outage_limit()
        if held is None:
            return None
        return (f"{down}, and {held} allows no other try within the outage limit of "
                f"{self.config.outage_limit:g} s")

    def sleep(self, seconds: float) -> None:
        """Wait, unless the session is closed meanwhile (Ctrl-C in another thread)."""
        if self._closed.wait(seconds):
            raise UnavailableError(CLOSED)

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
        accept_if_outcome_unknown: Container[int] = (),
        retry_sent: bool = True,
        deadline: Deadline | None = None,
        max_body: int | None = None,
        ends_outage: bool = True,
    ) -> Response:
        """Send with retries; return a 2xx response (or one in ``accept_status``).

        ``body`` is called before every attempt, so each attempt sends a complete body.
        ``deadline`` is the caller's own limit, when shorter than the request deadline.
        ``max_body`` (bytes) bounds a body read here (``stream=False``): a longer one is a
        :class:`ServerError`, not a process that grows without end.
        Anything else raises a :class:`DcmwebError` subclass.

        ``retry_sent=False`` is for writes whose blind resend is not safe (a STOW to a
        server that refuses duplicates): a connection that fails after it was open (a
        drop, a read timeout, a cut or trickling answer) raises :class:`AnswerLost`
        instead of being retried, so the caller can ask the server what it now holds. A
        refused connection or a connect timeout, which surely did not reach the server,
        is still retried here.

        ``ends_outage=False`` is for a check of what a failed write left behind (a search
        after a lost STOW answer): searches may be answered while every store fails, so
        its answer does not end an outage on the shared clock (its failures still count);
        and it still goes once the outage limit has passed, to settle the write's files.

        ``accept_if_outcome_unknown`` statuses are returned only when an earlier attempt of
        this call may have done the work (a 5xx, a lost answer): a DELETE's 404 then says
        that attempt deleted it, not that it never existed.
        """
        return _Exchange(self, method, url, what, params, headers, body, stream,
                         accept_status, accept_if_outcome_unknown, deadline, retry_sent,
                         max_body, ends_outage).run()


class _Exchange:
    """One call of :meth:`Http.request`: the attempts, redirects and retry decisions."""

    def __init__(self, http: Http, method: str, url: str, what: str | None, params: Any,
                 headers: Mapping[str, str] | None, body: BodyFactory | None, stream: bool,
                 accept_status: Container[int], accept_if_outcome_unknown: Container[int],
                 deadline: Deadline | None, retry_sent: bool, max_body: int | None = None,
                 ends_outage: bool = True) -> None:
        self.http, self.config, self.gate = http, http.config, http.gate
        self.method = method.upper()
        self.url, self.params = url, params
        self.what = what or f"{method} {urlsplit(url).path}"
        self.headers, self.body, self.stream = headers, body, stream
        self.accept_status = accept_status
        self.accept_if_outcome_unknown = accept_if_outcome_unknown
        self.outcome_unknown = False  # an attempt was sent and may have done the work
        self.retry_sent = retry_sent
        self.max_body = max_body
        self.ends_outage = ends_outage
        self.started = time.monotonic()
        if deadline is None or deadline.seconds >= self.config.request_deadline:
            deadline = Deadline(self.config.request_deadline, "the request deadline",
                                f"raise {option('request_deadline')} for a server this slow")
        self.deadline = self.started + deadline.seconds
        self.deadline_name, self.deadline_hint = deadline.name, deadline.hint
        self.deadline_seconds = deadline.seconds
        self.attempt = 0  # sends, including redirects followed
        self._slot: float | None = None  # the send time of the attempt holding a slot
        self.deadline_cut = False  # the last send's read timeout was the deadline's rest
        self.own_failures = 0  # failures while the server answered other requests
        self.last_failure = float("-inf")
        self.last_status: int | None = None  # of the last failure waited out, if answered
        self.server_errors = 0
        self.refused = 0
        self.refreshed = False
        self.redirects = 0
        # Why a write's accepted answer could not be decoded (see _read), or None.
        self.broken: str | None = None

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> Response:
        while True:
            try:
                sent_at = self.gate.enter(self.deadline, within_outage_limit=self.ends_outage)
            except Cancelled:
                raise UnavailableError(CLOSED) from None
            if sent_at is None:
                raise self._not_sent()
            self.attempt += 1
            self._slot = sent_at
            try:
                result = self._attempt(sent_at)
            finally:
                # Whatever ended the attempt without an outcome for the gate (a body that
                # cannot be built or read: a file deleted, changed or made a folder since
                # it was listed; a header refused; Ctrl-C) gives its slot back all the
                # same: a slot kept by each such exit made every later request wait in
                # the gate for ever once they reached its limit.
                if self._slot is not None:
                    self._leave(Outcome.NEUTRAL, sent_at)
            if result is not None:
                return result

    def _attempt(self, sent_at: float) -> Response | None:
        """One send and what its outcome decides: the answer to hand over, or None to try
        again. Every path that ends normally gives the slot back (see :meth:`_leave`)."""
        try:
            response = self._send()
        except (TransportError, TooSlowError) as exc:
            self._connection_failed(exc, sent_at)
            return None
        except TokenUnavailable as exc:
            self._token_unavailable(exc, sent_at)
            return None
        return self._answered(response, sent_at)

    _last_problem = "no answer"

    def _send(self) -> Response:
        merged = dict(self.headers or {})
        merged.update(self.http.auth.headers())  # before the body: it may raise
        data = self.body() if self.body is not None else None
        remaining = max(self.deadline - time.monotonic(), 0.1)
        timeout = (min(self.config.connect_timeout, remaining),
                   min(self.config.read_timeout, remaining))
        self.deadline_cut = remaining < self.config.read_timeout
        sent = time.monotonic()
        try:
            response = self.http.transport.request(
                self.method, self.url, params=self.params, headers=merged, data=data,
                timeout=timeout, head_by=self.deadline, low_speed=self.config.low_speed)
            set_low_speed(response, self.config.low_speed)
            if not (self.stream or 300 <= response.status_code < 400
                    or response.unknown_coding):
                self._read(response)
        except InvalidHeader:
            # Never show the header's value: it may be a token.
            raise UsageError(
                f"{self.what} failed: a header value has a line break or leading whitespace",
                header_hint(),
            ) from None
        except UnicodeEncodeError:
            raise UsageError(
                f"{self.what} failed: a header value has characters that are not Latin-1",
                header_hint(),
            ) from None
        except TLSError as exc:
            # WRONG_VERSION_NUMBER: the port answered without TLS (https:// to an http port).
            plain = "WRONG_VERSION_NUMBER" in str(exc) or "record layer failure" in str(exc)
            raise UnavailableError(
                f"{self.what} failed: TLS error: {redact_text(str(exc))}",
                "the port does not speak TLS: did you mean http://?" if plain else
                f"pass {option('ca_bundle')} if the server uses a private certificate authority",
            ) from exc
        except InvalidURL as exc:
            raise UsageError(f"{self.what} failed: {redact_text(str(exc))}",
                             "check the HOST URL") from None
        except ProxyRefused as exc:
            if exc.status in PROXY_OUTAGE_STATUSES:
                raise  # the proxy cannot reach the server now: an outage
            raise self._proxy_refused(exc) from None
        finally:
            close = getattr(data, "close", None)
            if close is not None:
                close()
        log.debug("%s %s -> %s in %.0f ms", self.method, redact_url(self.url),
                  response.status_code, (time.monotonic() - sent) * 1000)
        return response

    def _read(self, response: Response) -> None:
        """Read the whole body: a cut or trickling one is retried like a drop. A broken
        gzip body of an answer a write's caller reads is kept for :meth:`_answered`: the
        server answered, and may have done the work (a resend could do it twice)."""
        self.broken = None
        try:
            read_all(response, self.max_body, self.what)
        except UndecodableBody as exc:
            if self.retry_sent or not self._accepts(response.status_code):
                raise
            self.broken = str(exc)

    def _accepts(self, status: int) -> bool:
        """Whether an answer with this status is handed to the caller."""
        return 200 <= status < 300 or status in self.accept_status or (
            self.outcome_unknown and status in self.accept_if_outcome_unknown)

    def _proxy_refused(self, exc: ProxyRefused) -> DcmwebError:
        """The proxy answered the CONNECT with a refusal: definite, never waited out."""
        message = f"{self.what} failed: the proxy {proxy_for(exc, self.url)} {exc}"
        if exc.status == 407:
            return AuthError(message, proxy_credentials_hint(self.url), status=407)
        return ServerError(message, PROXY_HINT, status=exc.status)

    # -- no answer --------------------------------------------------------------------
    def _connection_failed(self, exc: Exception, sent_at: float) -> None:
        failure = classify(exc, self.http._answered.is_set())
        host = urlsplit(self.url).hostname or ""
        if urlsplit(self.url).port:
            host += f":{urlsplit(self.url).port}"
        proxy = proxy_for(exc, self.url)
        who = f"the proxy {proxy} (on the way to {host})" if proxy else host
        # A silent server was reached (connected, sent to): it did not answer in time,
        # the read timeout's or, when that was shorter, the request deadline's.
        self._last_problem = (failure.reason if failure.midway
                              else f"no answer from {who}" + (
                                  "" if self.deadline_cut else " within the read timeout")
                              if failure.silent
                              else f"{who} {failure.said}" if failure.said
                              else f"{who} {failure.reason}" if failure.reached
                              else f"cannot reach {who}: {failure.reason}")
        hint = (PROXY_HINT if proxy else failure.hint if failure.hint
                else PORT_HINT if failure.reached
                else UNAVAILABLE_HINT if failure.silent  # it took the connection: it runs
                # It answered earlier in the run: HOST is right, the server went down.
                else UNAVAILABLE_HINT if self.http._answered.is_set()
                else "check the HOST URL and that the server is running")
        lost = failure.sent and not self.retry_sent  # the caller checks before a resend
        # Cut by the deadline before the read timeout: the server took the request and
        # may be at work on it, which says nothing of an outage.
        cut = failure.silent and self.deadline_cut
        # Before the server ever answered: a wrong HOST or port, whatever was sent.
        if failure.fatal_at_start and not self.http._answered.is_set():
            self.refused += failure.refused
            if not failure.refused or self.refused >= min(REFUSED_ATTEMPTS,
                                                           self.config.retry.attempts):
                self._leave(Outcome.NEUTRAL, sent_at)
                tries = f" (after {self.attempt} attempts)" if self.attempt > 1 else ""
                raise UnavailableError(f"{self.what} failed: {self._last_problem}{tries}",
                                       hint) from exc
            if not lost:
                self._leave(Outcome.NEUTRAL, sent_at)
                self._wait(REFUSED_DELAY, failure.reason)
                return
        if lost:
            self._leave(Outcome.NEUTRAL if cut else Outcome.UNAVAILABLE, sent_at,
                        why=failure.reason)
            reason = (f"no answer within {self.deadline_name} ({self.deadline_seconds:g} s)"
                      if cut else failure.reason)
            when = (" while the request was sent" if failure.sending
                    else " after the request was sent")
            raise AnswerLost(f"{self.what}: {reason}{when}",
                             self.deadline_hint if cut else None, cut=cut) from exc
        self.outcome_unknown = self.outcome_unknown or failure.sent
        if failure.undecodable:
            self._undecodable(failure.reason, sent_at, exc)
            return
        if self.attempt == 1 and failure.dropped:
            # The first drop is often a stale pooled connection: retry at once.
            self._leave(Outcome.NEUTRAL, sent_at)
            self._retrying(failure.reason, " at once")
            return
        if cut:  # no time is left for another try
            self._leave(Outcome.NEUTRAL, sent_at)
            raise UnavailableError(f"{self.what} failed: {self._last_problem} "
                                   f"({self._deadline_note()})", self.deadline_hint) from exc
        self._unavailable(Outcome.UNAVAILABLE, sent_at, None, hint, exc, why=failure.reason)

    def _token_unavailable(self, exc: TokenUnavailable, sent_at: float) -> None:
        """No token: its endpoint did not answer, or answered 5xx. Waited out like the
        server's own outage (the shared backoff, --outage-limit, the request deadline)."""
        self._last_problem = exc.message
        self._unavailable(Outcome.UNAVAILABLE, sent_at, None, exc.hint or UNAVAILABLE_HINT,
                          exc, why="no access token")

    def _undecodable(self, reason: str, sent_at: float, exc: Exception) -> None:
        """The server answered, with a body that cannot be decoded: asked again as a 500
        is (a broken byte may be the network's), never waited out as an outage."""
        self.http._answered.set()
        self._leave(Outcome.ANSWERED, sent_at)
        if self.server_errors < min(SERVER_ERROR_RETRIES, self.config.retry.attempts - 1):
            self.server_errors += 1
            self._wait(self.config.retry.backoff(self.server_errors), reason)
            return
        raise ServerError(f"{self.what} failed: {reason} ({_attempts(self.attempt)})",
                          BROKEN_CODING_HINT) from exc

    # -- an answer --------------------------------------------------------------------
    def _answered(self, response: Response, sent_at: float
                  ) -> Response | None:
        self.http._answered.set()
        status = response.status_code
        if 300 <= status < 400 and status != 304 and status not in self.accept_status:
            self._leave(Outcome.ANSWERED, sent_at)
            self._follow(response)
            return None
        if status == 401 and not self.refreshed:
            try:
                refreshed = self.http.auth.refresh()
            except TokenUnavailable as exc:
                response.close()
                self._token_unavailable(exc, sent_at)  # leaves the gate: an outage
                return None
            except BaseException:
                self._leave(Outcome.ANSWERED, sent_at)
                raise
            self._leave(Outcome.ANSWERED, sent_at)
            if refreshed:
                self.refreshed = True
                response.close()
                return None
            raise self._error(response)
        if self._accepts(status):
            # An accepted 502 (the caller checks what happened) still tells the gate.
            self._leave(status_outcome(status), sent_at, self._retry_after(response, sent_at),
                        f"HTTP {status}")
            if response.unknown_coding is not None:
                # Every reader would misread the body (not JSON, no boundary, not an
                # image); asking again gets the same coding.
                coding = response.unknown_coding
                response.close()
                raise UnreadableAnswer(f"{self.what} failed: the server sent its answer "
                                       f"(HTTP {status}) with Content-Encoding {coding!r}, "
                                       "which dcmweb cannot decode", CODING_HINT, status=status)
            if self.broken is not None:
                raise UnreadableAnswer(f"{self.what} failed: the server sent its answer "
                                       f"(HTTP {status}), but {self.broken}",
                                       BROKEN_CODING_HINT, status=status)
            return response
        self.outcome_unknown = self.outcome_unknown or status in OUTCOME_UNKNOWN_STATUSES
        if status in THROTTLE_STATUSES or status in UNAVAILABLE_STATUSES:
            outcome = status_outcome(status)
            wait = self._retry_after(response, sent_at)
            self._last_problem = f"HTTP {status} {response.reason or ''}".rstrip()
            try:
                self._unavailable(outcome, sent_at, wait, UNAVAILABLE_HINT, None, response,
                                  why=f"HTTP {status}")
            finally:
                response.close()
            return None
        self._leave(Outcome.ANSWERED, sent_at)
        if status == 500 and self.server_errors < min(SERVER_ERROR_RETRIES,
                                                      self.config.retry.attempts - 1):
            self.server_errors += 1
            response.close()
            self._wait(self.config.retry.backoff(self.server_errors),
                       f"HTTP {status} {response.reason or ''}".rstrip())
            return None
        raise self._error(response)

    def _retry_after(self, response: Response, sent_at: float) -> float | None:
        """The answer's Retry-After in seconds, within :meth:`Http.retry_after_limit`."""
        wait = parse_retry_after(response.headers.get("Retry-After"))
        limit, why = self.http.retry_after_limit(sent_at)
        if wait is None or wait <= limit:
            return wait
        log.info("%s: HTTP %s asks to wait %.0f s (Retry-After); waiting %.0f s, %s",
                 self.what, response.status_code, wait, limit, why)
        return limit

    def _leave(self, outcome: Outcome, sent_at: float, retry_after: float | None = None,
               why: str | None = None) -> bool:
        """Give the attempt's slot back, telling the gate what the outcome says (and
        ``why`` it failed, for the progress lines: ``HTTP 503``, ``connection refused``);
        whether the failure is this request's own (see Gate.leave)."""
        self._slot = None
        return self.gate.leave(outcome, sent_at, retry_after, why, ends_outage=self.ends_outage)

    def _error(self, response: Response) -> DcmwebError:
        try:
            return error_for_response(response, self.what, self.attempt)
        finally:
            response.close()

    def _follow(self, response: Response) -> None:
        """Follow a GET's redirect within the same origin; refuse everything else."""
        location = response.headers.get("Location")
        response.close()
        if self.method not in READ_METHODS:
            # Not "nothing was done": the server may have done it, then redirected (a 303
            # is the answer to a POST carried out). The caller checks, or says so.
            why = ("its body would be dropped or sent elsewhere" if self.body is not None
                   else "it acts only on HOST, never where a redirect points")
            raise redirect_error(response, self.method, self.url, self.what,
                                 f"a {self.method} is never redirected ({why})")
        if not location:
            raise redirect_error(response, self.method, self.url, self.what,
                                 "the redirect names no Location")
        target = redirect_target(self.url, location)
        if target is None:
            raise redirect_error(response, self.method, self.url, self.what,
                                 "the Location is not a valid URL")
        if not same_origin(target, self.url):
            raise redirect_error(response, self.method, self.url, self.what,
                                 "redirects to another scheme, host or port are not followed"
                                 " (headers and credentials must not leave HOST)")
        self.redirects += 1
        if self.redirects > MAX_REDIRECTS:
            raise redirect_error(response, self.method, self.url, self.what,
                                 f"more than {MAX_REDIRECTS} redirects")
        log.debug("%s: HTTP %s redirect to %s", self.what, response.status_code,
                  redact_url(target))
        self.url, self.params = target, None  # the Location carries the query

    # -- retry decisions --------------------------------------------------------------
    def _unavailable(self, outcome: Outcome, sent_at: float, retry_after: float | None,
                     hint: str, exc: BaseException | None,
                     response: Response | None = None, *, why: str) -> None:
        """Wait on the shared backoff (or, for a failure the gate holds no one for, this
        request's own), or give up with the right message."""
        now = time.monotonic()
        # A failure while the server answered other requests is this request's own.
        own = outcome is Outcome.UNAVAILABLE and self.gate.last_ok > self.last_failure
        self.last_failure = now
        self.last_status = response.status_code if response is not None else None
        waits_alone = self._leave(outcome, sent_at, retry_after, why)
        own_wait = self.config.retry.backoff(self.attempt) if retry_after is None else retry_after
        wait = own_wait if waits_alone else self.gate.wait_left()[0]
        if own:
            self.own_failures += 1
        note = (f"after {_attempts(self.attempt)}"
                if own and self.own_failures >= self.config.retry.attempts
                else self.http.outage_note())
        if note is None and now >= self.deadline:
            note, hint = self._deadline_note(), self.deadline_hint
        elif note is None and retry_after is not None and now + retry_after >= self.deadline:
            note = (f"the server asks to wait {retry_after:.0f} s (Retry-After), past "
                    f"{self.deadline_name}")
            hint = self.deadline_hint
        elif note is None and now + wait >= self.deadline:
            # The backoff's next try would come too late: give up now, announcing no retry.
            note, hint = self._deadline_note(), self.deadline_hint
        if note is not None:
            if response is not None:
                raise error_for_response(response, self.what, self.attempt, note, hint)
            raise UnavailableError(f"{self.what} failed: {self._last_problem} ({note})",
                                   hint) from exc
        self.http.retried()
        if waits_alone:
            self._retrying(self._last_problem, f" in {wait:.1f} s")
            self.http.sleep(wait)
        else:
            self._retrying(self._last_problem)  # the shared backoff's wait is the gate's

    def _not_sent(self) -> UnavailableError:
        """Why the gate let no (more) try go: the outage limit came (the next try would
        have come past it), or the request deadline. The status of the last answer says
        that the request may have been carried out (a 503 to a STOW)."""
        problem = self._last_problem if self.attempt else "not sent"
        note = self.http.outage_note()
        if note is not None:
            return UnavailableError(f"{self.what} failed: {problem} ({note})",
                                    UNAVAILABLE_HINT, status=self.last_status)
        return UnavailableError(f"{self.what} failed: {problem} ({self._deadline_note()})",
                                self.deadline_hint)

    def _wait(self, seconds: float, reason: str) -> None:
        if time.monotonic() + seconds >= self.deadline:
            raise UnavailableError(f"{self.what} failed: {reason} ({self._deadline_note()})",
                                   self.deadline_hint)
        self.http.retried()
        self._retrying(reason, f" in {seconds:.1f} s")
        self.http.sleep(seconds)

    def _retrying(self, reason: str, when: str = "") -> None:
        # With -m, every worker meets the same outage: its line is shown once a second,
        # the others' go to -v (six workers had printed six alike lines per attempt).
        key, now = f"{reason} #{self.attempt}", time.monotonic()
        last_key, last_time = self.http.last_retry_line
        level = logging.DEBUG if key == last_key and now - last_time < 1.0 else logging.WARNING
        if level == logging.WARNING:
            self.http.last_retry_line = (key, now)
        # Every retry's line has this one shape, so one grep finds them all.
        log.log(level, "%s: %s; retrying%s (attempt %d)", self.what, reason, when,
                self.attempt + 1, extra={TRANSIENT: True})

    def _deadline_note(self) -> str:
        elapsed = time.monotonic() - self.started
        if self.attempt:
            return (f"gave up after {elapsed:.0f} s and {_attempts(self.attempt)}: "
                    f"{self.deadline_name}")
        # Never sent: the deadline came (or would come) while it waited for its turn.
        left, asked = self.gate.wait_left()
        if left:
            why = "the server asked to wait (Retry-After)" if asked else "the shared backoff"
            return f"{why} for {left:.0f} s more, past {self.deadline_name}"
        return f"waited {elapsed:.0f} s for a free slot: {self.deadline_name}"


def _attempts(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"{count} attempts"
