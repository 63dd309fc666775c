"""Credentials: which kind is chosen, Google ADC end to end against the local server's token
endpoint (google-auth `external_account`, offline), one refresh for many threads, and what
happens when there are no credentials. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dcmweb import Client
from dcmweb.auth import (
    BasicAuth,
    BearerAuth,
    GoogleAuth,
    NoAuth,
    choose_auth,
    is_google_host,
)
from dcmweb.cli import cli
from dcmweb.errors import AuthError
from dcmweb.multipart import MultipartBody
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

GCP = "https://healthcare.googleapis.com/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test here that tries to connect anywhere but 127.0.0.1 (e.g. a metadata server)."""
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost") and self.family != socket.AF_UNIX:
            raise AssertionError(f"test tried to reach {address!r}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def ct(pydicom_files: list[Path]) -> Path:
    return next(p for p in pydicom_files if p.name == "CT_small.dcm")


@pytest.fixture
def adc(local_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Application Default Credentials whose token endpoint is the local server's /token."""
    subject = tmp_path / "subject-token"
    subject.write_text("a-subject-jwt")
    config = {
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/"
                    "providers/local",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": local_server.token_url,
        "credential_source": {"file": str(subject)},
    }
    path = tmp_path / "adc.json"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo")  # else google-auth looks it up
    return path


def token_hits(local_server) -> int:
    return sum(1 for r in local_server.requests if r.path == "/token")


# -- choose_auth -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "kwargs", "kind"),
    [
        ("http://127.0.0.1:8042/dicom-web", {}, NoAuth),
        (GCP, {}, GoogleAuth),
        ("https://googleapis.com/x", {}, GoogleAuth),
        ("https://HEALTHCARE.GOOGLEAPIS.COM/v1", {}, GoogleAuth),
        ("https://evilgoogleapis.com/v1", {}, NoAuth),
        ("https://healthcare.googleapis.com.evil.net/v1", {}, NoAuth),
        (GCP, {"token": "t"}, BearerAuth),
        (GCP, {"user": "u:p"}, BasicAuth),
        (GCP, {"token": "t", "user": "u:p"}, BearerAuth),
        (GCP, {"google": False}, NoAuth),
        ("http://127.0.0.1:8042/dicom-web", {"google": True}, GoogleAuth),
        ("http://127.0.0.1:8042/dicom-web", {"google": True, "token": "t"}, BearerAuth),
        ("http://127.0.0.1:8042/dicom-web", {"token": ""}, NoAuth),
    ],
)
def test_choose_auth(url: str, kwargs: dict, kind: type) -> None:
    assert type(choose_auth(url, **kwargs)) is kind


@pytest.mark.parametrize(("flags", "sent", "warning"), [
    (["--token", "token-wins"], "Bearer token-wins",
     "both --token and an Authorization header (-H) are given: --token is used, the header "
     "is not sent"),
    (["--user", "u:pw-wins"], "Basic " + base64.b64encode(b"u:pw-wins").decode(),
     "both --user and an Authorization header (-H) are given: --user is used, the header is "
     "not sent"),
    ([], "Bearer header-alone", None),
])
def test_a_header_authorization_that_loses_is_named_in_a_warning(
        flags: list[str], sent: str, warning: str | None) -> None:
    """Old dcmweb sent --token's credentials and dropped the -H header without a word."""
    from hostile import Hostile

    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(200, [], "application/dicom+json"))
        header = "Authorization: Bearer header-alone" if not flags else "authorization: X y"
        result = run(fake.url, *flags, "-H", header, "search")
        [request] = fake.seen("GET")
    assert result.exit_code == 0, result.stderr
    assert request.headers["Authorization"] == sent
    warnings = [line.split(": warning: ", 1)[1] for line in lines(result.stderr)
                if ": warning: " in line]
    assert warnings == ([warning] if warning else [])


def test_a_header_authorization_under_google_auth_is_named_in_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="dcmweb"):
        Client(GCP, headers={"Authorization": "Bearer mine-123"}).close()
    assert [r.getMessage() for r in caplog.records] == [
        "an Authorization header (headers) is not sent: Google Application Default "
        "Credentials are used instead (google_auth=False sends it)"]


def test_is_google_host() -> None:
    assert is_google_host(GCP)
    assert not is_google_host("http://localhost:8080/googleapis.com")


def test_header_values() -> None:
    assert BearerAuth("abc").headers() == {"Authorization": "Bearer abc"}
    basic = BasicAuth("user", "pa:ss wörd").headers()["Authorization"]
    assert basic.startswith("Basic ")
    assert base64.b64decode(basic[6:]).decode() == "user:pa:ss wörd"
    assert choose_auth("http://h", user="alone").headers() == {
        "Authorization": "Basic " + base64.b64encode(b"alone:").decode()}
    assert NoAuth().headers() == {}
    assert not BearerAuth("x").refresh() and not BasicAuth("u", "p").refresh()


def test_client_for_a_google_store_name_uses_adc_lazily() -> None:
    client = Client("projects/p/locations/l/datasets/d/dicomStores/s")
    assert client.base_url == GCP
    assert isinstance(client.http.auth, GoogleAuth)  # built without loading anything
    assert isinstance(Client(GCP, google_auth=False).http.auth, NoAuth)


def test_basic_auth_is_sent(local_server, ct: Path) -> None:
    result = run("--user", "ann:pw", local_server.url, "store", str(ct))
    assert result.exit_code == 0, result.stderr
    post = next(r for r in local_server.requests if r.method == "POST")
    assert post.headers["Authorization"] == "Basic " + base64.b64encode(b"ann:pw").decode()


# -- Google ADC, offline ------------------------------------------------------------------------
def test_google_auth_refreshes_once_for_eight_threads(local_server, adc: Path) -> None:
    local_server.token = "tok-1"
    auth = GoogleAuth()
    barrier = threading.Barrier(8)
    seen: list[dict[str, str]] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            barrier.wait()
            seen.append(auth.headers())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert seen == [{"Authorization": "Bearer tok-1"}] * 8
    assert token_hits(local_server) == 1
    assert auth.headers() == {"Authorization": "Bearer tok-1"}
    assert token_hits(local_server) == 1  # still valid: not fetched again


def test_eight_threads_that_see_a_401_at_once_cause_one_refresh(local_server, adc: Path
                                                                ) -> None:
    local_server.token = "tok-1"
    with Client(local_server.url, google_auth=True, backoff=0.01, workers=8) as client:
        assert client.search("studies") == []
        assert token_hits(local_server) == 1
        local_server.token = "tok-2"  # every token sent so far is now refused
        # Hold the answers so that all eight requests go out with tok-1 before any 401.
        local_server.inject_fault(delay=0.5, count=8, method="GET", path_contains="/studies")
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                barrier.wait()
                client.http.request("GET", local_server.url + "/studies")
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    assert errors == []
    gets = [r for r in local_server.requests if r.method == "GET"]
    assert [r.status for r in gets].count(401) == 8
    assert token_hits(local_server) == 2  # one refresh for the eight 401s


def test_parallel_cli_store_with_adc_fetches_one_token(local_server, adc: Path,
                                                       tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "s", 16)
    local_server.token = "adc-token"
    result = run("-m", "--workers", "8", "--google-auth", local_server.url, "store",
                 "--batch-size", "1", str(tmp_path / "s"))
    assert result.exit_code == 0, result.stderr
    assert "Transferred" in result.stderr and "in 16 files" in result.stderr
    assert token_hits(local_server) == 1
    posts = [r for r in local_server.requests if r.method == "POST" and r.path != "/token"]
    assert len(posts) == len(files)
    assert {r.headers["Authorization"] for r in posts} == {"Bearer adc-token"}
    assert "adc-token" not in result.stderr + result.stdout


def test_expired_google_token_is_refreshed_and_the_body_resent(local_server, adc: Path,
                                                               ct: Path) -> None:
    local_server.token = "tok-1"
    with Client(local_server.url, google_auth=True, backoff=0.01) as client:
        assert client.search("studies") == []
        local_server.token = "tok-2"  # the server no longer takes tok-1, like an expiry
        results = client.store([ct])
    assert [r.status for r in results] == ["stored"]
    assert token_hits(local_server) == 2
    posts = [r for r in local_server.requests if r.method == "POST" and r.path != "/token"]
    assert [(r.status, r.headers["Authorization"]) for r in posts] == [
        (401, "Bearer tok-1"), (200, "Bearer tok-2")]
    boundary = posts[0].headers["Content-Type"].rsplit("boundary=", 1)[1]
    body = MultipartBody([ct], boundary=boundary).read()
    for record in posts:  # the replay after the refresh is not an empty body
        assert (record.body_length, record.body_sha256) == (
            len(body), hashlib.sha256(body).hexdigest())


def test_token_endpoint_failure_is_an_auth_error(local_server, adc: Path, ct: Path) -> None:
    local_server.inject_fault(403, path_contains="/token")
    result = run("--google-auth", local_server.url, "store", str(ct))
    assert result.exit_code == 3
    last = lines(result.stderr)[-1]
    assert last.startswith("dcmweb: error: could not get a Google access token: ")
    assert last.endswith("or pass --token)")
    assert [r.path for r in local_server.requests] == ["/token"]


def test_missing_adc_file_exit_3_with_gcloud_hint(local_server, tmp_path: Path, ct: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo")
    result = run("--google-auth", local_server.url, "store", str(ct))
    assert result.exit_code == 3
    assert result.stdout == ""
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: no Google credentials found: File {tmp_path / 'missing.json'} was not"
        " found. (run 'gcloud auth application-default login', or set"
        " GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or pass --token)")
    assert local_server.requests == []


def test_no_adc_anywhere_is_an_auth_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth.compute_engine._metadata as metadata

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / "gcloud"))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo")
    monkeypatch.setattr(metadata, "_NO_GCE_CHECK", True)  # no metadata-server probe
    with pytest.raises(AuthError) as info:
        GoogleAuth().headers()
    assert info.value.exit_status == 3
    assert info.value.message == "no Google credentials found"
    assert "gcloud auth application-default login" in str(info.value)


@pytest.mark.parametrize("token_from", ["flag", "env"])
def test_user_with_a_token_is_named_in_a_warning(token_from: str) -> None:
    from hostile import Hostile

    flags, env = (["--token", "TokenWins-123"], {}) if token_from == "flag" else (
        [], {"DCMWEB_TOKEN": "TokenWins-123"})
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(200, [], "application/dicom+json"))
        result = CliRunner().invoke(cli, [*flags, "--user", "carol:pw", fake.url, "search"],
                                    env=env)
        [request] = fake.seen("GET")
    assert result.exit_code == 0, result.stderr
    assert request.headers["Authorization"] == "Bearer TokenWins-123"
    assert [line.split(": warning: ", 1)[1] for line in lines(result.stderr)
            if ": warning: " in line] == [
        "both --token and --user are given: --token is used, the user and password are not"
        " sent"]


# -- a Google token endpoint that fails --------------------------------------------------------
def _service_account_key(token_uri: str) -> dict[str, str]:
    """A throwaway service-account key (its own RSA key) whose token_uri is ``token_uri``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": "demo", "private_key_id": "k1",
            "private_key": pem, "client_email": "sa@demo.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": token_uri}


@pytest.fixture(params=["service_account", "external_account"])
def token_endpoint(request: pytest.FixtureRequest, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch):
    """A fake token endpoint (hostile.py) that ADC asks: a service-account key's
    token_uri, or a workload-identity file's token_url."""
    from hostile import Hostile

    with Hostile() as fake:
        subject = tmp_path / "subject-token"
        subject.write_text("a-subject-jwt")
        config = _service_account_key(fake.root_url + "/token") if (
            request.param == "service_account") else {
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/"
                        "workloadIdentityPools/p/providers/local",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": fake.root_url + "/token",
            "credential_source": {"file": str(subject)},
        }
        (tmp_path / "adc.json").write_text(json.dumps(config))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "adc.json"))
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo")
        yield fake


@pytest.mark.parametrize("failure", ["hang", "500"])
def test_a_token_endpoint_that_hangs_or_fails_is_an_outage(token_endpoint, failure: str
                                                           ) -> None:
    import time

    from hostile import silent, status

    token_endpoint.route("POST", "/token", silent(30) if failure == "hang" else status(500))
    started = time.monotonic()
    result = run("--google-auth", "--read-timeout", "1", "--outage-limit", "3",
                 token_endpoint.url, "search")
    took = time.monotonic() - started
    assert result.exit_code == 5, result.stderr
    assert took < 15  # google-auth's own limit was 120 s a token request
    said = lines(result.stderr)
    endpoint = token_endpoint.root_url + "/token"
    assert any("could not get a Google access token" in line and "; retrying" in line
               for line in said), result.stderr
    assert said[-1].startswith("dcmweb: error: search studies failed: could not get a Google"
                               " access token: ")
    assert said[-1].endswith(f"(the token endpoint {endpoint} is unreachable or failing:"
                             " check the network (and HTTPS_PROXY) to it, or try again later)")
    assert "gcloud auth" not in result.stderr and "report it" not in result.stderr
    assert all(r.path == "/token" for r in token_endpoint.requests)


def test_a_token_endpoint_answering_a_web_page_is_one_clear_line(token_endpoint) -> None:
    token_endpoint.route("POST", "/token", lambda req: req.reply(
        200, b"<html><body>Sign in to the Wi-Fi</body></html>", "text/html"))
    result = run("--google-auth", token_endpoint.url, "search")
    assert result.exit_code == 3, result.stderr
    assert lines(result.stderr) == [
        f"dcmweb: error: could not get a Google access token: the token endpoint "
        f"{token_endpoint.root_url}/token answered HTTP 200 with text/html, not a token (a"
        " proxy or a sign-in page may be answering instead of it: check the network (and"
        " HTTPS_PROXY) to it)"]


def test_one_failed_refresh_fails_the_threads_that_waited_for_it(token_endpoint) -> None:
    import time

    from hostile import silent

    token_endpoint.route("POST", "/token", silent(3))
    auth = GoogleAuth(timeout=(1.0, 1.0))  # time for all four to wait on the first
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def call() -> None:
        barrier.wait()
        try:
            auth.headers()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert time.monotonic() - started < 2.5  # one wait of 1 s, not four
    assert len(token_endpoint.seen("POST", "/token")) == 1
    assert [e.exit_status for e in errors] == [5] * 4  # type: ignore[attr-defined]
