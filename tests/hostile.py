"""A small http.server fake for answers no real DICOMweb server gives on purpose.

One handler per (method, path): a test registers what each request should get, runs
dcmweb against ``fake.url``, then reads ``fake.requests``. It listens on 127.0.0.1 only.

    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.reply(200, b"[]", "application/json"))
        ...
        assert [r.path for r in fake.requests] == [...]

Paths in ``route`` are relative to the DICOMweb base (``/studies``) unless they start with
``/v1/`` (operations live at the API root, as on Google's API).
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

DATASET = "projects/p/locations/l/datasets/d"
BASE_PATH = f"/v1/{DATASET}/dicomStores/s/dicomWeb"


@dataclass
class Seen:
    """One request the fake received."""

    method: str
    path: str  # relative to the DICOMweb base when under it
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes = b""
    raw_query: str = ""  # the query exactly as it came on the request line
    target: str = ""  # the request line's target (absolute through a forward proxy)
    peer_port: int = 0  # the client's port: one per connection
    params: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.params = dict(self.query)


class Request:
    """What a route function gets: the request, and ways to answer (or not) it."""

    def __init__(self, handler: _Handler, seen: Seen) -> None:
        self.handler = handler
        self.seen = seen
        self.params = seen.params

    def reply(self, status: int, body: bytes = b"", content_type: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        h = self.handler
        h.send_response(status)
        if content_type:
            h.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def json(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        self.reply(status, json.dumps(payload).encode(), content_type)

    def stream(self, status: int, content_type: str, chunks: Iterable[bytes], *,
               claimed_length: int | None = None, reset: bool = False) -> None:
        """Send chunks, then close the connection. With ``claimed_length`` the header
        promises that many bytes (a lie if fewer are sent); without it the body simply
        ends when the connection closes. ``reset``: end with a TCP reset, as a proxy
        that gives up does."""
        h = self.handler
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        if claimed_length is not None:
            h.send_header("Content-Length", str(claimed_length))
        h.send_header("Connection", "close")
        h.end_headers()
        for chunk in chunks:
            h.wfile.write(chunk)
            h.wfile.flush()
        h.close_connection = True
        if reset:
            time.sleep(0.2)  # let the bytes sent so far arrive first
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()


Route = Callable[[Request], None]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        if path.startswith(BASE_PATH):
            path = path[len(BASE_PATH):] or "/"
        length = int(self.headers.get("Content-Length") or 0)
        body = self._read_body(length, self.server.fake.read_rate)
        seen = Seen(self.command, path, parse_qsl(parts.query, keep_blank_values=True),
                    dict(self.headers.items()), body, parts.query, self.path,
                    self.client_address[1])
        fake = self.server.fake
        with fake.lock:
            fake.requests.append(seen)
            action = fake.routes.get((self.command, path))
        request = Request(self, seen)
        if action is None:
            action = fake.fallback or (lambda req: req.reply(
                404, f"no route for {req.seen.method} {req.seen.path}".encode(), "text/plain"))
        action(request)

    do_GET = do_POST = do_DELETE = do_PUT = _dispatch

    def _read_body(self, length: int, rate: float | None) -> bytes:
        """The request body; with ``rate`` (bytes/s) read slowly from a small receive
        buffer, as over a slow link: the client's send waits for it."""
        if not rate:
            return self.rfile.read(length) if length else b""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        body = bytearray()
        while len(body) < length:
            piece = self.rfile.read(min(64 * 1024, length - len(body)))
            if not piece:
                break
            body += piece
            time.sleep(len(piece) / rate)
        return bytes(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    fake: Hostile

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The client hanging up on a trickle or a silence is what the test wants.
        pass


class Hostile:
    """The fake server; a context manager that starts and stops it."""

    def __init__(self, port: int = 0, tls: tuple[Path, Path] | None = None, *,
                 read_rate: float | None = None) -> None:
        """``port`` 0 picks a free one; a given port lets a test "restart" a server.
        ``tls`` (certificate, key) serves HTTPS (see :func:`tls_certificate`).
        ``read_rate``: request bodies are read at this many bytes/s (a slow uplink)."""
        self.read_rate = read_rate
        self.routes: dict[tuple[str, str], Route] = {}
        self.fallback: Route | None = None  # for requests no route matches (default 404)
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self.scheme = "https" if tls else "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        """A DICOMweb base shaped like Google's (so operations can be polled)."""
        return self.root_url + BASE_PATH

    def route(self, method: str, path: str, action: Route) -> None:
        self.routes[(method.upper(), path)] = action

    def seen(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (path is None or r.path == path)]

    def __enter__(self) -> Hostile:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def multipart(parts: Iterable[bytes], boundary: str, content_type: str = "application/dicom"
              ) -> bytes:
    """A complete multipart/related body."""
    body = b"".join(
        f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + part + b"\r\n"
        for part in parts
    )
    return body + f"--{boundary}--\r\n".encode()


# -- reusable hostile behaviours (each a Route) --------------------------------------------------
def redirect(status: int, location: str) -> Route:
    """Answer with a redirect, as nginx does for http -> https or a load balancer."""
    return lambda req: req.reply(status, b"", "text/html", headers={"Location": location})


def once(first: Route, then: Route) -> Route:
    """``first`` for the first request, ``then`` for every later one."""
    calls: list[int] = []
    lock = threading.Lock()

    def action(req: Request) -> None:
        with lock:
            calls.append(1)
            index = len(calls)
        (first if index == 1 else then)(req)
    return action


def cut(status: int, content_type: str, body: bytes, keep: int) -> Route:
    """Promise ``body`` (Content-Length) but close the connection after ``keep`` bytes."""
    return lambda req: req.stream(status, content_type, [body[:keep]],
                                  claimed_length=len(body))


def trickle(status: int, content_type: str, body: bytes, every: float) -> Route:
    """Send the body one byte at a time, ``every`` seconds apart: no read ever times out."""
    def chunks() -> Iterable[bytes]:
        for index in range(len(body)):
            time.sleep(every)
            yield body[index:index + 1]
    return lambda req: req.stream(status, content_type, chunks(), claimed_length=len(body))


def stall(status: int, content_type: str, body: bytes, keep: int, seconds: float) -> Route:
    """Promise ``body`` (Content-Length), send ``keep`` bytes of it, then send nothing
    for ``seconds`` (the connection open) and close."""
    def chunks() -> Iterable[bytes]:
        yield body[:keep]
        time.sleep(seconds)
    return lambda req: req.stream(status, content_type, chunks(), claimed_length=len(body))


def silent(seconds: float) -> Route:
    """Read the request, then say nothing for ``seconds`` and close."""
    def action(req: Request) -> None:
        time.sleep(seconds)
        req.handler.close_connection = True
    return action


def forward(root_url: str, *, answer: bool = True,
            alter: Callable[[bytes], bytes] | None = None,
            headers: dict[str, str] | None = None, answer_status: int | None = None) -> Route:
    """Pass the request on to a real server at ``root_url`` and relay its answer: a
    loopback forwarder. ``answer=False`` drops the answer after the server did the work
    (the connection closes, as when a proxy or the network loses it); ``alter`` changes
    the answer's body on the way (the status and Content-Type stay), ``headers`` are
    added to it (a ``Content-Encoding`` for what ``alter`` made of it); ``answer_status``
    replaces the server's (a gateway's 500 after the server did the work)."""
    def action(req: Request) -> None:
        seen = req.seen
        connection = http.client.HTTPConnection(urlsplit(root_url).netloc, timeout=60)
        hop_by_hop = ("host", "connection", "content-length", "accept-encoding")
        sent = {k: v for k, v in seen.headers.items() if k.lower() not in hop_by_hop}
        try:
            connection.request(seen.method, seen.target, body=seen.body or None, headers=sent)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if not answer:
            req.handler.close_connection = True
            return
        req.reply(answer_status or response.status, alter(body) if alter else body,
                  response.getheader("Content-Type"), headers)
    return action


def status(code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Route:
    return lambda req: req.reply(code, body, "text/plain", headers=headers)


# -- raw sockets: what http.server cannot do (answer before the body is read) ------------
@contextmanager
def raw_server(handle: Callable[[socket.socket, bytes], None]) -> Iterator[str]:
    """A server that reads each request's head and hands the connection and the head to
    ``handle``, with a small receive buffer (a client's send fills up while the server
    does not read); connections stay open until the end. The URL is yielded."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)
            head = b""
            while b"\r\n\r\n" not in head and (piece := connection.recv(1)):
                head += piece
            handle(connection, head)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web"
    finally:
        listener.close()
        for connection in held:
            connection.close()


def reading_heads_only(answer: bytes | None) -> AbstractContextManager[str]:
    """A server that never reads a body: it sends ``answer`` at once, or nothing."""
    return raw_server(lambda connection, head: answer and connection.sendall(answer))


def tls_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dcmweb test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
