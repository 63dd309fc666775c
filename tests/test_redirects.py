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
    assert lines(result.stderr)[-2:] == [
        "dcmweb: info: Transferred 0 B in 0 files; 1 failed",
        f"dcmweb: error: store {ct} failed: HTTP {code} redirect to {target}: a POST is never"
        " redirected (its body would be dropped or sent elsewhere); nothing was done (fix HOST"
        " to the address the server redirects to (for example https:// instead of http://, or"
        " the right path))"]
    assert [(r.method, r.path) for r in fake.requests] == [("POST", "/studies")]


@pytest.mark.parametrize("code", REDIRECTS)
def test_delete_behind_a_redirect_is_an_error(code: int) -> None:
    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2", redirect(code, fake.url + "/elsewhere/1.2"))
        fake.route("GET", "/elsewhere/1.2", ok_json())
        fake.route("DELETE", "/elsewhere/1.2", lambda req: req.reply(200, b"{}"))
        result = run(fake.url, "delete", "studies/1.2")
    assert result.exit_code == 1, result.stderr
    assert "deleted" not in result.stdout + result.stderr
    # Old dcmweb: '(its body would be dropped or sent elsewhere)', for a DELETE, no body.
    assert (f"HTTP {code} redirect to {fake.url}/elsewhere/1.2: a DELETE is never redirected"
            " (it acts only on HOST, never where a redirect points); nothing was done"
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
    assert [r.method for r in fake.requests] == ["POST"]
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
              "a POST is never redirected (its body would be dropped or sent elsewhere); "
              "nothing was done")
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1].startswith("dcmweb: error: ")
    assert f"failed: HTTP 302 redirect to an invalid Location {location!r}: {reason} (fix " \
        "HOST to the address the server redirects to" in lines(result.stderr)[-1]
    assert len(fake.requests) == 1
