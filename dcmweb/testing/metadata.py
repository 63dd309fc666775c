"""WADO-RS metadata of a study, series or instance, as DICOM JSON or PS3.19 XML.

The JSON of each instance is built once and cached next to the index (keyed by the
file's SHA-256) with a placeholder for the base URL, so the metadata of a large study
is streamed from small cached files instead of re-reading every instance.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import dicomjson
from .handler import Handler
from .multipart import choose
from .responses import dataset_to_xml
from .storage import Store

JSON = "application/dicom+json"
XML_PARTS = "multipart/related; type=application/dicom+xml"
_BASE_MARK = "urn:dcmweb-testserver:base"


def handle_metadata(
    h: Handler, study: str, series: str | None = None, sop: str | None = None
) -> None:
    rows = h.app.store.instances(study, series, sop)
    if not rows:
        what = "instance" if sop else "series" if series else "study"
        h.send_error_json(404, f"{what} not found: {sop or series or study}")
        return
    chosen = choose(h.headers.get("Accept"), [JSON, "application/json", XML_PARTS])
    if chosen is None:
        h.send_error_json(
            406, f'metadata is {JSON} or multipart/related; type="application/dicom+xml"'
        )
        return
    base = h.external_base().encode()
    if chosen[0] == XML_PARTS:
        boundary = uuid.uuid4().hex
        h.send_stream(
            200,
            f'multipart/related; type="application/dicom+xml"; boundary={boundary}',
            _xml_parts(h.app.store, rows, base, boundary),
        )
    else:
        h.send_stream(200, JSON, _json_array(h.app.store, rows, base))


def _json_array(store: Store, rows: list[sqlite3.Row], base: bytes) -> Iterator[bytes]:
    yield b"["
    for number, row in enumerate(rows):
        yield (b"," if number else b"") + instance_json(store, row).replace(
            _BASE_MARK.encode(), base
        )
    yield b"]"


def _xml_parts(
    store: Store, rows: list[sqlite3.Row], base: bytes, boundary: str
) -> Iterator[bytes]:
    for row in rows:
        obj = json.loads(instance_json(store, row).replace(_BASE_MARK.encode(), base))
        yield (
            f"--{boundary}\r\nContent-Type: application/dicom+xml; charset=utf-8\r\n\r\n"
        ).encode()
        yield dataset_to_xml(obj, _keyword)
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def _keyword(tag: str) -> str | None:
    from pydicom.datadict import keyword_for_tag

    return keyword_for_tag(int(tag, 16)) or None


def instance_json(store: Store, row: sqlite3.Row) -> bytes:
    """One instance's DICOM JSON, with the base URL left as a placeholder."""
    cache = store.data_dir / "metadata" / f"{row['sha256']}.json"
    try:
        return cache.read_bytes()
    except FileNotFoundError:
        pass
    url = (
        f"{_BASE_MARK}/studies/{row['study_uid']}/series/{row['series_uid']}"
        f"/instances/{row['sop_uid']}"
    )
    data = json.dumps(
        dicomjson.metadata(dicomjson.read(store.file_path(row)), url), separators=(",", ":")
    ).encode()
    _write_atomically(cache, data)
    return data


def instance_attributes(store: Store, row: sqlite3.Row) -> dict[str, Any]:
    """The instance's DICOM JSON object (BulkDataURIs still hold the placeholder)."""
    obj: dict[str, Any] = json.loads(instance_json(store, row))
    return obj


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(exist_ok=True)
    temp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)
