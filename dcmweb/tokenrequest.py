"""google-auth's HTTP hook on dcmweb's own transport, for fetching access tokens.

google-auth asks a ``google.auth.transport.Request`` to reach its token endpoints (the
OAuth server, the metadata server, STS). Its requests-based one would import requests
for every run against Google; this one uses the same transport as the DICOMweb calls
(proxies from the environment, certifi's certificates).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import google.auth.exceptions
import google.auth.transport

from .transport import Transport, TransportError

DEFAULT_TIMEOUT = 120.0


class _TokenResponse(google.auth.transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status, self._headers, self._data = status, dict(headers), data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class TokenRequest(google.auth.transport.Request):
    """Sends google-auth's token requests; failures become its TransportError."""

    def __init__(self) -> None:
        self.transport = Transport(pool_size=2)

    def __call__(self, url: str, method: str = "GET", body: Any = None,
                 headers: Mapping[str, str] | None = None, timeout: Any = None,
                 **kwargs: Any) -> _TokenResponse:
        seconds = DEFAULT_TIMEOUT if timeout is None else timeout
        pair = tuple(seconds) if isinstance(seconds, (tuple, list)) else (seconds, seconds)
        try:
            with self.transport.request(method, url, headers=headers, data=body,
                                        timeout=(float(pair[0]), float(pair[1]))) as answer:
                return _TokenResponse(answer.status_code, dict(answer.headers.items()),
                                      answer.content)
        except TransportError as exc:
            raise google.auth.exceptions.TransportError(exc) from exc
