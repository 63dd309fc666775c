"""WADO-RS metadata of a study, series or instance: DICOM JSON, or DICOM XML on request.

JSON is one array with an object per instance; XML comes as a multipart answer with one
NativeDicomModel document per instance. The answer is checked before it is handed on (a
200 may be a login page): JSON must parse to an array of at least one object, each XML
part must be a well-formed XML document (xmlcheck.py). Where only the bytes are wanted
(the CLI writes them), the JSON is still parsed whole, one row at a time, but no row is
kept: half the time of building them, and no memory for them (docs/performance.md, E).
A shape test of the first and last bytes, used before, let NaN and missing commas
through.

An answer larger than MAX_ANSWER is refused as it arrives: a 2,000-instance study is
4-7 MB of JSON, a study of enhanced multi-frame images with per-frame attributes some
tens of MB; a larger one can be asked for series by series.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .body import NotAJsonNumber, NotRows, object_rows, read_bounded, too_large
from .errors import ServerError, UsageError
from .http import Http
from .multipart import parse_content_type
from .record import field, record
from .unexpected import describe_body, not_dicomweb
from .wado import NoInstanceError, answer_parts, asking_again, at_least_one, get
from .wadopath import parse_wado_path
from .xmlcheck import xml_problem

if TYPE_CHECKING:
    from pydicom import Dataset

    from .multipart import Chunk
    from .transport import Response

JSON_TYPE = "application/dicom+json"
XML_PART = "application/dicom+xml"
XML_TYPE = f'multipart/related; type="{XML_PART}"'
FORMATS = ("json", "xml")
MAX_ANSWER = 256 * 1024**2  # JSON, or XML documents together (each part: at most this too)
_TOO_LARGE_HINT = ("ask for each series (studies/S/series/R/metadata); an endless answer "
                   "is a server fault: check HOST")
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
    """The answer, checked; ``parse=False`` leaves ``rows`` empty (the JSON is still
    proven to be an array of objects)."""
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
        raw = read_bounded(response, MAX_ANSWER, what, _TOO_LARGE_HINT)
    return _json(raw, what, response, keep=None if parse else 0)


def _fetch_xml(http: Http, url: str, what: str) -> Metadata:
    documents = []
    size = 0
    with get(http, url, what, XML_TYPE) as response:
        parts = at_least_one(answer_parts(response, what, XML_PART), what)
        for number, (mime, chunks) in enumerate(parts, 1):
            document = b"".join(_bounded(chunks, MAX_ANSWER - size, what))
            size += len(document)
            if not document.lstrip().startswith(b"<"):
                raise ServerError(f"{what}: the server sent a part that is not XML ({mime})")
            problem = xml_problem(document)
            if problem:
                raise ServerError(f"{what}: part {number} of the answer {problem}")
            documents.append(document)
    raw = b"".join(doc if doc.endswith(b"\n") else doc + b"\n" for doc in documents)
    return Metadata(raw, documents=documents)


def _bounded(chunks: Iterable[Chunk], room: int, what: str) -> Iterator[Chunk]:
    """The chunks of a part, until they pass ``room`` bytes: then ServerError (a part, or
    the parts together, larger than MAX_ANSWER)."""
    for chunk in chunks:
        room -= len(chunk)
        if room < 0:
            raise too_large(what, MAX_ANSWER, _TOO_LARGE_HINT)
        yield chunk


def _json(raw: bytes, what: str, response: Response, keep: int | None) -> Metadata:
    """The answer's rows (the first ``keep``; all: None), each proven to be an object."""
    try:
        rows, count = object_rows(raw, keep)
    except NotRows as exc:
        raise ServerError(f"{what}: expected a JSON array of objects, {exc}") from None
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
    if not count:
        raise NoInstanceError(what)  # as an empty XML answer: a study has an instance
    return Metadata(raw if raw.endswith(b"\n") else raw + b"\n", rows=rows)
