"""Whether the server serves a study, series or instance now, asked of a retrieve.

Searches lag behind deletes: on Google's API "a deleted instance can still show in
searches for a few seconds", while a retrieve of it answers 404 at once. A search row is
then no proof that the server holds what it lists, where that may have been deleted
moments ago: a delete just run, or a store after one. There dcmweb asks a retrieve of the
resource, reads its status and closes it unread (a study may be gigabytes; the
connection is not reused). Every server answers it: Google, Orthanc and tiny-pacs alike.
"""

from __future__ import annotations

from .http import Http
from .paths import ResourcePath

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
