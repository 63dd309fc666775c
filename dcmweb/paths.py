"""DICOMweb resource paths: parse what the user typed, validate what servers send."""

from __future__ import annotations

import re

from .errors import UsageError, quoted
from .record import record

# Real UIDs are digits and dots; a little more is tolerated from servers, but never
# anything that could climb out of, or into another part of, a folder. The character
# set already excludes what Windows and macOS refuse in names (<>:"/\|?*, control
# characters); a trailing dot is dropped by Windows, so it is refused too.
_SAFE_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}(?<!\.)")
# Device names Windows reserves whatever the extension: NUL.dcm is the null device.
_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL"}
                      | {f"{name}{n}" for name in ("COM", "LPT") for n in range(10)})


def safe_uid(value: object) -> str | None:
    """The UID if it can safely be a file or folder name on any system, else None."""
    if not isinstance(value, str) or not _SAFE_UID.fullmatch(value) or ".." in value:
        return None
    if value.split(".", 1)[0].upper() in _RESERVED:
        return None
    return value


@record(frozen=True)
class ResourcePath:
    """studies/S[/series/R[/instances/I[/frames/F]]], or the whole store."""

    study: str | None = None
    series: str | None = None
    instance: str | None = None
    frames: str | None = None

    @property
    def level(self) -> str:
        for name, value in (("frames", self.frames), ("instance", self.instance),
                            ("series", self.series), ("study", self.study)):
            if value:
                return name
        return "store"

    def url_path(self) -> str:
        parts: list[str] = []
        for name, value in (("studies", self.study), ("series", self.series),
                            ("instances", self.instance), ("frames", self.frames)):
            if value:
                parts += [name, value]
        return "/".join(parts)


RESOURCE_SHAPE = "studies/UID[/series/UID[/instances/UID]]"
FRAMES_SHAPE = "studies/UID[/series/UID[/instances/UID[/frames/N]]]"


def _words(path: str) -> list[str]:
    return [word for word in path.strip().split("/") if word]


def parse_resource_path(path: str | None, *, allow_frames: bool = False) -> ResourcePath:
    """Parse a retrieve or delete path; raise UsageError with the expected shape."""
    words = _words(path or "")
    names = ["studies", "series", "instances"] + (["frames"] if allow_frames else [])

    def valid(index: int, word: str) -> bool:
        if index // 2 >= len(names):
            return False
        name = names[index // 2]
        if index % 2 == 0:
            return word == name
        if name == "frames":
            return re.fullmatch(r"[0-9]+(,[0-9]+)*", word) is not None
        return safe_uid(word) is not None

    if len(words) % 2 == 0 and all(valid(i, word) for i, word in enumerate(words)):
        return ResourcePath(*words[1::2])
    shape = FRAMES_SHAPE if allow_frames else RESOURCE_SHAPE
    raise UsageError(f"invalid path {quoted(path)}", f"expected {shape}")


SEARCH_LEVELS = ("studies", "series", "instances")


def parse_search_path(path: str | None) -> tuple[str, str]:
    """Return (url path, level searched) for a QIDO path."""
    words = _words(path or "studies")
    level = words[-1] if words else ""
    scope = words[:-1]
    valid_scope = (
        (not scope and level in SEARCH_LEVELS)
        or (len(scope) == 2 and scope[0] == "studies" and level in ("series", "instances"))
        or (len(scope) == 4 and scope[0] == "studies" and scope[2] == "series"
            and level == "instances")
    )
    if not valid_scope or any(safe_uid(uid) is None for uid in scope[1::2]):
        raise UsageError(
            f"invalid search path {quoted(path)}",
            "expected studies, series, instances, studies/UID/series, studies/UID/instances "
            "or studies/UID/series/UID/instances",
        )
    return "/".join(words), level
