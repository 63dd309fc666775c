"""Keep secrets out of everything dcmweb shows: userinfo in URLs becomes ``***``.

A HOST such as ``http://alice:PW@host/dicom-web`` works (requests turns the userinfo
into basic authentication), but the URL is what error messages, ``-v`` logs, reports
and tracebacks print. Every message passes through :func:`redact_text`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# scheme://userinfo@ : the userinfo is everything up to the last '@' before the path.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")
HIDDEN = "***"


def redact_url(url: str) -> str:
    """The URL with any user name and password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 literal: fall back to the text rule
        return redact_text(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{HIDDEN}@{host}"))


def redact_text(text: str) -> str:
    """Any text (an exception message, a log line) with URL userinfo hidden."""
    return _USERINFO.sub(rf"\1{HIDDEN}@", text) if "@" in text else text
