"""Read a STOW-RS answer (DICOM XML or DICOM JSON) into per-instance results.

Servers differ: GCP answers XML unless asked for JSON, Orthanc sends JSON (on errors
with no Content-Type in 1.10, "application/dicom+json, text/plain" in 1.12), tiny-pacs
plain text on errors. The body is sniffed, not
trusted to its header; only a DICOM data set counts as an answer: a web page (a login
page, a viewer at the wrong path) or an error envelope is ``foreign``, whatever its
status, so that it can never be taken for a success.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Literal

from .body import is_web_page
from .record import field, record
from .redact import shorten

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

RETRIEVE_URL = "00081190"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"

FAILURE_NAMES = {
    0x0110: "processing failure",
    0x0111: "duplicate instance",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0xA700: "out of resources",
    0xA900: "data set does not match the study or SOP class",
    0xC000: "cannot understand",
    0xC122: "transfer syntax not supported",
}

# A parsed data set: tag -> list of values; sequence values are nested data sets.
Dataset = dict[str, list[Any]]
# "dataset": DICOM JSON or XML; "empty": no body; "foreign": anything else.
AnswerKind = Literal["dataset", "empty", "foreign"]
_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_UNNAMED = "<unknown #"  # the key of a failure that names no SOP Instance UID


@record
class InstanceFailure:
    reason: int | None
    detail: str

    def describe(self) -> str:
        parts = []
        if self.reason is not None:
            name = FAILURE_NAMES.get(self.reason, "failure")
            parts.append(f"{name} (0x{self.reason:04X})")
        if self.detail:
            parts.append(self.detail)
        return ": ".join(parts) or "failed (no reason given)"

    @property
    def maybe_duplicate(self) -> bool:
        """A refusal that may mean "already stored": 0x0111, or tiny-pacs' bare 0x0110
        (a server that says why, e.g. "different content", is taken at its word)."""
        return self.reason == 0x0111 or (self.reason == 0x0110 and not self.detail)


@record
class StowAnswer:
    retrieve_url: str | None = None
    stored: dict[str, str | None] = field(default_factory=dict)  # SOP UID -> RetrieveURL
    warnings: dict[str, int] = field(default_factory=dict)  # SOP UID -> WarningReason
    failed: dict[str, InstanceFailure] = field(default_factory=dict)
    text: str = ""  # a body that was neither XML nor JSON (for error messages)
    kind: AnswerKind = "dataset"
    content_type: str = ""  # as the server labelled it, without parameters
    # Its body could not be decoded: it says nothing, not even whether it is a web page.
    unreadable: bool = False

    @property
    def names_nothing(self) -> bool:
        return not (self.stored or self.failed)

    @property
    def lone_unnamed_failure(self) -> InstanceFailure | None:
        """The failure of an answer that holds one failed instance and names no UID for it
        (tiny-pacs, for a part it would not read): with one file sent, it is that file's."""
        if self.stored or len(self.failed) != 1:
            return None
        [(uid, failure)] = self.failed.items()
        return failure if uid.startswith(_UNNAMED) else None

    @property
    def web_page(self) -> bool:
        return not self.unreadable and is_web_page(self.content_type, self.text)

    def describe(self) -> str:
        """What came back, for a message: 'text/html (a web page)'."""
        if self.kind == "empty":
            return "an empty answer"
        label = self.content_type or "no Content-Type"
        return f"{label} (a web page)" if self.web_page else label


def _from_json(node: Any) -> Dataset:
    dataset: Dataset = {}
    if not isinstance(node, dict):
        return dataset
    for tag, element in node.items():
        if not isinstance(element, dict):
            continue
        values = element.get("Value") or []
        if element.get("vr") == "SQ":
            values = [_from_json(item) for item in values]
        dataset[tag.upper()] = list(values)
    return dataset


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _from_xml(node: ET.Element) -> Dataset:
    dataset: Dataset = {}
    for attribute in node:
        if _local(attribute.tag) != "DicomAttribute":
            continue
        tag = (attribute.get("tag") or "").upper()
        values: list[Any] = []
        for child in attribute:
            kind = _local(child.tag)
            if kind == "Item":
                values.append(_from_xml(child))
            elif kind == "Value":
                values.append(child.text or "")
        dataset[tag] = values
    return dataset


def parse_dataset(body: bytes) -> Dataset | None:
    """A DICOM JSON object/array or a NativeDicomModel document, else None.

    JSON whose keys are not tags (Google's ``{"error": ...}``) and XML that is not a
    NativeDicomModel (an XHTML page) are not data sets.
    """
    # utf-8-sig: a byte-order mark some servers put first is no part of the answer.
    text = body.decode("utf-8-sig", "replace").strip()
    if text.startswith(("{", "[")):
        try:
            payload = json.loads(text)
        except ValueError:
            return None
        if isinstance(payload, list):
            payload = payload[0] if payload else {}
        if not isinstance(payload, dict) or not all(map(_TAG.fullmatch, payload)):
            return None
        return _from_json(payload)
    if text.startswith("<"):
        import xml.etree.ElementTree as ET  # Google's answers: Orthanc's are JSON

        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            return None
        if _local(root.tag) != "NativeDicomModel":
            return None
        return _from_xml(root)
    return None


def _first(dataset: Dataset, tag: str) -> Any:
    values = dataset.get(tag) or []
    return values[0] if values else None


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _private_text(item: Dataset) -> str:
    """Readable reasons servers put in private elements (GCP's FailureDetail)."""
    texts: list[str] = []
    for tag, values in item.items():
        try:
            group, element = int(tag[:4], 16), int(tag[4:], 16)
        except ValueError:
            continue
        # (gggg,0010) holds the private creator name ("GOOGLE"), not a reason.
        if group % 2 and element != 0x0010:
            texts.extend(str(v) for v in values if isinstance(v, str) and v)
    return "; ".join(texts)


def parse_stow_answer(body: bytes, content_type: str | None = None) -> StowAnswer:
    # The first media type: Orthanc 1.12 lists two ("application/dicom+json, text/plain").
    media = (content_type or "").split(";", 1)[0].split(",", 1)[0].strip().lower()
    answer = StowAnswer(content_type=media)
    if not body.strip():
        answer.kind = "empty"
        return answer
    dataset = None if media == "text/html" else parse_dataset(body)
    if dataset is None:
        answer.kind = "foreign"
        answer.text = shorten(body.decode("utf-8-sig", "replace").strip(), 300)
        return answer
    answer.retrieve_url = _first(dataset, RETRIEVE_URL)
    for item in dataset.get(REFERENCED_SOP_SEQUENCE, []):
        uid = _first(item, REFERENCED_SOP_INSTANCE_UID)
        if uid:
            answer.stored[uid] = _first(item, RETRIEVE_URL)
            warning = _as_int(_first(item, WARNING_REASON))
            if warning is not None:
                answer.warnings[uid] = warning
    for index, item in enumerate(dataset.get(FAILED_SOP_SEQUENCE, [])):
        uid = _first(item, REFERENCED_SOP_INSTANCE_UID) or f"{_UNNAMED}{index + 1}>"
        answer.failed[uid] = InstanceFailure(_as_int(_first(item, FAILURE_REASON)),
                                             _private_text(item))
    return answer
