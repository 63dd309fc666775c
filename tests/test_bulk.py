"""Bulk store as a nightly job runs it: journal and resume, reports, conflicts, lists,
dry runs; against the local GCP-like server (kill -9 and rerun also against Orthanc
and with faults injected at random)."""

from __future__ import annotations

import builtins
import contextlib
import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from click.testing import CliRunner, Result
from hostile import Hostile, Request

from dcmweb.cli import cli
from dcmweb.journal import Journal, Stamp
from dcmweb.output import human_size
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus, logs
from dcmweb_devtools.logs import lines
from dcmweb_devtools.orthanc import Orthanc
from dcmweb_devtools.tinypacs import TinyPacs


def run(*args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin)


def server_uids(server: LocalServer) -> set[str]:
    return {row["sop_uid"] for row in server.store.query("SELECT sop_uid FROM instances")}


def posted_instances(server: LocalServer) -> int:
    return sum(1 for r in server.requests if r.method == "POST")


def rows(report: Path) -> list[dict[str, str]]:
    if report.suffix == ".csv":
        with report.open(newline="") as handle:
            return list(csv.DictReader(handle))
    return [json.loads(line) for line in report.read_text().splitlines()]


def uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def conflicting_copy(source: Path, target: Path) -> Path:
    ds = pydicom.dcmread(source)
    ds.PatientName = "Conflict^Copy"
    ds.save_as(target, enforce_file_format=True)
    return target


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    return corpus.synthetic_files(tmp_path / "in", 30, studies=3, seed="bulk")


def test_rerun_with_journal_sends_nothing_and_reports_already_stored(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    journal, report = tmp_path / "j.db", tmp_path / "r.csv"
    first = run(local_server.url, "store", str(files[0].parent), "--journal", str(journal),
                "--report", str(report))
    assert first.exit_code == 0, first.stderr
    assert {r["status"] for r in rows(report)} == {"stored"}
    assert len(server_uids(local_server)) == 30
    local_server.clear_requests()

    again = run("-v", local_server.url, "store", str(files[0].parent), "--journal",
                str(journal), "--report", str(report))
    assert again.exit_code == 0, again.stderr
    assert local_server.requests == []
    assert lines(again.stderr)[-1].endswith(
        "Transferred 0 B in 0 files; 30 already stored")
    assert f"{files[3]} already stored (stored by an earlier run (journal))" in again.stderr
    table = rows(report)
    assert [r["status"] for r in table] == ["already stored"] * 30
    assert table[0]["sop_instance_uid"] == corpus.sop_instance_uid(files[0])

    os.utime(files[5], ns=(1, 1))  # changed since: sent again
    third = run(local_server.url, "store", str(files[0].parent), "--journal", str(journal))
    assert third.exit_code == 0
    assert lines(third.stderr)[-1].endswith(
        f"Transferred {files[5].stat().st_size / 1024:.1f} KiB in 1 file; 29 already stored")


def test_verify_journal_sends_again_what_the_server_lost(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    journal, report = tmp_path / "j.db", tmp_path / "r.csv"
    first = run(local_server.url, "store", str(files[0].parent), "--journal", str(journal))
    assert first.exit_code == 0, first.stderr
    study = uids(files[0])[0]
    gone = local_server.store.delete(study, unblock=False)
    lone = files[-1]
    assert uids(lone)[0] != study
    local_server.store.delete(uids(lone)[0], sop=uids(lone)[2], unblock=False)
    assert len(server_uids(local_server)) == 30 - gone - 1
    trusting = run(local_server.url, "store", str(files[0].parent), "--journal", str(journal))
    assert trusting.exit_code == 0
    assert lines(trusting.stderr)[-1].endswith("in 0 files; 30 already stored")
    local_server.clear_requests()

    verified = run("-v", local_server.url, "store", str(files[0].parent), "--journal",
                   str(journal), "--verify-journal", "--report", str(report))
    assert verified.exit_code == 0, verified.stderr
    assert len(server_uids(local_server)) == 30
    assert lines(verified.stderr)[-1].endswith(
        f"in {gone + 1} files; {29 - gone} already stored, {gone + 1} sent again "
        "(stored by an earlier run, gone from the server)")
    assert f"{lone}: stored by an earlier run (journal), but the server no longer holds it" \
        in verified.stderr
    table = {Path(r["path"]): r for r in rows(report)}
    assert (table[lone]["status"], table[lone]["attempts"]) == ("stored", "2")
    series = {uids(path)[1] for path in files}
    searches = [r for r in local_server.requests if r.method == "GET"]
    # One search per series (and the pager's look past a short page), not one per file.
    assert len(searches) <= 2 * len(series)


def test_verify_journal_whose_search_fails_sends_nothing_and_claims_nothing(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    """A search that cannot say whether the server still holds a file: the journal's word
    is neither confirmed nor overturned, so nothing is sent and no row says stored."""
    journal, report = tmp_path / "j.db", tmp_path / "r.csv"
    assert run(local_server.url, "store", str(files[0].parent), "--journal",
               str(journal)).exit_code == 0
    local_server.inject_fault(500, count=10**6, method="GET")
    local_server.clear_requests()
    result = run("--retries", "1", local_server.url, "store", str(files[0].parent),
                 "--journal", str(journal), "--verify-journal", "--report", str(report))
    assert result.exit_code == 1, result.stderr
    assert [r for r in local_server.requests if r.method == "POST"] == []
    assert rows(report) == []
    assert lines(result.stderr)[-2].endswith("Transferred 0 B in 0 files; 30 not attempted")
    with Journal(journal, f"{local_server.url}/studies") as entries:
        assert entries.counts() == {"stored": 30}


def test_verify_journal_on_orthanc_restores_a_cleared_store(
        orthanc: Orthanc, pydicom_files: list[Path], tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    folder = tmp_path / "real"
    folder.mkdir()
    for path in corpus.unique_by_sop(pydicom_files)[:12]:
        (folder / path.name).write_bytes(path.read_bytes())
    first = run(orthanc.url, "store", str(folder), "--journal", str(journal))
    assert first.exit_code in (0, 6), first.stderr  # a file Orthanc cannot read fails
    held = orthanc.instance_count()
    orthanc.clear()
    again = run(orthanc.url, "store", str(folder), "--journal", str(journal),
                "--verify-journal")
    assert again.exit_code == first.exit_code, again.stderr
    assert orthanc.instance_count() == held
    summary = next(line for line in lines(again.stderr) if "Transferred" in line)
    assert f"{held} sent again" in summary


def test_verify_journal_needs_a_journal() -> None:
    result = run("http://127.0.0.1:9/", "store", ".", "--verify-journal")
    assert result.exit_code == 2
    assert "--verify-journal needs --journal" in result.stderr


def test_report_attempts_count_only_the_runs_that_sent_the_file(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    """A file decided from its bytes alone (not DICOM, a FIFO) was sent by no run."""
    folder = files[0].parent
    (folder / "notes.txt").write_text("not DICOM")
    os.mkfifo(folder / "pipe")
    journal, report = tmp_path / "j.db", tmp_path / "r.csv"
    for _ in range(2):
        result = run(local_server.url, "store", str(folder), "--journal", str(journal),
                     "--report", str(report))
        assert result.exit_code == 0, result.stderr
        attempts = {Path(r["path"]).name: (r["status"], r["attempts"]) for r in rows(report)}
        assert attempts["notes.txt"] == ("skipped", "0")
        assert attempts["pipe"] == ("skipped", "0")
    first = run(local_server.url, "store", str(folder), "--report", str(report))
    assert first.exit_code == 0, first.stderr
    sent = {Path(r["path"]).name: r["attempts"] for r in rows(report)}
    assert sent[files[0].name] == "1" and sent["notes.txt"] == "0"


def test_report_attempts_after_a_sigterm_and_a_rerun(tmp_path: Path) -> None:
    """Old dcmweb counted a run that took a file from the input, not one that sent it:
    after a SIGTERM, the rerun gave attempts 0 to the files that were in flight (found
    on the server) and 2 to the files the stopped run never sent."""
    corpus.synthetic_files(tmp_path / "in", 4, seed="attempts")
    journal, first, second = tmp_path / "j.db", tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    with LocalServer(tmp_path / "server") as server:
        # The first answer comes soon, the others late: the signal comes once the first
        # has come (a request is logged when answered), while the second file is in
        # flight, however slow the machine.
        server.inject_fault(delay=0.2, count=1, method="POST")
        server.inject_fault(delay=4, count=10**6, method="POST")
        command = [sys.executable, "-m", "dcmweb", server.url, "store", "--batch-size",
                   "1", "--journal", str(journal), str(tmp_path / "in")]
        process = subprocess.Popen([*command, "--report", str(first)],
                                   stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        # The journal's mark after the first answer: the second file is being sent.
        while not ([r for r in server.requests if r.method == "POST"]
                   and _marked_sending(journal) == 1):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
        time.sleep(0.5)  # its request on the wire (answered 4 s later)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 143
        time.sleep(4)  # the server stores the request it was holding
        server.clear_faults()
        rerun = subprocess.run([*command, "--report", str(second)], capture_output=True,
                               text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    before = {row["path"]: row["status"] for row in rows(first)}
    assert list(before.values()).count("unconfirmed") == 1  # in flight at the SIGTERM
    attempts = {row["path"]: (row["status"], row["attempts"]) for row in rows(second)}
    assert len(attempts) == 4
    for path, (status, count) in attempts.items():
        # The runs that sent it: the stopped one (stored, or in flight), and this one if
        # it sent it; not the stopped one for a file it never sent.
        sent_before = before.get(path) in ("stored", "unconfirmed")
        assert count == sent_before + (status == "stored"), (path, status, count)


def test_second_run_on_a_busy_journal_exits_7_and_sends_nothing(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    with Journal(journal, "x"):
        result = run(local_server.url, "store", str(files[0]), "--journal", str(journal))
    assert result.exit_code == 7
    assert logs.lines(result.stderr) == [
        f"dcmweb: info: store to {local_server.url} from {files[0]} (1 worker; batch-size 20; "
        f"journal {journal})",
        f"dcmweb: error: the journal {journal} is in use by another dcmweb run "
        "(wait for it to finish, or use another --journal)"]
    assert local_server.requests == []
    assert run(local_server.url, "store", str(files[0]), "--journal",
               str(journal)).exit_code == 0


def held_by_another_process(journal: Path) -> contextlib.AbstractContextManager[None]:
    """The journal opened (and locked) by another process for as long as the block runs."""
    return held_in_another_process(
        f"from dcmweb.journal import Journal; j = Journal({str(journal)!r}, 'x')")


@contextmanager
def held_in_another_process(opening: str) -> Iterator[None]:
    """What ``opening`` (Python statements) opens, and locks, held by another process for
    as long as the block runs."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import time; {opening}; print('held', flush=True); "
         "time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_two_processes_on_one_journal(local_server: LocalServer, files: list[Path],
                                      tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    with held_by_another_process(journal):
        done = subprocess.run([sys.executable, "-m", "dcmweb", local_server.url, "store",
                               str(files[0]), "--journal", str(journal)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 7, done.stderr
    assert "in use by another dcmweb run" in done.stderr


@pytest.mark.parametrize("schema", [
    "CREATE TABLE bookmarks (url TEXT); PRAGMA journal_mode=DELETE;",
    "CREATE TABLE files (name TEXT, owner TEXT); PRAGMA user_version=1;"],
    ids=["other-tables", "a-files-table"])
def test_a_journal_that_is_another_programs_database_is_refused_and_kept(
        local_server: LocalServer, files: list[Path], tmp_path: Path, schema: str) -> None:
    """--journal naming another program's SQLite database (a slip): old dcmweb added its
    table, stamped user_version and switched it to WAL for good; or, when it had a table
    "files", stopped at the first file with "unexpected error: ... no such column"."""
    journal = tmp_path / "places.sqlite"
    with sqlite3.connect(journal) as db:
        db.executescript(schema)
    db.close()
    before = journal.read_bytes()
    result = run(local_server.url, "store", str(files[0]), "--journal", str(journal))
    assert result.exit_code == 2, result.stderr
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: {journal} is not a dcmweb journal: it holds other tables (left as it "
        "is) (give --journal a new file, or the journal of earlier runs)")
    assert journal.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("places")) == [
        "places.sqlite", "places.sqlite.lock"]
    assert posted_instances(local_server) == 0


@pytest.mark.parametrize("spelling", ["same", "./same", "{tmp}/sub/../same"])
def test_a_report_in_the_journals_file_is_refused(local_server: LocalServer,
                                                  files: list[Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  spelling: str) -> None:
    """--report and --journal naming one new file: old dcmweb made the journal, then wrote
    the report over it, exit 0; the report was lost (and the next run refused it)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    report = spelling.format(tmp=tmp_path)
    result = run(local_server.url, "store", str(files[0]), "--journal", "same",
                 "--report", report)
    assert result.exit_code == 2, result.stderr
    assert lines(result.stderr)[-1] == (f"dcmweb: error: --report and --journal name the "
                                        f"same file {report} (give each its own file)")
    assert not (tmp_path / "same").exists()
    assert posted_instances(local_server) == 0


def _put_in_place(source: Path, target: Path) -> None:
    """Write `source` over `target` as ``cp -p`` or ``rsync -a`` do: a new file (a new
    inode) renamed into place, with the old file's modification time."""
    mtime = target.stat().st_mtime_ns
    temporary = target.with_name(".incoming")
    temporary.write_bytes(source.read_bytes())
    os.utime(temporary, ns=(mtime, mtime))
    os.replace(temporary, target)


def test_a_file_replaced_with_the_same_size_and_mtime_is_sent_if_its_uids_differ(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    """Another instance put in a stored file's place, with its size and mtime: old dcmweb
    reported it "already stored" with the old instance's UIDs and never sent it. The same
    instance copied in again (a new inode too) is still not sent."""
    folder, journal, report = tmp_path / "mt", tmp_path / "j.db", tmp_path / "r.jsonl"
    folder.mkdir()
    target = folder / "x.dcm"
    target.write_bytes(files[0].read_bytes())
    assert files[0].stat().st_size == files[1].stat().st_size
    store = [local_server.url, "store", str(folder), "--journal", str(journal),
             "--report", str(report)]
    assert run(*store).exit_code == 0

    _put_in_place(files[0], target)
    again = run(*store)
    assert again.exit_code == 0, again.stderr
    assert [(r["status"], r["message"]) for r in rows(report)] == [
        ("already stored", "stored by an earlier run (journal)")]
    with Journal(journal, f"{local_server.url}/studies") as entries:
        entry = entries.lookup(str(target))
    assert entry is not None and entry.stamp == Stamp.of(target.stat())  # read once only

    _put_in_place(files[1], target)
    other = run(*store)
    assert other.exit_code == 0, other.stderr
    uid = str(pydicom.dcmread(files[1], stop_before_pixels=True).SOPInstanceUID)
    assert [(r["status"], r["sop_instance_uid"]) for r in rows(report)] == [("stored", uid)]
    assert uid in server_uids(local_server)
    assert posted_instances(local_server) == 2


def test_a_journal_of_version_1_is_migrated_and_its_files_checked_once(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    """A journal written before inodes were kept: it gains the columns, and the files it
    holds as stored are known again by their UIDs (read once), not sent again."""
    folder, journal = files[0].parent, tmp_path / "j.db"
    assert run(local_server.url, "store", str(folder), "--journal", str(journal)
               ).exit_code == 0
    posts = posted_instances(local_server)
    with sqlite3.connect(journal) as db:  # as version 1 wrote it
        db.executescript("ALTER TABLE files DROP COLUMN inode;"
                         " ALTER TABLE files DROP COLUMN ctime_ns; PRAGMA user_version=1;")
    db.close()
    again = run(local_server.url, "store", str(folder), "--journal", str(journal))
    assert again.exit_code == 0, again.stderr
    assert lines(again.stderr)[-1].endswith(f"in 0 files; {len(files)} already stored")
    assert posted_instances(local_server) == posts
    with sqlite3.connect(journal) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
        inodes = dict(db.execute("SELECT path, inode FROM files"))
    db.close()
    assert inodes == {str(path): path.stat().st_ino for path in files}


def test_a_dry_run_reads_a_journal_of_version_1_and_leaves_it_as_it_is(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    """--dry-run, the way to try a new version before the nightly job uses it: old dcmweb
    migrated the journal to version 2, and the dcmweb still running the job then refused
    it ("written by a newer dcmweb", exit 2) every night."""
    folder, journal = files[0].parent, tmp_path / "j.db"
    assert run(local_server.url, "store", str(folder), "--journal", str(journal)
               ).exit_code == 0
    with sqlite3.connect(journal) as db:  # as version 1 wrote it
        db.executescript("ALTER TABLE files DROP COLUMN inode;"
                         " ALTER TABLE files DROP COLUMN ctime_ns; PRAGMA user_version=1;")
    db.close()
    before = journal.read_bytes()
    dry = run(local_server.url, "store", str(folder), "--journal", str(journal), "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert lines(dry.stderr)[-1].endswith(f"would send 0 files (0 B, 0 studies); {len(files)} "
                                          "already stored")
    assert journal.read_bytes() == before


def test_a_dry_run_with_a_new_journal_makes_none(local_server: LocalServer,
                                                 files: list[Path], tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    dry = run(local_server.url, "store", str(files[0]), "--journal", str(journal),
              "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert lines(dry.stderr)[-1].endswith("would send 1 file (38.4 KiB, 1 study)")
    assert not journal.exists()


def test_conflicts_fail_skip_overwrite(local_server: LocalServer, pydicom_files: list[Path],
                                       tmp_path: Path) -> None:
    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    assert run(local_server.url, "store", str(ct)).exit_code == 0
    copy = conflicting_copy(ct, tmp_path / "copy.dcm")
    report = tmp_path / "r.jsonl"

    failed = run(local_server.url, "store", str(copy), "--report", str(report))
    assert failed.exit_code in (1, 6)
    row = rows(report)[0]
    assert row["status"] == "failed" and row["http_status"] == 409
    assert "already exists with different content" in row["message"]

    skipped = run(local_server.url, "store", str(copy), "--report", str(report),
                  "--on-conflict", "skip")
    assert skipped.exit_code == 0, skipped.stderr
    row = rows(report)[0]
    assert row["status"] == "conflict" and "already exists" in row["message"]
    assert "(--on-conflict skip)" in skipped.stderr

    overwritten = run(local_server.url, "store", str(copy), "--report", str(report),
                      "--on-conflict", "overwrite")
    assert overwritten.exit_code == 0, overwritten.stderr
    row = rows(report)[0]
    # One run sent it (old dcmweb: 2, counting the resend after the delete).
    assert row["status"] == "stored" and row["attempts"] == 1
    assert row["message"].startswith("replaced the server's conflicting instance")
    (held,) = local_server.store.query("SELECT patient_name FROM instances")
    assert held["patient_name"] == "Conflict^Copy"


@pytest.fixture
def conflicts(local_server: LocalServer, tmp_path: Path) -> list[Path]:
    """Three files whose UIDs the server holds with other bytes (c0, c1, c2)."""
    held = corpus.synthetic_files(tmp_path / "held", 3, seed="conflicts")
    assert run(local_server.url, "store", str(held[0].parent)).exit_code == 0
    (tmp_path / "d8").mkdir()
    local_server.clear_requests()
    return [conflicting_copy(path, tmp_path / "d8" / f"c{n}.dcm")
            for n, path in enumerate(sorted(held))]


def overwrite(server: LocalServer, folder: Path, tmp_path: Path, *more: str) -> Result:
    return run(server.url, "store", str(folder), "--on-conflict", "overwrite",
               "--batch-size", "1", "--report", str(tmp_path / "r8.jsonl"),
               "--journal", str(tmp_path / "j8.db"), *more)


def patient_names(server: LocalServer) -> dict[str, str]:
    return {row["sop_uid"]: row["patient_name"]
            for row in server.store.query("SELECT sop_uid, patient_name FROM instances")}


def test_a_failed_delete_fails_its_file_alone(local_server: LocalServer,
                                             conflicts: list[Path], tmp_path: Path) -> None:
    local_server.inject_fault(500, count=3, method="DELETE")  # c0's, with its retries
    result = overwrite(local_server, conflicts[0].parent, tmp_path)
    assert result.exit_code == 6, result.stderr
    assert lines(result.stderr)[-2].endswith("Transferred 76.7 KiB in 2 files; 1 failed")
    table = {Path(r["path"]).name: r for r in rows(tmp_path / "r8.jsonl")}
    assert [table[f"c{n}.dcm"]["status"] for n in range(3)] == ["failed", "stored", "stored"]
    message = table["c0.dcm"]["message"]
    assert message.startswith("could not delete the server's conflicting instance "
                              "(it still holds it): "), message
    assert "HTTP 500" in message
    names = patient_names(local_server)
    assert names[corpus.sop_instance_uid(conflicts[0])] != "Conflict^Copy"
    assert names[corpus.sop_instance_uid(conflicts[1])] == "Conflict^Copy"
    with Journal(tmp_path / "j8.db", local_server.url + "/studies") as journal:
        entry = journal.lookup(str(conflicts[0]))
        assert entry is not None and entry.status == "failed"


def test_a_failed_delete_then_a_failed_search_says_the_server_may_hold_either(
        local_server: LocalServer, conflicts: list[Path], tmp_path: Path) -> None:
    local_server.inject_fault(500, count=3, method="DELETE")
    # The searches that follow: the delete's own of what is left, then the overwrite's.
    local_server.inject_fault(500, count=6, method="GET")
    result = overwrite(local_server, conflicts[0], tmp_path)
    assert result.exit_code == 1, result.stderr
    (row,) = rows(tmp_path / "r8.jsonl")
    assert row["status"] == "failed" and row["http_status"] == 500
    assert row["message"].startswith("could not delete the server's conflicting instance, "
                                     "nor search whether it still holds it: "), row["message"]


def test_a_delete_whose_answer_is_lost_is_checked_by_search(
        local_server: LocalServer, conflicts: list[Path], tmp_path: Path) -> None:
    # Done, answer lost: the DELETE and each of its resends.
    local_server.inject_fault(count=5, method="DELETE", after=True)
    result = overwrite(local_server, conflicts[0].parent, tmp_path)
    assert result.exit_code == 0, result.stderr
    table = {Path(r["path"]).name: r for r in rows(tmp_path / "r8.jsonl")}
    assert [table[f"c{n}.dcm"]["status"] for n in range(3)] == ["stored"] * 3
    assert set(patient_names(local_server).values()) == {"Conflict^Copy"}
    assert len(patient_names(local_server)) == 3


def test_a_failed_store_after_the_delete_says_neither_copy_is_held(
        local_server: LocalServer, conflicts: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dcmweb.delete import Deleter

    delete = Deleter.delete

    def delete_then_fail_the_store(self: Deleter, path: str) -> Any:
        done = delete(self, path)
        local_server.inject_fault(500, count=3, method="POST")  # the store that follows
        return done

    monkeypatch.setattr(Deleter, "delete", delete_then_fail_the_store)
    result = overwrite(local_server, conflicts[0], tmp_path)
    assert result.exit_code == 1, result.stderr
    (row,) = rows(tmp_path / "r8.jsonl")
    assert row["status"] == "failed"
    assert row["message"].startswith(
        "deleted the server's conflicting instance, then this file was not stored; "
        "HTTP 500"), row["message"]
    assert corpus.sop_instance_uid(conflicts[0]) not in server_uids(local_server)


def test_skip_existing_with_overwrite_is_refused_before_anything_is_sent(
        local_server: LocalServer, conflicts: list[Path]) -> None:
    """--skip-existing asks only whether a UID is held: it would report the very
    conflicts overwrite is asked to replace as already stored."""
    result = run(local_server.url, "store", str(conflicts[0].parent), "--skip-existing",
                 "--on-conflict", "overwrite")
    assert result.exit_code == 2, result.stderr
    assert logs.lines(result.stderr)[-1] == (
        "dcmweb: error: --skip-existing cannot go with --on-conflict overwrite (it would "
        "report the conflicts to overwrite as already stored; without it, --journal still "
        "keeps a rerun from sending the files again)")
    assert local_server.requests == []


def deleting_then(server: LocalServer, monkeypatch: pytest.MonkeyPatch,
                  *faults: dict[str, Any]) -> None:
    """Once overwrite's DELETE is done, the server meets these faults (the re-store's)."""
    from dcmweb.delete import Deleter

    delete = Deleter.delete

    def delete_then_fault(self: Deleter, path: str) -> Any:
        done = delete(self, path)
        for fault in faults:
            server.inject_fault(**fault)
        return done

    monkeypatch.setattr(Deleter, "delete", delete_then_fault)


LOST_THEN_DOWN = ({"drop": True, "method": "POST"},  # the re-store, lost
                  {"status": 503, "count": 10**6, "method": "GET"})  # and its search


def test_an_outage_during_the_overwrites_store_stops_the_run(
        local_server: LocalServer, conflicts: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The re-store's answer is lost and the search that would decide it meets an outage:
    old dcmweb took the file's unconfirmed result and dropped the error that came after
    it ("no DICOM files to store", exit 2), while the server held neither copy."""
    deleting_then(local_server, monkeypatch, *LOST_THEN_DOWN)
    result = overwrite(local_server, conflicts[0], tmp_path, "--outage-limit", "1")
    assert result.exit_code == 5, result.stderr
    assert lines(result.stderr)[-1].startswith(
        "dcmweb: error: search for stored instances failed: HTTP 503")
    (row,) = rows(tmp_path / "r8.jsonl")
    assert row["status"] == "unconfirmed"
    assert row["message"].startswith("deleted the server's conflicting instance, then sent "
                                     "this file without learning whether it was stored; ")
    assert corpus.sop_instance_uid(conflicts[0]) not in server_uids(local_server)


def test_the_library_raises_for_a_stop_during_the_overwrites_store(
        local_server: LocalServer, conflicts: list[Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """bulk_store returned normally (counts {'unconfirmed': 1}, two files never sent)."""
    from dcmweb import Client, UnavailableError

    deleting_then(local_server, monkeypatch, *LOST_THEN_DOWN)
    with Client(local_server.url, outage_limit=1) as client, \
            pytest.raises(UnavailableError) as stopped:
        client.bulk_store(conflicts[0].parent, on_conflict="overwrite", batch_size=1)
    summary = stopped.value.summary
    assert summary is not None
    assert (dict(summary.counts), summary.not_attempted) == ({"unconfirmed": 1}, 2)


@pytest.mark.parametrize(("fault", "code"), [
    ({"status": 401, "method": "DELETE"}, 3),
    ({"status": 503, "count": 10**6}, 5)], ids=["401", "outage"])
def test_credentials_or_an_outage_during_the_overwrites_delete_stop_the_run(
        local_server: LocalServer, conflicts: list[Path], tmp_path: Path,
        fault: dict[str, Any], code: int) -> None:
    """Like any other request of the run (old dcmweb: that file failed, exit 1 or, with
    files after it, 6 or the next file's stop)."""
    local_server.inject_fault(delay=0.01, method="POST")  # faults apply in order: c0's store
    local_server.inject_fault(**fault)  # then, the DELETE (and everything after it)
    result = overwrite(local_server, conflicts[0].parent, tmp_path, "--outage-limit", "1")
    assert result.exit_code == code, result.stderr
    assert lines(result.stderr)[-2] == (
        "dcmweb: info: Transferred 0 B in 0 files; 1 failed, 2 not attempted"
        + (", server unavailable for 1 s" if code == 5 else ""))
    (row,) = rows(tmp_path / "r8.jsonl")
    study, series, sop = uids(conflicts[0])
    assert row["status"] == "failed"
    # A 401 refused the DELETE; after a 503 it may have been done all the same.
    said = " failed:" if code == 3 else ":"
    assert row["message"].startswith(
        "the run stopped while deleting the server's conflicting instance (it may hold it, "
        f"or neither copy): delete studies/{study}/series/{series}/instances/{sop}{said} "
        f"HTTP {fault['status']}"), row["message"]
    assert ("its outcome is unknown" in row["message"]) == (code == 5)
    local_server.clear_faults()
    assert "Conflict^Copy" not in patient_names(local_server).values()


@pytest.mark.parametrize("threads", [[], ["-m"]], ids=["one-thread", "-m"])
def test_two_files_of_one_run_under_one_uid_do_not_overwrite_each_other(
        local_server: LocalServer, pydicom_files: list[Path], tmp_path: Path,
        threads: list[str]) -> None:
    """Old dcmweb reported both stored (exit 0): the second deleted the copy the run had
    just stored from the first, and every rerun swapped them again."""
    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    (tmp_path / "in").mkdir()
    first = tmp_path / "in" / "a.dcm"
    first.write_bytes(ct.read_bytes())
    conflicting_copy(ct, tmp_path / "in" / "b.dcm")
    report, journal = tmp_path / "r.jsonl", tmp_path / "j.db"
    for _ in range(2):  # a rerun with the journal: the same truth, nothing deleted
        result = run(*threads, local_server.url, "store", str(tmp_path / "in"),
                     "--on-conflict", "overwrite", "--report", str(report),
                     "--journal", str(journal))
        assert result.exit_code == 6, result.stderr
        table = {row["status"]: row for row in rows(report)}
        assert set(table) in ({"stored", "failed"}, {"already stored", "failed"})
        kept = table.get("stored", table.get("already stored"))
        assert kept is not None
        assert table["failed"]["message"].startswith(
            f"another file of this run, {kept['path']}, was stored under these UIDs: "
            "not overwritten; ") or table["failed"]["message"].startswith(
            f"another file of this run, {os.path.abspath(kept['path'])}, was sent under "
            "these UIDs: not overwritten; "), table["failed"]["message"]
        (held,) = local_server.store.query("SELECT patient_name FROM instances")
        assert (held["patient_name"] == "Conflict^Copy") == kept["path"].endswith("b.dcm")
    assert not [r for r in local_server.requests if r.method == "DELETE"]


def test_overwrite_of_an_instance_held_under_another_study_deletes_nothing(
        local_server: LocalServer, pydicom_files: list[Path], tmp_path: Path) -> None:
    """The server holds the SOP Instance UID in another study: the DELETE of the file's
    path answers 404. Old dcmweb took that for done and reported "deleted the server's
    conflicting instance, then this file was not stored"."""
    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    assert run(local_server.url, "store", str(ct)).exit_code == 0
    moved = pydicom.dcmread(ct)
    moved.StudyInstanceUID, moved.SeriesInstanceUID = "1.2.826.0.1.99", "1.2.826.0.1.99.1"
    moved.PatientName = "Conflict^Copy"
    moved.save_as(tmp_path / "moved.dcm", enforce_file_format=True)
    result = overwrite(local_server, tmp_path / "moved.dcm", tmp_path)
    assert result.exit_code == 1, result.stderr
    (row,) = rows(tmp_path / "r8.jsonl")
    study, series, sop = uids(ct)
    assert row["status"] == "failed"
    assert row["message"].startswith(
        f"the server holds this SOP Instance UID under another study or series "
        f"(studies/{study}/series/{series}), not this file's; nothing was deleted: "
        f"delete studies/1.2.826.0.1.99/series/1.2.826.0.1.99.1/instances/{sop} failed: "
        "HTTP 404"), row["message"]
    (held,) = local_server.store.query("SELECT patient_name FROM instances")
    assert held["patient_name"] != "Conflict^Copy"


def test_the_series_holding_a_sop_instance_uid_are_found_on_orthanc(
        orthanc: Orthanc, pydicom_files: list[Path], tmp_path: Path) -> None:
    """The store-wide search overwrite makes after a DELETE that found nothing: Orthanc
    keeps one SOP Instance UID in two studies, and names both."""
    from dcmweb import Client
    from dcmweb.existing import ServerHoldings

    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    moved = pydicom.dcmread(ct)
    moved.StudyInstanceUID, moved.SeriesInstanceUID = "1.2.826.0.1.99", "1.2.826.0.1.99.1"
    moved.save_as(tmp_path / "moved.dcm", enforce_file_format=True)
    with Client(orthanc.url) as client:
        client.store([ct, tmp_path / "moved.dcm"])
        study, series, sop = uids(ct)
        assert ServerHoldings(client.http, client.base_url).series_holding(sop) == sorted([
            f"studies/{study}/series/{series}", "studies/1.2.826.0.1.99/series/1.2.826.0.1.99.1"])


def test_retry_failed_sends_only_the_failures(local_server: LocalServer, files: list[Path],
                                              pydicom_files: list[Path],
                                              tmp_path: Path) -> None:
    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    assert run(local_server.url, "store", str(ct)).exit_code == 0
    copy = conflicting_copy(ct, files[0].parent / "zz-copy.dcm")
    journal = tmp_path / "j.db"
    first = run(local_server.url, "store", str(files[0].parent), "--journal", str(journal))
    assert first.exit_code == 6
    local_server.clear_requests()
    (files[0].parent / "new.dcm").write_bytes(files[1].read_bytes())  # not in the journal

    retry = run(local_server.url, "store", str(files[0].parent), "--journal", str(journal),
                "--retry-failed", "--on-conflict", "skip")
    assert retry.exit_code == 0, retry.stderr
    assert posted_instances(local_server) == 1
    assert lines(retry.stderr)[-1].endswith(
        "Transferred 0 B in 0 files; 30 already stored, 1 conflict, "
        "1 not retried (not failed in the journal)")
    assert str(copy) in retry.stderr


def test_retry_failed_sends_a_failed_file_changed_since(local_server: LocalServer,
                                                        conflicts: list[Path],
                                                        tmp_path: Path) -> None:
    journal, report = tmp_path / "j.db", tmp_path / "r.jsonl"
    first = run(local_server.url, "store", str(conflicts[0].parent), "--journal", str(journal))
    assert first.exit_code == 1, first.stderr
    # The fix: the right bytes for c0 (its size and modification time change).
    conflicts[0].write_bytes(sorted((tmp_path / "held").iterdir())[0].read_bytes())

    retry = run("-q", local_server.url, "store", str(conflicts[0].parent), "--journal",
                str(journal), "--retry-failed", "--report", str(report))
    assert retry.exit_code == 6, retry.stderr
    assert [(Path(r["path"]).name, r["status"]) for r in rows(report)] == [
        ("c0.dcm", "stored"), ("c1.dcm", "failed"), ("c2.dcm", "failed")]
    assert "not retried" not in retry.stderr


def test_files_from_stdin_nul_separated_with_odd_names(local_server: LocalServer,
                                                       files: list[Path],
                                                       tmp_path: Path) -> None:
    odd = []
    for path, name in zip(files, ["with space.dcm", "ünïcødé.dcm", "new\nline.dcm"],
                          strict=False):
        target = tmp_path / name
        target.write_bytes(path.read_bytes())
        odd.append(target)
    listing = b"".join(os.fsencode(p) + b"\0" for p in odd)
    report = tmp_path / "r.jsonl"
    result = run(local_server.url, "store", "--files-from", "-", "-0", "--report",
                 str(report), stdin=listing)
    assert result.exit_code == 0, result.stderr
    assert sorted(r["path"] for r in rows(report)) == sorted(map(str, odd))
    assert len(server_uids(local_server)) == 3

    dash = run(local_server.url, "store", "-", stdin=f"{odd[0]}\n{odd[1]}\n".encode())
    assert dash.exit_code == 0, dash.stderr
    assert lines(dash.stderr)[-1].endswith("in 2 files")


def test_a_list_saved_by_notepad_is_read_whole(local_server: LocalServer, files: list[Path],
                                               tmp_path: Path) -> None:
    """A UTF-8 byte order mark before the first path and CRLF line ends: the mark was
    read as part of the first name, which then failed as a missing file."""
    listing = tmp_path / "list.txt"
    listing.write_bytes("\ufeff".encode() + b"".join(os.fsencode(p) + b"\r\n"
                                                    for p in files[:3]))
    report = tmp_path / "r.jsonl"
    result = run(local_server.url, "store", "--files-from", str(listing), "--report",
                 str(report))
    assert result.exit_code == 0, result.stderr
    assert sorted(r["path"] for r in rows(report)) == sorted(map(str, files[:3]))
    assert {r["status"] for r in rows(report)} == {"stored"}
    assert len(server_uids(local_server)) == 3


def test_every_name_has_its_own_row_and_line(local_server: LocalServer, files: list[Path],
                                             tmp_path: Path) -> None:
    """A name holding the byte 0xFF and one holding the four characters \\xff: old dcmweb
    gave both the same report row and log line, so a failed row could not be traced to
    its file; and it wrote an escape sequence in a name raw into the CSV, where `cat`
    ran it. Text (CSV, log lines) shows names as `ls -b` does, a backslash doubled; JSON
    lines carry each name exactly, a byte that is not UTF-8 as \\udcXX, which Python's
    json module reads back into the name open() takes."""
    folder = tmp_path / "odd"
    folder.mkdir()
    names = [b"a\xff.dcm", b"a\\xff.dcm", b"b\x1b[31m.dcm"]
    for source, name in zip(files, names, strict=False):
        os.rename(source, os.fsencode(folder) + b"/" + name)
    shown = [f"{folder}/a\\xff.dcm", f"{folder}/a\\\\xff.dcm", f"{folder}/b\\x1b[31m.dcm"]
    csv_report, jsonl_report = tmp_path / "r.csv", tmp_path / "r.jsonl"
    result = run(local_server.url, "store", str(folder), "--report", str(csv_report))
    assert result.exit_code == 0, result.stderr
    assert sorted(r["path"] for r in rows(csv_report)) == sorted(shown)
    assert b"\x1b" not in csv_report.read_bytes()
    logged = sorted(line.split(" uploaded as ")[0] for line in lines(result.stderr)
                    if " uploaded as " in line)
    assert logged == sorted(f"dcmweb: info: {name}" for name in shown)
    again = run(local_server.url, "store", str(folder), "--report", str(jsonl_report))
    assert again.exit_code == 0, again.stderr
    exact = sorted(r["path"] for r in rows(jsonl_report))
    assert exact == sorted(os.fsdecode(os.fsencode(folder) + b"/" + name) for name in names)
    for path in exact:
        assert Path(path).read_bytes()[128:132] == b"DICM"  # found again from its row


@pytest.mark.parametrize("report_name", ["r.csv", "r.jsonl"])
def test_a_name_that_is_not_utf8_is_journaled_and_reported(
        local_server: LocalServer, files: list[Path], tmp_path: Path, report_name: str) -> None:
    """A file named with a byte that is not UTF-8 (from another system's copy) had stopped
    every run with a journal before its first request, and lost the report of the rest."""
    folder = files[0].parent
    odd = os.fsencode(folder) + b"/bad\xffname.dcm"
    os.rename(files[2], odd)
    journal, report = tmp_path / "j.db", tmp_path / report_name
    first = run(local_server.url, "store", str(folder), "--journal", str(journal),
                "--report", str(report))
    assert first.exit_code == 0, first.stderr
    assert len(server_uids(local_server)) == len(files)
    table = rows(report)
    assert len(table) == len(files) and {r["status"] for r in table} == {"stored"}
    # CSV shows the byte as ls -b does; JSON lines carry the name itself (see below).
    assert (f"{folder}/bad\\xffname.dcm" if report_name.endswith(".csv")
            else os.fsdecode(odd)) in [r["path"] for r in table]
    # The log line writes the name as the CSV does (old dcmweb: "bad\\udcffname.dcm").
    assert any(line.startswith(f"dcmweb: info: {folder}/bad\\xffname.dcm uploaded as ")
               for line in lines(first.stderr))

    again = run(local_server.url, "store", str(folder), "--journal", str(journal))
    assert again.exit_code == 0, again.stderr
    assert lines(again.stderr)[-1].endswith(f"in 0 files; {len(files)} already stored")


@pytest.mark.parametrize("mask", ["{folder}", "{folder}/**"])
def test_a_folder_that_cannot_be_read_fails_and_is_reported(
        local_server: LocalServer, files: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, mask: str) -> None:
    """A subfolder the walk cannot open (permission denied: root reads every folder, so
    the refusal is made here) had been skipped without a word, exit 0."""
    folder = files[0].parent
    locked = folder / "locked"
    locked.mkdir()
    os.rename(files[0], locked / files[0].name)
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = tmp_path / "r.csv"
    result = run(local_server.url, "store", mask.format(folder=folder), "--report", str(report))
    assert result.exit_code == 6, result.stderr
    table = {r["path"]: (r["status"], r["message"]) for r in rows(report)}
    assert table[str(locked)] == ("failed", "cannot read the folder: Permission denied")
    assert len(table) == len(files)  # the folder's row, and every other file stored
    assert len(server_uids(local_server)) == len(files) - 1


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_symlinked_folder_is_stored_and_a_loop_is_a_skipped_row(
        local_server: LocalServer, files: list[Path], tmp_path: Path, dry_run: bool) -> None:
    """A link to a folder (/data/2026 -> /mnt/disk2/2026) was left out without a word,
    exit 0: a nightly job never uploaded that year."""
    size = human_size(sum(path.stat().st_size for path in files))
    folder = tmp_path / "tree"
    (folder / "own").mkdir(parents=True)
    os.rename(files[0], folder / "own" / files[0].name)
    (folder / "2026").symlink_to(files[1].parent, target_is_directory=True)
    (folder / "own" / "up").symlink_to(folder, target_is_directory=True)
    report = tmp_path / "r.jsonl"
    result = run(local_server.url, "-v", "store", str(folder), "--report", str(report),
                 *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 0, result.stderr
    loop = "a symbolic link loop (the folder is one of the folders it is in)"
    if dry_run:  # counted, not listed, as every skip of a dry run
        assert lines(result.stderr)[-1].endswith(
            f"would send {len(files)} files ({size}, 3 studies); skipped: 1 symbolic link loop")
        assert local_server.requests == []
        return
    assert f"dcmweb: warning: skipped {folder / 'own/up'}: {loop}" in lines(result.stderr)
    assert lines(result.stderr)[-1] == (
        f"dcmweb: info: Transferred {size} in {len(files)} files; 1 skipped")
    assert len(server_uids(local_server)) == len(files)
    table = {r["path"]: (r["status"], r["message"]) for r in rows(report)}
    assert table[str(folder / "own/up")] == ("skipped", loop)
    assert str(folder / "2026" / files[1].name) in table
    assert len(table) == len(files) + 1


@pytest.mark.parametrize("spelling", ["in", "./in", "ABSOLUTE"])
def test_an_exclude_path_is_relative_to_the_input_folder_however_it_is_spelled(
        local_server: LocalServer, files: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, spelling: str) -> None:
    """'--exclude skip/*' matched the path as typed: it excluded from 'in' but not from
    './in' or '/abs/in', and '--exclude in/skip' (a folder) excluded nothing."""
    folder = files[0].parent
    for name in ("keep", "skip"):
        (folder / name).mkdir()
    kept = human_size(sum(path.stat().st_size for path in files[:10]))
    for number, path in enumerate(files):
        os.rename(path, folder / ("keep" if number < 10 else "skip") / path.name)
    monkeypatch.chdir(tmp_path)
    given = str(folder) if spelling == "ABSOLUTE" else spelling
    dry = run(local_server.url, "store", given, "--exclude", "skip/*", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert lines(dry.stderr)[-1].endswith(f"would send 10 files ({kept}, 3 studies); "
                                          "20 excluded")
    report = tmp_path / "r.csv"
    real = run(local_server.url, "store", given, "--exclude", "skip", "--report", str(report))
    assert real.exit_code == 0, real.stderr
    assert {Path(row["path"]).parent.name for row in rows(report)} == {"keep"}
    assert len(server_uids(local_server)) == 10


def test_an_exclude_spelled_with_the_input_folder_is_refused_and_pruned_folders_counted(
        local_server: LocalServer, files: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """'store in --exclude in/skip/*' (the spelling that worked when patterns matched the
    path as typed) matched nothing: the files were stored, exit 0. A pruned folder was
    not counted anywhere, and '**/skip' missed a 'skip' at the top."""
    folder = files[0].parent
    (folder / "skip").mkdir()
    for path in files[20:]:
        os.rename(path, folder / "skip" / path.name)
    monkeypatch.chdir(folder.parent)
    for pattern in (f"{folder.name}/skip/*", f"./{folder.name}/skip/"):
        refused = run(local_server.url, "store", folder.name, "--exclude", pattern)
        assert refused.exit_code == 2, refused.stderr
        assert "would match nothing" in refused.stderr
        assert "write it relative to the folder: --exclude" in refused.stderr
    assert local_server.requests == []
    kept = human_size(sum(path.stat().st_size for path in files[:20]))
    for pattern in ("**/skip", "skip/", "./skip"):
        dry = run(local_server.url, "store", folder.name, "--exclude", pattern, "--dry-run")
        assert dry.exit_code == 0, dry.stderr
        assert lines(dry.stderr)[-1].endswith(
            f"would send 20 files ({kept}, 3 studies); 1 folder excluded (not walked)")


def test_dry_run_sends_nothing_and_says_what_it_would_do(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    folder = files[0].parent
    (folder / "notes.txt").write_text("hello")
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "empty2.dcm").write_bytes(b"")
    journal = tmp_path / "j.db"
    assert run(local_server.url, "store", *map(str, files[:10]), "--journal",
               str(journal)).exit_code == 0
    local_server.clear_requests()
    result = run(local_server.url, "store", str(folder), "--journal", str(journal),
                 "--dry-run", "--exclude", "synth-000029.dcm")
    assert result.exit_code == 0, result.stderr
    assert local_server.requests == []
    size = files[10].stat().st_size * 19 / 1024
    assert lines(result.stderr)[-1].endswith(
        f"Dry run: would send 19 files ({size:.1f} KiB, 3 studies); 10 already stored, "
        "1 excluded, skipped: 2 empty files, 1 not DICOM")


@pytest.mark.parametrize(("number", "expected"), [
    (1, "skipped: 1 empty file, 1 not DICOM, 1 DICOMDIR index, 1 FIFO (named pipe), "
        "1 directory, 1 not a regular file, an odd reason: 1"),
    (2, "skipped: 2 empty files, 2 not DICOM, 2 DICOMDIR indexes, 2 FIFOs (named pipes), "
        "2 directories, 2 not regular files, an odd reason: 2"),
])
def test_dry_run_summary_counts_skip_reasons_in_good_english(number: int,
                                                             expected: str) -> None:
    from dcmweb.bulkrecords import Summary
    from dcmweb.output import describe_summary

    reasons = ["empty file", "not a DICOM Part-10 file (no DICM marker)",
               "a DICOMDIR index, not an image", "not a regular file: a FIFO (named pipe)",
               "not a regular file: a directory", "not a regular file", "an odd reason"]
    summary = Summary(skip_reasons=Counter(dict.fromkeys(reasons, number)))
    # Old dcmweb: "2 empty file, 2 a DICOMDIR index, not an image, ...".
    assert describe_summary(summary, dry_run=True) == (
        f"Dry run: would send 0 files (0 B, 0 studies); {expected}")


def test_dry_run_summary_of_one_file_says_one_study(local_server: LocalServer,
                                                   files: list[Path]) -> None:
    result = run(local_server.url, "store", str(files[0]), "--dry-run")
    assert result.exit_code == 0, result.stderr
    size = files[0].stat().st_size / 1024
    # Old dcmweb: "(..., 1 studies)".
    assert lines(result.stderr)[-1] == (
        f"dcmweb: info: Dry run: would send 1 file ({size:.1f} KiB, 1 study)")


@pytest.mark.parametrize(("inputs", "code"), [
    (["missing.dcm"], 1),  # a file named that does not exist fails: nothing stored
    (["missing.dcm", "GOOD"], 6),  # ... beside a good one: partial failure
    (["missing-*.dcm"], 2),  # a mask matching nothing: no files to store
])
def test_dry_run_fails_on_missing_input_as_the_real_run_does(
        local_server: LocalServer, files: list[Path], tmp_path: Path, inputs: list[str],
        code: int) -> None:
    args = [str(files[0]) if name == "GOOD" else str(tmp_path / name) for name in inputs]
    dry = run(local_server.url, "store", *args, "--dry-run")
    assert local_server.requests == []
    real = run(local_server.url, "store", *args)
    assert (dry.exit_code, real.exit_code) == (code, code), (dry.stderr, real.stderr)
    # The same lines but the summary (Dry run: would send ... / Transferred ...) and
    # the real run's 'uploaded as'.
    assert lines(dry.stderr)[0] == lines(real.stderr)[0].removesuffix(")") + "; dry-run)"
    # The verdict says what the real run would do ("would fail"), not that a store failed.
    assert [line for line in lines(dry.stderr)[1:-1] if "Dry run: " not in line] == [
        line for line in lines(real.stderr)[1:-1]
        if "Transferred " not in line and " uploaded as " not in line]
    if code != 2:
        assert lines(dry.stderr)[1] == (f"dcmweb: error: {tmp_path / 'missing.dcm'} failed: "
                                        "cannot read: No such file or directory")
        assert lines(dry.stderr)[-1] == {
            1: "dcmweb: error: dry run: nothing would be stored: 1 of 1 file would fail",
            6: "dcmweb: error: dry run: 1 of 2 files would fail"}[code]
        assert "would" not in lines(real.stderr)[-1]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_dry_run_gives_the_real_runs_skip_reason_for_a_fifo(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "with-fifo"
    folder.mkdir()
    os.mkfifo(folder / "pipe.dcm")
    (folder / "a.dcm").write_bytes(files[0].read_bytes())
    result = run(local_server.url, "store", str(folder), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr)[-1].endswith(
        "skipped: 1 FIFO (named pipe)")


def test_corrupt_file_in_the_middle_fails_alone(local_server: LocalServer, files: list[Path],
                                                tmp_path: Path) -> None:
    bad = files[0].parent / "synth-000014b.dcm"
    data = bytearray(files[14].read_bytes())
    bad.write_bytes(bytes(data[:400]))  # header and meta intact, data set cut short
    report = tmp_path / "r.csv"
    result = run("-m", local_server.url, "store", str(files[0].parent), "--report", str(report))
    assert result.exit_code == 6, result.stderr
    table = {Path(r["path"]).name: r for r in rows(report)}
    assert len(table) == 31
    assert table[bad.name]["status"] == "failed"
    assert table[bad.name]["message"]
    assert {r["status"] for name, r in table.items() if name != bad.name} == {"stored"}
    assert any(line.startswith(f"{bad} failed: ")
               for line in logs.messages(result.stderr, "error"))


def kill_run(url: str, folder: Path, journal: Path, report: Path, *options: str,
             after: int) -> list[str]:
    """Start a journaled ``-m`` store of `folder` in a process and SIGKILL it once it has
    logged `after` files as uploaded; return the command, for the rerun."""
    command = [sys.executable, "-m", "dcmweb", "-m", url, "store", str(folder),
               "--journal", str(journal), "--report", str(report), *options]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    seen = 0
    for line in process.stderr:
        seen += " uploaded as " in line
        if seen >= after:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, f"ended before the kill, at {seen} files"
    return command


def check_rerun_report(report: Path, files: list[Path], before: set[str]) -> list[str]:
    """The rerun's report names every input file once, each stored or already stored
    (by the journal or by a search for what the killed run left unsure); return the
    SOP Instance UIDs the rerun posted although the server already held them."""
    table = rows(report)
    assert sorted(r["path"] for r in table) == sorted(map(str, files))
    assert {r["status"] for r in table} <= {"stored", "already stored"}
    assert {r["message"] for r in table if r["status"] == "already stored"} <= {
        "stored by an earlier run (journal)", "found on the server after an interrupted run"}
    return [r["sop_instance_uid"] for r in table
            if r["status"] == "stored" and r["sop_instance_uid"] in before]


def check_journal(journal: Path, files: list[Path]) -> None:
    """The journal, read as the next run would, holds every file as stored."""
    with sqlite3.connect(journal) as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM files GROUP BY status"))
    assert statuses.keys() <= {"stored", "already stored"}
    assert sum(statuses.values()) == len(files)


def test_files_are_marked_in_the_journal_before_their_answer_comes(tmp_path: Path) -> None:
    """A run killed while the server holds a request's answer: the journal, read as the
    next run would, already marks the request's files as sent with an unknown outcome, so
    the rerun asks the server before sending them again. Old dcmweb committed the marks
    with the next outcome only: after a kill the journal knew nothing of them."""
    files = corpus.synthetic_files(tmp_path / "in", 3, seed="marks")
    journal = tmp_path / "j.db"
    arrived, release = threading.Event(), threading.Event()

    def stow(req: Request) -> None:
        arrived.set()  # the whole body is in
        release.wait(30)
        req.reply(503)

    with Hostile() as fake:
        fake.route("POST", "/studies", stow)
        process = subprocess.Popen(
            [sys.executable, "-m", "dcmweb", fake.url, "store", str(tmp_path / "in"),
             "--journal", str(journal)], stderr=subprocess.DEVNULL)
        try:
            assert arrived.wait(60)
            with sqlite3.connect(journal) as db:
                marked = dict(db.execute("SELECT path, status FROM files"))
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
            release.set()
    assert marked == {str(path): "sending" for path in files}


def test_a_check_that_stops_the_run_counts_its_file_as_not_attempted(tmp_path: Path) -> None:
    """Files a killed run left "sending" are looked up before a resend; when that search
    stops the run (credentials expired), every file is counted (old dcmweb: "2 not
    attempted" of 3: the file being checked was counted nowhere)."""
    files = corpus.synthetic_files(tmp_path / "in", 3, seed="unsure")
    journal = tmp_path / "j.db"
    with LocalServer(tmp_path / "server", token="not-yours") as server:
        with Journal(journal, server.url + "/studies") as marks:
            for path in files:
                marks.mark_sending(os.path.abspath(path), Stamp.of(path.stat()),
                                   (None, None, None))
        result = run(server.url, "store", str(tmp_path / "in"), "--journal", str(journal))
        assert [r.method for r in server.requests] == ["GET"]
    assert result.exit_code == 3, result.stderr
    assert "dcmweb: info: Transferred 0 B in 0 files; 3 not attempted" in lines(result.stderr)


def test_a_check_that_stops_the_run_lets_the_batches_in_flight_finish(tmp_path: Path) -> None:
    """The journal's check of a file a killed run left "sending" fails (credentials)
    while batches are on their way: they finish and are reported. Old dcmweb stopped at
    once and counted them "not attempted", and the server stored them after the run had
    ended. With -m the checks run ahead on the workers (4 files each), so the file is
    far enough down the list to be checked only once the first batches are answered;
    how many more left before it failed is the threads' timing: the report must hold
    what was sent, and the server no more."""
    files = corpus.synthetic_files(tmp_path / "in", 24, seed="in-flight")
    journal = tmp_path / "j.db"
    with LocalServer(tmp_path / "server") as server:
        with Journal(journal, server.url + "/studies") as marks:
            # checked once the first answers came (1 s each)
            marks.mark_sending(os.path.abspath(files[20]), Stamp.of(files[20].stat()),
                               (None, None, None))
        server.inject_fault(delay=1, count=10**6, method="POST")  # answers come late
        server.inject_fault(401, count=10**6, method="GET")
        report = tmp_path / "r.jsonl"
        result = run("-m", "--workers", "2", server.url, "store", str(tmp_path / "in"),
                     "--batch-size", "1", "--journal", str(journal), "--report", str(report))
        assert result.exit_code == 3, result.stderr
        report_rows = {row["path"]: row["status"] for row in rows(report)}
        sent = files[:len(report_rows)]
        assert len(sent) >= 2 and report_rows == {str(p): "stored" for p in sent}
        assert re.search(rf"Transferred [0-9.]+ KiB in {len(sent)} files; "
                         rf"{24 - len(sent)} not attempted", result.stderr)
        # Nothing still on its way: the server holds what the report says, no more.
        assert [r.method for r in server.requests].count("POST") == len(sent)
        assert server_uids(server) == {corpus.sop_instance_uid(p) for p in sent}


def mark_sending(journal: Path, server: LocalServer, *paths: Path) -> None:
    """Leave the files "sending" in the journal, as a run killed with them in flight."""
    with Journal(journal, server.url + "/studies") as marks:
        for path in paths:
            marks.mark_sending(os.path.abspath(path), Stamp.of(path.stat()), (None, None, None))


@pytest.mark.parametrize(("policy", "code", "status"), [
    ("fail", 1, "failed"), ("skip", 0, "conflict"), ("overwrite", 0, "stored")])
def test_a_conflict_in_flight_at_a_kill_is_not_found_already_stored(
        local_server: LocalServer, pydicom_files: list[Path], tmp_path: Path, policy: str,
        code: int, status: str) -> None:
    """A killed run had sent a file whose UIDs the server holds with other bytes: old
    dcmweb's rerun found the UID and reported it "already stored" (exit 0). Read back,
    it is the conflict an uninterrupted run reports."""
    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    assert run(local_server.url, "store", str(ct)).exit_code == 0
    copy = conflicting_copy(ct, tmp_path / "copy.dcm")
    journal, report = tmp_path / "j.db", tmp_path / "r.jsonl"
    mark_sending(journal, local_server, copy)
    result = run(local_server.url, "store", str(copy), "--journal", str(journal),
                 "--report", str(report), "--on-conflict", policy)
    assert result.exit_code == code, result.stderr
    [row] = rows(report)
    assert row["status"] == status
    assert row["attempts"] == 1  # the killed run
    (held,) = local_server.store.query("SELECT patient_name FROM instances")
    if policy == "overwrite":
        assert row["message"].startswith("replaced the server's conflicting instance")
        assert held["patient_name"] == "Conflict^Copy"
    else:
        assert row["message"] == ("sent by an interrupted run; the server holds other bytes "
                                  "under these UIDs")
        assert held["patient_name"] != "Conflict^Copy"
    with Journal(journal, local_server.url + "/studies") as marks:
        entry = marks.lookup(os.path.abspath(copy))
    assert entry is not None and entry.status == status


def test_a_file_in_flight_at_a_kill_whose_copy_cannot_be_read_back_is_sent_again(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    """The rerun finds the UID of a file a killed run sent, and every read-back of the
    server's copy is cut: not proven, so it is sent again (the server's answer decides);
    old dcmweb reported it "already stored" from the UID alone."""
    assert run(local_server.url, "store", str(files[0])).exit_code == 0
    journal, report = tmp_path / "j.db", tmp_path / "r.jsonl"
    mark_sending(journal, local_server, files[0])
    local_server.inject_fault(cut=True, method="GET", count=10**6,
                              path_contains=f"instances/{corpus.sop_instance_uid(files[0])}")
    local_server.clear_requests()
    result = run(local_server.url, "store", str(files[0]), "--journal", str(journal),
                 "--report", str(report))
    assert result.exit_code == 0, result.stderr
    [row] = rows(report)
    assert (row["status"], row["confirmed_by"], row["attempts"]) == ("stored", "answer", 2)
    assert posted_instances(local_server) == 1


def _marked_sending(journal: Path) -> int:
    """How many files a running store's journal marks as being sent (0 before it exists)."""
    if not journal.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM files WHERE status = 'sending'"
                              ).fetchone()[0]
    except sqlite3.Error:  # not made yet, or being made
        return 0


def test_attempts_count_a_run_killed_with_the_file_in_flight(tmp_path: Path) -> None:
    """After kill -9, the rerun found the files in flight on the server and reported them
    with attempts 0 (the journal's mark did not count the run that sent them)."""
    corpus.synthetic_files(tmp_path / "in", 4, seed="killed-attempts")
    journal, report = tmp_path / "j.db", tmp_path / "r.jsonl"
    with LocalServer(tmp_path / "server") as server:
        server.inject_fault(delay=2, count=10**6, method="POST")  # stored, answered late
        command = [sys.executable, "-m", "dcmweb", server.url, "store", "--batch-size",
                   "2", "--journal", str(journal), str(tmp_path / "in")]
        process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        # The server logs a request once answered: the journal's marks tell that the first
        # batch is on its way (marked just before it is sent; the server holds it 2 s).
        while _marked_sending(journal) < 2:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
        time.sleep(0.5)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        time.sleep(2.5)  # the server stores the request it was holding
        server.clear_faults()
        rerun = subprocess.run([*command, "--report", str(report)], capture_output=True,
                               text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    table = {row["path"]: (row["status"], row["message"], row["attempts"])
             for row in rows(report)}
    found = [path for path, (_, message, _) in table.items()
             if message == "found on the server after an interrupted run"]
    assert len(found) == 2, table  # the batch in flight
    for path in found:
        assert table[path][2] == 1, table


def test_sigkill_mid_run_then_rerun_stores_everything_once(local_server: LocalServer,
                                                           tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 1500, studies=10, seed="kill")
    journal, report = tmp_path / "j.db", tmp_path / "r.jsonl"
    command = kill_run(local_server.url, tmp_path / "in", journal, report, after=500)
    before = server_uids(local_server)
    assert 500 <= len(before) < 1500

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert server_uids(local_server) == {corpus.sop_instance_uid(p) for p in files}
    resent = check_rerun_report(report, files, before)
    assert len(resent) <= 75  # at most 5 %: only the batches in flight at the kill
    assert len([r for r in rows(report) if r["status"] == "already stored"]) >= 500 - 75


def orthanc_uids(orthanc: Orthanc) -> list[str]:
    """Every instance Orthanc holds, by SOP Instance UID (one entry per stored copy)."""
    response = requests.get(orthanc.rest_url + "/instances?expand", timeout=60)
    response.raise_for_status()
    return [i["MainDicomTags"]["SOPInstanceUID"] for i in response.json()]


def test_sigkill_mid_run_then_rerun_against_orthanc(orthanc: Orthanc, tmp_path: Path) -> None:
    """Orthanc ignores duplicates silently, so the re-posts are counted from the rerun's
    report: files it stored although Orthanc held them before the rerun."""
    files = corpus.synthetic_files(tmp_path / "in", 600, studies=6, seed="kill-orthanc")
    journal, report = tmp_path / "j.db", tmp_path / "r.jsonl"
    command = kill_run(orthanc.url, tmp_path / "in", journal, report, "--workers", "4",
                       "--batch-size", "10", after=200)
    before = set(orthanc_uids(orthanc))
    assert 200 <= len(before) < 600

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    held = orthanc_uids(orthanc)
    assert sorted(held) == sorted(corpus.sop_instance_uid(p) for p in files)  # each once
    resent = check_rerun_report(report, files, before)
    print(f"\nOrthanc held {len(before)} files at the kill; re-posted {len(resent)}")
    assert len(resent) <= 30 + 4 * 10  # 5 % plus the 4 batches of 10 in flight at the kill
    check_journal(journal, files)


def test_sigkill_mid_run_then_rerun_with_random_faults(tmp_path: Path) -> None:
    """Kill -9 while the server drops connections, loses answers after storing, and
    answers 500, 503 and 429 at random (seeded); the rerun, with faults still on at a
    lower rate, ends with every file stored once and nothing sent twice unproven."""
    from dcmweb.testing.faults import Chaos

    files = corpus.synthetic_files(tmp_path / "in", 600, studies=6, seed="kill-chaos")
    journal, report = tmp_path / "j.db", tmp_path / "r.jsonl"
    rates = {"lost": 0.06, "drop": 0.04, "500": 0.03, "503": 0.03, "429": 0.05}
    with LocalServer(tmp_path / "store", refuse_duplicates=True) as server:
        server.faults.set_chaos(first := Chaos(11, rates))
        command = kill_run(server.url, tmp_path / "in", journal, report, "--workers", "4",
                           "--retries", "4", "--batch-size", "10", after=200)
        before = server_uids(server)
        assert 200 <= len(before) < 600

        server.faults.set_chaos(second := Chaos(12, {k: r / 2 for k, r in rates.items()}))
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
        server.faults.set_chaos(None)
        count = server.store.query("SELECT count(*) AS n FROM instances")[0]["n"]
        held, duplicates = server_uids(server), list(server.duplicates)

    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resent = check_rerun_report(report, files, before)
    print(f"\nfaults before the kill {dict(first.injected)}, in the rerun "
          f"{dict(second.injected)}, duplicates {len(duplicates)}, re-posted {len(resent)}")
    assert sum(first.injected.values()) and sum(second.injected.values())
    assert count == len(files) and held == {corpus.sop_instance_uid(p) for p in files}
    assert len(resent) <= 30 + 4 * 10
    # A duplicate the server refused is only one dcmweb then reported as already stored.
    already = {r["sop_instance_uid"] for r in rows(report) if r["status"] == "already stored"}
    assert set(duplicates) <= already
    check_journal(journal, files)


def test_skip_existing_after_a_partial_upload_sends_only_the_rest(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    assert run(local_server.url, "store", *map(str, files[:12])).exit_code == 0
    local_server.clear_requests()
    report = tmp_path / "r.jsonl"
    result = run(local_server.url, "store", str(files[0].parent), "--skip-existing",
                 "--report", str(report))
    assert result.exit_code == 0, result.stderr
    searches = [r for r in local_server.requests if r.method == "GET" and "?" in r.path]
    # One search per series (two pages: a page comes back empty at the end), not per file.
    assert len(searches) == 2 * 3
    # And per series one instance retrieved: a listing may lag behind a delete (Google).
    assert len(local_server.requests) - len(searches) - posted_instances(local_server) == 3
    assert lines(result.stderr)[-1].endswith("in 18 files; 12 already stored")
    statuses = {Path(r["path"]).name: r["status"] for r in rows(report)}
    assert statuses == {p.name: "already stored" if i < 12 else "stored"
                        for i, p in enumerate(files)}
    assert len(server_uids(local_server)) == 30


def test_skip_existing_finds_what_tiny_pacs_holds(tinypacs_fresh: TinyPacs,
                                                   tmp_path: Path) -> None:
    """tiny-pacs has no study-level instance search (404): old dcmweb took that for "the
    study is not there" and sent every file again (refused as duplicates, 409)."""
    files = corpus.synthetic_files(tmp_path / "in", 4, studies=2, seed="tiny")
    assert run(tinypacs_fresh.url, "store", *map(str, files[:3])).exit_code == 0
    report = tmp_path / "r.jsonl"
    result = run(tinypacs_fresh.url, "store", str(tmp_path / "in"), "--skip-existing",
                 "--report", str(report))
    assert result.exit_code == 0, result.stderr
    table = {Path(r["path"]).name: (r["status"], r["message"], r["http_status"])
             for r in rows(report)}
    assert table == {
        **{p.name: ("already stored", "already on the server (--skip-existing)", None)
           for p in files[:3]},
        files[3].name: ("stored", None, 200)}


@contextmanager
def counting_opens(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """How many times each path is opened (by open() or os.open()) in the block."""
    opened: Counter[str] = Counter()
    real_open, real_os_open = builtins.open, os.open

    def counted_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened[os.fspath(file)] += 1
        return real_open(file, *args, **kwargs)

    def counted_os_open(path: Any, *args: Any, **kwargs: Any) -> int:
        opened[os.fspath(path)] += 1
        return real_os_open(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", counted_open)
        patch.setattr(os, "open", counted_os_open)
        yield opened


def test_skip_existing_reads_a_file_no_more_than_a_plain_run(
        local_server: LocalServer, files: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    with counting_opens(monkeypatch) as plain:
        assert run(local_server.url, "store", *map(str, files[:4])).exit_code == 0
    with counting_opens(monkeypatch) as skipping:
        result = run(local_server.url, "store", "--skip-existing", *map(str, files[:6]))
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr)[-1].endswith("in 2 files; 4 already stored")
    sent = {plain[str(path)] for path in files[:4]}
    assert len(sent) == 1 and sent.pop() >= 1
    # Old dcmweb read each file's head once for the server check and again to send it.
    assert [skipping[str(path)] for path in files[:6]] == [1] * 4 + [plain[str(files[0])]] * 2


def test_library_bulk_store_with_journal(local_server: LocalServer, files: list[Path],
                                         tmp_path: Path) -> None:
    from dcmweb import Client
    from dcmweb.bulkrecords import Outcome

    seen: list[Outcome] = []
    with Client(local_server.url, workers=3) as client:
        summary = client.bulk_store([files[0].parent], journal=tmp_path / "j.db",
                                    on_outcome=seen.append)
        assert summary.counts == {"stored": 30}
        assert {o.path for o in seen} == set(files)
        again = client.bulk_store([str(files[0].parent)], journal=tmp_path / "j.db")
    assert again.counts == {"already stored": 30}
    assert again.stored_bytes == 0


def test_a_callback_that_raises_stops_the_run_with_every_stored_file_reported(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    """Old dcmweb raised at once: the report had 2 rows while the server held the whole
    batch of 5, and the journal still said 'sending' for 3 of them."""
    from dcmweb import Client
    from dcmweb.bulkrecords import Outcome

    seen: list[Outcome] = []

    def callback(outcome: Outcome) -> None:
        seen.append(outcome)
        if len(seen) == 2:
            raise RuntimeError("caller bug")

    journal, report = tmp_path / "j.db", tmp_path / "r.jsonl"
    with Client(local_server.url) as client:
        with pytest.raises(RuntimeError, match="caller bug"):
            client.bulk_store(files[:10], batch_size=5, journal=journal, report=report,
                              on_outcome=callback)
        assert len(seen) == 2  # not called again once it raised
        held = server_uids(local_server)
        # The batch in flight; not the file read ahead for the next one (old dcmweb sent
        # it as a batch of its own).
        assert len(held) == 5
        assert {row["sop_instance_uid"] for row in rows(report)} == held
        assert {row["status"] for row in rows(report)} == {"stored"}
        with Journal(journal, f"{local_server.url}/studies") as entries:
            # Taken from the input, never sent: a rerun asks the server before sending.
            assert entries.counts() == {"stored": 5, "sending": 1}
        again = client.bulk_store(files[:10], batch_size=5, journal=journal)
    assert again.counts == {"already stored": 5, "stored": 5}


def test_a_callback_that_raises_lets_only_the_batches_in_flight_finish(
        local_server: LocalServer, tmp_path: Path) -> None:
    """Old dcmweb still sent the batches queued for the workers (up to two per worker):
    4 workers, batches of 5 and a callback raising at the 5th outcome stored 41 files."""
    from dcmweb import Client
    from dcmweb.bulkrecords import Outcome

    files = corpus.synthetic_files(tmp_path / "in", 80, studies=8, seed="halt")
    # Batch 1 is answered at once; the next four keep every worker busy meanwhile.
    for first in files[5:25:5]:
        local_server.inject_fault(delay=1.0, method="POST",
                                  body_contains=str(pydicom.dcmread(first).SOPInstanceUID))
    seen: list[Outcome] = []

    def quota(outcome: Outcome) -> None:
        seen.append(outcome)
        if len(seen) == 5:
            raise RuntimeError("quota reached")

    report = tmp_path / "r.jsonl"
    with (Client(local_server.url, workers=4) as client,
          pytest.raises(RuntimeError, match="quota reached")):
        client.bulk_store(files, batch_size=5, report=report, on_outcome=quota)
    held = server_uids(local_server)
    # Batch 1, the three being sent when the callback raised, and batch 5 if its worker
    # took it before then; none of those queued behind them.
    assert len(held) in (20, 25)
    assert {row["sop_instance_uid"] for row in rows(report)} == held


def test_a_file_named_twice_in_a_list_is_sent_once_and_labelled_so(
        local_server: LocalServer, files: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Old dcmweb posted 'a' and './a' both (one row with attempts 2), and called the
    third mention 'stored by an earlier run (journal)' in a fresh journal."""
    monkeypatch.chdir(files[0].parent)
    a, b = files[0].name, files[1].name
    listing = tmp_path / "list.txt"
    listing.write_text(f"{a}\n./{a}\n{b}\n{a}\n")
    report = tmp_path / "r.jsonl"
    result = run(local_server.url, "store", "--files-from", str(listing), "--batch-size", "1",
                 "--journal", str(tmp_path / "j.db"), "--report", str(report))
    assert result.exit_code == 0, result.stderr
    assert posted_instances(local_server) == 2
    assert [(row["path"], row["status"], row["message"], row["attempts"])
            for row in rows(report)] == [
        (a, "skipped", "named again in the inputs; sent once", 0),  # ./a
        (a, "stored", None, 1),
        (a, "already stored", "named again in the inputs; stored earlier in this run", 1),
        (b, "stored", None, 1)]


@pytest.mark.parametrize("journal", [True, False])
def test_a_file_not_dicom_named_again_is_not_said_to_be_sent(
        local_server: LocalServer, files: list[Path], tmp_path: Path, journal: bool) -> None:
    """Probe 5: a text file listed 1,000 times was 'named again in the inputs; sent once'
    (never sent) for the mentions that came while its first was held, unreported."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not DICOM")
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{notes}\n{path}\n" for path in files[:20]))
    report = tmp_path / "r.jsonl"
    kept = ["--journal", str(tmp_path / "j.db")] if journal else []
    result = run("-m", local_server.url, "store", "--files-from", str(listing),
                 "--report", str(report), *kept)
    assert result.exit_code == 0, result.stderr
    said = [row["message"] for row in rows(report) if row["path"] == str(notes)]
    assert len(said) == 20
    assert said[0] == "not a DICOM Part-10 file (no DICM marker)"
    assert not [message for message in said if "sent" in message], said
    assert len(server_uids(local_server)) == 20


def test_docs_example_runs_twice_as_a_nightly_job(local_server: LocalServer,
                                                  files: list[Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from dcmweb_devtools.docexamples import run_example

    monkeypatch.chdir(tmp_path)
    files[0].parent.rename("scans")
    (tmp_path / "scans" / "readme.txt").write_text("not DICOM, excluded")
    example = "dcmweb HOST store scans --journal nightly.db --report nightly.csv --exclude '*.txt'"
    first = run_example(example, local_server.url)
    assert first.exit_code == 0, first.stderr
    assert [r["status"] for r in rows(tmp_path / "nightly.csv")] == ["stored"] * 30
    second = run_example(example, local_server.url)
    assert second.exit_code == 0, second.stderr
    assert [r["status"] for r in rows(tmp_path / "nightly.csv")] == ["already stored"] * 30
    assert logs.messages(second.stderr, "info")[-1] == (
        "Transferred 0 B in 0 files; 30 already stored, 1 excluded")


def test_batches_are_cut_so_every_worker_has_work(local_server: LocalServer,
                                                  files: list[Path]) -> None:
    # 30 files, 5 workers: not 2 batches of 20 (3 workers idle) but 10 requests of 3.
    result = run("-m", "--workers", "5", local_server.url, "store", str(files[0].parent))
    assert result.exit_code == 0, result.stderr
    posts = [r for r in local_server.requests if r.method == "POST"]
    assert len(posts) == 10
    assert len(server_uids(local_server)) == 30


def test_plain_progress_lines_without_a_terminal(files: list[Path]) -> None:
    import io

    from dcmweb.bulkrecords import Outcome
    from dcmweb.output import Output
    from dcmweb.progress import StorePrinter

    stderr = io.StringIO()
    now = [0.0]
    printer = StorePrinter(Output(stderr=stderr), total=lambda: 30, every=10,
                           clock=lambda: now[0], total_bytes=lambda: 30 * 1024 * 1024)
    for index, path in enumerate(files):
        now[0] = index * 1.0
        printer(Outcome(path, "failed" if index == 3 else "stored", 1024 * 1024,
                        message="x", sent=True))
        if index in (10, 20):
            printer.tick()  # the timer's thread
    progress = [m for m in logs.messages(stderr.getvalue(), "info")
                if m.startswith("progress:")]
    assert progress == [
        "progress: 11 of 30 files, 10.0 MiB stored, 1 failed, 1.1 files/s, 11.0 MiB sent "
        "at 1.1 MiB/s, about 17 s left",
        "progress: 21 of 30 files, 20.0 MiB stored, 1 failed, 1.1 files/s, 21.0 MiB sent "
        "at 1.1 MiB/s, about 9 s left"]
    assert "\r" not in stderr.getvalue()


@pytest.mark.parametrize(("flags", "shown"), [([], False),
                                              (["--progress-every", "0.000001"], True)])
def test_quiet_hides_progress_lines_unless_progress_every_is_given(
        local_server: LocalServer, files: list[Path], flags: list[str], shown: bool) -> None:
    """Old dcmweb: -q silently cancelled an explicit --progress-every (a long cron run)."""
    local_server.inject_fault(delay=0.5, method="POST")  # a run the timer's lines outlast
    result = run("-q", local_server.url, "store", str(files[0].parent), *flags)
    assert result.exit_code == 0, result.stderr
    progress = [m for m in logs.messages(result.stderr, "info") if m.startswith("progress:")]
    assert bool(progress) == shown, result.stderr
    assert [m for m in logs.messages(result.stderr, "info") if not m.startswith("progress:")
            ] == []  # -q still hides the per-file lines and the summary of a good run


def test_no_progress_line_after_the_run_has_stopped(local_server: LocalServer,
                                                     tmp_path: Path) -> None:
    """The files a stopped run hands over (unconfirmed) came with a progress line among
    the final warnings: "progress: 2 of 4 files, ..., about 1500 s left"."""
    corpus.synthetic_files(tmp_path / "in", 4)
    local_server.inject_fault(after=True, method="POST")  # stored, the answer lost
    local_server.inject_fault(401, method="GET", count=10)  # the check search: stops
    result = run(local_server.url, "store", "--batch-size", "2", "--progress-every",
                 "0.000001", str(tmp_path / "in"))
    assert result.exit_code == 3, result.stderr
    messages = lines(result.stderr)
    assert sum(" unconfirmed: " in m for m in messages) == 2
    stop = next(n for n, m in enumerate(messages) if " unconfirmed: " in m)
    assert not [m for m in messages[stop:] if "progress:" in m], messages


@pytest.mark.parametrize(("total", "expected"), [
    (None, "progress: 1 file, 1.0 MiB stored, 0 failed, 6.0 files/min, 1.0 MiB sent at "
           "102.4 KiB/s"),
    (1, "progress: 1 of 1 file, 1.0 MiB stored, 0 failed, 6.0 files/min, 1.0 MiB sent at "
        "102.4 KiB/s, about 0 s left"),
])
def test_plain_progress_line_of_one_file_is_singular(files: list[Path], total: int | None,
                                                     expected: str) -> None:
    import io

    from dcmweb.bulkrecords import Outcome
    from dcmweb.output import Output
    from dcmweb.progress import StorePrinter

    stderr = io.StringIO()
    printer = StorePrinter(Output(stderr=stderr), total=lambda: total, every=10,
                           clock=iter([0.0, 10.0]).__next__,
                           total_bytes=lambda: total and 1024 * 1024)
    printer(Outcome(files[0], "stored", 1024 * 1024, sent=True))
    printer.tick()
    # Old dcmweb: "progress: 1 files, ..."; then "0.1 files/s" for one file in 10 s.
    assert [m for m in logs.messages(stderr.getvalue(), "info")
            if m.startswith("progress:")] == [expected]


@pytest.mark.parametrize("max_rate", [None, "30/s"])
def test_quota_429s_end_with_every_file_stored(tmp_path: Path, max_rate: str | None) -> None:
    """A server with a request quota (30/s, 429 above): adaptive concurrency alone, and
    with --max-rate at the quota, store every file and do not hammer the server."""
    from dcmweb.testing.faults import Quota

    files = corpus.synthetic_files(tmp_path / "in", 150, studies=3, seed="quota")
    with LocalServer(tmp_path / "store") as server:
        server.quota = Quota(30, burst=15)
        options = ["--max-rate", max_rate] if max_rate else []
        result = run("-m", "-v", "--workers", "12", *options, server.url, "store",
                     str(tmp_path / "in"), "--batch-size", "1")
        assert result.exit_code == 0, result.stderr
        assert len(server_uids(server)) == len(files)
        assert server.quota.allowed >= len(files)
        # At the quota almost no refusals. Alone, the first 429s teach the pace: 12
        # workers in flight when the burst runs out make a wave of refusals, 3-10 in 12
        # runs on a fresh machine (a bound of 6 failed there): under a tenth of the
        # 150 requests.
        assert server.quota.refused < (3 if max_rate else 15), server.quota.refused
        if not max_rate:
            assert "pacing at" in result.stderr


def test_a_quota_counted_per_window_without_retry_after_ends_with_every_file_stored(
        tmp_path: Path) -> None:
    """Google's kind of quota: so many requests per window, then 429s with no
    Retry-After until the next window. Every file is stored and the 429s stay few."""
    from dcmweb.testing.faults import WindowQuota

    files = corpus.synthetic_files(tmp_path / "in", 240, studies=3, seed="window")
    with LocalServer(tmp_path / "store") as server:
        server.quota = WindowQuota(80, window=3.0)
        result = run("-m", "-v", "--workers", "16", server.url, "store", str(tmp_path / "in"),
                     "--batch-size", "1")
        assert result.exit_code == 0, result.stderr
        assert len(server_uids(server)) == len(files)
        assert server.quota.allowed == len(files)
        assert server.quota.refused < 30, server.quota.refused
        assert "pacing at" in result.stderr


def test_verbose_run_starts_with_the_same_opening_line(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    url = local_server.url.replace("http://", "http://alice:secret@")
    result = run("-v", url, "store", str(files[0].parent), "--journal", str(tmp_path / "j.db"),
                 "--shard", "1/1", "--exclude", "*.txt", "--skip-existing")
    assert result.exit_code == 0, result.stderr
    first = logs.messages(result.stderr, "info")[0]
    assert first == (f"store to {url.replace('alice:secret', '***')} from "
                     f"{files[0].parent} (1 worker; batch-size 20; journal {tmp_path / 'j.db'}; "
                     "shard 1/1; "
                     "exclude *.txt; skip-existing)")
    assert "secret" not in result.stderr
