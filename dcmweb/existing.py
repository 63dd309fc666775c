"""Which instances the server already holds, asked per series (``--skip-existing``, and
the check of files a killed run left ``sending`` in the journal).

One QIDO search lists a series' SOP Instance UIDs (paged past the server's caps), and
the answer is remembered for the last few series: trees are usually laid out by study
and series, so a series costs one search per run, not one per file. The series level
is the one every server can list (tiny-pacs answers 404 to a study-level instance
search, which must not read as "the study is not there").
"""

from __future__ import annotations

from collections import OrderedDict

from .errors import NotFoundError
from .http import Http
from .search import Searcher

SOP_INSTANCE_UID = "00080018"
STUDY_INSTANCE_UID = "0020000D"
SERIES_INSTANCE_UID = "0020000E"


class ServerHoldings:
    def __init__(self, http: Http, base_url: str, series_kept: int = 64) -> None:
        self.searcher = Searcher(http, base_url)
        self.series_kept = series_kept
        self.searches = 0
        self._series: OrderedDict[str, set[str]] = OrderedDict()

    def holds(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        path = f"studies/{study_uid}/series/{series_uid}"
        held = self._series.get(path)
        if held is None:
            held = self._ask(path)
            self._series[path] = held
            if len(self._series) > self.series_kept:
                self._series.popitem(last=False)
        else:
            self._series.move_to_end(path)
        return sop_uid in held

    def series_holding(self, sop_uid: str) -> list[str]:
        """Where in the store the server holds this SOP Instance UID, as
        ``studies/S/series/R`` paths (one search of all instances: not remembered)."""
        self.searches += 1
        tags = (STUDY_INSTANCE_UID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID)
        found = set()
        for row in self.searcher.iter_rows("instances", [(SOP_INSTANCE_UID, sop_uid),
                                                         ("includefield", ",".join(tags))]):
            study, series, sop = (_value(row, tag) for tag in tags)
            if study and series and sop == sop_uid:
                found.add(f"studies/{study}/series/{series}")
        return sorted(found)

    def _ask(self, series_path: str) -> set[str]:
        self.searches += 1
        rows = self.searcher.iter_rows(f"{series_path}/instances",
                                       [("includefield", SOP_INSTANCE_UID)])
        held: set[str] = set()
        try:
            for row in rows:
                sop_uid = _value(row, SOP_INSTANCE_UID)
                if sop_uid is not None:
                    held.add(sop_uid)
        except NotFoundError:
            return set()  # the series is not on the server
        return held


def _value(row: object, tag: str) -> str | None:
    """A row's first value of ``tag``, when it is a string."""
    element = row.get(tag) if isinstance(row, dict) else None
    values = element.get("Value") if isinstance(element, dict) else None
    if isinstance(values, list) and values and isinstance(values[0], str):
        return values[0]
    return None
