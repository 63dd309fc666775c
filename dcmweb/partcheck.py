"""Whether a retrieved part may be kept as the instance asked for: its UIDs (read from the
file) name that instance and a safe file, its data set runs whole to its end, and it
comes in the transfer syntax asked for. A framed answer proves only that the bytes sent
arrived, not that the server, a cache or a gateway sent the whole file."""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import BinaryIO

from .dicomhead import DataSetWalk, Meta, MoreBytesNeeded, walk_data_set
from .paths import ResourcePath, safe_uid

_UID_TAGS = (0x0020000D, 0x0020000E, 0x00080018)  # study, series, SOP instance
_UID_NAMES = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
NOT_DICOM = "the server sent a part that is not a readable DICOM file"
DICOM_TYPES = ("application/dicom", "")  # a part without a type is taken as DICOM


def walk_part(head: bytes, meta: Meta | None, size: int, path: str) -> DataSetWalk:
    """Walk a saved Part-10 part of ``size`` bytes to its end (dicomhead.walk_data_set):
    from its first bytes when they reach its last element (an uncompressed image's pixel
    data), else from the file, mapped and never read whole: a few system calls per file,
    not a second read of a large retrieve."""
    if size == 0:
        return DataSetWalk(False)
    try:
        return walk_data_set(head, size, meta)
    except MoreBytesNeeded:
        with open(path, "rb") as handle, \
                mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return walk_data_set(data)


def pydicom_uids(source: str | BinaryIO) -> tuple[str | None, ...]:
    """Study, series and SOP UIDs of a file (or bytes) dicomhead could not read (e.g.
    deflated)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(source, stop_before_pixels=True,
                                  specific_tags=list(_UID_TAGS))
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return (None, None, None)
    return tuple(str(dataset[tag].value) if tag in dataset else None for tag in _UID_TAGS)


def instance_problem(target: ResourcePath, uids: tuple[str | None, ...]) -> str | None:
    """Why a part whose data set holds these UIDs is not an instance ``target`` asks for
    (not readable DICOM, or of another study, series or SOP instance), or None."""
    if not all(uids):
        return NOT_DICOM
    for name, asked, sent in zip(_UID_NAMES, (target.study, target.series, target.instance),
                                 uids, strict=True):
        if asked and sent != asked:
            return f"the server sent an instance whose {name} is {sent}, not {asked} as asked"
    return None


def whole_problem(walk: DataSetWalk, final: Path | None, size: int) -> str | None:
    """Why a Part-10 part that arrived whole cannot be kept: its data set stops inside an
    element (the server, a cache or a gateway sent a short file, framed as if whole), or
    names its study, series or instance twice (which readers take differs)."""
    name = final.name if final else "an instance"
    if walk.complete is False:
        # The file may have been stored short (pydicom's rtplan_truncated.dcm is stored
        # as sent): the message must not blame the transfer alone.
        return (f"the server sent {name} cut inside its data (after {size} bytes: an "
                "answer cut short, or a file stored so)")
    if walk.repeated:
        return (f"the server sent {name} with its {walk.repeated} given twice (readers "
                "differ on which one counts)")
    return None


def syntax_problem(meta: Meta, final: Path | None, asked: str) -> str | None:
    """Why a part whose File Meta is ``meta`` is not in the transfer syntax ``asked`` for
    (a cache or gateway that ignores Accept, a server that falls back to the stored
    bytes), or None."""
    sent = meta[0].get(0x00020010)
    if sent == asked:
        return None
    name = final.name if final else "an instance"
    return (f"the server sent {name} in transfer syntax {sent or '(none given)'}, not "
            f"{asked} as asked")


def dicom_path(output: Path, target: ResourcePath, uids: tuple[str | None, ...]
               ) -> Path | str:
    """Where an instance with these UIDs, retrieved for ``target``, is saved, or why it is
    refused (unreadable or unsafe UIDs, told first; another study, series or instance)."""
    final = dicom_file(output, *uids)
    return final if isinstance(final, str) else instance_problem(target, uids) or final


def dicom_file(output: Path, study: str | None, series: str | None,
               sop: str | None) -> Path | str:
    """OUTPUT/STUDY/SERIES/SOP.dcm, or why the UIDs cannot name a file."""
    if not (study and series and sop):
        return NOT_DICOM
    safe = [safe_uid(study), safe_uid(series), safe_uid(sop)]
    names = [name for name in safe if name is not None]
    if len(names) < 3:
        shown = ", ".join(repr(uid) for uid in (study, series, sop))
        return f"refused unsafe UIDs from the server ({shown})"
    return output.joinpath(names[0], names[1], f"{names[2]}.dcm")
