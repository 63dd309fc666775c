"""dcmweb delete against answers that prove nothing (web pages, error envelopes), answers
lost after the server did the work, and Orthanc paths whose parents do not match."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request, Route, forward, once, silent, status

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


@pytest.mark.parametrize(("status", "after", "exit_code"), [
    (524, True, 1), (524, False, 1), (530, True, 1), (503, True, 5)])
def test_a_delete_a_5xx_ends_says_its_outcome_is_unknown_and_what_is_left(
        tmp_path: Path, synth: list[Path], status: int, after: bool, exit_code: int) -> None:
    """A gateway's 524 (the server took over 100 s) or 530, which dcmweb does not retry,
    or a 503 to the outage limit, after the server deleted the instance (``after``) or
    not. Old dcmweb: `delete ... failed: HTTP 524: injected fault`, though the server
    had deleted it, and no search."""
    with LocalServer(tmp_path / "store") as srv:
        with Client(srv.url) as client:
            assert {r.status for r in client.store(synth)} == {"stored"}
        study, series, sop = uids_of(synth[0])
        path = f"studies/{study}/series/{series}/instances/{sop}"
        srv.inject_fault(status, count=10**6, method="DELETE", after=after)
        result = dcmweb("--outage-limit", "1", srv.url, "delete", path)
        with Client(srv.url) as client:
            left = {row["00080018"]["Value"][0] for row in client.search("instances")}
    assert (sop in left) is not after and len(left) == len(synth) - after
    assert result.exit_code == exit_code, result.stderr
    told, found = lines(result.stderr)[-2:]
    assert told.startswith(f"dcmweb: error: delete {path}: HTTP {status}")
    assert told.endswith("injected fault; its outcome is unknown: the server may have deleted "
                         "it (search for it to see)" if status != 503 else
                         "the outage limit); its outcome is unknown: the server may have "
                         "deleted it (search for it to see)")
    assert found == (f"dcmweb: error: a search finds {'nothing' if after else '1 instance'} "
                     f"left under {path}")


@pytest.mark.parametrize("after", [True, False], ids=["deleted", "not-deleted"])
def test_a_delete_whose_answer_is_always_lost_says_its_outcome_is_unknown_and_what_is_left(
        tmp_path: Path, synth: list[Path], after: bool) -> None:
    """Every answer to the DELETE and its 3 resends lost, after the server deleted the
    instance (``after``: the first DELETE did it) or before it read any. Was: `delete
    ... failed: the answer was lost 4 times`, no search, while the server had deleted it."""
    with LocalServer(tmp_path / "store") as srv:
        with Client(srv.url) as client:
            assert {r.status for r in client.store(synth)} == {"stored"}
        study, series, sop = uids_of(synth[0])
        path = f"studies/{study}/series/{series}/instances/{sop}"
        srv.inject_fault(count=4, method="DELETE", after=after, drop=not after)
        result = dcmweb(srv.url, "delete", path)
        deletes = [r for r in srv.requests if r.method == "DELETE"]
        with Client(srv.url) as client:
            left = {row["00080018"]["Value"][0] for row in client.search("instances")}
    assert len(deletes) == 4
    assert (sop in left) is not after and len(left) == len(synth) - after
    assert result.exit_code == 5, result.stderr
    told, found = lines(result.stderr)[-2:]
    assert told == (f"dcmweb: error: delete {path}: the answer was lost 4 times; its outcome "
                    "is unknown: the server may have deleted it (search for it to see)")
    assert "failed" not in told
    assert found == (f"dcmweb: error: a search finds {'nothing' if after else '1 instance'} "
                     f"left under {path}")


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


@pytest.mark.parametrize(("deleted", "answer", "exit_code", "told"), [
    (True, "500", 0, ["dcmweb: info: deleted studies/{study} (answer lost: the server no "
                      "longer has it)"]),
    (True, "lost", 0, ["dcmweb: info: deleted studies/{study} (answer lost: the server no "
                       "longer has it)"]),
    (False, "500", 1, ["dcmweb: error: delete studies/{study} failed: HTTP 500 Internal "
                       "Server Error: injected (after 3 attempts)"]),
    (False, "lost", 5, ["dcmweb: error: delete studies/{study} failed: the answer was lost 4 "
                        "times (the server is overloaded or down; try again later)"]),
    (True, "500, then the check 500", 1, [
        "dcmweb: error: delete studies/{study}: HTTP 500 Internal Server Error (after 3 "
        "attempts); its outcome is unknown: the server may have deleted it (search "
        "for it to see)", "dcmweb: error: a search finds nothing left under studies/{study}"]),
], ids=["500-deleted", "lost-deleted", "500-kept", "lost-kept", "unknown"])
def test_an_orthanc_delete_whose_outcome_is_unknown_is_settled_by_asking_orthanc(
        orthanc: Orthanc, synth: list[Path], deleted: bool, answer: str, exit_code: int,
        told: list[str]) -> None:
    """Orthanc's REST DELETE is answered 500 every time, or its answer lost 4 times,
    after Orthanc deleted the study (``deleted``: a forwarder passes it on first) or
    without it. Orthanc is asked for the study then: gone, it was deleted; held, the
    delete failed; that check failing too, the outcome is unknown. Was: `failed`
    (exit 1, or 5 when lost) with no check, while Orthanc had deleted the study."""
    with Client(orthanc.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    study = uids_of(synth[0])[0]
    with http_session() as session:
        [found] = session.post(f"{orthanc.rest_url}/tools/lookup", data=study, timeout=10).json()
    injected = {"lost": forward(orthanc.rest_url, answer=False) if deleted else silent(0)}.get(
        answer, forward(orthanc.rest_url, answer_status=500) if deleted
        else status(500, body=b"injected"))
    with Hostile() as forwarder:
        forwarder.fallback = forward(orthanc.rest_url)
        forwarder.route("DELETE", found["Path"], injected)
        if answer.endswith("the check 500"):  # the lookup's check passes, the later fails
            forwarder.route("GET", found["Path"], once(forward(orthanc.rest_url),
                                                       status(500, body=b"injected")))
        result = dcmweb(forwarder.root_url + "/dicom-web", "delete", f"studies/{study}")
        rest_deletes = forwarder.seen("DELETE", found["Path"])
    with http_session() as session:
        held = session.get(orthanc.rest_url + found["Path"], timeout=10).status_code
    assert (held, len(rest_deletes)) == (404 if deleted else 200, 4 if answer == "lost" else 3)
    assert result.exit_code == exit_code, result.stderr
    assert lines(result.stderr)[-len(told):] == [line.format(study=study) for line in told]


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


# -- Orthanc: the REST paths come from the server, and must stay on HOST's server ----------------
def orthanc_like(lookup: list[dict[str, str]]) -> Callable[[Request], None]:
    """Orthanc's REST API as far as a delete needs it, with the lookup answer given."""
    def answer(req: Request) -> None:
        path = req.seen.path
        if path.endswith("/system"):
            req.json(200, {"ApiVersion": 18, "DicomAet": "ORTHANC"})
        elif path.endswith("/tools/lookup"):
            req.json(200, lookup)
        elif req.seen.method == "GET":
            req.json(200, {"MainDicomTags": {"StudyInstanceUID": "1.2.3"}})
        else:
            req.json(200, {})
    return answer


@pytest.mark.parametrize("path", [
    "@127.0.0.1:{port}/studies/5e1",  # HOST's authority would become userinfo
    ".evil.example/studies/5e1",
    "//127.0.0.1:{port}/studies/5e1",
    "/studies/5e1/../../../x",
    "/series/5e1",  # not a study
    "/studies/not-hex",
], ids=["userinfo", "host-suffix", "scheme-relative", "dot-dot", "level", "id"])
def test_an_orthanc_path_that_could_leave_host_is_refused(path: str) -> None:
    """Was: `f"{root}{Path}"` sent the token, the -H headers and a DELETE to another host,
    and said "deleted" (exit 0)."""
    with Hostile() as other, Hostile() as fake:
        other.fallback = orthanc_like([])
        lookup = [{"Type": "Study", "ID": "5e1", "Path": path.format(port=other.port)}]
        fake.fallback = orthanc_like(lookup)
        fake.route("DELETE", "/dicom-web/studies/1.2.3", lambda req: req.reply(405))
        result = dcmweb("--token", "SecretTok123", "-H", "X-Api-Key: KeyVal98765",
                        fake.root_url + "/dicom-web", "delete", "studies/1.2.3")
        elsewhere = other.seen()
        sent = [(r.method, r.path) for r in fake.seen()]
    assert elsewhere == []
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1].startswith(
        "dcmweb: error: delete studies/1.2.3: look up 1.2.3: the server named the study ")
    assert "not an Orthanc study path on HOST's server; nothing was deleted" in result.stderr
    assert sent == [("DELETE", "/dicom-web/studies/1.2.3"), ("GET", "/system"),
                    ("POST", "/tools/lookup")]


def test_the_orthanc_root_of_a_host_without_a_path_is_that_host() -> None:
    """Was: `http://127.0.0.1:PORT`.rsplit("/") gave `http:/`, and the token went to
    `http://system/` (any host named `system` on the search domains)."""
    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2.3", lambda req: req.reply(405))
        result = dcmweb("--token", "SecretTok123", "--outage-limit", "1", fake.root_url,
                        "delete", "studies/1.2.3")
        sent = [(r.method, r.path) for r in fake.seen()]
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1] == ("dcmweb: error: delete studies/1.2.3: the server does "
                                        "not support DICOMweb DELETE (HTTP 405)")
    assert sent == [("DELETE", "/studies/1.2.3"), ("GET", "/system")]


@pytest.fixture
def one_study_two_patients(tmp_path: Path, orthanc: Orthanc, synth: list[Path]
                           ) -> tuple[str, list[str]]:
    """One Study Instance UID under two patients: two Orthanc studies (their REST paths)."""
    other = pydicom.dcmread(synth[1])
    other.StudyInstanceUID = uids_of(synth[0])[0]
    other.PatientID = "OTHERPAT"
    other.save_as(tmp_path / "other.dcm")
    with Client(orthanc.url) as client:
        assert {r.status for r in client.store([synth[0], tmp_path / "other.dcm"])} == \
            {"stored"}
    study = uids_of(synth[0])[0]
    with http_session() as session:
        found = session.post(f"{orthanc.rest_url}/tools/lookup", data=study, timeout=10).json()
    assert len(found) == 2
    return study, [match["Path"] for match in found]


@pytest.mark.parametrize(("second", "exit_code", "last_line"), [
    (status(500, body=b"injected"), 6, "dcmweb: error: delete studies/{study}: deleted 1 of 2 "
     "Orthanc resources under it; 1 not deleted: delete studies/{study} failed: HTTP 500 "
     "Internal Server Error: injected (after 3 attempts) (the server holds part of "
     "studies/{study}: delete it again for the rest (a search shows what is left))"),
    (status(400, body=b"injected"), 6, "dcmweb: error: delete studies/{study}: deleted 1 of 2 "
     "Orthanc resources under it; 1 not deleted: delete studies/{study} failed: HTTP 400 Bad "
     "Request: injected (the server holds part of studies/{study}: delete it again for the "
     "rest (a search shows what is left))"),
    (lambda req: req.json(404, {}), 0, "dcmweb: info: deleted studies/{study}"),
    ("500 after the work", 0, "dcmweb: info: deleted studies/{study} (answer lost: the "
     "server no longer has it)"),
    ("500 after the work, then the check 500", 6, "dcmweb: error: delete studies/{study}: "
     "deleted 1 of 2 Orthanc resources under it; 1 not known to be deleted: delete "
     "studies/{study}: HTTP 500 Internal Server Error (after 3 attempts); its outcome is "
     "unknown: the server may have deleted it (the server may hold part of studies/{study}: "
     "delete it again for the rest (a search shows what is left))\n"
     "dcmweb: error: a search finds nothing left under studies/{study}"),
], ids=["500", "400", "404", "500-deleted", "unknown"])
def test_an_orthanc_delete_that_fails_half_way_says_what_it_deleted(
        orthanc: Orthanc, one_study_two_patients: tuple[str, list[str]],
        second: Route | str, exit_code: int, last_line: str) -> None:
    """Was: exit 1 (or 2, or 4 "not found") and nothing said that one of the two Orthanc
    studies was deleted. A 404 for what the lookup just listed: it is gone. A 500 after
    Orthanc deleted the second (a forwarder passes it on first) is settled by asking
    Orthanc for it; was: `1 not deleted: ... HTTP 500`, exit 6, and both were deleted."""
    study, (first, other) = one_study_two_patients
    with Hostile() as forwarder:
        forwarder.fallback = forward(orthanc.rest_url)
        if isinstance(second, str):
            forwarder.route("DELETE", other, forward(orthanc.rest_url, answer_status=500))
            if second.endswith("the check 500"):  # the lookup's check passes, the later fails
                forwarder.route("GET", other, once(forward(orthanc.rest_url),
                                                   status(500, body=b"injected")))
        else:
            forwarder.route("DELETE", other, second)
        result = dcmweb(forwarder.root_url + "/dicom-web", "delete", f"studies/{study}")
    with http_session() as session:
        held = {path: session.get(orthanc.rest_url + path, timeout=10).status_code
                for path in (first, other)}
    assert result.exit_code == exit_code, result.stderr
    told = last_line.format(study=study).splitlines()
    assert lines(result.stderr)[-len(told):] == told
    # The fake's 404, 500 or 400 kept the other one; a forwarded DELETE did not.
    assert held == {first: 404, other: 404 if isinstance(second, str) else 200}
