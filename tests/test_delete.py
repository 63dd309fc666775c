"""dcmweb delete: Google's long-running operations polled to the end, instances at once,
errors and timeouts with their exit codes, and Orthanc through its REST API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import DATASET, Hostile, Request

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines
from dcmweb_devtools.orthanc import Orthanc
from dcmweb_devtools.procs import http_session
from dcmweb_devtools.tinypacs import TinyPacs


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def uids_of(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


pytestmark = pytest.mark.usefixtures("quick_operation_polls")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """12 instances: 2 studies x 2 series x 3 instances."""
    return corpus.synthetic_files(tmp_path_factory.mktemp("synth"), 12, studies=2,
                                  series_per_study=2)


def start(tmp_path: Path, synth: list[Path], delete_delay: float) -> LocalServer:
    srv = LocalServer(tmp_path / "store", delete_delay=delete_delay).start()
    with Client(srv.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    srv.clear_requests()
    return srv


@pytest.fixture
def gcp(tmp_path: Path, synth: list[Path]) -> Iterator[LocalServer]:
    srv = start(tmp_path, synth, delete_delay=0.4)
    try:
        yield srv
    finally:
        srv.stop()


def sops(url: str) -> set[str]:
    with Client(url) as client:
        return {row["00080018"]["Value"][0] for row in client.search("instances")}


def operation_gets(srv: LocalServer) -> list[str]:
    return [r.path for r in srv.requests if r.method == "GET" and "/operations/" in r.path]


# -- Google-like server -----------------------------------------------------------------------
def test_study_delete_polls_the_operation_until_done(gcp: LocalServer,
                                                     synth: list[Path]) -> None:
    study = uids_of(synth[0])[0]
    result = dcmweb(gcp.url, "delete", f"studies/{study}")
    assert result.exit_code == 0, result.stderr
    assert f"deleted studies/{study} (6 instances)" in result.stderr
    assert result.stdout == ""
    [delete] = [r for r in gcp.requests if r.method == "DELETE"]
    assert delete.path.endswith(f"/dicomWeb/studies/{study}")
    polls = operation_gets(gcp)
    assert len(polls) >= 2  # still running at first (0.4 s), then done
    # Polled at the API root, where Google serves operations, not under /dicomWeb.
    assert all(p.startswith("/v1/projects/demo/locations/local/datasets/ds/operations/")
               for p in polls)
    assert len(set(polls)) == 1
    left = {p for p in synth if uids_of(p)[0] != study}
    assert sops(gcp.url) == {uids_of(p)[2] for p in left}


def test_series_delete(gcp: LocalServer, synth: list[Path]) -> None:
    study, series, _ = uids_of(synth[0])
    result = dcmweb(gcp.url, "delete", f"studies/{study}/series/{series}")
    assert result.exit_code == 0, result.stderr
    assert "(3 instances)" in result.stderr
    assert operation_gets(gcp)
    assert sops(gcp.url) == {uids_of(p)[2] for p in synth if uids_of(p)[1] != series}


def test_instance_delete_is_immediate(gcp: LocalServer, synth: list[Path]) -> None:
    study, series, sop = uids_of(synth[0])
    with Client(gcp.url) as client:
        result = client.delete(f"studies/{study}/series/{series}/instances/{sop}")
    assert result.operation is None
    assert operation_gets(gcp) == []
    assert [r.method for r in gcp.requests] == ["DELETE"]
    assert sops(gcp.url) == {uids_of(p)[2] for p in synth[1:]}


def test_not_found_is_exit_4(gcp: LocalServer) -> None:
    result = dcmweb(gcp.url, "delete", "studies/1.2.3.404")
    assert result.exit_code == 4
    assert "HTTP 404" in result.stderr
    assert operation_gets(gcp) == []


def test_timeout_is_exit_5_and_names_the_operation(tmp_path: Path, synth: list[Path]) -> None:
    srv = start(tmp_path, synth, delete_delay=30)
    try:
        study = uids_of(synth[0])[0]
        result = dcmweb(srv.url, "delete", f"studies/{study}", "--timeout", "1")
        [delete] = [r for r in srv.requests if r.method == "DELETE"]
        polls = operation_gets(srv)
    finally:
        srv.stop()
    assert result.exit_code == 5
    assert "still running after 1 s" in result.stderr
    operation_id = polls[0].rsplit("/", 1)[1]
    assert f"operations/{operation_id}" in result.stderr
    assert delete.status == 200
    assert len(polls) >= 2


@pytest.mark.parametrize("path", ["", "/", "studies", "series/1.2", "studies/1.2/instances/3",
                                  "studies/1.2/series/../..", "studies/1/series/2/instances/3/x"])
def test_invalid_path_is_exit_2(gcp: LocalServer, path: str) -> None:
    result = dcmweb(gcp.url, "delete", path)
    assert result.exit_code == 2
    assert "invalid path" in result.stderr
    assert gcp.requests == []
    # Old dcmweb: 'studies' got 'studies/UID[/series/UID[/instances/UID]]]' (three ']').
    assert "(expected studies/UID[/series/UID[/instances/UID]])" in result.stderr


def test_missing_path_is_exit_2(gcp: LocalServer) -> None:
    result = dcmweb(gcp.url, "delete")
    assert result.exit_code == 2
    assert gcp.requests == []


# -- operations no test server ends that way ---------------------------------------------------
def operation_server(fake: Hostile, answers: list[dict]) -> str:
    """DELETE studies/1.2 starts operation 42; each poll gets the next answer (the last
    one repeats)."""
    name = f"{DATASET}/operations/42"
    fake.route("DELETE", "/studies/1.2", lambda req: req.json(200, {"name": name}))
    polls = iter(answers)
    last: list[dict] = []

    def poll(req: Request) -> None:
        answer = next(polls, None)
        if answer is None:
            answer = last[-1]
        last.append(answer)
        req.json(200, {"name": name, **answer})

    fake.route("GET", f"/v1/{name}", poll)
    return name


def test_operation_done_with_error_is_exit_1() -> None:
    with Hostile() as fake:
        name = operation_server(fake, [
            {"metadata": {"counter": {"success": "1", "pending": "4"}}},
            {"done": False},
            {"done": True, "metadata": {"counter": {"success": "2", "failure": "3"}},
             "error": {"code": 13, "message": "3 instances could not be deleted"}},
        ])
        result = dcmweb(fake.url, "delete", "studies/1.2")
        polls = fake.seen("GET")
    assert result.exit_code == 1
    assert "3 instances could not be deleted" in result.stderr
    assert name in result.stderr
    assert len(polls) == 3
    assert result.stdout == ""


def test_operation_done_with_instances_pending_is_exit_1() -> None:
    """Old dcmweb: "deleted studies/1.2 (0 instances)", exit 0: the work was never done."""
    with Hostile() as fake:
        name = operation_server(fake, [{"done": True, "metadata": {"counter": {"pending": "7"}}}])
        result = dcmweb(fake.url, "delete", "studies/1.2")
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1] == (
        "dcmweb: error: delete studies/1.2 failed on the server: done with 7 instances still "
        f"pending (0 done, 0 failed, 7 pending) (operation {name})")
    assert "deleted" not in result.stderr


def test_operation_counter_as_strings() -> None:
    with Hostile() as fake:
        operation_server(fake, [{"done": True, "response": {},
                                 "metadata": {"counter": {"success": "17"}}}])
        result = dcmweb(fake.url, "delete", "studies/1.2")
    assert result.exit_code == 0, result.stderr
    assert "deleted studies/1.2 (17 instances)" in result.stderr


def test_operation_poll_retries_a_503() -> None:
    with Hostile() as fake:
        name = operation_server(fake, [{"done": True, "response": {}}])
        calls = {"n": 0}
        original = fake.routes[("GET", f"/v1/{name}")]

        def flaky(req: Request) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                req.reply(503, b"busy", "text/plain")
            else:
                original(req)

        fake.route("GET", f"/v1/{name}", flaky)
        with Client(fake.url, backoff=0.01) as client:
            result = client.delete("studies/1.2")
    assert result.operation == name
    assert calls["n"] == 2


# -- Orthanc (REST fallback) and tiny-pacs (no delete) ------------------------------------------
def orthanc_studies(orthanc: Orthanc) -> list[str]:
    with http_session() as s:
        response = s.get(orthanc.rest_url + "/studies", timeout=10)
    response.raise_for_status()
    return response.json()


def test_orthanc_delete_through_rest(orthanc: Orthanc, synth: list[Path]) -> None:
    with Client(orthanc.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    studies = sorted({uids_of(p)[0] for p in synth})
    assert len(orthanc_studies(orthanc)) == 2
    study, series, sop = uids_of(next(p for p in synth if uids_of(p)[0] == studies[1]))

    instance = dcmweb(orthanc.url, "delete", f"studies/{study}/series/{series}/instances/{sop}")
    assert instance.exit_code == 0, instance.stderr
    assert orthanc.instance_count() == 11
    first = dcmweb(orthanc.url, "delete", f"studies/{studies[0]}")
    assert first.exit_code == 0, first.stderr
    assert sops(orthanc.url) == {uids_of(p)[2] for p in synth
                                 if uids_of(p)[0] == studies[1] and uids_of(p)[2] != sop}
    second = dcmweb(orthanc.url, "delete", f"studies/{studies[1]}")
    assert second.exit_code == 0, second.stderr
    assert orthanc_studies(orthanc) == []
    again = dcmweb(orthanc.url, "delete", f"studies/{studies[1]}")
    assert again.exit_code == 4
    assert "not found" in again.stderr


@pytest.mark.parametrize(("path", "hint"), [
    ("studies/1.2.3.999", "check the UID"),
    ("studies/1.2.3.999/series/1.2.3.998", "check the UIDs: each must be inside the one before it"),
])
def test_orthanc_not_found_hint_fits_the_path(orthanc_session: Orthanc, path: str,
                                               hint: str) -> None:
    """Old dcmweb: 'each must be inside the one before it' for a study alone too."""
    result = dcmweb(orthanc_session.url, "delete", path)
    assert result.exit_code == 4, result.stderr
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: delete {path} failed: not found on the server ({hint})")


def test_server_without_delete_is_exit_1(tinypacs: TinyPacs) -> None:
    """tiny-pacs answers 405 and is not Orthanc: no fallback, a clear failure."""
    result = dcmweb(tinypacs.url, "delete", "studies/1.2")
    assert result.exit_code == 1
    assert "does not support DICOMweb DELETE (HTTP 405)" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("flags", [[], ["--no-wait"]])
@pytest.mark.parametrize("name", ["../../../evil", "projects/p/../../x", "/etc/passwd",
                                  "projects/p operations", f"{DATASET}/operations/1\nrm -rf"])
def test_odd_operation_name_is_not_polled_nor_printed(name: str, flags: list[str]) -> None:
    """The name becomes a URL on the same host: a hostile one must not reach other paths;
    printed by --no-wait, a line break would make two lines of stdout."""
    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2", lambda req: req.json(200, {"name": name}))
        result = dcmweb(fake.url, "delete", "studies/1.2", *flags)
        methods = [r.method for r in fake.requests]
    assert result.exit_code == 1
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: delete studies/1.2: the server started an operation with an odd "
        f"name {name!r}; it was not followed")
    assert result.stdout == ""
    assert methods == ["DELETE"]


def test_operation_with_a_string_done_is_not_done() -> None:
    """"done": "false" (a string) while instances are pending is not a finished delete."""
    with Hostile() as fake:
        operation_server(fake, [{"done": "false",
                                 "metadata": {"counter": {"success": "1", "pending": "3"}}}])
        result = dcmweb(fake.url, "delete", "studies/1.2")
    assert result.exit_code == 1, result.stderr
    assert "\"done\" is \"false\", not true or false" in result.stderr
    assert "deleted studies/1.2" not in result.stderr


def test_the_wait_log_names_the_operation_once() -> None:
    with Hostile() as fake:
        name = operation_server(fake, [{"metadata": {"counter": {"success": "1",
                                                                 "pending": "2"}}},
                                       {"done": True}])
        result = dcmweb(fake.url, "delete", "studies/1.2")
    assert result.exit_code == 0, result.stderr
    [running] = [line for line in result.stderr.splitlines() if "still running" in line]
    assert running.endswith(f"info: delete studies/1.2: operation {name} still running: "
                            "1 done, 0 failed, 2 pending")


# -- the server accepted the delete, then its operation could not be followed -------------------
@pytest.mark.parametrize(("status", "exit_code", "said"), [
    (404, 5, "check operation {name} failed: HTTP 404 Not Found: injected fault"),
    (401, 3, "check operation {name} failed: HTTP 401 Unauthorized: injected fault"),
])
def test_a_poll_that_fails_after_the_delete_was_accepted_says_so(
        tmp_path: Path, synth: list[Path], status: int, exit_code: int, said: str) -> None:
    """Was: exit 4 `not found` with a hint about an operation name the user never gave
    (404), or `check operation ... failed: HTTP 401` as if the delete had failed, while
    the server deleted the whole study."""
    srv = start(tmp_path, synth, delete_delay=30)
    try:
        study = uids_of(synth[0])[0]
        srv.inject_fault(status, count=1000, method="GET", path_contains="operations")
        result = dcmweb(srv.url, "delete", f"studies/{study}")
        [name] = {path.removeprefix("/v1/") for path in operation_gets(srv)}
    finally:
        srv.stop()
    assert result.exit_code == exit_code, result.stderr
    error, left = lines(result.stderr)[-2:]
    assert error.startswith(
        f"dcmweb: error: delete studies/{study}: the server accepted it (operation {name}), "
        f"then {said.format(name=name)}; its outcome is unknown: it may go on on the server (")
    assert error.endswith("(the server no longer knows the operation: search later to see "
                          "what is left)" if status == 404 else
                          f"then follow it with 'dcmweb HOST operations wait {name}')")
    assert ("check the credentials" in error) == (status == 401)
    assert re.fullmatch(rf"dcmweb: error: a search finds [1-6] instances? left under "
                        rf"studies/{re.escape(study)}", left)


def test_an_error_envelope_while_polling_is_not_waited_out() -> None:
    """A gateway's JSON error where the operation should be: was polled as "still running"
    until --timeout (10 minutes by default), then "it goes on on the server", exit 5."""
    with Hostile() as fake:
        name = f"{DATASET}/operations/42"
        fake.route("DELETE", "/studies/1.2", lambda req: req.json(200, {"name": name}))
        fake.route("GET", f"/v1/{name}", lambda req: req.json(
            200, {"error": {"code": 401, "message": "session expired"}}))
        result = dcmweb(fake.url, "delete", "studies/1.2", "--timeout", "5")
        polls = fake.seen("GET", f"/v1/{name}")
    assert result.exit_code == 3, result.stderr
    assert len(polls) == 1
    assert lines(result.stderr)[-1].startswith(
        f"dcmweb: error: delete studies/1.2: the server accepted it (operation {name}), then "
        f"check operation {name}: the answer is not an operation (no operation name): "
        "session expired; its outcome is unknown")


@pytest.mark.parametrize("fault", [{"after": True}, {"cut": True}], ids=["lost", "cut"])
def test_after_a_lost_answer_the_count_is_not_taken_for_the_whole(
        tmp_path: Path, synth: list[Path], fault: dict) -> None:
    """Was: `deleted studies/S (3 instances; answer lost: ...)`: the resend's operation's
    count, while the first (unseen) operation had deleted the fourth."""
    srv = start(tmp_path, synth, delete_delay=1)
    try:
        study = uids_of(synth[0])[0]
        srv.inject_fault(method="DELETE", **fault)
        result = dcmweb(srv.url, "delete", f"studies/{study}")
        left = sops(srv.url)
    finally:
        srv.stop()
    assert result.exit_code == 0, result.stderr
    assert re.fullmatch(
        rf"dcmweb: info: deleted studies/{re.escape(study)} \(the last operation deleted "
        r"\d+ instances?; an earlier DELETE, whose answer was lost, may have deleted others\)",
        lines(result.stderr)[-1])
    assert left == {uids_of(p)[2] for p in synth if uids_of(p)[0] != study}


def test_no_wait_after_a_lost_answer_says_another_operation_may_run(
        tmp_path: Path, synth: list[Path]) -> None:
    srv = start(tmp_path, synth, delete_delay=1)
    try:
        study = uids_of(synth[0])[0]
        srv.inject_fault(method="DELETE", after=True)
        result = dcmweb(srv.url, "delete", f"studies/{study}", "--no-wait")
    finally:
        srv.stop()
    name = result.stdout.strip()
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr)[-1] == (
        f"dcmweb: info: deleting studies/{study}: operation {name} started (an earlier "
        "DELETE, whose answer was lost, may have started another)")
