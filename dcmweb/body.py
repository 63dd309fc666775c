"""Reading answer bodies with bounds: a minimum transfer rate, a size limit, JSON limits.

A server that trickles one byte every two seconds is never cut off by a read
timeout (each read gets a byte in time), so every body read here also checks the
transfer rate (speed.py's low-speed limit).

Bodies are read with ``read1`` (whatever the socket has, up to the chunk size), so a
trickle is seen as it trickles. No read waits past the end of the meter's window either,
so an answer that stops altogether is judged (0 bytes/s) after ``seconds``, not after
the read timeout.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import ServerError, UnavailableError, quoted
from .optionnames import option
from .redact import shorten
from .speed import LowSpeed, SpeedMeter
from .transport import Response, TransportError

CHUNK = 64 * 1024
_REQUIRED = object()


class TooSlowError(UnavailableError):
    """The server sent the body slower than the low-speed limit."""


def set_low_speed(response: Response, limit: LowSpeed) -> None:
    """Read this response with ``limit``: whoever reads the body (store, retrieve,
    search, multipart parsing) is guarded without passing the limit around."""

    def too_slow(count: int, seconds: float) -> TooSlowError:
        return TooSlowError(
            f"the server sent {count} bytes in {seconds:.0f} s, below the low-speed limit"
            f" of {limit.limit:g} bytes/s", low_speed_hint())

    response.meter = SpeedMeter(limit, too_slow)


def low_speed_hint() -> str:
    return (f"the server or the network is stalling; see {option('low_speed_limit')} and "
            f"{option('low_speed_time')}")


def read_all(response: Response, limit: int | None = None, what: str = "") -> None:
    """Read a whole body into ``response.content``; more than ``limit`` bytes is a
    :class:`ServerError` (an endless answer)."""
    try:
        content = read_bounded(response, limit, what) if limit is not None else response.content
    except BaseException:
        response.close()  # the rest of a cut or trickling body is never read
        raise
    response.keep(content)


def read_limited(response: Response, limit: int) -> bytes:
    """At most ``limit`` bytes of a body: a hostile server may send one without end."""
    data = bytearray()
    for chunk in response.iter_content():
        data += chunk
        if len(data) >= limit:
            break
    return bytes(memoryview(data)[:limit])  # one copy, not two


def read_bounded(response: Response, limit: int, what: str,
                 hint: str = "the server sent more than any sensible answer; check HOST"
                 ) -> bytes:
    """The whole body; a :class:`ServerError` (with ``hint``) as soon as it passes
    ``limit`` bytes, an endless answer. A body already read is not copied again."""
    if response.has_content:
        data = response.content
        if len(data) > limit:
            raise too_large(what, limit, hint)
        return data
    buffer = bytearray()
    for chunk in response.iter_content():
        buffer += chunk
        if len(buffer) > limit:
            raise too_large(what, limit, hint)
    return bytes(buffer)


def too_large(what: str, limit: int, hint: str) -> ServerError:
    return ServerError(f"{what} failed: the server's answer is larger than {limit} bytes", hint)


class NotAJsonNumber(ValueError):
    """NaN, Infinity or a number too large for a float: Python reads them, JSON has none."""


def _refuse_constant(name: str) -> Any:
    raise NotAJsonNumber(f"{name}, which is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: read as infinity, written back as Infinity
        raise NotAJsonNumber(f"the number {text[:40]}, too large to be read")
    return value


_SPACE = re.compile(r"[ \t\n\r]*")
_SPACES = frozenset(" \t\n\r")
_BLANK = re.compile(rb"\s*")
# Floats go through a Python hook, the one way to see 1e400 (which float() reads as
# infinity). No cheap test of the bytes can skip it: a regular expression for long digit
# runs or three-digit exponents took 0.1-0.8 s on a 6 MB answer (the parse takes 0.03-0.07
# s), and DICOM tags such as "7FE00010" look like exponents. The hook costs a float-heavy
# answer a quarter more parse time, an answer without floats nothing.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
# Its scanner (C): (value, end) for the value at an index, or StopIteration.
_SCAN = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]  # the stub is too narrow


def _text(data: bytes) -> str:
    return data.decode(json.detect_encoding(data), "surrogatepass")  # as json.loads does


def loads(data: bytes) -> Any:
    """``json.loads`` that refuses what is not JSON although Python reads it (raises
    :class:`NotAJsonNumber`): written back (jsonl, CSV, metadata) it would pass a
    server's non-JSON on as JSON."""
    return _DECODER.decode(_text(data))


def json_kind(value: Any) -> str:
    """What a JSON value is, in words: "an object", "a string", "null"..."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "true or false",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


class NotRows(Exception):
    """JSON that is not an array of objects; the message says what it is instead."""


def object_rows(data: bytes, keep: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """The first ``keep`` objects of a JSON array (all of them: None), and how many it
    holds. Read one row at a time: the whole answer is proven JSON, yet only the rows
    kept stay built (a page of millions of tiny rows, built whole, took gigabytes).
    Raises what :func:`loads` raises, and :class:`NotRows`."""
    text = _text(data)
    index = _skip_space(text, 0)
    if not text.startswith("[", index):
        raise NotRows(f"got {json_kind(_DECODER.decode(text))}")
    rows: list[dict[str, Any]] = []
    count = 0
    wrong = ""
    index = _skip_space(text, index + 1)
    if not text.startswith("]", index):
        while True:
            try:
                row, index = _SCAN(text, index)
            except StopIteration as stop:
                raise json.JSONDecodeError("Expecting value", text, stop.value) from None
            count += 1
            if not isinstance(row, dict):
                # Said once the whole answer is known to be JSON: it may be a web page.
                wrong = wrong or f"but row {count} is {json_kind(row)}"
            elif keep is None or count <= keep:
                rows.append(row)
            index = _delimiter(text, index)
            if text.startswith("]", index):
                break
            index = _skip_space(text, index + 1)
    if _skip_space(text, index + 1) != len(text):
        raise json.JSONDecodeError("Extra data", text, index + 1)
    if wrong:
        raise NotRows(wrong)
    return rows, count


def _delimiter(text: str, index: int) -> int:
    """Where the ',' or ']' after an array's value is (white space may come first)."""
    if text[index:index + 1] in _SPACES:
        index = _skip_space(text, index)
    if text[index:index + 1] not in (",", "]"):
        raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
    return index


def _skip_space(text: str, index: int) -> int:
    if text[index:index + 1] not in _SPACES:
        return index  # the usual case, without a regular expression
    return _SPACE.match(text, index).end()  # type: ignore[union-attr]  # matches anything


def read_json(response: Response, limit: int, what: str, *,
              if_empty: Any = _REQUIRED, expected: str = "application/dicom+json") -> Any:
    """The JSON answer, refused with a clear :class:`ServerError` when it is larger than
    ``limit`` bytes, nested too deeply, or not JSON (a web page: said as for any answer
    that is not the ``expected`` type). ``if_empty``: what an empty (or blank) body
    stands for, when that is allowed."""
    data = read_bounded(response, limit, what)
    if if_empty is not _REQUIRED and _empty(response, data, what):
        return if_empty
    with json_errors(response, data, what, expected):
        return loads(data)


def read_rows(response: Response, limit: int, what: str, keep: int | None = None
              ) -> tuple[list[dict[str, Any]], int]:
    """A DICOM JSON answer's rows (the first ``keep``, see :func:`object_rows`) and how
    many it holds, refused as :func:`read_json` refuses; an empty body holds none."""
    data = read_bounded(response, limit, what)
    if _empty(response, data, what):
        return [], 0
    with json_errors(response, data, what, "application/dicom+json"):
        try:
            return object_rows(data, keep)
        except NotRows as exc:
            raise ServerError(f"{what}: expected a JSON array of objects, {exc}",
                              status=response.status_code) from None


def _empty(response: Response, data: bytes, what: str) -> bool:
    """Whether the body is empty (or blank): no rows, unless a web server sent it."""
    if not _BLANK.fullmatch(data):  # not data.strip(): that copies a large body
        return False
    if _media_type(response) == "text/html":
        # A web server's empty page is no answer from a DICOMweb server.
        raise ServerError(f"{what} failed: the server answered HTTP "
                          f"{response.status_code} with an empty text/html answer (a web"
                          " page), not DICOMweb data", "check HOST",
                          status=response.status_code)
    return True


@contextmanager
def json_errors(response: Response, data: bytes, what: str, expected: str) -> Iterator[None]:
    """JSON errors raised inside as the :class:`ServerError` that says what came back."""
    try:
        yield
    except NotAJsonNumber as exc:
        raise ServerError(f"{what} failed: the answer holds {exc}", "check HOST",
                          status=response.status_code) from None
    except RecursionError:
        raise ServerError(f"{what} failed: the server's JSON answer is nested too deeply",
                          "check HOST", status=response.status_code) from None
    except ValueError as exc:
        if _media_type(response) in ("text/html", "application/xhtml+xml"):
            # A sign-in page with 200: said as retrieve and metadata say it, naming HOST.
            from .unexpected import describe_body, not_dicomweb

            raise not_dicomweb(f"{what} failed", response.status_code, describe_body(
                response.headers.get("Content-Type", ""), data), expected) from None
        start = shorten(data[:200].decode("utf-8", "replace"), 60)
        raise ServerError(f"{what} failed: the answer is not JSON ({exc.__class__.__name__}:"
                          f" starts with {quoted(start)})", "check HOST",
                          status=response.status_code) from None


def _media_type(response: Response) -> str:
    """The answer's Content-Type without its parameters, in lower case."""
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


# A Warning header (RFC 9111 5.5; PS3.18 has servers send code 299 when an answer is
# incomplete or a parameter was ignored): a code, the agent, then the quoted text, which
# may hold escaped quotes; several per header, comma-separated.
_WARNING = re.compile(r'\d{3}\s+\S+\s+"((?:[^"\\]|\\.)*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")


def warning_texts(headers: list[str]) -> list[str]:
    """The texts of an answer's Warning headers, unquoted, in order."""
    return [_QUOTED_PAIR.sub(r"\1", text) for header in headers
            for text in _WARNING.findall(header)]


def server_message(response: Response) -> str:
    """The human part of an error body; nothing from a web page (its markup says
    nothing: a proxy's or a sign-in page)."""
    try:
        raw = read_limited(response, 64 * 1024)
    except (TransportError, UnavailableError):
        return ""
    text = raw.decode(response.encoding or "utf-8", "replace")
    return "" if is_web_page(_media_type(response), text) else body_message(text)


def is_web_page(media_type: str, text: str) -> bool:
    """Whether an answer (its media type in lower case, and its text) is a web page."""
    return media_type in ("text/html", "application/xhtml+xml") or text.lstrip()[:9].lower(
        ).startswith(("<!doctype", "<html"))


def body_message(text: str) -> str:
    """Google's error envelope, Orthanc's JSON error, or the first line of text."""
    text = text.strip()
    if text[:1] in "{[":
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError):
            payload = None
        if isinstance(payload, dict):
            error = payload.get("error")
            if isinstance(error, dict) and error.get("message"):
                return str(error["message"])
            if isinstance(error, str):
                return error
            parts = [str(payload[k]) for k in ("Message", "Details") if payload.get(k)]
            return ": ".join(parts)
        if payload is not None:
            return ""  # JSON with nothing readable (e.g. a DICOM data set)
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return shorten(first_line, 300)
