"""Google's long-running operations: read one, or wait until it is done.

A study or series delete on Google's API answers with an operation name and does the
work in the background. The operation is served at the API root
(``https://host/v1/{name}``); its ``metadata.counter`` counts instances done, failed
and pending (int64 as JSON strings). Done with an ``error``, or with failed instances
counted, is a failure: the report is the server's truth, not the status code.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .auth import is_google_host
from .errors import (
    AuthError,
    DcmwebError,
    ExitStatus,
    NotFoundError,
    ServerError,
    UnavailableError,
    UsageError,
    quoted,
)
from .failures import credentials_hint
from .http import Deadline, Http
from .optionnames import option
from .record import field, record

log = logging.getLogger("dcmweb")

POLL_FIRST = 1.0
POLL_MAX = 10.0
# The poll made at the timeout still gets this long: it may find the operation done.
LAST_POLL_TIME = 2.0
API_VERSIONS = ("v1", "v1beta1", "v1alpha2")
# projects/P/locations/L/datasets/D/operations/ID: polled on the same host, so a
# hostile name must not reach other paths there.
_OPERATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*(/[A-Za-z0-9._~-]+)*")
_DATASET = re.compile(r"projects/[^/]+/locations/[^/]+/datasets/[^/]+")


@record(frozen=True)
class Operation:
    name: str
    done: bool = False
    counter: dict[str, int] | None = None  # success, failure, pending
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # as the server sent it

    @property
    def failed(self) -> bool:
        return self.failure_reason() is not None

    def failure_reason(self) -> str | None:
        """Why the operation failed: its error, instances counted as failed, or, once
        done, instances still counted as pending (work it never finished); None if not."""
        if self.error is not None:
            return self.error
        counts = self.counter or {}
        if counts.get("failure"):
            return f"{_instances(counts['failure'])} failed"
        if self.done and counts.get("pending"):
            return f"done with {_instances(counts['pending'])} still pending"
        return None

    def progress(self) -> str:
        if not self.counter:
            return "done" if self.done else "running"
        c = self.counter
        return f"{c['success']} done, {c['failure']} failed, {c['pending']} pending"


class OutcomeUnknown(DcmwebError):
    """A poll of an operation this run started (``what``) failed: the server accepted the
    work, and what became of it is unknown. The exit code is the poll failure's: 3 for
    credentials, 1 for an answer that is not an operation, 5 for the rest (an operation
    the server no longer knows is not a path that was not found)."""

    def __init__(self, cause: DcmwebError, what: str, name: str) -> None:
        follow = f"follow it with 'dcmweb HOST operations wait {name}'"
        hint = f"{cause.hint}, then {follow}" if isinstance(cause, AuthError) else follow
        if isinstance(cause, NotFoundError):
            hint = "the server no longer knows the operation: search later to see what is left"
        super().__init__(f"{what}: the server accepted it (operation {name}), then "
                         f"{cause.message}; its outcome is unknown: it may go on on the server",
                         hint, status=cause.status, url=cause.url)
        self.exit_status = (ExitStatus.UNAVAILABLE if isinstance(cause, NotFoundError)
                            else cause.exit_status)


def _instances(count: int) -> str:
    return f"{count} instance{'' if count == 1 else 's'}"


def is_operation_name(name: str) -> bool:
    """A name safe to poll on HOST's host (and to print as one line): path segments of
    plain characters, no '..'."""
    return _OPERATION_NAME.fullmatch(name) is not None and ".." not in name.split("/")


def full_name(base_url: str, name: str) -> str:
    """The operation NAME given by the user, checked; an ID alone becomes
    projects/P/locations/L/datasets/D/operations/ID, the dataset taken from HOST."""
    name = name.strip()
    if not is_operation_name(name):
        raise UsageError(f"odd operation name {quoted(name)}",
                         "expected projects/P/locations/L/datasets/D/operations/ID, or the ID")
    if "/" in name:
        return name
    dataset = _DATASET.search(urlsplit(base_url).path)
    if dataset is None:
        raise UsageError(f"operation {quoted(name)} needs its full name",
                         "projects/P/locations/L/datasets/D/operations/ID")
    return f"{dataset.group(0)}/operations/{name}"


def users_name(base_url: str, name: str) -> str:
    """An operation NAME the user gave (operations get, wait), checked as full_name does,
    on a HOST that can serve it: one without an API version is a usage error, as an ID
    alone on it is, not a server's."""
    name = full_name(base_url, name)
    if _api_root(base_url) is None:
        raise UsageError(_no_api_version(name),
                         "operations are Google's: give the Google store's URL as HOST")
    return name


def _no_api_version(name: str) -> str:
    return (f"operation {quoted(name)} cannot be read: HOST has no API version segment "
            f"({'/'.join(API_VERSIONS)}) to find it under")


def _api_root(base_url: str) -> str | None:
    """https://host/v1 of a HOST with an API version in its path, else None."""
    parts = urlsplit(base_url)
    words = parts.path.split("/")
    for index, word in enumerate(words):
        if word in API_VERSIONS:
            return urlunsplit((parts.scheme, parts.netloc, "/".join(words[: index + 1]), "",
                               ""))
    return None


def operation_url(base_url: str, name: str) -> str:
    """GCP serves operations at the API root: https://host/v1/{name} (a name checked by
    full_name or is_operation_name)."""
    root = _api_root(base_url)
    if root is None:
        raise ServerError(_no_api_version(name))
    return f"{root}/{name}"


def _counter(metadata: Any, name: str) -> dict[str, int] | None:
    raw = metadata.get("counter") if isinstance(metadata, dict) else None
    if not isinstance(raw, dict):
        return None
    counts = {}
    for key in ("success", "failure", "pending"):
        value = raw.get(key, 0)
        text = str(value)
        # GCP sends int64 as JSON strings. Anything else is no count: read as 0, an
        # unreadable failure count would make a failed operation a success.
        if (isinstance(value, bool) or not isinstance(value, (int, str))
                or not (text.isascii() and text.isdigit())):
            raise ServerError(f'check operation {name}: the counter\'s "{key}" is '
                              f"{json.dumps(value, ensure_ascii=False)[:80]}, not a count",
                              "the answer is not an operation")
        counts[key] = int(text)
    return counts


def get_operation(http: Http, base_url: str, name: str,
                  deadline: Deadline | None = None) -> Operation:
    name = full_name(base_url, name)
    try:
        response = http.request("GET", operation_url(base_url, name),
                                what=f"check operation {name}", deadline=deadline)
    except NotFoundError as error:  # the status's own hint is about UIDs in a path
        raise NotFoundError(error.message, "no such operation: check its name, and that HOST"
                            " is the store it ran in", status=error.status,
                            url=error.url) from None
    with response:
        try:
            payload = response.json()
        except ValueError:
            payload = None
    if not isinstance(payload, dict):
        raise ServerError(f"check operation {name}: the answer is not an operation (JSON)")
    refusal = _not_an_operation(payload, name, f"check operation {name}", response.url)
    if refusal is not None:
        raise refusal
    done = payload.get("done", False)  # Google leaves it out until it is true
    if not isinstance(done, bool):  # "false" (a string) is truthy: never take it as done
        # The value's characters as they are: the log line escapes what must be.
        raise ServerError(f'check operation {name}: "done" is '
                          f'{json.dumps(done, ensure_ascii=False)[:80]}, not true or false',
                          "the answer is not an operation")
    return Operation(name, done, _counter(payload.get("metadata"), name),
                     _failure(payload.get("error")), payload)


def _not_an_operation(payload: dict[str, Any], asked: str, what: str, url: str
                      ) -> DcmwebError | None:
    """Why an object is not the operation ``asked`` for, or None: an operation has a name,
    the one asked for (another one's "done", from a cache or a proxy that routes by
    host, would report work not done), and carries an error only once done (a gateway's
    error envelope, {"error": {"code": 401, ...}}, would otherwise be polled as "still
    running" until the timeout)."""
    name, said = payload.get("name"), _failure(payload.get("error"))
    if not (isinstance(name, str) and name):
        why = "no operation name"
    elif name != asked:
        why = f"it is operation {quoted(name[:200])}"
    elif said is not None and payload.get("done") is not True:
        why = "an error, and not done"
    else:
        return None
    message = f"{what}: the answer is not an operation ({why})"
    if said is not None:
        message += f": {said[:200]}"
    error = payload.get("error")
    if isinstance(error, dict) and error.get("code") in (401, 403):
        return AuthError(message, credentials_hint(is_google_host(url)), url=url)
    return ServerError(message, url=url)


def _failure(error: Any) -> str | None:
    """What an operation's ``error`` reports, or None for none: a google.rpc.Status with
    code 0 (OK, and left out of the JSON as proto3's default) and no message, or empty,
    is no error; a message without a code still says the operation failed."""
    if isinstance(error, dict):
        if not error.get("code") and not error.get("message"):
            return None
        return str(error.get("message") or error)
    return str(error) if error else None


def wait_operation(http: Http, base_url: str, name: str, timeout: float = 600.0,
                   what: str | None = None, *, started: bool = False) -> Operation:
    """Poll until done; raise if it failed or is still running after ``timeout`` seconds.
    ``started``: this run's ``what`` started it, so a poll that fails raises
    :class:`OutcomeUnknown` (the work was accepted), not the poll's own error."""
    name = full_name(base_url, name)
    running = f"{what}: operation {name}" if what else f"operation {name}"
    what = what or f"operation {name}"
    follow = (f"it goes on on the server; follow it with 'dcmweb HOST operations wait {name}'"
              f" or raise {option('timeout')}")
    deadline = time.monotonic() + timeout
    delay = POLL_FIRST
    while True:
        # A poll's retries end with the wait: a Retry-After must not keep it going.
        poll_limit = Deadline(max(LAST_POLL_TIME, deadline - time.monotonic()),
                              f"the wait's timeout ({timeout:g} s)", follow)
        try:
            operation = get_operation(http, base_url, name, poll_limit)
        except DcmwebError as error:
            if not started:
                raise
            raise OutcomeUnknown(error, what, name) from error
        if operation.done:
            reason = operation.failure_reason()
            if reason is not None:
                raise ServerError(f"{what} failed on the server: {reason} "
                                  f"({operation.progress()})", f"operation {name}")
            return operation
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UnavailableError(
                f"{what} still running after {timeout:g} s ({operation.progress()})", follow)
        log.info("%s still running: %s", running, operation.progress())
        http.sleep(min(delay, remaining))
        delay = min(delay * 2, POLL_MAX)
