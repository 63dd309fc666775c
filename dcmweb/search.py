"""QIDO-RS: build the query, then page through every result.

Servers cut results silently (GCP returns 100 studies or 1,000 series/instances
when no limit is given, and clamps a larger limit to 5,000 or 50,000; a PACS may cap
pages lower than asked). So unless the user's limit fits in one page, dcmweb asks for
the largest page the server allows and keeps asking until a page comes back empty (or
the limit is reached): a short page alone may be a cap, not the end.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode

from . import bounds
from .body import read_rows, warning_texts
from .errors import DcmwebError, ServerError, UsageError
from .http import Http
from .limits import ThreadLimit, start_thread
from .matching import FilterCheck, exact_filters
from .optionnames import option
from .output import plural
from .paths import parse_search_path

if TYPE_CHECKING:
    from concurrent.futures import Future

log = logging.getLogger("dcmweb")
T = TypeVar("T")

# GCP's caps: the largest pages there are, for callers that handle a page at a time.
PAGE_SIZES = {"studies": 5000, "series": 5000, "instances": 50000}
# Rows per page when iterating rows and no page size is given. Two pages are held as
# Python rows (the one being handled and the next fetched ahead), and a row takes about
# 4-9 KB so (ten times its JSON): 50,000 instances a page took 860 MB for one search of
# 100,000 instances, 1,000 took 47 MB and were faster (a server's time goes by rows, not
# round trips). ``page_size`` still asks for up to the server's cap.
ROW_PAGE = 2000
# The first page of a listing whose rows each start a download: work begins after 100
# rows are listed instead of all of them (1,000 instances: 0.1 s instead of 1 s on Orthanc).
FIRST_PAGE = 100

Params = list[tuple[str, str]]
# Wildcards, UID lists and the person-name separator travel unescaped: Orthanc's plugin
# does not percent-decode, so PatientName=Sally%2A or DOE%5EJOHN finds nothing where
# Sally* or DOE^JOHN matches (requests escapes '^' anyway: see rawquery.py).
_QUERY_SAFE = "*?,^"


def parse_params(words: Iterable[str]) -> Params:
    """Query words, each a query string (``a=1&b=2``, as the old tool took) or ``KEY=VALUE``."""
    params: Params = []
    for word in words:
        if "=" not in word:
            raise UsageError(f"invalid search parameter {word!r}", "write KEY=VALUE")
        query = word.lstrip("?")
        for piece in query.split("&"):
            # Checked here to quote the value as typed: decoded, limit=+3 reads ' 3'.
            name, _, typed = piece.partition("=")
            key = unquote_plus(name).lower()
            if key in _PAGING_BOUNDS:
                _whole_number(key, unquote_plus(typed), typed)
        params.extend(parse_qsl(query, keep_blank_values=True))
    return params


def _whole_number(key: str, value: str, typed: str) -> int:
    if not re.fullmatch(r"-?[0-9]+", value):
        raise UsageError(f"{key} must be a whole number, not {typed!r}")
    return int(value)


def _paging(params: Params) -> tuple[int | None, int]:
    """``limit`` and ``offset`` among the query words (None and 0 when absent), checked
    as the keywords and --limit/--offset are (bounds.py), whichever way they came: a
    ``limit=0`` would show nothing, a ``limit=-1`` get a 500 that is retried."""
    found: dict[str, int] = {}
    for name, value in params:
        key = name.lower()
        if key not in _PAGING_BOUNDS:
            continue
        if key in found:  # which one the server obeys is a guess
            raise UsageError(f"{key} is given twice", "give it once")
        found[key] = _PAGING_BOUNDS[key].check(key, _whole_number(key, value, value))
    return found.get("limit"), found.get("offset", 0)


_PAGING_BOUNDS = {"limit": bounds.LIMIT, "offset": bounds.OFFSET}


# One page's JSON: 50,000 instances with their default attributes are about 20-40 MB (as
# Python rows, ten times that: see ROW_PAGE); an answer past this is an endless or broken one.
ANSWER_LIMIT = 256 * 1024 * 1024
# What tells rows apart for the paging guard: the UIDs a row carries and its patient (Orthanc
# lists one Study Instance UID under two patients as two rows, and one SOP Instance UID in
# two studies as two rows). A few lookups per row: hashing whole rows costs 30 us each.
_IDENTITY_TAGS = ("0020000D", "0020000E", "00080018", "00100020")


def _row_identity(row: dict[str, Any]) -> int:
    """A row's identity for the paging guard: a hash (64 bits, kept as an int to stay
    small for millions of rows) of its UIDs and patient ID, or of the whole row when it
    carries none of them."""
    values = []
    for tag in _IDENTITY_TAGS:
        element = row.get(tag)
        value = element.get("Value") if isinstance(element, dict) else None
        values.append(value[0] if isinstance(value, list) and len(value) == 1 else value)
    if values == [None, None, None, None]:
        return hash(json.dumps(row, sort_keys=True))
    try:
        return hash(tuple(values))
    except TypeError:  # a value that is not a string: an object or a list
        return hash(json.dumps(values, sort_keys=True))


def _in_background(func: Callable[[], T]) -> Callable[[], T]:
    """Run func in a daemon thread: Ctrl-C and SIGTERM never wait for it (a page fetch
    may be retrying a 503 for minutes), unlike a ThreadPoolExecutor's threads. What
    gives its result; under a limit that refuses the thread, func itself: run when
    its result is asked for (a page ahead is only a speed-up)."""
    from concurrent.futures import Future  # paging only: a single page never waits

    future: Future[T] = Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(func())
            except BaseException as error:  # handed to the thread that waits for it
                future.set_exception(error)

    try:
        start_thread(run, "dcmweb-search", what="a thread to list the next page")
    except ThreadLimit:
        return func
    return future.result


def _later_page_refused(error: UsageError) -> ServerError:
    """A 400 to a later page of a query the server served until then: its own limit
    (Google's offset goes to 1,000,000), which the command line cannot fix."""
    return ServerError(error.message, "the server lists this query only so far: narrow the"
                       " query (a range of StudyDate, say) to list the rest",
                       status=error.status, url=error.url)


class RepeatedPage(ServerError):
    """A page that holds only rows of earlier pages: the server ignores offset (or pages
    in circles). ``whole``: the page was shorter than the limit asked for and held the
    rows of the page before, so the server listed everything it holds on every page, and
    every row has been seen (a page of some rows of the one before is a server whose
    order changed: the rest may never have been listed)."""

    def __init__(self, message: str, hint: str, *, whole: bool) -> None:
        super().__init__(message, hint)
        self.whole = whole


class Searcher:
    def __init__(self, http: Http, base_url: str) -> None:
        self.http = http
        self.base_url = base_url
        # What the server warned of (a result cut at its cap, a key or fuzzy matching it
        # ignored), each once, in the order it came.
        self.warnings: list[str] = []
        # Rows that came back on a later page, each in the place of a row that may then
        # never have been listed (see _pages): a listing that feeds a run counts them.
        self.came_back = 0

    def page(self, url_path: str, params: Params) -> list[dict[str, Any]]:
        """One page's rows, as the server sent them."""
        return self._page(url_path, params)[0]

    def _page(self, url_path: str, params: Params, keep: int | None = None
              ) -> tuple[list[dict[str, Any]], int]:
        """The first ``keep`` rows of one page (all: None), and how many it holds: a
        server that ignores limit may send millions, and each row built costs memory."""
        query = urlencode(params, safe=_QUERY_SAFE, quote_via=quote)
        what = f"search {url_path}"
        # The query is part of the URL (not params=) so that -v logs the whole request line.
        response = self.http.request(
            "GET", f"{self.base_url}/{url_path}" + (f"?{query}" if query else ""),
            what=what, headers={"Accept": "application/dicom+json"}, max_body=ANSWER_LIMIT,
        )
        self._note_warnings(url_path, response.headers.get_all("Warning"))
        with response:  # no match: [], or 204 (or 200) with an empty body
            return read_rows(response, ANSWER_LIMIT, what, keep)

    def _note_warnings(self, url_path: str, headers: list[str]) -> None:
        """Each warning the server sent, logged the first time it comes: a server caps a
        result or ignores a filter and says so on every page."""
        for message in warning_texts(headers):
            if message and message not in self.warnings:
                self.warnings.append(message)
                log.warning("search %s: the server warns: %s", url_path, message)

    def iter_rows(self, path: str | None = "studies", params: Params | None = None,
                  page_size: int | None = None, first_page: int | None = None
                  ) -> Iterator[dict[str, Any]]:
        """Every row (at most ``limit`` of them), page after page. ``first_page`` asks for
        that many rows first, so that work on each row starts while the rest is listed
        (a server takes about as long per row for a page of 2,000 as for one of 100).

        The path, limit and offset are checked here, before any request."""
        url_path, level = parse_search_path(path)
        params = list(params or [])
        limit, offset = _paging(params)
        size = page_size or min(ROW_PAGE, PAGE_SIZES[level])
        if limit is not None and limit <= size:  # the user asked for exactly this page
            rows = self._one_page(url_path, params, limit)
        else:
            rest = [(k, v) for k, v in params if k.lower() not in _PAGING_BOUNDS]
            rows = (row for page in self._pages(url_path, rest, offset, size, first_page, limit)
                    for row in page)
        filters = exact_filters(params)
        if not filters:
            return rows
        paging = " and ".join(option(key) for key, given in (("limit", limit is not None),
                                                             ("offset", offset > 0)) if given)
        return self._checked(url_path, rows, FilterCheck(filters), paging)

    def _checked(self, url_path: str, rows: Iterator[dict[str, Any]], check: FilterCheck,
                 paging: str) -> Iterator[dict[str, Any]]:
        """The rows that do not contradict an exact filter (matching.py); what the
        server ignored is told once the rows are read, or reading them stopped."""
        try:
            yield from filter(check.keep, rows)
        finally:
            for message in check.messages(paging):
                self.warnings.append(message)
                log.warning("search %s: %s", url_path, message)

    def iter_pages(self, path: str, params: Params | None = None) -> Iterator[list[dict[str, Any]]]:
        """Every row, a page at a time, each page asked for only when the caller wants
        it: a caller that finds what it needs on the first page (its rows fewer than
        asked do not prove that it is the last: a server may cap pages) asks no more."""
        url_path, level = parse_search_path(path)
        return self._pages(url_path, list(params or []), 0, PAGE_SIZES[level], None, None,
                           ahead=False)

    def _one_page(self, url_path: str, params: Params, limit: int
                  ) -> Iterator[dict[str, Any]]:
        rows, sent = self._page(url_path, params, keep=limit)
        yield from rows[:_at_most(url_path, sent, limit, limit)]

    def _pages(self, url_path: str, rest: Params, offset: int, size: int,
               first_page: int | None, limit: int | None, *, ahead: bool = True
               ) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``size`` rows from ``offset`` until an empty page or, with a limit
        above the page size (a server clamps it to its cap, silently), ``limit`` rows.
        ``ahead``: the next page is asked for while the caller handles this one."""
        left = limit  # rows still to show; None: every row

        def fetch(at: int, count: int) -> Callable[[], tuple[list[dict[str, Any]], int]]:
            # Rows beyond what may still be shown (or, with no limit, beyond the page
            # asked for) are read but not kept: the next page asks for them again.
            keep = count if left is None else left
            page = partial(self._page, url_path, [*rest, ("limit", str(count)),
                                                  ("offset", str(at))], keep)
            return _in_background(page) if ahead else page

        def next_count(count: int) -> int:
            return count if left is None else min(count, left)

        # Every row shown from earlier pages: a server that ignores offset (or pages in
        # circles) would otherwise be followed forever. Rows of one page are all shown,
        # even alike ones: the server sent them as distinct rows.
        seen: set[int] = set()
        # The rows of the page before: a server that ignores offset sends them again.
        previous: set[int] = set()
        cut = False  # a page held more rows than asked for (told once)
        held_to = 0  # the offset up to which pages showed that the server holds rows
        # One page is fetched ahead while the caller handles the current one: writing
        # pretty JSON costs about as much as the server's answer, so the two overlap.
        asked = next_count(min(first_page or size, size))
        upcoming = fetch(offset, asked)
        shown = 0  # rows handed on
        while True:
            try:
                rows, sent = upcoming()
            except DcmwebError as error:
                if not shown:
                    raise
                # The output holds the rows before: not the whole result.
                stopped = (f"search {url_path}: the listing stopped at offset {offset}, after"
                           f" {plural(shown, 'row')}; the rest were not listed")
                if isinstance(error, UsageError):
                    refused = _later_page_refused(error)
                    refused.add_line(stopped)
                    raise refused from error
                error.add_line(stopped)
                raise
            if not rows:
                if offset < held_to:
                    raise ServerError(
                        f"search {url_path}: the page at offset {offset} is empty, but an "
                        f"earlier page held rows up to offset {held_to}: the server ignores "
                        "'limit', and sends the rest on the first page only",
                        f"give {option('page_size', held_to)} to read that page whole")
                return
            if left is None and sent > asked and not cut:
                cut = True
                log.warning("search %s: the server sent %s, more than the limit of %d; "
                            "the rows after them are asked for again, page by page",
                            url_path, plural(sent, "row"), asked)
            held_to = max(held_to, offset + sent)
            identities = [_row_identity(row) for row in rows]
            fresh = [row for row, identity in zip(rows, identities, strict=True)
                     if identity not in seen]
            if not fresh:
                raise RepeatedPage(f"search {url_path}: the page at offset {offset} holds only "
                                   "rows that came before: the server ignores 'offset' or "
                                   "pages in circles", "add a limit",
                                   whole=len(rows) < asked and set(identities) == previous)
            if len(fresh) < len(rows):
                # A row of an earlier page came back, and is shown once. It took the place
                # of another: a row inserted while paging (which shifts the offsets), or,
                # from a server whose order changes between pages, one never shown.
                again = len(rows) - len(fresh)
                self.came_back += again
                log.warning("search %s: %s at offset %d came back from an earlier page "
                            "(shown once): rows moved between pages (added while paging, or "
                            "the server does not keep its order), so as many others may be "
                            "missing; search again to be sure", url_path,
                            plural(again, "row"), offset)
            seen.update(identities)
            previous = set(identities)
            offset += len(rows)
            if left is not None:
                fresh = fresh[:_at_most(url_path, sent, asked, left)]
                left -= len(fresh)
                if not left:
                    yield fresh
                    return
            asked = next_count(size)
            upcoming = fetch(offset, asked)
            shown += len(fresh)
            yield fresh


def _at_most(url_path: str, sent: int, asked: int, left: int) -> int:
    """How many of the ``sent`` rows of a page to show when ``left`` more may be shown;
    a warning when the server sent more than the ``asked`` limit (it ignores limit)."""
    if sent > asked:
        log.warning("search %s: the server sent %s, more than the limit of %d%s", url_path,
                    plural(sent, "row"), asked,
                    f"; showing the first {left}" if sent > left else "")
    return min(sent, left)

