"""What a failed request means: the status sets, the error an answer maps to, the hints,
the classification of connection failures, and the redirect and proxy decisions.

Pure decisions, with no network and no waiting: the loop in http.py asks them and acts
on the answer (retries, waits on the shared backoff, raises). docs/exit-codes.md says what
the user sees.

The rules:
- 429/503 (the server asks us to slow down) and 408/502/504 (something in between is
  failing), dropped or cut connections, read timeouts, temporary DNS failures and (once
  the server has answered) refused connections mean "unavailable": an outage, waited out.
- After a 500, 502, 503 or 504 the outcome is unknown: the server may have done the work.
  So it is after any other 5xx that ends a write (a gateway's: Cloudflare's 524 comes
  when the server took longer than 100 s), which a search settles (see sent_undecided).
- An unknown host name, a refused connection (or one closed without a byte of answer:
  http:// to a TLS port) and an answer that is not HTTP are a wrong HOST or port, unless
  the server has answered before. A broken status line or headers (past the bounds of
  wire.py: lines, bytes, 1xx answers) count as an answer that is not HTTP.
- A proxy's refusal (407, or a CONNECT refused) is definite, 407 as a credentials
  error; its 502/503/504 to a CONNECT are an outage.
- A redirect may be followed only within the same origin (scheme, host and port), so
  that no header (-H, auth) reaches another host.
"""

from __future__ import annotations

import errno
import re
import socket
import time
from urllib.parse import urljoin, urlsplit

from .auth import is_google_host
from .body import TooSlowError, low_speed_hint, server_message
from .errors import (
    AuthError,
    DcmwebError,
    NotFoundError,
    RedirectRefused,
    ServerError,
    UnavailableError,
    UsageError,
)
from .netenv import userinfo_authorization
from .neterrors import (
    BrokenHead,
    ConnectError,
    ConnectTimeout,
    EarlySuccess,
    InvalidURL,
    NoAnswer,
    NotHTTP,
    ProxyError,
    ProxyRefused,
    ReadTimeout,
    SendStalled,
    SlowHead,
    UndecodableBody,
)
from .optionnames import option
from .record import record
from .redact import redact_text, redact_url
from .throttle import Outcome
from .transport import Response, default_port, environ_proxy, split_url

THROTTLE_STATUSES = frozenset({429, 503})  # the server asks us to slow down
UNAVAILABLE_STATUSES = frozenset({408, 502, 504})  # something in between is failing
RETRY_STATUSES = THROTTLE_STATUSES | UNAVAILABLE_STATUSES | {500}
# Answers after which the server may have done the work all the same (a gateway gave up
# waiting, the server failed after writing): a resend's answer may be that work's result.
OUTCOME_UNKNOWN_STATUSES = frozenset({500, 502, 503, 504})


_DIGITS = re.compile(r"[0-9]{1,10}")


def sent_undecided(error: DcmwebError) -> bool:
    """Whether a write's error is a 5xx that ended the retries: the request was sent and
    the server may have done it (stored, deleted), so a search settles it; never failed."""
    return error.status is not None and error.status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date).

    Anything else (``²``, ``-1``, ``soon``) is ignored: ``str.isdigit`` accepts
    characters ``float`` refuses, so only ASCII digits count.
    """
    if not value:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):
        return float(value)
    import email.utils  # only for a date: the email package costs 4 ms of a start-up

    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None



_HINTS = {
    403: "the credentials are valid but lack permission on this store",
    400: "the server refused the request as malformed; check the path and parameters",
    404: "check the HOST URL and the UIDs in the path",
}
UNAVAILABLE_HINT = "the server is overloaded or down; try again later"
BROKEN_HINT = "the server, or a proxy in between, is broken; check HOST"
PROXY_HINT = ("check the proxy (HTTPS_PROXY / HTTP_PROXY), or bypass it for this host with"
              " NO_PROXY")
# The answers of a proxy that is failing, not refusing: an outage, waited out.
PROXY_OUTAGE_STATUSES = frozenset({502, 503, 504})
# dcmweb sends Accept-Encoding: gzip, deflate; another coding comes from a server or
# proxy that compresses regardless.
CODING_HINT = ("dcmweb decodes gzip and deflate only: have the server or proxy send those, "
                "or no coding")
BROKEN_CODING_HINT = ("the server, or a proxy in between, sends broken compressed answers;"
                      " check HOST")


def credentials_hint(google: bool) -> str:
    """What to check after a 401 (gcloud helps at Google's hosts only)."""
    given = f"{option('token')}, {option('user')}"
    if google:
        return f"check the credentials: {given}, or 'gcloud auth application-default login'"
    return (f"check the credentials: {given}, an Authorization header ({option('headers')})"
            " or ~/.netrc")


def header_hint() -> str:
    """Header values come from credentials, headers, and the Accept of a part type."""
    names = ("part_type", "transfer_syntax", "headers", "token", "user")
    return f"check {', '.join(map(option, names))}"



def error_for_response(response: Response, what: str, attempts: int = 1,
                       note: str | None = None, hint: str | None = None) -> DcmwebError:
    """The error an answer means; ``hint`` replaces the status's own (a deadline's)."""
    status = response.status_code
    detail = server_message(response)
    message = f"{what} failed: HTTP {status} {response.reason or ''}".rstrip()
    if detail:
        message += f": {detail}"
    if note:
        message += f" ({note})"
    elif status in RETRY_STATUSES and attempts > 1:
        message += f" (after {attempts} attempts)"
    status_hint = (credentials_hint(is_google_host(response.url)) if status == 401
                   else _HINTS.get(status))
    kind: type[DcmwebError] = ServerError
    if status == 407:
        kind, status_hint = AuthError, proxy_credentials_hint(response.url)
    elif status in (401, 403):
        kind = AuthError
    elif status == 404:
        kind = NotFoundError
    elif status == 400:
        kind = UsageError
    elif status in THROTTLE_STATUSES or status in UNAVAILABLE_STATUSES:
        kind, status_hint = UnavailableError, UNAVAILABLE_HINT
    return kind(message, hint or status_hint, status=status, url=response.url)


@record
class Failure:
    """A request that got no usable answer: why, and how to treat it."""

    reason: str
    refused: bool = False
    sent: bool = True  # the request may have reached the server
    fatal_at_start: bool = False  # a wrong HOST or port, unless the server answered before
    midway: bool = False  # the server answered, then its answer failed
    sending: bool = False  # cut while the request was on its way: the server never had it all
    silent: bool = False  # connected and sent, and no answer came in time
    reached: bool = False  # something answered, but not with HTTP
    dropped: bool = False  # the connection closed: on a pooled one, retried at once
    undecodable: bool = False  # answered with a body that cannot be decoded: no outage
    hint: str | None = None  # what to try, when the failure has its own advice
    said: str | None = None  # what the server did, in the final message (reason: retries)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and every exception it wraps (the transport chains its causes)."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in found):
        found.append(current)
        reason = getattr(current, "reason", None)
        arg = current.args[0] if current.args else None
        current = (reason if isinstance(reason, BaseException)
                   else current.__cause__ or current.__context__
                   or (arg if isinstance(arg, BaseException) else None))
    return found


def classify(exc: BaseException, answered: bool = True) -> Failure:
    """A connection-level failure as an operator would name it; ``answered``: whether
    the server has answered before (a drop at the start may be a wrong port)."""
    for current in _chain(exc):
        if isinstance(current, TooSlowError):
            return Failure(current.message, midway=True)
        if isinstance(current, EarlySuccess):
            return Failure(str(current), midway=True, sending=True,
                           hint=BROKEN_HINT)
        if isinstance(current, SendStalled):
            return Failure(str(current), midway=True, sending=True,
                           hint=low_speed_hint() if current.too_slow else UNAVAILABLE_HINT)
        if isinstance(current, UndecodableBody):
            return Failure(str(current), midway=True, undecodable=True)
        if isinstance(current, ConnectionRefusedError) or (
            isinstance(current, OSError) and current.errno == errno.ECONNREFUSED
        ):
            return Failure("connection refused", refused=True, fatal_at_start=True,
                            sent=False)
        if isinstance(current, socket.gaierror):
            if current.errno == socket.EAI_AGAIN:
                return Failure("temporary failure in name resolution", sent=False)
            return Failure("host name not found", fatal_at_start=True, sent=False)
        if isinstance(current, NotHTTP):  # a wrong port, or http:// for https://
            return Failure(f"answered with something that is not HTTP ({current})",
                            fatal_at_start=True, reached=True)
        if isinstance(current, NoAnswer) and not answered:
            # Accepted, then closed without a word, before the server ever answered: a
            # port that speaks only TLS meets plain HTTP so (or a container whose server
            # is not up yet). Counted as a refusal; once it has answered, a drop.
            return Failure("connection dropped", refused=True, fatal_at_start=True,
                            dropped=True, said="closed the connection without an answer",
                            hint=PORT_HINT + " (a port that speaks only TLS closes plain"
                            " HTTP without a word: did you mean https://?)")
        if isinstance(current, BrokenHead):  # broken, as an answer that is not HTTP
            return Failure(f"sent an answer HTTP does not allow ({current})",
                            fatal_at_start=True, reached=True,
                            hint=BROKEN_HINT)
        if isinstance(current, SlowHead):  # each byte came in time: not silent
            return Failure("sent its answer's status line and headers too slowly",
                            reached=True, hint=UNAVAILABLE_HINT)
        if isinstance(current, ProxyRefused):  # a 502, 503, 504: failing, not refusing
            return Failure(str(current), sent=False, reached=True)
        if isinstance(current, ConnectTimeout):
            return Failure("connection timed out", sent=False)
        if isinstance(current, (ReadTimeout, socket.timeout)):
            return Failure("no answer within the read timeout", silent=True)
    if "Name or service not known" in str(exc):
        return Failure("host name not found", fatal_at_start=True, sent=False)
    if isinstance(exc, ConnectError):  # no connection, so nothing was sent
        return Failure(f"cannot connect ({exc})", sent=False)
    return Failure("connection dropped", dropped=True)


def status_outcome(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.OK
    if status == 429:
        return Outcome.OVER_QUOTA
    if status in THROTTLE_STATUSES:
        return Outcome.THROTTLED
    return Outcome.UNAVAILABLE if status in UNAVAILABLE_STATUSES else Outcome.ANSWERED


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs share scheme, host and port; never for a URL that is not valid."""
    try:
        pa, pb = urlsplit(a), urlsplit(b)
        return (pa.scheme.lower(), pa.hostname, pa.port or default_port(pa.scheme)) == (
            pb.scheme.lower(), pb.hostname, pb.port or default_port(pb.scheme))
    except ValueError:  # a port out of range, a broken IPv6 literal
        return False


def redirect_target(url: str, location: str) -> str | None:
    """The absolute URL a Location names, or None when it is not a valid URL (a port out
    of range, a broken IPv6 literal)."""
    try:
        target = urljoin(url, location)
        _ = urlsplit(target).port  # raises for a port out of range
    except ValueError:
        return None
    return target


def redirect_error(response: Response, method: str, url: str, what: str,
                   reason: str) -> RedirectRefused:
    location = response.headers.get("Location") or ""
    resolved = redirect_target(url, location) if location else None
    target = (redact_url(resolved) if resolved else
              f"an invalid Location {redact_text(location)!r}" if location else "(no Location)")
    return RedirectRefused(
        f"{what} failed: HTTP {response.status_code} redirect to {target}: {reason}",
        "fix HOST to the address the server redirects to (for example https:// instead of"
        " http://, or the right path)",
        status=response.status_code,
    )


PORT_HINT = "check the port in HOST, and http:// against https://"


def proxy_credentials_hint(url: str) -> str:
    """What to do about a 407: the proxy for ``url`` wants credentials (or other ones)."""
    variable = f"{urlsplit(url).scheme.upper() or 'HTTP'}_PROXY"
    try:
        proxy = environ_proxy(*split_url(url)[:3])
    except InvalidURL:
        proxy = None
    if proxy and userinfo_authorization(proxy):
        return (f"the proxy refused the user and password in {variable}; check them"
                " (percent-encode ':', '@' and '/' in them)")
    where = urlsplit(proxy).netloc if proxy else "the proxy's address"
    # Not written as one URL with user:password: messages hide such userinfo.
    return (f"the proxy wants credentials: give them in {variable}, as USER:PASSWORD@"
            f" between http:// and {where} (percent-encode ':', '@' and '/' in them)")


def proxy_for(exc: BaseException, url: str) -> str | None:
    """The proxy that failed, when the failure is the proxy's (a dead HTTP_PROXY)."""
    if not any(isinstance(e, ProxyError) for e in _chain(exc)):
        return None
    try:
        proxy = environ_proxy(*split_url(url)[:3])
    except InvalidURL:
        proxy = None
    return redact_url(proxy) if proxy else "(the environment's proxy)"
