"""The HTTP layer under store: retries that resend every byte, what is never retried, timeouts,
connection failures, headers, exit codes, and secrets kept out of the output.

Faults come from the local GCP-like server, which records every request it received
(body length and SHA-256), so each attempt's body is checked, not assumed.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dcmweb import Client, __version__
from dcmweb.cli import cli
from dcmweb.errors import AuthError, NotFoundError, UnavailableError, UsageError
from dcmweb.failures import parse_retry_after
from dcmweb.http import Http, HttpConfig, RetryPolicy
from dcmweb.multipart import FileChanged, MultipartBody
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines, messages

SECRET = "SECRET-9f8e7d6c5b4a"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def ct(pydicom_files: list[Path]) -> Path:
    return next(p for p in pydicom_files if p.name == "CT_small.dcm")


@pytest.fixture
def mr(pydicom_files: list[Path]) -> Path:
    return next(p for p in pydicom_files if p.name == "MR_small.dcm")


def posts(local_server) -> list:
    return [r for r in local_server.requests if r.method == "POST"]


def expected_body(record, paths: list[Path]) -> bytes:
    """What the client must send: the file itself, or the multipart body around the files."""
    content_type = record.headers["Content-Type"]
    if content_type == "application/dicom":
        assert len(paths) == 1
        return paths[0].read_bytes()
    boundary = content_type.rsplit("boundary=", 1)[1].strip('"')
    return MultipartBody(paths, boundary=boundary).read()


def assert_every_attempt_complete(local_server, paths: list[Path], attempts: int) -> None:
    records = posts(local_server)
    assert len(records) == attempts, [(r.status, r.body_length) for r in records]
    for record in records:
        body = expected_body(record, paths)
        assert record.complete
        assert record.body_length == len(body)  # never an empty or short body
        assert record.body_sha256 == hashlib.sha256(body).hexdigest()
    assert records[-1].status == 200
    assert all(r.status != 200 for r in records[:-1])


def stored_bytes(local_server, path: Path) -> bytes:
    rows = local_server.store.query("SELECT * FROM instances")
    matches = [local_server.store.file_path(row).read_bytes() for row in rows]
    assert len(matches) == 1
    return matches[0]


def store_one(local_server, path: Path, *, single_part: bool, **client_options):
    client_options.setdefault("backoff", 0.01)
    with Client(local_server.url, **client_options) as client:
        started = time.monotonic()
        results = client.store([path], single_part=single_part)
        elapsed = time.monotonic() - started
    assert [(r.status, r.message) for r in results] == [("stored", None)]
    return elapsed


# -- retries carry every byte ----------------------------------------------------------------
FAULTS = {
    "503": ({"status": 503, "count": 2}, 3, 0.0),
    "503-retry-after": ({"status": 503, "retry_after": "1"}, 2, 1.0),
    "429-retry-after": ({"status": 429, "retry_after": "1"}, 2, 1.0),
    "500-502-504": (None, 4, 0.0),  # three faults, one after the other
    "dropped": ({"drop": True, "count": 2}, 3, 0.0),
}


@pytest.mark.parametrize("single_part", [False, True], ids=["multipart", "single-part"])
@pytest.mark.parametrize("name", list(FAULTS))
def test_retried_store_resends_the_whole_body(local_server, ct: Path, name: str,
                                              single_part: bool) -> None:
    fault, attempts, min_elapsed = FAULTS[name]
    if fault is None:
        for status in (500, 502, 504):
            local_server.inject_fault(status, method="POST")
    else:
        local_server.inject_fault(method="POST", **fault)
    elapsed = store_one(local_server, ct, single_part=single_part)
    assert_every_attempt_complete(local_server, [ct], attempts)
    assert stored_bytes(local_server, ct) == ct.read_bytes()
    assert elapsed >= min_elapsed
    if not min_elapsed:
        assert elapsed < 2  # backoff=0.01: no long sleeps when no Retry-After was sent


def test_retried_batch_resends_every_file(local_server, ct: Path, mr: Path) -> None:
    local_server.inject_fault(503, method="POST")
    local_server.inject_fault(drop=True, method="POST")
    with Client(local_server.url, backoff=0.01) as client:
        results = client.store([ct, mr])
    assert [r.status for r in results] == ["stored", "stored"]
    assert_every_attempt_complete(local_server, [ct, mr], 3)


def test_retry_after_http_date(local_server, ct: Path) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1 to 2 s
    local_server.inject_fault(503, retry_after=when, method="POST")
    elapsed = store_one(local_server, ct, single_part=False)
    assert elapsed >= 0.9
    assert_every_attempt_complete(local_server, [ct], 2)


def test_read_timeout_is_retried_and_the_late_answer_is_harmless(local_server, ct: Path) -> None:
    # The first attempt is answered after 1.5 s (and stored then); the client gave up at
    # 0.4 s and sent it again. Re-storing identical bytes is a no-op on GCP.
    local_server.inject_fault(delay=1.5, method="POST")
    store_one(local_server, ct, single_part=False, read_timeout=0.4)
    deadline = time.monotonic() + 5
    while len(posts(local_server)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    records = posts(local_server)
    assert len(records) == 2
    body_lengths = {r.body_length for r in records}
    assert body_lengths == {len(expected_body(records[0], [ct]))}
    assert stored_bytes(local_server, ct) == ct.read_bytes()


class RotatingAuth:
    """A bearer credential whose refresh() yields a new token, like an expired OAuth token."""

    def __init__(self, token: str, new_token: str) -> None:
        self.token, self.new_token, self.refreshes = token, new_token, 0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def refresh(self) -> bool:
        self.refreshes += 1
        self.token = self.new_token
        return True


@pytest.mark.parametrize("single_part", [False, True], ids=["multipart", "single-part"])
def test_401_refreshes_once_and_resends_the_whole_body(local_server, ct: Path,
                                                       single_part: bool) -> None:
    local_server.token = "fresh-token"
    auth = RotatingAuth("expired-token", "fresh-token")
    with Client(local_server.url, backoff=0.01) as client:
        client.http.auth = auth
        results = client.store([ct], single_part=single_part)
    assert [r.status for r in results] == ["stored"]
    assert auth.refreshes == 1
    records = posts(local_server)
    assert [r.status for r in records] == [401, 200]
    assert [r.headers["Authorization"] for r in records] == [
        "Bearer expired-token", "Bearer fresh-token"]
    assert_every_attempt_complete(local_server, [ct], 2)
    assert stored_bytes(local_server, ct) == ct.read_bytes()


def test_401_after_refresh_is_not_refreshed_again(local_server, ct: Path) -> None:
    local_server.token = "never-matches"
    auth = RotatingAuth("a", "b")
    with Client(local_server.url, backoff=0.01) as client:
        client.http.auth = auth
        with pytest.raises(AuthError) as info:
            client.store([ct])
    assert auth.refreshes == 1
    assert [r.status for r in posts(local_server)] == [401, 401]
    assert info.value.exit_status == 3


# -- never retried -----------------------------------------------------------------------------
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
def test_client_errors_are_never_retried(local_server, ct: Path, status: int) -> None:
    local_server.inject_fault(status, count=5, method="POST")
    with Client(local_server.url, backoff=0.01) as client:
        if status in (400, 409):  # a verdict on the file: reported, the run goes on
            results = client.store([ct])
            reason = {400: "Bad Request", 409: "Conflict"}[status]
            assert [(r.status, r.message) for r in results] == [
                ("failed", f"HTTP {status} {reason}: injected fault")]
        else:
            expected = {401: AuthError, 403: AuthError, 404: NotFoundError}[status]
            with pytest.raises(expected):
                client.store([ct])
    assert len(posts(local_server)) == 1


def test_server_error_envelope_message_is_shown(local_server, ct: Path) -> None:
    # A real 400 from the server (it checks Storage-Class), with Google's JSON envelope.
    result = run("-H", "Storage-Class: FROZEN", local_server.url, "store", str(ct))
    assert result.exit_code == 1  # nothing stored (old dcmweb: 6)
    assert (f"dcmweb: error: {ct} failed: HTTP 400 Bad Request:"
            " invalid Storage-Class header 'FROZEN'") in lines(result.stderr)
    assert len(posts(local_server)) == 1


# -- exit codes and messages -----------------------------------------------------------------
def test_outage_limit_reached_exit_5(local_server, ct: Path) -> None:
    local_server.inject_fault(503, count=1000, retry_after="0", method="POST")
    result = run("--outage-limit", "0.5", local_server.url, "store", str(ct))
    assert result.exit_code == 5
    assert result.stdout == ""
    last = lines(result.stderr)[-1]
    assert last.startswith(
        f"dcmweb: error: store {ct} failed: HTTP 503 Service Unavailable: injected fault"
        " (the server was unavailable for "), last
    assert last.endswith(" s, the outage limit) (the server is overloaded or down;"
                         " try again later)")
    assert len(posts(local_server)) >= 2
    assert "HTTP 503 Service Unavailable; retrying (attempt 2)" in result.stderr


def test_an_outage_limit_ends_the_run_near_it_not_a_backoff_step_later(local_server) -> None:
    local_server.inject_fault(503, count=1000, method="GET")
    result = run("--outage-limit", "3", local_server.url, "search")
    assert result.exit_code == 5
    said = re.search(r"the server was unavailable for (\d+) s, the outage limit", result.stderr)
    assert said is not None, result.stderr
    assert int(said[1]) <= 4  # was 5-6 s: the backoff's last step waited past the limit


def test_max_rate_holds_no_try_past_the_outage_limit(local_server, ct: Path) -> None:
    """--max-rate 1 --outage-limit 3: the backoff's last wait ended at the limit, and the
    rate's token a second after the last try; that try went at 3-4 s, a progress line
    said "for 4 s, retrying up to 3 s". Tries at about 0, 1 and 2-3 s (the backoff's
    second step); the next token is past the limit: the run gives up there."""
    local_server.inject_fault(503, count=1000, method="POST")
    result = run("--max-rate", "1", "--outage-limit", "3", local_server.url, "store",
                 str(ct), "--progress-every", "0.2")
    assert result.exit_code == 5, result.stderr
    assert len(posts(local_server)) == 3, result.stderr
    assert re.search(r"\(the server was unavailable for \d s(, the outage limit|, and "
                     r"--max-rate allows no other try within the outage limit of 3 s)\)",
                     lines(result.stderr)[-1]), result.stderr
    assert "retrying (attempt 4)" not in result.stderr  # none comes
    told = [m for m in messages(result.stderr, "info") if "server unavailable" in m]
    assert told and not [m for m in told if re.search(r"for [4-9] s, retrying", m)], told


def test_retries_do_not_end_an_outage_that_ends(local_server, ct: Path) -> None:
    """--retries 1 used to end this run after two 503s; the server came back after ten."""
    local_server.inject_fault(503, count=10, retry_after="0", method="POST")
    result = run("--retries", "1", local_server.url, "store", str(ct))
    assert result.exit_code == 0, result.stderr
    assert [r.status for r in posts(local_server)] == [503] * 10 + [200]


def test_dropped_connections_to_every_store_are_an_outage_ridden_out(local_server, ct: Path
                                                                     ) -> None:
    local_server.inject_fault(drop=True, count=10, method="POST")
    with Client(local_server.url, backoff=0.01, retries=2) as client:
        results = client.store([ct])
    # No store succeeded between the drops: an outage, not this file's own failure (before,
    # the file failed "(after 3 attempts)").
    assert [(r.status, r.confirmed_by) for r in results] == [("stored", "answer")]
    records = posts(local_server)
    assert [r.status for r in records][-1] == 200 and len(records) == 11
    assert all(r.body_length == len(expected_body(r, [ct])) for r in records)
    # Each lost answer was checked by a search before the next attempt.
    assert [r.method for r in local_server.requests] == ["POST", "GET"] * 10 + ["POST"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_quick_exit_5(ct: Path) -> None:
    port = free_port()
    started = time.monotonic()
    result = run(f"http://127.0.0.1:{port}/dicom-web", "store", str(ct))
    elapsed = time.monotonic() - started
    assert elapsed < 3
    assert result.exit_code == 5
    assert result.stdout == ""
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: store {ct} failed: cannot reach 127.0.0.1:{port}: connection refused"
        " (after 3 attempts) (check the HOST URL and that the server is running)")


def test_workers_meeting_one_outage_print_each_retry_line_once(tmp_path: Path) -> None:
    """Six workers against a server that is down had printed six alike lines per attempt;
    the others' lines are kept for -v."""
    files = corpus.synthetic_files(tmp_path / "in", 30)
    host = f"http://127.0.0.1:{free_port()}/dicom-web"
    quiet = run("-m", "--workers", "6", host, "store", "--batch-size", "5", str(files[0].parent))
    assert quiet.exit_code == 5
    retries = [line for line in messages(quiet.stderr, "warning") if "retrying" in line]
    assert [line[-len("(attempt 2)"):] for line in retries] == ["(attempt 2)", "(attempt 3)"]
    loud = run("-v", "-m", "--workers", "6", host, "store", "--batch-size", "5",
               str(files[0].parent))
    assert loud.stderr.count("; retrying") == 12


def test_every_retry_line_has_one_shape(local_server) -> None:
    """Old dcmweb: '...; retrying (attempt 2)' for a 503 but '...: HTTP 500; retrying in
    0.4 s' for a 500 and a refused connection, so a grep for either missed lines."""
    local_server.inject_fault(503, count=1, retry_after="0")
    local_server.inject_fault(500, count=1)
    result = run(local_server.url, "search")
    assert result.exit_code == 0, result.stderr
    refused = run(f"http://127.0.0.1:{free_port()}/dicom-web", "search")
    assert refused.exit_code == 5
    shape = re.compile(r"search studies: (.+); retrying( in \d+\.\d s)? \(attempt (\d)\)")
    got = [shape.fullmatch(line) for line in messages(result.stderr + refused.stderr,
                                                       "warning")]
    assert all(got), got
    assert [(m[1].rsplit(":", 1)[-1].strip(), m[3]) for m in got if m] == [
        ("HTTP 503 Service Unavailable", "2"), ("HTTP 500 Internal Server Error", "3"),
        ("connection refused", "2"), ("connection refused", "3")]


def test_read_timeouts_to_every_store_are_an_outage_ridden_out(local_server, ct: Path
                                                                ) -> None:
    # Slow, then dropped: never stored, so the outcome cannot depend on timing. Waiting
    # for the server would take 12 s: the read timeout cuts each attempt short.
    local_server.inject_fault(delay=6.0, drop=True, count=2, method="POST")
    started = time.monotonic()
    result = run("--read-timeout", "0.3", "--retries", "1", local_server.url, "store", str(ct))
    assert time.monotonic() - started < 6
    # No store succeeded between them: an outage, not this file's own failures (before,
    # the file failed "(after 2 attempts)").
    assert result.exit_code == 0, result.stderr
    got = lines(result.stderr)
    assert got[0].startswith("dcmweb: info: store to "), got[0]  # the run's opening line
    assert got[1] == (
        f"dcmweb: info: store {ct}: no answer within the read timeout after the request was"
        " sent; 0 of 1 found on the server by search; the server is unavailable: retrying"
        " the other 1")
    assert f"{ct} uploaded as " in result.stderr
    assert re.fullmatch(r"dcmweb: info: Transferred .* in 1 file; server unavailable for"
                        r" \d+ s", got[-1]), got[-1]


def test_401_without_refresh_exit_3_with_hint(local_server, ct: Path) -> None:
    local_server.token = "the-right-one"
    result = run("--token", "wrong", local_server.url, "store", str(ct))
    assert result.exit_code == 3
    assert result.stdout == ""
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: store {ct} failed: HTTP 401 Unauthorized: Request had invalid"
        " authentication credentials. Expected OAuth 2 access token, login cookie or other"
        " valid authentication credential. (check the credentials: --token, --user,"
        " an Authorization header (-H) or ~/.netrc)")
    assert len(posts(local_server)) == 1


@pytest.mark.parametrize(("url", "hint"), [
    ("https://healthcare.googleapis.com/v1/projects/p/locations/l/datasets/d/dicomStores/s"
     "/dicomWeb/studies", "or 'gcloud auth application-default login'"),
    ("http://127.0.0.1:8042/dicom-web/studies", "an Authorization header (headers) or ~/.netrc"),
])
def test_401_hint_fits_the_host_kind(url: str, hint: str) -> None:
    import requests

    from dcmweb.failures import error_for_response

    response = requests.Response()
    response.status_code, response.reason, response.url = 401, "Unauthorized", url
    response._content, response._content_consumed = b"", True  # an empty body, read
    error = error_for_response(response, "search studies")
    assert (error.status, error.url) == (401, url)
    assert error.hint is not None and error.hint.endswith(hint)


def test_wrong_base_path_exit_4(local_server, ct: Path) -> None:
    result = run(local_server.root_url + "/wrong/dicomWeb", "store", str(ct))
    assert result.exit_code == 4
    assert result.stdout == ""
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: store {ct} failed: HTTP 404 Not Found: no such resource:"
        " /wrong/dicomWeb/studies (check the HOST URL and the UIDs in the path)")


def test_auth_failure_stops_a_bulk_run(local_server, tmp_path: Path, ct: Path) -> None:
    from dcmweb_devtools import corpus

    files = corpus.synthetic_files(tmp_path / "s", 6)
    local_server.token = "right"
    result = run("--token", "wrong", local_server.url, "store", "--batch-size", "2",
                 str(tmp_path / "s"))
    assert result.exit_code == 3
    # The batch sent and refused is 2 failed files (old dcmweb: "6 not attempted").
    assert "Transferred 0 B in 0 files; 2 failed, 4 not attempted" in result.stderr
    assert len(posts(local_server)) == 1
    assert len(files) == 6


# -- headers -----------------------------------------------------------------------------------
def test_headers_sent(local_server, ct: Path) -> None:
    local_server.inject_fault(503, method="POST")
    result = run("-H", "X-Trace: abc", local_server.url, "store", str(ct))
    assert result.exit_code == 0, result.stderr
    result = run(local_server.url, "store", "--single-part", str(ct))
    assert result.exit_code == 0, result.stderr
    records = local_server.requests
    assert len(records) == 3
    for record in records:
        names = {name.lower() for name in record.headers}
        assert "expect" not in names  # Orthanc never answers 100-continue
        assert record.headers["User-Agent"] == f"dcmweb/{__version__}"
        assert "Authorization" not in record.headers
    assert [r.headers.get("X-Trace") for r in records] == ["abc", "abc", None]


# -- secrets -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "credentials",
    [["--token", SECRET], ["--user", f"someone:{SECRET}"], ["--token", SECRET + "\n"],
     ["-H", f"Authorization: Bearer {SECRET}\n"]],
    ids=["token", "user", "token-newline", "header-newline"],
)
def test_secrets_never_printed_on_errors(local_server, ct: Path, credentials: list[str]) -> None:
    local_server.token = "something-else"
    result = run("-v", "-v", *credentials, local_server.url, "store", str(ct))
    assert result.exit_code in (2, 3), result.stderr
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr
    assert lines(result.stderr)[-1].startswith("dcmweb: error: ")


def test_token_read_with_a_trailing_newline_still_works(local_server, ct: Path) -> None:
    local_server.token = SECRET
    result = run("--token", SECRET + "\n", local_server.url, "store", str(ct))
    assert result.exit_code == 0, result.stderr
    assert SECRET not in result.stderr


@pytest.mark.parametrize(("option", "value"), [("--type", "application/dicom\r\nX: 1"),
                                               ("--transfer-syntax", "1.2\r\nX: 1")])
def test_a_line_break_in_the_asked_type_names_the_option(local_server, option: str,
                                                         value: str) -> None:
    result = run(local_server.url, "retrieve", "studies/1.2.3", option, value)
    assert result.exit_code == 2
    assert lines(result.stderr)[-1].endswith(
        "(check --type, --transfer-syntax, -H, --token, --user)")
    assert local_server.requests == []


def test_bad_header_value_is_a_usage_error(local_server, ct: Path) -> None:
    result = run("-H", f"X-Api-Key: {SECRET}\nInjected: 1", local_server.url, "store", str(ct))
    assert result.exit_code == 2
    assert lines(result.stderr)[-1] == (
        "dcmweb: error: the -H X-Api-Key value has a line break in it"
        " (check --token, --user and -H)")
    assert posts(local_server) == []  # refused before anything was sent


def test_secrets_never_printed_when_it_works(local_server, ct: Path) -> None:
    local_server.token = SECRET
    local_server.inject_fault(503, method="POST")
    result = run("-v", "--traceback", "--token", SECRET, local_server.url, "store", str(ct))
    assert result.exit_code == 0, result.stderr
    assert "debug: POST" in result.stderr and "retrying" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert [r.headers["Authorization"] for r in posts(local_server)] == [f"Bearer {SECRET}"] * 2


def test_auth_objects_hide_secrets() -> None:
    from dcmweb.auth import BasicAuth, BearerAuth

    assert SECRET not in repr(BearerAuth(SECRET))
    assert SECRET not in repr(BasicAuth("u", SECRET))


# -- the session on its own (GET) --------------------------------------------------------------
def test_get_is_retried_and_errors_are_mapped(local_server) -> None:
    http = Http(config=HttpConfig(retry=RetryPolicy(attempts=3, base=0.01), outage_limit=0.3))
    try:
        local_server.inject_fault(502, method="GET")
        local_server.inject_fault(drop=True, method="GET")
        response = http.request("GET", local_server.url + "/studies")
        assert response.status_code == 204 and response.content == b""  # an empty store
        assert [r.status for r in local_server.requests] == [502, None, 204]
        # More faults than 0.3 s of immediate retries can use up (1,000 took 0.26 s here).
        local_server.inject_fault(429, count=100_000, retry_after="0", method="GET")
        with pytest.raises(UnavailableError) as info:
            http.request("GET", local_server.url + "/studies", what="search studies")
        assert info.value.message.startswith(
            "search studies failed: HTTP 429 Too Many Requests: injected fault (the server was"
            " unavailable for ")
    finally:
        http.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("3", 3.0), (" 7 ", 7.0), ("soon", None), ("-1", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("\u00b2", None), ("1\u00b2", None),
     ("\u0663", None), ("1.5", None), ("99999999999", None), ("Mon, 99 Foo 99999 99:99:99", None),
     ("\x00", None)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_future_date() -> None:
    value = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = parse_retry_after(value)
    assert seconds is not None and 28 <= seconds <= 30


# -- one Client, several calls: each counts its own outage -------------------------------------
def outage_seconds(error: UnavailableError) -> float:
    found = re.search(r"the server was unavailable for ([0-9]+) s, the outage limit", str(error))
    assert found, str(error)
    return float(found.group(1))


def test_each_library_call_counts_its_own_outage(tmp_path: Path) -> None:
    """The clock ran on between calls: the second and third failing calls gave up at their
    first failure, reporting the time since the first call's (and the gaps between)."""
    from dcmweb.testing import LocalServer

    server = LocalServer(tmp_path / "store").start()
    with Client(server.url, outage_limit=1, backoff=0.05, retries=20) as client:
        assert client.search("instances") == []  # the server answered: refusals are a restart
        server.stop()  # refused from now on
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(UnavailableError) as caught:
                client.search("instances")
            elapsed = time.monotonic() - started
            assert "connection refused" in str(caught.value)
            assert elapsed >= 1.0  # it waited its own outage out
            assert outage_seconds(caught.value) <= elapsed + 0.5  # its own, not the sum
            time.sleep(1.5)  # nothing asked: no outage to count


def test_a_retry_after_past_the_deadline_is_said_so_and_holds_for_the_next_call(
        local_server) -> None:
    """Was: "gave up after 0 s and 1 attempts", then the next call waited its whole
    deadline in the shared wait and said "no answer (gave up after 2 s and 0 attempts)"."""
    local_server.inject_fault(503, count=10, retry_after="60", method="GET")
    with Client(local_server.url, request_deadline=2) as client:
        with pytest.raises(UnavailableError) as first:
            client.search("instances")
        assert str(first.value).startswith(
            "search instances failed: HTTP 503 Service Unavailable: injected fault (the server"
            " asks to wait 60 s (Retry-After), past the request deadline)")
        started = time.monotonic()
        with pytest.raises(UnavailableError) as second:
            client.search("instances")
        assert time.monotonic() - started < 1  # nothing to wait for: it cannot be sent
        assert re.match(r"search instances failed: not sent \(the server asked to wait "
                        r"\(Retry-After\) for (59|60) s more, past the request deadline\)",
                        str(second.value)), str(second.value)
    assert [r.status for r in local_server.requests] == [503]  # the second call asked nothing


def test_a_long_retry_after_never_waits_past_the_outage_limit(local_server) -> None:
    """Was: a 503 asking to wait 100000 s was waited 300 s (the Retry-After cap), then
    reported as "unavailable for 300 s, the outage limit" though the limit was 1 s."""
    local_server.inject_fault(503, count=1000, retry_after="100000", method="GET")
    started = time.monotonic()
    result = run("--outage-limit", "1", "--request-deadline", "10", local_server.url,
                 "search", "instances")
    assert time.monotonic() - started < 5
    assert result.exit_code == 5, result.stderr
    assert lines(result.stderr)[-1].startswith(
        "dcmweb: error: search instances failed: HTTP 503 Service Unavailable: injected fault"
        " (the server was unavailable for 1 s, the outage limit)"), result.stderr
    assert "asks to wait 100000 s (Retry-After); waiting 1 s, the outage limit" in result.stderr


def test_no_retry_is_announced_past_the_deadline(local_server) -> None:
    """A retry the deadline would cut was announced anyway: '... retrying (attempt 4)' and,
    in the same millisecond, '... failed: ... (gave up after 3 s and 3 attempts: ...)'."""
    local_server.inject_fault(503, count=1000, method="GET")
    result = run("--request-deadline", "3", local_server.url, "search")
    assert result.exit_code == 5, result.stderr
    announced = re.findall(r"retrying(?: in [0-9.]+ s)? \(attempt (\d+)\)", result.stderr)
    made = re.search(r"gave up after \d+ s and (\d+) attempts", result.stderr)
    assert made is not None, result.stderr
    sent = [r for r in local_server.requests if r.method == "GET"]
    assert len(sent) == int(made[1])
    assert [int(n) for n in announced] == list(range(2, len(sent) + 1))


# -- the gate: every attempt gives its slot back ------------------------------------------------
EXITS = ["the body cannot be built", "the body fails while sent", "a header is refused",
         "interrupted"]


@pytest.mark.parametrize("way", EXITS)
def test_every_way_an_attempt_ends_gives_its_slot_back(local_server, tmp_path: Path,
                                                       way: str) -> None:
    """Was: an attempt that ended past the loop's own handling kept its slot in the gate
    (a file deleted since it was listed, one that changed while sent); once the kept
    slots reached the gate's limit, every later request waited there for ever (a store
    hung with its journal locked). One slot here: the next request must get it."""
    big = tmp_path / "big"
    big.write_bytes(b"x" * 200_000)

    def body() -> MultipartBody:
        if way == "the body cannot be built":
            return MultipartBody([tmp_path / "deleted since it was listed"])
        if way == "interrupted":
            raise KeyboardInterrupt  # Ctrl-C while the body is built
        built = MultipartBody([big])
        os.truncate(big, 1000)  # read once the request is under way: it shrank
        return built

    expected = {"the body cannot be built": FileNotFoundError,
                "the body fails while sent": FileChanged, "a header is refused": UsageError,
                "interrupted": KeyboardInterrupt}[way]
    headers = {"X-Note": "a\nb"} if way == "a header is refused" else None
    http = Http(config=HttpConfig(pool_size=1, request_deadline=2))
    try:
        with pytest.raises(expected):
            http.request("POST", local_server.url + "/studies", headers=headers, body=body)
        # Before: "waited 2 s for a free slot: the request deadline".
        assert http.request("GET", local_server.url + "/studies").status_code == 204
    finally:
        http.close()
