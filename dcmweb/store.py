"""STOW-RS: send batches of files, match the answer back to files, report each one.

Each attempt rebuilds its body from the files on disk (see http.Http.request), so a
retried upload always carries every byte. Which files are sent, and in what batches,
storefiles.py decides.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import storecheck
from .body import body_message
from .errors import (
    AnswerLost,
    DcmwebError,
    RedirectRefused,
    ServerError,
    UnavailableError,
    UnreadableAnswer,
)
from .failures import (
    UNAVAILABLE_HINT,
    UNAVAILABLE_STATUSES,
    parse_retry_after,
    sent_undecided,
)
from .filebody import SizedFileBody
from .files import not_regular
from .http import SERVER_ERROR_RETRIES, Http
from .limits import out_of_descriptors
from .multipart import FileChanged, MultipartBody, MultipartError, new_boundary
from .optionnames import option
from .parallel import run_bounded
from .record import replace
from .redact import shorten
from .served import GONE
from .storefiles import (
    Batch,
    ConfirmedBy,
    Part10File,
    Status,
    StoreOptions,
    StoreResult,
    batches,
    cannot_read,
)
from .stowanswer import StowAnswer, parse_stow_answer
from .unexpected import HOST_HINT

ANSWER_LIMIT = 16 * 1024 * 1024  # a STOW answer lists each instance: far less than this
# These may come after the server stored the files: checked by search before a resend.
# 503 and 429 (retried by Http) say the server did not take the request on at all. Any
# other 5xx ends the request at once, and 503 does at the outage limit: their files are
# settled by one search (see Uploader._ended).
LOST_STATUSES = (500, 502, 504)
FAILED_BATCHES_LIMIT = 5  # batches in a row the server fails before the run stops
SPLIT_ATTEMPTS = 2  # attempts per half when a failing batch is split
log = logging.getLogger("dcmweb")


# Files sent without an answer that decided them (lost, a 5xx, not named): why, and the
# HTTP status when there was one. The server may hold them until a search finds them.
Doubt = tuple[str, int | None]
Doubts = dict[Path, Doubt]
UNCONFIRMED = "the run stopped before the server's answer or a search confirmed it"
# A search found the file's UIDs, and reading the instance back showed other bytes: a
# conflict, like a 409 that says so (bulk's --on-conflict knows it by these words).
OTHER_BYTES = "the server holds other bytes under these UIDs"
# A file whose size or mtime changed between its listing and the end of its read: the
# request was cut before its last bytes, so the server stored none of it.
CHANGED_WHILE_SENT = ("changed while being sent (still being written?): not stored; a later "
                      "run sends it")


class Stopped(Exception):
    """An error that stops a batch (or a JSON + JPEG store), with the batch's files
    already decided: a file the server proved it holds is reported stored, not lost with
    the error; a file sent without a deciding answer (``doubts``) is unconfirmed, not
    "not attempted". Never leaves this module or jsonstore's iterator."""

    def __init__(self, error: DcmwebError, decided: list[StoreResult], doubts: Doubts) -> None:
        super().__init__(error.message)
        self.error = error
        self.decided = decided
        self.doubts = doubts


@contextmanager
def _keeping(decided: list[StoreResult], doubts: Doubts | None = None) -> Iterator[None]:
    """Whatever stops the batch here carries ``decided`` and ``doubts`` along (see
    :class:`Stopped`); a later doubt about a file (its resend) says more than this one."""
    try:
        yield
    except Stopped as stopped:
        stopped.decided[:0] = decided
        stopped.doubts = {**(doubts or {}), **stopped.doubts}
        raise
    except DcmwebError as error:
        raise Stopped(error, list(decided), dict(doubts or {})) from error


class Resends:
    """The attempts of one write whose answers are lost (a drop, a 500, 502 or 504, each
    checked by a search before the next): which failures are its own (counted) and which
    an outage's (every request failing: waited out on the shared gate, not counted), a
    500 tried twice more (as in Http), and the wait before the next attempt."""

    def __init__(self, http: Http, attempts: int) -> None:
        self.http = http
        self.attempts = attempts
        self.attempt = 0  # this request's own failures (not an outage's)
        self.last_failure = float("-inf")

    @property
    def left(self) -> bool:
        return self.attempt < self.attempts

    def failed(self, status: int | None, posted: float, carried_out: bool) -> bool:
        """Count a failure of the request sent at ``posted`` (``status`` None: its answer
        lost); whether it is an outage's. ``carried_out``: a search found that the server
        did (some of) it, so the server is up."""
        if status == 500:  # usually a verdict: tried twice more, as in Http
            self.attempts = min(self.attempts, SERVER_ERROR_RETRIES + 1)
        unavailable = status is None or status in UNAVAILABLE_STATUSES
        if carried_out:
            self.http.gate.carried_out(posted)
            unavailable = False
        # Like Http: a failure is this request's own when the server did something since
        # its last one; otherwise every request is failing (an outage, waited out).
        outage = unavailable and self.http.gate.last_ok <= self.last_failure
        self.last_failure = time.monotonic()
        self.attempt += not outage
        return outage

    def delay(self, retry_after: float | None) -> float:
        """The wait before the next attempt: the server's Retry-After (within the
        limits), or the backoff."""
        if retry_after is not None:
            return min(retry_after, self.http.retry_after_limit(self.last_failure)[0])
        return self.http.config.retry.backoff(self.attempt)

    def tries(self) -> str:
        return f" (after {self.attempt} attempts)" if self.attempt > 1 else ""


class _Reply:
    """A STOW answer that arrived (any status the Uploader reads itself)."""

    def __init__(self, status: int, answer: StowAnswer, message: str,
                 retry_after: float | None = None, hint: str | None = None) -> None:
        self.status = status
        self.answer = answer
        self.message = message
        self.retry_after = retry_after
        self.hint = hint  # what to do about an answer that could not be read

    @property
    def lost(self) -> bool:
        """A 5xx without a STOW answer: the server may have stored part of it, or all."""
        return self.status >= 500 and self.answer.names_nothing


class Uploader:
    """Sends batches to one store and turns answers into per-file results.

    A file counts as stored only when the server's answer names it, or when a search
    by SOP Instance UID finds it (an answer that names nothing, a lost answer, a
    refused duplicate). A lost answer is never resent blindly: what the search finds
    is not sent again, so a server that refuses duplicates sees no duplicate. Where no
    success was answered, what the search finds is read back: other bytes under the
    file's UIDs are a conflict, not the file stored.
    """

    def __init__(self, http: Http, base_url: str, options: StoreOptions) -> None:
        self.http = http
        self.base_url = base_url
        self.options = options
        self.url = f"{base_url}/studies"
        if options.study_uid:
            self.url += f"/{options.study_uid}"
        self._lock = threading.Lock()
        self._failed_in_row = 0  # batches in a row of which the server stored nothing
        # What stops the run: no batch starts once it is set. A DcmwebError, or whatever
        # the caller's own iterable of paths raised (see until_stopped).
        self._gave_up: Exception | None = None
        self._listing_failed: Exception | None = None  # see until_stopped
        self._decided_at_stop: list[StoreResult] = []  # in batches an error stopped
        # The files of batches a worker has taken whose results the caller has not had
        # yet (see landed): what Ctrl-C or SIGTERM leaves without an answer.
        self._in_flight: dict[Path, Part10File] = {}
        # Those of them a request has carried (or is about to): the others still wait for
        # their turn (the gate: a Retry-After, the slots), and the server cannot hold them.
        self._sent: set[Path] = set()
        self.finder = storecheck.Finder(http, base_url)

    def _post(self, items: list[Part10File]) -> _Reply:
        headers = {"Accept": "application/dicom+json"}
        if self.options.storage_class:
            headers["Storage-Class"] = self.options.storage_class.upper()
        paths = [item.path for item in items]
        if self.options.single_part:
            headers["Content-Type"] = "application/dicom"
            item = items[0]

            def build() -> object:
                # Http closes it after sending
                return SizedFileBody(item.path, item.head.stamp)
        else:
            boundary = new_boundary()
            headers["Content-Type"] = (
                f'multipart/related; type="application/dicom"; boundary={boundary}')

            def build() -> object:
                return MultipartBody(paths, boundary=boundary,
                                     listed=[item.head.stamp for item in items])

        def body() -> object:
            built = build()
            # Built once its turn came (Http calls this past the gate): it goes out now.
            with self._lock:
                self._sent.update(paths)
            return built

        what = _what(items)
        # retry_sent=False: a lost answer (a drop, or a body cut half-way) comes back here,
        # to be checked before a resend; 5xx likewise (accepted here), since the server may
        # have stored before failing.
        try:
            response = self.http.request("POST", self.url, what=what, headers=headers,
                                         body=body, retry_sent=False, max_body=ANSWER_LIMIT,
                                         accept_status=(400, 409, 413, 415, 422,
                                                        *LOST_STATUSES))
        except UnreadableAnswer as error:
            # Its status came, its words cannot be read: a doubtful answer, settled as
            # one that is not a STOW answer (see _interpret).
            assert error.status is not None  # Http raises it for an answer only
            return _Reply(error.status, StowAnswer(kind="foreign", unreadable=True),
                          _per_file(error, items), hint=error.hint)
        content = response.content
        answer = parse_stow_answer(content, response.headers.get("Content-Type"))
        message = f"HTTP {response.status_code} {response.reason or ''}".rstrip()
        # Not a STOW answer at all (e.g. Google's JSON error envelope): show its message.
        detail = answer.text
        if answer.kind == "foreign":
            detail = body_message(answer.text) or detail
        if detail:
            message += f": {shorten(detail, 200)}"
        elif response.status_code == 400:
            message += " (the server could not read or accept the file)"
        return _Reply(response.status_code, answer, message,
                      parse_retry_after(response.headers.get("Retry-After")))

    def send(self, items: list[Part10File]) -> list[StoreResult]:
        """Store one batch; every file gets a result. Raises only what stops the run (the
        files decided before it are then kept for :meth:`stopped_results`)."""
        with self._lock:
            if self._gave_up is not None:
                raise self._gave_up
            self._in_flight.update((item.path, item) for item in items)
        try:
            results, request_failed = self._send(items, self.http.config.retry.attempts)
        except Stopped as stopped:
            error = stopped.error
            decided = {result.path for result in stopped.decided}
            if stops_the_run(error):
                # Stop now (no batch starts after this); what this batch decided is
                # reported with the error (see stopped_results), and so are the files it
                # sent without learning their fate.
                unconfirmed = [self._unconfirmed(item, *stopped.doubts[item.path])
                               for item in items
                               if item.path in stopped.doubts and item.path not in decided]
                with self._lock:
                    self._decided_at_stop += stopped.decided + unconfirmed
                    self._gave_up = self._gave_up or error
                raise error from None
            # This batch's own failure (a search that kept failing, a server error);
            # whether the run goes on is decided below, across batches.
            reason = _per_file(error, items)
            results = stopped.decided + [self._result(item, "failed", message=reason)
                                         for item in items if item.path not in decided]
            request_failed = True
        self._count(results, request_failed)
        return results

    def until_stopped(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        """The batches, until listing them raises (a check of the inputs that failed:
        credentials, an outage; or the caller's own iterable of paths): then no other
        batch starts, and those already sent finish, so what they stored is reported (see
        :meth:`raise_if_listing_failed`). Ctrl-C is not waited out."""
        try:
            yield from batches
        except Exception as error:
            with self._lock:
                self._listing_failed = error
                self._gave_up = self._gave_up or error

    def raise_if_listing_failed(self) -> None:
        if self._listing_failed is not None:
            raise self._listing_failed

    def landed(self, results: list[StoreResult]) -> None:
        """The caller has these results: their files are no longer in flight."""
        with self._lock:
            for result in results:
                if result.sent:  # one decided unsent is no mention in flight
                    self._in_flight.pop(result.path, None)
                    self._sent.discard(result.path)

    def interrupted_results(self) -> list[StoreResult]:
        """Unconfirmed results for the files in flight when Ctrl-C or SIGTERM stopped the
        run: taken by a worker, sent (their body was built), and never answered to the
        caller (the server may hold them). Those whose request still waited for its turn
        get none: the caller counts them not attempted. Taken once."""
        with self._lock:
            flying = [item for path, item in self._in_flight.items() if path in self._sent]
            self._in_flight, self._sent = {}, set()
        return [self._result(item, "unconfirmed", message=f"in flight when the run was "
                             f"interrupted; {UNCONFIRMED}") for item in flying]

    def stopped_results(self) -> list[StoreResult]:
        """The results of files in batches an error stopped (those decided, and those
        sent without a deciding answer: unconfirmed), taken once."""
        with self._lock:
            taken, self._decided_at_stop = self._decided_at_stop, []
        return taken

    def _count(self, results: list[StoreResult], request_failed: bool) -> None:
        """Stop the run (before the next batch) when the server fails everything."""
        with self._lock:
            if request_failed and not any(r.status == "stored" for r in results):
                self._failed_in_row += 1
            else:
                self._failed_in_row = 0
            if self._failed_in_row >= FAILED_BATCHES_LIMIT and self._gave_up is None:
                last = (results[-1].message if results else "") or ""
                # A web page where a STOW answer belongs carries the HOST hint already;
                # anything else (5xx at the right address) is the server failing.
                self._gave_up = UnavailableError(
                    f"stopping: the server failed {self._failed_in_row} batches in a row "
                    f"(last: {last})", None if HOST_HINT in last else UNAVAILABLE_HINT)

    def _send(self, items: list[Part10File], attempts: int,
              split: bool = True) -> tuple[list[StoreResult], bool]:
        """Results, and whether the request itself failed (not the server's per-file no).

        A request that keeps failing is split in halves to find the file that fails it
        (``split``); when a first half fails as a whole, the second is tried once as a
        whole: both failing means the server, not a file.
        """
        done: list[StoreResult] = []
        doubts: Doubts = {}
        with _keeping(done, doubts):
            return self._sending(done, doubts, items, attempts, split)

    def _sending(self, done: list[StoreResult], doubts: Doubts, items: list[Part10File],
                 attempts: int, split: bool) -> tuple[list[StoreResult], bool]:
        """:meth:`_send`, adding each file's result to ``done`` once it is decided, and
        each file sent without a deciding answer to ``doubts``."""
        pending = items
        reason = ""
        resends = Resends(self.http, attempts)
        resending = False  # every pass after the first resends what the search did not find
        while resends.left:
            if resending:
                self.http.retried()
            resending = True
            wait: float | None = None
            status: int | None = None  # of the answer, when one came
            dropped = False  # sent, and the connection lost before an answer
            cut: str | None = None  # the request deadline ended the wait: what to try
            posted = time.monotonic()  # the gate's clock
            try:
                reply = self._post(pending)
            except RedirectRefused as error:
                # Sent, and answered by a redirect: never followed, and the run stops, as
                # every other request would be redirected too. The server may have stored
                # before redirecting (a 303 is the answer to a POST carried out).
                done += self._redirected(pending, error)
                raise self._redirect_stop(pending, error, done) from None
            except AnswerLost as error:
                reason = problem = error.message
                dropped = True
                cut = error.hint if error.cut else None
            except DcmwebError as error:
                if refused(error):
                    # Nothing of it is stored: failed, not "not attempted", even when the
                    # run stops (every other request would be refused alike).
                    done += [self._result(item, "failed", message=_per_file(error, pending),
                                          http_status=error.status) for item in pending]
                elif sent_undecided(error):
                    # The server may hold the files: a search settles them, and the run
                    # goes on (a 503 at the outage limit stops it all the same).
                    doubts.update((item.path, (_per_file(error, pending), error.status))
                                  for item in pending)
                    ended = self._ended(pending, error)
                    done += ended
                    if not stops_the_run(error):
                        return done, any(result.status == "unconfirmed" for result in ended)
                raise
            except FileChanged as error:
                # Maybe still being written: this file fails, the others go again.
                changed = [item for item in pending if os.fspath(item.path) == error.path]
                rest = [item for item in pending if item not in changed]
                log.info("%s; the request was cut before its end%s", error,
                         f"; sending the other {len(rest)} files again" if rest else "")
                done += [self._result(item, "failed", message=CHANGED_WHILE_SENT)
                         for item in changed]
                if not rest:
                    return done, False
                again, failed = self._send(rest, attempts, split)
                return done + again, failed
            except (MultipartError, OSError) as error:
                # Out of descriptors, every file would fail "cannot read" alike.
                limit = (out_of_descriptors(error, f"cannot open {error.filename}")
                         if isinstance(error, OSError) else None)
                if limit is not None:
                    raise limit from error
                # A file deleted, made unreadable or a folder since it was listed: its
                # body could not be built or read, so nothing of it is stored. Find out
                # which file, one request each.
                if len(pending) > 1:
                    return done + self._one_by_one(pending), False
                return [*done, self._unsendable(pending[0], error)], False
            else:
                if not reply.lost:
                    # A web page where an answer should be is the request failing, not a
                    # refusal of these files.
                    foreign = reply.answer.kind == "foreign" and reply.status < 300
                    # Files resent one by one keep their own request's status.
                    return done + [result if result.http_status else
                                   replace(result, http_status=reply.status)
                                   for result in self._interpret(pending, reply)], foreign
                reason, wait, status = reply.message, reply.retry_after, reply.status
                problem = f"{_what(pending)} failed: {reason}"
            # The answer is lost: ask what the server holds before sending anything again.
            doubts.update((item.path, (reason, status)) for item in pending)
            unread: dict[Path, str] = {}
            found = self._confirmed(pending, "its answer was lost", unread=unread,
                                    doubt=(reason, status))
            done += found
            if any(result.status == "unconfirmed" for result in found):
                return done, True  # the search failed: a resend might store a second copy
            stored = {result.path for result in found}
            pending = [item for item in pending if item.path not in stored]
            searched = _searched(len(found), unread, len(pending))
            if cut is not None and pending:
                return done + [self._result(item, "unconfirmed", hint=cut,
                                            message=not_resent(reason, searched))
                               for item in pending], True
            outage = resends.failed(status, posted, carried_out=bool(found or unread))
            if not pending or not resends.left:
                log.info("%s; %s", problem, searched)
                if not pending:
                    return done, False
                continue
            if outage:
                note = self.http.outage_note()
                if note is not None and dropped:
                    # Dropped for the whole outage limit while every search was answered:
                    # maybe not the server but one file that no request carrying it gets
                    # past (a proxy resetting it, a file that breaks the handler). Split,
                    # so that the other files are stored and that one fails alone; the run
                    # goes on (a real outage fails the next batches too, and stops it).
                    log.info("%s; the server answered every search meanwhile: giving up on "
                             "this request%s", problem,
                             ", split to find a file it never takes" if len(pending) > 1
                             else "")
                    resends.attempt = resends.attempts
                    continue
                if note is not None:
                    raise UnavailableError(f"{problem} ({note})", UNAVAILABLE_HINT)
                # The shared backoff this failure set spaced the search and the resend
                # (and holds every other worker's requests likewise).
                log.info("%s; %s; the server is unavailable: %s", problem, searched,
                         _resending(len(pending), unread))
                continue
            delay = resends.delay(wait)
            log.info("%s; %s; %s in %.1f s", problem, searched,
                     _resending(len(pending), unread), delay)
            self.http.sleep(delay)
        if len(pending) > 1 and split:
            half = len(pending) // 2
            first, first_failed = self._send(pending[:half], SPLIT_ATTEMPTS)
            done += first
            whole = first_failed and not any(r.status == "stored" for r in first)
            second, second_failed = self._send(pending[half:], SPLIT_ATTEMPTS, split=not whole)
            return done + second, first_failed and second_failed
        return done + [self._result(item, "failed", message=reason + resends.tries())
                       for item in pending], True

    def _ended(self, items: list[Part10File], error: DcmwebError) -> list[StoreResult]:
        """The files of a request a 5xx ended (503 to the outage limit; a 5xx Http does
        not retry, such as Cloudflare's 524 after the server stored), settled by one
        search: found, stored. Not found, unconfirmed and not sent again, as after the
        request deadline (see not_resent): no retry is left, and a gateway's 5xx may come
        while the server is still at work, so a search that does not find a file yet does
        not show that the server will never hold it."""
        reason, status = _per_file(error, items), error.status
        unread: dict[Path, str] = {}
        found = self._confirmed(items, "its answer was lost", unread=unread,
                                doubt=(reason, status))
        if any(result.status == "unconfirmed" for result in found):
            return found  # the search failed: it decided nothing
        settled = {result.path for result in found}
        left = [item for item in items if item.path not in settled]
        searched = _searched(len(found), unread, len(left))
        if not left:
            log.info("%s; %s", error.message, searched)
        return [replace(result, http_status=status) for result in found] + [
            self._result(item, "unconfirmed", message=not_resent(reason, searched),
                         http_status=status) for item in left]

    def _interpret(self, items: list[Part10File], reply: _Reply) -> list[StoreResult]:
        status, answer = reply.status, reply.answer
        if answer.kind == "foreign" and status < 300 and answer.web_page:
            # A login or viewer page: HOST is not a DICOMweb server (its markup says no more).
            message = f"server answered {answer.describe()}, not a STOW answer (HTTP {status})"
            return [self._result(item, "failed", message=message, hint=HOST_HINT)
                    for item in items]
        results: list[StoreResult] = []
        unnamed: list[Part10File] = []
        duplicates: list[tuple[Part10File, str]] = []
        answered = [*answer.failed, *answer.stored]
        for item in items:
            uid = item.sop_instance_uid
            if answered and uid not in answered and item.head.uids:
                # The answer names the data set's SOPInstanceUID; the File Meta's may differ.
                uid = item.head.uids[2]
            if (len(items) == 1 and uid not in answered and len(answered) == 1
                    and not item.head.uids):
                # One file whose data set could not be read, one answer: it is this
                # file's (the data set's SOPInstanceUID may differ from the File Meta's).
                # A file read whole is named by its own UIDs or not at all.
                uid = answered[0]
            if uid in answer.failed:
                failure = answer.failed[uid]
                if failure.maybe_duplicate:
                    duplicates.append((item, failure.describe()))
                else:
                    results.append(self._result(item, "failed", message=failure.describe()))
            elif uid in answer.stored:
                warning = answer.warnings.get(uid)
                note = f"server warning 0x{warning:04X}" if warning is not None else None
                results.append(self._result(item, "stored", answer.stored[uid], note, "answer"))
            else:
                unnamed.append(item)
        # A search or resend below may stop the run: the server may hold what it did not
        # name (or refused as a duplicate).
        doubt = (reply.message, status)
        with _keeping(results, {item.path: doubt for item in items}):
            if duplicates:
                results.extend(self._duplicates(duplicates, doubt))
            if not unnamed:
                return results
            if len(items) > 1 and answer.failed:
                # It lists failures, maybe of a file it could not name: sent alone, a
                # file gets its own reason.
                results.extend(self._one_by_one(unnamed))
            elif status < 300:
                # A success that does not name these files proves nothing: ask the server
                # (a resend would only ask the same answer again). An answer it cannot
                # read is not even a success: what the search finds is read back.
                found_note, missing = _left_out(len(items), reply)
                results.extend(self._confirmed(unnamed, found_note, missing=missing,
                                               read_back=answer.kind == "foreign",
                                               doubt=doubt))
            elif len(items) > 1:
                # The answer does not say which files failed: ask one file at a time.
                results.extend(self._one_by_one(unnamed))
            elif status == 409:
                # Its reason, when the answer gives one (and its code, for the report).
                lone = answer.lone_unnamed_failure
                message = lone.describe() if lone else reply.message
                if (lone and lone.maybe_duplicate) or _says_duplicate(reply.message):
                    results.extend(self._duplicates([(unnamed[0], message)], doubt))
                else:
                    # A conflict the server did not call a duplicate: a search still
                    # tells whether it holds the file, and the message says no more.
                    results.extend(self._confirmed(unnamed, (
                        f"the server answered {reply.message}, yet a search finds it on "
                        "the server"), missing=message, doubt=doubt))
            else:
                hint = ""
                if status == 415 and self.options.single_part:
                    hint = f"this server needs multipart uploads: drop {option('single_part')}"
                results.append(self._result(unnamed[0], "failed", message=reply.message,
                                            hint=hint or reply.hint))
            return results

    def _duplicates(self, refused: list[tuple[Part10File, str]],
                    doubt: Doubt) -> list[StoreResult]:
        """A refused duplicate is stored when a search finds it (a rerun, a resend). Sent
        to a study, only a file of that study can be one: Orthanc refuses a file of
        another study with the same bare 0x0110 (and accepts real duplicates)."""
        return self._confirmed([item for item, _ in refused],
                               "already on the server: a duplicate refused",
                               missing={item.path: self._with_study(item, message)
                                        for item, message in refused}, doubt=doubt)

    def _redirected(self, items: list[Part10File], error: RedirectRefused
                    ) -> list[StoreResult]:
        """The files of a request answered by a redirect, settled by a search: stored when
        it finds them, failed when not, unconfirmed when it cannot tell."""
        reason = _per_file(error, items)
        doubt = (reason, error.status)
        try:
            results = self._confirmed(items, f"{reason}; found on the server by search",
                                      missing=f"{reason}; a search does not find it",
                                      doubt=doubt)
        except DcmwebError as failure:
            # Redirected too (http:// for an https:// server), or refused: the redirect
            # stops the run all the same, and says what HOST should be.
            results = [self._undecided(item, doubt, failure) for item in items]
        return [replace(result, http_status=error.status) for result in results]

    @staticmethod
    def _redirect_stop(items: list[Part10File], error: RedirectRefused,
                       done: list[StoreResult]) -> RedirectRefused:
        """The error that stops the run, saying what the search found."""
        paths = {item.path for item in items}
        settled = [result for result in done if result.path in paths]
        if any(result.status == "unconfirmed" for result in settled):
            them = "it" if len(items) == 1 else "them"
            found = f"a search could not tell whether the server holds {them}"
        else:
            stored = sum(result.status == "stored" for result in settled)
            found = f"{stored} of {len(items)} found on the server by search"
        return RedirectRefused(f"{_what(items)}: {_per_file(error, items)}; {found}",
                               error.hint, status=error.status, url=error.url)

    def _with_study(self, item: Part10File, message: str) -> str:
        """A refusal's message; for a file sent to a study it is not of, why."""
        asked, uids = self.options.study_uid, item.head.uids
        if asked is None or uids is None or uids[0] == asked:
            return message
        return f"{message} (its Study Instance UID is {uids[0]}, not {asked})"

    def _confirmed(self, items: list[Part10File], note: str | None,
                   missing: str | dict[Path, str] | None = None, *, read_back: bool = True,
                   unread: dict[Path, str] | None = None,
                   doubt: Doubt) -> list[StoreResult]:
        """Search for the items: found ones are stored (by search); the others fail with
        ``missing`` (or their own reason in it), or are left out when it is None. A
        search that fails (a sign-in page, a 500) decides nothing: every item is then
        unconfirmed, with ``doubt`` (what its request got, and that status).

        A search proves the SOP Instance UID, not the bytes: unless the server answered
        success (``read_back`` False), a found instance is read back, and one whose bytes
        are not the file's is a conflict; one that cannot be read back counts as not
        found (resent, or failed with ``missing``), and why goes in ``unread``. After a
        success, a found instance is retrieved instead (its status only): searches lag
        behind deletes, so one deleted moments ago is found; a 404 counts as not found."""
        wanted = {item.path: storecheck.wanted(item.head.uids, item.sop_instance_uid,
                                               self.options.study_uid) for item in items}
        try:
            found = self.finder.held(filter(None, wanted.values()))
        except DcmwebError as error:
            if stops_the_run(error):
                raise
            return [self._undecided(item, doubt, error) for item in items]
        results: list[StoreResult] = []
        for item in items:
            looked_for = wanted[item.path]
            unproven = ""
            if looked_for is not None and looked_for.sop_uid in found:
                try:
                    same = (storecheck.holds_bytes(self.http, self.base_url, looked_for,
                                                   item.path) if read_back else
                            storecheck.served_now(self.http, self.base_url, looked_for))
                except storecheck.READ_BACK_FAILED as error:
                    unproven = _unproven(error)
                    if unread is not None:
                        unread[item.path] = _read_back_problem(error)
                else:
                    if same:
                        results.append(self._result(item, "stored",
                                                    found[looked_for.sop_uid], note, "search"))
                        continue
                    if read_back:
                        results.append(self._result(item, "failed", message=(
                            f"{note}; {OTHER_BYTES}" if note else OTHER_BYTES)))
                        continue
                    unproven = LISTED_NOT_SERVED
            if missing is not None:
                why = missing if isinstance(missing, str) else missing[item.path]
                results.append(self._result(item, "failed", message=why + unproven))
        return results

    def _one_by_one(self, items: list[Part10File]) -> list[StoreResult]:
        results: list[StoreResult] = []
        with _keeping(results):
            for item in items:
                results += self._send([item], self.http.config.retry.attempts)[0]
        return results

    def _unsendable(self, item: Part10File, error: MultipartError | OSError) -> StoreResult:
        """A file whose own body could not be built or read: failed, and sent by no
        request (the attempts it counts, the progress), so no longer in flight either."""
        with self._lock:
            self._in_flight.pop(item.path, None)
            self._sent.discard(item.path)
        return replace(self._result(item, "failed", message=_unreadable(item.path, error)),
                       sent=False)

    @classmethod
    def _unconfirmed(cls, item: Part10File, reason: str, status: int | None) -> StoreResult:
        return cls._result(item, "unconfirmed", message=f"{reason}; {UNCONFIRMED}",
                           http_status=status)

    @classmethod
    def _undecided(cls, item: Part10File, doubt: Doubt,
                   error: DcmwebError) -> StoreResult:
        """A file its request's answer did not decide, and the search failed."""
        reason, status = doubt
        return cls._result(item, "unconfirmed", message=undecided(reason, error),
                           http_status=status)

    @staticmethod
    def _result(item: Part10File, status: Status, url: str | None = None,
                message: str | None = None, confirmed_by: ConfirmedBy | None = None, *,
                hint: str | None = None, http_status: int | None = None) -> StoreResult:
        if hint:
            message = f"{message} ({hint})"
        # The data set's UIDs are the instance's identity on the server (the File Meta's
        # SOP Instance UID may differ).
        study, series, sop = item.head.uids or (None, None, item.sop_instance_uid)
        return StoreResult(item.path, status, item.size, sop, url,
                           message, confirmed_by, http_status=http_status,
                           study_instance_uid=study, series_instance_uid=series)


def _left_out(sent: int, reply: _Reply) -> tuple[str | None, str]:
    """What a success says of a file it does not name: when a search finds it, and when
    not."""
    answer, status = reply.answer, reply.status
    answered = [*answer.failed, *answer.stored]
    if sent > 1 and answered:  # it named others sent with this file
        return ("the server's answer did not name this file; found on the server by search",
                f"the server's answer (HTTP {status}) did not name this file; not on the "
                "server")
    if answer.unreadable:  # a coding it cannot decode: what the server said is unknown
        return ("the server's answer could not be read; found on the server by search",
                f"{reply.message}, and a search does not find it ({reply.hint})")
    if answer.kind == "foreign":  # a 2xx answer it cannot read (an error envelope)
        said = body_message(answer.text)
        return ("the server's answer could not be read; found on the server by search",
                f"the server answered HTTP {status} with {answer.describe()}, not a STOW "
                f"answer{f': {shorten(said, 200)}' if said else ''}, and a search does not find it")
    others = ", ".join(answered[:3])  # one file, another instance named
    named = f"naming {others}, not this file" if others else "naming no file"
    return None, (f"the server answered HTTP {status} with {answer.describe()} {named}, and "
                  "a search does not find it")


def _unreadable(path: Path, error: MultipartError | OSError) -> str:
    """Why a file listed as DICOM could not be sent: as the listing says it of a file it
    cannot read ("cannot read: No such file or directory")."""
    if isinstance(error, OSError):
        return cannot_read(path, error)
    return f"cannot read: {not_regular(path) or error}"


def _read_back_problem(error: DcmwebError | OSError) -> str:
    return error.message if isinstance(error, DcmwebError) else (
        f"cannot read the file: {error.strerror}")


# A file a search found after a success that did not name it, whose retrieve is a 404.
LISTED_NOT_SERVED = (f"; found by a search, but a retrieve of it answers 404 (deleted moments "
                     f"ago: {GONE})")


def _unproven(error: DcmwebError | OSError) -> str:
    """Why a file a search found is not proven stored: its copy could not be read back."""
    return ("; found on the server, but its copy could not be read back to compare: "
            f"{_read_back_problem(error)}")


def _searched(found: int, unread: dict[Path, str], left: int) -> str:
    """What the search after a lost answer found, for the log: the files it proved
    stored, and those found whose copy could not be read back (sent again)."""
    told = f"{found + len(unread)} of {found + left} found on the server by search"
    if unread:
        told += (f", {len(unread)} not proven stored (its copy could not be read back: "
                 f"{next(iter(unread.values()))})")
    return told


def _resending(left: int, unread: dict[Path, str]) -> str:
    return f"sending {left} again" if unread else f"retrying the other {left}"


def _says_duplicate(message: str) -> bool:
    """Whether a refusal's own words call the file a duplicate (an empty 409 does not)."""
    return any(word in message.lower() for word in ("duplicate", "already exists"))


def _what(items: list[Part10File]) -> str:
    return f"store {items[0].path}" if len(items) == 1 else f"store of {len(items)} files"


def undecided(reason: str, error: DcmwebError) -> str:
    """Why an item its answer did not decide is unconfirmed: the search that should
    settle it failed too (a sign-in page, 500s)."""
    message = f"{reason}; {error.message}; the server may hold it"
    return f"{message} ({error.hint})" if error.hint else message


def refused(error: DcmwebError) -> bool:
    """Whether a write's error is an answer that refused it whole (401, 403, 404; 407 by a
    proxy; 429 until the retries or the outage limit ran out): nothing of it is stored.
    A 5xx is no refusal: a gateway or the server may have given up after the work was
    done (503 to the outage limit, Cloudflare's 524), see :func:`failures.sent_undecided`."""
    return error.status is not None and 400 <= error.status < 500


def not_resent(reason: str, searched: str) -> str:
    """Why an item whose request the deadline cut (see AnswerLost) is unconfirmed: a
    search that does not find it yet proves nothing, as the server may still be at work
    on it, and a resend would be cut alike."""
    return f"{reason}; {searched}; not sent again: the server may still store it"


def stops_the_run(error: DcmwebError) -> bool:
    """Whether an error ends the run, not one batch: unreachable or overloaded for every
    retry, credentials, a HOST that redirects (every other request would fail alike)."""
    return not isinstance(error, (AnswerLost, ServerError)) or isinstance(
        error, RedirectRefused)


def _per_file(error: DcmwebError, items: list[Part10File]) -> str:
    """The error's reason for each file's own line, which names the file already."""
    return error.message.removeprefix(f"{_what(items)} failed: ")


def iter_store(http: Http, base_url: str, paths: Iterable[Path | Part10File],
               options: StoreOptions | None = None, *,
               on_stop: Callable[[], None] | None = None,
               halt: Callable[[], bool] = lambda: False
               ) -> Generator[StoreResult, None, None]:
    """Store files and yield one result per file as batches finish (a
    :class:`Part10File` is a file whose head the caller has read already).

    Files that are not DICOM are yielded as ``skipped``, and those missing or
    unreadable as ``failed``, as soon as they are read (not held until a batch is
    sent: a list may name millions of them). Per-file failures are
    results, not exceptions; errors that make going on pointless (credentials,
    an unreachable server) stop the run and are raised after the finished
    batches' results have been yielded, and those of the files sent without an
    answer that decided them (``unconfirmed``: the server may hold them). ``on_stop`` is
    called once the run has stopped, before those results. ``halt`` is asked before
    each batch (in the worker threads) and after each batch's results: once it says
    True, no other batch starts, and the batches already being sent finish and are
    yielded.
    """
    options = options or StoreOptions()
    uploader = Uploader(http, base_url, options)
    try:
        for results in run_bounded(uploader.send,
                                   uploader.until_stopped(batches(paths, options)),
                                   options.workers, halt=halt):
            uploader.landed(results)
            yield from results
        uploader.raise_if_listing_failed()
    except DcmwebError:
        # Stopped: the files already decided are still told (what the server holds is
        # stored), and those sent without an answer (unconfirmed), so that only the
        # files never sent count as not attempted.
        if on_stop:
            on_stop()
        yield from uploader.stopped_results()
        raise
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM: the batches that finished were handed over (run_bounded);
        # those still running are not waited for, and their files sent are unconfirmed.
        if on_stop:
            on_stop()
        yield from uploader.interrupted_results()
        raise
