"""What every WADO-RS download shares: asking (with transcoding failures told apart from
outages), splitting the answer into parts, naming the files (saving.py writes them).

A server that cannot convert to the asked-for transfer syntax says so in different ways:
Google's API and dcmweb's local server answer 406, Orthanc without its GDCM plugin 500.
Retrying that six times and calling the server "overloaded or down" (0.1) hides the
cause; it is asked once more (a 500 may be a hiccup) and then reported with a hint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from .body import TooSlowError, server_message, warning_texts
from .errors import DcmwebError, ServerError
from .http import Http
from .multipart import BoundaryNotFound, Chunk, MultipartError, Part, iter_parts, parse_content_type
from .optionnames import option
from .paths import ResourcePath
from .record import record
from .saving import CHUNK
from .transport import Response, TransportError
from .unexpected import describe_answer, not_dicomweb

log = logging.getLogger("dcmweb")
T = TypeVar("T")
STREAM_ATTEMPTS = 3  # a response cut mid-stream is requested again this many times

_STORED = {"*"}
EXTENSIONS = {
    "application/dicom": ".dcm",
    "application/octet-stream": ".raw",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/jp2": ".jp2",
    "image/jpx": ".jpx",
    "image/jls": ".jls",
    "image/dicom-rle": ".rle",
}
# Without a transfer-syntax parameter these types mean Explicit VR Little Endian.
_TRANSCODED_BY_DEFAULT = {"application/dicom", "application/octet-stream"}


def wants_transcoding(part_type: str) -> bool:
    """Whether asking for ``part_type`` may make the server convert the stored bytes."""
    mime, params = parse_content_type(part_type)
    syntax = params.get("transfer-syntax")
    if syntax is None:
        return mime in _TRANSCODED_BY_DEFAULT or mime.startswith("image/")
    return syntax not in _STORED


def get(http: Http, url: str, what: str, accept: str, *, transcoding: bool = False,
        stream: bool = True, partial_counted: bool = False,
        ends_outage: bool = True) -> Response:
    """GET with this Accept; a 406 (and, when transcoding, a 500 twice) is reported as
    the server being unable to send that type, not as an outage. What the server says
    of its answer (a Warning header, a 206) is logged as a warning, except a 206 when
    the caller counts it (``partial_counted``: see :func:`partial_message`).
    ``ends_outage``: as in :meth:`Http.request`."""
    refused = (406, 500) if transcoding else (406,)
    for attempt in (1, 2):
        response = http.request("GET", url, what=what, headers={"Accept": accept},
                                stream=stream, accept_status=refused,
                                ends_outage=ends_outage)
        status = response.status_code
        if status not in refused:
            if status == 204:
                # No body whatever its Content-Type says (a multipart type with it made
                # the missing boundary look like a cut, asked for again).
                response.close()
                raise not_dicomweb(what, 204, "no content", parse_content_type(accept)[0])
            if status != 206:
                warning = server_warning(response)
                if warning:
                    log.warning("%s: the server warns: %s", what, warning)
            elif not partial_counted:
                log.warning("%s: %s", what, partial_message(response))
            return response
        if status == 500 and attempt == 1:
            response.close()
            continue
        with response:
            detail = server_message(response)
        message = f"{what} failed: the server cannot send {accept} (HTTP {status}"
        message += f": {detail})" if detail else ")"
        raise ServerError(message, _stored_bytes_hint(accept) if transcoding else None,
                          status=status)
    raise AssertionError("unreachable")


def _stored_bytes_hint(accept: str) -> str:
    """How to get the stored bytes: without the option that asked for others. A type
    without a transfer syntax came from the part type; one with it, from either."""
    given = option("part_type")
    if "transfer-syntax" in parse_content_type(accept)[1]:
        given += f" or {option('transfer_syntax')}"
    return f"leave out {given}: the stored bytes are the default"


def server_warning(response: Response) -> str | None:
    """The text of the answer's Warning headers (``299 agent "text"``, as PS3.18 has
    servers say that an answer is incomplete or a parameter ignored), or None."""
    values = response.headers.get_all("Warning")
    if not values:
        return None
    texts = warning_texts(values)
    return "; ".join(texts) if texts else ", ".join(values)


def partial_message(response: Response) -> str | None:
    """Why an answer is only part of what was asked for: a 206 (dcmweb never asks for a
    range, so the server says that some of the instances are missing), with the server's
    Warning text; None for any other status."""
    if response.status_code != 206:
        return None
    warning = server_warning(response)
    return "the server answered 206 Partial Content: " + (
        warning or "it sent only part of what was asked for")


class NoInstanceError(ServerError):
    """An answer without a single instance for a path that names at least one (a
    missing study, series or instance is a 404 on real servers, not an empty answer)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: the server sent no instance")


def at_least_one(items: Iterable[T], what: str) -> Iterator[T]:
    """``items`` (the parts of an answer for a study, series or instance path), then
    NoInstanceError if there was none: a path that exists holds one instance at least, and
    a missing one is a 404 on real servers (Orthanc, the local server), not an empty
    answer."""
    empty = True
    for item in items:
        empty = False
        yield item
    if empty:
        raise NoInstanceError(what)


class CutOffError(ValueError):
    """An answer ended before all its bytes arrived (asked for again)."""


# What a response cut mid-stream raises (on the way, in the parser, or in the checks);
# parts_of takes a whole body without its boundary out of them.
CUT_OFF = (TransportError, MultipartError, CutOffError, TooSlowError)


def fits(mime: str, asked: str) -> bool:
    """Whether a body or part of type ``mime`` is what was asked for: pixel data asked
    as bytes or as one image type may come as any image type (a compressed frame)."""
    return mime == asked or (mime.startswith("image/") and (
        asked.startswith("image/") or asked == "application/octet-stream"))


@record(frozen=True)
class Answer:
    """A WADO-RS answer that passed the checks: its counted chunks, the multipart
    boundary (None for a single-part body of the asked-for type) and whether the body is
    framed (a length or chunked encoding; else only the file itself shows its end)."""

    chunks: Iterator[bytes]
    boundary: str | None
    framed: bool


def checked_answer(response: Response, what: str, asked: str) -> Answer:
    """Accept only multipart/related or the asked-for single-part type (a web page with
    200 is not DICOMweb data). A body shorter than its Content-Length is a cut: the transport
    raises it (answer.py), for this and every other answer."""
    mime, params = parse_content_type(response.headers.get("Content-Type", ""))
    if mime != "multipart/related" and not fits(mime, asked):
        raise not_dicomweb(what, response.status_code, describe_answer(response),
                           f"multipart/related or {asked}")
    chunks = response.iter_content(CHUNK)  # cut off below the low-speed limit
    if mime != "multipart/related":
        return Answer(chunks, None, framed(response))
    boundary = params.get("boundary")
    if not boundary:
        raise ServerError(f"{what}: multipart answer without a boundary")
    return Answer(chunks, boundary, framed(response))


def framed(response: Response) -> bool:
    """Whether the body's end is known from its framing (a Content-Length or chunked
    coding, both checked to the last byte by the transport), not only from the data."""
    return ("Content-Length" in response.headers
            or "chunked" in response.headers.get("Transfer-Encoding", "").lower())


def parts_of(answer: Answer, boundary: str, what: str) -> Iterator[Part]:
    """The parts of a multipart answer. A framed body that arrived whole without the
    boundary its Content-Type names is a server bug, not a cut: asking again is no use."""
    try:
        yield from iter_parts(answer.chunks, boundary)
    except BoundaryNotFound as exc:
        if not answer.framed:
            raise  # the connection may have closed before the first boundary: a cut
        raise ServerError(f"{what}: {exc}") from exc


def answer_parts(response: Response, what: str, asked: str,
                 confirm_end: Callable[[int], None] | None = None
                 ) -> Iterator[tuple[str, Iterator[Chunk]]]:
    """(part type, its chunks) for each part of a multipart answer, or the one body; a
    body or part of another type than ``asked`` (a login page) raises ServerError.

    A single body that only the connection's close ended may be cut anywhere, and looks
    whole: ``confirm_end`` gets its length after its last chunk, and raises CutOffError
    unless something else (the instance's metadata) confirms it."""
    mime, _ = parse_content_type(response.headers.get("Content-Type", ""))
    answer = checked_answer(response, what, asked)
    if answer.boundary is None:
        if answer.framed or confirm_end is None:
            yield mime, answer.chunks
        else:
            yield mime, _confirmed(answer.chunks, confirm_end)
        return
    for part in parts_of(answer, answer.boundary, what):
        part_mime, _ = parse_content_type(part.content_type or asked)
        if not fits(part_mime, asked):
            raise ServerError(f"{what}: the server sent a {part_mime} part where {asked} "
                              "was asked for")
        yield part_mime, part.iter_content()


def _confirmed(chunks: Iterator[bytes], confirm_end: Callable[[int], None]
               ) -> Iterator[bytes]:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        yield chunk
    confirm_end(size)


def asking_again(what: str, attempt: Callable[[], T]) -> T:
    """``attempt()``, asked again when its answer is cut off; after STREAM_ATTEMPTS cut
    answers a ServerError (a stalling server: the TooSlowError, an outage)."""
    for number in range(1, STREAM_ATTEMPTS + 1):
        try:
            return attempt()
        except CUT_OFF as exc:
            if number == STREAM_ATTEMPTS:
                raise cut_error(what, exc) from exc
            log.info("%s: answer cut off (%s); asking again", what, exc)
    raise AssertionError("unreachable")


def item_message(error: DcmwebError, what: str) -> str:
    """An error's message as one failed item's: without the ``what`` it begins with,
    which the item's own name already says."""
    for prefix in (f"{what}: ", f"{what} failed: "):
        if error.message.startswith(prefix):
            return error.message[len(prefix):]
    return error.message


def cut_error(what: str, exc: Exception) -> ServerError | TooSlowError:
    """What an answer cut off STREAM_ATTEMPTS times is reported as: a server too slow
    for the low-speed limit is an outage (exit 5), a cut a failure of this request."""
    if isinstance(exc, TooSlowError):
        return TooSlowError(f"{what}: {exc.message}", exc.hint)
    return ServerError(f"{what}: the answer was cut off {STREAM_ATTEMPTS} times: {exc}")


def instance_file(output: Path, resource: ResourcePath, suffix: str, mime: str) -> Path:
    """OUTPUT/STUDY/SERIES/SOP{suffix}.ext: where a piece of an instance is written."""
    folders = [uid for uid in (resource.study, resource.series) if uid]
    return output.joinpath(*folders, f"{resource.instance}{suffix}{EXTENSIONS.get(mime, '.bin')}")
