"""Credentials: none, bearer token, HTTP basic, or Google Application Default Credentials.

Every kind implements :class:`Auth`. The HTTP layer asks for headers before each
attempt and calls :meth:`Auth.refresh` once after a 401, then rebuilds the body
itself (google-auth's own 401 replay resends a consumed body as 0 bytes).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from .errors import AuthError, DcmwebError, UsageError, quoted
from .netenv import basic_authorization
from .optionnames import option
from .redact import hide, is_credential_header

log = logging.getLogger("dcmweb")
GOOGLE_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


def adc_hint() -> str:
    """What to do when Google's Application Default Credentials fail."""
    return ("run 'gcloud auth application-default login', or set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or pass "
            f"{option('token')}")


class Auth(Protocol):
    """What the HTTP layer needs from a credential."""

    def headers(self) -> dict[str, str]:
        """Headers to add to the next request (may fetch a token)."""

    def refresh(self) -> bool:
        """Get a new credential after a 401. True when a retry may now succeed."""


class NoAuth:
    def headers(self) -> dict[str, str]:
        return {}

    def refresh(self) -> bool:
        return False


def _credentials_hint() -> str:
    """Where a header value that cannot be sent came from."""
    return f"check {option('token')}, {option('user')} and {option('headers')}"


def check_line_breaks(value: str, what: str, hint: str | None = None) -> str:
    """``value`` if it has no line break (nor NUL), else a :class:`UsageError` that never
    shows it (it may be a secret): a line break in a header injects another header, and
    one in a password (a file's last newline in DCMWEB_USER) only ever fails as a 401.
    ``hint`` says where the value came from (default: the credentials)."""
    if any(c in value for c in "\r\n\0"):
        raise UsageError(f"{what} has a line break in it", hint or _credentials_hint())
    return value


# RFC 9110 token characters: what a header name may hold.
_NAME_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789"
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
HEADER_HINT = "write -H 'Name: value'; a name is letters, digits and !#$%&'*+-.^_`|~"


def check_header_name(name: str) -> str:
    """``name`` if it is a valid header name, else a :class:`UsageError` naming the
    character at fault (a name is no secret; its value is never shown)."""
    if not name:
        raise UsageError("a -H header has no name before its ':'", HEADER_HINT)
    bad = next((char for char in name if char not in _NAME_CHARS), None)
    if bad is not None:
        what = ("a space" if bad == " " else "a control character" if not bad.isprintable()
                else f"the character {quoted(bad)}")
        raise UsageError(f"the -H header name {quoted(name)} has {what} in it", HEADER_HINT)
    return name


def check_header_value(value: str, what: str) -> str:
    """``value`` if it can be sent as a header, else a :class:`UsageError` that never
    shows it: the transport would refuse it only when the first request is built, deep
    inside a run."""
    check_line_breaks(value, what)
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise UsageError(f"{what} has characters that are not Latin-1 (e.g. typographic"
                         " quotes or non-ASCII letters)", _credentials_hint()) from None
    return value


def bearer_value(token: str, what: str = "the token") -> str:
    hide(token)
    return "Bearer " + check_header_value(token, what)


def hide_credential_headers(headers: Mapping[str, str]) -> None:
    """Never show the value of a -H header that carries a credential (by its name, or a
    JWT whatever the name)."""
    for name, value in headers.items():
        if is_credential_header(name, value):
            hide(value)


class BearerAuth:
    def __init__(self, token: str) -> None:
        # A token read from a file or an env file often ends in a newline.
        self._value = bearer_value(token.strip())

    def headers(self) -> dict[str, str]:
        return {"Authorization": self._value}

    def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:  # never show the token, not even in a debugger dump
        return "BearerAuth(<hidden>)"


class BasicAuth:
    """HTTP basic authentication, sent as UTF-8 (RFC 7617, as curl does): other characters
    than Latin-1 are fine in a password, a line break never is."""

    def __init__(self, user: str, password: str) -> None:
        check_line_breaks(user, "the user name")
        check_line_breaks(password, "the password")
        self._value = basic_authorization(user, password)
        self.user = user

    def headers(self) -> dict[str, str]:
        return {"Authorization": self._value}

    def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"BasicAuth({self.user!r}, <hidden>)"


class GoogleAuth:
    """Application Default Credentials, refreshed under one lock shared by all threads.

    google-auth itself takes no lock: 16 threads with no token make 16 token calls.
    A generation counter makes eight threads that see a 401 at once cause one refresh:
    each thread remembers the generation of the token it sent, and a thread whose token
    was already replaced just uses the new one. Likewise a refresh that fails fails the
    threads that waited for it at once, each with its own copy of the error, instead of
    each trying (and waiting) again. ``timeout`` (connect, read seconds) bounds each
    token request.
    """

    def __init__(self, credentials: Any = None,
                 timeout: tuple[float, float] = (10.0, 300.0)) -> None:
        self._credentials = credentials
        self._timeout = timeout
        self._lock = threading.Lock()
        self._request: Any = None
        self._generation = 0
        self._sent = threading.local()  # the generation this thread last sent
        self._attempts = 0  # refreshes ended (failed or not)
        self._failure: DcmwebError | None = None  # why the last one failed
    def _load(self) -> Any:
        if self._credentials is None:
            import google.auth
            import google.auth.exceptions

            try:
                self._credentials, _ = google.auth.default(scopes=list(GOOGLE_SCOPES))
            except google.auth.exceptions.DefaultCredentialsError as exc:
                message = "no Google credentials found"
                if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
                    # google-auth says what is wrong with the file it was pointed at.
                    message += f": {str(exc).splitlines()[0]}"
                raise AuthError(message, adc_hint()) from exc
        return self._credentials

    def _refresh_locked(self, attempts_seen: int) -> None:
        """Refresh (the lock held). ``attempts_seen``: the refreshes ended when this
        thread began to wait for the lock."""
        import google.auth.exceptions

        from .tokenrequest import TokenRequest

        if self._failure is not None and self._attempts != attempts_seen:
            # Another thread's refresh failed while this one waited for it.
            raise type(self._failure)(self._failure.message, self._failure.hint)
        if self._request is None:
            self._request = TokenRequest(self._timeout)
        try:
            self._load().refresh(self._request)
        except DcmwebError as exc:  # the token endpoint down, or not JSON (tokenrequest)
            self._failure = exc
            raise
        except google.auth.exceptions.GoogleAuthError as exc:
            self._failure = AuthError(f"could not get a Google access token: {exc}",
                                      adc_hint())
            raise self._failure from exc
        finally:
            self._attempts += 1
        self._failure = None
        self._generation += 1

    def headers(self) -> dict[str, str]:
        attempts_seen = self._attempts
        with self._lock:
            credentials = self._load()
            # After a failed refresh the old token is not sent again: it was refused.
            if not credentials.valid or self._failure is not None:
                self._refresh_locked(attempts_seen)
            token = credentials.token
            self._sent.generation = self._generation
        return {"Authorization": bearer_value(str(token), "the Google access token")}

    def refresh(self) -> bool:
        attempts_seen = self._attempts
        with self._lock:
            if getattr(self._sent, "generation", self._generation) == self._generation:
                self._refresh_locked(attempts_seen)
            # else another thread refreshed after this one sent its request: reuse it
        return True

    def __repr__(self) -> str:
        return "GoogleAuth(<application default credentials>)"


def is_google_host(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return host == "googleapis.com" or host.endswith(".googleapis.com")


def warn_if_header_overridden(auth: Auth, headers: Mapping[str, str]) -> None:
    """Log a warning when a -H Authorization header is not sent because the chosen
    credentials send their own (docs/auth.md: they come first); the user meant one."""
    if not any(name.strip().lower() == "authorization" for name in headers):
        return
    header = f"an Authorization header ({option('headers')})"
    if isinstance(auth, GoogleAuth):
        log.warning("%s is not sent: Google Application Default Credentials are used instead"
                    " (%s sends it)", header, option("google_auth", False))
    elif isinstance(auth, (BearerAuth, BasicAuth)):
        given = option("token" if isinstance(auth, BearerAuth) else "user")
        log.warning("both %s and %s are given: %s is used, the header is not sent", given,
                    header, given)


def choose_auth(
    url: str,
    *,
    token: str | None = None,
    user: str | None = None,
    google: bool | None = None,
    timeout: tuple[float, float] = (10.0, 300.0),
) -> Auth:
    """Pick credentials: an explicit token or user wins; Google hosts get ADC.

    ``google=True`` forces ADC for any host (a proxy in front of Google, tests);
    ``google=False`` turns it off even for Google hosts. ``timeout`` (connect, read
    seconds) bounds each Google token request.
    """
    if token:
        if user:  # the user meant one: say which (a DCMWEB_TOKEN left set beats --user)
            log.warning("both %s and %s are given: %s is used, the user and password are not"
                        " sent", option("token"), option("user"), option("token"))
        return BearerAuth(token)
    if user:
        name, _, password = user.partition(":")
        return BasicAuth(name, password)
    if google or (google is None and is_google_host(url)):
        return GoogleAuth(timeout=timeout)
    return NoAuth()
