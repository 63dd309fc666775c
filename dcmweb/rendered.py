"""WADO-RS rendered images: an instance or a frame as PNG, JPEG or GIF.

``studies/S/rendered`` and ``studies/S/series/R/rendered`` render every instance of the
study or series, one request each (in parallel with -m): Google's API renders only
instances and frames. A list of frames is rendered frame by frame. An answer is kept
only if it starts like the image type asked for (a 200 may be a login page) and, when
neither a Content-Length nor chunked coding frames it, ends like one: a connection closed
mid-image looks like a normal end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from urllib.parse import urlencode

from . import bounds
from .errors import NameTaken, NotFoundError, ServerError, UsageError, quoted
from .http import Http
from .leftover import Tally
from .multipart import parse_content_type
from .record import record
from .retrieve import Named, RetrieveResult, listed_items, run_items, unit_of
from .saving import Saver
from .search import FIRST_PAGE, Params, Searcher
from .served import served_on
from .unserved import ROWS, Streak
from .wado import CutOffError, asking_again, framed, get, instance_file, item_message
from .wadopath import WadoPath, parse_wado_path

TYPES = {"jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png", "gif": "image/gif"}
FORMATS = ("jpeg", "png", "gif")
_MAGIC = {"image/jpeg": b"\xff\xd8", "image/png": b"\x89PNG\r\n\x1a\n", "image/gif": b"GIF8"}
# How a whole image ends: JPEG's EOI marker, PNG's IEND chunk (type and CRC), GIF's trailer.
_END = {"image/jpeg": b"\xff\xd9", "image/png": b"IEND\xaeB`\x82", "image/gif": b";"}
_WINDOW_FUNCTIONS = ("linear", "linear-exact", "sigmoid")
MAX_VIEWPORT = 10000  # Google's limit


@record(frozen=True)
class RenderOptions:
    format: str = "jpeg"  # jpeg, png or gif
    viewport: str | None = None  # "W,H"
    window: str | None = None  # "C,W" or "C,W,FUNCTION"
    quality: int | None = None  # 1-100 (JPEG)

    def accept(self) -> str:
        if not isinstance(self.format, str) or self.format not in TYPES:
            raise UsageError(f"invalid rendered format {self.format!r}", "png, jpeg or gif")
        return TYPES[self.format]

    def query(self) -> str:
        """The query string, checked: a typo becomes a usage error, not a server 400."""
        params = []
        if self.viewport is not None:
            sizes = self.viewport.split(",") if isinstance(self.viewport, str) else []
            if len(sizes) != 2 or not all(s.isdigit() and 0 < int(s) <= MAX_VIEWPORT
                                          for s in sizes):
                raise UsageError(f"invalid viewport {self.viewport!r}",
                                 f"write WIDTH,HEIGHT in pixels, each 1-{MAX_VIEWPORT}")
            params.append(("viewport", self.viewport))
        if self.window is not None:
            parts = self.window.split(",") if isinstance(self.window, str) else []
            number = r"-?[0-9]+(\.[0-9]+)?"
            if len(parts) not in (2, 3) or not all(re.fullmatch(number, p) for p in parts[:2]) \
                    or (len(parts) == 3 and parts[2] not in _WINDOW_FUNCTIONS):
                raise UsageError(f"invalid window {self.window!r}",
                                 "write CENTER,WIDTH[,linear|linear-exact|sigmoid]")
            if float(parts[1]) <= 0:  # the local server answers 400, Orthanc renders it
                raise UsageError(f"invalid window {self.window!r}: the width must be positive")
            params.append(("window", self.window if len(parts) == 3 else self.window + ",linear"))
        if self.quality is not None:
            params.append(("quality", str(bounds.QUALITY.check("quality", self.quality))))
        return urlencode(params, safe=",")


def _targets(http: Http, base_url: str, target: WadoPath, streak: Streak | None = None
             ) -> Iterator[WadoPath | RetrieveResult]:
    """One rendered request per instance or frame; a study or series with no instance
    under it is not found, as its retrieve is. A listed instance whose UIDs cannot name a
    file, or a listing that breaks after some rows, is one failed item: the others are
    still rendered. The listing asks for Rows and hands its rows to ``streak``: which
    instances are images."""
    resource = target.resource
    if resource.level == "instance":
        if not target.frames:
            yield target
        for number in target.frames:
            yield WadoPath(resource, "rendered", (number,))
        return
    from .preview import instance_paths

    searcher = Searcher(http, base_url)
    rows = partial(searcher.iter_rows, first_page=FIRST_PAGE)

    def search(path: str, params: Params) -> Iterator[dict]:
        if not path.endswith("instances"):  # tiny-pacs' walk lists studies and series too
            yield from rows(path, params)
            return
        for row in rows(path, [*params, ("includefield", ROWS)]):
            if streak is not None:
                streak.listed(row)
            yield row

    source = target.url_path()

    def failed(message: str) -> RetrieveResult:
        return RetrieveResult("failed", source, message=message)

    paths = (failed(item) if isinstance(item, str) else WadoPath(item, "rendered")
             for item in instance_paths(search, resource, "render",
                                        served=served_on(http, base_url)))
    yield from listed_items(paths, f"render {source}", failed, searcher)


def render(http: Http, base_url: str, target: WadoPath, options: RenderOptions) -> bytes:
    """One rendered instance or frame, in memory."""
    return asking_again(f"render {target.url_path()}",
                        lambda: b"".join(_fetch(http, base_url, target, options)))


def _fetch(http: Http, base_url: str, target: WadoPath, options: RenderOptions
           ) -> Iterator[bytes]:
    accept = options.accept()
    url_path = target.url_path()
    what = f"render {url_path}"
    query = options.query()
    response = get(http, f"{base_url}/{url_path}" + (f"?{query}" if query else ""), what,
                   accept)
    with response:
        chunks = response.iter_content(1024 * 1024)
        head = b""
        for chunk in chunks:
            head += chunk
            if len(head) >= 8:
                break
        if not head.startswith(_MAGIC[accept]):
            sent = response.headers.get("Content-Type", "nothing")
            if parse_content_type(sent)[0] != accept:
                raise ServerError(f"{what}: the server did not send {accept} (it sent {sent})")
            name = accept.split("/")[1].upper()
            raise ServerError(f"{what}: the server's {accept} answer does not start like a "
                              f"{name} image (its first bytes: {head[:8].hex(' ')})")
        yield head
        if framed(response):
            yield from chunks
        else:
            yield from _ending_whole(head, chunks, accept)


def _ending_whole(head: bytes, chunks: Iterator[bytes], mime: str) -> Iterator[bytes]:
    """The chunks after ``head``; a CutOffError after the last one unless the image ends
    as a whole ``mime`` image does (the caller then never names the file)."""
    end = _END[mime]
    tail = head[-len(end):]
    size = len(head)
    for chunk in chunks:
        size += len(chunk)
        tail = (tail + chunk[-len(end):])[-len(end):]
        yield chunk
    if tail != end:
        raise CutOffError(f"the connection closed after {size} bytes, before the end of "
                          f"the {mime} image")


def rendered_target(path: str) -> WadoPath:
    target = parse_wado_path(path if path.rstrip("/").endswith("/rendered")
                             else path.rstrip("/") + "/rendered")
    if target.kind != "rendered":
        raise UsageError(f"invalid rendered path {quoted(path)}",
                         "studies/S[/series/R[/instances/I[/frames/N]]]/rendered")
    return target


class Renderer:
    """Writes OUTPUT/STUDY/SERIES/SOP.png (or SOP_frame_N.jpg) per instance or frame; the
    options are checked when it is made (a bad one fails before the first request)."""

    def __init__(self, http: Http, base_url: str, output: Path, options: RenderOptions,
                 saver: Saver) -> None:
        self.http = http
        self.base_url = base_url
        self.output = output
        self.options = options
        self.mime = options.accept()
        options.query()
        self.saver = saver
        self._rendered = False  # an image of the run was rendered: the options are served

    def targets(self, target: WadoPath, streak: Streak | None = None
                ) -> Iterator[WadoPath | RetrieveResult]:
        return _targets(self.http, self.base_url, target, streak)

    def one(self, item: WadoPath | RetrieveResult, *, single: bool = False,
            streak: Streak | None = None, named: Named | None = None
            ) -> list[RetrieveResult]:
        """One instance or frame; ``single``: the run's only one, whose 404 is the
        run's (exit 4), not one item's; ``streak``: the 404s of the instances a listing
        named, a few of which in a row may say the server renders none; ``named`` is
        told of the file as it gets its name (a run stopped meanwhile reports it)."""
        if isinstance(item, RetrieveResult):
            return [item]
        if streak is not None:
            streak.before_next()
        suffix = f"_frame_{item.frames[0]}" if item.frames else ""
        final = instance_file(self.output, item.resource, suffix, self.mime)

        def told(size: int) -> None:
            if named is not None:
                named(RetrieveResult("saved", item.url_path(), final, size))

        try:
            size = asking_again(f"render {item.url_path()}", lambda: self.saver.save(
                _fetch(self.http, self.base_url, item, self.options), final, told))
        except NameTaken as taken:  # a folder where the image goes: it fails alone
            return [RetrieveResult("failed", item.url_path(), message=taken.headline)]
        except (NotFoundError, ServerError, UsageError) as error:
            # A 400 once an image was rendered with the same options is about this
            # instance (Orthanc's to an image it cannot decode: "Parameter out of
            # range"): it fails alone. Before any, the options may be what it refuses.
            if single or (isinstance(error, UsageError) and not (
                    error.status == 400 and self._rendered)):
                raise
            if streak is not None:
                streak.failed(error, item.resource.instance)
            # One instance of many (deleted since the listing, or answered badly).
            return [RetrieveResult("failed", item.url_path(), message=item_message(
                error, f"render {item.url_path()}"))]
        self._rendered = True
        if streak is not None:
            streak.saved()
        return [RetrieveResult("saved", item.url_path(), final, size)]


def save_rendered(http: Http, base_url: str, path: str, output: Path,
                  options: RenderOptions, workers: int = 1) -> Iterator[RetrieveResult]:
    """Write OUTPUT/STUDY/SERIES/SOP.png (or SOP_frame_N.jpg) per instance or frame."""
    target = rendered_target(path)
    renderer = Renderer(http, base_url, output, options, Saver())
    # One instance or frame asked for: its 404 is the run's (exit 4), not one item's.
    single = target.resource.level == "instance" and len(target.frames) <= 1
    listed = target.resource.level != "instance"
    streak = Streak(http, base_url, f"render {target.url_path()}") if listed else None
    targets = renderer.targets(target, streak)
    # An instance's images are no listing: a list, so that a run stopped by one of them
    # counts what is left, not "the rest of the listing" (as retrieve's targets).
    tally = Tally()
    yield from run_items(lambda item, named: renderer.one(item, single=single, streak=streak,
                                                          named=named),
                         tally.each(targets if listed else list(targets), unit_of), workers,
                         renderer.saver, tally)
