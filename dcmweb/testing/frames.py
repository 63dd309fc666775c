"""WADO-RS frames and bulk data of one instance.

Frames come as multipart/related; type="application/octet-stream" (the default), one
part per asked-for frame in the asked-for order. With `transfer-syntax=*` each part
holds the frame as stored (an encapsulated frame, or a slice of native pixels);
otherwise, like Google, the frame is uncompressed little endian, decoded when the
instance is compressed. A JPEG baseline instance also answers
type="image/jpeg" with its stored frames. Bulk data answers the value bytes of the
element a BulkDataURI names.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Callable
from typing import TypeVar

from . import dicomjson, pixels
from .handler import Handler
from .multipart import choose

T = TypeVar("T")
OCTET = "application/octet-stream"
OCTET_PARTS = "multipart/related; type=application/octet-stream"
JPEG_PARTS = "multipart/related; type=image/jpeg"
_FRAME_LIST = re.compile(r"[1-9][0-9]*(,[1-9][0-9]*)*")


def instance_row(h: Handler, study: str, series: str, sop: str) -> sqlite3.Row | None:
    """The instance's index row; answers 404 and returns None when it is not stored."""
    rows = h.app.store.instances(study, series, sop)
    if not rows:
        h.send_error_json(404, f"instance not found: {sop}")
        return None
    return rows[0]


def handle_frames(h: Handler, study: str, series: str, sop: str, frame_list: str) -> None:
    row = instance_row(h, study, series, sop)
    if row is None:
        return
    if not _FRAME_LIST.fullmatch(frame_list):
        h.send_error_json(400, f"invalid frame list {frame_list!r}: use numbers like 1,3,5")
        return
    numbers = [int(n) for n in frame_list.split(",")]
    stored_ts = row["transfer_syntax_uid"]
    offers = [OCTET_PARTS, OCTET] if len(numbers) == 1 else [OCTET_PARTS]
    if stored_ts == pixels.JPEG_BASELINE:
        offers.append(JPEG_PARTS)
    chosen = choose(h.headers.get("Accept"), offers)
    if chosen is None:
        h.send_error_json(
            406,
            'frames are multipart/related; type="application/octet-stream"'
            + ('; or type="image/jpeg"' if stored_ts == pixels.JPEG_BASELINE else ""),
        )
        return
    offer, params = chosen
    asked_ts = params.get("transfer-syntax")
    as_stored = offer == JPEG_PARTS or asked_ts == "*" or asked_ts == stored_ts
    if not as_stored and asked_ts not in (None, pixels.EXPLICIT_LE):
        h.send_error_json(
            406, f"frames can be sent as stored ({stored_ts}) or as {pixels.EXPLICIT_LE}"
        )
        return
    ds = dicomjson.read(h.app.store.file_path(row))
    pick = pixels.stored_frames if as_stored else pixels.decoded_frames
    frames = pixel_work(h, lambda: pick(ds, numbers))
    if frames is None:
        return
    sent_ts = stored_ts if as_stored else pixels.EXPLICIT_LE
    media = "image/jpeg" if offer == JPEG_PARTS else OCTET
    part_type = f"{media}; transfer-syntax={sent_ts}"
    if offer == OCTET:
        h.send_bytes(200, frames[0], part_type)
        return
    send_parts(h, media, part_type, frames)


def pixel_work(h: Handler, work: Callable[[], T]) -> T | None:
    """Run decoding work; on failure answer it (404 no such frame, 501 without the
    extra, 406 undecodable) and return None."""
    try:
        return work()
    except pixels.NoSuchFrame as exc:
        h.send_error_json(404, str(exc))
    except pixels.Unavailable as exc:
        h.send_error_json(501, str(exc))
    except pixels.CannotDecode as exc:
        h.send_error_json(406, str(exc))
    return None


def send_parts(h: Handler, media: str, part_type: str, bodies: list[bytes]) -> None:
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for body in bodies:
        chunks += [f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode(), body, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    content_type = f'multipart/related; type="{media}"; boundary={boundary}'
    h.send_sized(200, content_type, sum(map(len, chunks)), chunks)


def handle_bulkdata(h: Handler, study: str, series: str, sop: str, tag_path: str) -> None:
    row = instance_row(h, study, series, sop)
    if row is None:
        return
    chosen = choose(h.headers.get("Accept"), [OCTET_PARTS, OCTET])
    if chosen is None:
        h.send_error_json(406, 'bulk data is multipart/related; type="application/octet-stream"')
        return
    try:
        _, value = dicomjson.bulk_value(dicomjson.read(h.app.store.file_path(row)), tag_path)
    except dicomjson.BulkNotFound as exc:
        h.send_error_json(404, f"bulk data not found: {exc}")
        return
    if chosen[0] == OCTET:
        h.send_bytes(200, value, OCTET)
    else:
        send_parts(h, OCTET, OCTET, [value])
