"""Ask the server which instances it holds: the proof behind a success the STOW answer
did not give (an empty 200, a lost answer, a refused duplicate). Where the server may
hold other bytes under the file's UIDs (a lost answer, a refusal, an interrupted run),
the instance is read back and compared with the file (:func:`holds_bytes`).

One QIDO search per series with a UID list (``SOPInstanceUID=a,b,c``, PS3.18 UID list
matching), so confirming a batch costs a request per series, not one per file; one
search per UID on a server that does not match lists. The series level is the one every
server has (tiny-pacs has no study-level instance search); a 404 there means the series
is not on the server.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from .dicomhead import HEAD_BYTES, read_uids
from .errors import NotFoundError, ServerError
from .http import Http
from .paths import parse_resource_path
from .record import record
from .redact import without_userinfo
from .served import served

UIDS_PER_SEARCH = 50  # keeps the URL far below the 8 KiB that proxies accept
ANSWER_LIMIT = 16 * 1024 * 1024
SOP_INSTANCE_UID = "00080018"
RETRIEVE_URL = "00081190"


@record(frozen=True)
class Wanted:
    """One instance to look for: the data set's UIDs (what the server indexes)."""

    sop_uid: str
    # The instance's place: None when the file's head cannot be read (search all studies).
    series_path: str | None


def dataset_uids(path: Path) -> tuple[str, str, str] | None:
    """The data set's (Study, Series, SOP Instance) UIDs, read from the start of the file."""
    try:
        with open(path, "rb") as handle:
            return read_uids(handle.read(HEAD_BYTES))
    except OSError:
        return None


def wanted(uids: tuple[str, str, str] | None, meta_sop_uid: str,
           study_uid: str | None = None) -> Wanted | None:
    """What to search for: the data set's UIDs when they were read, else the File Meta's
    SOP Instance UID alone. With ``study_uid`` (the study a store was sent to), None
    unless the data set is of that study: the server holds it there or not at all."""
    if study_uid is not None and (uids is None or uids[0] != study_uid):
        return None
    if uids is None:
        return Wanted(meta_sop_uid, None)
    return Wanted(uids[2], f"studies/{uids[0]}/series/{uids[1]}")


class Finder:
    """Finds which instances the server holds.

    A UID list is tried first (one request per series); a server that does not match
    lists (tiny-pacs matches exactly) finds nothing with one, so an empty answer to a
    list is checked one UID at a time, and what that shows is remembered.
    """

    def __init__(self, http: Http, base_url: str) -> None:
        self.http = http
        self.base_url = base_url
        self.lists: bool | None = None  # does the server match UID lists? None: not known

    def held(self, items: Iterable[Wanted]) -> dict[str, str | None]:
        """SOP Instance UID -> RetrieveURL (or None) of every wanted instance it holds."""
        by_series: dict[str | None, list[str]] = defaultdict(list)
        for item in items:
            if item.sop_uid not in by_series[item.series_path]:
                by_series[item.series_path].append(item.sop_uid)
        found: dict[str, str | None] = {}
        for series, uids in by_series.items():
            url = f"{self.base_url}/{series}/instances" if series else f"{self.base_url}/instances"
            for uid, retrieve_url in self._series(url, uids).items():
                # Where the server does not say, the instance's URL is known anyway.
                found[uid] = retrieve_url or (
                    f"{without_userinfo(url)}/{uid}" if series else None)
        return found

    def _series(self, url: str, uids: list[str]) -> dict[str, str | None]:
        if len(uids) == 1 or self.lists is False:
            return self._one_by_one(url, uids)
        found: dict[str, str | None] = {}
        for start in range(0, len(uids), UIDS_PER_SEARCH):
            chunk = uids[start:start + UIDS_PER_SEARCH]
            got = _search(self.http, url, chunk)
            if got:
                self.lists = True
            elif self.lists is None:
                got = self._one_by_one(url, chunk)
                if got:
                    self.lists = False
            found.update(got)
        return found

    def _one_by_one(self, url: str, uids: list[str]) -> dict[str, str | None]:
        return {uid: where for one in uids for uid, where in _search(self.http, url, [one]).items()}


def _search(http: Http, url: str, uids: list[str]) -> dict[str, str | None]:
    params = {"SOPInstanceUID": ",".join(uids)}
    # Read whole inside Http: a cut or broken answer is asked again like a dropped one.
    response = http.request("GET", url, what="search for stored instances", params=params,
                            headers={"Accept": "application/dicom+json"},
                            max_body=ANSWER_LIMIT,
                            # Searches may answer while every store fails: not the end of an outage.
                            accept_status=(204, 404), ends_outage=False)
    if response.status_code in (204, 404):  # no match (404: the series is not there)
        return {}
    content = response.content
    if not content.strip():
        return {}
    try:
        rows = json.loads(content)
    except ValueError:
        rows = None
    if not isinstance(rows, list):
        raise ServerError("search for stored instances failed: the answer is not a JSON list",
                          "check the HOST URL: it must be the DICOMweb base URL")
    wanted_uids = set(uids)
    found: dict[str, str | None] = {}
    for row in rows:
        uid = _value(row, SOP_INSTANCE_UID)
        # Only what was asked for: a server that ignores the filter must not prove anything.
        if isinstance(uid, str) and uid in wanted_uids:
            url_value = _value(row, RETRIEVE_URL)
            found[uid] = url_value if isinstance(url_value, str) else None
    return found


def _value(row: object, tag: str) -> object:
    if not isinstance(row, dict):
        return None
    element = row.get(tag)
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    return values[0] if isinstance(values, list) and values else None


# A read-back that cannot tell (no copy to read, an answer that is not DICOM, the local
# file gone): the file is not proven either way. Other errors stop like a search's.
READ_BACK_FAILED = (NotFoundError, ServerError, OSError)


def holds_bytes(http: Http, base_url: str, item: Wanted, path: Path) -> bool:
    """Whether the server's copy of the instance (its stored bytes, read back) is the
    file's: a search proves only that the server holds its SOP Instance UID. Raises one
    of READ_BACK_FAILED when that cannot be told."""
    from .instances import same_as_file  # the retrieve code: only on these rare paths

    if item.series_path is None:
        raise ServerError("the file's data set UIDs are unknown, so the server's copy "
                          "cannot be read back")
    return same_as_file(http, base_url, f"{item.series_path}/instances/{item.sop_uid}", path)


def served_now(http: Http, base_url: str, item: Wanted) -> bool:
    """Whether the server serves an instance a search found (its metadata, see
    served.py): searches lag behind deletes (Google: a few seconds), so the UIDs of an
    instance deleted moments ago are still found. True when its place is unknown (the
    search's word stands)."""
    if item.series_path is None:
        return True
    return served(http, base_url,
                  parse_resource_path(f"{item.series_path}/instances/{item.sop_uid}"))


def held(http: Http, base_url: str, items: Iterable[Wanted]) -> dict[str, str | None]:
    """One-off :meth:`Finder.held` (a caller that searches once needs no memory)."""
    return Finder(http, base_url).held(items)
