"""operations get|wait and delete --no-wait, on the local GCP-like server and on answers
only a hostile fake gives (failed instances counted without an error)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import DATASET, Hostile, Request

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.errors import UsageError
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.docexamples import run_example
from dcmweb_devtools.logs import lines
from dcmweb_devtools.orthanc import Orthanc

PREFIX = "projects/demo/locations/local/datasets/ds/operations/"


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


pytestmark = pytest.mark.usefixtures("quick_operation_polls")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return corpus.synthetic_files(tmp_path_factory.mktemp("synth"), 4, studies=2)


@pytest.fixture
def gcp(tmp_path: Path, synth: list[Path]) -> Iterator[LocalServer]:
    srv = LocalServer(tmp_path / "store", delete_delay=0.5).start()
    try:
        with Client(srv.url) as client:
            assert {r.status for r in client.store(synth)} == {"stored"}
        yield srv
    finally:
        srv.stop()


def study_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def remaining(url: str) -> set[str]:
    with Client(url) as client:
        return {row["0020000D"]["Value"][0] for row in client.search("studies")}


def test_no_wait_without_an_operation_prints_nothing_and_says_it_is_done(
        gcp: LocalServer, synth: list[Path]) -> None:
    """An instance delete starts no operation: old dcmweb printed nothing and said only
    'deleted ...', so the help's `op=$(...) && operations wait "$op"` failed (exit 2)."""
    ds = pydicom.dcmread(synth[0], stop_before_pixels=True)
    path = (f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")
    result = dcmweb(gcp.url, "delete", path, "--no-wait")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert lines(result.stderr)[-1] == (
        f"dcmweb: info: deleted {path} (done at once: no operation to wait for)")


def test_the_docs_show_what_a_delete_done_at_once_says(gcp: LocalServer,
                                                      synth: list[Path]) -> None:
    """docs/usage.md showed "(done at once: ...)" for every such delete; only --no-wait
    says it (to a script that expected a name on stdout)."""
    usage = (Path(__file__).resolve().parent.parent / "docs" / "usage.md").read_text()
    section = " ".join(usage.split("\n## delete", 1)[1].split("\n## ", 1)[0].split())
    for file, flags in ((synth[0], []), (synth[1], ["--no-wait"])):
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        path = (f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}")
        result = dcmweb(gcp.url, "delete", path, *flags)
        assert result.exit_code == 0, result.stderr
        said = lines(result.stderr)[-1].removeprefix("dcmweb: info: ").replace(path, "PATH")
        assert f"stderr says `{said}`" in section, flags


def test_no_wait_prints_the_name_then_wait_follows_it(gcp: LocalServer,
                                                      synth: list[Path]) -> None:
    study = study_of(synth[0])
    result = dcmweb(gcp.url, "delete", f"studies/{study}", "--no-wait")
    assert result.exit_code == 0, result.stderr
    name = result.stdout.strip()
    assert name.startswith(PREFIX) and result.stdout == name + "\n"
    assert study in remaining(gcp.url)  # not done yet: the work goes on on the server

    got = dcmweb(gcp.url, "operations", "get", name)
    assert got.exit_code == 0, got.stderr
    operation = json.loads(got.stdout)
    assert operation["name"] == name and not operation.get("done")

    waited = dcmweb(gcp.url, "operations", "wait", name)
    assert waited.exit_code == 0, waited.stderr
    # Counters shown while it runs (the server may have moved them on already).
    assert re.search(rf"info: operation {re.escape(name)} still running: [0-2] done, 0 failed, "
                     r"[0-2] pending\n", waited.stderr)
    assert f"operation {name} done: 2 done, 0 failed, 0 pending" in waited.stderr
    assert study not in remaining(gcp.url)
    got = dcmweb(gcp.url, "operations", "get", name.rsplit("/", 1)[1])  # the ID alone
    assert json.loads(got.stdout)["done"] is True


def test_library_delete_without_waiting(gcp: LocalServer, synth: list[Path]) -> None:
    with Client(gcp.url) as client:
        result = client.delete(f"studies/{study_of(synth[1])}", wait=False)
        assert result.operation and result.counter is None
        operation = client.wait_operation(result.operation, timeout=30)
    assert operation.done and operation.counter == {"success": 2, "failure": 0, "pending": 0}


def test_wait_timeout_is_exit_5_and_says_how_to_follow(tmp_path: Path, synth: list[Path]) -> None:
    srv = LocalServer(tmp_path / "store", delete_delay=30).start()
    try:
        with Client(srv.url) as client:
            client.store(synth[:1])
            name = client.delete(f"studies/{study_of(synth[0])}", wait=False).operation
        assert name
        result = dcmweb(srv.url, "operations", "wait", name, "--timeout", "1")
    finally:
        srv.stop()
    assert result.exit_code == 5
    assert f"operations wait {name}" in result.stderr


def test_unknown_operation_is_exit_4(gcp: LocalServer) -> None:
    result = dcmweb(gcp.url, "operations", "get", f"{PREFIX}nosuch")
    assert result.exit_code == 4


def test_failed_instances_counted_make_a_failure_even_without_an_error() -> None:
    name = f"{DATASET}/operations/7"
    answers = [{"metadata": {"counter": {"success": "1", "pending": "2"}}},
               {"done": True, "response": {},
                "metadata": {"counter": {"success": "2", "failure": "1"}}}]

    def poll(req: Request) -> None:
        req.json(200, {"name": name, **(answers.pop(0) if len(answers) > 1 else answers[0])})

    with Hostile() as fake:
        fake.route("GET", f"/v1/{name}", poll)
        result = dcmweb(fake.url, "operations", "wait", "7")
    assert result.exit_code == 1
    assert "1 instance failed" in result.stderr
    assert "1 done, 0 failed, 2 pending" in result.stderr


def test_a_done_operation_with_instances_pending_is_a_failure() -> None:
    name = f"{DATASET}/operations/7"
    with Hostile() as fake:
        fake.route("GET", f"/v1/{name}", lambda req: req.json(200, {
            "name": name, "done": True, "metadata": {"counter": {"success": "2",
                                                                 "pending": "1"}}}))
        result = dcmweb(fake.url, "operations", "wait", "7")
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: operation {name} failed on the server: done with 1 instance still "
        f"pending (2 done, 0 failed, 1 pending) (operation {name})")


@pytest.mark.parametrize("command", ["get", "wait"])
@pytest.mark.parametrize("name", ["../x", "projects/p/../../x", "/etc/passwd", "", "a b",
                                  "https://evil/x", "x\ny"])
def test_odd_names_on_the_command_line_are_usage_errors(command: str, name: str) -> None:
    """A name the user typed is bad input (exit 2), and never requested."""
    with Hostile() as fake:
        result = dcmweb(fake.url, "operations", command, name)
        assert result.exit_code == 2, result.stderr
        assert lines(result.stderr)[-1].startswith(f"dcmweb: error: odd operation name {name!r}")
        assert fake.requests == []


@pytest.mark.parametrize("command", ["get", "wait"])
@pytest.mark.parametrize("name", ["7", f"{DATASET}/operations/7"])
def test_a_host_that_cannot_serve_operations_is_a_usage_error(
        orthanc_session: Orthanc, command: str, name: str) -> None:
    """Orthanc's HOST has no API version to find an operation under: the ID alone was
    exit 2, the full name exit 1 (a 'server error' before any request)."""
    result = dcmweb(orthanc_session.url, "operations", command, name)
    assert result.exit_code == 2, result.stderr
    [line] = lines(result.stderr)
    assert line.startswith(f"dcmweb: error: operation {name!r} ")
    with Client(orthanc_session.url) as client, pytest.raises(UsageError):
        client.operation(name)


@pytest.mark.parametrize("done", ["false", "true", 1, None, {}])
def test_done_that_is_not_a_boolean_is_a_server_error(done: object) -> None:
    """Only JSON true is done: "false" (a string) must not end the wait as a success."""
    name = f"{DATASET}/operations/7"
    with Hostile() as fake:
        fake.route("GET", f"/v1/{name}", lambda req: req.json(200, {
            "name": name, "done": done,
            "metadata": {"counter": {"success": "1", "pending": "3"}}}))
        result = dcmweb(fake.url, "operations", "wait", "7")
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: check operation {name}: \"done\" is {json.dumps(done)}, not true or "
        "false (the answer is not an operation)")


@pytest.mark.parametrize("failure", ["abc", [1], 1.5, -2, "²"])
def test_a_counter_that_is_not_a_count_is_a_server_error(failure: object) -> None:
    """Old dcmweb read an unreadable failure count as 0: the operation "succeeded"."""
    name = f"{DATASET}/operations/7"
    with Hostile() as fake:
        fake.route("GET", f"/v1/{name}", lambda req: req.json(200, {
            "name": name, "done": True,
            "metadata": {"counter": {"success": "1", "failure": failure}}}))
        result = dcmweb(fake.url, "operations", "wait", "7")
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: check operation {name}: the counter's \"failure\" is "
        f"{json.dumps(failure, ensure_ascii=False)}, not a count (the answer is not an "
        "operation)")


def test_an_id_alone_needs_a_google_shaped_host() -> None:
    result = dcmweb("http://127.0.0.1:9/dicom-web", "operations", "get", "123")
    assert result.exit_code == 2
    assert "full name" in result.stderr


def test_docs_example_runs(gcp: LocalServer, synth: list[Path]) -> None:
    name = dcmweb(gcp.url, "delete", f"studies/{study_of(synth[0])}", "--no-wait").stdout.strip()
    result = run_example("dcmweb HOST operations wait 123 --timeout 3600", gcp.url,
                         {"123": name.rsplit("/", 1)[1]})
    assert result.exit_code == 0, result.stderr


def test_wait_timeout_holds_against_a_long_retry_after(gcp: LocalServer, synth: list[Path]
                                                      ) -> None:
    """Was: every poll answered 503 with Retry-After: 100 kept `operations wait --timeout 3`
    retrying until the outage limit (300 s)."""
    with Client(gcp.url) as client:
        name = client.delete(f"studies/{study_of(synth[0])}", wait=False).operation
    assert name
    gcp.inject_fault(503, count=500, retry_after="100", path_contains="operations",
                     method="GET")
    started = time.monotonic()
    result = dcmweb(gcp.url, "operations", "wait", name, "--timeout", "3")
    assert time.monotonic() - started < 5
    assert result.exit_code == 5, result.stderr
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: check operation {name} failed: HTTP 503 Service Unavailable: injected"
        " fault (the server asks to wait 100 s (Retry-After), past the wait's timeout (3 s))"
        f" (it goes on on the server; follow it with 'dcmweb HOST operations wait {name}' or"
        " raise --timeout)")


@pytest.mark.parametrize(("error", "exit_code"), [
    ({}, 0), ({"code": 0, "message": ""}, 0), ({"code": 0}, 0),
    ({"code": 9, "message": ""}, 1), ({"code": 13, "message": "boom"}, 1),
    ({"message": "boom"}, 1)])
def test_an_error_is_a_failure_only_with_a_code_that_is_not_ok(error: dict, exit_code: int
                                                              ) -> None:
    """google.rpc.Status code 0 is OK. Was: `{}` a success but `{"code": 0, "message": ""}`
    a failure. A message without a code still reports a failure."""
    name = f"{DATASET}/operations/7"
    with Hostile() as fake:
        fake.route("GET", f"/v1/{name}", lambda req: req.json(
            200, {"name": name, "done": True, "error": error}))
        result = dcmweb(fake.url, "operations", "wait", "7")
    assert result.exit_code == exit_code, result.stderr


def test_an_operation_that_vanishes_while_waited_for_says_so(gcp: LocalServer) -> None:
    """Was: exit 4 with the hint to check the UIDs in the path, which has none."""
    result = dcmweb(gcp.url, "operations", "wait", f"{PREFIX}nosuch")
    assert result.exit_code == 4
    assert lines(result.stderr)[-1].startswith(
        f"dcmweb: error: check operation {PREFIX}nosuch failed: HTTP 404")
    assert lines(result.stderr)[-1].endswith(
        "(no such operation: check its name, and that HOST is the store it ran in)")


@pytest.mark.parametrize(("answer", "exit_code", "shown"), [
    ({"error": {"code": 401, "message": "login required"}}, 3,
     "(no operation name): login required (check the credentials"),
    ({"error": "session expired"}, 1, "(no operation name): session expired"),
    ({}, 1, "(no operation name)"),
    ({"name": f"{DATASET}/operations/7", "error": {"code": 403, "message": "denied"}}, 3,
     "(an error, and not done): denied (check the credentials"),
    ({"name": f"{DATASET}/operations/7", "done": False, "error": {"code": 13,
                                                                  "message": "x"}}, 1,
     "(an error, and not done): x"),
    # Was exit 0 ("deleted" after a delete): another operation's "done" taken as this one's.
    ({"name": f"{DATASET}/operations/8", "done": True}, 1,
     f"(it is operation '{DATASET}/operations/8')"),
], ids=["envelope-401", "envelope-text", "empty", "named-403", "not-done-error",
        "another-operation"])
@pytest.mark.parametrize("command", ["get", "wait"])
def test_an_answer_that_is_not_an_operation_is_refused_at_once(
        command: str, answer: dict, exit_code: int, shown: str) -> None:
    """A gateway's error envelope: was exit 0 for `get` (printed as the operation), and
    polled as "still running" by `wait` until --timeout (then exit 5)."""
    name = f"{DATASET}/operations/7"
    with Hostile() as fake:
        fake.route("GET", f"/v1/{name}", lambda req: req.json(200, answer))
        started = time.monotonic()
        result = dcmweb(fake.url, "operations", command, "7", *(
            ["--timeout", "5"] if command == "wait" else []))
        polls = len(fake.seen("GET"))
    assert result.exit_code == exit_code, result.stderr
    assert result.stdout == ""
    assert lines(result.stderr)[-1].startswith(
        f"dcmweb: error: check operation {name}: the answer is not an operation {shown}")
    assert polls == 1 and time.monotonic() - started < 3
