"""DICOM attribute keywords and tags for search filters, includefield and table columns.

The attributes a search usually names are listed here, so that ``dcmweb search`` does not
pay pydicom's import (about a quarter of a second) to turn ``PatientName`` into 00100010;
any other keyword is looked up in pydicom's dictionary.
"""

from __future__ import annotations

import re

from .errors import UsageError

# keyword: (tag, VR)
COMMON: dict[str, tuple[str, str]] = {
    "SpecificCharacterSet": ("00080005", "CS"),
    "StudyDate": ("00080020", "DA"),
    "SeriesDate": ("00080021", "DA"),
    "AcquisitionDate": ("00080022", "DA"),
    "ContentDate": ("00080023", "DA"),
    "StudyTime": ("00080030", "TM"),
    "SeriesTime": ("00080031", "TM"),
    "ContentTime": ("00080033", "TM"),
    "AccessionNumber": ("00080050", "SH"),
    "RetrieveURL": ("00081190", "UR"),
    "InstanceAvailability": ("00080056", "CS"),
    "Modality": ("00080060", "CS"),
    "ModalitiesInStudy": ("00080061", "CS"),
    "SOPClassUID": ("00080016", "UI"),
    "SOPInstanceUID": ("00080018", "UI"),
    "Manufacturer": ("00080070", "LO"),
    "InstitutionName": ("00080080", "LO"),
    "ReferringPhysicianName": ("00080090", "PN"),
    "StudyDescription": ("00081030", "LO"),
    "SeriesDescription": ("0008103E", "LO"),
    "PatientName": ("00100010", "PN"),
    "PatientID": ("00100020", "LO"),
    "PatientBirthDate": ("00100030", "DA"),
    "PatientSex": ("00100040", "CS"),
    "PatientAge": ("00101010", "AS"),
    "BodyPartExamined": ("00180015", "CS"),
    "StudyInstanceUID": ("0020000D", "UI"),
    "SeriesInstanceUID": ("0020000E", "UI"),
    "StudyID": ("00200010", "SH"),
    "SeriesNumber": ("00200011", "IS"),
    "InstanceNumber": ("00200013", "IS"),
    "NumberOfStudyRelatedSeries": ("00201206", "IS"),
    "NumberOfStudyRelatedInstances": ("00201208", "IS"),
    "NumberOfSeriesRelatedInstances": ("00201209", "IS"),
    "NumberOfFrames": ("00280008", "IS"),
    "Rows": ("00280010", "US"),
    "Columns": ("00280011", "US"),
    "BitsAllocated": ("00280100", "US"),
    "TimezoneOffsetFromUTC": ("00080201", "SH"),
}
_TAG = re.compile(r"\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?")
_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def tag_of(name: str) -> str:
    """The 8-hex-digit tag (upper case) of a keyword or tag (``00100010``, ``0010,0010``)."""
    name = name.strip()
    match = _TAG.fullmatch(name)
    if match:
        return (match.group(1) + match.group(2)).upper()
    if name in COMMON:
        return COMMON[name][0]
    if _KEYWORD.fullmatch(name):
        from pydicom.datadict import tag_for_keyword

        tag = tag_for_keyword(name)
        if tag is not None:
            return f"{tag:08X}"
    raise UsageError(f"unknown DICOM attribute {name!r}",
                     "give a keyword (PatientName) or a tag (00100010)")

