"""QIDO query parameters from named options: filters, includefield, fuzzy matching, paging.

``--filter PatientName=DOE^JOHN`` and ``--filter 00100010=DOE^JOHN`` name the attribute
by keyword or tag; a misspelt keyword is a usage error here rather than a silent
"unknown key" on one server and an empty result on another. Values pass unchanged:
wildcards (``DOE*``), UID lists (``1.2,1.3``) and date/time ranges
(``20200101-20201231``, ``20200101-``, ``-20201231``, ``080000-120000``) are the
server's syntax.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import UsageError
from .keywords import tag_of
from .record import field, record

Params = list[tuple[str, str]]


@record(frozen=True)
class Query:
    filters: Iterable[str] = ()  # KEY=VALUE, KEY a keyword or a tag
    include: Iterable[str] = ()  # keywords, tags, or "all"
    fuzzy: bool = False
    limit: int | None = None
    offset: int | None = None
    extra: Params = field(default_factory=list)  # raw query words, passed as they are

    def params(self) -> Params:
        params = list(self.extra)
        for item in self.filters:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"invalid filter {item!r}", "write KEY=VALUE, e.g. PatientID=123")
            params.append((attribute(key), value))
        for name in self.include:
            params.append(("includefield", "all" if name.lower() == "all" else attribute(name)))
        if self.fuzzy:
            params.append(("fuzzymatching", "true"))
        if self.limit is not None:
            params.append(("limit", str(self.limit)))
        if self.offset is not None:
            params.append(("offset", str(self.offset)))
        return params


def attribute(name: str) -> str:
    """A keyword as typed (readable in logs), a tag as 8 hex digits; unknown names refused."""
    tag = tag_of(name)
    name = name.strip()
    return name if name[:1].isalpha() and not _is_hex_tag(name) else tag


def _is_hex_tag(name: str) -> bool:
    return len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name)
