"""What confirms a frame or a bulk value that came as one body ended only by the
connection's close (no Content-Length, no chunked coding, no multipart boundary): a cut
there looks like a normal end, so the body is kept only when its length is the one the
instance's metadata gives. The metadata is asked for only then.

The metadata gives the length of uncompressed pixel data: a frame is Rows x Columns x
SamplesPerPixel x BitsAllocated bits, the Pixel Data value NumberOfFrames of them (padded
to an even length). A compressed frame, or any other value, cannot be confirmed that way
and is refused as a cut would be.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .errors import NotFoundError, ServerError
from .http import Http
from .metadata import fetch_metadata
from .paths import ResourcePath
from .rows import value
from .wado import CutOffError

PIXEL_DATA = "7FE00010"
# Rows, Columns, SamplesPerPixel, BitsAllocated; NumberOfFrames.
_FRAME_SHAPE = ("00280010", "00280011", "00280002", "00280100")
_NUMBER_OF_FRAMES = "00280008"


def _count(row: Mapping[str, Any], tag: str, default: int | None = None) -> int | None:
    """A positive whole number the row holds (IS values may come as text), else None."""
    found = value(row, tag, default)
    try:
        number = int(found)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def value_lengths(row: Mapping[str, Any], tag: str | None) -> set[int]:
    """The lengths the instance's uncompressed frame (``tag`` None) or the value of
    ``tag`` may have; empty when its metadata does not say (compressed data, other tags)."""
    found = (_count(row, key, 1 if key == "00280002" else None) for key in _FRAME_SHAPE)
    sizes = [size for size in found if size is not None]
    frames = _count(row, _NUMBER_OF_FRAMES, 1)
    if len(sizes) < len(_FRAME_SHAPE) or frames is None:
        return set()
    bits = math.prod(sizes)
    if tag is None:
        return {-(-bits // 8)}
    if tag.upper() != PIXEL_DATA:
        return set()
    whole = -(-bits * frames // 8)
    return {whole, whole + whole % 2}


def length_check(http: Http, base_url: str, resource: ResourcePath, tag: str | None,
                 thing: str) -> Callable[[int], None]:
    """``confirm_end`` for wado.answer_parts: a CutOffError unless the instance's metadata
    gives the received length for ``thing`` (its frame, or its value ``tag``)."""
    def confirm(received: int) -> None:
        lengths = _lengths(http, base_url, resource, tag)
        if received in lengths:
            return
        if lengths:
            raise CutOffError(f"the connection closed after {received} bytes; the instance's "
                              f"metadata gives {min(lengths)} bytes for the {thing}")
        raise CutOffError(f"the connection closed after {received} bytes, and nothing "
                          f"confirms that this is the whole {thing} (no Content-Length, and "
                          "the instance's metadata gives no length for it)")
    return confirm


def _lengths(http: Http, base_url: str, resource: ResourcePath, tag: str | None) -> set[int]:
    if resource.instance is None:
        return set()
    try:
        rows = fetch_metadata(http, base_url, resource.url_path()).rows
    except (NotFoundError, ServerError):
        return set()  # no metadata to confirm with: refused as unconfirmed
    return value_lengths(rows[0], tag) if len(rows) == 1 else set()
