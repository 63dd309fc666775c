"""How transport failures are classified, against hostile fakes and the local server:
cut bodies, DNS failures, restarts, 500s, garbage Retry-After, trickles and silence."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import (
    Hostile,
    Request,
    cut,
    forward,
    once,
    raw_server,
    reading_heads_only,
    silent,
    stall,
    tls_certificate,
    trickle,
)

from dcmweb import transport
from dcmweb.body import LowSpeed, read_json
from dcmweb.cli import cli
from dcmweb.errors import ServerError, UnavailableError
from dcmweb.http import Http, HttpConfig, RetryPolicy
from dcmweb.testing import LocalServer
from dcmweb.wire import open_socket
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

ROWS = json.dumps([{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}]).encode()


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def rows(req: Request) -> None:
    """One page of one row; the next page (offset) is empty."""
    req.reply(200, b"[]" if req.params.get("offset", "0") != "0" else ROWS,
              "application/dicom+json")


def first_pages(fake: Hostile) -> list:
    return [r for r in fake.seen("GET", "/studies") if r.params.get("offset", "0") == "0"]


@pytest.fixture
def http() -> Iterator[Http]:
    session = Http(config=HttpConfig(retry=RetryPolicy(base=0.01), outage_limit=5))
    yield session
    session.close()


@pytest.fixture
def ct(pydicom_files: list[Path]) -> Path:
    return next(p for p in pydicom_files if p.name == "CT_small.dcm")


# -- retried ----------------------------------------------------------------------------------
def test_body_cut_mid_read_on_a_get_is_retried() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", once(cut(200, "application/dicom+json", ROWS, 10), rows))
        result = run(fake.url, "search", "--format", "compact")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(ROWS)
    assert len(first_pages(fake)) == 2


def _flaky_dns(monkeypatch: pytest.MonkeyPatch, code: int, failures: int) -> list[str]:
    """getaddrinfo fails ``failures`` times for 'localhost' with ``code``, then works."""
    real = socket.getaddrinfo
    calls: list[str] = []

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host in ("localhost", b"localhost"):  # dcmweb passes ASCII names as bytes
            calls.append("localhost")
            if len(calls) <= failures:
                raise socket.gaierror(code, "injected resolver failure")
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def test_temporary_dns_failure_is_retried(monkeypatch: pytest.MonkeyPatch, http: Http) -> None:
    calls = _flaky_dns(monkeypatch, socket.EAI_AGAIN, 2)
    with Hostile() as fake:
        fake.route("GET", "/studies", rows)
        response = http.request("GET", fake.url.replace("127.0.0.1", "localhost") + "/studies")
    assert response.json() == json.loads(ROWS)
    assert len(calls) == 3
    assert http.stats.retries == 2


def test_unknown_host_name_at_the_start_is_reported_at_once(monkeypatch: pytest.MonkeyPatch,
                                                            http: Http) -> None:
    calls = _flaky_dns(monkeypatch, socket.EAI_NONAME, 100)
    with pytest.raises(UnavailableError) as info:
        http.request("GET", "http://localhost:9/dicom-web/studies", what="search studies")
    assert info.value.message == (
        "search studies failed: cannot reach localhost:9: host name not found")
    assert len(calls) == 1


def test_refused_connection_mid_run_is_a_restart_and_waited_out(http: Http) -> None:
    first = Hostile()
    first.route("GET", "/studies", lambda req: req.reply(200, ROWS, "application/dicom+json",
                                                         headers={"Connection": "close"}))
    with first:
        http.request("GET", first.url + "/studies")
    port = first.port
    restarted: list[Hostile] = []

    def restart() -> None:
        time.sleep(1.0)
        server = Hostile(port)
        server.route("GET", "/studies", rows)
        restarted.append(server.__enter__())

    thread = threading.Thread(target=restart)
    thread.start()
    try:
        response = http.request("GET", first.url + "/studies")
        assert response.json() == json.loads(ROWS)
    finally:
        thread.join()
        for server in restarted:
            server.__exit__(None, None, None)
    assert http.stats.retries >= 1
    assert http.stats.unavailable_seconds >= 0.5


@pytest.mark.parametrize("value", ["\u00b2", "-5", "1.5", "soon", "\u0663", "99999999999"])
def test_garbage_retry_after_never_crashes(local_server, ct: Path, value: str) -> None:
    local_server.inject_fault(503, retry_after=value, method="POST")
    result = run(local_server.url, "store", str(ct))
    assert result.exit_code == 0, result.stderr
    assert [r.status for r in local_server.requests if r.method == "POST"] == [503, 200]


# -- a 500 is the server's verdict -------------------------------------------------------------
def test_500_is_retried_twice_then_reported_with_its_message(local_server) -> None:
    local_server.inject_fault(500, count=10, method="GET")
    result = run("--retries", "5", local_server.url, "search")
    assert result.exit_code == 1
    assert lines(result.stderr)[-1] == (
        "dcmweb: error: search studies failed: HTTP 500 Internal Server Error: injected fault"
        " (after 3 attempts)")
    assert "overloaded" not in result.stderr
    assert [r.status for r in local_server.requests] == [500] * 3


def test_a_lone_503_whose_own_backoff_ends_past_the_deadline_is_said_now(
        local_server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 503 among successes waits its own backoff, not every worker's; one that would end
    past the request deadline gives up at once with the 503 (a store then settles its
    files by search), as the shared backoff does."""
    # The longest wait of 0-1000 s: far past the deadline.
    monkeypatch.setattr("dcmweb.http.jitter", lambda low, high: high)
    session = Http(config=HttpConfig(retry=RetryPolicy(base=1000, cap=1000),
                                     request_deadline=5))
    url = local_server.url + "/studies"
    session.request("GET", url)  # a success: the server works
    local_server.inject_fault(503, method="GET")
    with pytest.raises(UnavailableError) as raised:
        session.request("GET", url)
    session.close()
    assert raised.value.status == 503
    assert raised.value.message.endswith("attempt: the request deadline)"), raised.value.message
    assert [r.status for r in local_server.requests] == [204, 503]


def test_a_store_retried_after_a_500_says_which_files_in_its_lines(local_server,
                                                                    ct: Path) -> None:
    """With several batches in flight, each retry line must say whose it is."""
    local_server.inject_fault(500, method="POST")
    result = run(local_server.url, "store", str(ct))
    assert result.exit_code == 0, result.stderr
    assert (f"store {ct} failed: HTTP 500 Internal Server Error: injected fault; 0 of 1 "
            "found on the server by search; retrying the other 1 in") in result.stderr


def corrupt_gzip(req: Request) -> None:
    """ROWS gzipped, with one byte of the compressed data flipped (as a broken proxy does)."""
    body = bytearray(zlib.compress(ROWS, wbits=16 + zlib.MAX_WBITS))
    body[-6] ^= 0xFF
    req.reply(200, bytes(body), "application/dicom+json", headers={"Content-Encoding": "gzip"})


def test_a_corrupt_gzip_answer_is_asked_again() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", once(corrupt_gzip, rows))
        result = run(fake.url, "search", "--format", "compact")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(ROWS)
    assert "search studies: the answer's gzip body cannot be decoded: Error -3 while" \
        " decompressing data: incorrect data check; retrying in" in result.stderr
    assert len(first_pages(fake)) == 2


def test_a_gzip_answer_always_corrupt_is_named_not_waited_out_as_an_outage() -> None:
    """Old dcmweb: 'cannot reach HOST: connection dropped', waited out for the whole
    outage limit (300 s), of a server that answered every request."""
    with Hostile() as fake:
        fake.route("GET", "/studies", corrupt_gzip)
        started = time.monotonic()
        result = run("--outage-limit", "30", fake.url, "search")
        elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1] == (
        "dcmweb: error: search studies failed: the answer's gzip body cannot be decoded:"
        " Error -3 while decompressing data: incorrect data check (3 attempts) (the server,"
        " or a proxy in between, sends broken compressed answers; check HOST)")
    assert "connection dropped" not in result.stderr and "outage" not in result.stderr
    assert len(first_pages(fake)) == 3
    assert elapsed < 10


# -- bounded waits ----------------------------------------------------------------------------
def test_trickling_answer_is_cut_off_and_retried() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies",
                   once(trickle(200, "application/dicom+json", ROWS, 0.3), rows))
        started = time.monotonic()
        result = run("--low-speed-limit", "100", "--low-speed-time", "1", fake.url, "search")
        elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(ROWS)
    assert "below the low-speed limit of 100 bytes/s; retrying (attempt 2)" in result.stderr
    assert len(first_pages(fake)) == 2
    assert elapsed < len(ROWS) * 0.3  # cut, not read to the end


def test_a_body_that_stops_is_cut_by_the_low_speed_limit() -> None:
    """0 bytes/s is slower than any limit: before, a body that stopped altogether was cut
    only by --read-timeout (300 s, 3 times for a download), since the meter ran only when
    bytes came."""
    with Hostile() as fake:
        fake.route("GET", "/studies",
                   once(stall(200, "application/dicom+json", ROWS, 10, 20), rows))
        started = time.monotonic()
        result = run("--low-speed-limit", "100", "--low-speed-time", "1", "--read-timeout",
                     "30", fake.url, "search", "--format", "compact")
        elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(ROWS)
    assert re.search(r"search studies: the server sent 10 bytes in 1 s, below the low-speed"
                     r" limit of 100 bytes/s; retrying \(attempt 2\)", result.stderr), \
        result.stderr
    assert elapsed < 5


def test_trickling_forever_ends_at_the_outage_limit() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", trickle(200, "application/dicom+json", ROWS, 0.3))
        result = run("--low-speed-limit", "100", "--low-speed-time", "1", "--outage-limit", "2",
                     fake.url, "search")
    assert result.exit_code == 5
    last = lines(result.stderr)[-1]
    assert "below the low-speed limit of 100 bytes/s (the server was unavailable for" in last
    assert 2 <= len(first_pages(fake)) <= 4


def test_a_server_taking_a_body_too_slowly_is_cut_by_the_low_speed_limit(
        local_server: LocalServer, tmp_path: Path) -> None:
    """A server (or a link) taking a store's body at 20 KB/s held an 8 MiB file for 7
    minutes a try: the low-speed limit judged answers only, and each byte went in time."""
    big = corpus.large_instance(tmp_path / "big.dcm", 2048)
    with Hostile(read_rate=20_000) as slow:
        slow.fallback = forward(local_server.root_url)
        started = time.monotonic()
        result = run("--low-speed-limit", "100000", "--low-speed-time", "2", "--outage-limit",
                     "3", slow.root_url + urlsplit(local_server.url).path, "store", str(big))
        elapsed = time.monotonic() - started
    assert elapsed < 40, result.stderr
    assert re.search(r"the server took \d+ bytes of the request in [23] s, below the low-speed "
                     r"limit of 100000 bytes/s while the request was sent", result.stderr), \
        result.stderr
    assert "after the request was sent" not in result.stderr
    assert result.exit_code in (1, 5), result.stderr
    assert local_server.store.query("SELECT sop_uid FROM instances") == []


def test_a_tls_body_taken_above_the_low_speed_limit_is_not_cut(
        local_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS takes a piece of a body whole or not at all: in pieces of 256 KiB, a server
    taking 60 KB/s showed no progress for 4.4 s at a time, and a limit of 5 KB/s over
    3 s would cut a send that was never below it. (At 150 KB/s and 1 s a busy CI machine
    cut the send once: the server's own pauses, 64 KiB read at a time, are near 1 s.)"""
    big = corpus.large_instance(tmp_path / "big.dcm", 512)  # 512 KiB
    cert, key = tls_certificate(tmp_path)

    def small_send_buffer(*args: Any) -> socket.socket:
        """The kernel's send buffer would take most of the body at once."""
        sock = open_socket(*args)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        return sock

    monkeypatch.setattr(transport, "open_socket", small_send_buffer)
    with Hostile(tls=(cert, key), read_rate=60_000) as slow:
        slow.fallback = forward(local_server.root_url)
        result = run("--ca-bundle", str(cert), "--low-speed-limit", "5000", "--low-speed-time",
                     "3", slow.root_url + urlsplit(local_server.url).path, "store", str(big))
    assert result.exit_code == 0, result.stderr
    assert "low-speed" not in result.stderr


def test_an_early_refusal_ends_the_send_at_once(tmp_path: Path) -> None:
    """A 413 sent before the server read the body, on a connection it kept open: dcmweb
    went on sending into a full socket until the read timeout, then called it silent."""
    big = corpus.large_instance(tmp_path / "big.dcm", 2048)
    refusal = (b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\n"
               b"Content-Length: 22\r\n\r\nthe body is over 1 MiB")
    with reading_heads_only(refusal) as url:
        started = time.monotonic()
        result = run("--read-timeout", "20", url, "store", str(big))
        elapsed = time.monotonic() - started
    assert elapsed < 10, result.stderr
    assert result.exit_code == 1, result.stderr
    assert "413" in result.stderr and "the body is over 1 MiB" in result.stderr
    assert "read timeout" not in result.stderr


def test_a_success_answered_before_the_body_was_taken_is_not_believed(tmp_path: Path) -> None:
    """A server that answers 200, naming the file's instance, before it read the body
    cannot have stored it: the file is settled by a search, never reported stored."""
    big = corpus.large_instance(tmp_path / "big.dcm", 2048)  # 8 MiB: more than buffers hold
    early = stow_answer(big)

    def answer_early(connection: socket.socket, head: bytes) -> None:
        post = head.startswith(b"POST")
        body = early if post else b"[]"  # a search finds nothing
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\n"
                           b"Content-Length: %d\r\n%s\r\n%s" % (
                               len(body), b"" if post else b"Connection: close\r\n", body))
        if not post:
            connection.close()

    with raw_server(answer_early) as url:
        result = run("--read-timeout", "5", "--outage-limit", "10", url, "store", str(big))
    assert result.exit_code == 1, result.stderr
    assert " uploaded as " not in result.stderr
    assert "the server answered HTTP 200 OK early while the request was sent" in \
        result.stderr, result.stderr


def stow_answer(path: Path) -> bytes:
    """A STOW-RS answer that says ``path``'s instance was stored."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return json.dumps({"00081199": {"vr": "SQ", "Value": [{
        "00081150": {"vr": "UI", "Value": [str(ds.SOPClassUID)]},
        "00081155": {"vr": "UI", "Value": [str(ds.SOPInstanceUID)]}}]}}).encode()


def test_a_100_continue_while_the_body_is_sent_is_no_answer(tmp_path: Path) -> None:
    """A server may send 100 Continue unasked (RFC 9110 15.2.1); one that sends it and
    only then reads the body is not answering early: the send goes on."""
    big = corpus.large_instance(tmp_path / "big.dcm", 2048)  # 8 MiB: more than buffers hold
    stored = stow_answer(big)
    bodies: list[int] = []

    def continue_then_read(connection: socket.socket, head: bytes) -> None:
        connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        time.sleep(0.5)  # the client's send fills the buffers meanwhile
        length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
        received = 0
        while received < length and (piece := connection.recv(1 << 16)):
            received += len(piece)
        bodies.append(received)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(stored), stored))

    with raw_server(continue_then_read) as url:
        # Was: the send stopped at the 100 and waited for an answer that the server, still
        # waiting for the body, never sent: read timeouts until the outage limit.
        result = run("--read-timeout", "5", "--outage-limit", "10", url, "store", str(big))
    assert result.exit_code == 0, result.stderr
    assert bodies and bodies[0] > big.stat().st_size
    assert " uploaded as " in result.stderr


def test_a_server_that_takes_no_more_of_the_body_is_named_so(tmp_path: Path) -> None:
    """Was: 'no answer from HOST within the read timeout ... after the request was sent',
    of a request the server never had whole."""
    big = corpus.large_instance(tmp_path / "big.dcm", 2048)
    with reading_heads_only(None) as url:
        result = run("--read-timeout", "1", "--low-speed-limit", "0", "--outage-limit", "2",
                     url, "store", str(big))
    assert result.exit_code in (1, 5), result.stderr
    assert "the server took no byte of the request for 1 s (the read timeout) while the " \
           "request was sent" in result.stderr, result.stderr
    assert "after the request was sent" not in result.stderr


def test_silent_server_ends_at_the_request_deadline() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", silent(10))
        started = time.monotonic()
        result = run("--read-timeout", "0.5", "--request-deadline", "2", fake.url, "search")
        elapsed = time.monotonic() - started
    assert result.exit_code == 5
    assert elapsed < 6
    last = lines(result.stderr)[-1]
    assert re.fullmatch(rf"dcmweb: error: search studies failed: no answer from 127\.0\.0\.1:"
                        rf"{fake.port} within the read timeout \(gave up after 2 s and \d"
                        r" attempts: the request deadline\) \(raise --request-deadline for a"
                        r" server this slow\)", last), last


def test_a_deadline_shorter_than_the_read_timeout_is_named_alone(local_server) -> None:
    """Old dcmweb: 'cannot reach HOST: no answer within the read timeout (gave up after 2 s
    and 1 attempts: the request deadline) (check the HOST URL and that the server is
    running)', of a server that was running and a read timeout of 300 s never reached."""
    local_server.inject_fault(delay=5.0, count=3)
    result = run("--request-deadline", "2", local_server.url, "search")
    assert result.exit_code == 5
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: search studies failed: no answer from 127.0.0.1:{local_server.port}"
        " (gave up after 2 s and 1 attempt: the request deadline) (raise --request-deadline"
        " for a server this slow)")


# -- JSON limits ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"[" * 100_000 + b"]" * 100_000, "search failed: the server's JSON answer is nested"
      " too deeply"),
     (b"[" + b"1," * 600 + b"1]", "search failed: the server's answer is larger than 1000 bytes"),
     (b"<html>login</html>", "search failed: the answer is not JSON (JSONDecodeError: starts"
      " with '<html>login</html>')")],
    ids=["deep", "large", "html"],
)
def test_read_json_refuses_hostile_answers(http: Http, payload: bytes, message: str) -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.reply(200, payload, "application/json"))
        response = http.request("GET", fake.url + "/studies", stream=True)
        with pytest.raises(ServerError) as info:
            read_json(response, 1000 if len(payload) < 2000 else 10**6, "search")
    assert info.value.message == message
    assert info.value.exit_status == 1


def test_low_speed_is_configurable_per_session() -> None:
    assert HttpConfig().low_speed == LowSpeed(1024.0, 120.0)
