"""Which instances the server already holds, asked per series (``--skip-existing``,
``--verify-journal``, and the check of files a killed run left ``sending`` in the journal).

One QIDO search lists a series' SOP Instance UIDs, and the answer is remembered for the
last few series: trees are usually laid out by study and series, so a series costs one
search per run, not one per file. The series level is the one every server can list
(tiny-pacs answers 404 to a study-level instance search, which must not read as "the
study is not there").

A page with fewer rows than asked does not prove that the listing is whole (a server may
cap its pages lower than asked, or ignore limit), so paging ends on an empty page. That
page is asked for only when it matters: an instance on the first page is held whatever
the rest says, so the next page is read only for an instance not found yet. A series the
server holds whole costs two requests (the search, and the check below); one it does
not hold at all, one.

Searches lag behind deletes (Google: "a deleted instance can still show in searches for
a few seconds"): a listing made moments after a delete may hold instances the server no
longer has. So the server is asked whether it serves the first instance a listing is
found to hold (its metadata, a few KB over the same connection: see served.py): when the
server serves it, the listing is taken as it is for the series' other files (one request
more a series); when it does not, the listing shows instances deleted moments ago, and
each instance it holds is checked before it counts as held. An instance deleted alone
from a series whose other instances stay, in the seconds before the series was listed,
still counts as held when it is not the one checked.

Safe to share between threads: the bulk run asks about several series at once (one search
each), and files of one series wait for its search.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from .errors import NotFoundError
from .http import Http
from .paths import ResourcePath
from .search import RepeatedPage, Searcher
from .served import served

SOP_INSTANCE_UID = "00080018"
STUDY_INSTANCE_UID = "0020000D"
SERIES_INSTANCE_UID = "0020000E"


class _Listing:
    """A series' SOP Instance UIDs as far as its pages have been read."""

    def __init__(self, pages: Iterator[list[dict[str, Any]]]) -> None:
        self.held: set[str] = set()
        self.pages: Iterator[list[dict[str, Any]]] | None = pages  # None: all read
        # The error that cut the listing: a file of the series that waited for it must
        # not take the rows read so far for all of them.
        self.failed: BaseException | None = None
        self.lock = threading.Lock()
        # Whether the first instance found in it was served when checked: None until
        # one was; False: the listing holds instances deleted moments ago.
        self.trusted: bool | None = None

    def holds(self, sop_uid: str) -> bool:
        with self.lock:
            while sop_uid not in self.held and self.pages is not None:
                if self.failed is not None:
                    raise self.failed
                try:
                    self._read_page(self.pages)
                except BaseException as error:
                    self.failed = error
                    raise
            return sop_uid in self.held

    def _read_page(self, pages: Iterator[list[dict[str, Any]]]) -> None:
        try:
            rows = next(pages)
        except (StopIteration, NotFoundError):  # the end; 404: the series is not there
            self.pages = None
            return
        except RepeatedPage as repeated:
            if not repeated.whole:
                raise
            # The server ignores offset and sent every row it holds on each page.
            self.pages = None
            return
        for row in rows:
            sop_uid = _value(row, SOP_INSTANCE_UID)
            if sop_uid is not None:
                self.held.add(sop_uid)


class ServerHoldings:
    def __init__(self, http: Http, base_url: str, series_kept: int = 64) -> None:
        self.http = http
        self.base_url = base_url
        self.searcher = Searcher(http, base_url)
        self.series_kept = series_kept
        self.searches = 0
        self._series: OrderedDict[str, _Listing] = OrderedDict()
        self._lock = threading.Lock()

    def holds(self, study_uid: str, series_uid: str, sop_uid: str, *,
              confirm: bool = True) -> bool:
        """Whether the server holds the instance: its series' listing holds it and, unless
        ``confirm`` is False (the caller retrieves it anyway), served.py's check shows that the
        listing is not of instances deleted moments ago (see the module docstring)."""
        path = f"studies/{study_uid}/series/{series_uid}"
        with self._lock:
            listing = self._series.get(path)
            if listing is None:
                self.searches += 1
                listing = self._series[path] = _Listing(self.searcher.iter_pages(
                    f"{path}/instances", [("includefield", SOP_INSTANCE_UID)]))
                if len(self._series) > self.series_kept:
                    self._series.popitem(last=False)
            else:
                self._series.move_to_end(path)
        try:
            return listing.holds(sop_uid) and (not confirm or self._served(
                listing, study_uid, series_uid, sop_uid))
        except BaseException:
            # A listing cut by an error cannot be read on: a later file asks again.
            with self._lock:
                if self._series.get(path) is listing:
                    del self._series[path]
            raise

    def _served(self, listing: _Listing, study_uid: str, series_uid: str, sop_uid: str
                ) -> bool:
        """Whether the server serves an instance its series' listing holds: checked when
        it is the listing's first, or when that one was not served (see the module
        docstring)."""
        instance = ResourcePath(study_uid, series_uid, sop_uid)
        with listing.lock:  # the series' other files wait for the first one's answer
            if listing.trusted is None:
                listing.trusted = served(self.http, self.base_url, instance)
                return listing.trusted
        return listing.trusted or served(self.http, self.base_url, instance)

    def series_holding(self, sop_uid: str) -> list[str]:
        """Where in the store the server holds this SOP Instance UID, as
        ``studies/S/series/R`` paths (one search of all instances: not remembered)."""
        return sorted(f"studies/{study}/series/{series}"
                      for study, series in self._listed_in(sop_uid))

    def holds_anywhere(self, sop_uid: str) -> bool:
        """Whether the server holds this SOP Instance UID in any series, as :meth:`holds`
        decides it: for a file whose series is not known (a deflated data set)."""
        return any(self.holds(study, series, sop_uid)
                   for study, series in sorted(self._listed_in(sop_uid)))

    def _listed_in(self, sop_uid: str) -> set[tuple[str, str]]:
        """The (study, series) UIDs a search of all instances lists this SOP Instance UID
        under."""
        self.searches += 1
        tags = (STUDY_INSTANCE_UID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID)
        found = set()
        for row in self.searcher.iter_rows("instances", [(SOP_INSTANCE_UID, sop_uid),
                                                         ("includefield", ",".join(tags))]):
            study, series, sop = (_value(row, tag) for tag in tags)
            if study and series and sop == sop_uid:
                found.add((study, series))
        return found


def _value(row: object, tag: str) -> str | None:
    """A row's first value of ``tag``, when it is a string."""
    element = row.get(tag) if isinstance(row, dict) else None
    values = element.get("Value") if isinstance(element, dict) else None
    if isinstance(values, list) and values and isinstance(values[0], str):
        return values[0]
    return None
