"""DELETE: studies, series and instances, including Google's long-running operations.

GCP answers a study or series delete with an operation name and does the work in
the background: dcmweb polls it until it is done, and ``done`` with ``error`` is a
failure. Orthanc has no DICOMweb DELETE (405) but its own REST API can delete, so
dcmweb falls back to that when the server says it is Orthanc.
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import urlsplit, urlunsplit

from .body import read_json
from .errors import (
    AnswerLost,
    DcmwebError,
    NotFoundError,
    PartialFailure,
    RedirectRefused,
    ServerError,
    UnavailableError,
    UnreadableAnswer,
    UsageError,
    quoted,
)
from .failures import UNAVAILABLE_HINT, same_origin, sent_undecided
from .http import Http
from .operations import OutcomeUnknown, is_operation_name, wait_operation
from .output import plural
from .paths import RESOURCE_SHAPE, ResourcePath, parse_resource_path
from .preview import instances_under
from .record import record
from .search import Searcher
from .served import GONE, listed_instance, served
from .transport import Response
from .unexpected import HOST_HINT, describe_answer

log = logging.getLogger("dcmweb")


# A delete's answer is `{}`, an operation's name, or nothing: far less than this.
ANSWER_LIMIT = 1024 * 1024
DONE_AT_ONCE = (200, 204)  # statuses whose empty answer (or {}) means deleted
LOST_ANSWER_RESENDS = 3  # DELETEs sent again after an answer was lost on the way
_ORTHANC_LEVELS = {"studies": "study", "series": "series", "instances": "instance"}
# The only paths taken from Orthanc's answers: /studies/ID and the like, an ID of hex and
# dashes. Anything else could move the request (and its credentials) to another host.
_ORTHANC_PATH = re.compile(r"/(studies|series|instances)/[0-9a-fA-F]+(?:-[0-9a-fA-F]+)*")
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
        raise UsageError(f"invalid path {quoted(path)}: delete needs at least a study",
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
        what = f"delete {url_path}"
        try:
            response, lost = self._send(f"{self.base_url}/{url_path}", what,
                                        accept_status=(405,))
        except DcmwebError as error:
            if not _undecided(error):
                raise
            raise self._unknown(target, what, error) from None
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
                                       what=f"delete {url_path}", started=True)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the server is not told to stop
            log.warning("delete %s: stopped waiting; operation %s goes on on the server",
                        url_path, name)
            raise
        except OutcomeUnknown as error:
            left = self._left(target)
            if left is not None:
                error.add_line(left)
            raise
        return DeleteResult(url_path, operation.name, operation.counter, lost)

    def _send(self, url: str, what: str, accept_status: tuple[int, ...] = ()
              ) -> tuple[Response, bool]:
        """The DELETE's answer, and whether an earlier answer was lost. A DELETE whose
        answer is lost (a drop, a timeout after sending) or a 5xx may have been done: it
        is sent again, and then a 404 means it was, not that the path never existed. A
        resend that cannot reach the server leaves it unknown (:class:`AnswerLost`)."""
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
                self.http.retried()
            except UnavailableError as error:
                if not lost:
                    raise
                # The server went down with the DELETE in hand (a crash, a restart) and
                # stayed down: that DELETE may have been done, as after a lost answer.
                raise AnswerLost(error.message, error.hint) from error
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
        # Every DELETE reached the server, and each may have been done: see _undecided.
        raise AnswerLost(f"{what} failed: the answer was lost {LOST_ANSWER_RESENDS + 1} "
                         "times", UNAVAILABLE_HINT)

    def _unknown(self, target: ResourcePath, what: str, error: DcmwebError
                 ) -> DcmwebError:
        """A DELETE sent whose answer does not say whether it was done (see _undecided):
        never "failed". Says what a search finds left, as after a poll that failed (see
        OutcomeUnknown); an outage stays one (exit 5, and it stops an --on-conflict
        overwrite run)."""
        said = error.message.removeprefix(f"{what} failed: ")
        kind = UnavailableError if isinstance(error, UnavailableError) else ServerError
        # An answer that cannot be read says why (its Content-Encoding) in its hint.
        unread = f"; {error.hint}" if isinstance(error, UnreadableAnswer) and error.hint else ""
        unknown = kind(f"{what}: {said}; its outcome is unknown: the server may have deleted "
                       "it", f"search for it to see{unread}", status=error.status,
                       url=error.url)
        left = self._left(target)
        if left is not None:
            unknown.add_line(left)
        return unknown

    def _left(self, target: ResourcePath) -> str | None:
        """What a search finds under a path whose delete's outcome is unknown, or None
        when the search cannot tell (it fails too: the same credentials, the same
        outage). The first instance it lists is checked (served.py): searches lag behind
        deletes (Google: a deleted instance still shows for a few seconds)."""
        rows = instances_under(Searcher(self.http, self.base_url).iter_rows, target,
                               "delete", served=None)
        first: ResourcePath | None = None
        count = 0
        try:
            for row in rows:
                count += 1
                first = first or listed_instance(target, row)
        except NotFoundError as error:
            if error.status is not None:  # a 404 to the search itself tells nothing
                return None
            count = 0
        except DcmwebError:
            return None
        if not count:
            return f"a search finds nothing left under {target.url_path()}"
        listed = f"a search finds {plural(count, 'instance')} left under {target.url_path()}"
        try:
            if first is not None and not served(self.http, self.base_url, first, target):
                return f"{listed}, but a retrieve of it answers 404: nothing is left ({GONE})"
        except DcmwebError:
            pass  # the search's word, as it is
        return listed

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
                              f"odd name {quoted(name)}; it was not followed", status=status)
        raise ServerError(
            f"delete {url_path}: the server answered HTTP {status} with "
            f"{describe_answer(response)}, not a DICOMweb delete answer (empty, {{}} or an "
            "operation); nothing shows that anything was deleted", HOST_HINT, status=status)

    def _orthanc_root(self) -> str | None:
        """Orthanc's REST root (one level above /dicom-web, on HOST's scheme and
        authority), if this server is Orthanc."""
        parts = urlsplit(self.base_url)
        above = parts.path.rstrip("/").rsplit("/", 1)[0]
        root = urlunsplit((parts.scheme, parts.netloc, above, "", ""))
        try:
            response = self.http.request("GET", f"{root}/system", what="identify the server")
            with response:
                system = response.json()
        except (DcmwebError, ValueError):
            return None
        is_orthanc = isinstance(system, dict) and "ApiVersion" in system and "DicomAet" in system
        return root if is_orthanc else None

    def _orthanc_url(self, root: str, path: object, level: str, what: str) -> str:
        """The URL of an Orthanc resource path from the server's answer: only
        /studies/ID, /series/ID or /instances/ID of the expected level, on HOST's
        origin; anything else is refused before any request is sent."""
        url = f"{root}{path}" if isinstance(path, str) else ""
        match = _ORTHANC_PATH.fullmatch(path) if isinstance(path, str) else None
        if (match is None or _ORTHANC_LEVELS[match.group(1)] != level
                or not same_origin(url, self.base_url)):
            raise ServerError(f"{what}: the server named the {level} "
                              f"{quoted(str(path)[:80])}, not an Orthanc {level} path on "
                              "HOST's server; nothing was deleted", HOST_HINT)
        return url

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
        listed = [m["Path"] for m in found if isinstance(m, dict) and m.get("Type") == level
                  and "Path" in m] if isinstance(found, list) else []
        urls = [self._orthanc_url(root, path, target.level, what) for path in listed]
        matches = [url for url in urls
                   if self._orthanc_uids(root, url, target.level) == _uids(target)]
        if not matches:
            raise NotFoundError(f"delete {target.url_path()} failed: not found on the server",
                                "check the UID" if target.level == "study" else
                                "check the UIDs: each must be inside the one before it")
        return DeleteResult(target.url_path(),
                            answer_lost=self._delete_orthanc(root, target, matches))

    def _delete_orthanc(self, root: str, target: ResourcePath, urls: list[str]) -> bool:
        """Delete the Orthanc resources a path names (one UID may be several: one study
        per patient); whether an answer was lost. A 404 means gone: the lookup just
        listed it; so does a 404 to the resource itself after a DELETE whose outcome is
        unknown (see _undecided), and a resource still there failed. A failure after some
        were deleted says which (exit 6)."""
        url_path = target.url_path()
        what = f"delete {url_path}"
        lost = False
        for done, url in enumerate(urls):
            try:
                response, resent = self._send(url, what, accept_status=(404,))
            except DcmwebError as error:
                held = self._orthanc_holds(root, url, target) if _undecided(error) else True
                if held is False:
                    log.info("%s: %s; its outcome was unknown, and the server no longer "
                             "has %s", what, error.message.removeprefix(f"{what} failed: "),
                             urlsplit(url).path)
                    lost = True
                    continue
                failure = error if held else self._unknown(target, what, error)
                if not done:
                    raise failure from None
                left = len(urls) - done
                partial = PartialFailure(
                    f"{what}: deleted {done} of {len(urls)} Orthanc resources under it; "
                    f"{left} not {'deleted' if held else 'known to be deleted'}: "
                    f"{failure.message}",
                    f"the server {'holds' if held else 'may hold'} part of {url_path}: delete "
                    "it again for the rest (a search shows what is left)",
                    status=error.status)
                for line in failure.notes:
                    partial.add_line(line)
                raise partial from error
            with response:
                if response.status_code == 404 and not resent:
                    log.info("delete %s: %s is gone already (deleted since the lookup)",
                             url_path, urlsplit(url).path)
                elif _gone_after_lost_answer(response, url_path):
                    lost = True
        return lost

    def _orthanc_holds(self, root: str, url: str, target: ResourcePath) -> bool | None:
        """Whether Orthanc still holds a resource the lookup listed (its REST answer,
        with the UIDs of the path): False for a 404, None when no answer tells (it fails
        too, or names other UIDs)."""
        try:
            return self._orthanc_uids(root, url, target.level) == _uids(target) or None
        except NotFoundError as error:
            return None if error.status != 404 else False
        except DcmwebError:
            return None

    def _orthanc_uids(self, root: str, url: str, level: str | None
                      ) -> dict[str, str | None]:
        """The UIDs of an Orthanc resource (its URL, checked) and of its parents."""
        uids: dict[str, str | None] = {}
        while level is not None:
            what = f"look up {url.removeprefix(root)}"
            response = self.http.request("GET", url, what=what, max_body=ANSWER_LIMIT)
            with response:
                resource = read_json(response, ANSWER_LIMIT, what, expected="application/json")
            if not isinstance(resource, dict):
                break
            tags = resource.get("MainDicomTags") or {}
            uids[level] = tags.get(_UID_TAGS[level]) if isinstance(tags, dict) else None
            parent_key, parent_level = _PARENTS.get(level, ("", None))
            parent = resource.get(parent_key) if parent_level else None
            level = parent_level if isinstance(parent, str) else None
            if level is not None:
                path = f"/{'studies' if level == 'study' else 'series'}/{parent}"
                url = self._orthanc_url(root, path, level, what)
        return uids


def _gone_after_lost_answer(response: Response, url_path: str) -> bool:
    """A 404 reaches here only as the answer to a resend (see Deleter._send): the earlier
    DELETE, whose outcome is unknown, did the work."""
    if response.status_code != 404:
        return False
    log.info("delete %s: an earlier attempt's outcome is unknown (its answer lost, or a "
             "server error), and the server no longer has it", url_path)
    return True


def _undecided(error: DcmwebError) -> bool:
    """Whether a DELETE's error leaves its outcome unknown: it reached the server, which
    may have deleted all the same. Its answer lost every time (Deleter._send), a 5xx that
    ended the retries (a gateway's 524, a 503 at the outage limit), a 2xx in words that
    cannot be read (done, or not, or an operation started)."""
    if isinstance(error, UnreadableAnswer):
        return error.status is not None and error.status < 300  # else a refusal
    return isinstance(error, AnswerLost) or sent_undecided(error)


def _uids(target: ResourcePath) -> dict[str, str | None]:
    """The UIDs a path names, by level, down to its own level."""
    uids = {"study": target.study, "series": target.series, "instance": target.instance}
    return {level: uid for level, uid in uids.items() if uid is not None}
