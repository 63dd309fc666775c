"""Response bodies: Google's JSON error envelope, DICOM JSON values and PS3.19 XML.

The server builds every DICOM answer as a DICOM JSON object first (a dict keyed by
8-hex-digit tags) and turns it into NativeDicomModel XML only when the client did not
ask for JSON, so both encodings always carry the same content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape, quoteattr

# gRPC status names Google uses in its error envelope, keyed by HTTP status.
STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    406: "FAILED_PRECONDITION",
    408: "DEADLINE_EXCEEDED",
    409: "ALREADY_EXISTS",
    411: "INVALID_ARGUMENT",
    413: "OUT_OF_RANGE",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# Private elements Google adds to STOW answers: tag -> (keyword, private creator).
GOOGLE_CREATOR_TAG = "00090010"
FAILURE_DETAIL_TAG = "00090097"
_PRIVATE: dict[str, tuple[str, str]] = {
    FAILURE_DETAIL_TAG: ("FailureDetail", "GOOGLE"),
    # Named too: clients such as dicomweb-client need a keyword on every attribute.
    GOOGLE_CREATOR_TAG: ("PrivateCreator", "GOOGLE"),
}

# What XML 1.0 forbids in a document, even as a character reference: most C0 controls,
# lone surrogates, U+FFFE and U+FFFF. Such characters are sent as U+FFFD.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_REPLACEMENT = "\ufffd"

# Keywords of the few public tags the server ever emits; avoids importing pydicom's
# dictionary just to label XML attributes.
_KEYWORDS: dict[str, str] = {
    "00081190": "RetrieveURL",
    "00081198": "FailedSOPSequence",
    "00081199": "ReferencedSOPSequence",
    "00081150": "ReferencedSOPClassUID",
    "00081155": "ReferencedSOPInstanceUID",
    "00081197": "FailureReason",
    "00081196": "WarningReason",
}


def status_name(code: int) -> str:
    """The gRPC status name Google would pair with an HTTP status."""
    if code in STATUS_NAMES:
        return STATUS_NAMES[code]
    return "INTERNAL" if code >= 500 else "FAILED_PRECONDITION"


def error_body(code: int, message: str) -> bytes:
    """Google's JSON error envelope."""
    body = {"error": {"code": code, "message": message, "status": status_name(code)}}
    return json.dumps(body).encode()


def element(vr: str, *values: Any) -> dict[str, Any]:
    """One DICOM JSON element; empty or None values give an element without Value."""
    kept = [v for v in values if v is not None and v != ""]
    if not kept:
        return {"vr": vr}
    if vr == "PN":
        kept = [{"Alphabetic": str(v)} for v in kept]
    return {"vr": vr, "Value": kept}


def sequence(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}


def sorted_dataset(obj: dict[str, Any]) -> dict[str, Any]:
    """DICOM JSON objects list their tags in ascending order."""
    return {tag: obj[tag] for tag in sorted(obj)}


def dataset_to_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def dataset_to_xml(
    obj: dict[str, Any], keyword: Callable[[str], str | None] | None = None
) -> bytes:
    """PS3.19 NativeDicomModel for one DICOM JSON object.

    `keyword` names public tags beyond the few the server's own answers use.
    """
    lines = ['<?xml version="1.0" encoding="UTF-8"?>']
    lines.append(
        '<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM"'
        ' xml:space="preserve">'
    )
    _xml_attributes(obj, lines, keyword or _KEYWORDS.get)
    lines.append("</NativeDicomModel>")
    return "".join(lines).encode("utf-8")


def _xml_attributes(
    obj: dict[str, Any], out: list[str], keyword: Callable[[str], str | None]
) -> None:
    for tag in sorted(obj):
        el = obj[tag]
        vr = el["vr"]
        attrs = f'tag="{tag}" vr="{vr}"'
        name = keyword(tag)
        if tag in _PRIVATE:
            name, creator = _PRIVATE[tag]
            attrs += f' keyword="{name}" privateCreator={quoteattr(creator)}'
        elif name:
            attrs += f' keyword="{name}"'
        out.append(f"<DicomAttribute {attrs}>")
        if "BulkDataURI" in el:
            out.append(f"<BulkData uri={quoteattr(_xml_safe(el['BulkDataURI']))}/>")
        elif "InlineBinary" in el:
            out.append(f"<InlineBinary>{_xml_text(el['InlineBinary'])}</InlineBinary>")
        for number, value in enumerate(el.get("Value", []), start=1):
            if vr == "SQ":
                out.append(f'<Item number="{number}">')
                _xml_attributes(value, out, keyword)
                out.append("</Item>")
            elif vr == "PN":
                out.append(f'<PersonName number="{number}">')
                for group in ("Alphabetic", "Ideographic", "Phonetic"):
                    if value.get(group):
                        out.append(f"<{group}>{_xml_person_name(value[group])}</{group}>")
                out.append("</PersonName>")
            else:
                text = "" if value is None else _xml_text(str(value))
                out.append(f'<Value number="{number}">{text}</Value>')
        out.append("</DicomAttribute>")


def _xml_person_name(name: str) -> str:
    parts = name.split("^")
    labels = ["FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix"]
    return "".join(
        f"<{label}>{_xml_text(part)}</{label}>"
        for label, part in zip(labels, parts, strict=False)
        if part
    )


def _xml_safe(text: str) -> str:
    return _NOT_XML.sub(_REPLACEMENT, text)


def _xml_text(text: str) -> str:
    """Character data that parses back to the value: a CR as a reference, since a
    parser turns a raw one into LF."""
    return escape(_xml_safe(text), {"\r": "&#13;"})
