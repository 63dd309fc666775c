"""Rows that contradict an exact search filter: the server ignored the key.

A server may match a few keys and silently drop the rest (tiny-pacs ignores
StudyDescription, InstanceNumber, ReferringPhysicianName, ...): every row then comes back
as a match, and ``search --format uids | xargs dcmweb HOST delete`` acts on all of them.
A filter of one exact value (no wildcard, range or list) can be checked against the
attribute in each row (PS3.18 has a server return the attributes it matched on; Orthanc
does, tiny-pacs returns what it stores whatever includefield asks, so dcmweb adds none).

A row is left out only where DICOM's matching is exact: UIDs, numbers, dates and times,
and codes and other text compared without case and surrounding spaces (Orthanc finds
EXPL for PatientID=expl: leniency, not an ignored key). Servers match person names
loosely (tiny-pacs by substring, Google by word), so a name is warned of, never left out,
and only when no word of it is in the row's name. A row without the attribute stays.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import UsageError
from .keywords import tag_of
from .output import plural
from .redact import shown_filter

# Query words that are not matching keys.
_NOT_KEYS = frozenset({"limit", "offset", "includefield", "fuzzymatching"})
# Wildcards, lists (a backslash; a comma for UIDs, which a server may read in any value).
_NOT_ONE_VALUE = re.compile(r"[*?\\,]")
_INTEGER = re.compile(r"[+-]?[0-9]+")
# A comparison: True (matches), False (cannot match), None (dcmweb cannot tell).
Compare = Callable[[Any, str], "bool | None"]


class ExactFilter:
    """One filter of a single exact value, and the rows that contradicted it."""

    def __init__(self, key: str, tag: str, value: str, fuzzy: bool) -> None:
        self.key, self.tag, self.value = key, tag, value
        self.fuzzy = fuzzy  # fuzzy matching: a person name is not exact
        self.dropped = 0  # rows left out
        self.kept = 0  # rows whose person name contradicts it, shown all the same

    def matches(self, element: Any) -> bool | None:
        """Whether a row's element of the attribute can match (any of its values); None
        when the row lacks it or dcmweb cannot compare it."""
        if not isinstance(element, Mapping) or (self.fuzzy and element.get("vr") == "PN"):
            return None
        values, compare = element.get("Value"), _COMPARE.get(element.get("vr"))
        if compare is None or not isinstance(values, list) or not values:
            return None
        verdicts = [compare(value, self.value) for value in values]
        if True in verdicts:
            return True
        return False if all(verdict is False for verdict in verdicts) else None

    def message(self, paging: str) -> str | None:
        """What to tell of the rows that contradicted it (None: none did); ``paging``
        names the limit and offset that counted the server's rows ("": none given)."""
        count = self.dropped or self.kept
        if not count:
            return None
        if self.dropped:
            shown = f"dcmweb left {'it' if count == 1 else 'them'} out" + (
                f" ({paging} counted the rows the server sent)" if paging else "")
        else:
            shown = "shown all the same (servers match names loosely)"
        return (f"the server ignored the filter {shown_filter(self.key, self.tag, self.value)}"
                f": {plural(count, 'row')} {'does' if count == 1 else 'do'} not match it; "
                f"{shown}")


def exact_filters(params: Iterable[tuple[str, str]]) -> list[ExactFilter]:
    """The filters among the query words that are one exact value of a known attribute,
    each given once (of two, which one a server obeys is a guess)."""
    pairs = list(params)
    fuzzy = any(k.lower() == "fuzzymatching" and v.strip().lower() == "true" for k, v in pairs)
    keys = [(key, tag, value.strip()) for key, value in pairs
            if key.lower() not in _NOT_KEYS and "." not in key  # a sequence path: unchecked
            and (tag := _tag(key)) is not None]
    given = Counter(tag for _, tag, _ in keys)
    return [ExactFilter(key, tag, value, fuzzy) for key, tag, value in keys
            if value and not _NOT_ONE_VALUE.search(value) and given[tag] == 1]


class FilterCheck:
    """Rows checked against the exact filters of one search."""

    def __init__(self, filters: list[ExactFilter]) -> None:
        self.filters = filters

    def keep(self, row: Mapping[str, Any]) -> bool:
        """Whether to show the row: False when it contradicts a filter dcmweb compares
        exactly (every filter but a person name's)."""
        keep = True
        for item in self.filters:
            if item.matches(row.get(item.tag)) is False:  # so the row has the element
                if row[item.tag]["vr"] == "PN":
                    item.kept += 1
                else:
                    item.dropped += 1
                    keep = False
        return keep

    def messages(self, paging: str) -> list[str]:
        return [text for item in self.filters if (text := item.message(paging))]


def _tag(key: str) -> str | None:
    try:
        return tag_of(key)
    except UsageError:  # no attribute: nothing to compare
        return None


def _text(value: Any, wanted: str) -> bool | None:
    if not isinstance(value, str):
        return None
    return _folded(value) == _folded(wanted)


def _folded(text: str) -> str:
    return unicodedata.normalize("NFC", text.strip(" \0")).casefold()


def _uid(value: Any, wanted: str) -> bool | None:
    return value.strip(" \0") == wanted if isinstance(value, str) else None


def _integer(value: Any, wanted: str) -> bool | None:
    if not _INTEGER.fullmatch(wanted) or isinstance(value, bool):
        return None
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        value = int(value)
    return value == int(wanted) if isinstance(value, int) else None


def _decimal(value: Any, wanted: str) -> bool | None:
    numbers = [_finite(value), _finite(wanted)]
    return None if None in numbers else numbers[0] == numbers[1]


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _date(value: Any, wanted: str) -> bool | None:
    if not (isinstance(value, str) and len(wanted) == 8 and wanted.isdigit()):
        return None  # a range (20200101-), or not a date
    return value.strip().replace(".", "") == wanted  # 2020.01.31: the old ACR-NEMA form


def _time(value: Any, wanted: str) -> bool | None:
    """Times (and date-times) compared to the precision both have: a server may store
    081500.000 and match 0815."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9:]+(\.[0-9]+)?", wanted):
        return None  # a range, a time zone, or not a time
    have = re.split(r"[+-]", value.strip(), maxsplit=1)[0].replace(":", "")
    want = wanted.replace(":", "")
    common = min(len(have), len(want))
    return have[:common] == want[:common] if common else None


def _name(value: Any, wanted: str) -> bool | None:
    """Loose: whether any word of the name searched for is in the row's name."""
    if isinstance(value, Mapping):
        value = " ".join(str(value.get(group, "")) for group in
                         ("Alphabetic", "Ideographic", "Phonetic"))
    if not isinstance(value, str):
        return None
    words = re.findall(r"\w+", _folded(wanted))
    return any(word in _folded(value) for word in words) if words else None


_COMPARE: dict[Any, Compare] = {
    "UI": _uid, "PN": _name, "DA": _date, "TM": _time, "DT": _time,
    **dict.fromkeys(("IS", "SS", "US", "SL", "UL", "SV", "UV"), _integer),
    **dict.fromkeys(("DS", "FL", "FD"), _decimal),
    **dict.fromkeys(("AE", "AS", "CS", "LO", "LT", "SH", "ST", "UC", "UR", "UT"), _text),
}
