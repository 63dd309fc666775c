"""Pixel data of stored instances: frames as stored or decoded, rendered images, and
whole-instance decoding for transcoding on retrieve.

Decoding uses pydicom's pixel handlers, which need numpy (and Pillow for JPEG); the
rendering needs Pillow too. Both come with the optional `testserver` extra; without
them the calls that need them raise Unavailable, answered as 501 with the hint.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
# Stored frames whose bytes are already little endian samples.
LITTLE_ENDIAN_NATIVE = {EXPLICIT_LE, IMPLICIT_LE}
EXTRA_HINT = "install the test server's extra: pip install 'dcmweb[testserver]'"


class Unavailable(RuntimeError):
    """numpy or Pillow is not installed."""


class CannotDecode(ValueError):
    """pydicom has no working handler for the stored pixel data."""


class NoSuchFrame(LookupError):
    pass


def frame_count(ds: Dataset) -> int:
    if "PixelData" not in ds:
        return 0
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _check(ds: Dataset, numbers: list[int]) -> None:
    total = frame_count(ds)
    for number in numbers:
        if not 1 <= number <= total:
            raise NoSuchFrame(f"frame {number} does not exist; the instance has {total}")


def stored_frames(ds: Dataset, numbers: list[int]) -> list[bytes]:
    """The frames' bytes as stored: encapsulated fragments or slices of native pixels."""
    from pydicom.encaps import generate_frames

    _check(ds, numbers)
    total = frame_count(ds)
    data = bytes(ds.PixelData)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        frames = list(generate_frames(data, number_of_frames=total))
        return [frames[n - 1] for n in numbers]
    bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
    bits *= int(ds.BitsAllocated)
    size = bits // 8
    if bits % 8:  # bit-packed frames are not byte aligned: slice by bits
        return [_bit_slice(data, (n - 1) * bits, bits) for n in numbers]
    return [data[(n - 1) * size : n * size] for n in numbers]


def _bit_slice(data: bytes, start: int, length: int) -> bytes:
    value = int.from_bytes(data, "little") >> start
    return (value & ((1 << length) - 1)).to_bytes((length + 7) // 8, "little")


def decoded_frames(ds: Dataset, numbers: list[int]) -> list[bytes]:
    """The frames as uncompressed little endian samples (color as RGB)."""
    _check(ds, numbers)
    if ds.file_meta.TransferSyntaxUID in LITTLE_ENDIAN_NATIVE:
        return stored_frames(ds, numbers)
    frames = []
    for number in numbers:
        arr = _array(ds, number - 1)
        frames.append(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
    return frames


def _array(ds: Dataset, index: int) -> Any:
    _need("numpy")
    from pydicom.pixels import pixel_array

    try:
        return pixel_array(ds, index=index)
    except Exception as exc:  # pydicom raises many types when no handler fits
        raise CannotDecode(
            f"cannot decode {ds.file_meta.TransferSyntaxUID.name} pixel data: {exc}"
        ) from exc


def _need(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise Unavailable(f"this needs {' and '.join(missing)}: {EXTRA_HINT}")


def decoding_problem(transfer_syntax: str) -> str | None:
    """Why pixel data in this transfer syntax cannot be decoded here; None if it can."""
    from pydicom.pixels import get_decoder

    try:
        _need("numpy")
        decoder = get_decoder(transfer_syntax)
    except Unavailable as exc:
        return f"cannot transcode from {transfer_syntax}: {exc}"
    except NotImplementedError:
        return f"cannot transcode from {transfer_syntax}: no decoder for it"
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        return f"cannot transcode from {transfer_syntax}: no decoder plugin ({missing})"
    return None


def decode_instance(path: Path) -> bytes:
    """A compressed instance rewritten as Explicit VR Little Endian (in memory)."""
    from pydicom import dcmread

    _need("numpy")
    ds = dcmread(path)
    try:
        ds.decompress(generate_instance_uid=False)  # the same instance, re-encoded
    except Exception as exc:
        raise CannotDecode(
            f"cannot decode {ds.file_meta.TransferSyntaxUID.name} pixel data: {exc}"
        ) from exc
    return write_explicit_le(ds)


def write_explicit_le(ds: Dataset) -> bytes:
    """The dataset as a Part-10 file in Explicit VR Little Endian (in memory).

    Raises CannotDecode when a value cannot be written in it: an implicit VR dataset
    under a compressed syntax (pydicom's SC_rgb_jpeg.dcm) keeps values of unknown VR
    that explicit VR cannot encode.
    """
    from pydicom import dcmwrite
    from pydicom.uid import UID

    ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_LE)
    out = io.BytesIO()
    try:  # dcmwrite, not save_as: save_as refuses to turn big endian into little
        dcmwrite(out, ds, enforce_file_format=True)
    except Exception as exc:  # pydicom raises many types for a value it cannot write
        raise CannotDecode(
            f"cannot write the instance as Explicit VR Little Endian: {exc}") from exc
    return out.getvalue()


@dataclass
class RenderOptions:
    media: str  # image/jpeg or image/png
    viewport: tuple[int, int] | None = None
    window: tuple[float, float, str] | None = None  # center, width, function
    quality: int = 90


def render(ds: Dataset, frame: int, options: RenderOptions) -> bytes:
    """One frame as an 8-bit PNG or JPEG, windowed and fitted into the viewport."""
    _need("numpy", "PIL")
    import numpy as np
    from PIL import Image

    _check(ds, [frame])
    arr = _array(ds, frame - 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples == 1:
        image = Image.fromarray(_to_8bit(ds, arr, options.window))
    else:
        if arr.dtype != np.uint8:
            top = float(2 ** int(ds.get("BitsStored", 8)) - 1)
            arr = np.clip(arr.astype(np.float64) * (255.0 / top), 0, 255).astype(np.uint8)
        image = Image.fromarray(arr)
    if options.viewport:
        image = image.resize(_fit(image.size, options.viewport), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    if options.media == "image/png":
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=options.quality)
    return out.getvalue()


def _fit(size: tuple[int, int], viewport: tuple[int, int]) -> tuple[int, int]:
    """The image size scaled to fit the viewport, keeping the aspect ratio."""
    width, height = size
    scale = min(viewport[0] / width, viewport[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_8bit(ds: Dataset, arr: Any, window: tuple[float, float, str] | None) -> Any:
    import numpy as np
    from pydicom.pixels import apply_modality_lut

    values = apply_modality_lut(arr, ds).astype(np.float64)
    if window is None and "WindowCenter" in ds and "WindowWidth" in ds:
        window = (_first(ds.WindowCenter), _first(ds.WindowWidth), "LINEAR")
    if window is None:
        low, high = float(values.min()), float(values.max())
        out = (values - low) / ((high - low) or 1.0)
    else:
        center, width, function = window
        if function.upper() == "SIGMOID":
            out = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / max(width, 1e-6)))
        elif function.upper() == "LINEAR_EXACT":
            out = (values - (center - width / 2)) / max(width, 1e-6)
        else:  # LINEAR, PS3.3 C.11.2.1.2.1
            out = (values - (center - 0.5)) / max(width - 1, 1e-6) + 0.5
    out = np.clip(out, 0.0, 1.0) * 255.0
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        out = 255.0 - out
    return np.round(out).astype(np.uint8)


def _first(value: Any) -> float:
    from pydicom.multival import MultiValue

    return float(value[0] if isinstance(value, (list, MultiValue)) else value)
