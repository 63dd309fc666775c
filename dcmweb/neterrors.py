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
