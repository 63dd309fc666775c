"""WADO-RS metadata of a study, series or instance: DICOM JSON, or DICOM XML on request.

JSON is one array with an object per instance; XML comes as a multipart answer with one
NativeDicomModel document per instance. The answer is checked before it is handed on (a
200 may be a login page): JSON must parse to an array of objects, each XML part must be
a well-formed XML document (xmlcheck.py). Where only the bytes are wanted (the CLI writes
them), a complete answer whose first and last bytes are those of an array of objects, and
whose brackets and braces balance (a server that failed half-way may still end its chunked
answer cleanly), is not parsed: building the rows cost a quarter of a 2,000-instance
study's time (docs/performance.md, E). Anything else is parsed, and refused unless it is
JSON.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .body import NotAJsonNumber, loads, read_limited
from .errors import ServerError, UsageError
from .http import Http
from .multipart import parse_content_type
from .record import field, record
from .unexpected import describe_body, not_dicomweb
from .wado import answer_parts, asking_again, at_least_one, framed, get
from .wadopath import parse_wado_path
from .xmlcheck import xml_problem

if TYPE_CHECKING:
    from pydicom import Dataset

    from .transport import Response

JSON_TYPE = "application/dicom+json"
XML_PART = "application/dicom+xml"
XML_TYPE = f'multipart/related; type="{XML_PART}"'
FORMATS = ("json", "xml")
MAX_JSON = 4 * 1024**3  # about a million instances' metadata; more is an endless answer
# The first and last bytes of a JSON array of objects (or of an empty one).
_OPENS = re.compile(rb"\s*\[\s*[{\]]")
_CLOSES = re.compile(rb"[}\[]\s*\]\s*\Z")
# What pydicom's Dataset.from_json raises for an element it cannot read (a value that is
# not an object, a key that is not a tag, no "vr", a number that is text, deep nesting).
_FROM_JSON_ERRORS = (TypeError, ValueError, LookupError, AttributeError, RecursionError)


@record(frozen=True)
class Metadata:
    """One metadata answer: the bytes as sent (what the CLI writes) and what they hold."""

    raw: bytes  # JSON as sent, or the XML documents one after another
    rows: list[dict[str, Any]] = field(default_factory=list)  # JSON, when parsed
    documents: list[bytes] = field(default_factory=list)  # XML, one per instance

    def datasets(self) -> list[Dataset]:
        """The JSON rows as pydicom Datasets (bulk values stay BulkDataURIs); a row pydicom
        cannot read raises ServerError."""
        from pydicom import Dataset

        datasets = []
        for number, row in enumerate(self.rows, start=1):
            try:
                datasets.append(Dataset.from_json(row, bulk_data_uri_handler=lambda *_: b""))
            except _FROM_JSON_ERRORS as exc:
                raise ServerError(f"metadata row {number} of {len(self.rows)} is not DICOM "
                                  f"JSON that pydicom can read ({type(exc).__name__}: {exc})",
                                  "check HOST") from exc
        return datasets


def fetch_metadata(http: Http, base_url: str, path: str, fmt: str = "json", *,
                   parse: bool = True) -> Metadata:
    """The answer, checked; ``parse=False`` leaves ``rows`` empty when the bytes alone
    show a complete array of objects."""
    target = parse_wado_path(path if path.rstrip("/").endswith("/metadata")
                             else path.rstrip("/") + "/metadata")
    if target.kind != "metadata":
        raise UsageError(f"invalid metadata path {path!r}",
                         "studies/S[/series/R[/instances/I]]/metadata")
    if fmt not in FORMATS:
        raise UsageError(f"invalid metadata format {fmt!r}", "json or xml")
    url = f"{base_url}/{target.url_path()}"
    what = f"metadata {target.url_path()}"
    if fmt == "json":
        return asking_again(what, lambda: _fetch_json(http, url, what, parse))
    return asking_again(what, lambda: _fetch_xml(http, url, what))


def _fetch_json(http: Http, url: str, what: str, parse: bool) -> Metadata:
    with get(http, url, what, JSON_TYPE) as response:
        # Read through the body reader: low-speed limit, and a bound on the size.
        raw = read_limited(response, MAX_JSON + 1)
        if len(raw) > MAX_JSON:
            raise ServerError(f"{what}: the answer is larger than {MAX_JSON} bytes")
        complete = framed(response)
    if not parse and complete and _looks_whole(raw):
        return Metadata(raw if raw.endswith(b"\n") else raw + b"\n")
    return _json(raw, what, response)


def _fetch_xml(http: Http, url: str, what: str) -> Metadata:
    documents = []
    with get(http, url, what, XML_TYPE) as response:
        parts = at_least_one(answer_parts(response, what, XML_PART), what)
        for number, (mime, chunks) in enumerate(parts, 1):
            document = b"".join(chunks)
            if not document.lstrip().startswith(b"<"):
                raise ServerError(f"{what}: the server sent a part that is not XML ({mime})")
            problem = xml_problem(document)
            if problem:
                raise ServerError(f"{what}: part {number} of the answer {problem}")
            documents.append(document)
    raw = b"".join(doc if doc.endswith(b"\n") else doc + b"\n" for doc in documents)
    return Metadata(raw, documents=documents)


def _looks_whole(raw: bytes) -> bool:
    """An array of objects by its first and last bytes, its brackets and braces paired
    (a bracket inside a string makes this False: the answer is then parsed)."""
    return bool(_OPENS.match(raw) and _CLOSES.search(raw[-64:])
                and raw.count(b"[") == raw.count(b"]") and raw.count(b"{") == raw.count(b"}"))


def _json(raw: bytes, what: str, response: Response) -> Metadata:
    try:
        rows = loads(raw)
    except NotAJsonNumber as exc:
        raise ServerError(f"{what}: the answer holds {exc}", "check HOST") from None
    except RecursionError:
        raise ServerError(f"{what}: the server's JSON answer is nested too deeply",
                          "check HOST") from None
    except ValueError:
        content_type = response.headers.get("Content-Type", "")
        if not parse_content_type(content_type)[0].endswith("json"):
            # A login page with 200: said as the XML path says it, naming HOST.
            raise not_dicomweb(what, response.status_code, describe_body(content_type, raw),
                               JSON_TYPE) from None
        raise ServerError(f"{what}: the server's answer is not JSON") from None  # cut off
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ServerError(f"{what}: expected a JSON array of objects")
    return Metadata(raw if raw.endswith(b"\n") else raw + b"\n", rows=rows)
