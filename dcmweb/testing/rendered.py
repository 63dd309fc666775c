"""WADO-RS rendered instances and frames: 8-bit JPEG (the default) or PNG.

Query parameters as Google takes them: `viewport=W,H` (the image is scaled to fit,
keeping its aspect ratio, at most 10,000 px a side), `window=center,width[,linear|
linear-exact|sigmoid]` (default: the instance's first VOI window, else its range),
`quality=1..100` for JPEG. Needs numpy and Pillow (the `testserver` extra): without
them the answer is 501 naming the extra.
"""

from __future__ import annotations

from . import dicomjson, pixels
from .frames import instance_row, pixel_work
from .handler import Handler, Request
from .multipart import choose

MAX_VIEWPORT = 10_000
_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


class BadParameter(ValueError):
    pass


def handle_rendered(
    h: Handler, req: Request, study: str, series: str, sop: str, frame: str | None = None
) -> None:
    row = instance_row(h, study, series, sop)
    if row is None:
        return
    chosen = choose(h.headers.get("Accept"), ["image/jpeg", "image/png"])
    if chosen is None:
        h.send_error_json(406, "rendered images are image/jpeg or image/png")
        return
    try:
        options = parse_options(chosen[0], req.query)
        number = _frame_number(frame)
    except BadParameter as exc:
        h.send_error_json(400, str(exc))
        return
    ds = dicomjson.read(h.app.store.file_path(row))
    image = pixel_work(h, lambda: pixels.render(ds, number, options))
    if image is not None:
        h.send_bytes(200, image, options.media)


def _frame_number(frame: str | None) -> int:
    if frame is None:
        return 1
    if not frame.isdigit():
        raise BadParameter(f"invalid frame number {frame!r}: rendered takes one frame")
    return int(frame)


def parse_options(media: str, query: list[tuple[str, str]]) -> pixels.RenderOptions:
    options = pixels.RenderOptions(media)
    for key, value in query:
        if key == "viewport":
            options.viewport = _viewport(value)
        elif key == "window":
            options.window = _window(value)
        elif key == "quality":
            if not value.isdigit() or not 1 <= int(value) <= 100:
                raise BadParameter(f"invalid quality {value!r}: use 1 to 100")
            options.quality = int(value)
        else:
            raise BadParameter(f"unknown query parameter {key!r}")
    return options


def _viewport(value: str) -> tuple[int, int]:
    pieces = value.split(",")
    if len(pieces) != 2 or not all(p.isdigit() and 0 < int(p) <= MAX_VIEWPORT for p in pieces):
        raise BadParameter(f"invalid viewport {value!r}: use W,H up to {MAX_VIEWPORT}")
    return int(pieces[0]), int(pieces[1])


def _window(value: str) -> tuple[float, float, str]:
    pieces = value.split(",")
    function = pieces[2].strip().upper().replace("-", "_") if len(pieces) == 3 else "LINEAR"
    try:
        if len(pieces) not in (2, 3) or function not in _FUNCTIONS:
            raise ValueError
        center, width = float(pieces[0]), float(pieces[1])
    except ValueError:
        raise BadParameter(
            f"invalid window {value!r}: use center,width[,linear|linear-exact|sigmoid]"
        ) from None
    if width <= 0:
        raise BadParameter(f"invalid window {value!r}: the width must be positive")
    return center, width, function
