"""HTTP/1.1 on the standard library's ``http.client``: pooled keep-alive connections,
proxies from the environment (netenv.py), TLS verification, bodies streamed both ways.

dcmweb follows redirects, retries and rebuilds bodies itself (http.py), so it needs only
this much of an HTTP stack. Importing requests with urllib3 took longer than a whole
command's start-up budget (docs/performance.md, F); ``http.client`` takes about 20 ms.

Behaviour kept from requests, which dcmweb 0.1 used: the same default headers
(``Accept: */*``, ``Accept-Encoding: gzip, deflate``), gzip and deflate answers decoded,
``Content-Length: 0`` on a write without a body, CA certificates from certifi unless
``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` names others, ``HTTP(S)_PROXY``,
``ALL_PROXY`` and ``NO_PROXY``, and when the request carries no Authorization header,
the URL's ``user:password`` or else a ``~/.netrc`` (or ``$NETRC``) entry for the host.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from .answer import Response
from .netenv import environ_proxy, netrc_authorization, tls_context, userinfo_authorization
from .neterrors import (
    ConnectError,
    ConnectTimeout,
    InvalidHeader,
    InvalidURL,
    NotHTTP,
    ProxyError,
    ReadTimeout,
    TLSError,
    TransportError,
)
from .rawquery import unescape_caret

__all__ = ["ConnectError", "ConnectTimeout", "InvalidHeader", "InvalidURL", "NotHTTP",
           "ProxyError", "ReadTimeout", "Response", "TLSError", "Transport", "TransportError",
           "default_port", "environ_proxy", "split_url"]

DEFAULT_HEADERS = {"Accept-Encoding": "gzip, deflate", "Accept": "*/*",
                   "Connection": "keep-alive"}
SEND_BLOCK = 256 * 1024  # bytes read from a body (file or multipart) per send
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What requests leaves unescaped when it re-quotes a URL; '%' keeps existing escapes.
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"

Timeout = tuple[float, float]  # (connect, read) in seconds


def _encode_params(params: Any) -> str:
    """A query from a mapping or a sequence of pairs (a list value repeats the key; None
    drops it), as requests encodes it: spaces as '+'."""
    if not params:
        return ""
    if isinstance(params, (str, bytes)):
        return params.decode() if isinstance(params, bytes) else params
    pairs: list[tuple[str, str]] = []
    for key, values in (params.items() if isinstance(params, Mapping) else params):
        items = values if isinstance(values, (list, tuple)) else [values]
        pairs += [(str(key), str(value)) for value in items if value is not None]
    return urlencode(pairs)


def split_url(url: str, params: Any = None) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of ``url`` with ``params`` added to its query."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"invalid URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidURL(f"no http:// or https:// in the URL {url!r}" if not scheme
                         else f"the URL scheme {scheme!r} is not http or https")
    if not parts.hostname:
        raise InvalidURL(f"no host in the URL {url!r}")
    query = "&".join(q for q in (parts.query, _encode_params(params)) if q)
    target = quote(parts.path or "/", safe=_URL_SAFE) + (
        "?" + quote(query, safe=_URL_SAFE) if query else "")
    # Queries keep '^' unescaped: Orthanc does not decode %5E (see rawquery.py).
    return scheme, parts.hostname, port or default_port(scheme), unescape_caret(target)


def default_port(scheme: str) -> int:
    return 443 if scheme.lower() == "https" else 80


def _check_header(name: str, value: str) -> None:
    if not name or any(c in name for c in ":\r\n\t ") or (
            value != value.lstrip() or "\r" in value or "\n" in value):
        raise InvalidHeader(f"the header {name!r} has a line break or leading whitespace")


class _Headers:
    """Request headers merged case-insensitively, later ones winning."""

    def __init__(self, *layers: Mapping[str, str] | None) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for layer in layers:
            for name, value in (layer or {}).items():
                if value is not None:
                    self._items[name.lower()] = (name, str(value))

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._items

    def set(self, name: str, value: str) -> None:
        self._items[name.lower()] = (name, value)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items.values())


Key = tuple[str, str, int, str | None]


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """True when an idle pooled connection was closed by the server (or has stray bytes):
    sending on it would fail or read someone else's answer."""
    sock = connection.sock
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True


class Transport:
    """Sends requests over pooled connections; one instance is shared by all threads."""

    def __init__(self, *, pool_size: int = 10, verify: bool | str = True,
                 headers: Mapping[str, str] | None = None) -> None:
        self.pool_size = max(pool_size, 1)
        self.verify = verify
        self.headers = {**DEFAULT_HEADERS, **(headers or {})}
        self._idle: dict[Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        # What the environment says per host, read once: a bulk store sends 100,000s of
        # requests, and a stat (and parse) of ~/.netrc each time would be waste.
        self._proxies: dict[tuple[str, str, int], str | None] = {}
        self._netrc: dict[str, str | None] = {}

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def request(self, method: str, url: str, *, params: Any = None,
                headers: Mapping[str, str] | None = None, data: Any = None,
                timeout: Timeout = (10.0, 300.0)) -> Response:
        """Send one request (no redirects followed) and return its answer once the status
        line and headers arrived; the body is read from the :class:`Response`."""
        method = method.upper()
        scheme, host, port, target = split_url(url, params)
        if (scheme, host, port) not in self._proxies:
            self._proxies[scheme, host, port] = environ_proxy(scheme, host, port)
        proxy = self._proxies[scheme, host, port]
        merged = _Headers(self.headers, headers)
        for name, value in merged.items():
            _check_header(name, value)
        if "Authorization" not in merged:  # the URL's user:password, else ~/.netrc
            found = userinfo_authorization(url)
            if found is None:
                if host not in self._netrc:
                    self._netrc[host] = netrc_authorization(host)
                found = self._netrc[host]
            if found:
                merged.set("Authorization", found)
        body, length = _body(data)
        if length is not None:
            merged.set("Content-Length", str(length))
        elif body is None and method in BODY_METHODS:
            merged.set("Content-Length", "0")
        if proxy and scheme == "http":  # a forward proxy: the whole URL is the target
            target = f"http://{_netloc(host, port, scheme)}{target}"
            proxy_auth = userinfo_authorization(proxy)
            if proxy_auth:
                merged.set("Proxy-Authorization", proxy_auth)
        key: Key = (scheme, host, port, proxy)
        connection = self._connection(key, timeout)
        try:
            raw = self._exchange(connection, method, target, merged, body, timeout[1])
        except BaseException:
            connection.close()
            raise

        def release(reusable: bool) -> None:
            self._give_back(key, connection, reusable)

        return Response(raw, url, release)

    # -- pooling ---------------------------------------------------------------------------
    def _connection(self, key: Key, timeout: Timeout) -> http.client.HTTPConnection:
        with self._lock:
            idle = self._idle.get(key, [])
            while idle:
                connection = idle.pop()
                if not _dropped(connection):
                    return connection
                connection.close()
        return self._connect(key, timeout)

    def _give_back(self, key: Key, connection: http.client.HTTPConnection,
                   reusable: bool) -> None:
        if reusable and connection.sock is not None:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self.pool_size:
                    idle.append(connection)
                    return
        connection.close()

    def _connect(self, key: Key, timeout: Timeout) -> http.client.HTTPConnection:
        scheme, host, port, proxy = key
        connection: http.client.HTTPConnection
        if proxy is not None:
            proxy_parts = urlsplit(proxy)
            if proxy_parts.scheme.lower() not in ("http", ""):
                raise ProxyError(f"the proxy scheme {proxy_parts.scheme!r} is not supported"
                                 " (only http:// proxies)")
            where = (proxy_parts.hostname or "", proxy_parts.port or 80)
        else:
            where = (host, port)
        if scheme == "https":
            if self._context is None:
                self._context = tls_context(self.verify)
            connection = http.client.HTTPSConnection(
                *where, timeout=timeout[0], context=self._context, blocksize=SEND_BLOCK)
            if proxy is not None:
                auth = userinfo_authorization(proxy)
                connection.set_tunnel(host, port, headers={"Proxy-Authorization": auth}
                                      if auth else None)
        else:
            connection = http.client.HTTPConnection(*where, timeout=timeout[0],
                                                    blocksize=SEND_BLOCK)
        try:
            connection.connect()
        except TimeoutError as exc:
            connection.close()
            timed_out: type[ConnectError] = ProxyError if proxy is not None else ConnectTimeout
            raise timed_out(f"no connection within {timeout[0]:g} s") from exc
        except (ssl.SSLError, ssl.CertificateError) as exc:
            connection.close()
            raise TLSError(str(exc)) from exc
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            failed: type[ConnectError] = ProxyError if proxy is not None else ConnectError
            raise failed(str(exc) or type(exc).__name__) from exc
        return connection

    # -- one exchange ----------------------------------------------------------------------
    @staticmethod
    def _exchange(connection: http.client.HTTPConnection, method: str, target: str,
                  headers: _Headers, body: Any, read_timeout: float
                  ) -> http.client.HTTPResponse:
        if connection.sock is not None:
            connection.sock.settimeout(read_timeout)
        try:
            connection.putrequest(method, target, skip_host="Host" in headers,
                                  skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
        except http.client.InvalidURL as exc:
            raise InvalidURL(str(exc)) from None
        first = body if body is None or isinstance(body, bytes) else None
        try:
            _write(lambda: connection.endheaders(first))
            if first is None and body is not None:
                # Read errors of the body (a file) are the caller's, not the network's.
                while block := body.read(SEND_BLOCK):
                    _write(lambda: connection.send(block))
        except _Closed as closed:
            # The server may have answered early (a 401, a 413) and closed: read it.
            try:
                return connection.getresponse()
            except (OSError, http.client.HTTPException):
                raise TransportError(f"the connection dropped while sending: {closed}"
                                     ) from closed.__cause__
        try:
            return connection.getresponse()
        except TimeoutError as exc:
            raise ReadTimeout("no answer within the read timeout") from exc
        except http.client.RemoteDisconnected as exc:  # a BadStatusLine too: first
            raise TransportError(f"the connection dropped: {exc!r}") from exc
        except (http.client.BadStatusLine, http.client.LineTooLong) as exc:
            line = getattr(exc, "line", "")
            raise NotHTTP(f"it starts with {line[:40]!r}" if isinstance(line, str) and line
                          else str(exc)) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(f"the connection dropped: {exc!r}") from exc


class _Closed(TransportError):
    """The server closed the connection while the request was being sent."""


def _write(send: Callable[[], None]) -> None:
    try:
        send()
    except TimeoutError as exc:
        raise ReadTimeout("the server took no bytes within the read timeout") from exc
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise _Closed(repr(exc)) from exc
    except OSError as exc:
        raise TransportError(f"the connection dropped while sending: {exc!r}") from exc


def _body(data: Any) -> tuple[Any, int | None]:
    """The body as bytes or a readable object, and its length when known."""
    if data is None:
        return None, None
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), len(data)
    if hasattr(data, "read") and hasattr(data, "__len__"):
        # Rewindable bodies (multipart.MultipartBody, filebody.SizedFileBody): what is
        # left from where it stands.
        return data, len(data) - data.tell()
    raise TypeError(f"cannot send a body of type {type(data).__name__}")


def _netloc(host: str, port: int, scheme: str) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port == default_port(scheme) else f"{name}:{port}"
