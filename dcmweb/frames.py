"""WADO-RS frames: ``.../instances/I/frames/1,3,5``, one file (or bytes) per frame.

The default asks for the stored pixel bytes, multipart as Orthanc requires:
``multipart/related; type="application/octet-stream"; transfer-syntax=*`` (0.1 asked for
``application/dicom``, which Orthanc refuses with 400). The parts come in the order the
frames were asked for; a count that differs is a failure, never a guess.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from .errors import NameTaken, ServerError, UsageError, quoted
from .http import Http
from .multipart import Chunk, parse_content_type
from .output import plural
from .retrieve import Named, RetrieveResult, accept_header, refuse_both
from .saving import Saver
from .valuelength import length_check
from .wado import answer_parts, asking_again, get, instance_file, wants_transcoding
from .wadopath import WadoPath, parse_wado_path

DEFAULT_TYPE = "application/octet-stream; transfer-syntax=*"


def frame_type(part_type: str | None, transfer_syntax: str | None) -> str:
    """The part type asked for, else octet-stream in ``transfer_syntax`` (default *)."""
    refuse_both(part_type, transfer_syntax)
    if transfer_syntax:
        return f"application/octet-stream; transfer-syntax={transfer_syntax}"
    return part_type or DEFAULT_TYPE


def frames_target(path: str) -> WadoPath:
    target = parse_wado_path(path)
    if target.kind != "frames":
        raise UsageError(f"invalid frames path {quoted(path)}",
                         "studies/S/series/R/instances/I/frames/1,3,5")
    return target


def iter_frames(http: Http, base_url: str, target: WadoPath, part_type: str
                ) -> Iterator[tuple[int, str, Iterator[Chunk]]]:
    """(frame number, part type, chunks) for each frame asked for, in order; a part
    count that differs raises at the end (more parts: at the first one too many)."""
    url_path = target.url_path()
    what = f"retrieve {url_path}"
    response = get(http, f"{base_url}/{url_path}", what, accept_header(part_type),
                   transcoding=wants_transcoding(part_type))
    asked, _ = parse_content_type(part_type)
    # One frame in one body ended by the connection's close: its length must be confirmed.
    confirm = length_check(http, base_url, target.resource, None,
                           f"frame {target.frames[0]}") if len(target.frames) == 1 else None
    with response:
        count = 0
        for count, (mime, chunks) in enumerate(answer_parts(response, what, asked, confirm),
                                               start=1):
            if count > len(target.frames):
                raise ServerError(f"{what}: the server sent more parts than the "
                                  f"{len(target.frames)} frames asked for")
            yield target.frames[count - 1], mime, chunks
        if count < len(target.frames):
            raise ServerError(f"{what}: the server sent {plural(count, 'part')} for "
                              f"{len(target.frames)} frames")


def frames_bytes(http: Http, base_url: str, path: str, part_type: str | None = None,
                 transfer_syntax: str | None = None) -> dict[int, bytes]:
    """Frame number -> its bytes, in memory."""
    kind = frame_type(part_type, transfer_syntax)
    target = frames_target(path)
    return asking_again(f"retrieve {target.url_path()}", lambda: {
        number: b"".join(chunks) for number, _, chunks in iter_frames(http, base_url, target,
                                                                      kind)})


def save_frames(http: Http, base_url: str, path: str, output: Path,
                part_type: str | None = None, transfer_syntax: str | None = None,
                saver: Saver | None = None, named: Named | None = None
                ) -> Iterator[RetrieveResult]:
    """Write OUTPUT/STUDY/SERIES/SOP_frame_N.raw (or .jpg, ... by the part's type).

    The parts are written to temporary files and named only once the whole answer has
    come with one part per frame asked for: a part is never named after a guess.
    ``named`` is told of each file as it gets its name (a run stopped meanwhile
    reports it)."""
    target = frames_target(path)
    kind = frame_type(part_type, transfer_syntax)
    fallback, _ = parse_content_type(kind)
    saver = saver or Saver()

    def attempt() -> list[RetrieveResult]:
        staged: list[tuple[str, RetrieveResult]] = []
        try:
            for number, mime, chunks in iter_frames(http, base_url, target, kind):
                final = instance_file(output, target.resource, f"_frame_{number}",
                                      mime or fallback)
                temp, size = saver.stage(chunks, final.parent)
                staged.append((temp, RetrieveResult(
                    "saved", f"{target.resource.url_path()}/frames/{number}", final, size)))
            results = []
            for temp, result in staged:
                assert result.path is not None
                try:
                    saver.finish(temp, result.path,
                                 then=None if named is None else partial(named, result))
                except NameTaken as taken:  # a folder in its way: that frame fails alone
                    saver.abandon(temp)
                    result = RetrieveResult("failed", result.source, message=taken.headline)
                results.append(result)
        except BaseException:
            for temp, _ in staged:
                saver.abandon(temp)  # a frame already named keeps its name (a rename failed)
            raise
        return results

    yield from asking_again(f"retrieve {target.url_path()}", attempt)
