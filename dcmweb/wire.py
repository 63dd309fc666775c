"""HTTP/1.1 on one socket: a request's head and body out; an answer's status line,
headers and body in, framed by Content-Length, chunked coding or the connection's close.

dcmweb's own rather than ``http.client``: that module imports the email package and ssl
(about 28 ms of every command's start-up; docs/performance.md, F) and parses each
answer's headers with the email parser. Here ssl is imported only for https (netenv.py).
"""

from __future__ import annotations

import math
import os
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, NamedTuple, overload

from .errors import quoted
from .neterrors import (
    BrokenHead,
    InvalidHeader,
    InvalidURL,
    NoAnswer,
    NotHTTP,
    Overdue,
    ReadTimeout,
    SendStalled,
    SlowHead,
    TransportError,
)
from .speed import SpeedMeter

MAX_LINE = 65536  # one status or header line, as http.client allows
MAX_FIELDS = 200  # physical lines of one head (folded ones too) or of a chunked trailer
MAX_HEAD = 300 * 1024  # bytes of all the heads of one answer (1xx ones too), as curl
MAX_INTERIM = 10  # informational (1xx) answers before the final one; Go's net/http: 5
RECEIVE = 65536  # bytes asked of the socket when a head or a chunk line is read
# A file slice goes to the kernel this much at a time, so that the bytes sent so far are
# known while a large file is on its way (progress); a call costs some 20 us.
SENDFILE_STEP = 1024 * 1024
TLS_RECORD = 16 * 1024  # the most one TLS record holds
_NOT_IN_TARGET = re.compile("[\x00-\x20\x7f]")  # a space or control would split the line
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")  # a chunk size
_DECIMAL = re.compile("[0-9]{1,19}")  # a Content-Length (int() would take '+5', '1_0', ' 5')
# An informational answer's status (not 101, which switches protocols), and a whole one.
_INTERIM_STATUS = re.compile(rb"HTTP/1\.[01] 1(?!01)[0-9]{2}")
_INTERIM = re.compile(_INTERIM_STATUS.pattern + rb"[^\n]*\n(?:[^\r\n][^\n]*\n)*\r?\n")


class FileSlice(NamedTuple):
    """Bytes of an open file for the kernel to send from the page cache (sendfile), never
    read into Python. ``after_send`` gets the number of bytes sent and raises if the file
    changed (fewer than ``length`` means it shrank)."""

    file: BinaryIO
    offset: int
    length: int
    after_send: Callable[[int], None]


class EarlyAnswer(Exception):
    """The server answered, or closed, before it took the whole request."""


def _would_block(error: OSError) -> bool:
    """Whether a non-blocking call found the socket full, or empty (TLS says it its own
    way; ssl is loaded only for https)."""
    if isinstance(error, BlockingIOError):
        return True
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(error, (ssl.SSLWantReadError,
                                                  ssl.SSLWantWriteError))


def _interim_coming(data: bytes) -> bool:
    """Whether ``data`` may be an informational answer whose blank line is still to come
    (whole ones were taken off): its status so far is 1xx, within the bounds of a line."""
    status = data[:12]
    return (bool(_INTERIM_STATUS.fullmatch(status + b"HTTP/1.1 100"[len(status):]))
            and len(data) <= MAX_LINE)


class Traffic:
    """Bytes on a transport's connections, for progress. ``sending``: those of the
    requests on their way, counted as they go out (a file slice by SENDFILE_STEP) and
    taken back when the request ends (its answer's head came, or it failed): a body sent
    again is counted while it goes, never twice. ``received``: the answers', as they come
    in. ``awaiting``: the requests sent whole that wait for their answer's head. Shared by
    the threads."""

    def __init__(self) -> None:
        self.sending = 0
        self.received = 0
        self.awaiting = 0
        self._lock = threading.Lock()

    def add_awaiting(self, count: int) -> None:
        with self._lock:
            self.awaiting += count

    def add_sending(self, count: int) -> None:
        with self._lock:
            self.sending += count

    def add_received(self, count: int) -> None:
        with self._lock:
            self.received += count


class Headers:
    """An answer's header fields: names without regard to case, repeated fields kept in
    order; :meth:`get` gives the first, as http.client did."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        self._first: dict[str, str] = {}
        for name, value in fields:
            self._first.setdefault(name.lower(), value)

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._first.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._first[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for field, value in self._fields if field.lower() == wanted]

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def get_content_charset(self) -> str | None:
        """The Content-Type's charset parameter, lower-cased."""
        for param in (self.get("Content-Type") or "").split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip().strip('"'):
                return value.strip().strip('"').lower()
        return None

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


def request_head(method: str, target: str, headers: list[tuple[str, str]]) -> bytes:
    """The request line and header fields, encoded as HTTP/1.1 sends them."""
    if _NOT_IN_TARGET.search(target):
        raise InvalidURL(f"the URL has a space or control character in it: {target!r}")
    lines = [f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        bad = [name for name, value in headers if not f"{name}{value}".isascii()]
        raise InvalidHeader(f"the header {bad[0] if bad else '?'!r} is not Latin-1 text"
                            ) from None


def host_field(host: str, port: int, default_port: int) -> str:
    """The Host header (and CONNECT target) for host and port."""
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    name = f"[{host}]" if ":" in host else host
    return name if port == default_port else f"{name}:{port}"


def open_socket(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection with Nagle off (a head and a small body go out at once)."""
    # An ASCII name as bytes: getaddrinfo then needs no idna codec (2 ms to import).
    name: Any = host.encode() if host.isascii() else host  # typeshed omits bytes
    sock = socket.create_connection((name, port), timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Connection:
    """One connection's socket and what was received on it but not yet read."""

    def __init__(self, sock: socket.socket, traffic: Traffic | None = None) -> None:
        self.sock: socket.socket | None = sock
        self._buffer = b""
        self.read_timeout = sock.gettimeout()
        self.traffic = traffic or Traffic()
        self._unanswered = 0  # bytes of the request on its way here (see request_ended)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self._buffer = b""
        if sock is not None:
            sock.close()

    @property
    def has_unread_bytes(self) -> bool:
        """Bytes beyond the last answer: the server sent more than it framed."""
        return bool(self._buffer)

    def set_read_timeout(self, seconds: float) -> None:
        """The longest one read of the socket waits for a byte."""
        assert self.sock is not None
        self.read_timeout = seconds
        self.sock.settimeout(seconds)

    def send(self, data: bytes | FileSlice, meter: SpeedMeter | None = None) -> None:
        """Send ``data`` whole. No wait for the server to take more goes past the read
        timeout (:class:`SendStalled`: it took no byte) or past the ``meter``'s window
        (which judges the rate). An answer that comes meanwhile (an early 401 or 413 of a
        server that reads no more, or a close) ends the send: :class:`EarlyAnswer`."""
        assert self.sock is not None
        sock = self.sock
        sock.settimeout(0.0)  # the waits are _wait_to_send's
        try:
            if isinstance(data, bytes):
                view = memoryview(data)
                # TLS takes a piece whole or not at all: a piece of one record each keeps
                # the progress of a slow send in sight of the meter.
                piece = len(data) if type(sock) is socket.socket else TLS_RECORD
                self._push(len(data), lambda at: sock.send(view[at:at + piece]), meter)
                return
            into, source = sock.fileno(), data.file.fileno()
            sent = self._push(data.length, lambda at: os.sendfile(
                into, source, data.offset + at, min(SENDFILE_STEP, data.length - at)), meter)
        finally:
            if self.sock is not None:
                self.sock.settimeout(self.read_timeout)
        data.after_send(sent)

    def _push(self, length: int, push: Callable[[int], int], meter: SpeedMeter | None
              ) -> int:
        """Bytes sent by ``push(offset)`` (what the socket takes now) until ``length``, or
        until a file gives no more (it shrank)."""
        sent = 0
        last_taken = time.monotonic()
        while sent < length:
            try:
                done = push(sent)
            except OSError as exc:
                if not _would_block(exc):
                    raise
                self._wait_to_send(last_taken, meter)
                continue
            if not done:
                break
            sent += done
            self._count_sent(done)
            last_taken = time.monotonic()
            if meter is not None:
                meter.add(done)
        return sent

    def _wait_to_send(self, last_taken: float, meter: SpeedMeter | None) -> None:
        """Wait until the socket takes more, the server answers, or a limit is passed."""
        assert self.sock is not None
        poller = select.poll()
        poller.register(self.sock, select.POLLOUT | select.POLLIN)
        while True:
            stalled_at = last_taken + (self.read_timeout or math.inf)
            judge_at = meter.judge_by() if meter is not None else None
            until = stalled_at if judge_at is None else min(stalled_at, judge_at)
            wait = None if until == math.inf else max(until - time.monotonic(), 0) * 1000
            events = poller.poll(wait)
            flags = events[0][1] if events else 0
            if flags & select.POLLIN and self._answer_came():
                raise EarlyAnswer("the server answered before it took the whole request")
            if flags & ~select.POLLIN:  # it takes more, or the send fails by itself
                return
            now = time.monotonic()
            if judge_at is not None and now >= judge_at:
                assert meter is not None
                meter.add(0)  # raises for a window too slow; else a new one
            elif now >= stalled_at:
                raise SendStalled(f"the server took no byte of the request for"
                                  f" {self.read_timeout:g} s (the read timeout)")

    def _answer_came(self) -> bool:
        """Whether the server closed, or sent bytes (kept for the answer's read) that may
        be its answer: an informational answer (``100 Continue``, which a server may send
        unasked before it reads the body) is dropped, and the send goes on."""
        assert self.sock is not None
        try:
            data = self.sock.recv(RECEIVE)
        except OSError as exc:
            # TLS bytes that held no data (a session ticket); a reset is the read's.
            return not _would_block(exc)
        if not data:
            return True
        self.traffic.add_received(len(data))
        self._buffer += data
        # A whole interim answer ends with a blank line: no regex on a trickle without one.
        while (b"\n\n" in self._buffer or b"\n\r\n" in self._buffer) and (
                interim := _INTERIM.match(self._buffer)):
            self._buffer = self._buffer[interim.end():]
        return bool(self._buffer) and not _interim_coming(self._buffer)

    def _count_sent(self, count: int) -> None:
        self._unanswered += count
        self.traffic.add_sending(count)

    def request_ended(self) -> None:
        """The request sent here got its answer's head, or never will: its bytes are no
        longer on their way (see :attr:`Traffic.sending`)."""
        self.traffic.add_sending(-self._unanswered)
        self._unanswered = 0

    def read_line(self, until: float | None = None) -> bytes:
        """One line with its line end, or what came before the connection closed.
        ``until``: a ``time.monotonic()`` no read waits past (:class:`Overdue`)."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[:end + 1], self._buffer[end + 1:]
                return line
            if len(self._buffer) > MAX_LINE:
                return self._buffer  # the caller sees it is too long
            data = self._receive(RECEIVE, until)
            if not data:
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += data

    def read_some(self, size: int, until: float | None = None) -> bytes:
        """Up to size bytes: what is buffered, else one read of the socket."""
        if self._buffer:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            return data
        return self._receive(size, until)

    def _receive(self, size: int, until: float | None = None) -> bytes:
        if self.sock is None:
            return b""
        data = self._recv(size, until)
        self.traffic.add_received(len(data))
        return data

    def _recv(self, size: int, until: float | None) -> bytes:
        assert self.sock is not None
        if until is None:
            return self.sock.recv(size)
        # Bytes already there are taken even when until has passed.
        wait = max(until - time.monotonic(), 0.001)
        if self.read_timeout is not None and wait >= self.read_timeout:
            return self.sock.recv(size)
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(size)
        except TimeoutError:
            raise Overdue("nothing came by the reader's time") from None
        finally:
            if self.sock is not None:
                self.sock.settimeout(self.read_timeout)

    def read_answer(self, method: str, until: float | None = None) -> Answer:
        """The next final answer's status and headers (informational 1xx ones are
        skipped, up to MAX_INTERIM); its body is read from the :class:`Answer`. The
        heads must arrive whole by ``until`` (a ``time.monotonic()``; :class:`SlowHead`)
        and within MAX_HEAD bytes (:class:`BrokenHead`)."""
        head = _HeadReader(self, until)
        try:
            for _ in range(MAX_INTERIM + 1):
                status, reason, version = head.status_line()
                fields = head.fields()
                if not 100 <= status < 200 or status == 101:
                    return Answer(self, method, status, reason, version, Headers(fields))
        except Overdue:
            if not head.started:
                raise ReadTimeout("no answer in time") from None
            raise SlowHead("the answer's status line and headers did not arrive whole in"
                           " time") from None
        raise BrokenHead(f"over {MAX_INTERIM} informational (1xx) answers and no final one")


class _HeadReader:
    """Reads the lines of one answer's heads (or of a chunked body's trailer, which may
    end where the connection closes) within MAX_HEAD bytes."""

    def __init__(self, connection: Connection, until: float | None = None, *,
                 trailer: bool = False) -> None:
        self.connection = connection
        self.until = until
        self.trailer = trailer
        self.left = MAX_HEAD

    def _line(self) -> bytes:
        line = self.connection.read_line(self.until)
        self.left -= len(line)
        if self.left < 0:
            raise BrokenHead(f"its headers are over {MAX_HEAD // 1024} KiB")
        return line

    @property
    def started(self) -> bool:
        """Whether any byte of the answer came."""
        return self.left < MAX_HEAD or self.connection.has_unread_bytes

    def status_line(self) -> tuple[int, str, str]:
        first = not self.started
        try:
            line = self._line()
        except ConnectionResetError as exc:
            if not first:
                raise
            raise NoAnswer("the server reset the connection without an answer") from exc
        if not line:
            if first:
                raise NoAnswer("the server closed the connection without an answer")
            raise TransportError("the connection dropped after an informational answer")
        text = line.decode("latin-1")
        version, _, rest = text.rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if (len(line) > MAX_LINE or not version.startswith("HTTP/") or len(code) != 3
                or not (code.isascii() and code.isdigit())):  # '\u00b2' is a digit too
            raise NotHTTP(f"it starts with {quoted(text[:40])}")
        return int(code), reason.strip(), version

    def fields(self) -> list[tuple[str, str]]:
        """Header (or trailer) fields up to the blank line; an obsolete folded line
        continues the field before it, and counts as a line of its own."""
        fields: list[tuple[str, list[str]]] = []  # a value's pieces: joined once, at the end
        for _ in range(MAX_FIELDS + 1):
            line = self._line()
            if line in (b"\r\n", b"\n") or (self.trailer and not line):
                return [(name, " ".join(pieces)) for name, pieces in fields]
            if not line:
                raise TransportError("the connection dropped inside the answer's headers")
            if len(line) > MAX_LINE:
                raise BrokenHead(f"a header line is over {MAX_LINE // 1024} KiB")
            text = line.decode("latin-1").rstrip("\r\n")
            if text[:1] in (" ", "\t"):
                if fields:
                    fields[-1][1].append(text.strip())
                continue
            name, colon, value = text.partition(":")
            if colon and name.strip():
                fields.append((name.strip(), [value.strip()]))
        raise BrokenHead(f"its headers run over {MAX_FIELDS} lines")


class Answer:
    """One answer's status, headers and body, framed as RFC 9112 section 6.3 says."""

    def __init__(self, connection: Connection, method: str, status: int, reason: str,
                 version: str, headers: Headers) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self._connection = connection
        tokens = (headers.get("Connection") or "").lower()
        self.will_close = "close" in tokens or (version == "HTTP/1.0"
                                                and "keep-alive" not in tokens)
        self.length: int | None = None  # body bytes still to come, when the length is known
        self._chunked = False
        self._chunk_left = -1  # -1: a chunk-size line comes next; 0: a chunk's line end
        if method in ("HEAD", "CONNECT") or status in (204, 304):
            self.length = 0
        elif (chunked := _chunked(headers.get_all("Transfer-Encoding"))) is not None:
            self._chunked = chunked
            # Beside a Content-Length (or in HTTP/1.0) the coding wins, but the framing is
            # suspect (RFC 9112 6.1): what follows on the connection is no answer to trust.
            self.will_close = (self.will_close or not self._chunked
                               or "Content-Length" in headers or version == "HTTP/1.0")
        else:
            self.length = _content_length(headers.get_all("Content-Length"))
            self.will_close = self.will_close or self.length is None

    def read1(self, size: int, until: float | None = None) -> bytes:
        """Up to size bytes of the body as they come; b"" at its end (or, when a length
        is left, where the connection closed early). ``until``: a ``time.monotonic()``
        no read waits past (:class:`Overdue`)."""
        if self._chunked:
            return self._read_chunked(size, until)
        if self.length is None:
            return self._connection.read_some(size, until)
        if self.length == 0:
            return b""
        data = self._connection.read_some(min(size, self.length), until)
        self.length -= len(data)
        return data

    def _read_chunked(self, size: int, until: float | None) -> bytes:
        if self._chunk_left == 0:  # the line end after a chunk's data
            if self._connection.read_line(until) not in (b"\r\n", b"\n"):
                raise TransportError("the chunked answer has no line end after a chunk")
            self._chunk_left = -1
        if self._chunk_left < 0:
            line = self._connection.read_line(until)
            digits = line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(digits):  # int() would take '-5' and '1_0' too
                raise TransportError(f"the chunked answer was cut off or broken (a chunk"
                                     f" size line {line[:20]!r})")
            self._chunk_left = int(digits, 16)
            if self._chunk_left == 0:
                self._chunked = False
                self.length = 0
                try:  # trailer fields: nothing dcmweb reads, but bounded as headers
                    _HeadReader(self._connection, until, trailer=True).fields()
                except BrokenHead as exc:
                    raise TransportError(f"the chunked answer's trailer is broken: {exc}"
                                         ) from None
                return b""
        data = self._connection.read_some(min(size, self._chunk_left), until)
        if not data:
            raise TransportError(f"the chunked answer ended {self._chunk_left} bytes into "
                                 "a chunk")
        self._chunk_left -= len(data)
        return data

    def close(self) -> None:
        """Nothing more is read; whether the connection is reused is the pool's call."""


def _chunked(fields: list[str]) -> bool | None:
    """Whether a Transfer-Encoding makes the body chunked (False: ``identity`` alone, read
    to the close), or None without one. Any other coding is :class:`BrokenHead`: dcmweb
    sends no TE, so a server may apply none (RFC 9112 7.4), and read as the body its
    bytes were misread ('the answer is not JSON' and a gzip header)."""
    given = [coding.strip().lower() for field in fields for coding in field.split(",")]
    if not any(given):
        return None
    codings = [coding for coding in given if coding not in ("", "identity")]
    if codings not in ([], ["chunked"]):
        raise BrokenHead(f"its Transfer-Encoding {quoted(', '.join(fields)[:80])} is not "
                         "chunked coding, the only one dcmweb reads")
    return bool(codings)


def _content_length(values: list[str]) -> int | None:
    """The Content-Length of its fields (one number, given once or repeated alike), or
    None (read to the close) when there is none. Any other is :class:`BrokenHead`
    (RFC 9112 6.3): read to the close instead, the body of a server that keeps the
    connection open ended only at the low-speed limit, minutes later, as an outage."""
    given = [value.strip() for field in values for value in field.split(",")]
    if not given:
        return None
    if not all(_DECIMAL.fullmatch(value) for value in given):
        bad = next(value for value in given if not _DECIMAL.fullmatch(value))
        raise BrokenHead(f"its Content-Length {quoted(bad[:40])} is not a number of bytes")
    lengths = sorted({int(value) for value in given})
    if len(lengths) > 1:
        raise BrokenHead(f"it gives Content-Lengths that disagree: {lengths[0]} and "
                         f"{lengths[-1]}")
    return lengths[0]


def body_blocks(body: Any, block: int, *, zero_copy: bool = False
                ) -> Iterator[bytes | FileSlice]:
    """A request body as blocks: bytes whole, a readable object ``block`` bytes a read.
    With ``zero_copy`` (a plain socket: TLS encrypts in Python) a body that can
    (``read_or_slice``) gives its large files as :class:`FileSlice`s.
    A read error is the body's (a file), never the network's: it is not caught here."""
    if body is None:
        return
    if isinstance(body, bytes):
        yield body
        return
    read = body.read_or_slice if zero_copy and hasattr(body, "read_or_slice") else body.read
    while data := read(block):
        yield data
