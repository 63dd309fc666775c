"""Send ``^`` in a query string as itself, not as ``%5E``.

Orthanc's DICOMweb plugin does not percent-decode query values: ``PatientName=DOE%5EJOHN``
finds nothing there, while ``PatientName=DOE^JOHN`` finds the patient. requests and
urllib3 both percent-encode ``^`` (RFC 3986 leaves it out of a query), so the last step
before the request line is written puts it back. Google's front end and every server
tried here take a bare ``^``; in a correctly escaped query each ``%5E`` is an escaped
``^`` (a literal ``%`` travels as ``%25``), so nothing else changes.
"""

from __future__ import annotations

from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


def unescape_caret(target: str) -> str:
    """The request target with ``%5E`` in its query turned back into ``^``."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    return f"{path}?{query.replace('%5E', '^').replace('%5e', '^')}"


class _CaretPool(HTTPConnectionPool):
    def _make_request(self, conn: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        return super()._make_request(conn, method, unescape_caret(url), *args, **kwargs)


class _CaretHTTPSPool(HTTPSConnectionPool):
    def _make_request(self, conn: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        return super()._make_request(conn, method, unescape_caret(url), *args, **kwargs)


class CaretAdapter(HTTPAdapter):
    """An HTTPAdapter whose connection pools send ``^`` unescaped in queries."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _CaretPool,
                                                   "https": _CaretHTTPSPool}
