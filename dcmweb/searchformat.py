"""Search rows as text a shell pipeline can use without jq: CSV, TSV, UIDs or retrieve
paths (studies/S/series/R/instances/I) one per line.

Columns are chosen by keyword (``--fields PatientName,StudyDate``). Values are made
readable: a person name ``DOE^JOHN`` becomes ``DOE, JOHN``, a date ``20200131`` becomes
``2020-01-31``, a time ``081500`` becomes ``08:15:00``; several values are joined
with ``\\`` as in DICOM. Control characters are escaped (``\\x1b``) whether stdout is
a terminal or not: a table reaches the terminal through ``column -t`` or ``less`` too,
and a value from the server must not arrive there as an escape sequence. The JSON
formats keep every value as it came.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .errors import UsageError
from .keywords import tag_of
from .output import CONTROL_ESCAPES
from .paths import SEARCH_LEVELS, safe_uid

log = logging.getLogger("dcmweb")

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
PATH_FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def table_columns(level: str, fields: str | None, fmt: str) -> list[str]:
    """The columns of a csv or tsv table: ``--fields F1,F2`` or the level's defaults;
    none for other formats. Names that are not attributes are usage errors."""
    if fmt not in ("csv", "tsv"):
        if fields is not None:
            raise UsageError("--fields picks the columns of --format csv or tsv",
                             "to ask for attributes in JSON, use --include FIELD")
        return []
    if fields is None:
        return list(DEFAULT_FIELDS[level])
    names = [name.strip() for name in fields.split(",") if name.strip()]
    if not names:
        raise UsageError(f"--fields {fields!r} names no column", "write --fields F1,F2")
    field_tags(names)
    return names


def field_tags(fields: Sequence[str]) -> list[str]:
    """Tags of the fields (keywords or tags), in order; unknown names are usage errors."""
    return [tag_of(name) for name in fields]


def _person_name(value: Any) -> str:
    """``DOE, JOHN``: the first name form given, alphabetic before ideographic before
    phonetic (a name written only in kanji is shown in kanji, not as an empty cell)."""
    groups: list[Any]
    if isinstance(value, dict):
        groups = [value.get(form) for form in ("Alphabetic", "Ideographic", "Phonetic")]
    else:
        groups = _text(value).split("=")  # the DICOM text form: Alphabetic=Ideographic=Phonetic
    text = next((group for group in groups if isinstance(group, str) and group), "")
    family, _, rest = text.partition("^")
    given = " ".join(part for part in rest.split("^") if part)
    return f"{family}, {given}" if family and given else family or given


def _text(value: Any) -> str:
    """A value as text: a string as it is, anything else (a number, true, an object where
    the server should have sent a string) in JSON notation, never as Python writes it."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


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
        if value is None:  # DICOM JSON's empty value among several
            cells.append("")
        elif vr == "PN":
            cells.append(_person_name(value))
        elif vr == "DA":
            cells.append(_date(_text(value)))
        elif vr == "TM":
            cells.append(_time(_text(value)))
        elif isinstance(value, (dict, list)):
            cells.append("(sequence)")
        else:
            cells.append(_text(value))
    if not values and "BulkDataURI" in element:
        cells.append(_text(element["BulkDataURI"]))
    return "\\".join(cells)


def _uid_lines(rows: Iterable[dict[str, Any]], keywords: Sequence[str],
               known: Sequence[str], line: Callable[[list[str]], str]) -> Iterator[str]:
    """``line(uids)`` for each row: its UIDs of ``keywords`` (``known`` ones, from the
    search path, first). A row without a UID that retrieve would take (missing, null,
    several values, spaces, control characters) is left out and counted: printed, it
    would break the line or send xargs a path that cannot work."""
    tags = [tag_of(keyword) for keyword in keywords]
    left_out, example, lacking = 0, "", ""
    for row in rows:
        uids: list[str] = list(known[:len(tags)])
        for keyword, tag in zip(keywords[len(uids):], tags[len(uids):], strict=True):
            element = row.get(tag)
            values = element.get("Value") if isinstance(element, dict) else None
            uid = safe_uid(values[0]) if isinstance(values, list) and len(values) == 1 else None
            if uid is None:
                left_out += 1
                if not example:
                    example, lacking = ascii(values) if values else "none", keyword
                break
            uids.append(uid)
        else:
            yield line(uids)
    if left_out:
        log.warning("search: %d %s without a usable %s left out (first: %s)", left_out,
                    "row" if left_out == 1 else "rows", lacking, example)


def _path(uids: list[str]) -> str:
    """studies/S[/series/R[/instances/I]]: a path retrieve takes."""
    return "/".join(f"{word}/{uid}" for word, uid in zip(
        ("studies", "series", "instances"), uids, strict=False)) + "\n"


def path_fields(level: str) -> tuple[str, ...]:
    """The UIDs a path of the level is made of, study first."""
    return PATH_FIELDS[:SEARCH_LEVELS.index(level) + 1]


def text_lines(rows: Iterable[dict[str, Any]], fmt: str, level: str,
               fields: Sequence[str] | None = None, known: Sequence[str] = ()
               ) -> Iterator[str]:
    """Lines (each ending in a newline) for the csv, tsv, uids or paths format; ``known``:
    the UIDs the search path names (studies/S/series/R/instances: S, R)."""
    if fmt == "uids":
        yield from _uid_lines(rows, [UID_FIELD[level]], (), lambda uids: uids[0] + "\n")
        return
    if fmt == "paths":
        yield from _uid_lines(rows, path_fields(level), known, _path)
        return
    names = list(fields or DEFAULT_FIELDS[level])
    tags = field_tags(names)
    if fmt == "tsv":
        yield from _tsv_lines(rows, names, tags)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([_csv_cell(readable(row.get(tag))) for tag in tags])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # no rows: the header alone
        yield buffer.getvalue()


# CSV quotes a value with a line break (\n or \r\n), and a reader gets it back; the other
# control characters are escaped, a lone \r too: on a terminal it moves back to the start
# of the line, and what follows overwrites the row. TSV has no quoting: a tab or line break
# inside a value is written as \t, \n, \r too, so that each line is one row and `cut -f`
# finds every column.
_CSV_ESCAPES = {code: escape for code, escape in CONTROL_ESCAPES.items()
                if chr(code) not in "\t\n\r"}
_LONE_CR = re.compile(r"\r(?!\n)")


def _csv_cell(text: str) -> str:
    return _LONE_CR.sub(r"\\r", text).translate(_CSV_ESCAPES)


def _tsv_lines(rows: Iterable[dict[str, Any]], names: list[str], tags: list[str]
               ) -> Iterator[str]:
    header = "\t".join(names) + "\n"  # written with the first row: a failed search prints nothing
    for row in rows:
        yield header + "\t".join(readable(row.get(tag)).translate(CONTROL_ESCAPES)
                                 for tag in tags) + "\n"
        header = ""
    if header:
        yield header
