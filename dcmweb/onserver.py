"""Whether the server already holds a file, asked before a bulk run sends it:
``--skip-existing``, ``--verify-journal``, and the files a killed run left ``sending``
in the journal (whose copy on the server must also be the file's bytes).

Each is a :class:`~dcmweb.parallel.Question` grouped by the file's series, answered on
a worker thread (see :func:`~dcmweb.parallel.run_ahead`): the series is searched once,
by the first file of it, and the other files of it find the answer remembered.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from .bulkrecords import Outcome
from .files import Part10Head, read_part10_head
from .parallel import Question
from .store import OTHER_BYTES
from .storecheck import READ_BACK_FAILED, holds_bytes, wanted

if TYPE_CHECKING:
    from .existing import ServerHoldings
    from .http import Http
    from .journal import Entry

log = logging.getLogger("dcmweb")


class OnServer:
    """The server's holdings for one run, searched per series on first use."""

    def __init__(self, http: Http, base_url: str, study_uid: str | None) -> None:
        self.http = http
        self.base_url = base_url
        self.study_uid = study_uid  # --study-uid: where the run stores
        self._holdings: ServerHoldings | None = None

    def still_held(self, path: Path, entry: Entry) -> Question:
        """--verify-journal: asks whether the server still holds the instance the
        journal says this file was stored as (its UIDs, else those of the file's head;
        its SOP Instance UID in any series when neither gives its series)."""
        self._server_holdings()  # made here, not by two workers at once
        series = (entry.study_uid, entry.series_uid)
        return Question(partial(self._still_held, path, entry),
                        None if None in series else series)

    def _still_held(self, path: Path, entry: Entry) -> bool:
        uids = (entry.study_uid, entry.series_uid, entry.sop_uid)
        if None in uids:
            head = read_part10_head(path)
            uids = head.uids if head is not None and head.uids else uids
        study, series, sop = uids
        if sop is None:
            return True  # nothing to ask about: the journal's word stands
        if study is None or series is None:  # a data set dcmweb does not read (deflated)
            return self._server_holdings().holds_anywhere(sop)
        return self._server_holdings().holds(study, series, sop)

    def _server_holdings(self) -> ServerHoldings:
        if self._holdings is None:
            from .existing import ServerHoldings  # the search pager too

            self._holdings = ServerHoldings(self.http, self.base_url)
        return self._holdings

    def found(self, path: Path, head: Part10Head | None, size: int, why: str,
              attempts: int, *, read_back: bool) -> Question:
        """Asks for the file's outcome when the server holds its SOP Instance UID ("already
        stored", with the earlier runs that sent it), else None: send it. With
        ``read_back`` (a file an interrupted run sent), the server's copy must also be
        the file's bytes: other bytes are a conflict, its outcome failed; a copy that
        cannot be read back sends the file again."""
        uids = head.uids if head else None
        self._server_holdings()  # made here, not by two workers at once
        return Question(partial(self._found, path, uids, size, why, attempts, read_back),
                        uids[:2] if uids else None)

    def _found(self, path: Path, uids: tuple[str, str, str] | None, size: int, why: str,
               attempts: int, read_back: bool) -> Outcome | None:
        if uids is None:
            return None  # not DICOM, or unreadable: the uploader says which
        # A read-back retrieves the instance: a listing lagging behind a delete fails it.
        if not self._server_holdings().holds(*uids, confirm=not read_back):
            return None
        if read_back:
            looked_for = wanted(uids, uids[2], self.study_uid)
            if looked_for is None:
                return None  # of another study than the one it goes to: not stored there
            try:
                same = holds_bytes(self.http, self.base_url, looked_for, path)
            except READ_BACK_FAILED as error:
                log.info("%s: %s, but its copy could not be read back to compare (%s): "
                         "sending it again", path, why, error)
                return None
            if not same:
                return Outcome(path, "failed", size, uids,
                               message=f"sent by an interrupted run; {OTHER_BYTES}",
                               attempts=attempts)
        return Outcome(path, "already stored", size, uids, message=why, attempts=attempts)
