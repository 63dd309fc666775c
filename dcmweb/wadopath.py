"""WADO-RS paths beyond whole files: metadata, rendered images, frames and bulk data.

    studies/S[/series/R[/instances/I]]/metadata
    studies/S[/series/R[/instances/I]]/rendered     (study and series: each instance)
    studies/S/series/R/instances/I/frames/1,3,5[/rendered]
    studies/S/series/R/instances/I/bulkdata/PATH    (or a BulkDataURI, a full URL)
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from .errors import UsageError, quoted
from .paths import RESOURCE_SHAPE, ResourcePath, parse_resource_path
from .record import record

Kind = Literal["dicom", "metadata", "rendered", "frames", "bulkdata"]
MAX_FRAMES_LISTED = 10000  # a longer list is a typo (and an over-long URL)
_FRAME_LIST = re.compile(r"[1-9][0-9]*(,[1-9][0-9]*)*")
_BULK_PATH = re.compile(r"[A-Za-z0-9._~,=-]+(/[A-Za-z0-9._~,=-]+)*")
# Every path retrieve takes, for the message of one it cannot read.
SHAPES = (f"{RESOURCE_SHAPE}, optionally ending in /metadata or /rendered; an instance's "
          "/frames/N[/rendered] or /bulkdata/TAG")


@record(frozen=True)
class WadoPath:
    resource: ResourcePath  # the study, series or instance (never frames)
    kind: Kind = "dicom"
    frames: tuple[int, ...] = ()  # asked-for frame numbers, in the order asked
    bulk: str | None = None  # bulkdata/PATH (Orthanc: bulk/PATH), or a whole BulkDataURI

    def url_path(self) -> str:
        """The path below the DICOMweb base (not for a full BulkDataURI)."""
        base = self.resource.url_path()
        if self.kind == "metadata":
            return f"{base}/metadata"
        frames = f"/frames/{','.join(map(str, self.frames))}" if self.frames else ""
        if self.kind == "rendered":
            return f"{base}{frames}/rendered"
        if self.kind == "frames":
            return base + frames
        if self.kind == "bulkdata":
            return f"{base}/{self.bulk}"
        return base


def _frames(word: str, path: str) -> tuple[int, ...]:
    if not _FRAME_LIST.fullmatch(word):
        raise UsageError(f"invalid path {quoted(path)}",
                         "frames are numbered from 1: frames/1 or frames/1,3,5")
    numbers = tuple(int(n) for n in word.split(","))
    if len(numbers) > MAX_FRAMES_LISTED:
        raise UsageError(f"too many frames in one path ({len(numbers)})",
                         f"ask for at most {MAX_FRAMES_LISTED} frames at a time")
    # PS3.18 lists each frame once; twice would be two results for one file name.
    listed: set[int] = set()
    for number in numbers:
        if number in listed:
            raise UsageError(f"invalid path {quoted(path)}",
                             f"frame {number} is listed twice: give each frame number once")
        listed.add(number)
    return numbers


def _resource(words: list[str], path: str) -> ResourcePath:
    try:
        return parse_resource_path("/".join(words))
    except UsageError:
        raise UsageError(f"invalid path {quoted(path)}", f"expected {SHAPES}") from None


def _instance(words: list[str], path: str, what: str) -> ResourcePath:
    resource = _resource(words, path)
    if resource.level != "instance":
        raise UsageError(f"invalid path {quoted(path)}",
                         f"{what} belong to an instance: studies/S/series/R/instances/I/{what}")
    return resource


def parse_wado_path(path: str | None) -> WadoPath:
    """Split a retrieve path into the resource and what is asked of it; None is the whole
    store, a path that names nothing ('', ' ', '/') is refused."""
    text = (path or "").strip()
    if urlsplit(text).scheme in ("http", "https"):
        return WadoPath(ResourcePath(), "bulkdata", bulk=text)
    words = [word for word in text.split("/") if word]
    if path is not None and not words:  # a script's empty "$P": never the whole store
        raise UsageError(f"invalid path {quoted(path)}: it names no study",
                         "leave PATH out to retrieve the whole store")
    if "bulkdata" in words or "bulk" in words:  # "bulk" is Orthanc's spelling
        at = words.index("bulkdata" if "bulkdata" in words else "bulk")
        bulk = "/".join(words[at + 1:])
        if not _BULK_PATH.fullmatch(bulk) or ".." in bulk.split("/"):
            raise UsageError(f"invalid bulk data path {quoted(path)}",
                             "expected .../instances/I/bulkdata/TAG[/INDEX/TAG...]")
        return WadoPath(_instance(words[:at], text, "bulkdata"), "bulkdata",
                        bulk=f"{words[at]}/{bulk}")
    last = words[-1] if words else ""
    if last == "metadata":
        resource = _resource(words[:-1], text)
        if resource.level == "store":
            raise UsageError(f"invalid path {quoted(path)}",
                             "metadata of a study, series or instance")
        return WadoPath(resource, "metadata")
    if last == "rendered":
        words = words[:-1]
        if len(words) >= 2 and words[-2] == "frames":
            frames = _frames(words[-1], text)
            return WadoPath(_instance(words[:-2], text, "frames"), "rendered", frames)
        resource = _resource(words, text)
        if resource.level == "store":
            raise UsageError(f"invalid path {quoted(path)}", "render a study, series or instance")
        return WadoPath(resource, "rendered")
    if len(words) >= 2 and words[-2] == "frames":
        return WadoPath(_instance(words[:-2], text, "frames"), "frames",
                        _frames(words[-1], text))
    return WadoPath(_resource(words, text))
