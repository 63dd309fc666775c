"""The transport's exceptions: why a request got no (complete) answer."""

from __future__ import annotations


class TransportError(OSError):
    """The request got no (complete) answer. An OSError, as requests' errors were, so
    that a network failure is never mistaken for a local one by type alone."""


class ConnectError(TransportError):
    """The connection could not be opened: the request was surely not sent."""


class ConnectTimeout(ConnectError):
    """No connection within the connect timeout."""


class ProxyError(ConnectError):
    """The proxy from the environment refused, failed or could not be reached."""


class TLSError(ConnectError):
    """The TLS handshake failed (certificate, protocol)."""


class ReadTimeout(TransportError):
    """The server sent nothing for the read timeout."""


class SendStalled(TransportError):
    """The server took the request's body too slowly: no byte for the read timeout, or
    (``too_slow``) fewer than the low-speed limit over its window. It never had the
    whole request."""

    def __init__(self, message: str, *, too_slow: bool = False) -> None:
        super().__init__(message)
        self.too_slow = too_slow


class EarlySuccess(TransportError):
    """The server answered 2xx before it took the whole request: it cannot have done
    the work with a body it never had, so the answer is not believed."""


class NotHTTP(TransportError):
    """The answer does not start like HTTP: another service on that port, or TLS met with
    plain HTTP."""


class InvalidURL(TransportError):
    """The URL cannot be requested (scheme, host or port)."""


class InvalidHeader(TransportError):
    """A header value with a line break or leading whitespace (never quoted: a token)."""


class UnknownCoding(TransportError):
    """The answer's Content-Encoding is one dcmweb does not decode (br, compress): its
    body read as it is would be misread. Http reports it for an answer it hands on."""


class UndecodableBody(TransportError):
    """The answer's gzip or deflate body cannot be decoded (a changed byte, compressed
    data that ends early): the server answered, so this is no outage."""


class NoAnswer(TransportError):
    """The server closed (or reset) the connection before a single byte of an answer: a
    stale pooled connection, or a port that speaks only TLS met with plain HTTP."""


class BrokenHead(TransportError):
    """The answer's status line and headers break the bounds of HTTP (endless header
    lines, endless 1xx answers): a broken server or proxy, not a slow one."""


class SlowHead(ReadTimeout):
    """The answer's status line and headers did not arrive whole in time (a trickle each
    byte of which came within the read timeout)."""


class Overdue(TransportError):
    """A read waited until the time its reader set (``until``) and got nothing."""


class ProxyRefused(ProxyError):
    """The proxy answered a CONNECT with something else than 200: it refused the tunnel."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
