"""Search rows as text a shell pipeline can use without jq: CSV, TSV, or UIDs one per line.

Columns are chosen by keyword (``--fields PatientName,StudyDate``). Values are made
readable: a person name ``DOE^JOHN`` becomes ``DOE, JOHN``, a date ``20200131`` becomes
``2020-01-31``, a time ``081500`` becomes ``08:15:00``; several values are joined
with ``\\`` as in DICOM.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .keywords import tag_of

# What a table shows when no --fields is given, per level searched.
DEFAULT_FIELDS = {
    "studies": ("StudyInstanceUID", "PatientName", "PatientID", "StudyDate",
                "AccessionNumber", "ModalitiesInStudy", "StudyDescription"),
    "series": ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber",
               "SeriesDescription"),
    "instances": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                  "SOPClassUID", "InstanceNumber"),
}
UID_FIELD = {"studies": "StudyInstanceUID", "series": "SeriesInstanceUID",
             "instances": "SOPInstanceUID"}


def field_tags(fields: Sequence[str]) -> list[str]:
    """Tags of the fields (keywords or tags), in order; unknown names are usage errors."""
    return [tag_of(name) for name in fields]


def _person_name(value: Any) -> str:
    text = value.get("Alphabetic", "") if isinstance(value, dict) else str(value)
    family, _, rest = text.partition("^")
    given = " ".join(part for part in rest.split("^") if part)
    return f"{family}, {given}" if family and given else family or given


def _date(text: str) -> str:
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def _time(text: str) -> str:
    head, dot, fraction = text.partition(".")
    if len(head) >= 4 and head.isdigit():
        pieces = [head[i:i + 2] for i in range(0, len(head), 2)]
        return ":".join(pieces) + dot + fraction
    return text


def readable(element: Any) -> str:
    """One cell: the element's values as text a person reads."""
    if not isinstance(element, dict):
        return ""
    vr = element.get("vr", "")
    values = element.get("Value") or []
    cells = []
    for value in values:
        if vr == "PN":
            cells.append(_person_name(value))
        elif vr == "DA":
            cells.append(_date(str(value)))
        elif vr == "TM":
            cells.append(_time(str(value)))
        elif isinstance(value, (dict, list)):
            cells.append("(sequence)")
        else:
            cells.append(str(value))
    if not values and "BulkDataURI" in element:
        cells.append(str(element["BulkDataURI"]))
    return "\\".join(cells)


def text_lines(rows: Iterable[dict[str, Any]], fmt: str, level: str,
               fields: Sequence[str] | None = None) -> Iterator[str]:
    """Lines (each ending in a newline) for the csv, tsv or uids format."""
    if fmt == "uids":
        tag = tag_of(UID_FIELD[level])
        for row in rows:
            value = readable(row.get(tag))
            if value:
                yield value + "\n"
        return
    names = list(fields or DEFAULT_FIELDS[level])
    tags = field_tags(names)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([readable(row.get(tag)) for tag in tags])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # no rows: the header alone
        yield buffer.getvalue()
