"""Part-10 instances built from DICOM JSON metadata plus bulk data parts (STOW-RS).

Google's form: the first part is `application/dicom+json` (one object or an array);
each BulkDataURI in it names the Content-Location of another part. PixelData naming an
`image/jpeg` part (transfer syntax JPEG baseline unless the part says otherwise)
becomes encapsulated pixel data; the image attributes the metadata leaves out (Rows,
Columns, samples, bits, photometric interpretation) are read from the JPEG header.
Any other bulk part gives the element its bytes as they are.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMAGE_TYPES = {"image/jpeg": JPEG_BASELINE}
_PIXEL_DATA = "7FE00010"


class BuildError(ValueError):
    """The metadata or its bulk parts cannot make a valid instance."""


@dataclass
class BulkPart:
    media: str  # lowercased media type
    transfer_syntax: str | None
    data: bytes


def datasets(document: bytes) -> list[dict[str, Any]]:
    """The DICOM JSON objects of the metadata part."""
    try:
        parsed = json.loads(document)
    except ValueError as exc:
        raise BuildError(f"the metadata part is not JSON: {exc}") from None
    objects = parsed if isinstance(parsed, list) else [parsed]
    if not objects or not all(isinstance(o, dict) for o in objects):
        raise BuildError("the metadata part must be a DICOM JSON object or an array of them")
    return objects


def build(obj: dict[str, Any], parts: dict[str, BulkPart]) -> bytes:
    """One Part-10 instance (bytes) from a DICOM JSON object and the bulk parts."""
    try:
        return _build(obj, parts)
    except BuildError:
        raise
    except Exception as exc:  # values pydicom takes but cannot write (US 70000, Rows 24\2)
        raise BuildError(f"the metadata has a value that cannot be written: {exc}") from None


def _build(obj: dict[str, Any], parts: dict[str, BulkPart]) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID

    obj = {key.upper(): value for key, value in obj.items()}
    pixel = obj.pop(_PIXEL_DATA, None)

    def bulk(tag: str, vr: str, uri: str) -> bytes:
        return _part(parts, uri).data

    try:
        ds = Dataset.from_json(obj, bulk_data_uri_handler=bulk)
    except BuildError:
        raise
    except Exception as exc:  # pydicom raises many types for bad DICOM JSON
        raise BuildError(f"invalid DICOM JSON metadata: {exc}") from None
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not str(ds.get(keyword, "") or ""):
            raise BuildError(f"the metadata has no {keyword}")
    transfer_syntax = EXPLICIT_LE
    if pixel is not None:
        uri = pixel.get("BulkDataURI") if isinstance(pixel, dict) else None
        if not uri:
            raise BuildError("PixelData must be a BulkDataURI naming an image part")
        part = _part(parts, uri)
        if part.media not in _IMAGE_TYPES:
            raise BuildError(f"PixelData part {uri!r} is {part.media}, not image/jpeg")
        transfer_syntax = part.transfer_syntax or _IMAGE_TYPES[part.media]
        if transfer_syntax != JPEG_BASELINE:
            raise BuildError(f"image/jpeg transfer syntax {transfer_syntax} is not supported")
        _fill_image_attributes(ds, part.data)
        ds.PixelData = encapsulate([part.data])
        ds["PixelData"].VR = "OB"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _part(parts: dict[str, BulkPart], uri: str) -> BulkPart:
    if uri not in parts:
        raise BuildError(f"BulkDataURI {uri!r} names no part's Content-Location")
    return parts[uri]


def _fill_image_attributes(ds: Any, jpeg: bytes) -> None:
    rows, columns, samples, precision = jpeg_frame_header(jpeg)
    defaults: dict[str, Any] = {
        "Rows": rows,
        "Columns": columns,
        "SamplesPerPixel": samples,
        "BitsAllocated": 8,
        "BitsStored": precision,
        "HighBit": precision - 1,
        "PixelRepresentation": 0,
        "PhotometricInterpretation": "YBR_FULL_422" if samples == 3 else "MONOCHROME2",
    }
    if samples == 3:
        defaults["PlanarConfiguration"] = 0
    for keyword, value in defaults.items():
        if keyword not in ds:
            setattr(ds, keyword, value)
    if (int(ds.Rows), int(ds.Columns)) != (rows, columns):
        raise BuildError(
            f"Rows/Columns {ds.Rows}x{ds.Columns} differ from the JPEG's {rows}x{columns}"
        )


def jpeg_frame_header(data: bytes) -> tuple[int, int, int, int]:
    """(rows, columns, components, precision) from a JPEG's start-of-frame marker."""
    if not data.startswith(b"\xff\xd8"):
        raise BuildError("the image part is not a JPEG (no SOI marker)")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise BuildError("the JPEG is malformed (marker expected)")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in (0xC0, 0xC1):  # baseline or extended sequential
            segment = data[pos + 4 : pos + 2 + length]
            if len(segment) < 6:
                break
            precision = segment[0]
            rows = int.from_bytes(segment[1:3], "big")
            columns = int.from_bytes(segment[3:5], "big")
            return rows, columns, segment[5], precision
        if 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            raise BuildError("the JPEG is not baseline (progressive or lossless)")
        pos += 2 + length
    raise BuildError("the JPEG has no start-of-frame marker")
