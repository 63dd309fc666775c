"""WADO-RS: retrieve studies, series and instances, as stored or as Explicit VR LE.

Stored bytes are streamed from disk in 64 KiB chunks. Like Google, a request without
`transfer-syntax=*` (no Accept header and `*/*` included) gets Explicit VR Little
Endian: files already in it are sent as-is, uncompressed ones are converted with
pydicom, compressed ones are decoded with pydicom's pixel handlers (numpy, from the
`testserver` extra). What cannot be decoded here, and any other target syntax, gets
406 before the answer starts.
"""

from __future__ import annotations

import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from . import pixels
from .handler import Handler
from .multipart import CHUNK, split_media_ranges

EXPLICIT_LE = "1.2.840.10008.1.2.1"
# Uncompressed syntaxes pydicom can rewrite as Explicit VR LE without codecs.
CONVERTIBLE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
_BIG_ENDIAN = "1.2.840.10008.1.2.2"


class NotAcceptable(ValueError):
    pass


@dataclass
class Wanted:
    multipart: bool
    transfer_syntax: str | None  # None: as stored ("*")


def negotiate(accept: str | None, instance_level: bool) -> Wanted:
    """Pick the answer form from the Accept header; raise NotAcceptable.

    No Accept header, or `*/*` (curl's and requests' default), gets Google's default:
    multipart, transcoded to Explicit VR LE unless `transfer-syntax=*` is asked for.
    """
    for media, params in split_media_ranges(accept) or [("*/*", {})]:
        ts = params.get("transfer-syntax")
        target = None if ts == "*" else (ts or EXPLICIT_LE)
        if media == "*/*":
            return Wanted(True, target)
        if media == "multipart/related":
            if params.get("type", "application/dicom").lower() == "application/dicom":
                return Wanted(True, target)
        elif media == "application/dicom" and instance_level:
            return Wanted(False, target)
    if instance_level:
        raise NotAcceptable(
            'use Accept: multipart/related; type="application/dicom" or application/dicom'
        )
    raise NotAcceptable('use Accept: multipart/related; type="application/dicom"')


def handle_wado(h: Handler, study: str, series: str | None = None, sop: str | None = None) -> None:
    rows = h.app.store.instances(study, series, sop)
    if not rows:
        what = "instance" if sop else "series" if series else "study"
        h.send_error_json(404, f"{what} not found: {sop or series or study}")
        return
    try:
        wanted = negotiate(h.headers.get("Accept"), instance_level=sop is not None)
    except NotAcceptable as exc:
        h.send_error_json(406, str(exc))
        return
    if wanted.transfer_syntax is not None:
        for stored in sorted({row["transfer_syntax_uid"] for row in rows}):
            problem = transcoding_problem(stored, wanted.transfer_syntax)
            if problem:
                h.send_error_json(406, problem)
                return
    try:
        # Every instance to convert is converted before the answer starts: one that cannot
        # be decoded (12-bit JPEG without a codec) is a 406, not a cut stream or a 500.
        converted = {
            index: _instance_bytes(h.app.store.file_path(row), row, wanted.transfer_syntax)
            for index, row in enumerate(rows)
            if wanted.transfer_syntax not in (None, row["transfer_syntax_uid"])
        }
    except pixels.CannotDecode as exc:
        h.send_error_json(406, f"{exc}; ask for transfer-syntax=* to get the stored bytes")
        return
    if wanted.multipart:
        boundary = uuid.uuid4().hex
        h.send_stream(
            200,
            f'multipart/related; type="application/dicom"; boundary={boundary}',
            _multipart_chunks(h, rows, wanted.transfer_syntax, boundary, converted),
        )
        return
    row = rows[0]
    data = converted[0] if converted else _instance_bytes(
        h.app.store.file_path(row), row, wanted.transfer_syntax
    )
    if data is None:
        h.send_error_json(404, f"instance not found: {sop}")
        return
    size, chunks, ts = data
    h.send_sized(200, f"application/dicom; transfer-syntax={ts}", size, chunks)


# An instance as it will be sent: size, chunks, transfer syntax.
_Part = tuple[int, Iterator[bytes], str]


def _instance_bytes(path: Path, row: sqlite3.Row, target: str | None) -> _Part | None:
    """Size, chunk iterator and transfer syntax of one instance as it will be sent."""
    stored = row["transfer_syntax_uid"]
    if target is None or target == stored:
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            return None  # deleted since the index was read
        return row["size"], _file_chunks(fh), stored
    try:
        if stored in CONVERTIBLE:
            data = transcode_to_explicit_le(path, stored)
        else:
            data = pixels.decode_instance(path)
    except FileNotFoundError:
        return None
    # Kept until sent, on disk past 1 MiB: a study's decoded instances need not fit in memory.
    spool = tempfile.SpooledTemporaryFile(max_size=16 * CHUNK)  # noqa: SIM115 - closed when sent
    spool.write(data)
    spool.seek(0)
    return len(data), _file_chunks(spool), EXPLICIT_LE


def transcoding_problem(stored: str, target: str) -> str | None:
    """Why instances stored in `stored` cannot be sent as `target`; None when they can."""
    if stored == target or (target == EXPLICIT_LE and stored in CONVERTIBLE):
        return None
    if target != EXPLICIT_LE:
        return (
            f"transcoding from {stored} to {target} is not supported by this test server;"
            f" ask for {EXPLICIT_LE} or transfer-syntax=*"
        )
    return pixels.decoding_problem(stored)


def _file_chunks(fh: IO[bytes]) -> Iterator[bytes]:
    with fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def _multipart_chunks(
    h: Handler, rows: list[sqlite3.Row], target: str | None, boundary: str,
    converted: dict[int, _Part | None],
) -> Iterator[bytes]:
    for index, row in enumerate(rows):
        if index in converted:
            data = converted[index]
        else:  # sent as stored: opened one at a time
            data = _instance_bytes(h.app.store.file_path(row), row, target)
        if data is None:
            continue
        _, chunks, ts = data
        yield (
            f"--{boundary}\r\nContent-Type: application/dicom; transfer-syntax={ts}\r\n\r\n"
        ).encode()
        yield from chunks
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def transcode_to_explicit_le(path: Path, stored: str) -> bytes:
    """Rewrite an uncompressed instance as Explicit VR Little Endian (in memory)."""
    from pydicom import dcmread

    ds = dcmread(path)
    if stored == _BIG_ENDIAN:
        # pydicom keeps OW/OF/OL/OD/OV values as raw bytes: swap them by hand.
        widths = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
        for elem in ds.iterall():
            width = widths.get(elem.VR)
            if width and isinstance(elem.value, bytes):
                elem.value = _swap(elem.value, width)
    return pixels.write_explicit_le(ds)


def _swap(data: bytes, width: int) -> bytes:
    out = bytearray(len(data))
    usable = len(data) - len(data) % width
    for i in range(width):
        out[i:usable:width] = data[width - 1 - i : usable : width]
    out[usable:] = data[usable:]
    return bytes(out)
