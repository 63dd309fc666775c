"""Exceptions and the exit-code table.

Every expected failure is a :class:`DcmwebError` carrying a one-line message, an
optional hint (what to try) and the exit code the CLI ends with. The CLI turns
them into output in one place.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any

from .redact import redact_text

if TYPE_CHECKING:
    from .bulkrecords import Summary
    from .leftover import Leftover


class ExitStatus(IntEnum):
    """Process exit codes: one line each in :data:`EXIT_MEANINGS` (``dcmweb --help``
    lists them), the details in docs/exit-codes.md."""

    OK = 0
    ERROR = 1
    USAGE = 2
    AUTH = 3
    NOT_FOUND = 4
    UNAVAILABLE = 5
    PARTIAL = 6
    BUSY = 7
    HANGUP = 129
    INTERRUPTED = 130
    TERMINATED = 143


# One line each, under 72 characters: the end of `dcmweb --help`.
EXIT_MEANINGS = {
    ExitStatus.OK: "everything asked for was done",
    ExitStatus.ERROR: "failed: nothing was done; a bug: rerun with --traceback",
    ExitStatus.USAGE: "bad arguments or input, or HTTP 400 (the server calls it malformed)",
    ExitStatus.AUTH: "credentials missing, expired or not allowed (HTTP 401, 403, 407)",
    ExitStatus.NOT_FOUND: "the study, series, instance or store does not exist (HTTP 404)",
    ExitStatus.UNAVAILABLE: "server or network unavailable after retries, or too slow",
    ExitStatus.PARTIAL: "some items failed, the others were done",
    ExitStatus.BUSY: "another run holds the --journal or --report; nothing was sent",
    ExitStatus.HANGUP: "hung up (SIGHUP: the terminal or ssh session went away)",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl-C)",
    ExitStatus.TERMINATED: "terminated (SIGTERM: timeout, systemd, Kubernetes)",
}


def quoted(text: str | None) -> str:
    """``'text'`` in a message (None as ``''``), escaped once, by the output (see
    output.shown): repr() would write a byte that is not UTF-8 as \\udcff, and the log
    line double its backslash."""
    return f"'{text or ''}'"


class DcmwebError(Exception):
    """Base class of every error dcmweb expects and reports without a traceback."""

    exit_status: ExitStatus = ExitStatus.ERROR

    def __init__(self, message: str, hint: str | None = None, *, status: int | None = None,
                 url: str | None = None) -> None:
        # Messages often quote URLs: a password in HOST must never be shown.
        message = redact_text(message)
        super().__init__(message)
        self.message = message
        self.hint = redact_text(hint) if hint else hint
        self.status = status  # the HTTP status of the answer, when there was one
        self.url = redact_text(url) if url else url  # the URL that answered so
        # Lines added after the fact (what HOST should be): each is shown as its own line.
        self.notes: list[str] = []
        # The counts of the bulk store this error stopped (stored, unconfirmed, not
        # attempted, ...): bulk_store returns no Summary when it raises.
        self.summary: Summary | None = None
        # The items of the retrieve this error stopped that it never asked for or cut off.
        self.leftover: Leftover | None = None
        # The results a list-returning call (Client.store, store_json, retrieve) had when
        # this error stopped it: the files already stored or saved, which the list that
        # was never returned would have told.
        self.results: list[Any] | None = None

    def add_line(self, note: str) -> None:
        """Add a line that explains the failure (shown after the message)."""
        self.notes.append(redact_text(note))

    @property
    def headline(self) -> str:
        """The message with its hint: the first line."""
        return self.message if not self.hint else f"{self.message} ({self.hint})"

    def __str__(self) -> str:
        return "\n".join([self.headline, *self.notes])


class UsageError(DcmwebError):
    exit_status = ExitStatus.USAGE


class AuthError(DcmwebError):
    exit_status = ExitStatus.AUTH


class NotFoundError(DcmwebError):
    exit_status = ExitStatus.NOT_FOUND


class UnavailableError(DcmwebError):
    """Connection refused, DNS failure, timeouts, or 5xx/429 still failing after retries."""

    exit_status = ExitStatus.UNAVAILABLE


class TokenUnavailable(UnavailableError):
    """The endpoint that gives access tokens (Google's) did not answer, or answered 5xx
    or 429: an outage, waited out by the request that needs the token."""


class ServerError(DcmwebError):
    """The server answered with an error that is not one of the above (e.g. 400, 409)."""

    exit_status = ExitStatus.ERROR


class Unserved(ServerError):
    """A 404 to a kind of request the server does not serve (a top-level /series, a
    study's /metadata): a search finds what the path names (see unserved.py)."""


class RedirectRefused(ServerError):
    """A redirect dcmweb does not follow (a write, or to another origin): HOST is not the
    server's address, so every other request of the run would be redirected too."""


class UnreadableAnswer(ServerError):
    """An answer in a Content-Encoding dcmweb does not decode, or (to a write) a gzip or
    deflate body that cannot be decoded: its status came, its words cannot be read. A
    write's caller settles it as a doubtful answer: the server may have done the work."""


class LocalFileError(DcmwebError):
    """A file or folder on this machine cannot be written (permissions, disk full)."""

    exit_status = ExitStatus.ERROR


class NameTaken(LocalFileError):
    """A file's or folder's name is taken by an entry of the other kind (a folder where a
    file goes, a file where a folder goes): that file fails, not the whole run."""


class PartialFailure(DcmwebError):
    """Some items of a bulk operation failed; the others were done."""

    exit_status = ExitStatus.PARTIAL


class AnswerLost(UnavailableError):
    """A write was sent but its answer never came (connection dropped, read timeout):
    the server may have done the work. Raised instead of a blind resend when the caller
    asked to check first (``Http.request(..., retry_sent=False)``).

    ``cut``: the request deadline ended the wait before the read timeout did. The
    server took the request and may still be working on it: a resend would be cut
    alike, and might store a second copy."""

    def __init__(self, message: str, hint: str | None = None, *, cut: bool = False) -> None:
        super().__init__(message, hint)
        self.cut = cut


class Busy(DcmwebError):
    """Another run holds a file this one would write (its --journal or --report)."""

    exit_status = ExitStatus.BUSY


class AllFailed(DcmwebError):
    """Every item of a bulk operation failed: exit 1, never 6 (a CI script may take 6 for
    a warning)."""

    exit_status = ExitStatus.ERROR


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the CLI: a KeyboardInterrupt, so every
    cleanup for Ctrl-C runs for it too; the exit status tells them apart."""

    signal_name = "SIGTERM"
    exit_status = ExitStatus.TERMINATED


class HungUp(Terminated):
    """SIGHUP: the terminal went away (ssh dropped, its window closed); stopped as for
    SIGTERM."""

    signal_name = "SIGHUP"
    exit_status = ExitStatus.HANGUP
