"""Store truth: a file counts as stored only when the server's answer names it or a search
finds it; lost answers are checked before anything is resent; one bad batch fails only its
own files; inputs that could hang are skipped. Each test asserts the exit code, the lines
on stderr and what the server really holds."""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request, forward
from ulimits import run_limited

from dcmweb import Client, UnavailableError
from dcmweb.bulkrecords import Outcome
from dcmweb.cli import cli
from dcmweb.filebody import FileChanged, SizedFileBody
from dcmweb.files import Stamp, read_part10_head
from dcmweb.http import Http, HttpConfig, RetryPolicy
from dcmweb.journal import Journal
from dcmweb.output import describe_summary
from dcmweb.store import CHANGED_WHILE_SENT, Uploader, iter_store
from dcmweb.storefiles import Part10File, StoreOptions
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus, logs

HOST_HINT = ("HOST must be the DICOMweb base URL, e.g. https://healthcare.googleapis.com/v1/"
             "projects/P/locations/L/datasets/D/dicomStores/S/dicomWeb or "
             "http://127.0.0.1:8042/dicom-web")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def lines(result: Result) -> list[str]:
    """stderr with the timestamps taken out, after the run's opening line (checked)."""
    found = logs.lines(result.stderr)
    assert found[0].startswith("dcmweb: info: store to "), found
    return found[1:]


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def held(server: LocalServer) -> set[str]:
    return {row[0] for row in server.store.query("SELECT sop_uid FROM instances")}


def report_rows(path: Path) -> dict[str, dict]:
    return {r["path"]: r for r in map(json.loads, path.read_text().splitlines())}


@pytest.fixture
def ct(pydicom_files: list[Path]) -> Path:
    return next(p for p in pydicom_files if p.name == "CT_small.dcm")


@pytest.fixture
def refusing_server(tmp_path: Path):
    """The local server answering 0x0111 (409) to duplicates, like tiny-pacs."""
    with LocalServer(tmp_path / "refusing", refuse_duplicates=True) as server:
        yield server


# -- lost answers: search before resend ------------------------------------------------------
@pytest.mark.parametrize(("fault", "count"), [("after", 3), ("cut", 1), ("cut", 3)],
                         ids=["dropped", "cut-one-file", "cut-batch"])
def test_lost_answer_is_found_by_search_and_never_resent(refusing_server: LocalServer,
                                                         tmp_path: Path, fault: str,
                                                         count: int) -> None:
    """Stored, then the connection dropped, or the answer's body cut half-way. Old dcmweb
    resent a dropped batch blindly (the server refused every file as a duplicate), and
    took a cut for a file changed on disk (one file: failed; a batch: each resent)."""
    files = corpus.synthetic_files(tmp_path / "s", count)
    refusing_server.inject_fault(method="POST", **{fault: True})  # type: ignore[arg-type]
    report = tmp_path / "report.jsonl"
    result = run(refusing_server.url, "store", "--report", str(report), str(tmp_path / "s"))
    assert result.exit_code == 0, result.stderr
    assert held(refusing_server) == {sop_uid(p) for p in files}
    assert refusing_server.duplicates == []
    # The search, then each instance read back: the server may hold other bytes.
    assert [r.method for r in refusing_server.requests] == ["POST", "GET"] + ["GET"] * count
    assert lines(result)[0].endswith("connection dropped after the request was sent; "
                                     f"{count} of {count} found on the server by search")
    for path in files:
        assert f"{path} uploaded as " in result.stderr
        assert report_rows(report)[str(path)]["confirmed_by"] == "search"
        assert report_rows(report)[str(path)]["message"] == "its answer was lost"


def test_a_store_the_request_deadline_cuts_is_unconfirmed_and_not_sent_again(
        local_server: LocalServer, tmp_path: Path) -> None:
    """A slow server that stores the file after 3 s, cut by --request-deadline 1 while it
    works. Old dcmweb said "no answer within the read timeout" (300 s, never reached),
    "the server is unavailable" (it answered every search at once), sent the body 3
    times and counted "server unavailable for 8 s" in the summary."""
    [path] = corpus.synthetic_files(tmp_path / "s", 1)
    local_server.inject_fault(method="POST", delay=3, count=10)  # then it stores
    report = tmp_path / "report.jsonl"
    result = run("--request-deadline", "1", local_server.url, "store", "--report",
                 str(report), str(path))
    reason = (f"store {path}: no answer within the request deadline (1 s) after the request "
              "was sent; 0 of 1 found on the server by search; not sent again: the server "
              "may still store it (raise --request-deadline for a server this slow)")
    assert lines(result) == [
        f"dcmweb: warning: {path} unconfirmed: {reason}",
        "dcmweb: info: Transferred 0 B in 0 files; 1 unconfirmed (sent, no answer: the "
        "server may hold it)",
        "dcmweb: error: nothing confirmed stored: 1 of 1 file unconfirmed (the server may "
        "hold it) (rerun with --skip-existing (or this run's --journal) to ask the server "
        "about it before sending it again)"], result.stderr
    assert result.exit_code == 1
    row = report_rows(report)[str(path)]
    assert (row["status"], row["message"]) == ("unconfirmed", reason)
    for _ in range(50):  # the server finishes the store it was at
        if held(local_server):
            break
        time.sleep(0.1)
    assert held(local_server) == {sop_uid(path)}
    assert [r.method for r in local_server.requests].count("POST") == 1


def test_lost_answer_then_only_the_missing_files_are_resent(local_server: LocalServer,
                                                            tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "s", 4)
    local_server.inject_fault(500, method="POST")  # before processing: nothing stored
    with Client(local_server.url, backoff=0.01) as client:
        results = client.store([tmp_path / "s"])
    assert {(r.status, r.confirmed_by) for r in results} == {("stored", "answer")}
    posts = [r for r in local_server.requests if r.method == "POST"]
    assert [r.status for r in posts] == [500, 200]
    assert held(local_server) == {sop_uid(p) for p in files}


def test_a_cut_answer_to_the_check_search_is_asked_again(local_server: LocalServer,
                                                         tmp_path: Path) -> None:
    """The search after a lost STOW answer has its own answer cut half-way: old dcmweb read
    it outside the retries and raised a raw TransportError (CLI: exit 1, empty report)."""
    files = corpus.synthetic_files(tmp_path / "s", 4)
    local_server.inject_fault(after=True, method="POST")  # stored, answer lost
    local_server.inject_fault(cut=True, method="GET")  # the check search's answer cut
    report = tmp_path / "report.jsonl"
    result = run(local_server.url, "store", "--batch-size", "2",
                 "--report", str(report), str(tmp_path / "s"))
    assert result.exit_code == 0, result.stderr
    assert held(local_server) == {sop_uid(p) for p in files}
    assert {row["status"] for row in report_rows(report).values()} == {"stored"}
    assert len(report_rows(report)) == 4
    # The search (cut, asked again), the two instances read back, the other batch.
    assert [r.method for r in local_server.requests] == ["POST"] + ["GET"] * 4 + ["POST"]


def test_rerun_on_a_server_that_refuses_duplicates_is_safe(refusing_server: LocalServer,
                                                           tmp_path: Path, ct: Path) -> None:
    first = run(refusing_server.url, "store", str(ct))
    assert first.exit_code == 0, first.stderr
    again = run(refusing_server.url, "store", str(ct))
    assert again.exit_code == 0, again.stderr  # old dcmweb: failed, duplicate instance
    assert refusing_server.duplicates == [sop_uid(ct)]
    assert any(line.startswith(f"dcmweb: info: {ct} uploaded as ") and line.endswith(
        "(already on the server: a duplicate refused; confirmed by search)")
        for line in lines(again))


def test_conflicting_bytes_are_still_a_failure(refusing_server: LocalServer,
                                               tmp_path: Path, ct: Path) -> None:
    ds = pydicom.dcmread(ct)
    ds.PatientName = "Other^Bytes"
    other = tmp_path / "other.dcm"
    ds.save_as(other, enforce_file_format=True)
    assert run(refusing_server.url, "store", str(ct)).exit_code == 0
    result = run(refusing_server.url, "store", str(other))
    assert result.exit_code == 1
    assert lines(result)[0] == (
        f"dcmweb: error: {other} failed: processing failure (0x0110): an instance with the"
        " same SOPInstanceUID already exists with different content")


def other_bytes(ct: Path, target: Path) -> Path:
    """A copy of ``ct`` under its UIDs, with other bytes (another PatientName)."""
    ds = pydicom.dcmread(ct)
    ds.PatientName = "Other^Bytes"
    ds.save_as(target, enforce_file_format=True)
    return target


@pytest.mark.parametrize("fault", ["after", "cut"])
@pytest.mark.parametrize(("policy", "code", "status"), [
    ("fail", 1, "failed"), ("skip", 0, "conflict"), ("overwrite", 0, "stored")])
def test_a_lost_answer_over_other_bytes_is_a_conflict_not_stored(
        refusing_server: LocalServer, tmp_path: Path, ct: Path, fault: str, policy: str,
        code: int, status: str) -> None:
    """The server holds other bytes under the file's UIDs and the STOW answer is lost: the
    search finds the UID, and old dcmweb reported the file stored (exit 0; overwrite never
    overwrote). Reading the server's copy back shows the conflict."""
    assert run(refusing_server.url, "store", str(ct)).exit_code == 0
    other = other_bytes(ct, tmp_path / "other.dcm")
    refusing_server.inject_fault(method="POST", **{fault: True})  # type: ignore[arg-type]
    report = tmp_path / "report.jsonl"
    result = run(refusing_server.url, "store", "--on-conflict", policy, "--report",
                 str(report), str(other))
    assert result.exit_code == code, result.stderr
    row = report_rows(report)[str(other)]
    assert row["status"] == status
    [kept_row] = refusing_server.store.query("SELECT * FROM instances")
    kept = pydicom.dcmread(refusing_server.store.file_path(kept_row))
    if policy == "overwrite":
        assert row["message"].startswith("replaced the server's conflicting instance")
        assert kept.PatientName == "Other^Bytes"
    else:
        assert row["message"] == ("its answer was lost; the server holds other bytes under "
                                  "these UIDs")
        assert kept.PatientName != "Other^Bytes"


def test_a_lost_answer_in_a_batch_fails_only_the_file_with_other_bytes(
        refusing_server: LocalServer, tmp_path: Path) -> None:
    """19 new files and one whose UIDs the server holds with other bytes, in one request
    whose answer is lost: old dcmweb reported 20 stored."""
    files = corpus.synthetic_files(tmp_path / "s", 20, seed="batch-conflict")
    held_copy = other_bytes(files[7], tmp_path / "held.dcm")
    assert run(refusing_server.url, "store", str(held_copy)).exit_code == 0
    refusing_server.inject_fault(after=True, method="POST")
    report = tmp_path / "report.jsonl"
    result = run(refusing_server.url, "store", "--report", str(report), str(tmp_path / "s"))
    assert result.exit_code == 6, result.stderr
    statuses = {Path(path).name: row["status"] for path, row in report_rows(report).items()}
    assert statuses == {path.name: "failed" if path == files[7] else "stored"
                        for path in files}
    assert f"dcmweb: error: {files[7]} failed: its answer was lost; the server holds other " \
        "bytes under these UIDs" in lines(result)
    assert refusing_server.duplicates == []


def test_a_copy_that_cannot_be_read_back_is_never_reported_stored(
        refusing_server: LocalServer, tmp_path: Path, ct: Path) -> None:
    """The search finds the file's UID, and every read-back of the server's copy is cut:
    the file is sent again (the server refuses it as a duplicate) and fails, saying why;
    old dcmweb reported it stored by the search alone."""
    refusing_server.inject_fault(after=True, method="POST")
    refusing_server.inject_fault(cut=True, method="GET", count=10**6,
                                 path_contains=f"instances/{sop_uid(ct)}")
    report = tmp_path / "report.jsonl"
    result = run(refusing_server.url, "store", "--report", str(report), str(ct))
    assert result.exit_code == 1, result.stderr
    row = report_rows(report)[str(ct)]
    assert row["status"] == "failed"
    assert "found on the server, but its copy could not be read back to compare" in (
        row["message"])
    assert [r.method for r in refusing_server.requests if r.method == "POST"] == ["POST"] * 2


def test_a_lost_answer_over_the_same_bytes_is_stored(refusing_server: LocalServer,
                                                     tmp_path: Path, ct: Path) -> None:
    """The check reads the instance back once, and only when the answer was lost."""
    refusing_server.inject_fault(after=True, method="POST")
    result = run(refusing_server.url, "store", str(ct))
    assert result.exit_code == 0, result.stderr
    reads = [r for r in refusing_server.requests
             if r.method == "GET" and f"instances/{sop_uid(ct)}" in r.path]
    assert len(reads) == 1
    refusing_server.clear_requests()
    [other] = corpus.synthetic_files(tmp_path / "n", 1)
    assert run(refusing_server.url, "store", str(other)).exit_code == 0
    assert [r.method for r in refusing_server.requests] == ["POST"]  # a 200: no read-back


def test_an_answer_naming_another_instance_proves_nothing(ct: Path, tmp_path: Path) -> None:
    """One file, one answer that names a UID that is neither the file's File Meta nor its
    data set's: not this file's proof (old dcmweb: "uploaded as .../OTHER", exit 0)."""
    other = {"00081199": {"vr": "SQ", "Value": [{
        "00081155": {"vr": "UI", "Value": ["1.2.3.4.5.6.7"]},
        "00081190": {"vr": "UR", "Value": ["http://x/studies/1/series/2/instances/1.2.3.4.5.6.7"]},
    }]}}
    report = tmp_path / "report.jsonl"
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.json(200, other, "application/dicom+json"))
        _series_route(fake, ct, [[]])
        result = run(fake.url, "store", "--report", str(report), str(ct))
        searches = fake.seen("GET")
    assert result.exit_code == 1, result.stderr
    assert [s.params["SOPInstanceUID"] for s in searches] == [sop_uid(ct)]
    row = report_rows(report)[str(ct)]
    assert (row["status"], row["retrieve_url"]) == ("failed", None)
    assert row["message"] == (
        "the server answered HTTP 200 with application/dicom+json naming 1.2.3.4.5.6.7, not"
        " this file, and a search does not find it")


# -- answers that are not STOW answers (hostile) ----------------------------------------------
def test_200_with_a_web_page_is_a_failure_naming_what_came_back(ct: Path) -> None:
    page = b"<!DOCTYPE html><html><body>Sign in</body></html>"
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.reply(200, page, "text/html"))
        result = run(fake.url, "store", str(ct))
    assert result.exit_code == 1  # old dcmweb: "uploaded", exit 0
    assert result.stdout == ""
    assert lines(result) == [
        f"dcmweb: error: {ct} failed: server answered text/html (a web page), not a STOW"
        f" answer (HTTP 200) ({HOST_HINT})",
        "dcmweb: info: Transferred 0 B in 0 files; 1 failed",
        "dcmweb: error: nothing stored: 1 of 1 file failed",
    ]
    assert [r.method for r in fake.requests] == ["POST"]


def test_200_with_googles_error_envelope_is_a_failure_with_its_message(ct: Path) -> None:
    """Old dcmweb left the envelope's message out: the user saw no reason at all. A 2xx
    answer that cannot be read is settled by a search, as an empty one is."""
    envelope = {"error": {"code": 400, "message": "invalid STOW request: no parts",
                          "status": "INVALID_ARGUMENT"}}
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.json(200, envelope))
        result = run(fake.url, "store", str(ct))
        searches = fake.seen("GET")
    assert result.exit_code == 1
    assert lines(result)[0] == (
        f"dcmweb: error: {ct} failed: the server answered HTTP 200 with application/json, "
        "not a STOW answer: invalid STOW request: no parts, and a search does not find it")
    assert [s.params["SOPInstanceUID"] for s in searches] == [sop_uid(ct)]


def with_byte_order_mark(body: bytes) -> bytes:
    return b"\xef\xbb\xbf" + body


@pytest.mark.parametrize("alter", [with_byte_order_mark, lambda body: b"stored, thanks"],
                         ids=["byte-order-mark", "unreadable"])
def test_a_2xx_answer_it_could_not_read_does_not_fail_a_stored_file(
        local_server: LocalServer, ct: Path, tmp_path: Path, alter) -> None:
    """Old dcmweb: "failed: server answered application/dicom+json, not a STOW answer" with
    the HOST hint, exit 1, while the server held the file. An answer after a byte-order mark
    is read; one that cannot be read is settled by a search and a read-back."""
    report = tmp_path / "report.jsonl"
    with Hostile() as fake:
        fake.fallback = forward(local_server.root_url)
        fake.route("POST", urlsplit(local_server.url).path + "/studies",
                   forward(local_server.root_url, alter=alter))
        result = run(fake.root_url + urlsplit(local_server.url).path, "store", "--report",
                     str(report), str(ct))
        reads = [seen.path for seen in fake.seen("GET")]
    assert result.exit_code == 0, result.stderr
    assert held(local_server) == {sop_uid(ct)}
    row = report_rows(report)[str(ct)]
    if alter is with_byte_order_mark:
        assert (row["status"], row["confirmed_by"]) == ("stored", "answer")
        assert reads == []
    else:
        assert (row["status"], row["confirmed_by"]) == ("stored", "search")
        assert row["message"] == ("the server's answer could not be read; found on the "
                                  "server by search")
        assert reads[-1].endswith(f"/instances/{sop_uid(ct)}")  # its bytes read back


def _series_route(fake: Hostile, path: Path, rows: list[list[dict]]) -> None:
    """Answer the series-level instance search with rows[n] on the n-th call (last repeats)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    calls = []

    def search(req: Request) -> None:
        calls.append(req.params)
        req.json(200, rows[min(len(calls), len(rows)) - 1], "application/dicom+json")

    fake.route("GET", f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances",
               search)


def _instance_route(fake: Hostile, path: Path) -> None:
    """Send the file back for its instance's retrieve: the server holds these bytes."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    fake.route("GET", f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
               f"/instances/{ds.SOPInstanceUID}",
               lambda req: req.reply(200, path.read_bytes(), "application/dicom"))


def _row(path: Path) -> dict:
    return {"00080018": {"vr": "UI", "Value": [sop_uid(path)]}}


@pytest.mark.parametrize("on_server", ["held", "not-held", "deleted"])
def test_200_with_an_empty_body_is_proven_by_search(ct: Path, tmp_path: Path,
                                                    on_server: str) -> None:
    """deleted: the search lists the instance, its retrieve answers 404 (deleted moments
    ago: Google's searches lag behind deletes). Was: stored (confirmed by search), exit 0."""
    report = tmp_path / "report.jsonl"
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.reply(200))
        _series_route(fake, ct, [[] if on_server == "not-held" else [_row(ct)]])
        if on_server == "held":
            _instance_route(fake, ct)
        result = run(fake.url, "store", "--report", str(report), str(ct))
        searches = [seen for seen in fake.seen("GET") if seen.path.endswith("/instances")]
        asked = [seen.path.rsplit("/", 1)[-1] for seen in fake.seen("GET")
                 if seen not in searches]
    assert [s.params["SOPInstanceUID"] for s in searches] == [sop_uid(ct)]
    # What the search found: its metadata (not served here: 404), then its retrieve.
    assert asked == ([] if on_server == "not-held" else ["metadata", sop_uid(ct)])
    row = report_rows(report)[str(ct)]
    if on_server == "held":
        assert result.exit_code == 0, result.stderr
        assert (row["status"], row["confirmed_by"]) == ("stored", "search")
        assert lines(result)[0].endswith("(confirmed by search)")
    else:  # old dcmweb: "uploaded", exit 0
        assert result.exit_code == 1
        assert (row["status"], row["confirmed_by"]) == ("failed", None)
        assert lines(result)[0] == (
            f"dcmweb: error: {ct} failed: the server answered HTTP 200 with an empty answer"
            " naming no file, and a search does not find it" + (
                "; found by a search, but a retrieve of it answers 404 (deleted moments ago: "
                "searches lag behind deletes)" if on_server == "deleted" else ""))


def test_409_duplicate_after_a_lost_answer_is_stored(ct: Path, tmp_path: Path) -> None:
    """The answer is lost, the search does not see the instance yet (an index that lags),
    so it is resent; the resend gets tiny-pacs' 409; a second search finds it: stored."""
    failed = {"00081198": {"vr": "SQ", "Value": [{
        "00081155": {"vr": "UI", "Value": [sop_uid(ct)]},
        "00081197": {"vr": "US", "Value": [0x0110]}}]}}
    posts = []

    def stow(req: Request) -> None:
        posts.append(req)
        if len(posts) == 1:  # processed, then the connection goes away
            req.handler.close_connection = True
            req.handler.connection.close()
            return
        req.json(409, failed, "application/dicom+json")

    with Hostile() as fake:
        fake.route("POST", "/studies", stow)
        _series_route(fake, ct, [[], [_row(ct)]])
        _instance_route(fake, ct)
        result = run("--retries", "2", fake.url, "store", str(ct))
        methods = [r.method for r in fake.requests]
    assert result.exit_code == 0, result.stderr  # old dcmweb: failed, exit 6
    assert methods == ["POST", "GET", "POST", "GET", "GET"]
    assert lines(result)[-2].endswith(
        "(already on the server: a duplicate refused; confirmed by search)")


# -- one bad batch fails its own files ----------------------------------------------------------
def _poison_server(fake: Hostile, files: list[Path], poison: set[Path], status: int = 500,
                   delay: float = 0.0, poison_delay: float = 0.0) -> None:
    """Answers ``status`` to any request holding a poison file; names every file otherwise.
    Each answer comes after ``delay`` seconds (``poison_delay`` for a poison one)."""
    contents = {p: p.read_bytes() for p in files}

    def stow(req: Request) -> None:
        inside = [p for p, data in contents.items() if data in req.seen.body]
        if poison & set(inside):
            time.sleep(poison_delay)
            req.json(status, {"error": {"code": status, "message": "cannot parse"}})
            return
        time.sleep(delay)
        refs = [{"00081155": {"vr": "UI", "Value": [sop_uid(p)]}} for p in inside]
        req.json(200, {"00081199": {"vr": "SQ", "Value": refs}}, "application/dicom+json")

    fake.route("POST", "/studies", stow)
    for path in files:  # nothing is found by a search: what fails was never stored
        _series_route(fake, path, [[]])


def test_one_batch_that_always_fails_does_not_stop_the_run(tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "s", 12)
    poison = files[4:6]  # the first half of the second batch
    with Hostile() as fake:
        _poison_server(fake, files, set(poison))
        result = run("--retries", "1", fake.url, "store", "--batch-size", "4",
                     str(tmp_path / "s"))
    # Old dcmweb: exit 5, "8 not attempted".
    assert result.exit_code == 6, result.stderr
    assert lines(result)[-2].endswith(" in 10 files; 2 failed")
    errors = [line for line in lines(result) if line.startswith("dcmweb: error:")]
    assert errors == [
        *(f"dcmweb: error: {path} failed: HTTP 500 Internal Server Error: cannot parse"
          " (after 2 attempts)" for path in poison),
        "dcmweb: error: 2 of 12 files failed to store",
    ]


def test_a_500_is_tried_twice_more_as_any_request(tmp_path: Path, ct: Path) -> None:
    """usage.md: a 500 is tried twice more, then reported (old dcmweb: 6 sends, ~25 s)."""
    with Hostile() as fake:
        _poison_server(fake, [ct], {ct})
        result = run(fake.url, "store", str(ct))
        posts = len(fake.seen("POST"))
    assert result.exit_code == 1, result.stderr
    assert posts == 3
    assert (f"dcmweb: error: {ct} failed: HTTP 500 Internal Server Error: cannot parse"
            " (after 3 attempts)") in lines(result)


def test_a_server_that_fails_everything_stops_the_run(tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "s", 16)
    with Hostile() as fake:
        _poison_server(fake, files, set(files))
        result = run("--retries", "1", fake.url, "store", "--batch-size", "2",
                     str(tmp_path / "s"))
        posts = len(fake.seen("POST"))
    assert result.exit_code == 5
    assert lines(result)[-2] == (
        "dcmweb: info: Transferred 0 B in 0 files; 10 failed, 6 not attempted")
    assert lines(result)[-1].startswith(
        "dcmweb: error: stopping: the server failed 5 batches in a row (last: HTTP 500")
    # A 500 at the right address is the server failing, not a wrong HOST.
    assert "HOST must be" not in result.stderr
    assert lines(result)[-1].endswith("(the server is overloaded or down; try again later)")
    # Each batch: two attempts, then each half twice: both halves failing stops the split.
    assert posts == 5 * 6



# -- outages: every store failing is waited out like any outage ----------------------------------
@contextmanager
def outage(server: LocalServer, seconds: float, **fault: object) -> Iterator[None]:
    """The fault to every matching request for ``seconds`` (a redeploy behind a proxy)."""
    server.inject_fault(count=10**6, **fault)  # type: ignore[arg-type]
    timer = threading.Timer(seconds, server.clear_faults)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.mark.parametrize("fault", [{"status": 502}, {"drop": True}], ids=["502", "dropped"])
def test_an_outage_of_every_store_is_ridden_out(refusing_server: LocalServer, tmp_path: Path,
                                                fault: dict) -> None:
    files = corpus.synthetic_files(tmp_path / "s", 20)
    with outage(refusing_server, 4, method="POST", **fault):
        result = run("-m", "--workers", "4", "--retries", "1", "--outage-limit", "60",
                     refusing_server.url, "store", "--batch-size", "1", str(tmp_path / "s"))
    # Old dcmweb: files failed "(after 2 attempts)" within 2 s, then "stopping: the server
    # failed 5 batches in a row", exit 5.
    assert result.exit_code == 0, result.stderr[-3000:]
    assert held(refusing_server) == {sop_uid(p) for p in files}
    assert refusing_server.duplicates == []
    # Until the first store after the outage (the shared backoff doubles meanwhile).
    unavailable = re.search(r"in 20 files; server unavailable for (\d+) s$", lines(result)[-1])
    assert unavailable and 4 <= int(unavailable[1]) <= 20, lines(result)[-1]


def test_an_outage_longer_than_the_outage_limit_stops_the_run(local_server: LocalServer,
                                                              tmp_path: Path) -> None:
    corpus.synthetic_files(tmp_path / "s", 6)
    local_server.inject_fault(502, count=10**6, method="POST")
    started = time.monotonic()
    result = run("--outage-limit", "3", local_server.url, "store", str(tmp_path / "s"))
    assert result.exit_code == 5, result.stderr
    assert time.monotonic() - started < 15
    assert re.fullmatch(r"dcmweb: error: store of 6 files failed: HTTP 502 Bad Gateway.*"
                        r" \(the server was unavailable for [3-9] s, the outage limit\)"
                        r" \(the server is overloaded or down; try again later\)",
                        lines(result)[-1]), lines(result)[-1]
    # Old dcmweb: "6 not attempted", though all 6 were sent and answered by a gateway's
    # 502, which may come after the server stored them.
    assert re.search(r" in 0 files; 6 unconfirmed \(sent, no answer: the server may hold "
                     r"them\), server unavailable for \d+ s$", lines(result)[-2])
    assert held(local_server) == set()
    assert f"dcmweb: warning: {tmp_path / 's'}/synth-000000.dcm unconfirmed: HTTP 502 Bad " \
        "Gateway: injected fault; the run stopped before the server's answer or a search " \
        "confirmed it" in lines(result)


@pytest.mark.parametrize(("workers", "batch_size", "sent"),
                         [([], "6", 6), (["-m", "--workers", "2"], "3", 4)],
                         ids=["one-batch", "two-workers"])
def test_files_found_by_search_before_the_outage_limit_are_reported_stored(
        local_server: LocalServer, tmp_path: Path, workers: list[str], batch_size: str,
        sent: int) -> None:
    """Two workers: batches of 2 (shaped: two requests per worker), the third never sent."""
    files = corpus.synthetic_files(tmp_path / "s", 6)
    there = [files[0], files[2]]  # stored by an earlier run (in every batch of this one)
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(there)} == {"stored"}
    local_server.inject_fault(502, count=10**6, method="POST")
    report = tmp_path / "report.jsonl"
    result = run(*workers, "--outage-limit", "2", local_server.url, "store", "--batch-size",
                 batch_size, "--report", str(report), str(tmp_path / "s"))
    assert result.exit_code == 5, result.stderr
    rows = report_rows(report)
    # Old dcmweb: no row at all, "in 0 files; 6 not attempted": the files its searches
    # had found on the server were forgotten when the run gave up.
    assert {row["sop_instance_uid"] for row in rows.values()
            if row["status"] == "stored"} == held(local_server) == {sop_uid(p) for p in there}
    assert set(rows) == {str(p) for p in files[:sent]}
    assert {(row["confirmed_by"], row["message"]) for row in rows.values()
            if row["status"] == "stored"} == {("search", "its answer was lost")}
    # The others sent were answered 502 and not found: not "not attempted" (old dcmweb).
    assert {row["path"] for row in rows.values() if row["status"] == "unconfirmed"} == {
        str(p) for p in files[:sent] if p not in there}
    for path in there:
        assert f"dcmweb: info: {path} uploaded as " in result.stderr
    rest = f", {6 - sent} not attempted" if sent < 6 else ""
    assert re.search(rf" in 2 files; {sent - 2} unconfirmed \(sent, no answer: the server may "
                     rf"hold them\){rest}, server unavailable for \d+ s$", lines(result)[-2]), \
        lines(result)[-2]
    assert lines(result)[-1].startswith("dcmweb: error: ")


@pytest.mark.parametrize("status", [502, 504])
def test_a_lost_answers_retry_after_is_capped(local_server: LocalServer, tmp_path: Path,
                                              ct: Path, status: int,
                                              caplog: pytest.LogCaptureFixture) -> None:
    local_server.inject_fault(status, retry_after="100000", method="POST")
    http = Http(config=HttpConfig(retry=RetryPolicy(base=0.01, retry_after_cap=1),
                                  request_deadline=10))
    started = time.monotonic()
    try:
        with caplog.at_level(logging.INFO, "dcmweb"):
            results = list(iter_store(http, local_server.url, [ct]))
    finally:
        http.close()
    # Old dcmweb waited the whole Retry-After (here: until the request deadline, then
    # failed); 502/504 answers to a store were the only ones not capped.
    assert time.monotonic() - started < 5
    assert [(r.status, r.confirmed_by) for r in results] == [("stored", "answer")]
    assert held(local_server) == {sop_uid(ct)}
    assert (f"store {ct}: HTTP {status} asks to wait 100000 s (Retry-After); waiting 1 s,"
            " the cap") in caplog.messages


def test_a_lone_502_among_stored_batches_is_tried_retries_times(tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "s", 60)
    poison = files[5]
    with Hostile() as fake:
        # Slow answers: the other workers store files while the poison batch is retried.
        _poison_server(fake, files, {poison}, status=502, delay=0.05, poison_delay=0.3)
        result = run("-m", "--workers", "3", "--retries", "1", "--outage-limit", "30",
                     fake.url, "store", "--batch-size", "1", str(tmp_path / "s"))
        poison_posts = [seen for seen in fake.seen("POST")
                        if poison.read_bytes() in seen.body]
    assert result.exit_code == 6, result.stderr[-3000:]
    assert len(poison_posts) == 2
    errors = [line for line in lines(result) if line.startswith("dcmweb: error:")]
    assert errors[0] == (f"dcmweb: error: {poison} failed: HTTP 502 Bad Gateway: cannot parse"
                         " (after 2 attempts)")
    assert re.search(r" in 59 files; 1 failed(, server unavailable for \d+ s)?$",
                     lines(result)[-2]), lines(result)[-2]


def test_lost_answers_in_an_outage_are_found_by_search_once_it_ends(
        refusing_server: LocalServer, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "s", 20)
    report = tmp_path / "report.jsonl"
    # The first two batches are stored, their answers lost; then every request (the
    # searches too) gets 502 for 3 s.
    refusing_server.inject_fault(after=True, count=2, method="POST")
    with outage(refusing_server, 3, status=502):
        result = run("-m", "--workers", "2", "--outage-limit", "60", refusing_server.url,
                     "store", "--batch-size", "5", "--report", str(report),
                     str(tmp_path / "s"))
    assert result.exit_code == 0, result.stderr[-3000:]
    assert held(refusing_server) == {sop_uid(p) for p in files}
    assert refusing_server.duplicates == []
    searches = [r.status for r in refusing_server.requests if r.method == "GET"]
    assert 502 in searches and 200 in searches
    rows = report_rows(report).values()
    assert all(row["status"] == "stored" for row in rows)
    by_search = [row for row in rows if row["confirmed_by"] == "search"]
    assert len(by_search) == 10
    assert {row["message"] for row in by_search} == {"its answer was lost"}

# -- a run that gives up: files sent without an answer are unconfirmed, not "not attempted" ----
def summary_counts(line: str) -> dict[str, int]:
    """The closing line's counts: {"stored": N, "unconfirmed": N, "not attempted": N, ...}."""
    stored = re.search(r" in (\d+) files?(;|$)", line)
    assert stored, line
    extras = re.findall(r"(\d+) (failed|unconfirmed|not attempted)", line)
    return {"stored": int(stored[1]), **{label: int(number) for number, label in extras}}


def test_a_run_that_gives_up_reports_the_files_in_flight_as_unconfirmed(
        refusing_server: LocalServer, tmp_path: Path) -> None:
    """Two batches answered, two stored with their answers lost, then every search fails
    until the outage limit: the run stops with batches still queued."""
    files = corpus.synthetic_files(tmp_path / "s", 24)
    server = refusing_server
    server.inject_fault(delay=0.01, count=2, method="POST")  # answered as usual
    server.inject_fault(after=True, count=2, method="POST")  # stored, the answer lost
    server.inject_fault(502, count=10**6, method="GET")  # no search can confirm them
    report, journal = tmp_path / "report.jsonl", tmp_path / "j.db"
    result = run("-m", "--workers", "2", "--retries", "1", "--outage-limit", "2", server.url,
                 "store", "--batch-size", "3", "--report", str(report), "--journal",
                 str(journal), str(tmp_path / "s"))
    assert result.exit_code == 5, result.stderr[-3000:]
    rows = report_rows(report)
    by_status: dict[str, set[str]] = {}
    for row in rows.values():
        by_status.setdefault(row["status"], set()).add(row["path"])
    counts = summary_counts(lines(result)[-2])
    # Old dcmweb: "Transferred ... in 6 files; 18 not attempted", and no row for the 6
    # files the server holds from the batches whose answers were lost.
    assert counts == {"stored": 6, "unconfirmed": 6, "not attempted": 12}, lines(result)[-2]
    assert "6 unconfirmed (sent, no answer: the server may hold them), 12 not attempted" \
        in lines(result)[-2]
    # Every file once: a row each for the files sent, the summary counts the others.
    assert {status: len(paths) for status, paths in by_status.items()} == {
        "stored": 6, "unconfirmed": 6}
    assert len(rows) + counts["not attempted"] == len(files)
    # What the server holds is stored or unconfirmed, never "not attempted"; and every
    # unconfirmed file was in a request the server received (it stored them).
    uids = {str(p): sop_uid(p) for p in files}
    assert held(server) == {uids[path] for path in by_status["stored"] | by_status["unconfirmed"]}
    posted = [r for r in server.requests if r.method == "POST"]
    assert len(posted) == 4  # 4 batches of 3: the 12 files with a row
    for path in by_status["unconfirmed"]:
        row = rows[path]
        assert (row["http_status"], row["confirmed_by"], row["sop_instance_uid"]) == (
            None, None, uids[path])
        assert row["message"] == ("store of 3 files: connection dropped after the request was "
                                  "sent; the run stopped before the server's answer or a "
                                  "search confirmed it")
        assert f"dcmweb: warning: {path} unconfirmed: {row['message']}" in lines(result)
    # The journal still says "sending": a rerun asks the server before sending them.
    with Journal(journal, server.url + "/studies") as marks:
        entries = {path: marks.lookup(path) for path in rows}
    assert {path for path, entry in entries.items()
            if entry and entry.status == "sending"} == by_status["unconfirmed"]
    server.clear_faults()
    rerun = run(server.url, "store", "--report", str(report), "--journal", str(journal),
                str(tmp_path / "s"))
    assert rerun.exit_code == 0, rerun.stderr[-3000:]
    assert held(server) == set(uids.values())
    assert server.duplicates == []
    again = report_rows(report)
    assert {path for path, row in again.items() if (row["status"], row["message"]) == (
        "already stored", "found on the server after an interrupted run")} == \
        by_status["unconfirmed"]
    assert {path for path, row in again.items() if row["status"] == "stored"} == \
        set(uids) - set(rows)


@pytest.fixture(params=["local", "orthanc"])
def no_store(request: pytest.FixtureRequest) -> str:
    """A HOST that is a server, but no store: a mistyped store name or path."""
    if request.param == "local":
        server = request.getfixturevalue("local_server")
        return server.url.replace("/dicomStores/store/", "/dicomStores/nostore/")
    return request.getfixturevalue("orthanc_session").url + "/x"


def test_files_sent_to_no_store_are_failed_rows_with_the_404(no_store: str,
                                                           tmp_path: Path) -> None:
    """A wrong store name or path: the batch sent and answered 404 stored nothing. Old
    dcmweb: "in 0 files; 5 not attempted", no row, and the journal kept them "sending"."""
    files = corpus.synthetic_files(tmp_path / "s", 5)
    report, journal = tmp_path / "report.jsonl", tmp_path / "j.db"
    result = run(no_store, "store", "--batch-size", "2", "--report", str(report),
                 "--journal", str(journal), str(tmp_path / "s"))
    assert result.exit_code == 4, result.stderr
    assert lines(result)[-2] == ("dcmweb: info: Transferred 0 B in 0 files; 2 failed, 3 not "
                                 "attempted")
    rows = report_rows(report)
    assert {(path, row["status"], row["http_status"]) for path, row in rows.items()} == {
        (str(path), "failed", 404) for path in files[:2]}
    assert all(row["message"].startswith("HTTP 404 Not Found") for row in rows.values())
    # Not "sending": a rerun need not ask the server whether it holds them.
    with Journal(journal, no_store + "/studies") as marks:
        entries = [marks.lookup(str(path)) for path in files[:2]]
    assert [entry and entry.status for entry in entries] == ["failed"] * 2


@pytest.mark.parametrize(("status", "after"), [(503, False), (503, True), (524, True),
                                               (524, False), (520, True), (530, False)])
def test_files_answered_5xx_to_the_end_are_settled_by_one_search(
        local_server: LocalServer, tmp_path: Path, status: int, after: bool) -> None:
    """Every POST answered 503 until the outage limit, or a 5xx dcmweb does not retry
    (Cloudflare's 520, 524, 530): a gateway may answer so after the server stored
    (``after``; a 524 says the server took over 100 s). Old dcmweb called the files sent
    unconfirmed without asking (3 unconfirmed while the server held all 3). One search
    settles them: stored when found; else unconfirmed, not sent again (the server may
    still be at work, as after --request-deadline). Only files never sent are "not
    attempted"."""
    files = corpus.synthetic_files(tmp_path / "s", 3)
    local_server.inject_fault(status, count=10**6, method="POST", after=after)
    report = tmp_path / "report.jsonl"
    result = run("--outage-limit", "1", local_server.url, "store", "--batch-size", "2",
                 "--report", str(report), str(tmp_path / "s"))
    # 503 is an outage: the run stops at its limit. Another 5xx settles each batch alone.
    sent = files[:2] if status == 503 else files
    rows = report_rows(report)
    # The report is the server's truth.
    assert {path for path, row in rows.items() if row["status"] == "stored"} == {
        str(path) for path in files if sop_uid(path) in held(local_server)}
    assert held(local_server) == ({sop_uid(path) for path in sent} if after else set())
    assert {(path, row["status"], row["http_status"], row["confirmed_by"])
            for path, row in rows.items()} == {
        (str(path), "stored" if after else "unconfirmed", status, "search" if after else None)
        for path in sent}
    reason = f"HTTP {status}" + (" Service Unavailable" if status == 503 else "")
    not_found = ("0 of 2 found on the server by search; not sent again: the server may still "
                 "store it")
    if not after:
        message = rows[str(files[0])]["message"]
        assert message.startswith(f"{reason}: injected fault") and message.endswith(not_found)
    if status != 503:
        assert [r.method for r in local_server.requests].count("POST") == 2  # never resent
        assert lines(result)[0] == (
            f"dcmweb: info: store of 2 files failed: {reason}: injected fault; 2 of 2 found "
            "on the server by search" if after else
            f"dcmweb: warning: {files[0]} unconfirmed: {reason}: injected fault; {not_found}")
    [summary] = [line for line in lines(result) if "info: Transferred " in line]
    assert summary_counts(summary) == {
        "stored": len(sent) if after else 0, **({} if after else {"unconfirmed": len(sent)}),
        **({"not attempted": 1} if status == 503 else {})}
    assert result.exit_code == (5 if status == 503 else 0 if after else 1), result.stderr


def test_files_a_success_did_not_name_are_unconfirmed_when_the_search_stops_the_run(
        tmp_path: Path) -> None:
    """HTTP 200 naming no file, then the search that should prove them is refused
    (credentials): the server said yes to the request, so they may be stored."""
    files = corpus.synthetic_files(tmp_path / "s", 3)
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.json(200, {}, "application/dicom+json"))
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        fake.route("GET", f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                          "/instances", lambda req: req.reply(401, b"token expired"))
        report = tmp_path / "report.jsonl"
        result = run(fake.url, "store", "--report", str(report), str(tmp_path / "s"))
    assert result.exit_code == 3, result.stderr
    # Old dcmweb: "in 0 files; 3 not attempted", no row.
    assert lines(result)[-2] == ("dcmweb: info: Transferred 0 B in 0 files; 3 unconfirmed "
                                 "(sent, no answer: the server may hold them)")
    assert {(row["status"], row["http_status"], row["message"])
            for row in report_rows(report).values()} == {
        ("unconfirmed", 200, "HTTP 200 OK; the run stopped before the server's answer or a "
                             "search confirmed it")}


def test_iter_store_yields_the_files_it_sent_without_an_answer_before_it_raises(
        local_server: LocalServer, tmp_path: Path) -> None:
    """The library: stored, then the answer lost, then the searches fail until the outage
    limit. Old dcmweb raised with no result: a caller counted the files as never sent."""
    files = corpus.synthetic_files(tmp_path / "s", 3)
    local_server.inject_fault(after=True, method="POST")
    local_server.inject_fault(502, count=10**6, method="GET")
    results = []
    with (Client(local_server.url, outage_limit=1) as client,
          pytest.raises(UnavailableError, match="search for stored instances failed")):
        for result in client.iter_store(files):
            results.append(result)
    assert [(r.path, r.status, r.sop_instance_uid) for r in results] == [
        (p, "unconfirmed", sop_uid(p)) for p in files]
    assert held(local_server) == {sop_uid(p) for p in files}  # the server has them
    assert results[0].message == (
        "store of 3 files: connection dropped after the request was sent; the run stopped "
        "before the server's answer or a search confirmed it")


def test_bulk_store_counts_unconfirmed_files_in_its_summary(local_server: LocalServer,
                                                            tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "s", 5)
    local_server.inject_fault(502, count=10**6, method="POST")
    outcomes: list[Outcome] = []
    with (Client(local_server.url, outage_limit=1) as client,
          pytest.raises(UnavailableError, match="the outage limit") as stopped):
        client.bulk_store(files, batch_size=2, report=tmp_path / "r.jsonl",
                          on_outcome=outcomes.append)
    summary = stopped.value.summary  # bulk_store returns nothing when it raises
    assert summary is not None
    assert (summary.counts["stored"], summary.unconfirmed, summary.not_attempted) == (0, 2, 3)
    assert summary.done + summary.not_attempted == len(files)
    assert [(o.path, o.status, o.http_status) for o in outcomes] == [
        (p, "unconfirmed", 502) for p in files[:2]]
    assert [row["status"] for row in report_rows(tmp_path / "r.jsonl").values()] == [
        "unconfirmed"] * 2
    assert describe_summary(summary) == (
        "Transferred 0 B in 0 files; 2 unconfirmed (sent, no answer: the server may hold "
        "them), 3 not attempted")


def test_a_stop_between_two_results_still_reports_the_files_in_flight(
        local_server: LocalServer, tmp_path: Path) -> None:
    """Ctrl-C (here raised by the caller's callback) may come while a result is being
    recorded, outside the store: the store still hands over its files in flight."""
    files = corpus.synthetic_files(tmp_path / "s", 8)
    local_server.inject_fault(delay=0.2, method="POST")  # answered, after the others left
    local_server.inject_fault(stall=5, count=100, method="POST")  # stored, never answered

    seen: list[Outcome] = []

    def stop_at_the_first(outcome: Outcome) -> None:
        seen.append(outcome)
        if len(seen) == 1:
            raise KeyboardInterrupt

    with (Client(local_server.url, workers=4) as client,
          pytest.raises(KeyboardInterrupt) as stopped):
        client.bulk_store(files, batch_size=1, report=tmp_path / "r.jsonl",
                          on_outcome=stop_at_the_first)
    rows = report_rows(tmp_path / "r.jsonl")
    statuses = sorted(row["status"] for row in rows.values())
    summary = stopped.value.summary  # type: ignore[attr-defined]
    assert summary.counts["stored"] == 1
    assert summary.unconfirmed == len(rows) - 1
    assert summary.done + summary.not_attempted == len(files)
    # Old dcmweb: the one stored row; the files in flight (the three sent with it, and
    # the one its worker may have sent next) had none.
    assert statuses in (["stored"] + ["unconfirmed"] * 3, ["stored"] + ["unconfirmed"] * 4)
    deadline = time.monotonic() + 10
    while len(held(local_server)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # the stalled requests are stored before their silence
    # Unconfirmed says "may": the file a worker took last may never have left.
    assert held(local_server) <= {sop_uid(Path(path)) for path in rows}
    assert {sop_uid(Path(path)) for path, row in rows.items()
            if row["status"] == "stored"} <= held(local_server)



# -- a journal or report the disk refuses --------------------------------------------------------
def test_a_journal_the_disk_refuses_stops_the_run_and_counts_every_file(
        refusing_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal fills its disk mid-run (SQLite's own limit: its "database or disk is
    full"). Old dcmweb: "unexpected error: OperationalError: cannot commit - no transaction
    is active" (a second error, from closing the journal), no summary, and files the
    server stored had no row."""
    files = corpus.synthetic_files(tmp_path / "s", 30)
    journal, report = tmp_path / "j.db", tmp_path / "r.jsonl"
    opened = Journal.__init__

    def on_a_full_disk(self: Journal, *args: object, **options: bool) -> None:
        opened(self, *args, **options)  # type: ignore[arg-type]
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        self.db.execute(f"PRAGMA max_page_count = {pages + 1}")

    monkeypatch.setattr(Journal, "__init__", on_a_full_disk)
    result = run("-m", "--workers", "2", refusing_server.url, "store", "--batch-size", "2",
                 "--journal", str(journal), "--report", str(report), str(tmp_path / "s"))
    assert result.exit_code == 1, result.stderr[-3000:]
    assert lines(result)[-1] == (
        f"dcmweb: error: cannot write the journal {journal}: database or disk is full (free "
        "some space; the next run asks the server about the files this one was sending)")
    counts = summary_counts(lines(result)[-2])
    rows = report_rows(report)
    assert 0 < counts["stored"] < len(files)
    assert {row["status"] for row in rows.values()} == {"stored"}
    assert len(rows) == counts["stored"]
    assert len(rows) + counts["not attempted"] == len(files)
    assert held(refusing_server) == {row["sop_instance_uid"] for row in rows.values()}

    monkeypatch.undo()  # space again: the journal is whole, and the rerun sends the rest
    rerun = run(refusing_server.url, "store", "--journal", str(journal), str(tmp_path / "s"))
    assert rerun.exit_code == 0, rerun.stderr[-3000:]
    assert held(refusing_server) == {sop_uid(path) for path in files}
    assert refusing_server.duplicates == []


def test_a_report_the_disk_refuses_stops_the_run_and_counts_every_file(
        local_server: LocalServer, tmp_path: Path) -> None:
    """The report reaches the most a process may write (RLIMIT_FSIZE: as a full disk, a
    write cut short, then refused). Old dcmweb: "unexpected error: OSError ... report it",
    no count of the files in flight or never sent, and the last row cut mid-line."""
    files = corpus.synthetic_files(tmp_path / "s", 30)
    report = tmp_path / "r.jsonl"
    done = run_limited({resource.RLIMIT_FSIZE: 2000}, "-m", "--workers", "2",
                       local_server.url, "store", "--batch-size", "2", "--report",
                       str(report), str(tmp_path / "s"))
    stderr = logs.lines(done.stderr)
    assert done.returncode == 1, done.stderr
    assert stderr[-1] == (f"dcmweb: error: cannot write the report {report}: File too large "
                          "(free some space, or give --report another disk)")
    rows = report_rows(report)  # whole rows only: each line is JSON
    counts = summary_counts(stderr[-2])
    assert 0 < len(rows) < counts["stored"]
    assert counts["stored"] + counts["not attempted"] == len(files)
    assert len(held(local_server)) == counts["stored"]


# -- inputs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [[], ["--skip-existing"]], ids=["plain", "skip-existing"])
def test_a_fifo_in_a_folder_is_skipped_not_read(local_server: LocalServer, tmp_path: Path,
                                                ct: Path, options: list[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ct.dcm").write_bytes(ct.read_bytes())
    os.mkfifo(folder / "pipe.dcm")
    outcome: list[Result] = []
    worker = threading.Thread(target=lambda: outcome.append(
        run(local_server.url, "store", *options, str(folder))), daemon=True)
    worker.start()
    worker.join(60)
    if not outcome:  # old dcmweb blocked here forever: unblock it, then fail
        with open(folder / "pipe.dcm", "wb"):
            pass
        pytest.fail("store hung on a FIFO")
    result = outcome[0]
    assert result.exit_code == 0, result.stderr
    assert (f"dcmweb: warning: skipped {folder / 'pipe.dcm'}: not a regular file:"
            " a FIFO (named pipe)") in lines(result)
    assert lines(result)[-1] == "dcmweb: info: Transferred 38.3 KiB in 1 file; 1 skipped"
    assert held(local_server) == {sop_uid(ct)}


def test_single_part_never_sends_more_than_the_measured_size(local_server: LocalServer,
                                                             tmp_path: Path, ct: Path) -> None:
    grown = tmp_path / "grown.dcm"
    data = ct.read_bytes()
    grown.write_bytes(data)
    head = read_part10_head(grown)
    assert head is not None and head.size == len(data)
    item = Part10File(grown, head)
    with grown.open("ab") as handle:  # grows after it was measured
        handle.write(b"\0" * 1000)
    with Client(local_server.url, backoff=0.01) as client:
        uploader = Uploader(client.http, client.base_url, StoreOptions(single_part=True))
        results = uploader.send([item])
    # Old dcmweb sent the grown file (1000 bytes past the size it listed), and stored it.
    assert [(r.status, r.message) for r in results] == [("failed", CHANGED_WHILE_SENT)]
    assert held(local_server) == set()


def test_sized_body_reads_exactly_its_size(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    body = SizedFileBody(path, Stamp.of(path.stat()))
    assert len(body) == 100
    assert body.read(60) == b"x" * 60
    with path.open("ab") as handle:
        handle.write(b"y")
    with pytest.raises(FileChanged):
        body.read()
    body = SizedFileBody(path, Stamp.of(path.stat()))  # listed as it is now
    assert b"".join(body) == b"x" * 100 + b"y"


# -- files that change after their head was read ----------------------------------------------
# How a run waits while the files of its next requests are listed already: one thread, a
# 503 with Retry-After to its first batch; -m, the first two requests answered slowly
# (the batches after them are queued, their heads read). The files changed then are
# those of the batches sent after the wait.
WAITS = {"one thread": ([], {"status": 503, "retry_after": "2"}, [0]),
         "-m": (["-m", "--workers", "2"], {"delay": 1.5, "count": 2}, [4, 6])}


def store_while_waiting(server: LocalServer, files: list[Path], wait: str, report: Path,
                        change: Callable[[Path], None]) -> tuple[Result, list[Path]]:
    """Store ``files`` (2 a request) while ``wait`` holds the run: once the server has
    taken the faults, ``change`` the files of the later batches; the run's result, and
    the files changed. A run that hangs fails the test, instead of hanging the suite."""
    threads, fault, changed = WAITS[wait]
    server.inject_fault(method="POST", **fault)  # type: ignore[arg-type]
    outcome: list[Result] = []
    worker = threading.Thread(target=lambda: outcome.append(run(
        *threads, server.url, "store", "--batch-size", "2", "--report", str(report),
        *map(str, files))), daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while len(server.faults):
        assert worker.is_alive() and time.monotonic() < deadline, "the faults never came"
        time.sleep(0.01)
    for n in changed:
        change(files[n])
    worker.join(60)
    if not outcome:
        pytest.fail("the store hung")
    return outcome[0], [files[n] for n in changed]


def a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("wait", list(WAITS))
@pytest.mark.parametrize(("change", "reason"), [
    (Path.unlink, "cannot read: No such file or directory"),
    (a_folder, "cannot read: not a regular file: a directory")], ids=["deleted", "a folder"])
def test_a_file_gone_after_its_head_was_read_fails_alone(
        local_server: LocalServer, tmp_path: Path, wait: str,
        change: Callable[[Path], None], reason: str) -> None:
    """Was: the request whose body could not be built kept its slot in the gate, and so
    did each one-file request that then looked for the file: the run hung for ever (its
    journal locked, so every later cron run exited 7), and a killed one said "server
    unavailable" and "unconfirmed (sent, no answer)" of files never sent."""
    files = corpus.synthetic_files(tmp_path / "in", 12)
    uids = {path: sop_uid(path) for path in files}
    report = tmp_path / "report.jsonl"
    result, gone = store_while_waiting(local_server, files, wait, report, change)
    assert result.exit_code == 6, result.stderr
    rows = report_rows(report)
    assert {path: (row["status"], row["message"]) for path, row in rows.items()} == {
        str(path): ("failed", reason) if path in gone else ("stored", None) for path in files}
    assert held(local_server) == {uids[path] for path in files if path not in gone}
    for path in gone:
        assert f"dcmweb: error: {path} failed: {reason}" in lines(result)
    summary = lines(result)[-2]
    assert summary.startswith("dcmweb: info: Transferred ")
    assert summary.endswith(f"in {len(files) - len(gone)} files; {len(gone)} failed" + (
        ", server unavailable for 2 s" if wait == "one thread" else "")), summary


def another_instance_of_the_same_size(path: Path, target: Path) -> Path:
    """``path`` under another SOP Instance UID of the same length, so the same size (fresh
    UIDs differ in length by a digit now and then)."""
    ds = pydicom.dcmread(path)
    uid = str(ds.SOPInstanceUID)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = (
        uid[:-1] + str((int(uid[-1]) + 1) % 10))
    ds.save_as(target, enforce_file_format=True)
    assert target.stat().st_size == path.stat().st_size
    return target


def put_in_place(others: Path, how: str) -> Callable[[Path], None]:
    """Put another instance of the same size where a file is, with the file's mtime:
    renamed over it (``rsync -a``) or written into it (``cp -p``)."""
    others.mkdir()

    def change(path: Path) -> None:
        listed = path.stat()
        other = another_instance_of_the_same_size(path, others / path.name)
        if how == "renamed over":
            other.rename(path)
        else:
            path.write_bytes(other.read_bytes())
        os.utime(path, ns=(listed.st_atime_ns, listed.st_mtime_ns))

    return change


@pytest.mark.parametrize("wait", list(WAITS))
@pytest.mark.parametrize("how", ["renamed over", "written in place"])
def test_a_file_replaced_after_its_head_was_read_is_not_sent(
        local_server: LocalServer, tmp_path: Path, wait: str, how: str) -> None:
    """Another instance put in a listed file's place, with its size and mtime: was sent
    and stored, while the file was reported "failed ... not on the server" (its answer
    named other UIDs): the server held an instance no row named."""
    files = corpus.synthetic_files(tmp_path / "in", 12)
    uids = {path: sop_uid(path) for path in files}
    report = tmp_path / "report.jsonl"
    result, replaced = store_while_waiting(local_server, files, wait, report,
                                           put_in_place(tmp_path / "others", how))
    assert result.exit_code == 6, result.stderr  # docs/exit-codes.md: changed while sent
    rows = report_rows(report)
    assert {path: (row["status"], row["message"]) for path, row in rows.items()} == {
        str(path): ("failed", CHANGED_WHILE_SENT) if path in replaced else ("stored", None)
        for path in files}
    assert held(local_server) == {uids[path] for path in files if path not in replaced}


# -- the search that proves a store, on every server -----------------------------------------
@pytest.mark.parametrize("server", ["local_server", "orthanc", "tinypacs_fresh"])
def test_search_by_uid_list_finds_exactly_what_is_held(server: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    from dcmweb import storecheck

    srv = request.getfixturevalue(server)
    files = corpus.synthetic_files(tmp_path / "s", 6, series_per_study=2)
    with Client(srv.url, backoff=0.01) as client:
        assert {r.status for r in client.store(files[:4])} == {"stored"}
        wanted = [storecheck.wanted(storecheck.dataset_uids(p), sop_uid(p)) for p in files]
        finder = storecheck.Finder(client.http, client.base_url)
        found = finder.held(wanted)
        assert finder.held(wanted) == found  # again, now knowing whether lists match
    assert set(found) == {sop_uid(p) for p in files[:4]}
    assert finder.lists is (server != "tinypacs_fresh")  # tiny-pacs matches exact UIDs only
    for path in files[:4]:
        assert found[sop_uid(path)] is not None


@pytest.mark.parametrize("server", ["local_server", "orthanc", "tinypacs_fresh"])
def test_read_back_tells_the_files_bytes_from_other_bytes(
        server: str, tmp_path: Path, ct: Path, request: pytest.FixtureRequest) -> None:
    """The check behind a search's proof reads the stored bytes back: multipart from
    Orthanc, single-part from tiny-pacs."""
    from dcmweb import storecheck

    srv = request.getfixturevalue(server)
    other = other_bytes(ct, tmp_path / "other.dcm")
    wanted = storecheck.wanted(storecheck.dataset_uids(ct), sop_uid(ct))
    with Client(srv.url, backoff=0.01) as client:
        assert {r.status for r in client.store([ct])} == {"stored"}
        assert storecheck.holds_bytes(client.http, client.base_url, wanted, ct) is True
        # The File Meta header is not the instance (tiny-pacs rewrites it): left out.
        preamble = tmp_path / "preamble.dcm"
        preamble.write_bytes(b"x" * 128 + ct.read_bytes()[128:])
        assert storecheck.holds_bytes(client.http, client.base_url, wanted, preamble) is True
        assert storecheck.holds_bytes(client.http, client.base_url, wanted, other) is False
        missing = storecheck.wanted(("1.2.3", "1.2.3.4", "1.2.3.4.5"), "1.2.3.4.5")
        with pytest.raises(storecheck.READ_BACK_FAILED):
            storecheck.holds_bytes(client.http, client.base_url, missing, ct)


def test_a_conflict_tiny_pacs_refuses_as_a_duplicate_fails(tinypacs_fresh, tmp_path: Path,
                                                           ct: Path) -> None:
    """tiny-pacs refuses other bytes under held UIDs with the bare 0x0110 it gives a
    duplicate: old dcmweb found the UID by search and reported the file stored."""
    assert run(tinypacs_fresh.url, "store", str(ct)).exit_code == 0
    other = other_bytes(ct, tmp_path / "other.dcm")
    report = tmp_path / "report.jsonl"
    result = run(tinypacs_fresh.url, "store", "--report", str(report), str(other))
    assert result.exit_code == 1, result.stderr
    assert report_rows(report)[str(other)]["message"] == (
        "already on the server: a duplicate refused; the server holds other bytes under "
        "these UIDs")


@pytest.mark.parametrize("server", ["orthanc", "tinypacs_fresh"])
def test_rerun_of_a_batch_is_safe_on_real_servers(server: str, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    """Orthanc answers 200 to a file it holds (proven by its answer); tiny-pacs answers
    409 (proven by a search, in one request per series)."""
    srv = request.getfixturevalue(server)
    corpus.synthetic_files(tmp_path / "s", 8)
    first = run(srv.url, "store", str(tmp_path / "s"))
    assert first.exit_code == 0, first.stderr
    report = tmp_path / "again.jsonl"
    again = run(srv.url, "store", "--report", str(report), str(tmp_path / "s"))
    assert again.exit_code == 0, again.stderr
    proof = {r["confirmed_by"] for r in report_rows(report).values()}
    assert proof == ({"answer"} if server == "orthanc" else {"search"})
    assert lines(again)[-1].endswith(" in 8 files")


def test_report_file_exists_even_when_no_file_finished(tmp_path: Path, ct: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on: nothing is ever sent
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    report = tmp_path / "report.jsonl"
    result = run("--retries", "0", f"http://127.0.0.1:{port}/dicom-web", "store", "--report",
                 str(report), str(ct))
    assert result.exit_code == 5, result.stderr
    assert report.read_text() == ""  # old dcmweb: no file at all


def test_a_file_refused_for_its_credentials_has_its_report_row(
        local_server: LocalServer, tmp_path: Path, ct: Path) -> None:
    local_server.token = "right"
    report = tmp_path / "report.jsonl"
    result = run("--token", "wrong", local_server.url, "store", "--report", str(report),
                 str(ct))
    assert result.exit_code == 3
    # Old dcmweb: an empty report, and "1 not attempted" for the file it sent.
    row = report_rows(report)[str(ct)]
    assert (row["status"], row["http_status"]) == ("failed", 401)


def test_two_files_of_one_instance_with_other_file_meta_go_in_two_requests(
        local_server: LocalServer, tmp_path: Path, ct: Path) -> None:
    """The same data set SOP Instance UID under two File Meta UIDs, other bytes: the answer
    names the data set's UID, so one request cannot tell which file it speaks of (old
    dcmweb sent both in one request and reported both failed while the server held one)."""
    first, second = tmp_path / "a.dcm", tmp_path / "b.dcm"
    for path, meta_uid, name in ((first, "1.2.826.0.1.3680043.2.1.1", "A^A"),
                                 (second, "1.2.826.0.1.3680043.2.1.2", "B^B")):
        ds = pydicom.dcmread(ct)
        ds.file_meta.MediaStorageSOPInstanceUID = meta_uid
        ds.PatientName = name
        ds.save_as(path)
    report = tmp_path / "report.jsonl"
    result = run(local_server.url, "store", "--report", str(report), str(first), str(second))
    posts = [r for r in local_server.requests if r.method == "POST"]
    assert len(posts) == 2
    assert result.exit_code == 6, result.stderr
    rows = report_rows(report)
    assert (rows[str(first)]["status"], rows[str(second)]["status"]) == ("stored", "failed")
    assert held(local_server) == {sop_uid(ct)}


def test_a_lost_answers_retry_after_never_waits_past_the_outage_limit(
        local_server: LocalServer, ct: Path) -> None:
    """Was: a 502 asking to wait 100000 s, after the server had answered, was waited 300 s
    (the Retry-After cap) between resends though the outage limit was 1 s."""
    http = Http(config=HttpConfig(retry=RetryPolicy(base=0.01), request_deadline=10,
                                  outage_limit=1))
    started = time.monotonic()
    try:
        http.request("GET", f"{local_server.url}/studies")  # the server answers: not down
        local_server.inject_fault(502, count=1000, retry_after="100000", method="POST")
        with pytest.raises(UnavailableError) as caught:
            list(iter_store(http, local_server.url, [ct]))
    finally:
        http.close()
    assert time.monotonic() - started < 5
    assert str(caught.value).startswith(
        f"store {ct} failed: HTTP 502 Bad Gateway: injected fault (the server was unavailable"
        " for 1 s, the outage limit)"), str(caught.value)


# -- one file the way to the server always drops ---------------------------------------------
@pytest.mark.parametrize("workers", ["1", "3"])
def test_a_file_whose_requests_are_always_dropped_fails_alone(
        local_server: LocalServer, tmp_path: Path, workers: str) -> None:
    """A proxy that resets every request carrying one file (a size limit, a filter) while
    searches are answered: the file's batch was taken for a server outage, the run waited
    out the outage limit and stopped (exit 5) with the other files unconfirmed or never
    sent, night after night. The searches show the server is up: the batch is split and
    the one file fails."""
    files = corpus.synthetic_files(tmp_path / "s", 10)
    poison = files[6]
    local_server.inject_fault(drop=True, count=10**6, method="POST",
                              body_contains=sop_uid(poison))
    report = tmp_path / "report.jsonl"
    result = run("-m", "--workers", workers, "--outage-limit", "8", "--retries", "2",
                 local_server.url, "store", "--batch-size", "5", "--report", str(report),
                 str(tmp_path / "s"))
    assert result.exit_code == 6, result.stderr[-3000:]
    assert held(local_server) == {sop_uid(p) for p in files if p != poison}
    rows = report_rows(report)
    assert {path for path, row in rows.items() if row["status"] == "failed"} == {str(poison)}
    assert {row["status"] for path, row in rows.items() if path != str(poison)} == {"stored"}


@pytest.mark.parametrize("on_server", [True, False], ids=["held", "not-held"])
def test_409_with_an_empty_body_is_not_called_a_duplicate(ct: Path, tmp_path: Path,
                                                          on_server: bool) -> None:
    """A first store answered 409 with no body: old dcmweb called a file the search found
    "already on the server: a duplicate refused", which the server never said."""
    report = tmp_path / "report.jsonl"
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.reply(409))
        _series_route(fake, ct, [[_row(ct)] if on_server else []])
        _instance_route(fake, ct)
        result = run(fake.url, "store", "--report", str(report), str(ct))
    row = report_rows(report)[str(ct)]
    assert "duplicate" not in result.stderr
    assert row["http_status"] == 409
    if on_server:
        assert result.exit_code == 0, result.stderr
        assert (row["status"], row["confirmed_by"]) == ("stored", "search")
        assert row["message"] == ("the server answered HTTP 409 Conflict, yet a search "
                                  "finds it on the server")
    else:
        assert result.exit_code == 1
        assert lines(result)[0] == f"dcmweb: error: {ct} failed: HTTP 409 Conflict"


@pytest.mark.parametrize("on_server", [True, False], ids=["held", "not-held"])
def test_a_file_the_answer_leaves_out_is_decided_by_search(tmp_path: Path,
                                                           on_server: bool) -> None:
    """A 200 naming 5 of the 6 files sent: old dcmweb resent the sixth alone, and said it
    was "answered HTTP 200 with an empty answer naming no file" (the resend's answer)."""
    files = corpus.synthetic_files(tmp_path / "s", 6)
    left_out = files[5]
    contents = {p: p.read_bytes() for p in files}

    def stow(req: Request) -> None:
        named = [p for p, data in contents.items() if data in req.seen.body and p != left_out]
        refs = [{"00081155": {"vr": "UI", "Value": [sop_uid(p)]}} for p in named]
        req.json(200, {"00081199": {"vr": "SQ", "Value": refs}} if refs else {},
                 "application/dicom+json")

    report = tmp_path / "report.jsonl"
    with Hostile() as fake:
        fake.route("POST", "/studies", stow)
        _series_route(fake, left_out, [[_row(left_out)] if on_server else []])
        _instance_route(fake, left_out)
        result = run(fake.url, "store", "--report", str(report), str(tmp_path / "s"))
        methods = [r.method for r in fake.requests]
    # Searched (and what it found asked for, its metadata (404 here) then its retrieve:
    # searches lag behind deletes), not resent.
    assert methods == ["POST", "GET"] + ["GET", "GET"] * on_server
    row = report_rows(report)[str(left_out)]
    assert row["http_status"] == 200
    if on_server:
        assert result.exit_code == 0, result.stderr
        assert (row["status"], row["confirmed_by"]) == ("stored", "search")
        assert row["message"] == ("the server's answer did not name this file; found on "
                                  "the server by search")
    else:
        assert result.exit_code == 6, result.stderr
        assert row["status"] == "failed"
        assert row["message"] == ("the server's answer (HTTP 200) did not name this file; "
                                  "not on the server")
    assert {r["status"] for p, r in report_rows(report).items() if p != str(left_out)} == {
        "stored"}


def test_a_journal_on_a_full_disk_counts_the_files_it_never_sent(
        local_server: LocalServer, tmp_path: Path) -> None:
    """The journal reaches the most a process may write (RLIMIT_FSIZE: as a full disk,
    every write after the first refused one is refused too) with many batches to go. Old
    dcmweb: the correction of the unsent files' attempts wrote to the refused journal, so
    the files never sent were counted nowhere ("in 4 files" for a run of 60)."""
    files = corpus.synthetic_files(tmp_path / "s", 60)
    journal = tmp_path / "j.db"
    done = run_limited({resource.RLIMIT_FSIZE: 40000}, local_server.url, "store",
                       "--batch-size", "4", "--journal", str(journal), str(tmp_path / "s"))
    stderr = logs.lines(done.stderr)
    assert done.returncode == 1, done.stderr
    assert stderr[-1].startswith(f"dcmweb: error: cannot write the journal {journal}: ")
    counts = summary_counts(stderr[-2])
    assert counts.get("not attempted", 0) > 0, stderr[-2]
    assert counts["stored"] + counts.get("unconfirmed", 0) + counts["not attempted"] == len(
        files), stderr[-2]
    assert len(held(local_server)) == counts["stored"]


def test_a_lost_answer_whose_copy_cannot_be_read_back_is_told_in_one_line_not_as_an_outage(
        local_server: LocalServer, tmp_path: Path, ct: Path) -> None:
    """The answer is lost, the search finds the file, and its read-back is answered 404:
    the file is sent again. Old dcmweb said "found on the server ... sending it again",
    then "0 of 1 found on the server by search; the server is unavailable", and closed
    with "server unavailable for 1 s", though the server answered every other request.
    The store takes a second (as on a busy machine, where this test failed 4 times in
    30): the read-back's answer ended the outage the lost answer had begun, and counted
    the second since the POST as the server unavailable."""
    local_server.inject_fault(after=True, method="POST", delay=1.0)
    local_server.inject_fault(404, method="GET", path_contains=f"instances/{sop_uid(ct)}")
    result = run(local_server.url, "store", str(ct))
    assert result.exit_code == 0, result.stderr
    told = [line for line in lines(result) if "uploaded as" not in line]
    instance = "/".join(f"{level}/{uid}" for level, uid in zip(
        ("studies", "series", "instances"), read_part10_head(ct).uids or (), strict=True))
    told[0] = re.sub(r"in \d+\.\d s$", "in N s", told[0])  # a random backoff
    assert told == [
        f"dcmweb: info: store {ct}: connection dropped after the request was sent; 1 of 1 "
        f"found on the server by search, 1 not proven stored (its copy could not be read "
        f"back: read back {instance} failed: HTTP 404 Not Found: injected fault); sending 1 "
        "again in N s",
        "dcmweb: info: Transferred 38.3 KiB in 1 file"], result.stderr


# -- a search that cannot decide -------------------------------------------------------------
def _sign_in_page(req: Request) -> None:
    req.reply(200, b"<html><body><form>Sign in</form></body></html>", "text/html")


def _json_error(req: Request) -> None:
    req.json(200, {"error": "session expired"})


@pytest.mark.parametrize(("answer", "search"), [
    ("lost", "sign-in page"), ("lost", "json error"), ("lost", "500"), ("200 {}", "500"),
    ("524", "sign-in page")])
def test_files_a_failing_search_cannot_decide_are_unconfirmed_not_failed(
        local_server: LocalServer, tmp_path: Path, answer: str, search: str) -> None:
    """The server stores, its answer is lost (or is a 200 naming no file), and the search
    that should settle it fails: a sign-in page, a JSON error object, HTTP 500 three
    times. Old dcmweb: every file "failed", "nothing stored: 2 of 2 files failed", exit 1,
    while the server held them all (a resend of "failed" files floods a server that
    refuses duplicates). A gateway's 524 after the server stored: its search fails alike
    (old dcmweb did not search, and said "the run stopped", though it went on)."""
    files = corpus.synthetic_files(tmp_path / "s", 2)
    base = urlsplit(local_server.url).path
    searches = {"sign-in page": _sign_in_page, "json error": _json_error,
                "500": forward(local_server.root_url)}
    if search == "500":
        local_server.inject_fault(500, count=10**6, method="GET")
    if answer == "524":
        local_server.inject_fault(524, method="POST", after=True)
    stores = {"lost": forward(local_server.root_url, answer=False),
              "200 {}": forward(local_server.root_url, alter=lambda body: b"{}"),
              "524": forward(local_server.root_url)}
    report = tmp_path / "report.jsonl"
    with Hostile() as fake:
        relay = forward(local_server.root_url)
        fake.fallback = lambda req: (searches[search] if req.seen.method == "GET"
                                     else relay)(req)
        fake.route("POST", base + "/studies", stores[answer])
        result = run(fake.root_url + base, "store", "--report", str(report),
                     str(tmp_path / "s"))
        posts = len(fake.seen("POST"))
    assert held(local_server) == {sop_uid(p) for p in files}
    assert posts == 1  # never resent: the server may hold them
    assert result.exit_code == 1, result.stderr
    assert "nothing stored" not in result.stderr
    assert "found on the server by search" not in result.stderr
    assert lines(result)[-2].startswith(
        "dcmweb: info: Transferred 0 B in 0 files; 2 unconfirmed (sent, no answer: the server "
        "may hold them)")  # then, after a lost answer, "server unavailable for N s"
    assert lines(result)[-1] == (
        "dcmweb: error: nothing confirmed stored: 2 of 2 files unconfirmed (the server may "
        "hold them) (rerun with --skip-existing (or this run's --journal) to ask the server "
        "about them before sending them again)")
    doubt = {"lost": "store of 2 files: connection dropped after the request was sent",
             "200 {}": "HTTP 200 OK", "524": "HTTP 524: injected fault"}[answer]
    why = {"sign-in page": "the answer is not a JSON list", "json error":
           "the answer is not a JSON list", "500": "HTTP 500 Internal Server Error"}[search]
    for path in files:
        row = report_rows(report)[str(path)]
        assert (row["status"], row["http_status"]) == (
            "unconfirmed", {"lost": None, "200 {}": 200, "524": 524}[answer])
        assert row["message"].startswith(
            f"{doubt}; search for stored instances failed: {why}"), row["message"]
        assert "; the server may hold it" in row["message"]
        assert f"dcmweb: warning: {path} unconfirmed: {row['message']}" in lines(result)


def test_a_batch_a_failing_search_cannot_decide_leaves_the_others_stored(
        local_server: LocalServer, tmp_path: Path) -> None:
    """One batch's answer lost and its search failing: that batch is unconfirmed, the run
    goes on, and the exit is 6 (some stored), not 1 with "failed"."""
    files = corpus.synthetic_files(tmp_path / "s", 4)
    local_server.inject_fault(after=True, method="POST")
    local_server.inject_fault(500, count=3, method="GET")  # the search, and its 2 retries
    report = tmp_path / "report.jsonl"
    result = run(local_server.url, "store", "--batch-size", "2", "--report", str(report),
                 str(tmp_path / "s"))
    assert result.exit_code == 6, result.stderr
    assert held(local_server) == {sop_uid(p) for p in files}
    statuses = [row["status"] for row in report_rows(report).values()]
    assert sorted(statuses) == ["stored", "stored", "unconfirmed", "unconfirmed"]
    assert lines(result)[-1] == (
        "dcmweb: error: 2 of 4 files unconfirmed (the server may hold them) (rerun with "
        "--skip-existing (or this run's --journal) to ask the server about them before "
        "sending them again)")


@pytest.mark.parametrize("status", [401, 403, 407])
def test_files_sent_and_refused_by_credentials_are_failed_not_unattempted(
        local_server: LocalServer, tmp_path: Path, status: int) -> None:
    """The server (or a proxy: 407) refuses the credentials of a batch it was sent: its
    files are failed rows with that status, the run still stops at once (exit 3), and only
    the files never sent are not attempted. Old dcmweb: "0 files; 3 not attempted", and a
    report with no row for the refused files."""
    corpus.synthetic_files(tmp_path / "s", 3)
    local_server.inject_fault(status, count=10**6, method="POST")
    report = tmp_path / "report.jsonl"
    result = run(local_server.url, "store", "--batch-size", "2", "--report", str(report),
                 str(tmp_path / "s"))
    assert result.exit_code == 3, result.stderr
    assert [r.method for r in local_server.requests] == ["POST"]
    rows = report_rows(report)
    assert len(rows) == 2
    assert {(row["status"], row["http_status"]) for row in rows.values()} == {
        ("failed", status)}
    assert lines(result)[-2] == ("dcmweb: info: Transferred 0 B in 0 files; 2 failed, "
                                 "1 not attempted")
    assert held(local_server) == set()
