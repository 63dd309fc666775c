"""Search rows (DICOM JSON, keyed by tag) read by keyword, or turned into pydicom Datasets.

    from dcmweb.rows import value, as_dataset
    for row in client.search("studies"):
        print(value(row, "PatientName"), value(row, "StudyDate"))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .keywords import tag_of

if TYPE_CHECKING:
    from pydicom import Dataset


def values(row: Mapping[str, Any], keyword: str) -> list[Any]:
    """Every value of an attribute (a keyword such as ``PatientName``, or a tag); a person
    name is its alphabetic text (``DOE^JOHN``). Empty when the row lacks it."""
    element = row.get(tag_of(keyword))
    if not isinstance(element, Mapping):
        return []
    found = element.get("Value")
    if not isinstance(found, list):  # absent, or malformed: a string is not its values
        return []
    if element.get("vr") == "PN":
        return [v.get("Alphabetic", "") if isinstance(v, Mapping) else v for v in found]
    return list(found)


def value(row: Mapping[str, Any], keyword: str, default: Any = None) -> Any:
    """The first value of an attribute, or ``default`` when the row lacks it."""
    found = values(row, keyword)
    return found[0] if found else default


def as_dataset(row: Mapping[str, Any]) -> Dataset:
    """The row as a pydicom Dataset (``ds.PatientName``, ``ds.StudyInstanceUID``)."""
    from pydicom import Dataset

    return Dataset.from_json(dict(row))


def as_datasets(rows: Sequence[Mapping[str, Any]]) -> list[Dataset]:
    return [as_dataset(row) for row in rows]
