"""The HTTP transport (dcmweb/transport.py, wire.py) against real sockets: pooled
connections, proxies from the environment (forward and CONNECT), ~/.netrc, content
codings, the ways an answer is framed, and answers that arrive early or on connections
the server has closed."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hostile import BASE_PATH, Hostile, Request, once, tls_certificate

from dcmweb.cli import cli
from dcmweb.errors import UsageError
from dcmweb.http import Http, HttpConfig, RetryPolicy
from dcmweb.multipart import MultipartBody
from dcmweb_devtools.logs import lines

ROWS = json.dumps([{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}]).encode()
NO_PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
                "https_proxy", "all_proxy", "no_proxy", "NETRC")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in NO_PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc of the machine


@pytest.fixture
def ct_file(pydicom_files: list[Path]) -> Path:
    return next(p for p in pydicom_files if p.name == "CT_small.dcm")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def timed_run(*args: str) -> tuple[Result, float]:
    """:func:`run`, and how many seconds it took."""
    started = time.monotonic()
    result = run(*args)
    return result, time.monotonic() - started


def rows(req: Request) -> None:
    req.reply(200, b"[]" if req.params.get("offset", "0") != "0" else ROWS,
              "application/dicom+json")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- connections ----------------------------------------------------------------------------
def test_one_connection_serves_a_whole_run() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", rows)
        result = run(fake.url, "search", "--format", "compact")
    assert result.exit_code == 0, result.stderr
    pages = fake.seen("GET", "/studies")
    assert len(pages) == 2
    assert len({page.peer_port for page in pages}) == 1  # kept alive, reused


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    """A keep-alive answer, then the server closes the idle connection (as servers do
    after their idle timeout): the next request opens a new one instead of failing on
    the dead one and retrying (a STOW on it would have been an answer lost)."""
    def answer_then_hang_up(req: Request) -> None:
        req.reply(200, ROWS, "application/dicom+json")
        req.handler.close_connection = True  # no "Connection: close" was announced

    with Hostile() as fake:
        fake.route("GET", "/studies", answer_then_hang_up)
        http = Http(config=HttpConfig(retry=RetryPolicy(base=0.01)))
        try:
            for _ in range(3):
                assert http.request("GET", fake.url + "/studies").content == ROWS
                time.sleep(0.2)  # the server has closed by now
            retries = http.stats.retries
        finally:
            http.close()
    seen = fake.seen("GET", "/studies")
    assert len(seen) == 3  # no request was sent twice
    assert len({request.peer_port for request in seen}) == 3
    assert retries == 0


class RawServer:
    """A loopback TCP server for answers http.server cannot give: ``handle`` gets each
    connection in its own thread; ``connections`` counts them."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            self.handle(connection)

    def handle(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.server.close()


def read_head(connection: socket.socket) -> bytes:
    """The request line and headers (and whatever body came with them)."""
    head = b""
    while b"\r\n\r\n" not in head:
        head += connection.recv(65536)
    return head


class EarlyAnswer(RawServer):
    """Answers 413 as soon as the request's headers arrived, then closes without reading
    the body (as a front end refusing a too-large upload does)."""

    def handle(self, connection: socket.socket) -> None:
        read_head(connection)
        connection.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain"
                           b"\r\nContent-Length: 17\r\nConnection: close\r\n\r\n"
                           b"the body is large")
        time.sleep(0.5)


@pytest.mark.parametrize("body", ["bytes", "file (sendfile)"])
def test_an_answer_sent_before_the_body_was_read_is_reported(tmp_path: Path, body: str) -> None:
    big = tmp_path / "big.dcm"
    big.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * (64 * 1024 * 1024))
    server = EarlyAnswer()
    try:
        http = Http(config=HttpConfig(retry=RetryPolicy(attempts=1)))
        try:
            response = http.request("POST", f"http://127.0.0.1:{server.port}/studies",
                                    body=lambda: (big.read_bytes() if body == "bytes"
                                                  else MultipartBody([big])),
                                    accept_status={413})
            assert (response.status_code, response.content) == (413, b"the body is large")
        finally:
            http.close()
    finally:
        server.close()


class CutsTheFirstBody(RawServer):
    """Resets the first connection half-way through the request body; answers 200 on the
    next once the whole body arrived, and keeps the bodies it got whole."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []
        self._seen = 0
        self._lock = threading.Lock()

    def handle(self, connection: socket.socket) -> None:
        with self._lock:
            self._seen += 1
            first = self._seen == 1
        head, _, body = read_head(connection).partition(b"\r\n\r\n")
        match = re.search(rb"Content-Length: (\d+)", head)
        assert match is not None
        length = int(match.group(1))
        while len(body) < (length // 2 if first else length):
            body += connection.recv(1 << 20)
        if first:  # a reset, not a clean close: the sender is cut at once
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        self.bodies.append(body)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


def test_a_body_cut_while_the_kernel_sends_it_goes_whole_again(tmp_path: Path) -> None:
    """The files of a multipart body go out by sendfile; a retry after a cut sends every
    byte again from a new body (no empty or half body on the resend)."""
    files = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    for path, size in zip(files, (4 << 20, 100, 3 << 20), strict=True):
        path.write_bytes(os.urandom(size))
    expected = MultipartBody(files, boundary="cut").read()
    server = CutsTheFirstBody()
    http = Http(config=HttpConfig(retry=RetryPolicy(attempts=2, base=0.01)))
    try:
        response = http.request("POST", f"http://127.0.0.1:{server.port}/studies",
                                body=lambda: MultipartBody(files, boundary="cut"),
                                accept_status={200})
    finally:
        http.close()
        server.close()
    assert (response.status_code, server.connections) == (200, 2)
    assert server.bodies == [expected]


class NotHttp(RawServer):
    """Another service on the port: it sends one line that is not HTTP to every connection
    (an SSH server, say) and closes."""

    def __init__(self, line: bytes) -> None:
        self.line = line
        super().__init__()

    def handle(self, connection: socket.socket) -> None:
        connection.recv(65536)
        connection.sendall(self.line)


@pytest.mark.parametrize("command", ["search", "store"])
def test_a_port_that_does_not_speak_http_fails_at_once(command: str, ct_file: Path) -> None:
    """Before, every attempt counted as a dropped connection and the run waited out the
    outage limit (5 minutes) before it said so."""
    args = [str(ct_file)] if command == "store" else []
    with closing(NotHttp(b"SSH-2.0-OpenSSH_9.2\r\n")) as other:
        result, elapsed = timed_run(f"http://127.0.0.1:{other.port}/dicomWeb", command, *args)
    assert result.exit_code == 5, result.stderr
    assert elapsed < 5
    assert other.connections == 1  # not retried
    assert (f"127.0.0.1:{other.port} answered with something that is not HTTP (it starts"
            " with 'SSH-2.0-OpenSSH_9.2\\r\\n') (check the port in HOST, and http:// against"
            " https://)") in result.stderr


# -- proxies ----------------------------------------------------------------------------------
def test_a_forward_proxy_from_the_environment_gets_the_whole_url(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake answers as the proxy: the HOST's port has nothing listening, so only a
    request through the proxy can succeed."""
    with Hostile() as proxy:
        proxy.route("GET", "/studies", rows)
        monkeypatch.setenv("HTTP_PROXY", f"http://pat:s%40fe@127.0.0.1:{proxy.port}")
        host = proxy.url.replace(f":{proxy.port}/", ":9/")
        result = run(host, "search", "--format", "compact")
    assert result.exit_code == 0, result.stderr
    first = proxy.seen("GET", "/studies")[0]
    assert first.target.startswith("http://127.0.0.1:9/v1/")
    assert first.headers["Proxy-Authorization"] == basic("pat", "s@fe")


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "*", "127.0.0.0/8", ".0.0.1"])
def test_no_proxy_bypasses_the_proxy(monkeypatch: pytest.MonkeyPatch, no_proxy: str) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", no_proxy)
    with Hostile() as fake:
        fake.route("GET", "/studies", rows)
        result = run(fake.url, "search", "--format", "compact")
    if no_proxy == ".0.0.1":  # a name's suffix never matches inside an address
        assert result.exit_code == 5
        assert "cannot reach the proxy http://127.0.0.1:9" in result.stderr
    else:
        assert result.exit_code == 0, result.stderr
        assert fake.seen("GET", "/studies")[0].target.startswith("/v1/")


class TunnelProxy(RawServer):
    """A CONNECT proxy: one tunnel per connection, bytes piped both ways."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        super().__init__()

    def handle(self, connection: socket.socket) -> None:
        head = read_head(connection)
        self.heads.append(head)
        host, _, port = head.split(b" ")[1].decode().rpartition(":")
        upstream = socket.create_connection((host, int(port)))
        connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=_pipe, args=(upstream, connection), daemon=True).start()
        _pipe(connection, upstream)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        sink.close()


def test_https_through_a_connect_proxy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cert, key = tls_certificate(tmp_path)
    proxy = TunnelProxy()
    try:
        with Hostile(tls=(cert, key)) as fake:
            fake.route("GET", "/studies", rows)
            monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{proxy.port}")  # no scheme: http
            monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # not for https
            result = run("--ca-bundle", str(cert), fake.url, "search", "--format", "compact")
    finally:
        proxy.close()
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(ROWS)
    assert proxy.heads and proxy.heads[0].startswith(f"CONNECT 127.0.0.1:{fake.port} ".encode())


# -- credentials from ~/.netrc ------------------------------------------------------------------
@pytest.fixture
def netrc_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "netrc"
    path.write_text("machine 127.0.0.1 login alice password s3cret\n")
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    return path


def test_netrc_credentials_are_used_without_others(netrc_file: Path) -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", rows)
        result = run(fake.url, "search")
    assert result.exit_code == 0, result.stderr
    assert fake.seen("GET", "/studies")[0].headers["Authorization"] == basic("alice", "s3cret")


@pytest.mark.parametrize(("options", "sent"), [
    (["--token", "tok"], "Bearer tok"),
    (["-H", "Authorization: Custom x"], "Custom x"),
    (["--user", "bob:pw"], basic("bob", "pw")),
])
def test_given_credentials_beat_netrc(netrc_file: Path, options: list[str], sent: str) -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", rows)
        result = run(*options, fake.url, "search")
    assert result.exit_code == 0, result.stderr
    assert [r.headers["Authorization"] for r in fake.seen("GET", "/studies")] == [sent] * 2


def test_credentials_in_host_beat_netrc(netrc_file: Path) -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", rows)
        host = fake.url.replace("http://", "http://carol:p%3Ass@")
        result = run(host, "search")
    assert result.exit_code == 0, result.stderr
    assert fake.seen("GET", "/studies")[0].headers["Authorization"] == basic("carol", "p:ss")


# -- answers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
def test_coded_answers_are_decoded(coding: str) -> None:
    if coding == "gzip":
        body, name = zlib.compress(ROWS, wbits=16 + zlib.MAX_WBITS), "gzip"
    elif coding == "deflate":
        body, name = zlib.compress(ROWS), "deflate"
    else:  # some servers send deflate without its zlib header
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body, name = packer.compress(ROWS) + packer.flush(), "deflate"

    def coded(req: Request) -> None:
        if req.params.get("offset", "0") != "0":
            return req.reply(200, b"[]", "application/dicom+json")
        req.reply(200, body, "application/dicom+json", headers={"Content-Encoding": name})

    with Hostile() as fake:
        fake.route("GET", "/studies", coded)
        result = run(fake.url, "search", "--format", "compact")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(ROWS)


@pytest.mark.parametrize("where", ["127.0.0.1", "localhost"])
def test_a_server_on_this_machine_is_not_asked_to_compress(where: str) -> None:
    """Compressing costs the server's CPU and saves nothing on loopback; a coded answer
    is still decoded (test above), and -H asks for it when a user wants it."""
    with Hostile() as fake:
        fake.route("GET", "/studies", rows)
        url = fake.url.replace("127.0.0.1", where)
        assert run(url, "search").exit_code == 0
        plain = [r.headers for r in fake.seen("GET", "/studies")]
        assert run("-H", "Accept-Encoding: gzip", url, "search").exit_code == 0
        asked = [r.headers for r in fake.seen("GET", "/studies")][len(plain):]
    assert plain and all("Accept-Encoding" not in h and h["Connection"] == "keep-alive"
                         for h in plain)
    assert asked and all(h["Accept-Encoding"] == "gzip" for h in asked)


def test_a_server_elsewhere_or_behind_a_proxy_is_asked_for_gzip(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with Hostile() as fake:  # the proxy: nothing goes past it
        fake.route("GET", "/studies", rows)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{fake.port}")
        for host in (f"http://pacs.example:8042{BASE_PATH}", fake.url):
            assert run(host, "search").exit_code == 0
    seen = [r.headers.get("Accept-Encoding") for r in fake.seen("GET", "/studies")]
    assert len(seen) >= 2 and set(seen) == {"gzip, deflate"}


def gzipped_rows(coding: str) -> Callable[[Request], None]:
    """ROWS gzipped, labelled with ``coding``."""
    def coded(req: Request) -> None:
        if req.params.get("offset", "0") != "0":
            return req.reply(200, b"[]", "application/dicom+json")
        req.reply(200, zlib.compress(ROWS, wbits=16 + zlib.MAX_WBITS),
                  "application/dicom+json", headers={"Content-Encoding": coding})
    return coded


def test_identity_beside_gzip_is_no_coding() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", gzipped_rows("gzip, identity"))
        result = run(fake.url, "search", "--format", "compact")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(ROWS)


@pytest.mark.parametrize("coding", ["br", "compress", "gzip, gzip"])
def test_a_coding_dcmweb_cannot_decode_is_named_and_not_asked_again(coding: str) -> None:
    """Old dcmweb read the coded bytes as they came: "the answer is not JSON", asked 3 times
    for a retrieve (as a cut), whatever the reader."""
    with Hostile() as fake:
        fake.route("GET", "/studies", gzipped_rows(coding))
        result = run(fake.url, "search")
        asked = len(fake.requests)
    assert result.exit_code == 1
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: search studies failed: the server sent its answer (HTTP 200) with "
        f"Content-Encoding {coding!r}, which dcmweb cannot decode (dcmweb decodes gzip and "
        "deflate only: have the server or proxy send those, or no coding)")
    assert asked == 1


def test_an_error_answer_in_an_unknown_coding_keeps_its_status() -> None:
    """Its status says what happened (404: exit 4); its body is not shown undecoded."""
    with Hostile() as fake:
        fake.route("GET", "/studies/1.2/metadata", lambda req: req.reply(
            404, zlib.compress(b"no such study", wbits=16 + zlib.MAX_WBITS), "text/plain",
            headers={"Content-Encoding": "br"}))
        result = run(fake.url, "retrieve", "studies/1.2/metadata")
    assert result.exit_code == 4, result.stderr
    assert "\\x1f" not in result.stderr and "Content-Encoding" not in result.stderr


def test_https_to_a_plain_http_port_says_so() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", rows)
        result = run(fake.url.replace("http://", "https://"), "search")
    assert result.exit_code == 5
    assert lines(result.stderr)[-1].endswith(
        "(the port does not speak TLS: did you mean http://?)"), result.stderr
    assert fake.requests == []


@pytest.mark.parametrize("members", [1, 3])
def test_a_small_coded_answer_is_decoded_a_bounded_amount_at_a_time(members: int) -> None:
    """A gzip bomb: 48 MiB of zeros in about 48 KiB. Each read hands out at most what was
    asked for, so no read holds the whole of it (the first read had held all 48 MiB)."""
    zeros = bytes(16 * 1024 * 1024)
    body = b"".join(zlib.compress(zeros, wbits=16 + zlib.MAX_WBITS) for _ in range(members))
    with Hostile() as fake:
        fake.route("GET", "/studies/1", lambda req: req.reply(
            200, body, "application/octet-stream", headers={"Content-Encoding": "gzip"}))
        http = Http()
        try:
            with http.request("GET", f"{fake.url}/studies/1", stream=True) as response:
                sizes = [len(chunk) for chunk in response.iter_content(1024 * 1024)]
        finally:
            http.close()
    assert len(body) < 64 * 1024 * members
    assert sum(sizes) == members * len(zeros)
    assert max(sizes) <= 1024 * 1024


def test_a_body_shorter_than_its_content_length_is_a_cut_and_retried() -> None:
    def short(req: Request) -> None:
        req.stream(200, "application/dicom+json", [ROWS[:10]], claimed_length=len(ROWS))

    with Hostile() as fake:
        fake.route("GET", "/studies", once(short, rows))
        result = run(fake.url, "search", "--format", "compact")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(ROWS)
    assert [r.params.get("offset", "0") for r in fake.seen("GET", "/studies")] == ["0", "0", "1"]


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://127.0.0.1/dicomWeb/studies", "the URL scheme 'ftp' is not http or https"),
    ("http:///dicomWeb/studies", "no host in the URL"),
    ("http://127.0.0.1:99999/dicomWeb/studies", "invalid URL"),
    ("127.0.0.1/dicomWeb/studies", "no http:// or https:// in the URL"),
])
def test_urls_that_cannot_be_requested_are_usage_errors(url: str, message: str) -> None:
    http = Http()
    try:
        with pytest.raises(UsageError, match=re.escape(message)):
            http.request("GET", url)
    finally:
        http.close()


# -- how answers are framed ---------------------------------------------------------------
class Scripted(RawServer):
    """Sends prepared answers, one per request in arrival order, whatever the connection;
    an answer marked ``close`` ends its connection after it is sent."""

    def __init__(self, answers: list[tuple[bytes, bool]]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        super().__init__()

    def handle(self, connection: socket.socket) -> None:
        while self.answers:
            try:
                head = read_head(connection)
            except OSError:
                return
            self.requests.append(head)
            answer, close = self.answers.pop(0)
            connection.sendall(answer)
            if close:
                return


def json_answer(head: bytes, body: bytes = ROWS) -> bytes:
    return head.replace(b"LENGTH", str(len(body)).encode()) + b"\r\n\r\n" + body


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKED = (b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n"
           + b"".join(b"%x;name=value\r\n%s\r\n" % (len(piece), piece)
                      for piece in (ROWS[:7], ROWS[7:]))
           + b"0\r\nX-Checksum: none\r\n\r\n")
FRAMINGS = {
    "content-length": [(json_answer(b"HTTP/1.1 200 OK\r\nContent-Length: LENGTH"), False)] * 2,
    "chunked, extensions and trailers": [(CHUNKED, False)] * 2,
    "100 Continue first": [(b"HTTP/1.1 100 Continue\r\n\r\n" + json_answer(
        b"HTTP/1.1 200 OK\r\nContent-Length: LENGTH"), False)] * 2,
    "folded header line": [(json_answer(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json;\r\n charset=utf-8\r\n"
        b"Content-Length: LENGTH"), False)] * 2,
    "HTTP/1.0, no length: to the close": [(json_answer(b"HTTP/1.0 200 OK"), True)] * 2,
    "Connection: close": [(json_answer(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: LENGTH"), True)] * 2,
    "bytes beyond the length": [(json_answer(
        b"HTTP/1.1 200 OK\r\nContent-Length: LENGTH") + b"junk", False)] * 2,
    # The coding wins, and the connection is not trusted with another answer.
    "chunked beside a Content-Length": [(CHUNKED.replace(
        b"Transfer-Encoding", b"Content-Length: 5\r\nTransfer-Encoding"), False)] * 2,
    "chunked in HTTP/1.0": [(CHUNKED.replace(b"HTTP/1.1", b"HTTP/1.0").replace(
        b"Transfer-Encoding", b"Connection: keep-alive\r\nTransfer-Encoding"), False)] * 2,
}


def _two_searches(server: Scripted, retry: RetryPolicy) -> None:
    """Two GETs that must each read the scripted rows whole; then both ends closed."""
    http = Http(config=HttpConfig(retry=retry))
    try:
        for _ in range(2):
            assert http.request("GET", f"http://127.0.0.1:{server.port}/studies").content == ROWS
    finally:
        http.close()
        server.close()


@pytest.mark.parametrize("framing", FRAMINGS)
def test_every_framing_of_an_answer_is_read_whole(framing: str) -> None:
    """Two GETs: each reads the whole body, and the connection is reused exactly when
    the first answer left it clean and open."""
    server = Scripted(list(FRAMINGS[framing]))
    _two_searches(server, RetryPolicy(attempts=1))
    reused = framing in ("content-length", "chunked, extensions and trailers",
                         "100 Continue first", "folded header line")
    assert server.connections == (1 if reused else 2)
    assert len(server.requests) == 2


@pytest.mark.parametrize("cut", [
    CHUNKED[:CHUNKED.index(b"0\r\n")],  # before the last chunk
    CHUNKED[:CHUNKED.index(b"\r\n\r\n") + 10],  # inside the first chunk
    json_answer(b"HTTP/1.1 200 OK\r\nContent-Length: LENGTH")[:-5],  # short of its length
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",  # inside the headers
    b"",  # no answer at all
    # Chunk sizes int() takes but HTTP does not: negative, with an underscore.
    CHUNKED_HEAD + b"-5\r\n[{}, {}, {}]\r\n0\r\n\r\n",
    CHUNKED_HEAD + b"1_0\r\n[{}, {}, {}, {}, {}]\r\n0\r\n\r\n",
])
def test_an_answer_cut_anywhere_is_retried_not_taken(cut: bytes) -> None:
    whole = json_answer(b"HTTP/1.1 200 OK\r\nContent-Length: LENGTH")
    server = Scripted([(cut, True), (whole, False)])
    http = Http(config=HttpConfig(retry=RetryPolicy(base=0.01)))
    try:
        assert http.request("GET", f"http://127.0.0.1:{server.port}/studies").content == ROWS
    finally:
        http.close()
        server.close()
    assert (server.connections, len(server.requests)) == (2, 2)


@pytest.mark.parametrize(("length", "said"), [
    (b"Content-Length: -5", "its Content-Length '-5' is not a number of bytes"),
    (b"Content-Length: abc", "its Content-Length 'abc' is not a number of bytes"),
    (b"Content-Length: +LENGTH", "its Content-Length '+48' is not a number of bytes"),
    (b"Content-Length: LENGTH, 10", "it gives Content-Lengths that disagree: 10 and 48"),
    (b"Content-Length: 200\r\nContent-Length: LENGTH",
     "it gives Content-Lengths that disagree: 48 and 200"),
])
def test_a_content_length_that_is_not_one_number_is_a_broken_answer(length: bytes,
                                                                    said: str) -> None:
    """Before, the body was read to the close, which a server keeping the connection
    open never came to: each try ended at the low-speed limit (2 minutes by default), and
    the run as an outage ('the server sent 48 bytes in 120 s, below the low-speed
    limit'), minutes later; a first Content-Length shorter than the body was taken."""
    answer = json_answer(b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\n"
                         + length)
    with closing(Scripted([(answer, False)] * 3)) as server:
        result, elapsed = timed_run("--low-speed-time", "2", "--outage-limit", "4",
                                    f"http://127.0.0.1:{server.port}/dicomWeb", "search")
    assert result.exit_code == 5, result.stderr
    assert elapsed < 5
    assert result.stdout == ""
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: search studies failed: 127.0.0.1:{server.port} sent an answer HTTP"
        f" does not allow ({said}) (the server, or a proxy in between, is broken; check HOST)")


@pytest.mark.parametrize(("coding", "said"), [
    (b"Transfer-Encoding: gzip, chunked", "'gzip, chunked'"),
    (b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked", "'gzip, chunked'"),
    (b"Transfer-Encoding: chunked, chunked", "'chunked, chunked'"),
    (b"Transfer-Encoding: chunked, gzip", "'chunked, gzip'"),
])
def test_a_transfer_coding_other_than_chunked_is_a_broken_answer(coding: bytes,
                                                                  said: str) -> None:
    """Before, the coded bytes were taken as the body: 'the answer is not JSON
    (UnicodeDecodeError: starts with '\\x1f...')', or a retrieve's 'not a readable
    DICOM file'."""
    answer = CHUNKED.replace(b"Transfer-Encoding: chunked", coding)
    with closing(Scripted([(answer, True)] * 3)) as server:
        result, elapsed = timed_run("--low-speed-time", "2", "--outage-limit", "4",
                                    f"http://127.0.0.1:{server.port}/dicomWeb", "search")
    assert result.exit_code == 5, result.stderr
    assert elapsed < 5
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: search studies failed: 127.0.0.1:{server.port} sent an answer HTTP"
        f" does not allow (its Transfer-Encoding {said} is not chunked coding, the only one"
        " dcmweb reads) (the server, or a proxy in between, is broken; check HOST)")


@pytest.mark.parametrize("length", [b"Content-Length: LENGTH, LENGTH",
                                    b"Content-Length: LENGTH\r\nContent-Length: LENGTH"])
def test_a_content_length_repeated_alike_is_that_length(length: bytes) -> None:
    answer = json_answer(b"HTTP/1.1 200 OK\r\n" + length)
    server = Scripted([(answer, False)] * 2)
    _two_searches(server, RetryPolicy(attempts=1))
    assert server.connections == 1


def test_the_request_head_is_plain_http_1_1() -> None:
    server = Scripted([(json_answer(b"HTTP/1.1 200 OK\r\nContent-Length: LENGTH"), False)])
    http = Http()
    try:
        http.request("POST", f"http://127.0.0.1:{server.port}/studies?x=a b^c",
                     body=lambda: b"12345", accept_status={200})
    finally:
        http.close()
        server.close()
    lines = server.requests[0].split(b"\r\n")
    assert lines[0] == b"POST /studies?x=a%20b^c HTTP/1.1"
    assert lines[1] == f"Host: 127.0.0.1:{server.port}".encode()
    assert b"Content-Length: 5" in lines
    assert server.requests[0].endswith(b"\r\n\r\n12345")  # head and body in one send


def test_https_connections_are_kept_alive(tmp_path: Path) -> None:
    """TLS 1.3 servers send session tickets after the handshake: they must not make an
    idle pooled connection look dropped (a new handshake for every request)."""
    cert, key = tls_certificate(tmp_path)
    with Hostile(tls=(cert, key)) as fake:
        fake.route("GET", "/studies", rows)
        result = run("--ca-bundle", str(cert), fake.url, "search", "--format", "compact")
    assert result.exit_code == 0, result.stderr
    pages = fake.seen("GET", "/studies")
    assert len(pages) == 2
    assert len({page.peer_port for page in pages}) == 1


def test_a_status_code_of_other_digits_is_not_http() -> None:
    """'\u00b2' is a digit to str.isdigit but not to int(): such a status line is an
    answer that is not HTTP (exit 5, said at once), never an uncaught ValueError."""
    server = Scripted([(b"HTTP/1.1 \xb200 OK\r\nContent-Length: 0\r\n\r\n", True)])
    try:
        result = run(f"http://127.0.0.1:{server.port}/dicomWeb", "search")
    finally:
        server.close()
    assert result.exit_code == 5, result.stderr
    assert "answered with something that is not HTTP (it starts with 'HTTP/1.1 \u00b200 OK" \
        in result.stderr


# -- heads without end --------------------------------------------------------------------------
class EndlessHead(RawServer):
    """Answers every request with ``start``, then ``more`` again and again (each
    ``every`` seconds apart) for at most ``seconds``, then ends the head and sends ROWS:
    a hostile head that, before it was bounded, dcmweb read as long as it lasted."""

    def __init__(self, start: bytes, more: bytes, every: float = 0.0,
                 seconds: float = 10.0) -> None:
        self.start, self.more, self.every, self.seconds = start, more, every, seconds
        super().__init__()

    def handle(self, connection: socket.socket) -> None:
        read_head(connection)
        until = time.monotonic() + self.seconds
        try:
            connection.sendall(self.start)
            while time.monotonic() < until:
                connection.sendall(self.more)
                time.sleep(self.every)
            connection.sendall(json_answer(b"Content-Length: LENGTH"))
        except OSError:
            pass  # dcmweb hung up: what the test wants


@pytest.mark.parametrize(("start", "more", "said"), [
    (b"HTTP/1.1 200 OK\r\nX-Fold: a\r\n", b" folded\r\n" * 1000, "its headers run over 200 lines"),
    (b"", b"HTTP/1.1 100 Continue\r\n\r\n",
     "over 10 informational (1xx) answers and no final one"),
    (b"HTTP/1.1 200 OK\r\n", b"X-Big: " + b"b" * 60000 + b"\r\n", "its headers are over 300 KiB"),
], ids=["folded lines", "100 Continue", "bytes"])
def test_an_endless_head_is_a_broken_answer(start: bytes, more: bytes, said: str) -> None:
    """Before, folded lines were not counted (and joined with quadratic copying), 1xx
    answers were skipped without end, and only one line's length was bounded: the run
    went on for as long as the server sent (the probe's ran 22 s, growing to 150 MB)."""
    with closing(EndlessHead(start, more)) as server:
        result, elapsed = timed_run(f"http://127.0.0.1:{server.port}/dicomWeb", "search")
    assert result.exit_code == 5, result.stderr
    assert elapsed < 5
    assert server.connections == 1  # at the start, reported at once: as an answer not HTTP
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: search studies failed: 127.0.0.1:{server.port} sent an answer HTTP"
        f" does not allow ({said}) (the server, or a proxy in between, is broken; check HOST)")


def test_an_endless_head_is_retried_once_the_server_answered() -> None:
    """As for any broken answer: after the server answered, it is an outage."""
    whole = json_answer(b"HTTP/1.1 200 OK\r\nContent-Length: LENGTH")
    server = Scripted([(whole, True), (b"HTTP/1.1 100 Continue\r\n\r\n" * 11, True),
                       (whole, True)])
    _two_searches(server, RetryPolicy(base=0.01))
    assert len(server.requests) == 3


@pytest.mark.parametrize(("start", "more", "every"), [
    (b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", 0.3),
    (b"", b"HTTP/1.1 100 Continue\r\n\r\n", 0.5),  # fewer than 10 by the deadline
], ids=["a header trickled", "100 Continue twice a second"])
def test_a_trickled_head_ends_at_the_request_deadline(start: bytes, more: bytes,
                                                      every: float) -> None:
    """Each byte came within the read timeout, so before only --read-timeout was checked
    and the run hung past --request-deadline and --outage-limit (killed at 60 s)."""
    with closing(EndlessHead(start, more, every=every, seconds=15)) as server:
        result, elapsed = timed_run("--read-timeout", "2", "--request-deadline", "3",
                                    f"http://127.0.0.1:{server.port}/dicomWeb", "search")
    assert result.exit_code == 5, result.stderr
    assert elapsed < 6
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: search studies failed: 127.0.0.1:{server.port} sent its answer's"
        " status line and headers too slowly (gave up after 3 s and 1 attempt: the request"
        " deadline) (raise --request-deadline for a server this slow)")


# -- a port that speaks only TLS -----------------------------------------------------------------
@pytest.mark.parametrize("command", ["search", "store"])
def test_http_to_a_port_that_speaks_only_tls_says_so(command: str, ct_file: Path,
                                                     tmp_path: Path) -> None:
    """The TLS server closes (resets) a plain-HTTP connection without a byte. Before,
    that was 'cannot reach HOST: connection dropped', retried for the outage limit."""
    cert, key = tls_certificate(tmp_path)
    with Hostile(tls=(cert, key)) as fake:
        url = fake.url.replace("https://", "http://")
        result, elapsed = timed_run(url, command,
                                    *([str(ct_file)] if command == "store" else []))
    assert result.exit_code == 5, result.stderr
    assert elapsed < 5
    assert (f"127.0.0.1:{fake.port} closed the connection without an answer (after 3"
            " attempts) (check the port in HOST, and http:// against https:// (a port that"
            " speaks only TLS closes plain HTTP without a word: did you mean https://?))"
            ) in result.stderr


# -- proxies that refuse ------------------------------------------------------------------------
class RefusingProxy(RawServer):
    """Answers every request (a CONNECT too) with ``status`` and a web page."""

    def __init__(self, status: bytes) -> None:
        self.status = status
        self.heads: list[bytes] = []
        super().__init__()

    def handle(self, connection: socket.socket) -> None:
        self.heads.append(read_head(connection))
        page = b"<html><body>Proxy says no</body></html>"
        connection.sendall(b"HTTP/1.1 " + self.status + b"\r\nProxy-Authenticate: Basic"
                           b' realm="corp"\r\nContent-Type: text/html\r\nContent-Length: '
                           + str(len(page)).encode() + b"\r\n\r\n" + page)


@pytest.mark.parametrize(("scheme", "status", "code"), [
    ("https", b"407 Proxy Authentication Required", 3),
    ("https", b"403 Forbidden", 1),
    ("http", b"407 Proxy Authentication Required", 3),
])
def test_a_proxy_that_refuses_fails_at_once(monkeypatch: pytest.MonkeyPatch, scheme: str,
                                            status: bytes, code: int) -> None:
    """Before, a refused CONNECT was 'cannot reach the proxy ... cannot connect', waited
    out for 5 minutes (exit 5); a plain proxy's 407 exit 1 with its HTML and no hint."""
    proxy = RefusingProxy(status)
    variable = f"{scheme.upper()}_PROXY"
    monkeypatch.setenv(variable, f"http://127.0.0.1:{proxy.port}")
    with closing(proxy):
        result, elapsed = timed_run(f"{scheme}://127.0.0.1:9/dicomWeb", "search")
    assert result.exit_code == code, result.stderr
    assert elapsed < 3
    assert proxy.connections == 1
    assert "<html" not in result.stderr
    said = (f"the proxy http://127.0.0.1:{proxy.port} refused the tunnel to 127.0.0.1:9: HTTP "
            if scheme == "https" else "HTTP ") + status.decode()
    hint = (f"the proxy wants credentials: give them in {variable}, as USER:PASSWORD@ between"
            f" http:// and 127.0.0.1:{proxy.port} (percent-encode ':', '@' and '/' in them)"
            if code == 3 else "check the proxy (HTTPS_PROXY / HTTP_PROXY), or bypass it for"
            " this host with NO_PROXY")
    assert lines(result.stderr)[-1] == f"dcmweb: error: search studies failed: {said} ({hint})"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxy_refusing_given_credentials_says_so(monkeypatch: pytest.MonkeyPatch,
                                                    scheme: str) -> None:
    proxy = RefusingProxy(b"407 Proxy Authentication Required")
    monkeypatch.setenv(f"{scheme}_proxy", f"http://pat:wrong@127.0.0.1:{proxy.port}")
    try:
        result = run(f"{scheme}://127.0.0.1:9/dicomWeb", "search")
    finally:
        proxy.close()
    assert result.exit_code == 3, result.stderr
    assert b"Proxy-Authorization: " + basic("pat", "wrong").encode() in proxy.heads[0]
    assert result.stderr.rstrip().endswith(
        f"(the proxy refused the user and password in {scheme.upper()}_PROXY; check them"
        " (percent-encode ':', '@' and '/' in them))")
    assert "wrong" not in result.stderr


def test_a_proxy_failing_the_tunnel_is_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 502/503/504 to the CONNECT: the proxy cannot reach the server now, waited out."""
    proxy = RefusingProxy(b"503 Service Unavailable")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    try:
        result = run("--outage-limit", "1", "https://127.0.0.1:9/dicomWeb", "search")
    finally:
        proxy.close()
    assert result.exit_code == 5, result.stderr
    assert proxy.connections >= 2
    assert lines(result.stderr)[-1].startswith(
        f"dcmweb: error: search studies failed: the proxy http://127.0.0.1:{proxy.port} (on"
        " the way to 127.0.0.1:9) refused the tunnel to 127.0.0.1:9: HTTP 503 Service"
        " Unavailable (the server was unavailable for")
