"""After a failure that a wrong HOST explains, say what HOST should be.

A HOST one level off the DICOMweb base (Orthanc's root without ``/dicom-web``, a Google
store without ``/dicomWeb``, a viewer's web page) gets answers that do not say so:
Orthanc answers a search at its root with 400 ("Missing since argument"), a store with
405, a retrieve with 404; a single sign-on page answers 200. Only after such a failure,
one GET asks the likely base for a one-row search; when it answers like DICOMweb, the
error gets a line ``HOST looks like the server's root; did you mean URL?``.

Never after a 5xx, 429, a timeout, a refused or dropped connection (the server is
unwell, not misaddressed: a probe would only add load), never for a HOST that already
ends in a DICOMweb base (``/dicom-web``, ``/dicomWeb``: there a 404 means missing
UIDs), at most once per :class:`~dcmweb.client.Client`, and a probe that fails in any
way adds nothing. (A HOST ending in a resource path, ``.../studies``, is refused before
any request: see ``client.normalize_host``.)
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

from .body import read_limited
from .errors import DcmwebError, Unserved
from .http import Http
from .redact import redact_url

log = logging.getLogger("dcmweb")

# What a misaddressed server answers: a path it does not know, a method it does not
# take there, or (Orthanc's REST API under the same names) a query it cannot read.
PROBE_STATUSES = frozenset({400, 404, 405})
PROBE_TIMEOUT = 3.0  # seconds to connect, and between bytes of the answer
PROBE_BYTES = 64 * 1024
_BASE = re.compile(r"/dicom-?web$", re.IGNORECASE)
_GOOGLE_STORE = re.compile(r"/dicomStores/[^/]+$")
_PAGE = re.compile(r"\.(html?|php|aspx?|jsp)$", re.IGNORECASE)


class Guess(NamedTuple):
    """What HOST looks like, and the DICOMweb base to try instead."""

    looks_like: str
    base: str


def guess(host: str) -> Guess | None:
    """The base to try for HOST, from its shape alone; None when HOST looks right."""
    parts = urlsplit(host)
    path = parts.path.rstrip("/")
    if _BASE.search(path):
        return None
    if _GOOGLE_STORE.search(path):
        return Guess("a DICOM store, not its DICOMweb base", f"{host}/dicomWeb")
    if not path:
        return Guess("the server's root", f"{host}/dicom-web")
    if _PAGE.search(path):
        root = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        return Guess("a web page", f"{root}/dicom-web")
    return Guess("a path above the DICOMweb base", f"{host}/dicom-web")


def worth_probing(error: DcmwebError) -> bool:
    """A status a wrong HOST gets: 400/404/405, or a 2xx that was not DICOMweb (not a
    404 a search at HOST has explained already: see unserved.py)."""
    status = error.status
    return status is not None and not isinstance(error, Unserved) and (
        status in PROBE_STATUSES or 200 <= status < 300)


def _rows(status: int, content_type: str, body: bytes) -> list[dict] | None:
    """A search answer's rows (no content: none), or None when it is not one."""
    if status == 204 or (200 <= status < 300 and not body.strip()):
        return []
    if not 200 <= status < 300 or "json" not in content_type.lower():
        return None
    try:
        rows = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(rows, list) and all(isinstance(row, dict) for row in rows):
        return rows
    return None


def answers_dicomweb(status: int, content_type: str, body: bytes) -> bool:
    """A search answer: no content, or a JSON array of objects."""
    return _rows(status, content_type, body) is not None


def ask(http: Http, url: str, limit: int = PROBE_BYTES) -> list[dict] | None:
    """One GET of a search through the run's session (its credentials, TLS settings and
    proxies), never retried nor waited for long; its rows, or None when the answer is
    not a search answer of at most ``limit`` bytes, or there is none."""
    try:
        headers = {"Accept": "application/dicom+json", **http.auth.headers()}
        with http.transport.request("GET", url, headers=headers,
                                    timeout=(PROBE_TIMEOUT, PROBE_TIMEOUT)) as response:
            body = read_limited(response, limit + 1)
            log.debug("probe: GET %s -> %s", redact_url(url), response.status_code)
            if len(body) > limit:
                return None
            return _rows(response.status_code, response.headers.get("Content-Type", ""), body)
    except Exception as exc:  # anything: a probe must never replace the real error
        log.debug("probe: GET %s failed: %s", redact_url(url), type(exc).__name__)
        return None


def probe(http: Http, base: str) -> bool:
    """One GET of a one-row study search at ``base``; True when it answers like
    DICOMweb."""
    return ask(http, f"{base}/studies?limit=1") is not None


class HostProbe:
    """At most one probe for one HOST (one Client, one run)."""

    def __init__(self, http: Http, host: str) -> None:
        self.http = http
        self.host = host
        self._lock = threading.Lock()
        self._used = False

    def explain(self, error: DcmwebError) -> bool:
        """Add a line to ``error`` saying what HOST should be, when a wrong HOST explains
        it and the likely base answers like DICOMweb; True when a line was added."""
        target = guess(self.host)
        if target is None or not worth_probing(error):
            return False
        with self._lock:
            if self._used:
                return False
            self._used = True
        if not probe(self.http, target.base):
            return False
        error.add_line(f"HOST looks like {target.looks_like}; did you mean {target.base}?")
        return True
