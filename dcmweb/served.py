"""Whether the server serves a study, series or instance now, asked of a retrieve.

Searches lag behind deletes: on Google's API "a deleted instance can still show in
searches for a few seconds", while a retrieve of it answers 404 at once. A search row is
then no proof that the server holds what it lists, where that may have been deleted
moments ago: a delete just run, or a store after one. There dcmweb asks a retrieve of the
resource, reads its status and closes it unread (a study may be gigabytes; the
connection is not reused). Every server answers it: Google, Orthanc and tiny-pacs alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from .http import Http
from .paths import ResourcePath
from .redact import redact_url

log = logging.getLogger("dcmweb")

# A retrieve of the stored bytes: no server converts anything before it answers.
_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
GONE = "searches lag behind deletes"  # the why, in messages that quote a search


def served(http: Http, base_url: str, resource: ResourcePath) -> bool:
    """True when a retrieve of the study, series or instance is answered, False when it
    is a 404; anything else raises as the retrieve would (a DcmwebError)."""
    path = resource.url_path()
    response = http.request("GET", f"{base_url}/{path}", what=f"retrieve {path}",
                            headers={"Accept": _ACCEPT}, stream=True, accept_status=(404,))
    with response:
        return response.status_code != 404


def served_on(http: Http, base_url: str) -> Callable[[ResourcePath], bool]:
    """:func:`served` bound to a session: what a listing checks the path it lists with."""
    return partial(served, http, base_url)


def served_probe(http: Http, base_url: str, resource: ResourcePath) -> bool | None:
    """:func:`served` asked as the probes after an error are (``hostprobe.ask``: the run's
    session, a 3 s timeout, never retried): None when no answer tells."""
    from .hostprobe import PROBE_TIMEOUT

    url = f"{base_url}/{resource.url_path()}"
    try:
        with http.transport.request("GET", url, timeout=(PROBE_TIMEOUT, PROBE_TIMEOUT),
                                    headers={"Accept": _ACCEPT, **http.auth.headers()}
                                    ) as response:
            status = response.status_code
    except Exception as exc:  # anything: a probe must never replace the real error
        log.debug("probe: GET %s failed: %s", redact_url(url), type(exc).__name__)
        return None
    log.debug("probe: GET %s -> %s", redact_url(url), status)
    return True if 200 <= status < 300 else False if status == 404 else None
