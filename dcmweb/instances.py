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
from typing import TYPE_CHECKING

from . import wado
from .dicomhead import HEAD_BYTES, ends_complete, read_uids
from .errors import ServerError, UsageError
from .http import Http
from .multipart import parse_content_type
from .paths import ResourcePath, parse_resource_path
from .retrieve import DEFAULT_TYPE, accept_header, instance_problem, pydicom_uids
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


def _instances(answer: Answer, what: str) -> Iterator[bytes]:
    if answer.boundary is None:
        data = b"".join(answer.chunks)
        if not answer.framed and ends_complete(data) is False:
            raise CutOffError(f"the connection closed after {len(data)} bytes, inside "
                              "the DICOM data")
        yield data
        return
    for part in wado.at_least_one(wado.parts_of(answer, answer.boundary, what), what):
        mime, _ = parse_content_type(part.content_type or DICOM)
        if mime != DICOM:
            raise ServerError(f"{what}: the server sent a {mime} part where {DICOM} "
                              "was asked for")
        yield b"".join(part.iter_content())


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
