"""Secrets never leave: URL passwords redacted everywhere, --ca-bundle beats the
environment, malformed credentials are usage errors that never echo them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request, tls_certificate

from dcmweb.cli import cli
from dcmweb.redact import hide, redact_text, redact_url
from dcmweb_devtools.logs import lines

SECRET = "PW-7c1e9a55"
ROWS = json.dumps([{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}]).encode()


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def rows(req: Request) -> None:
    req.reply(200, b"[]" if req.params.get("offset", "0") != "0" else ROWS,
              "application/dicom+json")


def with_password(url: str) -> str:
    return url.replace("://", f"://alice:{SECRET}@", 1)


# -- URL userinfo ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "shown"),
    [(f"http://alice:{SECRET}@h:8042/dicom-web", "http://***@h:8042/dicom-web"),
     (f"https://alice:{SECRET}@h/x?u=a@b", "https://***@h/x?u=a@b"),
     (f"http://a:{SECRET}@weird@h/", "http://***@h/"),
     ("http://h/a@b", "http://h/a@b")],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_text(f"error with url: {url} (more)") == f"error with url: {shown} (more)"


def test_userinfo_is_hidden_whatever_the_scheme_s_case() -> None:
    assert redact_text(f"at HTTPS://alice:{SECRET}@h/ and Http://b:{SECRET}@g/") == (
        "at HTTPS://***@h/ and Http://***@g/")


def test_password_in_host_is_hidden_in_verbose_logs_and_errors() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.reply(404, b"no such store"))
        result = run("-v", "--traceback", with_password(fake.url), "search")
    assert result.exit_code == 4
    assert SECRET not in result.stdout + result.stderr
    assert f"GET http://***@127.0.0.1:{fake.port}/" in result.stderr
    assert "Traceback" in result.stderr  # --traceback printed, redacted too
    assert fake.requests[0].headers["Authorization"].startswith("Basic ")  # still used


def test_password_in_host_is_hidden_when_unreachable() -> None:
    with Hostile() as fake:
        url = with_password(fake.url)
    result = run("-v", "--traceback", url, "search")  # the fake is gone: refused
    assert result.exit_code == 5
    assert SECRET not in result.stdout + result.stderr


# -- TLS -------------------------------------------------------------------------------------
@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "server").mkdir()
    return tls_certificate(tmp_path / "server")


def test_ca_bundle_wins_over_the_environment(tls: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other_ca, _ = tls_certificate(tmp_path / "other")  # trusts nothing the fake shows
    with Hostile(tls=tls) as fake:
        fake.route("GET", "/studies", rows)
        env = {"REQUESTS_CA_BUNDLE": str(other_ca), "CURL_CA_BUNDLE": str(other_ca)}
        result = run("--ca-bundle", str(tls[0]), fake.url, "search", env=env)
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout) == json.loads(ROWS)
        # Without --ca-bundle the environment's bundle is used, and it does not trust the fake.
        result = run(fake.url, "search", env=env)
        assert result.exit_code == 5
        assert "TLS error" in result.stderr


@pytest.mark.parametrize("content", [b"garbage\n", b"", b"-----BEGIN CERTIFICATE-----\nxx\n"],
                         ids=["text", "empty", "broken-pem"])
def test_garbage_ca_bundle_is_a_usage_error(tmp_path: Path, content: bytes) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(content)
    with Hostile() as fake:
        result = run("--ca-bundle", str(bundle), fake.url.replace("http:", "https:"), "search")
    assert result.exit_code == 2
    assert lines(result.stderr)[-1].startswith(
        f"dcmweb: error: --ca-bundle {bundle} ")
    assert "(give a file of PEM certificates (-----BEGIN CERTIFICATE-----))" in result.stderr
    assert fake.requests == []


# -- malformed credentials -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [(["--token", f"{SECRET}\u20ac"], {}, "the token has characters that are not Latin-1"),
     (["--token", f"{SECRET}\nX-Injected: 1"], {}, "the token has a line break in it"),
     ([], {"DCMWEB_TOKEN": f"{SECRET}\r\nX: 1"}, "the token has a line break in it"),
     (["-H", f"X-Api-Key: {SECRET}\u201c"], {}, "the -H X-Api-Key value has characters"
      " that are not Latin-1"),
     (["-H", f"X-Api-Key: {SECRET}\rInjected: 1"], {}, "the -H X-Api-Key value has a line"
      " break in it"),
     (["--user", f"ann:{SECRET}\nX"], {}, "the password has a line break in it"),
     (["--user", f"ann:{SECRET}\r"], {}, "the password has a line break in it"),
     (["--user", f"{SECRET}\n:pw"], {}, "the user name has a line break in it"),
     ([], {"DCMWEB_USER": f"ann:{SECRET}\n"}, "the password has a line break in it")],
    ids=["token-euro", "token-newline", "env-token-crlf", "header-quote", "header-cr",
         "user-password-lf", "user-password-cr", "user-name-lf", "env-user-lf"],
)
def test_malformed_credentials_are_usage_errors_that_never_echo_them(
        args: list[str], env: dict[str, str], message: str) -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", rows)
        result = run(*args, fake.url, "search", env=env)
    assert result.exit_code == 2, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert lines(result.stderr)[-1].startswith(f"dcmweb: error: {message}")
    assert fake.requests == []  # refused before anything was sent


@pytest.mark.parametrize(("header", "message"), [
    (f"Bad Name: {SECRET}", "the -H header name 'Bad Name' has a space in it"),
    (f"X\tKey: {SECRET}", "the -H header name 'X\\tKey' has a control character in it"),
    (f"X(Key): {SECRET}", "the -H header name 'X(Key)' has the character '(' in it"),
    (f": {SECRET}", "a -H header has no name before its ':'"),
    (f"Authorization Bearer {SECRET}", "a -H header has no ':' between its name and value"),
])
def test_invalid_header_names_are_usage_errors_that_never_echo_values(
        header: str, message: str) -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", rows)
        result = run("-H", header, fake.url, "search")
    assert result.exit_code == 2, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert lines(result.stderr) == [f"dcmweb: error: {message} (write -H 'Name: value'; a "
                                    "name is letters, digits and !#$%&'*+-.^_`|~)"]
    assert fake.requests == []


def test_401_hint_names_gcloud_only_for_google_hosts() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.reply(401, b"who are you"))
        result = run("--token", SECRET, fake.url, "search")
    assert result.exit_code == 3
    assert lines(result.stderr)[-1] == (
        "dcmweb: error: search studies failed: HTTP 401 Unauthorized: who are you"
        " (check the credentials: --token, --user, an Authorization header (-H) or"
        " ~/.netrc)")


def test_401_hint_names_gcloud_for_google_hosts() -> None:
    import requests

    from dcmweb.failures import error_for_response

    response = requests.Response()
    response.status_code, response.reason = 401, "Unauthorized"
    response.url = "https://healthcare.googleapis.com/v1/projects/p/x/dicomWeb/studies"
    response._content = b"expired"
    response._content_consumed = True  # type: ignore[attr-defined]
    error = error_for_response(response, "search")
    assert error.hint is not None and "gcloud auth application-default login" in error.hint


# -- credentials a server echoes ---------------------------------------------------------------
def _echo(req: Request) -> None:
    """A proxy that quotes the request's credentials in its error (it happens)."""
    quoted = f"{req.seen.headers.get('Authorization')} / {req.seen.headers.get('X-Api-Key')}"
    req.json(401, {"error": {"code": 401, "message": f"rejected credentials: {quoted}"}})


@pytest.mark.parametrize("credentials", [
    ["--token", SECRET],
    ["--user", f"alice:{SECRET}"],
    ["-H", f"X-Api-Key: {SECRET}"],
], ids=["token", "user", "api-key-header"])
def test_credentials_a_server_echoes_are_never_shown(credentials: list[str],
                                                     tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    dicom = tmp_path / "a.dcm"
    dicom.write_bytes(b"\0" * 128 + b"DICM")  # never read: the store stops at the 401
    with Hostile() as fake:
        fake.route("GET", "/studies", _echo)
        searched = run(*credentials, "-vv", fake.url, "search", "studies")
        fake.route("POST", "/studies", _echo)
        stored = run(*credentials, "--log-format", "json", fake.url, "store", "--report",
                     str(report), str(dicom))
    assert searched.exit_code == stored.exit_code == 3
    assert "rejected credentials: " in searched.stderr
    shown = searched.stdout + searched.stderr + stored.stdout + stored.stderr
    basic = "YWxpY2U6UFctN2MxZTlhNTU="  # base64 of alice:SECRET, as sent
    assert SECRET not in shown and basic not in shown
    assert SECRET not in report.read_text()


def test_hidden_secrets_are_replaced_whole_and_short_ones_not_at_all() -> None:
    hide("s3cr3t-Hidden-Value")
    hide("abc")  # too short: it would be found inside ordinary words
    assert redact_text("got s3cr3t-Hidden-Value twice: s3cr3t-Hidden-Value; abc") == (
        "got *** twice: ***; abc")


def test_a_store_result_s_message_never_carries_what_the_server_quotes(
        pydicom_files: list[Path]) -> None:
    """A STOW answered 200 with a JSON error quoting the token: the library's result
    message showed it in clear (the CLI's line and report hid it)."""
    from dcmweb import Client

    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    token = "LibTokenSecret-4d2f"
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.json(200, {
            "error": f"session of {req.seen.headers.get('Authorization')} expired"}))
        with Client(fake.url, token=token) as client:
            [result] = client.store([ct])
    assert result.status == "failed"
    assert result.message is not None
    assert "session of Bearer *** expired" in result.message
    assert token not in result.message and token not in repr(result)
