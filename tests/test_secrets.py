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
     (f"http://a:{SECRET}@weird@h/", "http://***@h/"),
     # A password pasted without percent-encoding: everything up to the last '@' is hidden
     (f"http://alice:Pa#ss/w?rd@{SECRET}@h:8042/x", "http://***@h:8042/x"),
     # ... so an '@' later in the URL hides more than the userinfo: the safe side.
     (f"https://alice:{SECRET}@h/x?u=a@b", "https://***@b"),
     ("http://h/a@b", "http://***@b"),
     ("http://h/a", "http://h/a"),
     (f"http://alice:Pa'ss{SECRET}@h/x", "http://***@h/x")],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    if "'" not in url:  # in text, a quote ends a URL (the registered password is hidden)
        assert redact_text(f"error with url: {url} (more)") == f"error with url: {shown} (more)"


@pytest.mark.parametrize(("query", "shown"), [
    ("PatientName=DOE%5EJ*&StudyDate=2020&limit=5", "PatientName=***&StudyDate=2020&limit=5"),
    ("00100020=P1&patientbirthdate=1970&includefield=PatientName",
     "00100020=***&patientbirthdate=***&includefield=PatientName"),
    ("OtherPatientIDsSequence.PatientID=X9&00101002.00100020=X9&PatientID=",
     "OtherPatientIDsSequence.PatientID=***&00101002.00100020=***&PatientID="),
    ("Patient%4eame=DOE", "Patient%4eame=***"),
    # Was shown: an accession number identifies a patient's exam; so do their age, sex,
    # weight and size, with the rest of the row.
    ("AccessionNumber=A20261202-0042&00080050=A1&PatientSex=O&PatientAge=099Y"
     "&00101030=12.5&PatientSize=1.55&IssuerOfPatientID=H1&Modality=CT",
     "AccessionNumber=***&00080050=***&PatientSex=***&PatientAge=***"
     "&00101030=***&PatientSize=***&IssuerOfPatientID=***&Modality=CT"),
])
def test_patient_values_in_a_query_are_hidden(query: str, shown: str) -> None:
    """A URL shown (a -v request line, a redirect) gives the query's shape, not the
    patient looked for."""
    assert redact_url(f"http://h/dicom-web/studies?{query}") == \
        f"http://h/dicom-web/studies?{shown}"


@pytest.mark.parametrize(("query", "shown"), [
    (f"access_token={SECRET}&limit=5", "access_token=***&limit=5"),
    (f"key={SECRET}&X-Amz-Signature={SECRET}&X-Goog-Credential=a%2Fb&token=",
     "key=***&X-Amz-Signature=***&X-Goog-Credential=***&token="),
    (f"StudyDate=2020&api%5Fkey={SECRET}&PatientID=P1",
     "StudyDate=2020&api%5Fkey=***&PatientID=***"),
])
def test_credential_values_in_a_query_are_hidden(query: str, shown: str) -> None:
    """As in the test server's request log (one helper): a -v line or a redirect's
    message showed them."""
    assert redact_url(f"http://h/dicom-web/studies?{query}") == \
        f"http://h/dicom-web/studies?{shown}"


@pytest.fixture(params=["local", "orthanc"])
def real_server(request: pytest.FixtureRequest) -> str:
    if request.param == "local":
        return str(request.getfixturevalue("local_server").url)
    return str(request.getfixturevalue("orthanc_session").url)


def test_a_credential_in_a_search_query_is_hidden_in_verbose_lines(real_server: str) -> None:
    """`-v` printed `GET .../instances?access_token=PW-...&limit=...` (the local server
    refuses the unknown key with a 400, Orthanc ignores it and answers)."""
    result = run("-v", real_server, "search", "instances",
                 f"access_token={SECRET}&key={SECRET}&limit=1")
    assert result.exit_code in (0, 2), result.stderr  # 2: the local server's 400
    assert SECRET not in result.stdout + result.stderr
    assert "/instances?access_token=***&key=***&limit=1" in result.stderr


def test_a_credential_in_a_bulkdata_uri_is_hidden_in_every_line(
        local_server, pydicom_files: list[Path], tmp_path: Path) -> None:
    """A BulkDataURI signed in its query: `saved as` and the error showed it whole."""
    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    assert run(local_server.url, "store", str(ct)).exit_code == 0
    import pydicom

    data = pydicom.dcmread(ct)
    uri = (f"{local_server.url}/studies/{data.StudyInstanceUID}/series/"
           f"{data.SeriesInstanceUID}/instances/{data.SOPInstanceUID}/bulkdata/{{tag}}"
           f"?access_token={SECRET}")
    saved = run("-v", local_server.url, "retrieve", uri.format(tag="7FE00010"), "-o",
                str(tmp_path / "out"))
    missing = run("-v", local_server.url, "retrieve", uri.format(tag="7FE00011"), "-o",
                  str(tmp_path / "out"))
    assert (saved.exit_code, missing.exit_code) == (0, 4), saved.stderr + missing.stderr
    for result in (saved, missing):
        assert SECRET not in result.stdout + result.stderr
        assert "/bulkdata/7FE0001" in result.stderr and "?access_token=***" in result.stderr


@pytest.mark.parametrize(("url", "shown"), [
    ("http://h/studies?StudyID=a@b&PatientName=Doe%5EJohn",
     "http://h/studies?StudyID=a@b&PatientName=***"),
    ("http://h/studies?StudyDescription=x&PatientName=Doe@clinic",
     "http://h/studies?StudyDescription=x&PatientName=***"),
    ("http://alice:Pa@ss/99word@h:9/x?PatientID=12", "http://***@h:9/x?PatientID=***"),
])
def test_an_at_sign_in_a_query_value_hides_neither_less_nor_the_host(url: str,
                                                                     shown: str) -> None:
    """The last-'@' rule for passwords took an '@' in a query value (a server's redirect)
    for the end of a password: the host and '?' went, and the patient values after it
    were shown in clear."""
    assert redact_url(url) == shown


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


# -- Basic credentials dcmweb builds itself: HOST's, ~/.netrc's, the proxy's -----------------
def _quote_authorization(req: Request) -> None:
    """A gateway that quotes the Authorization (or Proxy-Authorization) it got."""
    sent = req.seen.headers.get("Proxy-Authorization") or req.seen.headers.get("Authorization")
    req.json(407 if "Proxy-Authorization" in req.seen.headers else 401,
             {"error": {"message": f"bad credentials {sent}"}})


def _no_proxy_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "NETRC"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc of the machine


@pytest.mark.parametrize("source", ["host", "netrc", "proxy"])
def test_basic_credentials_from_host_netrc_and_proxy_are_never_shown(
        source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxy_env(monkeypatch, tmp_path)
    password = f"{source.capitalize()}Passw0rd-4e1b"
    report = tmp_path / "report.csv"
    with Hostile() as fake:
        fake.route("GET", "/studies", _quote_authorization)
        host = fake.url
        if source == "host":
            host = fake.url.replace("://", f"://alice:{password}@", 1)
        elif source == "netrc":
            (tmp_path / "netrc").write_text(f"machine 127.0.0.1 login bob password {password}\n")
            monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
        else:  # the fake is the proxy too: HOST's port has nothing listening
            monkeypatch.setenv("HTTP_PROXY", f"http://puser:{password}@127.0.0.1:{fake.port}")
            host = fake.url.replace(f":{fake.port}/", ":9/")
        result = run("--log-format", "json", host, "search", "studies")
    assert result.exit_code == 3, result.stderr
    sent = fake.requests[0].headers.get("Proxy-Authorization") or fake.requests[0].headers[
        "Authorization"]
    assert sent.startswith("Basic ") and "bad credentials Basic ***" in result.stderr
    assert password not in result.stderr and sent[6:] not in result.stderr
    assert not report.exists() or password not in report.read_text()


def test_a_host_or_netrc_password_beyond_latin_1_is_sent_as_utf8(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxy_env(monkeypatch, tmp_path)
    password = "\u043f\u0430\u0440\u043e\u043b\u044c"  # Russian for password
    (tmp_path / "netrc").write_text(f"machine 127.0.0.1 login bob password {password}99\n")
    with Hostile() as fake:
        fake.route("GET", "/studies", rows)
        from_host = run(fake.url.replace("://", "://alice:%D0%BF%D0%B0%D1%80%D0%BE%D0%BB%D1%8C@"),
                        "search")
        monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
        from_netrc = run(fake.url, "search")
    assert from_host.exit_code == from_netrc.exit_code == 0, from_host.stderr + from_netrc.stderr
    import base64

    assert [base64.b64decode(r.headers["Authorization"][6:]).decode() for r in fake.requests
            if r.params.get("offset", "0") == "0"] == [f"alice:{password}", f"bob:{password}99"]


# -- a password with '#', '?', '/' or '@' typed as it is ---------------------------------------
@pytest.mark.parametrize("host", [
    "http://alice:Pa#ss99word@127.0.0.1:9/dicom-web",
    "http://alice:Pa?ss99word@127.0.0.1:9/dicom-web",
    "http://alice:Pa/ss99word@127.0.0.1:9/dicom-web",
    "http://alice:Pa@ss/99word@127.0.0.1:9/dicom-web",
])
def test_a_host_password_with_url_characters_is_never_echoed(host: str) -> None:
    result = run(host, "search")
    assert result.exit_code == 2
    assert "ss99word" not in result.stderr and "99word" not in result.stderr
    assert lines(result.stderr) == [
        "dcmweb: error: invalid HOST 'http://***@127.0.0.1:9/dicom-web': a character in its"
        " password (before the last '@') ends the host part of a URL (percent-encode '#', '?',"
        " '/' and '@' in a password in HOST (%23, %3F, %2F, %40), or give it with --user)"]


def test_a_password_in_a_host_without_scheme_is_never_echoed() -> None:
    result = run("alice:Pa#ss99word@127.0.0.1:9/dicom-web", "search")
    assert result.exit_code == 2
    assert "ss99word" not in result.stderr
    assert lines(result.stderr)[0].startswith("dcmweb: error: invalid HOST '***@127.0.0.1:9/")


@pytest.mark.parametrize(("suffix", "what"), [
    ("?key=QuerySecret12345", "a query string ('?...')"),
    ("#QuerySecret12345", "a fragment ('#...')"),
])
def test_a_host_with_a_query_or_fragment_is_a_usage_error(suffix: str, what: str) -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", rows)
        result = run("-v", fake.url + suffix, "search")
    assert result.exit_code == 2, result.stderr
    assert "QuerySecret12345" not in result.stderr
    assert lines(result.stderr)[0].startswith(
        f"dcmweb: error: invalid HOST '{fake.url}' with {what}: dcmweb adds its own paths and"
        " queries to HOST (give HOST without it")
    assert fake.requests == []


# -- a proxy URL in the environment that cannot work --------------------------------------------
@pytest.mark.parametrize(("proxy", "message"), [
    ("http://pu:Pr0xy#Secret77@127.0.0.1:9", "HTTP_PROXY is not a valid proxy URL"),
    ("http://pu:Pr0xySecret77@[::1", "HTTP_PROXY is not a valid proxy URL"),
    ("http://pu:Pr0xySecret77@127.0.0.1:99999", "HTTP_PROXY is not a valid proxy URL"),
    ("socks5://pu:Pr0xySecret77@127.0.0.1:9",
     "HTTP_PROXY names a socks5:// proxy, which dcmweb does not support"),
])
def test_a_broken_or_unsupported_proxy_is_a_usage_error_at_once(
        proxy: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxy_env(monkeypatch, tmp_path)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    result = run("--outage-limit", "30", "http://127.0.0.1:9/dicom-web", "search")
    assert result.exit_code == 2, result.stderr
    assert "Pr0xy" not in result.stderr and "Secret77" not in result.stderr
    assert lines(result.stderr)[0].startswith(f"dcmweb: error: {message} (")


def test_the_hint_for_a_broken_proxy_url_shows_its_shape_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: 'write it as http://***@]HOST:PORT': the hint's own USER:PASSWORD@ was hidden
    as if it were a password in a URL."""
    _no_proxy_env(monkeypatch, tmp_path)
    monkeypatch.setenv("HTTP_PROXY", "http://pu:Pr0xy#Secret77@127.0.0.1:9")
    result = run("http://127.0.0.1:9/dicom-web", "search")
    assert result.exit_code == 2, result.stderr
    assert lines(result.stderr) == [
        "dcmweb: error: HTTP_PROXY is not a valid proxy URL (write it as http://HOST:PORT, with"
        " credentials as USER:PASSWORD@ before HOST; '#', '?', '/' and '@' in the password"
        " percent-encoded (%23, %3F, %2F, %40))"]


# -- server text cut where a credential is -----------------------------------------------------
@pytest.mark.parametrize("credentials", [
    ["--token", "ya29.a0AfB_byC8xQ3kL9mN2pR7sT4vW6yZ1aB3cD5eF7gH9"],
    ["--user", "carol:CutPassw0rd-a81f5e"],
], ids=["token", "user"])
def test_a_credential_cut_by_a_shortened_message_shows_no_part_of_it(
        credentials: list[str]) -> None:
    def quote_at_the_cut(req: Request) -> None:
        sent = req.seen.headers["Authorization"]
        text = "denied: " + "x" * (300 - len("denied: ") - len(sent) // 2) + f"{sent} refused"
        req.reply(401, text.encode(), "text/plain")

    with Hostile() as fake:
        fake.route("GET", "/studies", quote_at_the_cut)
        result = run(*credentials, fake.url, "search")
    assert result.exit_code == 3, result.stderr
    sent = fake.requests[0].headers["Authorization"].split(" ", 1)[1]
    assert "xxxxBearer ***" in result.stderr or "xxxxBasic ***" in result.stderr
    assert all(sent[:n] not in result.stderr for n in range(4, len(sent)))


# -- -H headers that carry credentials, by name or by look --------------------------------------
def test_jwt_assertion_credential_and_signature_headers_are_hidden() -> None:
    values = {"X-Goog-IAP-JWT-Assertion": "eyJhbGciOiJFUzI1NiJ9.IapJwtSecret.sig",
              "X-Credential": "CredSecret777", "X-Jwt": "JwtSecret888",
              "X-Sig": "SigSecret999", "X-Bearer-Thing": "BearerSecret000",
              "X-Forwarded-Identity": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"}

    def quote_headers(req: Request) -> None:
        req.json(401, {"error": {"message": json.dumps(
            {name: req.seen.headers.get(name) for name in values})}})

    with Hostile() as fake:
        fake.route("GET", "/studies", quote_headers)
        result = run(*[arg for name, value in values.items() for arg in
                       ("-H", f"{name}: {value}")], fake.url, "search")
    assert result.exit_code == 3, result.stderr
    assert '\\"X-Jwt\\": \\"***\\"' in result.stderr or '"X-Jwt": "***"' in result.stderr
    assert not [value for value in values.values() if value in result.stderr]


# -- --report's retrieve_url ---------------------------------------------------------------------
def test_report_retrieve_url_built_from_host_carries_no_password(
        pydicom_files: list[Path], tmp_path: Path) -> None:
    import pydicom

    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    data = pydicom.dcmread(ct, stop_before_pixels=True)
    row = {"0020000E": {"vr": "UI", "Value": [data.SeriesInstanceUID]},
           "00080018": {"vr": "UI", "Value": [data.SOPInstanceUID]}}  # no RetrieveURL
    report = tmp_path / "report.csv"
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.reply(200, b""))  # a doubtful answer
        fake.fallback = lambda req: req.json(200, [row], "application/dicom+json")  # searches
        result = run(with_password(fake.url), "store", "--report", str(report), str(ct))
    written = report.read_text()
    assert SECRET not in written + result.stderr, written
    assert f"http://127.0.0.1:{fake.port}/" in written and "stored" in written, (
        written + result.stderr)


# -- a BulkDataURI of HOST's own server -----------------------------------------------------------
@pytest.mark.parametrize(("home", "uri"), [
    ("http://alice:pw@127.0.0.1:8042/dicom-web", "http://127.0.0.1:8042/dicom-web/x/bulkdata/1"),
    ("http://LOCALHOST:8042/dicom-web", "http://localhost:8042/dicom-web/x/bulkdata/1"),
    ("http://example.org/dicom-web", "HTTP://Example.org:80/dicom-web/x/bulkdata/1"),
    ("https://example.org/dicom-web", "https://example.org:443/dicom-web/x/bulkdata/1"),
])
def test_a_bulkdata_uri_on_host_s_own_server_is_accepted(home: str, uri: str) -> None:
    from dcmweb.bulkdata import bulk_url
    from dcmweb.wadopath import WadoPath, parse_wado_path

    target = WadoPath(parse_wado_path("studies/1").resource, "bulkdata", bulk=uri)
    assert bulk_url(home, target) == uri


@pytest.mark.parametrize("uri", ["http://127.0.0.1:8043/dicom-web/x/bulkdata/1",
                                 "https://127.0.0.1:8042/dicom-web/x/bulkdata/1",
                                 "http://127.0.0.2:8042/dicom-web/x/bulkdata/1"])
def test_a_bulkdata_uri_elsewhere_is_still_refused(uri: str) -> None:
    from dcmweb.bulkdata import bulk_url
    from dcmweb.errors import UsageError
    from dcmweb.wadopath import WadoPath, parse_wado_path

    target = WadoPath(parse_wado_path("studies/1").resource, "bulkdata", bulk=uri)
    with pytest.raises(UsageError, match="is not on HOST's server"):
        bulk_url("http://alice:pw@127.0.0.1:8042/dicom-web", target)


def test_a_host_with_a_password_retrieves_its_own_bulkdata_uri(
        local_server, pydicom_files: list[Path], tmp_path: Path) -> None:
    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    host = with_password(local_server.url)
    assert run(host, "store", str(ct)).exit_code == 0
    import pydicom

    data = pydicom.dcmread(ct)
    path = (f"studies/{data.StudyInstanceUID}/series/{data.SeriesInstanceUID}/instances/"
            f"{data.SOPInstanceUID}")
    import requests

    metadata = requests.get(f"{local_server.url}/{path}/metadata", timeout=30).json()
    uri = metadata[0]["7FE00010"]["BulkDataURI"]
    assert uri.startswith(local_server.url)  # the server writes it without the password
    result = run(host, "retrieve", uri, "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    [saved] = (tmp_path / "out").rglob("*.raw")
    assert saved.read_bytes() == data.PixelData


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
