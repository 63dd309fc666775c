"""The server crashes or restarts in the middle of a run (a package upgrade, an OOM kill
while the nightly job runs): Orthanc killed -9 by its PID and started again on the same
port with the same data, or dcmweb's test server stopped with a request in hand. What
dcmweb reports must be what the server then holds."""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines
from dcmweb_devtools.orthanc import Orthanc, OrthancInstall
from dcmweb_devtools.procs import http_session

DCMWEB = [sys.executable, "-m", "dcmweb"]


def held(orthanc: Orthanc) -> list[str]:
    """Every instance Orthanc holds, by SOP Instance UID (one entry per stored copy)."""
    with http_session() as session:
        response = session.get(orthanc.rest_url + "/instances?expand", timeout=60)
    response.raise_for_status()
    return [i["MainDicomTags"]["SOPInstanceUID"] for i in response.json()]


def report_rows(report: Path) -> dict[str, dict[str, str]]:
    with report.open(newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def journal_statuses(journal: Path) -> dict[str, str]:
    with sqlite3.connect(journal) as db:
        return dict(db.execute("SELECT path, status FROM files"))


def kill_after_uploads(process: subprocess.Popen[str], orthanc: Orthanc, uploads: int) -> None:
    """Read the store's log until it has stored ``uploads`` files, then kill Orthanc."""
    assert process.stderr is not None
    seen = 0
    for line in process.stderr:
        seen += " uploaded as " in line
        if seen >= uploads:
            orthanc.kill()
            return
    raise AssertionError(f"the store ended before the kill, at {seen} files")


@pytest.fixture
def killable_orthanc(orthanc_install: OrthancInstall, support_cache_dir: Path,
                     tmp_path: Path) -> Iterator[Orthanc]:
    """An Orthanc a test may kill and start again (``start(port=...)``)."""
    server = Orthanc(tmp_path / "orthanc", cache_dir=support_cache_dir, install=orthanc_install)
    server.start()
    try:
        yield server
    finally:
        server.stop(wait=False)


# -- store ----------------------------------------------------------------------------------------
def test_a_store_waits_out_an_orthanc_killed_and_restarted(killable_orthanc: Orthanc,
                                                           tmp_path: Path) -> None:
    """Orthanc killed -9 mid-run and back 1 s later on its port: the run waits it out
    and ends 0, every file stored once and every report row true."""
    orthanc = killable_orthanc
    files = corpus.synthetic_files(tmp_path / "in", 300, studies=3, seed="restart")
    journal, report = tmp_path / "j.db", tmp_path / "r.csv"
    process = subprocess.Popen(
        [*DCMWEB, "-m", orthanc.url, "store", str(tmp_path / "in"), "--batch-size", "5",
         "--journal", str(journal), "--report", str(report)], stderr=subprocess.PIPE,
        text=True)
    kill_after_uploads(process, orthanc, 100)
    time.sleep(1)
    orthanc.start(port=orthanc.port)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    assert sorted(held(orthanc)) == sorted(corpus.sop_instance_uid(p) for p in files)
    assert {row["status"] for row in report_rows(report).values()} == {"stored"}
    assert len(report_rows(report)) == len(files)
    assert set(journal_statuses(journal).values()) == {"stored"}


def test_a_store_whose_orthanc_stays_down_reports_only_what_it_holds(
        killable_orthanc: Orthanc, tmp_path: Path) -> None:
    """Orthanc killed -9 and not restarted: exit 5, no row calls a file stored that the
    server does not hold; once it is back, the rerun sends only what it lacks. The
    message does not send the user to check HOST, which the server answered all night
    (old dcmweb: `(check the HOST URL and that the server is running)`)."""
    orthanc = killable_orthanc
    files = corpus.synthetic_files(tmp_path / "in", 300, studies=3, seed="down")
    uid = {str(p): corpus.sop_instance_uid(p) for p in files}
    journal, report = tmp_path / "j.db", tmp_path / "r.csv"
    command = [*DCMWEB, "-m", "--outage-limit", "2", orthanc.url, "store",
               str(tmp_path / "in"), "--batch-size", "5", "--journal", str(journal),
               "--report", str(report)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    kill_after_uploads(process, orthanc, 100)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 5, stderr[-3000:]
    assert lines(stderr)[-1].endswith(
        "connection refused (the server was unavailable for 2 s, the outage limit) (the "
        "server is overloaded or down; try again later)")
    first = report_rows(report)
    orthanc.start(port=orthanc.port)
    before = set(held(orthanc))
    assert {p for p, row in first.items() if row["status"] == "stored"} <= {
        p for p in uid if uid[p] in before}
    assert {row["status"] for row in first.values()} <= {"stored", "unconfirmed"}

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert sorted(held(orthanc)) == sorted(uid.values())
    sent = {p for p, row in report_rows(report).items() if row["status"] == "stored"}
    assert sent == {p for p in uid if uid[p] not in before}


# -- delete ---------------------------------------------------------------------------------------
def test_a_delete_whose_server_stops_after_doing_it_has_an_unknown_outcome(
        tmp_path: Path) -> None:
    """The server deletes the instance, its answer is cut, and it stops before the
    resend: old dcmweb said `delete ... failed: cannot reach ...`, though it was gone."""
    [path] = corpus.synthetic_files(tmp_path / "in", 1, seed="gone")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    target = (f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
              f"/instances/{ds.SOPInstanceUID}")
    with LocalServer(tmp_path / "store") as server:
        assert subprocess.run([*DCMWEB, server.url, "store", str(path)]).returncode == 0
        server.inject_fault(stall=60, method="DELETE")  # deleted, then half an answer
        process = subprocess.Popen([*DCMWEB, "--outage-limit", "1", server.url, "delete",
                                    target], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while server.store.query("SELECT count(*) AS n FROM instances")[0]["n"]:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
        port = server.port
    _, stderr = process.communicate(timeout=60)
    with LocalServer(tmp_path / "store", port=port) as server:
        assert server.store.query("SELECT count(*) AS n FROM instances")[0]["n"] == 0
    assert process.returncode == 5, stderr
    assert lines(stderr)[-1].startswith(f"dcmweb: error: delete {target}: cannot reach ")
    assert lines(stderr)[-1].endswith(
        "; its outcome is unknown: the server may have deleted it (search for it to see)")


HOLD_DELETE = """
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  -- The first REST DELETE of a study is held (a read of a FIFO no one writes) until the
  -- test kills Orthanc; the marker says it came.
  if method == 'DELETE' and string.sub(uri, 1, 9) == '/studies/' then
    local marker = io.open('{marker}', 'r')
    if marker then marker:close() return true end
    io.open('{marker}', 'w'):close()
    io.open('{fifo}', 'r')
  end
  return true
end
"""


def test_an_orthanc_killed_with_the_delete_in_hand_leaves_its_outcome_unknown(
        orthanc_install: OrthancInstall, support_cache_dir: Path, tmp_path: Path) -> None:
    """Orthanc is killed while its REST DELETE runs, and stays down: exit 5, and the
    outcome is unknown, not failed (old dcmweb: `delete ... failed: cannot reach`). Once
    Orthanc is back, the study is still there and the delete done again ends 0."""
    marker, fifo = tmp_path / "held", tmp_path / "fifo"
    os.mkfifo(fifo)
    script = tmp_path / "hold.lua"
    script.write_text(HOLD_DELETE.replace("{marker}", str(marker)).replace("{fifo}", str(fifo)))
    orthanc = Orthanc(tmp_path / "orthanc", cache_dir=support_cache_dir,
                      install=orthanc_install, extra_config={"LuaScripts": [str(script)]})
    files = corpus.synthetic_files(tmp_path / "in", 3, seed="held")
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    with orthanc:
        assert subprocess.run([*DCMWEB, orthanc.url, "store", str(tmp_path / "in")]
                              ).returncode == 0
        process = subprocess.Popen([*DCMWEB, "--outage-limit", "1", orthanc.url, "delete",
                                    f"studies/{study}"], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
        orthanc.kill()
        _, stderr = process.communicate(timeout=60)
        orthanc.start(port=orthanc.port)
        assert len(held(orthanc)) == 3
        again = subprocess.run([*DCMWEB, orthanc.url, "delete", f"studies/{study}"],
                               capture_output=True, text=True, timeout=60)
        assert held(orthanc) == []
    assert process.returncode == 5, stderr
    assert lines(stderr)[-1].startswith(f"dcmweb: error: delete studies/{study}: cannot reach ")
    assert lines(stderr)[-1].endswith(
        "; its outcome is unknown: the server may have deleted it (search for it to see)")
    assert again.returncode == 0, again.stderr


# -- a restart that lost what the server had acknowledged ------------------------------------------
def test_verify_journal_after_a_server_restarted_empty_sends_everything_again(
        pydicom_files: list[Path], tmp_path: Path) -> None:
    """A server restarted without the data it had acknowledged (an in-memory store, a
    restore from an older backup): the journal still says stored, and --verify-journal
    sends each file again, a deflated one too, whose series dcmweb cannot read from the
    file (old dcmweb kept its journal's word: `already stored`, not on the server)."""
    corpus.synthetic_files(tmp_path / "in", 4, seed="empty")
    deflated = next(p for p in pydicom_files if p.name == "image_dfl.dcm")
    (tmp_path / "in" / deflated.name).write_bytes(deflated.read_bytes())
    files = sorted((tmp_path / "in").iterdir())
    journal, report = tmp_path / "j.db", tmp_path / "r.csv"

    def store(url: str, *options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*DCMWEB, url, "store", str(tmp_path / "in"), "--journal",
                               str(journal), *options], capture_output=True, text=True,
                              timeout=60)

    with LocalServer(tmp_path / "before") as server:
        assert store(server.url).returncode == 0
        port = server.port
    with LocalServer(tmp_path / "after", port=port) as server:  # empty
        result = store(server.url, "--verify-journal", "--report", str(report))
        held = {row["sop_uid"] for row in server.store.query("SELECT sop_uid FROM instances")}
    assert result.returncode == 0, result.stderr
    assert {row["status"] for row in report_rows(report).values()} == {"stored"}
    assert held == {corpus.sop_instance_uid(p) for p in files}
    assert lines(result.stderr)[-1].endswith(
        f"in {len(files)} files; {len(files)} sent again (stored by an earlier run, gone "
        "from the server)")
