"""Redirects: a write is never redirected into something else, and no header leaves HOST.

requests follows redirects by default: a POST behind a 301/302/303 became a GET whose
200 was reported as "uploaded"; a DELETE behind a 302 downloaded the study and printed
"deleted". dcmweb now follows redirects itself: writes never, GETs only within the same
origin (scheme, host and port: another port on 127.0.0.1 counts as another host).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hostile import BASE_PATH, Hostile, Route, redirect

from dcmweb.cli import cli
from dcmweb.errors import ServerError
from dcmweb.http import Http
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

REDIRECTS = [301, 302, 303, 307, 308]
SECRET = "SECRET-api-key-0c9d"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def ok_json(payload: bytes = b"[]") -> Route:
    return lambda req: req.reply(200, payload, "application/dicom+json")


@pytest.fixture
def ct(pydicom_files: list[Path]) -> Path:
    return next(p for p in pydicom_files if p.name == "CT_small.dcm")


@pytest.mark.parametrize("code", REDIRECTS)
def test_store_behind_a_redirect_is_an_error_and_nothing_is_reported_stored(
        ct: Path, code: int) -> None:
    with Hostile() as fake:
        target = fake.url.replace("http://", "https://") + "/studies"
        fake.route("POST", "/studies", redirect(code, target))
        fake.route("GET", "/studies", ok_json())
        result = run(fake.url, "store", str(ct))
    assert result.exit_code == 1, result.stderr
    assert result.stdout == ""
    assert "uploaded" not in result.stderr
    # Old dcmweb: "...; nothing was done", with no search: the server may have stored it.
    refusal = (f"HTTP {code} redirect to {target}: a POST is never redirected (its body"
               " would be dropped or sent elsewhere)")
    assert lines(result.stderr)[-3:] == [
        f"dcmweb: error: {ct} failed: {refusal}; a search does not find it",
        "dcmweb: info: Transferred 0 B in 0 files; 1 failed",
        f"dcmweb: error: store {ct}: {refusal}; 0 of 1 found on the server by search (fix"
        " HOST to the address the server redirects to (for example https:// instead of"
        " http://, or the right path))"]
    assert [r.method for r in fake.requests] == ["POST", "GET"]  # the search


@pytest.mark.parametrize("code", REDIRECTS)
def test_delete_behind_a_redirect_is_an_error(code: int) -> None:
    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2", redirect(code, fake.url + "/elsewhere/1.2"))
        fake.route("GET", "/elsewhere/1.2", ok_json())
        fake.route("DELETE", "/elsewhere/1.2", lambda req: req.reply(200, b"{}"))
        result = run(fake.url, "delete", "studies/1.2")
    assert result.exit_code == 1, result.stderr
    assert "deleted" not in result.stdout + result.stderr
    # Old dcmweb: '(its body would be dropped or sent elsewhere)', for a DELETE, no body;
    # and "nothing was done", which it cannot know.
    assert (f"HTTP {code} redirect to {fake.url}/elsewhere/1.2: a DELETE is never redirected"
            " (it acts only on HOST, never where a redirect points); the server may have"
            " carried it out before redirecting: search for it to see (fix HOST"
            in lines(result.stderr)[-1])
    assert [(r.method, r.path) for r in fake.requests] == [("DELETE", "/studies/1.2")]


@pytest.mark.parametrize("code", REDIRECTS)
def test_get_follows_a_redirect_within_the_same_origin(code: int) -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", redirect(code, BASE_PATH + "/moved/studies?limit=5"))
        fake.route("GET", "/moved/studies", ok_json(b'[{"0020000D": {"vr": "UI"}}]'))
        result = run("-H", f"X-Api-Key: {SECRET}", fake.url, "search", "limit=5")
    assert result.exit_code == 0, result.stderr
    assert '"0020000D"' in result.stdout
    assert [(r.method, r.path, r.params) for r in fake.requests] == [
        ("GET", "/studies", {"limit": "5"}), ("GET", "/moved/studies", {"limit": "5"})]
    assert all(r.headers["X-Api-Key"] == SECRET for r in fake.requests)


@pytest.mark.parametrize("code", REDIRECTS)
def test_get_redirect_to_another_host_is_refused_and_sends_it_nothing(code: int) -> None:
    with Hostile() as fake, Hostile() as other:  # another port: another origin
        fake.route("GET", "/studies", redirect(code, other.url + "/studies"))
        other.route("GET", "/studies", ok_json())
        result = run("-H", f"X-Api-Key: {SECRET}", "--token", SECRET, fake.url, "search")
    assert result.exit_code == 1, result.stderr
    assert result.stdout == ""
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: search studies failed: HTTP {code} redirect to {other.url}/studies:"
        " redirects to another scheme, host or port are not followed (headers and credentials"
        " must not leave HOST) (fix HOST to the address the server redirects to (for example"
        " https:// instead of http://, or the right path))")
    assert other.requests == []
    assert len(fake.requests) == 1


def test_http_to_https_on_a_get_is_refused_with_the_location() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", redirect(301, fake.url.replace("http:", "https:")
                                               + "/studies"))
        http = Http()
        with pytest.raises(ServerError) as info:
            http.request("GET", fake.url + "/studies", what="search")
        http.close()
    assert info.value.exit_status == 1
    assert "redirect to https://127.0.0.1:" in info.value.message


def test_redirect_loop_ends() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", redirect(302, BASE_PATH + "/studies"))
        result = run(fake.url, "search")
    assert result.exit_code == 1
    assert "more than 10 redirects" in lines(result.stderr)[-1]
    assert len(fake.requests) == 11


def test_location_with_a_password_is_redacted() -> None:
    with Hostile() as fake:
        fake.route("POST", "/studies", redirect(307, f"https://alice:{SECRET}@example.org/x"))
        http = Http()
        with pytest.raises(ServerError) as info:
            http.request("POST", fake.url + "/studies", what="store")
        http.close()
    assert SECRET not in str(info.value)
    assert "redirect to https://***@example.org/x" in info.value.message


def test_a_redirect_stops_a_bulk_store_at_once(tmp_path: Path) -> None:
    """Every request would be redirected the same way: the first redirect ends the run
    with exit 1 and the hint (old dcmweb sent 5 batches, then exit 5: "the server failed
    5 batches in a row", with no hint)."""
    folder = tmp_path / "in"
    corpus.synthetic_files(folder, 8)
    with Hostile() as fake:
        target = fake.url.replace("http://", "https://") + "/studies"
        fake.route("POST", "/studies", redirect(301, target))
        report = tmp_path / "report.jsonl"
        result = run("-q", fake.url, "store", "--batch-size", "1", "--report", str(report),
                     str(folder))
    assert result.exit_code == 1, result.stderr
    assert [r.method for r in fake.requests] == ["POST", "GET"]  # and its search
    # The file sent and redirected failed (it was counted "not attempted", with no row).
    assert "Transferred 0 B in 0 files; 1 failed, 7 not attempted" in result.stderr
    [row] = [json.loads(line) for line in report.read_text().splitlines()]
    assert (row["status"], row["http_status"]) == ("failed", 301)
    assert row["message"].startswith(f"HTTP 301 redirect to {target}")
    errors = [line for line in lines(result.stderr) if line.startswith("dcmweb: error: ")]
    assert any(f"HTTP 301 redirect to {target}" in line and line.endswith(
        "(fix HOST to the address the server redirects to (for example https:// instead of"
        " http://, or the right path))") for line in errors), errors


@pytest.mark.parametrize("location", ["http://127.0.0.1:99999/x", "http://[::1/x"])
@pytest.mark.parametrize("command", ["search", "store"])
def test_a_location_that_is_not_a_valid_url_is_a_server_error(
        ct: Path, location: str, command: str) -> None:
    """A port out of range or a broken IPv6 literal: was a raw ValueError ("unexpected
    error", exit 1) from urllib."""
    with Hostile() as fake:
        fake.route("GET", "/studies", redirect(302, location))
        fake.route("POST", "/studies", redirect(302, location))
        result = run("--retries", "0", fake.url, command, *([str(ct)] if command == "store"
                                                             else []))
    reason = ("the Location is not a valid URL" if command == "search" else
              "a POST is never redirected (its body would be dropped or sent elsewhere)")
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1].startswith("dcmweb: error: ")
    assert f": HTTP 302 redirect to an invalid Location {location!r}: {reason}" in lines(
        result.stderr)[-1]
    assert "(fix HOST to the address the server redirects to" in lines(result.stderr)[-1]
    assert [r.method for r in fake.requests] == (["GET"] if command == "search" else
                                                 ["POST", "GET"])  # the store's search


@pytest.mark.parametrize(("done", "search", "status"), [
    (True, "answered", "stored"), (False, "answered", "failed"), (True, "500", "unconfirmed")],
    ids=["stored-then-303", "303-only", "search-fails"])
def test_a_store_answered_by_a_redirect_is_settled_by_search(
        local_server: LocalServer, tmp_path: Path, done: bool, search: str,
        status: str) -> None:
    """A 303 is the answer to a POST carried out: the server may hold the files. Old
    dcmweb: every file "failed ... nothing was done", exit 1, while the server held them.
    Still never followed, and still the end of the run (fix HOST)."""
    files = corpus.synthetic_files(tmp_path / "s", 3)
    local_server.inject_fault(303, after=done, method="POST")
    if search == "500":
        local_server.inject_fault(500, count=10**6, method="GET")
    report = tmp_path / "report.jsonl"
    result = run(local_server.url, "store", "--report", str(report), str(tmp_path / "s"))
    assert result.exit_code == 1, result.stderr
    assert "nothing was done" not in result.stderr
    uids = {corpus.sop_instance_uid(p) for p in files}
    held = {row[0] for row in local_server.store.query("SELECT sop_uid FROM instances")}
    assert held == (uids if done else set())
    assert [r.method for r in local_server.requests].count("POST") == 1  # never resent
    redirect = (f"HTTP 303 redirect to {local_server.url}/studies: a POST is never redirected"
                " (its body would be dropped or sent elsewhere)")
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert {(row["status"], row["http_status"]) for row in rows} == {(status, 303)}
    assert {row["message"].split("; ")[:2][-1] for row in rows} == {
        {"stored": "found on the server by search", "failed": "a search does not find it",
         "unconfirmed": "search for stored instances failed: HTTP 500 Internal Server Error: "
                        "injected fault (after 3 attempts)"}[status]}
    assert all(row["message"].startswith(redirect) for row in rows)
    found = {"stored": "3 of 3 found on the server by search",
             "failed": "0 of 3 found on the server by search",
             "unconfirmed": "a search could not tell whether the server holds them"}[status]
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: store of 3 files: {redirect}; {found} (fix HOST to the address the "
        "server redirects to (for example https:// instead of http://, or the right path))")


def test_a_store_on_a_host_that_redirects_everything_is_unconfirmed_and_names_the_fix(
        ct: Path, tmp_path: Path) -> None:
    """http:// for an https:// server: the STOW and its search are both redirected. The
    search cannot tell, so the file is unconfirmed; the error is the STOW's redirect."""
    with Hostile() as fake:
        secure = fake.url.replace("http://", "https://")
        fake.fallback = lambda req: req.reply(301, headers={"Location": secure + req.seen.path})
        report = tmp_path / "report.jsonl"
        result = run(fake.url, "store", "--report", str(report), str(ct))
    assert result.exit_code == 1, result.stderr
    [row] = [json.loads(line) for line in report.read_text().splitlines()]
    assert (row["status"], row["http_status"]) == ("unconfirmed", 301)
    assert "; search for stored instances failed: HTTP 301 redirect to" in row["message"]
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: store {ct}: HTTP 301 redirect to {secure}/studies: a POST is never "
        "redirected (its body would be dropped or sent elsewhere); a search could not tell "
        "whether the server holds it (fix HOST to the address the server redirects to (for "
        "example https:// instead of http://, or the right path))")
