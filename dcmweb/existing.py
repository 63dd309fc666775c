"""Which instances the server already holds, asked per study (``--skip-existing``, and the
check of files a killed run left ``sending`` in the journal).

One QIDO search lists a study's SOP Instance UIDs (paged past the server's caps), and
the answer is remembered for the last few studies: trees are usually laid out by
study, so a study costs one search per run, not one per file.
"""

from __future__ import annotations

from collections import OrderedDict

from .errors import NotFoundError
from .http import Http
from .search import Searcher

SOP_INSTANCE_UID = "00080018"


class ServerHoldings:
    def __init__(self, http: Http, base_url: str, studies_kept: int = 16) -> None:
        self.searcher = Searcher(http, base_url)
        self.studies_kept = studies_kept
        self.searches = 0
        self._studies: OrderedDict[str, set[str]] = OrderedDict()

    def holds(self, study_uid: str, sop_uid: str) -> bool:
        held = self._studies.get(study_uid)
        if held is None:
            held = self._ask(study_uid)
            self._studies[study_uid] = held
            if len(self._studies) > self.studies_kept:
                self._studies.popitem(last=False)
        else:
            self._studies.move_to_end(study_uid)
        return sop_uid in held

    def _ask(self, study_uid: str) -> set[str]:
        self.searches += 1
        rows = self.searcher.iter_rows(f"studies/{study_uid}/instances",
                                       [("includefield", SOP_INSTANCE_UID)])
        held: set[str] = set()
        try:
            for row in rows:
                element = row.get(SOP_INSTANCE_UID) if isinstance(row, dict) else None
                values = element.get("Value") if isinstance(element, dict) else None
                if isinstance(values, list) and values and isinstance(values[0], str):
                    held.add(values[0])
        except NotFoundError:
            return set()  # the study is not on the server
        return held
