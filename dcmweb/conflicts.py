"""--on-conflict: telling a refused duplicate, and overwriting the server's instance.

A file the server refused as a duplicate of what it holds is a conflict
(:func:`is_conflict`). With ``--on-conflict overwrite``, an :class:`Overwriter` deletes
the server's conflicting instance and stores the file again; it remembers what the run
stored under each SOP Instance UID, so that it never deletes this run's own copy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .bulkrecords import Outcome, file_uids, outcome_of
from .errors import AnswerLost, AuthError, DcmwebError, RedirectRefused, UnavailableError
from .journal import DONE
from .record import replace
from .signals import resumed
from .store import OTHER_BYTES, iter_store

if TYPE_CHECKING:
    from .bulkrecords import Pending
    from .http import Http
    from .storefiles import StoreOptions, StoreResult

# A refused duplicate: DICOM's 0x0111, or the 409/0x0110 "already exists" of Google's API.
_CONFLICT = re.compile(rf"0x0111|already exists|HTTP 409|{re.escape(OTHER_BYTES)}",
                       re.IGNORECASE)
# --on-conflict overwrite: the server now holds neither the old copy nor this one.
DELETED_NOT_STORED = "deleted the server's conflicting instance, then this file was not stored"


def is_conflict(outcome: Outcome) -> bool:
    """Whether the server refused the file as a duplicate (--on-conflict decides)."""
    return outcome.status == "failed" and bool(_CONFLICT.search(outcome.message or ""))


def _stops_the_run(error: DcmwebError) -> bool:
    """Whether every other request of the run would fail the same way: credentials
    refused, a HOST that redirects, the server down past the outage limit."""
    return (isinstance(error, (AuthError, RedirectRefused, UnavailableError))
            and not isinstance(error, AnswerLost))


class Overwriter:
    """--on-conflict overwrite for one run: :meth:`overwrite` resolves a conflict, and
    :meth:`remember` is told each outcome the run records."""

    def __init__(self, http: Http, base_url: str, store_options: StoreOptions) -> None:
        self.http = http
        self.base_url = base_url
        self.store_options = store_options
        # SOP Instance UID -> the file of this run the server holds under it (stored,
        # already stored), whose copy it must not delete.
        self._held: dict[str, str] = {}

    def remember(self, outcome: Outcome) -> None:
        if outcome.status in DONE and outcome.uids[2]:
            self._held.setdefault(outcome.uids[2], str(outcome.path))

    def overwrite(self, outcome: Outcome, pending: Pending | None, in_flight: Iterable[Pending],
                  emit: Callable[[Outcome], None]) -> DcmwebError | None:
        """Delete the server's instance and store the file of ``outcome`` (a conflict
        with all three UIDs) again, then ``emit`` its outcome. A delete that fails fails
        this file alone, its row saying whether the server still holds its instance.
        What stops a run (credentials, the server down past the outage limit) stops it
        here too: the file gets its row, then the error is returned, for the run to send
        no other file. Ctrl-C is not held back for these requests; the file is then
        unconfirmed (the server may hold either instance, or neither). ``in_flight``: the
        run's files sent and not yet answered."""
        rival = self._rival(outcome, in_flight)
        if rival is not None:
            # The server's instance may be that file's copy: deleting it would undo
            # this run's own store, and the two files would take turns on every run.
            emit(replace(outcome, message=f"{rival}: not overwritten; {outcome.message}"))
            return None
        try:
            with resumed():
                kept = self._delete_conflicting(outcome)
        except KeyboardInterrupt:
            emit(replace(outcome, status="unconfirmed", message=(
                "interrupted while deleting the server's conflicting instance (it may "
                "hold it, or neither copy)")))
            raise
        except DcmwebError as error:  # see _delete_conflicting: it stops the run
            emit(replace(outcome, message=(
                f"the run stopped while deleting the server's conflicting instance (it "
                f"may hold it, or neither copy): {error.headline}"),
                http_status=error.status, reason_code=None))
            return error
        if kept is not None:
            emit(kept)
            return None
        return self._store_again(outcome, pending, emit)

    def _store_again(self, outcome: Outcome, pending: Pending | None,
                     emit: Callable[[Outcome], None]) -> DcmwebError | None:
        """Store the file of ``outcome`` once its conflicting instance is deleted. The
        store is run to its end: one that stops (Ctrl-C, the server down, credentials)
        yields the file's result first, then raises, and that stops this run too (the
        error returned)."""
        again: StoreResult | None = None
        stop: DcmwebError | None = None
        try:
            with resumed():
                for result in iter_store(self.http, self.base_url, [outcome.path],
                                         replace(self.store_options, workers=1)):
                    again = result  # one file, one result
        except KeyboardInterrupt:
            emit(self._replaced(outcome, again, pending) if again is not None else replace(
                outcome, status="unconfirmed", message="deleted the server's conflicting "
                "instance, then interrupted before this file's store was answered (the "
                "server may hold it, or neither copy)"))
            raise
        except DcmwebError as error:
            stop = error
        if again is not None:
            emit(self._replaced(outcome, again, pending))
        elif stop is not None:  # the store stopped the run before sending the file
            emit(replace(outcome, message=f"{DELETED_NOT_STORED}; {stop.headline}",
                         http_status=stop.status, reason_code=None))
        return stop

    def _replaced(self, outcome: Outcome, again: StoreResult, pending: Pending | None
                  ) -> Outcome:
        redone = outcome_of(again, pending)
        # A resend within the run: the attempts count runs, not requests.
        return replace(redone, attempts=outcome.attempts, message=_replacement_note(redone))

    def _rival(self, outcome: Outcome, in_flight: Iterable[Pending]) -> str | None:
        """Which other file of this run is stored, or in flight, under the SOP Instance
        UID of this conflict, if one is."""
        sop = outcome.uids[2] or ""
        held = self._held.get(sop)
        if held is not None and held != str(outcome.path):
            return f"another file of this run, {held}, was stored under these UIDs"
        for other in in_flight:
            if other.sop_uid is None:  # read once per file, and only on a conflict
                other.sop_uid = file_uids(Path(other.key))[2] or ""
            if other.sop_uid == sop:
                return f"another file of this run, {other.key}, was sent under these UIDs"
        return None

    def _delete_conflicting(self, outcome: Outcome) -> Outcome | None:
        """Delete the server's instance under the file's UIDs: None once it is gone, else
        the file's failed outcome. A failed delete may have been done all the same (its
        answer lost, a 500 sent after the work), or may have found nothing there (the
        server holds the SOP Instance UID in another series): a search tells. Raises what
        stops the run: credentials refused, or the server down for the delete and the
        search alike."""
        from .delete import Deleter
        from .existing import ServerHoldings

        study, series, sop = outcome.uids
        assert study and series and sop  # overwrite() is given only files with all three
        try:
            Deleter(self.http, self.base_url, 600.0).delete(
                f"studies/{study}/series/{series}/instances/{sop}")
            return None
        except (AuthError, RedirectRefused):
            raise  # every other request would meet it too
        except DcmwebError as error:
            failure = error
        # A fresh search: a --skip-existing answer remembered earlier is stale now.
        holdings = ServerHoldings(self.http, self.base_url)
        try:
            if holdings.holds(study, series, sop):
                why = (f"could not delete the server's conflicting instance (it still "
                       f"holds it): {failure.headline}")
            else:
                elsewhere = [path for path in holdings.series_holding(sop)
                             if path != f"studies/{study}/series/{series}"]
                if not elsewhere:
                    return None
                why = (f"the server holds this SOP Instance UID under another study or "
                       f"series ({', '.join(elsewhere)}), not this file's; nothing was "
                       f"deleted: {failure.headline}")
        except DcmwebError as error:
            if _stops_the_run(error):
                raise failure if _stops_the_run(failure) else error from None
            why = (f"could not delete the server's conflicting instance, nor search whether "
                   f"it still holds it: {failure.headline}; {error.headline}")
        return replace(outcome, message=why, http_status=failure.status, reason_code=None)


def _replacement_note(redone: Outcome) -> str:
    """The row's message after --on-conflict overwrite deleted the server's instance."""
    note = {"stored": "replaced the server's conflicting instance",
            "unconfirmed": "deleted the server's conflicting instance, then sent this file "
                           "without learning whether it was stored"}.get(redone.status,
                                                                         DELETED_NOT_STORED)
    return f"{note}; {redone.message}" if redone.message else note
