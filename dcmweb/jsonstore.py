"""Create instances from DICOM JSON metadata plus a JPEG image (STOW-RS, Google's form).

One request per pair::

    Content-Type: multipart/related; type="application/dicom+json"; boundary=B

    --B
    Content-Type: application/dicom+json

    [{... "7FE00010": {"vr": "OB", "BulkDataURI": "jpeg-image"} ...}]
    --B
    Content-Type: image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50
    Content-Location: jpeg-image

    <JPEG bytes>
    --B--

As for files, the report is the server's truth: an instance counts as stored when the
answer names its SOP Instance UID, or, when the answer is lost or names nothing, when a
search finds it. ``generate_uids`` fills missing Study, Series and SOP Instance UIDs
(``2.25.`` + a random UUID, so no registered root is needed).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeGuard

from .body import body_message
from .errors import (
    AnswerLost,
    DcmwebError,
    RedirectRefused,
    UnavailableError,
    UnreadableAnswer,
    UsageError,
)
from .failures import UNAVAILABLE_HINT, parse_retry_after, sent_undecided
from .http import Http
from .multipart import new_boundary
from .optionnames import option
from .paths import ResourcePath
from .record import record
from .served import served
from .store import (
    LOST_STATUSES,
    UNCONFIRMED,
    Resends,
    Stopped,
    not_resent,
    refused,
    stops_the_run,
    undecided,
)
from .storecheck import Wanted, held
from .storefiles import ConfirmedBy, Status, StoreResult
from .stowanswer import parse_stow_answer

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
LOCATION = "jpeg-image"
ANSWER_LIMIT = 16 * 1024 * 1024
UID_TAGS = {"StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E",
            "SOPInstanceUID": "00080018"}
SOP_CLASS = "00080016"
PIXEL_DATA = "7FE00010"
log = logging.getLogger("dcmweb")


@record(frozen=True)
class JsonInstance:
    """One instance to create: its metadata (the JSON object) and its JPEG."""

    metadata: Path
    jpeg: Path


Pair = tuple[str | os.PathLike[str], str | os.PathLike[str]]
PairsLike = JsonInstance | Pair | Iterable[JsonInstance | Pair]


def iter_json_pairs(items: PairsLike) -> Iterator[JsonInstance]:
    """The pairs a library caller passes, taken one at a time (a generator of pairs is
    not read ahead); one pair may come alone (iterating it would take each file name,
    then each of its characters, for a pair)."""
    if isinstance(items, JsonInstance):
        yield items
    elif _is_pair(items) or isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        yield _pair(items)  # one pair, or what is not one: refused there, named
    else:
        for item in items:
            yield _pair(item)


def json_pairs(items: PairsLike) -> list[JsonInstance]:
    return list(iter_json_pairs(items))


def _is_pair(item: object) -> TypeGuard[Sequence[str | os.PathLike[str]]]:
    return (isinstance(item, (tuple, list)) and len(item) == 2
            and all(isinstance(path, (str, os.PathLike)) for path in item))


def _pair(item: object) -> JsonInstance:
    if isinstance(item, JsonInstance):
        return item
    if not _is_pair(item):
        raise UsageError(f"not a (metadata, jpeg) pair: {item!r}",
                         'give pairs of paths: [("photo.json", "photo.jpg")]')
    return JsonInstance(Path(item[0]), Path(item[1]))


def _uid(dataset: dict[str, Any], tag: str) -> str | None:
    values = (dataset.get(tag) or {}).get("Value") or []
    return values[0] if values and isinstance(values[0], str) and values[0] else None


def load(item: JsonInstance, generate_uids: bool) -> tuple[dict[str, Any], bytes, list[str]]:
    """The metadata ready to send, the JPEG bytes, and the UIDs generated (as Keyword=UID)."""
    try:
        document = json.loads(item.metadata.read_text(encoding="utf-8"))
        jpeg = item.jpeg.read_bytes()
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {item.metadata} / {item.jpeg}: {error}") from None
    if isinstance(document, list) and len(document) == 1:
        document = document[0]  # a metadata answer of one instance
    if not isinstance(document, dict):
        raise UsageError(f"{item.metadata} is not one DICOM JSON object",
                         "give the metadata of one instance: {\"00080016\": {...}, ...}")
    if not jpeg.startswith(b"\xff\xd8"):
        raise UsageError(f"{item.jpeg} is not a JPEG image")
    dataset = {key.upper(): value for key, value in document.items()}
    if _uid(dataset, SOP_CLASS) is None:
        raise UsageError(f"{item.metadata} has no SOPClassUID (00080016)",
                         "for a photo, 1.2.840.10008.5.1.4.1.1.7 (Secondary Capture)")
    generated = []
    for keyword, tag in UID_TAGS.items():
        if _uid(dataset, tag) is None:
            if not generate_uids:
                raise UsageError(f"{item.metadata} has no {keyword} ({tag})",
                                 f"add it, or pass {option('generate_uids', True)}")
            value = f"2.25.{uuid.uuid4().int}"
            dataset[tag] = {"vr": "UI", "Value": [value]}
            generated.append(f"{keyword}={value}")
    dataset[PIXEL_DATA] = {"vr": "OB", "BulkDataURI": LOCATION}
    return dataset, jpeg, generated


def check_pairs(items: Iterable[JsonInstance], generate_uids: bool) -> None:
    """Refuse the first pair that cannot be sent before anything is sent: a run that
    stops half-way on a typo would leave some of its instances on the server."""
    for item in items:
        load(item, generate_uids)


def body(dataset: dict[str, Any], jpeg: bytes, boundary: str) -> bytes:
    head = (f"--{boundary}\r\nContent-Type: application/dicom+json\r\n\r\n"
            + json.dumps([dataset], separators=(",", ":"))
            + f"\r\n--{boundary}\r\nContent-Type: image/jpeg; transfer-syntax={JPEG_BASELINE}"
            f"\r\nContent-Location: {LOCATION}\r\n\r\n")
    return head.encode() + jpeg + f"\r\n--{boundary}--\r\n".encode()


def store_one(http: Http, base_url: str, item: JsonInstance, generate_uids: bool = False
              ) -> StoreResult:
    """One pair's result; a pair that cannot be read (changed since it was checked, or
    never checked: a lazy ``iter_store_json``) fails on its own."""
    try:
        dataset, jpeg, generated = load(item, generate_uids)
    except UsageError as error:
        return StoreResult(item.metadata, "failed", message=error.headline)
    study, series, sop = (_uid(dataset, tag) for tag in UID_TAGS.values())
    assert study and series and sop  # load() filled or refused them
    note = f"generated {', '.join(generated)}" if generated else None
    boundary = new_boundary()
    payload = body(dataset, jpeg, boundary)
    headers = {"Accept": "application/dicom+json",
               "Content-Type": f'multipart/related; type="application/dicom+json"; '
                               f"boundary={boundary}"}
    size = len(jpeg)
    answered: int | None = None  # the HTTP status of the answer, when one came

    def result(status: Status, url: str | None = None, message: str | None = None,
               confirmed_by: ConfirmedBy | None = None) -> StoreResult:
        text = "; ".join(m for m in (message, note) if m) or None
        return StoreResult(item.metadata, status, size if status == "stored" else 0, sop, url,
                           text, confirmed_by, http_status=answered,
                           study_instance_uid=study, series_instance_uid=series)

    resends = Resends(http, http.config.retry.attempts)
    what = f"store {item.metadata}"
    while True:
        posted = time.monotonic()  # the gate's clock
        retry_after: float | None = None
        answered = None
        redirected: RedirectRefused | None = None  # settled by search, then the run stops
        cut: str | None = None  # the request deadline ended the wait: what to try
        ended: DcmwebError | None = None  # a 5xx that ended the retries: none is left
        hint = ""  # what to do about an answer that could not be read
        try:
            response = http.request("POST", f"{base_url}/studies", what=what,
                                    headers=headers, body=lambda: payload, retry_sent=False,
                                    accept_status=(400, 409, 415, 422, *LOST_STATUSES),
                                    max_body=ANSWER_LIMIT)
        except AnswerLost as error:  # dropped, or cut half-way: the server may hold it
            lost = error.message
            cut = error.hint if error.cut else None
        except UnreadableAnswer as error:  # its status came, its words cannot be read
            answered = error.status
            lost = error.message.removeprefix(f"{what} failed: ")
            hint = f" ({error.hint})"
        except RedirectRefused as error:  # the server may have stored it, then redirected
            redirected, answered = error, error.status
            lost = error.message.removeprefix(f"{what} failed: ")
        except DcmwebError as error:
            answered = error.status
            reason = error.message.removeprefix(f"{what} failed: ")
            if refused(error):
                # Sent and refused (credentials, no such store): nothing stored; the run
                # stops.
                raise Stopped(error, [result("failed", message=reason)], {}) from None
            if not sent_undecided(error):
                raise  # e.g. refused before it was sent (no token to send)
            lost, ended = reason, error  # the server may hold it: a search settles it
        else:
            answered = response.status_code
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            answer = parse_stow_answer(response.content, response.headers.get("Content-Type"))
            if sop in answer.stored:
                return result("stored", answer.stored[sop] or answer.retrieve_url,
                              confirmed_by="answer")
            if sop in answer.failed:
                return result("failed", message=answer.failed[sop].describe())
            detail = body_message(answer.text) if answer.kind == "foreign" else ""
            lost = f"HTTP {answered}" + (f": {detail}" if detail else "")
        if redirected is None and answered is not None and 300 <= answered < 500:
            return result("failed", message=lost + hint)
        # No word on this instance (lost answer, 5xx, an answer naming nothing, a
        # redirect): ask. A redirect, or a 503 to the outage limit, stops the run after.
        stopping = redirected or (ended if ended and stops_the_run(ended) else None)
        try:
            found = held(http, base_url, [Wanted(sop, f"studies/{study}/series/{series}")])
            # Searches lag behind deletes (Google): the same UIDs stored again just after
            # a delete are found whether or not this request stored them; a retrieve knows.
            if sop in found and not served(http, base_url, ResourcePath(study, series, sop)):
                del found[sop]
        except DcmwebError as error:
            if stopping is None and not stops_the_run(error):
                # A search that failed alone (a sign-in page, 500s): this pair is
                # undecided, the run goes on, as for files.
                return result("unconfirmed", message=undecided(lost, error))
            # It stops the run: the pair was sent, its fate unknown.
            raise Stopped(stopping or error,
                          [result("unconfirmed", message=f"{lost}; {UNCONFIRMED}")],
                          {}) from error
        settled: StoreResult | None = None
        if sop in found:
            settled = result("stored", found[sop], f"{lost}; found on the server by search",
                             "search")
        elif redirected is not None or (answered is not None and answered < 300):
            # A resend would be redirected too, or would get the same answer.
            settled = result("failed", message=f"{lost}; not on the server{hint}")
        if redirected is not None and settled is not None:  # so would every other request
            raise Stopped(redirected, [settled], {})
        if ended is not None:
            # Not found: no retry is left, and the server may still be at work (as for files).
            settled = settled or result(
                "unconfirmed", message=not_resent(lost, "0 of 1 found on the server by search"))
            if stopping is not None:
                raise Stopped(stopping, [settled], {})
        if settled is not None:
            return settled
        if cut is not None:
            return result("unconfirmed", message=(
                f"{not_resent(lost, '0 of 1 found on the server by search')} ({cut})"))
        outage = resends.failed(answered, posted, carried_out=False)
        if not resends.left:
            return result("failed", message=f"{lost}; not on the server{resends.tries()}")
        outage_note = http.outage_note() if outage else None
        if outage_note is not None:
            raise Stopped(UnavailableError(f"{what} failed: {lost} ({outage_note})",
                                           UNAVAILABLE_HINT),
                          [result("unconfirmed", message=f"{lost}; {UNCONFIRMED}")], {})
        # Not on the server: the same body again, with the same (generated) UIDs.
        delay = 0.0 if outage else resends.delay(retry_after)
        log.info("%s: %s; not on the server: sending it again in %.1f s", what, lost, delay)
        http.sleep(delay)
        http.retried()


def iter_store_json(http: Http, base_url: str, items: PairsLike,
                    generate_uids: bool = False) -> Iterator[StoreResult]:
    for item in iter_json_pairs(items):
        try:
            result = store_one(http, base_url, item, generate_uids)
        except Stopped as stopped:  # the pair sent before the stop is told, unconfirmed
            yield from stopped.decided
            raise stopped.error from None
        yield result
