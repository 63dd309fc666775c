"""Instances in memory: a study, series or instance as Part-10 bytes (or pydicom
Datasets), one at a time, for notebooks and scripts that do not want files.

The answer gets the same checks as a download to disk (dcmweb.wado.checked_answer):
only multipart/related or application/dicom, lengths counted; a part of another type,
a body cut inside the DICOM data, bytes that are not a Part-10 file, or an instance of
another study, series or SOP instance than the path names raises instead of being
handed out.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

from . import wado
from .dicomhead import HEAD_BYTES, ends_complete, read_meta, read_uids
from .errors import ServerError, UsageError
from .http import Http
from .multipart import Chunk, parse_content_type
from .partcheck import NOT_DICOM, instance_problem, pydicom_uids
from .paths import ResourcePath, parse_resource_path
from .retrieve import DEFAULT_TYPE, accept_header
from .wado import CUT_OFF, Answer, CutOffError, checked_answer

if TYPE_CHECKING:
    from pydicom import Dataset

DICOM = "application/dicom"


def iter_instance_bytes(http: Http, base_url: str, path: str) -> Iterator[bytes]:
    """Each instance of a study, series or instance path as its stored Part-10 bytes."""
    target = parse_resource_path(path)
    if target.level == "store":
        raise UsageError("give a study, series or instance path",
                         "studies/S, studies/S/series/R or studies/S/series/R/instances/I")
    source = target.url_path()
    what = f"retrieve {source}"
    response = wado.get(http, f"{base_url}/{source}", what, accept_header(DEFAULT_TYPE))
    with response:
        try:
            for data in _instances(checked_answer(response, what, DICOM), what):
                yield _checked(data, target, what)
        except CUT_OFF as exc:
            raise ServerError(f"{what}: the answer was cut off: {exc}") from exc


def same_as_file(http: Http, base_url: str, path: str, file: Path) -> bool:
    """Whether the server's stored instance at ``path`` is ``file``'s data set, byte for
    byte (the File Meta header is left out: servers may rewrite it, tiny-pacs does),
    compared chunk by chunk as it arrives (memory stays flat); a cut answer is asked
    again. Raises what the retrieve raises (a 404: the server does not hold it), and
    OSError when the file cannot be read."""
    what = f"read back {path}"
    return wado.asking_again(what, lambda: _same_data_set(http, f"{base_url}/{path}", what,
                                                          file))


def _same_data_set(http: Http, url: str, what: str, file: Path) -> bool:
    # Part of the check of what a write left behind, like the search before it: its
    # answer does not end an outage on the shared clock (a lost STOW answer began one,
    # which the check ends as none when it finds the file; see Gate.carried_out).
    with wado.get(http, url, what, accept_header(DEFAULT_TYPE), ends_outage=False) as response, \
            open(file, "rb") as local:
        answer = checked_answer(response, what, DICOM)
        chunks = iter(next(_bodies(answer, what)))
        head = bytearray()
        for chunk in chunks:
            head += chunk
            if len(head) >= HEAD_BYTES:
                break
        theirs = _data_set_start(bytes(head[:HEAD_BYTES]))
        if theirs is None:
            raise ServerError(f"{what}: {NOT_DICOM}")
        local.seek(_data_set_start(local.read(HEAD_BYTES)) or 0)
        for chunk in chain([memoryview(head)[theirs:]], chunks):
            if local.read(len(chunk)) != chunk:
                return False
        if not local.read(1):
            return True
        if answer.boundary is None and not answer.framed:
            # Only the connection's end showed the body's: a cut, or a shorter copy.
            raise CutOffError("the connection closed before the instance's end")
        return False


def _data_set_start(head: bytes) -> int | None:
    """Where the data set of the Part-10 bytes starting with ``head`` begins, or None."""
    meta = read_meta(head)
    return None if meta is None or meta[1] < 0 else meta[1]


def _instances(answer: Answer, what: str) -> Iterator[bytes]:
    for chunks in _bodies(answer, what):
        data = b"".join(chunks)
        if answer.boundary is None and not answer.framed and ends_complete(data) is False:
            raise CutOffError(f"the connection closed after {len(data)} bytes, inside "
                              "the DICOM data")
        yield data


def _bodies(answer: Answer, what: str) -> Iterator[Iterator[Chunk]]:
    """The chunks of each instance of the answer: its one body, or each DICOM part."""
    if answer.boundary is None:
        yield answer.chunks
        return
    for part in wado.at_least_one(wado.parts_of(answer, answer.boundary, what), what):
        mime, _ = parse_content_type(part.content_type or DICOM)
        if mime != DICOM:
            raise ServerError(f"{what}: the server sent a {mime} part where {DICOM} "
                              "was asked for")
        yield part.iter_content()


def _checked(data: bytes, target: ResourcePath, what: str) -> bytes:
    """The bytes, once their head shows a Part-10 instance of the path asked for."""
    uids = read_uids(data[:HEAD_BYTES]) or pydicom_uids(BytesIO(data))
    problem = instance_problem(target, uids)
    if problem:
        raise ServerError(f"{what}: {problem}")
    return data


def as_dataset(data: bytes) -> Dataset:
    """Part-10 bytes as a pydicom Dataset."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        return dcmread(BytesIO(data))
    except (InvalidDicomError, ValueError, EOFError) as exc:
        raise ServerError(f"the server sent an instance pydicom cannot read: {exc}") from exc
