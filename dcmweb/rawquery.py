"""Send ``^`` in a query string as itself, not as ``%5E``.

Orthanc's DICOMweb plugin does not percent-decode query values: ``PatientName=DOE%5EJOHN``
finds nothing there, while ``PatientName=DOE^JOHN`` finds the patient. URL quoting
percent-encodes ``^`` (RFC 3986 leaves it out of a query), so the last step before the
request line is written puts it back (transport.py). Google's front end and every server
tried here take a bare ``^``; in a correctly escaped query each ``%5E`` is an escaped
``^`` (a literal ``%`` travels as ``%25``), so nothing else changes.
"""

from __future__ import annotations


def unescape_caret(target: str) -> str:
    """The request target with ``%5E`` in its query turned back into ``^``."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    return f"{path}?{query.replace('%5E', '^').replace('%5e', '^')}"
