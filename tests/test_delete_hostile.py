"""dcmweb delete against answers that prove nothing (web pages, error envelopes), answers
lost after the server did the work, and Orthanc paths whose parents do not match."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request, forward, once, silent

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.testing import LocalServer
from dcmweb.unexpected import HOST_HINT
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines
from dcmweb_devtools.orthanc import Orthanc
from dcmweb_devtools.procs import http_session

pytestmark = pytest.mark.usefixtures("quick_operation_polls")
LOGIN_PAGE = b"<html><head><title>Sign in</title></head><body>...</body></html>"


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def uids_of(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """2 studies x 2 series x 2 instances."""
    return corpus.synthetic_files(tmp_path_factory.mktemp("synth"), 8, studies=2,
                                  series_per_study=2)


# -- what a delete answer may be ----------------------------------------------------------------
@pytest.mark.parametrize(("status", "body", "content_type", "shown"), [
    (200, LOGIN_PAGE, "text/html", 'text/html (a web page titled "Sign in")'),
    (200, b'{"error": {"code": 7, "message": "denied by policy"}}', "application/json",
     "application/json: denied by policy"),
    (200, b'["deleted"]', "application/json", "application/json"),
    (202, b"OK", "text/plain", "text/plain: OK"),
])
def test_an_answer_that_is_not_a_delete_answer_is_a_failure(
        status: int, body: bytes, content_type: str, shown: str) -> None:
    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2", lambda req: req.reply(status, body, content_type))
        result = dcmweb(fake.url, "delete", "studies/1.2")
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1].startswith(
        f"dcmweb: error: delete studies/1.2: the server answered HTTP {status} with {shown}, "
        "not a DICOMweb delete answer (empty, {} or an operation); nothing shows that "
        "anything was deleted (HOST must be the DICOMweb base URL")
    assert "deleted" not in result.stderr.replace("nothing shows that anything was deleted", "")


@pytest.mark.parametrize(("status", "body"), [(200, b"{}"), (200, b""), (204, b""),
                                              (200, b"  \n")])
def test_empty_answers_and_an_empty_object_are_a_done_delete(status: int, body: bytes) -> None:
    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2/series/3/instances/4",
                   lambda req: req.reply(status, body, "application/json" if body else None))
        result = dcmweb(fake.url, "delete", "studies/1.2/series/3/instances/4")
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr)[-1] == "dcmweb: info: deleted studies/1.2/series/3/instances/4"


@pytest.mark.parametrize(("status", "body", "shown"), [
    (202, b"", "HTTP 202 (accepted, not done) with an empty answer"),
    (202, b"{}", "HTTP 202 (accepted, not done) with {}"),
    (201, b"", "HTTP 201 with an empty answer"),
])
def test_an_empty_answer_other_than_200_or_204_is_not_a_done_delete(
        status: int, body: bytes, shown: str) -> None:
    """A 202 says the server accepted the delete, not that it was done: without an
    operation to follow nothing shows that it ever will be."""
    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2",
                   lambda req: req.reply(status, body, "application/json" if body else None))
        result = dcmweb(fake.url, "delete", "studies/1.2")
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: delete studies/1.2: the server answered {shown} and no operation to "
        "follow; nothing shows that anything was deleted (search for it later to see whether "
        "the server deleted it)")


def test_a_302_on_delete_is_never_a_success() -> None:
    """requests would turn the DELETE into a GET and take its 200 (a web page) for done."""
    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2", lambda req: req.reply(
            302, b"", "text/html", headers={"Location": fake.url + "/login"}))
        fake.route("GET", "/login", lambda req: req.reply(200, LOGIN_PAGE, "text/html"))
        result = dcmweb(fake.url, "delete", "studies/1.2")
        methods = [(r.method, r.path) for r in fake.requests]
    assert result.exit_code == 1
    assert "302" in lines(result.stderr)[-1]
    assert methods == [("DELETE", "/studies/1.2")]


# -- answers lost after the work was done ---------------------------------------------------------
def test_a_lost_answer_then_404_is_deleted_not_not_found() -> None:
    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2", once(silent(0), lambda req: req.json(
            404, {"error": {"code": 404, "message": "no such study"}})))
        result = dcmweb(fake.url, "delete", "studies/1.2")
        deletes = fake.seen("DELETE")
    assert result.exit_code == 0, result.stderr
    assert len(deletes) == 2
    assert lines(result.stderr)[-1] == \
        "dcmweb: info: deleted studies/1.2 (answer lost: the server no longer has it)"


@pytest.mark.parametrize("status", [500, 503, 504])
def test_a_server_error_then_404_is_deleted_not_not_found(status: int) -> None:
    """A gateway gave up waiting (or the server failed after deleting): dcmweb resent, and
    the 404 says the first DELETE did the work. Was: exit 4, "not found"."""
    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2", once(
            lambda req: req.reply(status, b"upstream timed out", "text/plain",
                                  headers={"Retry-After": "0"}),
            lambda req: req.json(404, {"error": {"code": 404, "message": "no such study"}})))
        result = dcmweb(fake.url, "delete", "studies/1.2")
        deletes = fake.seen("DELETE")
    assert result.exit_code == 0, result.stderr
    assert len(deletes) == 2
    assert ("info: delete studies/1.2: an earlier attempt's outcome is unknown (its answer "
            "lost, or a server error), and the server no longer has it") in result.stderr
    assert lines(result.stderr)[-1] == \
        "dcmweb: info: deleted studies/1.2 (answer lost: the server no longer has it)"


def test_a_first_404_is_still_not_found() -> None:
    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2", lambda req: req.json(
            404, {"error": {"code": 404, "message": "no such study"}}))
        result = dcmweb(fake.url, "delete", "studies/1.2")
        deletes = fake.seen("DELETE")
    assert result.exit_code == 4
    assert len(deletes) == 1


def test_a_lost_answer_on_the_local_server_is_deleted(tmp_path: Path, synth: list[Path]) -> None:
    """The real thing: the server deletes the instance, then the connection drops."""
    with LocalServer(tmp_path / "store") as srv:
        with Client(srv.url) as client:
            assert {r.status for r in client.store(synth)} == {"stored"}
        study, series, sop = uids_of(synth[0])
        srv.inject_fault(after=True, method="DELETE")
        result = dcmweb(srv.url, "delete", f"studies/{study}/series/{series}/instances/{sop}")
        with Client(srv.url) as client:
            left = {row["00080018"]["Value"][0] for row in client.search("instances")}
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr)[-1].endswith("(answer lost: the server no longer has it)")
    assert sop not in left and len(left) == len(synth) - 1


# -- Orthanc: every UID of the path is checked ----------------------------------------------------
def test_orthanc_delete_checks_every_uid_of_the_path(orthanc: Orthanc, synth: list[Path]) -> None:
    with Client(orthanc.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    first, other = synth[0], next(p for p in synth if uids_of(p)[0] != uids_of(synth[0])[0])
    study, series, sop = uids_of(first)
    other_study, other_series, _ = uids_of(other)

    def left() -> set[str]:
        with Client(orthanc.url) as client:
            return {row["00080018"]["Value"][0] for row in client.search("instances")}

    wrong = [f"studies/{other_study}/series/{series}",
             f"studies/{study}/series/{other_series}/instances/{sop}",
             f"studies/{other_study}/series/{series}/instances/{sop}",
             f"studies/{study}/series/{series}/instances/{uids_of(other)[2]}"]
    for path in wrong:
        result = dcmweb(orthanc.url, "delete", path)
        assert result.exit_code == 4, (path, result.stderr)
        assert lines(result.stderr)[-1] == (f"dcmweb: error: delete {path} failed: not found on "
                                            "the server (check the UIDs: each must be inside "
                                            "the one before it)")
    assert len(left()) == len(synth)  # nothing deleted
    right = dcmweb(orthanc.url, "delete", f"studies/{study}/series/{series}")
    assert right.exit_code == 0, right.stderr
    remaining = left()
    assert len(remaining) == len(synth) - 2 and sop not in remaining



def test_an_orthanc_delete_whose_answer_is_lost_is_deleted(orthanc: Orthanc,
                                                            synth: list[Path]) -> None:
    """Orthanc deletes the study through its REST API, then a forwarder drops the answer:
    the resend's 404 means the first DELETE did the work, not that the study never was."""
    with Client(orthanc.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    study = uids_of(synth[0])[0]
    with http_session() as session:
        [found] = session.post(f"{orthanc.rest_url}/tools/lookup", data=study, timeout=10).json()
    with Hostile() as forwarder:
        forwarder.fallback = forward(orthanc.rest_url)
        forwarder.route("DELETE", found["Path"], once(forward(orthanc.rest_url, answer=False),
                                                      forward(orthanc.rest_url)))
        result = dcmweb(forwarder.root_url + "/dicom-web", "delete", f"studies/{study}")
        rest_deletes = forwarder.seen("DELETE", found["Path"])
    with Client(orthanc.url) as client:
        left = {row["0020000D"]["Value"][0] for row in client.search("studies")}
    assert study not in left and len(left) == 1
    assert len(rest_deletes) == 2
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr)[-1] == \
        f"dcmweb: info: deleted studies/{study} (answer lost: the server no longer has it)"


@pytest.mark.parametrize(("lookup", "shown"), [
    (LOGIN_PAGE, "delete studies/1.2/series/3.4: look up 3.4"),
    (b'[{"Type": "Series", "Path": "/series/abc"}]', "look up /series/abc"),
], ids=["lookup", "resource"])
def test_an_orthanc_rest_answer_that_is_not_json_is_a_failure(lookup: bytes, shown: str) -> None:
    """A proxy's login page in the REST API was a raw JSONDecodeError ("unexpected error")."""
    def orthanc_like(req: Request) -> None:
        if req.seen.path.endswith("/system"):
            req.json(200, {"ApiVersion": 1, "DicomAet": "ORTHANC"})
        elif req.seen.path.endswith("/tools/lookup"):
            req.reply(200, lookup, "application/json")
        else:
            req.reply(200, LOGIN_PAGE, "text/html")

    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2/series/3.4", lambda req: req.reply(405))
        fake.fallback = orthanc_like
        result = dcmweb(fake.url, "delete", "studies/1.2/series/3.4")
        deletes = fake.seen("DELETE")
    assert result.exit_code == 1, result.stderr
    if lookup == LOGIN_PAGE:  # labelled application/json: a JSON answer that is not JSON
        assert lines(result.stderr)[-1] == (
            f"dcmweb: error: {shown} failed: the answer is not JSON (JSONDecodeError: starts "
            f"with {LOGIN_PAGE[:60].decode()!r}) (check HOST)")
    else:  # the page as a web page (was "the answer is not JSON (JSONDecodeError" too)
        assert lines(result.stderr)[-1] == (
            f"dcmweb: error: {shown} failed: the server answered HTTP 200 with text/html (a "
            f"web page titled \"Sign in\"), not DICOMweb data (application/json) "
            f"({HOST_HINT})")
    assert [d.path for d in deletes] == ["/studies/1.2/series/3.4"]  # nothing through REST
