"""Describe an answer of the wrong kind (a login page, a viewer app, an error envelope),
so that the message says what came back and what HOST should look like.

A 200 is not proof of anything: a single sign-on page or a web viewer at the wrong path
answers 200 too.
"""

from __future__ import annotations

import re

from .http import body_message, read_limited
from .multipart import parse_content_type
from .transport import Response, TransportError

HOST_HINT = ("HOST must be the DICOMweb base URL, e.g. https://healthcare.googleapis.com/v1/"
             "projects/P/locations/L/datasets/D/dicomStores/S/dicomWeb or "
             "http://127.0.0.1:8042/dicom-web")
_TITLE = re.compile(rb"<title[^>]*>\s*([^<]{1,200}?)\s*<", re.IGNORECASE)
SNIFF_BYTES = 16 * 1024


def describe_answer(response: Response) -> str:
    """'text/html (a web page titled "Sign in")', 'application/json: quota exceeded',
    'no Content-Type'. Reads at most SNIFF_BYTES of the body."""
    mime, _ = parse_content_type(response.headers.get("Content-Type", ""))
    what = mime or "no Content-Type"
    try:
        head = read_limited(response, SNIFF_BYTES)
    except TransportError:
        return what
    title = _TITLE.search(head)
    if title:
        return f'{what} (a web page titled "{title.group(1).decode("utf-8", "replace")}")'
    if mime == "text/html" or head.lstrip()[:5].lower() in (b"<!doc", b"<html"):
        return f"{what} (a web page)"
    if not (mime.startswith("text/") or mime.endswith(("json", "xml"))):
        return what  # binary: nothing readable to quote
    detail = body_message(head.decode("utf-8", "replace"))
    return f"{what}: {detail[:200]}" if detail else what
