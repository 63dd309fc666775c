"""What every WADO-RS download shares: asking (with transcoding failures told apart from
outages), splitting the answer into parts, naming the files (saving.py writes them).

A server that cannot convert to the asked-for transfer syntax says so in different ways:
Google's API and dcmweb's local server answer 406, Orthanc without its GDCM plugin 500.
Retrying that six times and calling the server "overloaded or down" (0.1) hides the
cause; it is asked once more (a 500 may be a hiccup) and then reported with a hint.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .errors import ServerError
from .http import Http, server_message
from .multipart import Chunk, iter_parts, parse_content_type
from .paths import ResourcePath
from .saving import CHUNK
from .transport import Response

TRANSCODE_HINT = "ask for the stored bytes with --transfer-syntax '*'"
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
        stream: bool = True) -> Response:
    """GET with this Accept; a 406 (and, when transcoding, a 500 twice) is reported as
    the server being unable to send that type, not as an outage."""
    refused = (406, 500) if transcoding else (406,)
    for attempt in (1, 2):
        response = http.request("GET", url, what=what, headers={"Accept": accept},
                                stream=stream, accept_status=refused)
        status = response.status_code
        if status not in refused:
            return response
        if status == 500 and attempt == 1:
            response.close()
            continue
        with response:
            detail = server_message(response)
        message = f"{what} failed: the server cannot send {accept} (HTTP {status}"
        message += f": {detail})" if detail else ")"
        raise ServerError(message, TRANSCODE_HINT if transcoding else None, status=status)
    raise AssertionError("unreachable")


def answer_parts(response: Response, what: str
                 ) -> Iterator[tuple[str, Iterator[Chunk]]]:
    """(part type, its chunks) for each part of a multipart answer, or the one body."""
    content_type = response.headers.get("Content-Type", "")
    mime, params = parse_content_type(content_type)
    chunks = response.iter_content(CHUNK)  # cut off below the low-speed limit
    if not mime.startswith("multipart/"):
        yield mime, chunks
        return
    boundary = params.get("boundary")
    if not boundary:
        raise ServerError(f"{what}: multipart answer without a boundary")
    inner, _ = parse_content_type(params.get("type", ""))
    for part in iter_parts(chunks, boundary):
        part_mime, _ = parse_content_type(part.content_type or inner)
        yield part_mime, part.iter_content()


def instance_file(output: Path, resource: ResourcePath, suffix: str, mime: str) -> Path:
    """OUTPUT/STUDY/SERIES/SOP{suffix}.ext: where a piece of an instance is written."""
    folders = [uid for uid in (resource.study, resource.series) if uid]
    return output.joinpath(*folders, f"{resource.instance}{suffix}{EXTENSIONS.get(mime, '.bin')}")
