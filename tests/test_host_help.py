"""Help for the usual set-up mistakes: a HOST that is a resource path, a dead proxy, and
credentials from ~/.netrc that must never replace the ones given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hostile import Hostile

from dcmweb.cli import cli
from dcmweb_devtools.logs import lines


def dcmweb(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize("tail", ["/studies", "/studies/1.2.3", "/series", "/instances",
                                  "/studies/1.2/series/3.4/instances"])
def test_a_host_that_is_a_resource_path(tail: str) -> None:
    host = "http://127.0.0.1:9/dicom-web"
    result = dcmweb(host + tail, "search")
    assert result.exit_code == 2
    assert lines(result.stderr) == [
        f"dcmweb: error: invalid HOST '{host}{tail}': it names a resource, not the DICOMweb "
        f"base (did you mean {host}?)"]


def test_a_dead_proxy_is_named(tmp_path: Path) -> None:
    env = {"HTTP_PROXY": "http://user:pw@127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}
    result = dcmweb("--retries", "0", "http://127.0.0.1:8/dicom-web", "search", env=env)
    assert result.exit_code == 5
    assert lines(result.stderr) == [
        "dcmweb: error: search studies failed: cannot reach the proxy http://***@127.0.0.1:9"
        " (on the way to 127.0.0.1:8): connection refused (check the proxy (HTTPS_PROXY / "
        "HTTP_PROXY), or bypass it for this host with NO_PROXY)"]


@pytest.fixture
def netrc(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "netrc"
    path.write_text("machine 127.0.0.1 login alice password s3cret\n")
    os.chmod(path, 0o600)
    return {"NETRC": str(path)}


def _auth_sent(args: list[str], env: dict[str, str]) -> str | None:
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(200, [], "application/dicom+json"))
        result = dcmweb(*args[:-1], fake.url, args[-1], env=env)
        assert result.exit_code == 0, result.stderr
        [seen] = fake.seen("GET")
    return seen.headers.get("Authorization")


def test_netrc_supplies_credentials_when_none_are_given(netrc: dict[str, str]) -> None:
    assert _auth_sent(["search"], netrc) == "Basic YWxpY2U6czNjcmV0"  # alice:s3cret


@pytest.mark.parametrize(("args", "expected"), [
    (["--token", "tok", "search"], "Bearer tok"),
    (["-H", "Authorization: Key abc", "search"], "Key abc"),
    (["--user", "bob:pw", "search"], "Basic Ym9iOnB3"),
])
def test_netrc_never_replaces_given_credentials(netrc: dict[str, str], args: list[str],
                                                expected: str) -> None:
    assert _auth_sent(args, netrc) == expected

