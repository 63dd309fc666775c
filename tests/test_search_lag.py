"""What dcmweb reports when searches lag behind deletes, as Google's do for a few seconds
(a deleted instance still shows in searches; a retrieve answers 404 at once), against
the test server's --search-lag: each report is set beside what the server holds (its
index, not a search)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pydicom
import pytest
from click.testing import CliRunner, Result

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.paths import ResourcePath
from dcmweb.served import served
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

LAG = 2.0  # longer than any test below takes from its delete to its last search


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def lagging(tmp_path: Path, quick_operation_polls: None) -> Iterator[LocalServer]:
    with LocalServer(tmp_path / "store", delete_delay=0.1, search_lag=LAG) as server:
        yield server


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """Four instances: two studies of one series, two instances each."""
    return sorted(corpus.synthetic_files(tmp_path / "in", 4, studies=2, seed="lag"),
                  key=lambda path: uids(path))


def uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def held(server: LocalServer) -> set[str]:
    """The SOP Instance UIDs the server holds: its index, not a search."""
    return {row["sop_uid"] for row in server.store.query("SELECT sop_uid FROM instances")}


def listed(server: LocalServer) -> set[str]:
    """The SOP Instance UIDs a search finds."""
    result = run(server.url, "search", "instances", "--format", "uids")
    assert result.exit_code == 0, result.stderr
    return set(result.stdout.split())


def report(path: Path) -> dict[str, tuple[str, str | None]]:
    """File name -> (status, message) of a --report JSONL."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {Path(row["path"]).name: (row["status"], row["message"]) for row in rows}


def delete_study(server: LocalServer, path: Path) -> None:
    """Delete the file's study with dcmweb; a search still lists it (the lag is on)."""
    study = uids(path)[0]
    result = run(server.url, "delete", f"studies/{study}", "--yes")
    assert result.exit_code == 0, result.stderr
    assert uids(path)[2] in listed(server) - held(server)


# -- store ---------------------------------------------------------------------------------
def test_skip_existing_right_after_a_delete_sends_what_the_server_no_longer_holds(
        lagging: LocalServer, files: list[Path], tmp_path: Path) -> None:
    """Was: '0 files; 4 already stored', exit 0, and the server held 2 of the 4."""
    assert run(lagging.url, "store", str(tmp_path / "in")).exit_code == 0
    delete_study(lagging, files[0])
    result = run(lagging.url, "store", str(tmp_path / "in"), "--skip-existing",
                 "--report", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr)[-1].endswith("in 2 files; 2 already stored")
    skipped = ("already stored", "already on the server (--skip-existing)")
    assert report(tmp_path / "r.jsonl") == {
        files[0].name: ("stored", None), files[1].name: ("stored", None),
        files[2].name: skipped, files[3].name: skipped}
    assert held(lagging) == {uids(path)[2] for path in files}


def test_verify_journal_right_after_a_delete_sends_again_what_the_server_lost(
        lagging: LocalServer, files: list[Path], tmp_path: Path) -> None:
    """Was: '0 files; 4 already stored', exit 0, and the server held 2 of the 4."""
    journal = str(tmp_path / "j.db")
    assert run(lagging.url, "store", str(tmp_path / "in"), "--journal", journal).exit_code == 0
    delete_study(lagging, files[0])
    result = run(lagging.url, "store", str(tmp_path / "in"), "--journal", journal,
                 "--verify-journal")
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr)[-1].endswith(
        "in 2 files; 2 already stored, 2 sent again (stored by an earlier run, gone from "
        "the server)")
    assert held(lagging) == {uids(path)[2] for path in files}


@pytest.fixture
def conflict(lagging: LocalServer, files: list[Path], tmp_path: Path) -> Path:
    """A file whose UIDs the server holds with other bytes (files[0] is held)."""
    assert run(lagging.url, "store", str(files[0])).exit_code == 0
    ds = pydicom.dcmread(files[0])
    ds.PatientName = "Conflict^Copy"
    (tmp_path / "new").mkdir()
    ds.save_as(tmp_path / "new" / "c0.dcm", enforce_file_format=True)
    lagging.clear_requests()
    return tmp_path / "new" / "c0.dcm"


def patient_names(server: LocalServer) -> list[str]:
    return [row["patient_name"] for row in server.store.query(
        "SELECT patient_name FROM instances")]


def overwrite(server: LocalServer, path: Path, tmp_path: Path) -> Result:
    return run(server.url, "store", str(path), "--on-conflict", "overwrite",
               "--report", str(tmp_path / "r.jsonl"))


def test_overwrite_whose_delete_fails_after_it_was_done_stores_the_file(
        lagging: LocalServer, conflict: Path, tmp_path: Path) -> None:
    """The DELETE is done, then answered 400 (a proxy's error after the server's work):
    a search still lists the deleted instance. Was: 'could not delete the server's
    conflicting instance (it still holds it)', exit 1, and the server held neither copy."""
    lagging.inject_fault(400, after=True, method="DELETE")
    result = overwrite(lagging, conflict, tmp_path)
    assert result.exit_code == 0, result.stderr
    assert report(tmp_path / "r.jsonl") == {
        "c0.dcm": ("stored", "replaced the server's conflicting instance")}
    assert patient_names(lagging) == ["Conflict^Copy"]


def test_overwrite_whose_store_answer_is_lost_after_the_delete_sends_the_file_again(
        lagging: LocalServer, conflict: Path, tmp_path: Path) -> None:
    """Regression: the store after the delete is dropped before the server reads it; the
    search that follows lists the deleted copy, whose read-back answers 404: the file is
    sent again, not taken for stored."""
    lagging.inject_fault(method="POST")  # the first store, refused as a conflict: as it is
    lagging.inject_fault(drop=True, method="POST")  # the store after the delete
    result = overwrite(lagging, conflict, tmp_path)
    assert result.exit_code == 0, result.stderr
    assert report(tmp_path / "r.jsonl") == {
        "c0.dcm": ("stored", "replaced the server's conflicting instance")}
    assert patient_names(lagging) == ["Conflict^Copy"]
    assert [r.method for r in lagging.requests if r.method != "GET"] == [
        "POST", "DELETE", "POST", "POST"]


# -- retrieve ------------------------------------------------------------------------------
@pytest.fixture
def deleted(lagging: LocalServer, files: list[Path], tmp_path: Path) -> Path:
    """files[0] and [1] stored, then their study deleted: a search still lists them."""
    assert run(lagging.url, "store", str(files[0]), str(files[1])).exit_code == 0
    delete_study(lagging, files[0])
    return files[0]


def instance_path(path: Path) -> str:
    study, series, sop = uids(path)
    return f"studies/{study}/series/{series}/instances/{sop}"


@pytest.mark.parametrize("below", ["metadata", "instance metadata", "frames/1", "rendered"])
def test_what_is_below_a_resource_just_deleted_is_not_found(
        lagging: LocalServer, deleted: Path, tmp_path: Path, below: str) -> None:
    """A 404 below a resource makes dcmweb search for the resource, to tell a server that
    does not serve that kind of request (tiny-pacs) from a missing resource. Was: exit 1
    'the study is on the server (a search finds it), so the server does not serve
    metadata'; for frames and rendered, exit 4 saying 'the instance is on the server (a
    search finds it)'."""
    study, _, sop = uids(deleted)
    path, missing = {"metadata": (f"studies/{study}/metadata", f"study not found: {study}"),
                     "instance metadata": (f"{instance_path(deleted)}/metadata",
                                           f"instance not found: {sop}")}.get(
        below, (f"{instance_path(deleted)}/{below}", f"instance not found: {sop}"))
    result = run(lagging.url, "retrieve", path, "--output", str(tmp_path / "out"))
    assert result.exit_code == 4, result.stderr
    assert lines(result.stderr)[-1].endswith(
        f"/{below.split()[-1]} failed: HTTP 404 Not Found: {missing} (check the HOST URL "
        "and the UIDs in the path)")


@pytest.fixture
def two_series(lagging: LocalServer, tmp_path: Path) -> str:
    """A study of two series stored, then deleted: a search still lists it. Its UID."""
    files = corpus.synthetic_files(tmp_path / "two", 4, series_per_study=2, seed="two")
    assert run(lagging.url, "store", str(tmp_path / "two")).exit_code == 0
    delete_study(lagging, files[0])
    return uids(files[0])[0]


@pytest.mark.parametrize("multithreading", [[], ["-m"]])
def test_retrieve_of_a_study_just_deleted_is_not_found(
        lagging: LocalServer, two_series: str, tmp_path: Path,
        multithreading: list[str]) -> None:
    """-m splits a study by the series a search lists. Was: with -m, 'nothing was
    retrieved (2 items failed)', exit 1; without, exit 4 (kept as a regression test)."""
    result = run(*multithreading, lagging.url, "retrieve", f"studies/{two_series}",
                 "--output", str(tmp_path / "out"))
    assert result.exit_code == 4, result.stderr
    assert lines(result.stderr)[-1].endswith(
        f"retrieve studies/{two_series} failed: HTTP 404 Not Found: study not found: "
        f"{two_series} (check the HOST URL and the UIDs in the path)")
    assert not list((tmp_path / "out").rglob("*.dcm"))


@pytest.mark.parametrize("multithreading", [[], ["-m"]])
def test_a_whole_store_retrieve_right_after_a_delete_names_the_study_gone_not_failed(
        lagging: LocalServer, files: list[Path], tmp_path: Path,
        multithreading: list[str]) -> None:
    """The search of the store's studies lists the study just deleted, and its retrieve
    answers 404: the server no longer holds it, and nothing of what it holds was missed.
    Was: 'studies/S: HTTP 404 Not Found: study not found', '1 failed', exit 6."""
    assert run(lagging.url, "store", str(tmp_path / "in")).exit_code == 0
    delete_study(lagging, files[0])
    study = uids(files[0])[0]
    result = run(*multithreading, lagging.url, "retrieve", "--output", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    assert (f"dcmweb: warning: studies/{study}: gone since it was listed (the search listed "
            "it, but the server no longer holds it: deleted moments ago; searches lag behind "
            "deletes)") in lines(result.stderr)
    assert lines(result.stderr)[-1].endswith(" in 2 files; 1 study gone since it was listed")
    assert {path.stem for path in (tmp_path / "out").rglob("*.dcm")} == held(lagging)


def test_a_whole_store_retrieve_right_after_a_delete_gives_the_library_a_gone_result(
        lagging: LocalServer, files: list[Path], tmp_path: Path) -> None:
    assert run(lagging.url, "store", str(tmp_path / "in")).exit_code == 0
    delete_study(lagging, files[0])
    with Client(lagging.url) as client:
        results = client.retrieve(None, tmp_path / "out")
    assert sorted((r.status, r.source) for r in results if r.status != "saved") == [
        ("gone", f"studies/{uids(files[0])[0]}")]
    assert sorted(r.path.stem for r in results if r.path) == sorted(held(lagging))


def test_a_listed_study_answered_404_while_the_server_serves_it_still_fails(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    """A 404 alone proves nothing: the server serves an instance of the study (its
    metadata answers), so the study was not deleted, and the run lost it."""
    assert run(local_server.url, "store", str(tmp_path / "in")).exit_code == 0
    study = uids(files[0])[0]
    local_server.inject_fault(404, method="GET", path_contains=f"/studies/{study}")
    result = run(local_server.url, "retrieve", "--output", str(tmp_path / "out"))
    assert result.exit_code == 6, result.stderr
    assert f"dcmweb: error: studies/{study}: HTTP 404 Not Found: injected fault" in \
        lines(result.stderr)
    assert lines(result.stderr)[-2].endswith(" in 2 files; 1 failed")


@pytest.mark.parametrize("args", [
    ["retrieve", "{path}", "--dry-run", "--output", "{out}"],
    ["retrieve", "{path}/rendered", "--output", "{out}"],
    ["retrieve", "{path}", "--type", "image/png", "--output", "{out}"],
    ["delete", "{path}", "--dry-run"]])
def test_what_a_listing_of_a_study_just_deleted_would_touch_is_not_found(
        lagging: LocalServer, two_series: str, tmp_path: Path, args: list[str]) -> None:
    """A dry run, a delete's question, rendered images and other part types list the
    study's instances by search. Was: exit 0, 'would write 4 files' or 'would delete
    studies/S (4 instances)' while the real run is not found (exit 4); rendered images
    exit 1, 'nothing was retrieved (4 items failed)'."""
    path = f"studies/{two_series}"
    what = "render" if "rendered" in args[1] else args[0]
    result = run(lagging.url, *[arg.format(path=path, out=tmp_path / "out") for arg in args])
    assert result.exit_code == 4, result.stderr
    assert lines(result.stderr)[-1].endswith(
        f"{what} {path}: not found (a search still lists instances under it, but a "
        "retrieve of it answers 404: deleted moments ago; searches lag behind deletes) "
        "(check the HOST URL and the UIDs in the path)")
    assert result.stdout == ""


@pytest.mark.parametrize("args", [
    ["retrieve", "{path}", "--dry-run", "--output", "{out}"],
    ["delete", "{path}", "--dry-run"]])
def test_a_listing_whose_first_instance_alone_was_just_deleted_still_lists_the_rest(
        lagging: LocalServer, files: list[Path], tmp_path: Path, args: list[str]) -> None:
    """The check asks one listed instance; gone alone, it does not show its study gone.
    Was: 'not found (... deleted moments ago)', exit 4, while the server held the other
    instance of the study."""
    assert run(lagging.url, "store", str(tmp_path / "in")).exit_code == 0
    study = uids(files[0])[0]
    order = run(lagging.url, "search", f"studies/{study}/instances", "--format", "uids")
    first, other = order.stdout.split()  # the study's two, as its listing names them
    by_uid = {uids(path)[2]: path for path in files}
    result = run(lagging.url, "delete", instance_path(by_uid[first]), "--yes")
    assert result.exit_code == 0, result.stderr
    assert first in listed(lagging) - held(lagging)
    path = f"studies/{study}"
    result = run(lagging.url, *[arg.format(path=path, out=tmp_path / "out") for arg in args])
    assert result.exit_code == 0, result.stderr
    assert other in result.stdout


# -- delete --------------------------------------------------------------------------------
def test_a_delete_then_its_repeat_report_the_servers_truth(
        lagging: LocalServer, files: list[Path], tmp_path: Path) -> None:
    """Regression: dcmweb's delete trusts the operation, never a search, so the lag does
    not change what it says; the same delete again is not found."""
    assert run(lagging.url, "store", str(tmp_path / "in")).exit_code == 0
    study = uids(files[0])[0]
    done = run(lagging.url, "delete", f"studies/{study}", "--yes")
    assert done.exit_code == 0, done.stderr
    assert lines(done.stderr)[-1].endswith(f"deleted studies/{study} (2 instances)")
    again = run(lagging.url, "delete", f"studies/{study}", "--yes")
    assert again.exit_code == 4, again.stderr
    assert held(lagging) == {uids(path)[2] for path in files[2:]}
    assert {uids(path)[2] for path in files[:2]} <= listed(lagging)


def test_a_delete_whose_outcome_is_unknown_says_what_a_retrieve_finds_left(
        lagging: LocalServer, files: list[Path], tmp_path: Path) -> None:
    """The operation's polls fail (404, after the operation is done): dcmweb says what a
    search finds left. Was: 'a search finds 2 instances left under studies/S', and the
    server held none of them."""
    assert run(lagging.url, "store", str(files[0]), str(files[1])).exit_code == 0
    study = uids(files[0])[0]
    lagging.inject_fault(404, delay=0.5, method="GET", path_contains="/operations/",
                         count=100)
    result = run(lagging.url, "delete", f"studies/{study}", "--yes")
    assert result.exit_code == 5, result.stderr
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: a search finds 2 instances left under studies/{study}, but a "
        "retrieve of it answers 404: nothing is left (searches lag behind deletes)")
    assert held(lagging) == set()


def write_pair(folder: Path) -> tuple[Path, Path]:
    """A DICOM JSON + JPEG pair with its own UIDs (store --metadata --jpeg)."""
    from test_jsonstore import write_pair as pair

    folder.mkdir()
    return pair(folder, "a")


def test_a_pair_stored_again_after_a_delete_whose_answer_is_lost_is_sent_again(
        lagging: LocalServer, tmp_path: Path) -> None:
    """The pair's instance deleted, then the pair stored again and its request dropped
    before the server read it: a search still finds the deleted instance. Was: 'stored'
    (confirmed by search), exit 0, and the server held nothing."""
    from test_jsonstore import SERIES, STUDY, sop_of

    json_path, jpeg_path = write_pair(tmp_path / "pair")
    pair = ["store", "--metadata", str(json_path), "--jpeg", str(jpeg_path),
            "--report", str(tmp_path / "r.jsonl")]
    assert run(lagging.url, *pair).exit_code == 0
    instance = f"studies/{STUDY}/series/{SERIES}/instances/{sop_of('a')}"
    assert run(lagging.url, "delete", instance).exit_code == 0
    lagging.inject_fault(drop=True, method="POST")
    result = run(lagging.url, *pair)
    assert result.exit_code == 0, result.stderr
    [row] = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert (row["status"], row["confirmed_by"]) == ("stored", "answer")
    assert held(lagging) == {sop_of("a")}
    assert sum(r.method == "POST" for r in lagging.requests) == 3  # stored, dropped, resent


# -- what the check costs ------------------------------------------------------------------
def wado_gets(server: LocalServer) -> list[str]:
    """The paths below HOST of the GETs the server got that are not searches."""
    base = urlsplit(server.url).path
    return [r.path.removeprefix(base) for r in server.requests
            if r.method == "GET" and "?" not in r.path]


def test_checks_of_served_instances_read_their_metadata_over_one_connection(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    """Was: each check a retrieve of the instance, closed unread, so every check opened
    a new connection (on Google a new TLS handshake each)."""
    assert run(local_server.url, "store", str(tmp_path / "in")).exit_code == 0
    local_server.clear_requests()
    with Client(local_server.url) as client:
        assert [served(client.http, client.base_url, ResourcePath(*uids(path)))
                for path in files] == [True] * 4
    assert wado_gets(local_server) == [f"/{instance_path(path)}/metadata" for path in files]
    assert len({r.client_port for r in local_server.requests}) == 1


def test_a_parallel_retrieve_of_a_study_never_asks_for_the_whole_study(
        local_server: LocalServer, tmp_path: Path) -> None:
    """-m splits a study into its series and checks the listing by one instance's
    metadata. Was: a GET of the whole study first, closed once its status came (the
    server had started sending all of it)."""
    files = corpus.synthetic_files(tmp_path / "two", 4, series_per_study=2, seed="two")
    assert run(local_server.url, "store", str(tmp_path / "two")).exit_code == 0
    local_server.clear_requests()
    study = uids(files[0])[0]
    result = run("-m", local_server.url, "retrieve", f"studies/{study}",
                 "--output", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    series = sorted({f"/studies/{study}/series/{uids(path)[1]}" for path in files})
    asked = wado_gets(local_server)
    assert sorted(path for path in asked if not path.endswith("/metadata")) == series
    assert [path.rsplit("/instances/", 1)[0] for path in asked
            if path.endswith("/metadata")] in ([series[0]], [series[1]])
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 4


@pytest.mark.parametrize("kind", ["local_server", "orthanc", "tinypacs_fresh"])
def test_the_check_tells_a_served_instance_from_a_missing_one_on_every_server(
        request: pytest.FixtureRequest, files: list[Path], kind: str) -> None:
    """Orthanc and the test server answer an instance's metadata; tiny-pacs answers it
    404 for every instance, and the instance's retrieve decides."""
    server = request.getfixturevalue(kind)
    assert run(server.url, "store", str(files[0])).exit_code == 0
    study, series, sop = uids(files[0])
    with Client(server.url) as client:
        assert served(client.http, client.base_url, ResourcePath(study, series, sop))
        assert not served(client.http, client.base_url, ResourcePath(study, series, "1.2.9"))
