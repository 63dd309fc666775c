"""HTTP/1.1 requests over pooled keep-alive connections (wire.py speaks the protocol):
proxies from the environment (netenv.py), TLS verification, bodies streamed both ways.

dcmweb follows redirects, retries and rebuilds bodies itself (http.py), so it needs only
this much of an HTTP stack. Importing requests with urllib3 took longer than a whole
command's start-up budget (docs/performance.md, F), and ``http.client`` with the email
package and ssl about 28 ms; wire.py imports nothing heavier than socket and re.

Behaviour kept from requests, which dcmweb 0.1 used: the same default headers
(``Accept: */*``, ``Accept-Encoding: gzip, deflate`` but to a server on this machine),
gzip and deflate answers decoded,
``Content-Length: 0`` on a write without a body, CA certificates from certifi unless
``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` names others, ``HTTP(S)_PROXY``,
``ALL_PROXY`` and ``NO_PROXY``, and when the request carries no Authorization header,
the URL's ``user:password`` or else a ``~/.netrc`` (or ``$NETRC``) entry for the host.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from .answer import Response
from .limits import out_of_descriptors
from .netenv import environ_proxy, netrc_authorization, tls_context, userinfo_authorization
from .neterrors import (
    ConnectError,
    ConnectTimeout,
    EarlySuccess,
    InvalidHeader,
    InvalidURL,
    NoAnswer,
    ProxyError,
    ProxyRefused,
    ReadTimeout,
    SendStalled,
    TLSError,
    TransportError,
)
from .rawquery import unescape_caret
from .speed import LowSpeed, SpeedMeter
from .wire import (
    Answer,
    Connection,
    EarlyAnswer,
    FileSlice,
    Traffic,
    body_blocks,
    host_field,
    open_socket,
    request_head,
)

if TYPE_CHECKING:
    import ssl

__all__ = ["Response", "Transport", "TransportError", "default_port", "environ_proxy",
           "split_url"]

DEFAULT_HEADERS = {"Accept-Encoding": "gzip, deflate", "Accept": "*/*",
                   "Connection": "keep-alive"}
# A server on this machine is asked for no compression: the wire costs nothing there, and
# compressing costs the server's CPU (Orthanc's gzip of a 6 MB metadata answer: 25 ms),
# which on one machine is also the client's.
_LOOPBACK_HEADERS = {k: v for k, v in DEFAULT_HEADERS.items() if k != "Accept-Encoding"}
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


def _loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def _dropped(connection: Connection) -> bool:
    """True when an idle pooled connection was closed by the server (or has stray bytes):
    sending on it would fail or read someone else's answer."""
    sock = connection.sock
    if sock is None or connection.has_unread_bytes:
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
        self._loopback_headers = {**_LOOPBACK_HEADERS, **(headers or {})}
        self._idle: dict[Key, list[Connection]] = {}
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        # What the environment says per host, read once: a bulk store sends 100,000s of
        # requests, and a stat (and parse) of ~/.netrc each time would be waste.
        self._proxies: dict[tuple[str, str, int], str | None] = {}
        self._netrc: dict[str, str | None] = {}
        self.traffic = Traffic()  # bytes on their way and received, for progress

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def request(self, method: str, url: str, *, params: Any = None,
                headers: Mapping[str, str] | None = None, data: Any = None,
                timeout: Timeout = (10.0, 300.0), head_by: float | None = None,
                low_speed: LowSpeed | None = None) -> Response:
        """Send one request (no redirects followed) and return its answer once the status
        line and headers arrived; the body is read from the :class:`Response`.
        ``head_by`` (a ``time.monotonic()``): the status line and headers must have
        arrived whole by then, or one read timeout after the body was sent when sending
        took past it (:class:`~dcmweb.neterrors.SlowHead`): a server trickling them
        would otherwise hold the request forever. ``low_speed``: the body is cut
        (:class:`~dcmweb.neterrors.SendStalled`) when the server takes it slower."""
        method = method.upper()
        scheme, host, port, target = split_url(url, params)
        if (scheme, host, port) not in self._proxies:
            self._proxies[scheme, host, port] = environ_proxy(scheme, host, port)
        proxy = self._proxies[scheme, host, port]
        base = self._loopback_headers if proxy is None and _loopback(host) else self.headers
        merged = _Headers(base, headers)
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
            target = f"http://{host_field(host, port, default_port(scheme))}{target}"
            proxy_auth = userinfo_authorization(proxy)
            if proxy_auth:
                merged.set("Proxy-Authorization", proxy_auth)
        fields = merged.items()
        if "Host" not in merged:
            fields.insert(0, ("Host", host_field(host, port, default_port(scheme))))
        head = request_head(method, target, fields)
        key: Key = (scheme, host, port, proxy)
        connection = self._connection(key, timeout)
        try:
            raw = self._exchange(connection, method, head, body, timeout[1], head_by,
                                 low_speed)
        except BaseException:
            connection.close()
            raise
        finally:
            connection.request_ended()

        def release(reusable: bool) -> None:
            self._give_back(key, connection, reusable)

        return Response(raw, url, release)

    # -- pooling ---------------------------------------------------------------------------
    def _connection(self, key: Key, timeout: Timeout) -> Connection:
        with self._lock:
            idle = self._idle.get(key, [])
            while idle:
                connection = idle.pop()
                if not _dropped(connection):
                    return connection
                connection.close()
        return self._connect(key, timeout)

    def _give_back(self, key: Key, connection: Connection,
                   reusable: bool) -> None:
        if reusable and connection.sock is not None and not connection.has_unread_bytes:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self.pool_size:
                    idle.append(connection)
                    return
        connection.close()

    def _connect(self, key: Key, timeout: Timeout) -> Connection:
        scheme, host, port, proxy = key
        if proxy is not None:
            proxy_parts = urlsplit(proxy)  # an http:// URL: netenv.environ_proxy checked it
            where = (proxy_parts.hostname or "", proxy_parts.port or 80)
        else:
            where = (host, port)
        try:
            connection = Connection(open_socket(*where, timeout[0]), self.traffic)
        except TimeoutError as exc:
            timed_out: type[ConnectError] = ProxyError if proxy is not None else ConnectTimeout
            raise timed_out(f"no connection within {timeout[0]:g} s") from exc
        except OSError as exc:
            # No socket for lack of descriptors: retried as the server's outage, the run
            # ended "server unavailable" after --outage-limit.
            limit = out_of_descriptors(exc, f"cannot open a connection to {where[0]}:{where[1]}")
            if limit is not None:
                raise limit from exc
            failed: type[ConnectError] = ProxyError if proxy is not None else ConnectError
            raise failed(str(exc) or type(exc).__name__) from exc
        if scheme != "https":
            return connection
        try:
            if proxy is not None:
                _tunnel(connection, host, port, proxy, timeout[0])
            assert connection.sock is not None
            return Connection(self._tls(connection.sock, host, timeout[0]), self.traffic)
        except BaseException:
            connection.close()
            raise

    def _tls(self, sock: socket.socket, host: str, timeout: float) -> ssl.SSLSocket:
        import ssl  # only for https: 17 ms of a start-up otherwise

        if self._context is None:
            self._context = tls_context(self.verify)
        try:
            return self._context.wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            raise ConnectTimeout(f"no TLS handshake within {timeout:g} s") from exc
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise TLSError(str(exc)) from exc
        except OSError as exc:
            raise ConnectError(str(exc) or type(exc).__name__) from exc

    # -- one exchange ----------------------------------------------------------------------
    @staticmethod
    def _exchange(connection: Connection, method: str, head: bytes, body: Any,
                  read_timeout: float, head_by: float | None,
                  low_speed: LowSpeed | None) -> Answer:
        assert connection.sock is not None
        connection.set_read_timeout(read_timeout)
        blocks = body_blocks(body, SEND_BLOCK,
                             zero_copy=type(connection.sock) is socket.socket)
        meter = None if low_speed is None else SpeedMeter(low_speed, _took_too_slowly(low_speed))
        try:
            first = next(blocks, b"")
            if isinstance(first, bytes):
                _write(connection, head + first, meter)  # a small request is one packet
            else:
                _write(connection, head, meter)
                _write(connection, first, meter)
            for block in blocks:
                _write(connection, block, meter)
        except (_Closed, EarlyAnswer) as stopped:
            # The server answered early (a 401, a 413) and stopped reading, or closed:
            # read its answer. The rest of the request is not sent: never reuse it.
            try:
                answer = connection.read_answer(method, _head_until(head_by, read_timeout))
            except NoAnswer:
                raise
            except OSError:
                raise TransportError(f"the connection dropped while sending: {stopped}"
                                     ) from stopped.__cause__
            if 200 <= answer.status < 300:  # it cannot have done the work
                raise EarlySuccess(f"the server answered HTTP {answer.status} {answer.reason} "
                                   "early".replace("  ", " ")) from None
            answer.will_close = True
            return answer
        connection.traffic.add_awaiting(1)  # sent whole: the server's turn
        try:
            return connection.read_answer(method, _head_until(head_by, read_timeout))
        except TransportError:
            raise
        except TimeoutError as exc:
            raise ReadTimeout("no answer within the read timeout") from exc
        except OSError as exc:
            raise TransportError(f"the connection dropped: {exc!r}") from exc
        finally:
            connection.traffic.add_awaiting(-1)


def _head_until(head_by: float | None, read_timeout: float) -> float | None:
    """When the answer's heads must have arrived (see ``head_by`` in Transport.request):
    the server gets at least one read timeout after the request was sent."""
    return None if head_by is None else max(head_by, time.monotonic() + read_timeout)


def _tunnel(connection: Connection, host: str, port: int, proxy: str,
            timeout: float) -> None:
    """Ask an http:// proxy for a tunnel to host:port (CONNECT), for TLS through it; its
    answer must arrive whole within the connect timeout."""
    target = host_field(host, port, default_port=0)
    fields = [("Host", target)]
    auth = userinfo_authorization(proxy)
    if auth:
        fields.append(("Proxy-Authorization", auth))
    try:
        connection.send(request_head("CONNECT", target, fields))
        answer = connection.read_answer("CONNECT", time.monotonic() + timeout)
    except OSError as exc:
        raise ProxyError(f"the proxy dropped the tunnel to {target}: {exc}") from exc
    finally:
        connection.request_ended()
    if answer.status != 200:
        raise ProxyRefused(f"refused the tunnel to {target}: HTTP"
                           f" {answer.status} {answer.reason}".rstrip(), answer.status)
    if connection.has_unread_bytes:
        raise ProxyError(f"the proxy sent more than its answer to the tunnel to {target}")


class _Closed(TransportError):
    """The server closed the connection while the request was being sent."""


def _write(connection: Connection, data: bytes | FileSlice, meter: SpeedMeter | None
           ) -> None:
    try:
        connection.send(data, meter)
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise _Closed(repr(exc)) from exc
    except TransportError:
        raise
    except OSError as exc:
        raise TransportError(f"the connection dropped while sending: {exc!r}") from exc


def _took_too_slowly(limit: LowSpeed) -> Callable[[int, float], SendStalled]:
    def too_slow(count: int, seconds: float) -> SendStalled:
        return SendStalled(f"the server took {count} bytes of the request in {seconds:.0f} s,"
                           f" below the low-speed limit of {limit.limit:g} bytes/s",
                           too_slow=True)

    return too_slow


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

