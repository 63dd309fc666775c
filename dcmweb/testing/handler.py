"""The HTTP request handler: body spooling, faults, auth, and response writing.

This is the bottom layer of the server: it knows nothing of routes or of LocalServer.
The server hands it an `App` (what the handler and the request handlers read) and a
`route` function; the modules that answer requests sit above it, routes above them,
and the server on top.

Every request body is first streamed to a temp file (so it can be recorded and
hashed, and never held in memory), then injected faults are applied, then the
bearer token is checked (on every path but /token, the control paths included), and
only then is the request routed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from .faults import Fault, FaultQueue, Quota, RequestLog, RequestRecord, WindowQuota
from .multipart import CHUNK
from .operations import Operations
from .responses import error_body
from .storage import Store

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class ClientGone(Exception):
    """The client closed the connection or stopped sending mid-request."""


class BadBody(Exception):
    """The request framing is broken (bad Content-Length or chunk size)."""


@dataclass
class Request:
    method: str
    path: str  # without the query string, no trailing slash
    target: str  # path with query, as received
    query: list[tuple[str, str]]
    headers: Message
    body_path: Path | None
    body_length: int
    body_sha256: str

    def read_body(self, limit: int = 1 << 20) -> bytes:
        if self.body_path is None:
            return b""
        with open(self.body_path, "rb") as fh:
            return fh.read(limit)


class App(Protocol):
    """What the handler and the request handlers read from the running server."""

    host: str
    base_path: str
    token: str | None
    token_endpoint: bool
    verbose: bool
    no_match_status: int
    search_keys: str
    search_lag: float
    refuse_duplicates: bool
    duplicates: list[str]
    faults: FaultQueue
    quota: Quota | WindowQuota | None
    records: RequestLog
    store: Store
    operations: Operations

    @property
    def port(self) -> int: ...


Route = Callable[["Handler", Request], None]


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # bursts of parallel uploads must not be refused

    def __init__(self, address: tuple[str, int], app: App, route: Route) -> None:
        self.app = app
        self.route = route
        self.connections: set[socket.socket] = set()
        self.stopping = False
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that reset or time out an idle keep-alive connection are normal here.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Shut down open keep-alive connections so their threads end promptly."""
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "dcmweb-testserver"
    timeout = 120  # idle keep-alive or stalled upload
    # Headers and body go out in separate writes; with Nagle on, each small answer
    # would wait for the client's delayed ACK (~40 ms per request).
    disable_nagle_algorithm = True
    server: HTTPServer

    # --- connection bookkeeping -------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def version_string(self) -> str:
        return self.server_version  # not "dcmweb-testserver Python/3.x"

    @property
    def app(self) -> App:
        return self.server.app

    def log_message(self, format: str, *args: Any) -> None:
        if self.app.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    # --- entry points -----------------------------------------------------------
    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _handle(self) -> None:
        self._record: RequestRecord | None = None
        self._headers_sent = False
        body_path: Path | None = None
        try:
            try:
                body_path, length, digest = self._spool_body()
            except ClientGone as exc:
                self._log_record(None, int(exc.args[0]) if exc.args else 0, complete=False)
                self.close_connection = True
                return
            except BadBody as exc:
                self._log_record(None, 0, complete=False, pending=True)
                self.close_connection = True
                self.send_error_json(400, str(exc))
                return
            self._record = RequestRecord(
                method=self.command,
                path=self.path,
                headers=dict(self.headers.items()),
                body_length=length,
                body_sha256=digest,
                time=time.time(),
            client_port=self.client_address[1],
            )
            req = self._request(body_path, length, digest)
            self._dispatch(req)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception:
            if not self.server.stopping:  # stop() closed the store under this request
                traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            if not self._headers_sent:
                with contextlib.suppress(OSError):
                    self.send_error_json(500, "internal error in the test server")
        finally:
            if self._record is not None:  # answered nothing: record it anyway
                self._record.status = None
                self.app.records.append(self._record)
                self._record = None
            if body_path is not None:
                body_path.unlink(missing_ok=True)

    def _request(self, body_path: Path | None, length: int, digest: str) -> Request:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qsl(parts.query, keep_blank_values=True)
        return Request(
            self.command, path, self.path, query, self.headers, body_path, length, digest
        )

    def _dispatch(self, req: Request) -> None:
        control = req.path.startswith("/_control/")
        quota = self.app.quota
        if not control and quota is not None and not quota.allow():
            wait = quota.retry_after
            self.send_error_json(429, quota.message, {"Retry-After": wait} if wait else None)
            return
        if not control:
            fault = self.app.faults.take(req.method, req.target, req.body_path)
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.after or fault.cut or fault.stall:
                    self._lose_answer(req, cut=fault.cut or bool(fault.stall),
                                      stall=fault.stall,
                                      instead=fault)
                    return
                if fault.drop:
                    self._drop()
                    return
                if fault.status is not None:
                    self._send_fault(fault.status, fault, req)
                    return
        # /_control too: its request log and faults are no one else's business.
        if req.path != "/token" and not self._authorized():
            self.send_error_json(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access"
                " token, login cookie or other valid authentication credential.",
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
            return
        self.server.route(self, req)

    def _send_fault(self, status: int, fault: Fault, req: Request) -> None:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        if 300 <= status < 400:
            headers["Location"] = fault.location or req.target
        self.send_error_json(status, "injected fault", headers)

    def _lose_answer(self, req: Request, cut: bool = False, stall: float = 0.0,
                     instead: Fault | None = None) -> None:
        """Handle the request, then drop the connection instead of sending the answer;
        with ``cut``, close it (a clean end) after the answer's head and half its body,
        ``stall`` seconds after sending them (cut short when the server stops); with
        ``instead`` a fault with a status, send that status (a 303 after the work is
        done)."""
        answer, written = self.wfile, io.BytesIO()
        self.wfile = written  # the answer is written here and thrown away
        try:
            self.server.route(self, req)
        finally:
            self.wfile = answer
        if instead is not None and instead.status is not None and not cut:
            self._send_fault(instead.status, instead, req)
            return
        if not cut:
            self._drop()
            return
        head, _, body = written.getvalue().partition(b"\r\n\r\n")
        answer.write(head + b"\r\n\r\n" + body[: len(body) // 2])
        answer.flush()
        until = time.monotonic() + stall
        while time.monotonic() < until and not self.server.stopping:
            time.sleep(min(0.1, until - time.monotonic()))
        self.close_connection = True

    def _authorized(self) -> bool:
        token = self.app.token
        if token is None:
            return True
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and value.strip() == token

    def _drop(self) -> None:
        """Close the socket without an answer; linger 0 makes it a reset, like a proxy."""
        if self._record is not None:
            self._record.status = None
            self.app.records.append(self._record)
            self._record = None
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- request body -----------------------------------------------------------
    def _spool_body(self) -> tuple[Path | None, int, str]:
        """Stream the body to a temp file; returns (path or None, length, sha256)."""
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        raw_length = self.headers.get("Content-Length")
        if not chunked:
            if raw_length is None:
                return None, 0, _EMPTY_SHA256
            try:
                length = int(raw_length)
            except ValueError:
                raise BadBody(f"invalid Content-Length {raw_length!r}") from None
            if length < 0:
                raise BadBody(f"invalid Content-Length {raw_length!r}")
            if length == 0:
                return None, 0, _EMPTY_SHA256
        path = self.app.store.new_temp("body-")
        digest = hashlib.sha256()
        received = 0
        try:
            with open(path, "wb") as out:

                def sink(data: bytes) -> None:
                    nonlocal received
                    out.write(data)
                    digest.update(data)
                    received += len(data)

                try:
                    if chunked:
                        self._read_chunked(sink)
                    else:
                        self._read_exact(length, sink)
                except (OSError, ClientGone) as exc:
                    raise ClientGone(received) from exc
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if received == 0:
            path.unlink(missing_ok=True)
            return None, 0, _EMPTY_SHA256
        return path, received, digest.hexdigest()

    def _read_exact(self, length: int, sink: Any) -> None:
        remaining = length
        while remaining:
            data = self.rfile.read(min(CHUNK, remaining))
            if not data:
                raise ClientGone()
            sink(data)
            remaining -= len(data)

    def _read_chunked(self, sink: Any) -> None:
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise ClientGone()
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadBody(f"invalid chunk size {size_text!r}") from None
            if size == 0:
                while True:  # trailers, up to the empty line
                    trailer = self.rfile.readline(8192)
                    if not trailer:
                        raise ClientGone()
                    if trailer in (b"\r\n", b"\n"):
                        return
            self._read_exact(size, sink)
            if self.rfile.readline(1024) not in (b"\r\n", b"\n"):
                raise BadBody("chunk not followed by CRLF")

    # --- responses --------------------------------------------------------------
    def _log_record(
        self, status: int | None, length: int, *, complete: bool, pending: bool = False
    ) -> None:
        record = RequestRecord(
            method=self.command,
            path=self.path,
            headers=dict(self.headers.items()),
            body_length=length,
            body_sha256="",
            status=status,
            complete=complete,
            time=time.time(),
            client_port=self.client_address[1],
        )
        if pending:
            self._record = record  # completed by the answer that follows
        else:
            self.app.records.append(record)

    def _start(self, status: int, headers: dict[str, str]) -> None:
        # Record before the first byte goes out, so a client that has its answer
        # always finds the request in srv.requests.
        if self._record is not None:
            self._record.status = status
            self.app.records.append(self._record)
            self._record = None
        self._headers_sent = True
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        all_headers = dict(headers or {})
        if status < 200 or status in (204, 304):
            # No body, whatever was meant (an injected fault's envelope): a client reads
            # none, so its bytes would be taken for the next answer on the connection.
            self._start(status, all_headers)
            return
        if content_type:
            all_headers["Content-Type"] = content_type
        all_headers["Content-Length"] = str(len(body))
        self._start(status, all_headers)
        if body:
            self.wfile.write(body)

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_bytes(status, body, "application/json; charset=utf-8", headers)

    def send_error_json(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_bytes(
            status, error_body(status, message), "application/json; charset=utf-8", headers
        )

    def send_sized(
        self, status: int, content_type: str, size: int, chunks: Iterable[bytes]
    ) -> None:
        self._start(status, {"Content-Type": content_type, "Content-Length": str(size)})
        for chunk in chunks:
            self.wfile.write(chunk)

    def send_stream(self, status: int, content_type: str, chunks: Iterable[bytes]) -> None:
        """Stream an answer of unknown length with chunked transfer encoding; to an
        HTTP/1.0 request, which cannot take it (RFC 9112 6.1), as it comes, its end
        being the connection's close."""
        if self.request_version != "HTTP/1.1":
            self.close_connection = True
            self._start(status, {"Content-Type": content_type})
            for chunk in chunks:
                self.wfile.write(chunk)
            return
        self._start(status, {"Content-Type": content_type, "Transfer-Encoding": "chunked"})
        for chunk in chunks:
            if chunk:
                self.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def external_base(self) -> str:
        """The DICOMweb base URL as the client addressed this server (v1 or v1beta1)."""
        host = self.headers.get("Host") or f"{self.app.host}:{self.app.port}"
        if not host.rsplit("]", 1)[-1].count(":"):
            # dicomweb-client sends Host without the port: URLs must still reach us.
            host = f"{host}:{self.app.port}"
        base = self.app.base_path
        if self.path.startswith("/v1beta1/"):
            base = "/v1beta1/" + base.split("/", 2)[2]
        return f"http://{host}{base}"
