"""Stored instances as DICOM JSON metadata, and the bulk values their BulkDataURIs name.

Pixel data and binary values longer than BULK_THRESHOLD bytes are not inlined: they
become a BulkDataURI `{instance URL}/bulkdata/{tag path}`, the tag path being the
element's tag, preceded inside sequences by `{sequence tag}/{item index from 0}`
(e.g. `7FE00010`, `00540016/0/00181072`). Metadata is built without reading the large
values (pydicom defers them), so a study's metadata costs little more than its headers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

BULK_THRESHOLD = 1024
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF
_PATH = re.compile(r"[0-9A-Fa-f]{8}(/[0-9]+/[0-9A-Fa-f]{8})*")


class BulkNotFound(LookupError):
    """The tag path names no bulk value of the instance."""


def read(path: Path) -> Dataset:
    """The instance, with values longer than the bulk threshold left on disk."""
    from pydicom import dcmread

    return dcmread(path, defer_size=BULK_THRESHOLD)


def metadata(ds: Dataset, instance_url: str) -> dict[str, Any]:
    """DICOM JSON of every attribute outside the file meta group."""
    return _dataset(ds, f"{instance_url}/bulkdata/", "")


def text_element(vr: str, text: str) -> dict[str, Any]:
    """A value kept as DICOM text (values joined by '\\', a person name's groups by '=')
    as :func:`metadata` gives it: ``S\\T`` is two values, ``Yamada^Tarou=山田^太郎`` a name
    with an Alphabetic and an Ideographic group."""
    from pydicom.dataelem import DataElement

    return DataElement(0, vr, text).to_json_dict(None, bulk_data_threshold=1 << 62)


def _dataset(ds: Dataset, prefix: str, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag in ds.keys():  # noqa: SIM118 - iterating the Dataset would read deferred values
        key = f"{int(tag):08X}"
        raw = ds.get_item(tag)
        vr = _vr(ds, tag, raw)
        if _is_bulk(tag, vr, raw):
            out[key] = {"vr": vr, "BulkDataURI": f"{prefix}{path}{key}"}
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            items = [
                _dataset(item, prefix, f"{path}{key}/{index}/")
                for index, item in enumerate(elem.value)
            ]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
        else:
            out[key] = _element(elem)
    return out


def _element(elem: Any) -> dict[str, Any]:
    try:
        return dict(elem.to_json_dict(None, bulk_data_threshold=1 << 62))
    except (ValueError, TypeError, OverflowError):
        # A value its VR's JSON form cannot hold (IS "1A" in pydicom's badVR.dcm): the
        # file was accepted, so its answers must not fail; the text goes as JSON strings,
        # which CP 1861 allows for IS and DS (fo-dicom and dcm4che fall back likewise).
        from pydicom.multival import MultiValue

        values = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
        return {"vr": elem.VR,
                "Value": [None if value is None else str(value) for value in values]}


def _vr(ds: Dataset, tag: Any, raw: Any) -> str:
    from pydicom.datadict import dictionary_VR

    vr = getattr(raw, "VR", None)
    if not vr:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "UN"
    if " or " in vr:  # e.g. PixelData "OB or OW": OW when samples are wider than a byte
        vr = "OW" if int(ds.get("BitsAllocated", 8) or 8) > 8 and "OW" in vr else vr[:2]
    return str(vr)


def _is_bulk(tag: Any, vr: str, raw: Any) -> bool:
    if int(tag) == PIXEL_DATA:
        return True
    if vr not in BINARY_VRS:
        return False
    length = getattr(raw, "length", None)
    if length is None:  # already a DataElement: measure its value
        value = raw.value
        length = len(value) if isinstance(value, (bytes, bytearray)) else 0
    return bool(length == _UNDEFINED or length > BULK_THRESHOLD)


def bulk_value(ds: Dataset, tag_path: str) -> tuple[str, bytes]:
    """(VR, value bytes as stored) of the element a bulkdata tag path names."""
    if not _PATH.fullmatch(tag_path):
        raise BulkNotFound(f"invalid bulkdata path {tag_path!r}")
    pieces = tag_path.split("/")
    current = ds
    for seq_tag, index in zip(pieces[:-1:2], pieces[1::2], strict=True):
        elem = current.get(int(seq_tag, 16))
        if elem is None or elem.VR != "SQ" or int(index) >= len(elem.value):
            raise BulkNotFound(f"no item {index} in {seq_tag}")
        current = elem.value[int(index)]
    tag = int(pieces[-1], 16)
    if tag not in current:
        raise BulkNotFound(f"no element {pieces[-1]}")
    vr = _vr(ds, tag, current.get_item(tag))
    elem = current[tag]
    if vr not in BINARY_VRS and int(tag) != PIXEL_DATA:
        raise BulkNotFound(f"element {pieces[-1]} is not a binary value")
    value = elem.value
    return vr, bytes(value) if value is not None else b""
