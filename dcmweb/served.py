"""Whether the server serves an instance now, asked of its metadata (then its retrieve).

Searches lag behind deletes: on Google's API "a deleted instance can still show in
searches for a few seconds", while a retrieve of it answers 404 at once. A search row is
then no proof that the server holds what it lists, where that may have been deleted
moments ago: a delete just run, or a store after one. There dcmweb asks the server for
one instance the listing names (a study or series is checked by one of its instances,
never by a study or series retrieve, which would make the server start sending it all):

- its metadata (``.../instances/I/metadata``, a few KB of JSON), read to the end, so the
  keep-alive connection is used again: a check costs one small round trip;
- only when that answers 404 (or another "not served here" status: tiny-pacs answers 404
  to every metadata request), a retrieve of the instance, its status read and the answer
  closed unread: a 404 there too is an instance deleted moments ago; a 2xx, a server that
  does not serve metadata, and the instance is served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from .answer import Response
from .http import Http
from .paths import ResourcePath, safe_uid
from .redact import redact_url

log = logging.getLogger("dcmweb")

# A retrieve of the stored bytes: no server converts anything before it answers.
_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
GONE = "searches lag behind deletes"  # the why, in messages that quote a search
# An instance's metadata is KBs (bulk data comes as BulkDataURI); past this it is not
# read on: the answer is closed (the connection dropped), and its status still tells.
METADATA_BOUND = 1 << 20
# What a server that does not serve instance metadata answers it: the retrieve decides.
_NO_METADATA = (400, 404, 405, 406, 415, 501)


def served(http: Http, base_url: str, instance: ResourcePath,
           listed: ResourcePath | None = None) -> bool:
    """True when the server serves the instance (its metadata, or else its retrieve, is
    answered), False when both answer 404; anything else raises as the retrieve would
    (a DcmwebError).

    With ``listed``, the study or series whose listing named the instance: the question
    is whether the server still holds that. An instance gone alone (deleted moments ago
    from a series whose other instances stay) does not show it gone, so the listed path
    itself is asked then, once: only on this rare path does a retrieve of a whole study
    or series start (and is closed unread)."""
    assert instance.level == "instance", instance  # never a whole study or series
    path = instance.url_path()
    response = http.request("GET", f"{base_url}/{path}/metadata",
                            what=f"retrieve {path}/metadata",
                            headers={"Accept": "application/dicom+json"}, stream=True,
                            accept_status=_NO_METADATA)
    with response:
        status = response.status_code
        _drain(response)
    if status not in _NO_METADATA:
        return True
    if _retrieved(http, base_url, instance):
        return True
    return listed is not None and listed.level != "instance" and _retrieved(
        http, base_url, listed)


def _retrieved(http: Http, base_url: str, resource: ResourcePath) -> bool:
    """Whether a retrieve of the resource is answered (not 404); its answer is closed
    unread: only the status tells."""
    path = resource.url_path()
    response = http.request("GET", f"{base_url}/{path}", what=f"retrieve {path}",
                            headers={"Accept": _ACCEPT}, stream=True, accept_status=(404,))
    with response:
        return response.status_code != 404


def _drain(response: Response) -> None:
    """Read a small answer to its end (the connection then goes back to the pool); one
    past METADATA_BOUND is left unread, and closing it drops the connection."""
    read = 0
    for chunk in response.iter_content():
        read += len(chunk)
        if read > METADATA_BOUND:
            return


def listed_instance(target: ResourcePath, row: Mapping[str, Any]) -> ResourcePath | None:
    """The instance a search row under ``target`` names (the UIDs the target gives, the
    others from the row), or None when the row names none that can be asked for."""
    from .rows import value  # listings only: a store's start-up does without it

    uids = (target.study or value(row, "0020000D"), target.series or value(row, "0020000E"),
            value(row, "00080018"))
    study, series, sop = (safe_uid(uid) for uid in uids)
    return ResourcePath(study, series, sop) if study and series and sop else None


def served_on(http: Http, base_url: str
              ) -> Callable[[ResourcePath, ResourcePath | None], bool]:
    """:func:`served` bound to a session: what a listing checks an instance it lists with."""
    return partial(served, http, base_url)


def served_probe(http: Http, base_url: str, resource: ResourcePath) -> bool | None:
    """Whether a retrieve of the resource is answered, asked as the probes after an error
    are (``hostprobe.ask``: the run's session, a 3 s timeout, never retried), its status
    read and the answer closed unread: None when no answer tells."""
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
