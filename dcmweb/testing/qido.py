"""QIDO-RS: searches at study, series and instance level, with Google's limits.

Google's traps are reproduced on purpose: without `limit` only the first 100 studies
or 1,000 series/instances come back, silently; a larger `limit` is clamped to the
cap; an offset past 1,000,000 is refused; unknown keys get a plain-text 400.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

from .dicomjson import text_element
from .handler import Handler, Request
from .metadata import instance_attributes
from .responses import element, sorted_dataset
from .storage import Store

STUDY, SERIES, INSTANCE = "study", "series", "instance"
DEFAULT_LIMIT = {STUDY: 100, SERIES: 1000, INSTANCE: 1000}
MAX_LIMIT = {STUDY: 5000, SERIES: 5000, INSTANCE: 50000}
MAX_OFFSET = 1_000_000

# keyword -> (tag, VR, index column or computed name)
ATTRIBUTES: dict[str, tuple[str, str, str]] = {
    "TransferSyntaxUID": ("00020010", "UI", "transfer_syntax_uid"),
    "SOPClassUID": ("00080016", "UI", "sop_class_uid"),
    "SOPInstanceUID": ("00080018", "UI", "sop_uid"),
    "StudyDate": ("00080020", "DA", "study_date"),
    "StudyTime": ("00080030", "TM", "study_time"),
    "AccessionNumber": ("00080050", "SH", "accession_number"),
    "Modality": ("00080060", "CS", "modality"),
    "ModalitiesInStudy": ("00080061", "CS", "modalities"),
    "ReferringPhysicianName": ("00080090", "PN", "referring_physician_name"),
    "StudyDescription": ("00081030", "LO", "study_description"),
    "SeriesDescription": ("0008103E", "LO", "series_description"),
    "AvailableTransferSyntaxUID": ("00083002", "UI", "transfer_syntax_uid"),
    "PatientName": ("00100010", "PN", "patient_name"),
    "PatientID": ("00100020", "LO", "patient_id"),
    "StudyInstanceUID": ("0020000D", "UI", "study_uid"),
    "SeriesInstanceUID": ("0020000E", "UI", "series_uid"),
    "StudyID": ("00200010", "SH", "study_id"),
    "SeriesNumber": ("00200011", "IS", "series_number"),
    "InstanceNumber": ("00200013", "IS", "instance_number"),
    "NumberOfStudyRelatedSeries": ("00201206", "IS", "n_series"),
    "NumberOfStudyRelatedInstances": ("00201208", "IS", "n_instances"),
    "NumberOfSeriesRelatedInstances": ("00201209", "IS", "n_instances"),
}
_TAG_TO_KEYWORD = {tag: kw for kw, (tag, _, _) in ATTRIBUTES.items()}

_STUDY_ATTRS = [
    "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
    "ReferringPhysicianName", "PatientName", "PatientID", "StudyInstanceUID", "StudyID",
]  # fmt: skip
_SERIES_ATTRS = ["Modality", "SeriesInstanceUID", "SeriesNumber"]
_INSTANCE_ATTRS = [
    "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "AvailableTransferSyntaxUID",
]  # fmt: skip
DEFAULTS = {
    STUDY: [*_STUDY_ATTRS, "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"],
    SERIES: ["StudyInstanceUID", *_SERIES_ATTRS, "NumberOfSeriesRelatedInstances"],
    INSTANCE: ["StudyInstanceUID", "SeriesInstanceUID", *_INSTANCE_ATTRS],
}
# What includefield=all (or naming them) may add at each level.
AVAILABLE = {
    STUDY: [*DEFAULTS[STUDY], "StudyDescription"],
    SERIES: [*DEFAULTS[SERIES], "SeriesDescription", *_STUDY_ATTRS, "StudyDescription"],
    INSTANCE: [
        *DEFAULTS[INSTANCE], "TransferSyntaxUID", *_SERIES_ATTRS, "SeriesDescription",
        *_STUDY_ATTRS, "StudyDescription",
    ],
}  # fmt: skip

# Search keys -> (the level that owns the key, index column, how to match). Google's
# conformance statement names nine: a study search takes the study keys, a series search
# also the series keys, an instance search also SOPInstanceUID; anything else is a 400
# "<keyword> is not a supported <level> level attribute". Matching is exact on one value,
# except UID lists, StudyDate ranges and fuzzy PatientName. Kinds: "uid" (a list, by
# comma or backslash), "text" (exact), "name" (exact, any case), "fuzzy" (a name, word
# prefixes with fuzzymatching=true), "date"/"time" (a value or a range), "int".
GOOGLE_KEYS: dict[str, tuple[str, str, str]] = {
    "StudyInstanceUID": (STUDY, "study_uid", "uid"),
    "PatientName": (STUDY, "patient_name", "fuzzy"),
    "PatientID": (STUDY, "patient_id", "text"),
    "AccessionNumber": (STUDY, "accession_number", "text"),
    "ReferringPhysicianName": (STUDY, "referring_physician_name", "name"),
    "StudyDate": (STUDY, "study_date", "date"),
    "SeriesInstanceUID": (SERIES, "series_uid", "uid"),
    "Modality": (SERIES, "modality", "text"),
    "SOPInstanceUID": (INSTANCE, "sop_uid", "uid"),
}
# search_keys="extended": more keys (PS3.18's required matching attributes and common
# ones), each at its own level, PS3.4 wildcards `*` `?` on text and names, and fuzzy
# matching on both person names. Not what Google does; for tests that need the keys.
EXTENDED_KEYS: dict[str, tuple[str, str, str]] = {
    **GOOGLE_KEYS,
    "ReferringPhysicianName": (STUDY, "referring_physician_name", "fuzzy"),
    "StudyTime": (STUDY, "study_time", "time"),
    "StudyID": (STUDY, "study_id", "text"),
    "StudyDescription": (STUDY, "study_description", "text"),
    "ModalitiesInStudy": (STUDY, "modality", "text"),
    "PatientBirthDate": (STUDY, "patient_birth_date", "date"),
    "PatientSex": (STUDY, "patient_sex", "text"),
    "SeriesNumber": (SERIES, "series_number", "int"),
    "SeriesDescription": (SERIES, "series_description", "text"),
    "InstitutionName": (SERIES, "institution_name", "text"),
    "BodyPartExamined": (SERIES, "body_part_examined", "text"),
    "Manufacturer": (SERIES, "manufacturer", "text"),
    "PerformedProcedureStepStartDate": (SERIES, "pps_start_date", "date"),
    "PerformedProcedureStepStartTime": (SERIES, "pps_start_time", "time"),
    "SOPClassUID": (INSTANCE, "sop_class_uid", "uid"),
    "InstanceNumber": (INSTANCE, "instance_number", "int"),
}
GOOGLE, EXTENDED = "google", "extended"
SEARCH_KEYS = {GOOGLE: GOOGLE_KEYS, EXTENDED: EXTENDED_KEYS}
_DEPTH = {STUDY: 0, SERIES: 1, INSTANCE: 2}
# What a range bound looks like, by kind.
_RANGE_FORMS = {"date": (r"\d{8}", "YYYYMMDD"), "time": (r"\d{2,6}(\.\d{1,6})?", "HHMMSS")}


class QueryError(ValueError):
    """Answered as 400 with a plain-text body, as Google does for QIDO."""


def handle_qido(
    h: Handler, req: Request, level: str, study: str | None = None, series: str | None = None
) -> None:
    fields: list[str] = []

    def query(table: str) -> tuple[str, list[Any]]:
        nonlocal fields
        sql, params, fields = build_query(
            req.query, level, study, series, search_keys=h.app.search_keys, table=table
        )
        return sql, params

    try:
        rows = h.app.store.search(query)
    except QueryError as exc:
        h.send_bytes(400, (str(exc) + "\n").encode(), "text/plain; charset=utf-8")
        return
    if not rows:
        if h.app.no_match_status == 204:
            h.send_bytes(204, b"", None)
        else:
            h.send_bytes(200, b"[]", "application/dicom+json")
        return
    extra = [name for name in fields if name not in ATTRIBUTES]
    results = [_to_json(row, fields) for row in rows]
    if extra:
        results = [
            sorted_dataset({**obj, **_stored_attributes(h.app.store, row, extra, obj)})
            for row, obj in zip(rows, results, strict=True)
        ]
    h.send_bytes(200, json.dumps(results, separators=(",", ":")).encode(), "application/dicom+json")


def build_query(
    query: list[tuple[str, str]],
    level: str,
    study: str | None,
    series: str | None,
    *,
    search_keys: str = GOOGLE,
    table: str = "instances",
) -> tuple[str, list[Any], list[str]]:
    """Turn query parameters into SQL over the index and the list of fields to return.
    The SQL reads `table`: "instances", or "searchable" (the live instances and the
    deleted ones a search still lists, see Store.search).

    search_keys is "google" (the keys and matching Google documents) or "extended".
    """
    keys = SEARCH_KEYS[search_keys]
    where: list[str] = []
    params: list[Any] = []
    includes: set[str] = set()
    limit: int | None = None
    offset = 0
    fuzzy = False
    if study is not None:
        where.append("study_uid = ?")
        params.append(study)
    if series is not None:
        where.append("series_uid = ?")
        params.append(series)
    filters: list[tuple[str, str]] = []
    for key, value in query:
        lowered = key.lower()
        if lowered == "limit":
            limit = _int_param(key, value)
        elif lowered == "offset":
            offset = _int_param(key, value)
        elif lowered == "fuzzymatching":
            fuzzy = value.strip().lower() == "true"
        elif lowered == "includefield":
            includes.update(_include_names(value))
        else:
            filters.append((_filter_keyword(key, level, keys), value))
    for keyword, value in filters:
        _, column, kind = keys[keyword]
        matcher = _Matcher(keyword, column, fuzzy, wildcards=search_keys == EXTENDED)
        matcher.add(kind, value.strip(), where, params)
    if offset > MAX_OFFSET:
        raise QueryError(f"offset {offset} is larger than the maximum {MAX_OFFSET}")
    if limit is None or limit == 0:
        limit = DEFAULT_LIMIT[level]  # Google's silent cut
    limit = min(limit, MAX_LIMIT[level])
    fields = _fields(level, study, series, includes)
    cond = " AND ".join(where) if where else "1"
    if level == STUDY:
        sql = (
            f"WITH m AS (SELECT study_uid AS k, MIN(id) AS first FROM {table}"
            f" WHERE {cond} GROUP BY study_uid ORDER BY first LIMIT ? OFFSET ?)"
            " SELECT i.*,"
            f" (SELECT COUNT(DISTINCT series_uid) FROM {table} x WHERE x.study_uid = m.k)"
            " AS n_series,"
            f" (SELECT COUNT(*) FROM {table} x WHERE x.study_uid = m.k) AS n_instances,"
            f" (SELECT GROUP_CONCAT(DISTINCT modality) FROM {table} x"
            "  WHERE x.study_uid = m.k) AS modalities"
            f" FROM m JOIN {table} i ON i.id = m.first ORDER BY m.first"
        )
    elif level == SERIES:
        sql = (
            f"WITH m AS (SELECT series_uid AS k, MIN(id) AS first FROM {table}"
            f" WHERE {cond} GROUP BY series_uid ORDER BY first LIMIT ? OFFSET ?)"
            " SELECT i.*,"
            f" (SELECT COUNT(*) FROM {table} x WHERE x.series_uid = m.k) AS n_instances,"
            f" (SELECT GROUP_CONCAT(DISTINCT modality) FROM {table} x"
            "  WHERE x.study_uid = i.study_uid) AS modalities"
            f" FROM m JOIN {table} i ON i.id = m.first ORDER BY m.first"
        )
    else:
        sql = (
            f"SELECT i.*, (SELECT GROUP_CONCAT(DISTINCT modality) FROM {table} x"
            "  WHERE x.study_uid = i.study_uid) AS modalities"
            f" FROM {table} i WHERE {cond} ORDER BY i.id LIMIT ? OFFSET ?"
        )
    return sql, [*params, limit, offset], fields


def _int_param(key: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise QueryError(f"invalid value for {key}: {value!r} is not an integer") from None
    if number < 0:
        raise QueryError(f"invalid value for {key}: {number} is negative")
    return number


def _keyword(name: str) -> str | None:
    """A DICOM keyword for a keyword or an 8-hex-digit tag; None if unknown."""
    from pydicom.datadict import dictionary_has_tag, keyword_for_tag, tag_for_keyword

    name = name.strip()
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        tag = name.upper()
        if tag in _TAG_TO_KEYWORD:
            return _TAG_TO_KEYWORD[tag]
        number = int(tag, 16)
        return (keyword_for_tag(number) or None) if dictionary_has_tag(number) else None
    if name in ATTRIBUTES:
        return name
    return name if tag_for_keyword(name) is not None else None


def _filter_keyword(key: str, level: str, keys: dict[str, tuple[str, str, str]]) -> str:
    keyword = _keyword(key)
    if keyword is None:
        raise QueryError(f"unknown query parameter {key!r}")
    owner = keys.get(keyword, (None,))[0]
    if owner is None or _DEPTH[owner] > _DEPTH[level]:
        # Google's words for a key it does not match at this level.
        raise QueryError(f"{keyword} is not a supported {level} level attribute")
    return keyword


def _include_names(value: str) -> set[str]:
    names: set[str] = set()
    for raw in value.split(","):
        name = raw.strip()
        if not name:
            continue
        if name.lower() == "all":
            names.add("all")
            continue
        keyword = _keyword(name)
        if keyword is None:
            raise QueryError(f"unknown includefield value {name!r}")
        names.add(keyword)
    return names


class _Matcher:
    """Adds one search key's condition to the WHERE clause being built."""

    def __init__(self, keyword: str, column: str, fuzzy: bool, *, wildcards: bool) -> None:
        self.keyword, self.column = keyword, column
        self.fuzzy, self.wildcards = fuzzy, wildcards

    def add(self, kind: str, value: str, where: list[str], params: list[Any]) -> None:
        column = self.column
        if value in ("", "*"):
            return  # universal matching
        if kind == "uid":
            uids = [u.strip() for u in re.split(r"[,\\]", value) if u.strip()]
            where.append(f"{column} IN ({', '.join('?' for _ in uids)})")
            params.extend(uids)
        elif kind == "fuzzy" and self.fuzzy:
            where.append(f"dcm_match({column}, ?, 'fuzzy')")
            params.append(value)
        elif kind in ("fuzzy", "name", "text"):
            name = kind != "text"  # person names match whatever the case
            if self.wildcards and ("*" in value or "?" in value):
                where.append(f"dcm_match({column}, ?, '{'name' if name else 'wild'}')")
            else:
                where.append(f"{column} = ?" + (" COLLATE NOCASE" if name else ""))
            params.append(value)
        elif kind == "int":
            where.append(f"{column} = ?")
            params.append(_int_param(self.keyword, value))
        else:
            self._add_range(kind, value, where, params)

    def _add_range(self, kind: str, value: str, where: list[str], params: list[Any]) -> None:
        keyword, column = self.keyword, self.column
        pattern, form = _RANGE_FORMS[kind]
        start, dash, end = value.partition("-")
        for part in (start, end):
            if part and not re.fullmatch(pattern, part):
                raise QueryError(f"invalid {keyword} {value!r}: use {form} or {form}-{form}")
        if not dash:
            where.append(f"{column} = ?")
            params.append(start)
            return
        if not start and not end:
            raise QueryError(f"invalid {keyword} '-': give at least one end of the range")
        # A missing value is in no range; the index stores it as '', which would sort
        # before every `-END` bound.
        where.append(f"{column} <> ''")
        if start:
            where.append(f"{column} >= ?")
            params.append(start)
        if end:
            where.append(f"{column} <= ?")
            params.append(end)


def _fields(level: str, study: str | None, series: str | None, includes: set[str]) -> list[str]:
    fields = list(DEFAULTS[level])
    # PS3.18: searching series or instances across studies adds the study attributes.
    if level in (SERIES, INSTANCE) and study is None:
        fields += _STUDY_ATTRS
    if level == INSTANCE and series is None:
        fields += _SERIES_ATTRS
    wanted = set(AVAILABLE[level]) if "all" in includes else includes
    fields += [name for name in AVAILABLE[level] if name in wanted]
    # "all", and keywords the index does not hold, are read from the stored instance.
    fields += sorted(name for name in includes if name not in ATTRIBUTES)
    return list(dict.fromkeys(fields))


def _stored_attributes(
    store: Store, row: sqlite3.Row, names: list[str], computed: dict[str, Any]
) -> dict[str, Any]:
    """Attributes of the row's instance (its first one for a study or series) that
    includefield asks for: all of them for "all", never bulk values, never replacing
    the computed ones."""
    from pydicom.datadict import tag_for_keyword

    try:
        stored = instance_attributes(store, row)
    except FileNotFoundError:  # deleted, still listed (search_lag): only the index is left
        return {}
    everything = "all" in names
    tags = set(stored) if everything else {f"{tag_for_keyword(n):08X}" for n in names}
    return {
        tag: stored[tag]
        for tag in sorted(tags)
        if tag in stored and tag not in computed and "BulkDataURI" not in stored[tag]
    }


def _to_json(row: sqlite3.Row, fields: list[str]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for keyword in fields:
        if keyword not in ATTRIBUTES:
            continue  # read from the stored instance
        tag, vr, column = ATTRIBUTES[keyword]
        value = row[column]
        if column == "modalities":
            obj[tag] = element(vr, *sorted(set((value or "").split(","))))
        elif isinstance(value, str) and ("\\" in value or (vr == "PN" and "=" in value)):
            obj[tag] = text_element(vr, value)  # several values, or name groups
        else:
            obj[tag] = element(vr, value)
    return sorted_dataset(obj)
