"""google-auth's HTTP hook on dcmweb's own transport, for fetching access tokens.

google-auth asks a ``google.auth.transport.Request`` to reach its token endpoints (the
OAuth server, the metadata server, STS). Its requests-based one would import requests
for every run against Google; this one uses the same transport as the DICOMweb calls
(proxies from the environment, certifi's certificates) and dcmweb's timeouts.

A token endpoint that does not answer, or answers 5xx or 429, raises
:class:`~dcmweb.errors.TokenUnavailable` (an outage the HTTP loop waits out, not
google-auth's own retries); a token request answered 200 with something that is not JSON
(a captive portal's page) is an :class:`~dcmweb.errors.AuthError` naming what came.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import google.auth.transport

from .errors import AuthError, TokenUnavailable
from .redact import redact_url
from .transport import Transport, TransportError

_MESSAGE = "could not get a Google access token"


def _endpoint(url: str) -> str:
    """The token endpoint as messages name it: no query, no userinfo."""
    return redact_url(url.partition("?")[0])


def _hint(url: str) -> str:
    return (f"the token endpoint {_endpoint(url)} is unreachable or failing: check the "
            "network (and HTTPS_PROXY) to it, or try again later")


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
    """Sends google-auth's token requests within ``timeout`` (connect, read seconds)."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        self.transport = Transport(pool_size=2)
        self.timeout = timeout

    def __call__(self, url: str, method: str = "GET", body: Any = None,
                 headers: Mapping[str, str] | None = None, timeout: Any = None,
                 **kwargs: Any) -> _TokenResponse:
        connect, read = self.timeout
        if timeout is not None:  # google-auth's own limit (a metadata probe) when shorter
            asked = tuple(timeout) if isinstance(timeout, (tuple, list)) else (timeout,) * 2
            connect, read = min(connect, float(asked[0])), min(read, float(asked[1]))
        try:
            with self.transport.request(method, url, headers=headers, data=body,
                                        timeout=(connect, read)) as answer:
                response = _TokenResponse(answer.status_code, dict(answer.headers.items()),
                                          answer.content)
        except TransportError as exc:
            raise TokenUnavailable(f"{_MESSAGE}: no answer from the token endpoint "
                                   f"{_endpoint(url)} ({exc})", _hint(url)) from None
        if response.status >= 500 or response.status == 429:
            raise TokenUnavailable(f"{_MESSAGE}: the token endpoint {_endpoint(url)} answered"
                                   f" HTTP {response.status}", _hint(url))
        if method.upper() == "POST" and response.status == 200:
            _check_json(url, response)
        return response


def _check_json(url: str, response: _TokenResponse) -> None:
    """A token request's 200 must be JSON (google-auth would index a web page's text)."""
    try:
        payload = json.loads(response.data)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        kind = next((value for name, value in response.headers.items()
                     if name.lower() == "content-type"), "") or "no Content-Type"
        raise AuthError(f"{_MESSAGE}: the token endpoint {_endpoint(url)} answered HTTP 200"
                        f" with {kind.split(';')[0].strip()}, not a token",
                        "a proxy or a sign-in page may be answering instead of it: check"
                        " the network (and HTTPS_PROXY) to it")
