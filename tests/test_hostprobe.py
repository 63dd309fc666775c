"""A HOST one level off the DICOMweb base: after the failure, one probe says what HOST
should be. Never after 5xx/429/503, and never more than one request."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hostile import Hostile

from dcmweb import Client, NotFoundError
from dcmweb.cli import cli
from dcmweb.hostprobe import guess
from dcmweb.unexpected import HOST_HINT
from dcmweb_devtools.logs import lines

PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body></body></html>"


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, ["--retries", "0", *args])


def probes(paths: list[str]) -> list[str]:
    return [path for path in paths if path.endswith("/studies?limit=1")]


def received(server) -> list[tuple[str, int | None]]:
    """(path without its query, status) of every request the local server received."""
    return [(r.path.split("?")[0], r.status) for r in server.requests]


# -- against Orthanc ---------------------------------------------------------------------
def test_orthanc_root_search_names_the_dicomweb_base(orthanc) -> None:
    result = dcmweb(orthanc.root_url, "search")
    assert result.exit_code == 2
    assert lines(result.stderr) == [
        'dcmweb: error: search studies failed: HTTP 400 Bad Request: Bad request: Missing '
        '"since" argument for GET request against: /studies/ (the server refused the request'
        ' as malformed; check the path and parameters)',
        f"dcmweb: error: HOST looks like the server's root; did you mean {orthanc.url}?"]


def test_orthanc_root_store_names_the_dicomweb_base(orthanc, pydicom_files: list[Path]
                                                    ) -> None:
    result = dcmweb(orthanc.root_url + "/", "store", str(pydicom_files[0]))
    assert result.exit_code == 1
    # Old dcmweb: 'X failed: store X failed: HTTP 405 ...', the file named twice.
    assert (f"dcmweb: error: {pydicom_files[0]} failed: HTTP 405 Method Not Allowed"
            in lines(result.stderr))
    assert lines(result.stderr)[-2:] == [
        "dcmweb: error: nothing stored: 1 of 1 file failed",
        f"dcmweb: error: HOST looks like the server's root; did you mean {orthanc.url}?"]
    assert orthanc.instance_count() == 0


def test_orthanc_root_retrieve_names_the_dicomweb_base(orthanc, tmp_path: Path) -> None:
    result = dcmweb(orthanc.root_url, "retrieve", "studies/1.2.3", "-o", str(tmp_path))
    assert result.exit_code == 4
    assert lines(result.stderr)[-2:] == [
        "dcmweb: error: retrieve studies/1.2.3 failed: HTTP 404 Not Found (check the HOST "
        "URL and the UIDs in the path)",
        f"dcmweb: error: HOST looks like the server's root; did you mean {orthanc.url}?"]


def test_orthanc_web_page_as_host(orthanc) -> None:
    result = dcmweb(orthanc.root_url + "/app/explorer.html", "search")
    assert result.exit_code == 4
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: HOST looks like a web page; did you mean {orthanc.url}?")


def test_a_missing_study_on_the_right_host_adds_nothing(orthanc, tmp_path: Path) -> None:
    result = dcmweb(orthanc.url, "retrieve", "studies/1.2.3", "-o", str(tmp_path))
    assert result.exit_code == 4
    assert "HOST looks like" not in result.stderr


# -- a web page that answers 200 ----------------------------------------------------------
def test_a_sign_in_page_gets_one_probe_with_the_runs_credentials() -> None:
    with Hostile() as fake:
        fake.route("GET", "/portal/studies", lambda req: req.reply(200, PAGE, "text/html"))
        fake.route("GET", "/portal/dicom-web/studies",
                   lambda req: req.json(200, [], "application/dicom+json"))
        result = dcmweb("--token", "tok", fake.root_url + "/portal", "search")
        seen = fake.seen("GET")
    assert result.exit_code == 1
    assert lines(result.stderr) == [
        # Was "the answer is not JSON (JSONDecodeError: starts with '<!DOCTYPE html>...",
        # unlike the same page as a metadata or retrieve answer.
        "dcmweb: error: search studies failed: the server answered HTTP 200 with text/html "
        "(a web page titled \"Sign in\"), not DICOMweb data (application/dicom+json) "
        f"({HOST_HINT})",
        "dcmweb: error: HOST looks like a path above the DICOMweb base; did you mean "
        f"{fake.root_url}/portal/dicom-web?"]
    assert [r.path for r in seen] == ["/portal/studies", "/portal/dicom-web/studies"]
    assert seen[1].params == {"limit": "1"}
    assert seen[1].headers["Authorization"] == "Bearer tok"


@pytest.mark.parametrize(("fmt", "expected"), [
    ("json", "application/dicom+json"),  # was: "the server's answer is not JSON", no hint
    ("xml", "multipart/related or application/dicom+xml")])
def test_a_sign_in_page_for_metadata_names_host_in_either_format(fmt: str,
                                                                  expected: str) -> None:
    from dcmweb.unexpected import HOST_HINT

    with Hostile() as fake:
        fake.route("GET", "/portal/studies/1/metadata",
                   lambda req: req.reply(200, PAGE, "text/html"))
        fake.route("GET", "/portal/dicom-web/studies",
                   lambda req: req.json(200, [], "application/dicom+json"))
        result = dcmweb(fake.root_url + "/portal", "retrieve", "studies/1/metadata",
                        "--format", fmt)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert lines(result.stderr) == [
        'dcmweb: error: metadata studies/1/metadata: the server answered HTTP 200 with '
        f'text/html (a web page titled "Sign in"), not DICOMweb data ({expected}) '
        f"({HOST_HINT})",
        "dcmweb: error: HOST looks like a path above the DICOMweb base; did you mean "
        f"{fake.root_url}/portal/dicom-web?"]


def test_a_probe_that_finds_no_dicomweb_adds_nothing() -> None:
    with Hostile() as fake:
        fake.route("GET", "/portal/studies", lambda req: req.reply(200, PAGE, "text/html"))
        fake.route("GET", "/portal/dicom-web/studies",
                   lambda req: req.reply(200, PAGE, "text/html"))
        result = dcmweb(fake.root_url + "/portal", "search")
        seen = fake.seen("GET")
    assert result.exit_code == 1
    assert len(lines(result.stderr)) == 1
    assert len(seen) == 2


# -- against the local server -----------------------------------------------------------------
def test_google_store_without_dicomweb(local_server) -> None:
    store = local_server.url.removesuffix("/dicomWeb")
    result = dcmweb(store, "search")
    assert result.exit_code == 4
    assert lines(result.stderr)[-1] == (
        "dcmweb: error: HOST looks like a DICOM store, not its DICOMweb base; did you mean "
        f"{local_server.url}?")
    assert [r.status for r in local_server.requests] == [404, 204]  # the probe: an empty store


def test_a_resource_path_is_named_without_any_request(local_server) -> None:
    result = dcmweb(local_server.url + "/studies", "search")
    assert result.exit_code == 2
    assert lines(result.stderr) == [
        f"dcmweb: error: invalid HOST '{local_server.url}/studies': it names a resource, not "
        f"the DICOMweb base (did you mean {local_server.url}?)"]
    assert local_server.requests == []


def test_a_failed_probe_is_one_request_and_adds_nothing(local_server) -> None:
    result = dcmweb(local_server.root_url, "search")
    assert result.exit_code == 4
    assert len(lines(result.stderr)) == 1
    assert received(local_server) == [("/studies", 404), ("/dicom-web/studies", 404)]
    assert probes([r.path for r in local_server.requests]) == ["/dicom-web/studies?limit=1"]


def test_no_probe_after_a_500(local_server) -> None:
    local_server.inject_fault(500, count=10)
    result = CliRunner().invoke(cli, ["--retries", "5", local_server.root_url, "search"])
    assert result.exit_code == 1
    assert "HOST looks like" not in result.stderr
    assert received(local_server) == [("/studies", 500)] * 3


def test_no_probe_after_503s(local_server) -> None:
    local_server.inject_fault(503, count=1000)
    result = CliRunner().invoke(cli, ["--outage-limit", "0.5", local_server.root_url, "search"])
    assert result.exit_code == 5
    assert "HOST looks like" not in result.stderr
    assert set(received(local_server)) == {("/studies", 503)}


def test_no_probe_after_dropped_connections(local_server) -> None:
    local_server.inject_fault(drop=True, count=1000)
    result = CliRunner().invoke(cli, ["--outage-limit", "0.5", local_server.root_url, "search"])
    assert result.exit_code == 5
    assert not probes([r.path for r in local_server.requests])


# -- the library --------------------------------------------------------------------------------
def test_at_most_one_probe_per_client(local_server) -> None:
    with Client(local_server.url.removesuffix("/dicomWeb")) as client:
        first, second = (NotFoundError("x", status=404), NotFoundError("y", status=404))
        assert client.explain(first) is True
        assert client.explain(second) is False
    assert first.notes == [f"HOST looks like a DICOM store, not its DICOMweb base; did you "
                           f"mean {local_server.url}?"]
    assert second.notes == []
    assert str(first) == f"x\n{first.notes[0]}"
    assert len(probes([r.path for r in local_server.requests])) == 1


def test_leaving_the_with_block_explains_the_error(orthanc) -> None:
    with pytest.raises(NotFoundError) as caught, Client(orthanc.root_url) as client:
        client.retrieve("studies/1.2.3", ".")
    assert caught.value.notes == [
        f"HOST looks like the server's root; did you mean {orthanc.url}?"]


def test_a_probe_that_cannot_connect_never_raises() -> None:
    client = Client("http://127.0.0.1:9")  # nothing listens on the discard port
    error = NotFoundError("x", status=404)
    assert client.explain(error) is False
    assert error.notes == []


@pytest.mark.parametrize(("host", "expected"), [
    ("http://h:8042", ("the server's root", "http://h:8042/dicom-web")),
    ("http://h/app/explorer.html", ("a web page", "http://h/dicom-web")),
    ("http://h/orthanc", ("a path above the DICOMweb base", "http://h/orthanc/dicom-web")),
    ("https://x/v1/projects/p/locations/l/datasets/d/dicomStores/s",
     ("a DICOM store, not its DICOMweb base",
      "https://x/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb")),
    ("http://h/dicom-web", None), ("http://h/dicomweb", None), ("https://x/s/dicomWeb", None),
])
def test_guess_by_shape(host: str, expected: tuple[str, str] | None) -> None:
    assert guess(host) == expected


def test_a_password_in_host_never_shows_in_the_line(local_server) -> None:
    store = local_server.url.removesuffix("/dicomWeb").replace("http://", "http://u:pw@")
    result = dcmweb(store, "search")
    assert "pw" not in result.stderr
    assert lines(result.stderr)[-1].endswith(
        f"did you mean {local_server.url.replace('http://', 'http://***@')}?")
