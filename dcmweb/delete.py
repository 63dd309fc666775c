"""DELETE: studies, series and instances, including Google's long-running operations.

GCP answers a study or series delete with an operation name and does the work in
the background: dcmweb polls it until it is done, and ``done`` with ``error`` is a
failure. Orthanc has no DICOMweb DELETE (405) but its own REST API can delete, so
dcmweb falls back to that when the server says it is Orthanc.
"""

from __future__ import annotations

import json
import logging

from .body import read_json
from .errors import (
    AnswerLost,
    DcmwebError,
    NotFoundError,
    RedirectRefused,
    ServerError,
    UnavailableError,
    UsageError,
)
from .failures import UNAVAILABLE_HINT
from .http import Http
from .operations import is_operation_name, wait_operation
from .paths import RESOURCE_SHAPE, ResourcePath, parse_resource_path
from .record import record
from .transport import Response
from .unexpected import HOST_HINT, describe_answer

log = logging.getLogger("dcmweb")


# A delete's answer is `{}`, an operation's name, or nothing: far less than this.
ANSWER_LIMIT = 1024 * 1024
DONE_AT_ONCE = (200, 204)  # statuses whose empty answer (or {}) means deleted
LOST_ANSWER_RESENDS = 3  # DELETEs sent again after an answer was lost on the way
_ORTHANC_LEVELS = {"studies": "study", "series": "series", "instances": "instance"}
_UID_TAGS = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID",
             "instance": "SOPInstanceUID"}
_PARENTS = {"instance": ("ParentSeries", "series"), "series": ("ParentStudy", "study")}


@record(frozen=True)
class DeleteResult:
    path: str
    operation: str | None = None  # the long-running operation's name, if there was one
    counter: dict[str, int] | None = None  # GCP's success/failure counts
    # The first answer was lost and a resend found nothing left: deleted by that request.
    answer_lost: bool = False


def parse_delete_path(path: str) -> ResourcePath:
    """A delete's study, series or instance; never the whole store (an empty or blank
    path, or '/': a script's empty variable). Its dry run and question check it too."""
    target = parse_resource_path(path)
    if target.level == "store":
        raise UsageError(f"invalid path {path!r}: delete needs at least a study",
                         f"expected {RESOURCE_SHAPE}")
    return target


class Deleter:
    def __init__(self, http: Http, base_url: str, timeout: float = 600.0,
                 wait: bool = True) -> None:
        self.http = http
        self.base_url = base_url
        self.timeout = timeout
        self.wait = wait  # False: return the operation's name at once (--no-wait)

    def delete(self, path: str) -> DeleteResult:
        target = parse_delete_path(path)
        url_path = target.url_path()
        response, lost = self._send(f"{self.base_url}/{url_path}", f"delete {url_path}",
                                    accept_status=(405,))
        with response:
            if response.status_code == 405:
                return self._orthanc_fallback(target)
            if _gone_after_lost_answer(response, url_path):
                return DeleteResult(url_path, answer_lost=True)
            name = self._operation_name(response, url_path)
        if not name:
            return DeleteResult(url_path, answer_lost=lost)
        if not self.wait:
            return DeleteResult(url_path, name, answer_lost=lost)
        try:
            operation = wait_operation(self.http, self.base_url, name, self.timeout,
                                       what=f"delete {url_path}")
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the server is not told to stop
            log.warning("delete %s: stopped waiting; operation %s goes on on the server",
                        url_path, name)
            raise
        return DeleteResult(url_path, operation.name, operation.counter, lost)

    def _send(self, url: str, what: str, accept_status: tuple[int, ...] = ()
              ) -> tuple[Response, bool]:
        """The DELETE's answer, and whether an earlier answer was lost. A DELETE whose
        answer is lost (a drop, a timeout after sending) or a 5xx may have been done: it
        is sent again, and then a 404 means it was, not that the path never existed."""
        lost = False
        for _ in range(LOST_ANSWER_RESENDS + 1):
            try:
                return self.http.request(
                    "DELETE", url, what=what,
                    accept_status=(404, *accept_status) if lost else accept_status,
                    accept_if_outcome_unknown=(404,),  # resent by Http after a 5xx
                    retry_sent=False, max_body=ANSWER_LIMIT), lost
            except AnswerLost as error:
                log.warning("%s; asking again", error.message)
                lost = True
            except RedirectRefused as error:
                # Never followed; yet the server may have deleted, then redirected.
                raise RedirectRefused(f"{error.message}; the server may have carried it "
                                      "out before redirecting: search for it to see",
                                      error.hint, status=error.status, url=error.url
                                      ) from None
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the server is not told to stop
                log.warning("%s: stopped before the server answered; the DELETE may have "
                            "been sent, so its outcome is unknown (the server may have "
                            "deleted it: search for it to see)", what)
                raise
        raise UnavailableError(f"{what} failed: the answer was lost "
                               f"{LOST_ANSWER_RESENDS + 1} times", UNAVAILABLE_HINT)

    @staticmethod
    def _operation_name(response: Response, url_path: str) -> str | None:
        """The operation a delete started, or None when it was done at once; anything
        but `{}`, an operation or an empty answer (a web page, an error envelope) means
        the DELETE did not reach a DICOMweb server."""
        content = response.content
        try:
            payload = json.loads(content) if content.strip() else {}
        except (ValueError, RecursionError):
            payload = None
        status = response.status_code
        if payload == {}:
            if status in DONE_AT_ONCE:
                return None
            # 202 is "accepted", not "done": with nothing to poll, no proof it ever will be.
            accepted = " (accepted, not done)" if status == 202 else ""
            shown = "{}" if content.strip() else "an empty answer"
            raise ServerError(
                f"delete {url_path}: the server answered HTTP {status}{accepted} with {shown} "
                "and no operation to follow; nothing shows that anything was deleted",
                "search for it later to see whether the server deleted it", status=status)
        name = payload.get("name") if isinstance(payload, dict) else None
        if isinstance(name, str) and is_operation_name(name):
            return name
        if isinstance(name, str) and name:  # polled on HOST's host and printed by --no-wait
            raise ServerError(f"delete {url_path}: the server started an operation with an "
                              f"odd name {name!r}; it was not followed", status=status)
        raise ServerError(
            f"delete {url_path}: the server answered HTTP {status} with "
            f"{describe_answer(response)}, not a DICOMweb delete answer (empty, {{}} or an "
            "operation); nothing shows that anything was deleted", HOST_HINT, status=status)

    def _orthanc_root(self) -> str | None:
        """Orthanc's REST root (one level above /dicom-web), if this server is Orthanc."""
        root = self.base_url.rstrip("/").rsplit("/", 1)[0]
        try:
            response = self.http.request("GET", f"{root}/system", what="identify the server")
            with response:
                system = response.json()
        except (DcmwebError, ValueError):
            return None
        is_orthanc = isinstance(system, dict) and "ApiVersion" in system and "DicomAet" in system
        return root if is_orthanc else None

    def _orthanc_fallback(self, target: ResourcePath) -> DeleteResult:
        """Delete through Orthanc's REST API: DICOMweb DELETE is not in its plugin.

        Orthanc looks a UID up on its own, whatever its parents: every UID of the path
        is checked against the resource's parents before anything is deleted, so that
        studies/WRONG/series/REAL deletes nothing."""
        root = self._orthanc_root()
        if root is None:
            raise ServerError(f"delete {target.url_path()}: the server does not support "
                              "DICOMweb DELETE (HTTP 405)")
        uid = target.instance or target.series or target.study
        level = {"instance": "Instance", "series": "Series", "study": "Study"}[target.level]
        what = f"delete {target.url_path()}: look up {uid}"
        response = self.http.request("POST", f"{root}/tools/lookup", what=what,
                                     body=lambda: str(uid).encode(), max_body=ANSWER_LIMIT)
        with response:
            found = read_json(response, ANSWER_LIMIT, what, expected="application/json")
        matches = [m for m in found if isinstance(m, dict) and m.get("Type") == level
                   and isinstance(m.get("Path"), str)] if isinstance(found, list) else []
        matches = [m for m in matches if self._orthanc_uids(root, m["Path"]) == _uids(target)]
        if not matches:
            raise NotFoundError(f"delete {target.url_path()} failed: not found on the server",
                                "check the UIDs: each must be inside the one before it")
        lost = False
        for match in matches:
            response, _ = self._send(f"{root}{match['Path']}", f"delete {target.url_path()}")
            with response:
                lost = _gone_after_lost_answer(response, target.url_path()) or lost
        return DeleteResult(target.url_path(), answer_lost=lost)

    def _orthanc_uids(self, root: str, path: str) -> dict[str, str | None]:
        """The UIDs of an Orthanc resource (e.g. /series/ID) and of its parents."""
        uids: dict[str, str | None] = {}
        level = _ORTHANC_LEVELS.get(path.split("/")[1] if path.count("/") == 2 else "")
        while level is not None:
            what = f"look up {path}"
            response = self.http.request("GET", f"{root}{path}", what=what,
                                         max_body=ANSWER_LIMIT)
            with response:
                resource = read_json(response, ANSWER_LIMIT, what, expected="application/json")
            if not isinstance(resource, dict):
                break
            tags = resource.get("MainDicomTags") or {}
            uids[level] = tags.get(_UID_TAGS[level]) if isinstance(tags, dict) else None
            parent_key, parent_level = _PARENTS.get(level, ("", None))
            parent = resource.get(parent_key) if parent_level else None
            level = parent_level if isinstance(parent, str) else None
            path = f"/{'studies' if level == 'study' else 'series'}/{parent}"  # Orthanc IDs
        return uids


def _gone_after_lost_answer(response: Response, url_path: str) -> bool:
    """A 404 reaches here only as the answer to a resend (see Deleter._send): the earlier
    DELETE, whose outcome is unknown, did the work."""
    if response.status_code != 404:
        return False
    log.info("delete %s: an earlier attempt's outcome is unknown (its answer lost, or a "
             "server error), and the server no longer has it", url_path)
    return True


def _uids(target: ResourcePath) -> dict[str, str | None]:
    """The UIDs a path names, by level, down to its own level."""
    uids = {"study": target.study, "series": target.series, "instance": target.instance}
    return {level: uid for level, uid in uids.items() if uid is not None}
