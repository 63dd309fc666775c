"""Describe an answer of the wrong kind (a login page, a viewer app, an error envelope),
so that the message says what came back and what HOST should look like.

A 200 is not proof of anything: a single sign-on page or a web viewer at the wrong path
answers 200 too.
"""

from __future__ import annotations

import re

from .body import body_message, read_limited
from .errors import ServerError
from .multipart import parse_content_type
from .redact import shorten
from .transport import Response, TransportError

HOST_HINT = ("HOST must be the DICOMweb base URL, e.g. https://healthcare.googleapis.com/v1/"
             "projects/P/locations/L/datasets/D/dicomStores/S/dicomWeb or "
             "http://127.0.0.1:8042/dicom-web")
_TITLE = re.compile(rb"<title[^>]*>\s*([^<]{1,200}?)\s*<", re.IGNORECASE)
SNIFF_BYTES = 16 * 1024


def not_dicomweb(what: str, status: int, described: str, expected: str) -> ServerError:
    """The error for a 2xx answer that is not the DICOMweb data asked for: what came back
    (``described``), what was expected, and what HOST should look like. Its status lets
    Client.explain probe the likely base."""
    return ServerError(f"{what}: the server answered HTTP {status} with {described}, not "
                       f"DICOMweb data ({expected})", HOST_HINT, status=status)


def describe_answer(response: Response) -> str:
    """'text/html (a web page titled "Sign in")', 'application/json: quota exceeded',
    'no Content-Type'. Reads at most SNIFF_BYTES of the body."""
    try:
        head = read_limited(response, SNIFF_BYTES)
    except TransportError:
        head = None
    return describe_body(response.headers.get("Content-Type", ""), head)


def describe_body(content_type: str, head: bytes | None) -> str:
    """:func:`describe_answer` for a body already read (its first bytes; None when they
    could not be read)."""
    mime, _ = parse_content_type(content_type)
    what = mime or "no Content-Type"
    if head is None:
        return what
    head = head[:SNIFF_BYTES]
    title = _TITLE.search(head)
    if title:
        return f'{what} (a web page titled "{title.group(1).decode("utf-8", "replace")}")'
    if mime == "text/html" or head.lstrip()[:5].lower() in (b"<!doc", b"<html"):
        return f"{what} (a web page)"
    if not (mime.startswith("text/") or mime.endswith(("json", "xml"))):
        return what  # binary: nothing readable to quote
    detail = body_message(head.decode("utf-8", "replace"))
    return f"{what}: {shorten(detail, 200)}" if detail else what
