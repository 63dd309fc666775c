"""Keep secrets out of everything dcmweb shows: userinfo in URLs and the credentials it
sends become ``***``, and so do the values of a query's patient keys (PatientName=***).

A HOST such as ``http://alice:PW@host/dicom-web`` works (the userinfo becomes basic
authentication), but the URL is what error messages, ``-v`` logs, reports and tracebacks
print. A server or proxy may also quote the credentials it was sent in its error body,
which dcmweb shows. Every message passes through :func:`redact_text`.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import unquote_plus, urlsplit, urlunsplit

# scheme://userinfo@ : the userinfo is everything up to the last '@' before the path.
# Letters spelled in both cases: with (?i) the pattern takes 0.5 ms to compile, not 0.1.
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")
HIDDEN = "***"
MIN_SECRET = 6  # a shorter value would be found inside ordinary words and hidden there
# Query keys whose values name or identify a patient, by keyword or tag (also as a step of
# an attribute path: OtherPatientIDsSequence.PatientID): a -v log or a message shows the
# request's shape, not who it looked for.
_PATIENT_KEYS = frozenset(key.lower() for key in (
    "PatientName", "00100010", "PatientID", "00100020", "PatientBirthDate", "00100030",
    "PatientBirthTime", "00100032", "OtherPatientIDs", "00101000", "OtherPatientNames",
    "00101001", "PatientBirthName", "00101005", "PatientMotherBirthName", "00101060",
    "PatientAddress", "00101040", "PatientTelephoneNumbers", "00102154",
    "MedicalRecordLocator", "00102180"))
# Replaced whole (never changed in place): a thread may be reading it meanwhile.
_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()


def hide(secret: str) -> None:
    """Never show ``secret`` (a token, a password, a credential header's value)."""
    global _secrets
    secret = secret.strip()
    if len(secret) >= MIN_SECRET and secret not in _secrets:
        with _secrets_lock:
            if secret not in _secrets:
                _secrets = (*_secrets, secret)


def redact_url(url: str) -> str:
    """The URL with any user name and password, and the value of each patient key in its
    query, replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 literal: fall back to the text rule
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rpartition('@')[2]}"
    query = "&".join(_hide_patient_value(field) for field in parts.query.split("&"))
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _hide_patient_value(field: str) -> str:
    """``key=value`` with the value hidden when the key (or a step of its path) is a
    patient key."""
    name, equals, value = field.partition("=")
    steps = unquote_plus(name).lower().split(".")
    if value and any(step in _PATIENT_KEYS for step in steps):
        return f"{name}{equals}{HIDDEN}"
    return field


def redact_text(text: str) -> str:
    """Any text (an exception message, a log line) with URL userinfo and every secret
    given to :func:`hide` hidden."""
    if "@" in text:
        text = _USERINFO.sub(rf"\1{HIDDEN}@", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, HIDDEN)
    return text
