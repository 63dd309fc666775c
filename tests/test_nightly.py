"""The nightly cron job over many nights: files still being copied in when it runs,
--min-age, a quiet good night, --retry-failed after a folder was fixed; against the local
GCP-like server (it stores whatever it is given, so a half-written file would show)."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.errors import UsageError
from dcmweb.journal import Journal
from dcmweb.store import CHANGED_WHILE_SENT
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def rows(report: Path) -> list[dict[str, str]]:
    with report.open(newline="") as handle:
        return list(csv.DictReader(handle))


def held(server: LocalServer) -> int:
    return len(server.store.query("SELECT sop_uid FROM instances"))


def write_in_place(path: Path) -> None:
    """Go on with a copy that set the file's size first (rsync --preallocate, an SMB
    copy): bytes written in place, the size kept, the mtime moved."""
    before = os.stat(path)
    with path.open("r+b") as handle:
        handle.seek(before.st_size - 100)
        handle.write(b"\x01" * 100)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))


def test_a_file_written_after_its_listing_is_not_stored_and_its_batch_is(
        local_server: LocalServer, tmp_path: Path) -> None:
    first, second, third = corpus.synthetic_files(tmp_path / "in", 3)

    def listing() -> Iterator[Path]:
        yield first
        write_in_place(first)  # after its head was read, before its batch goes out
        yield second
        yield third

    with Client(local_server.url) as client:
        results = {r.path: r for r in client.iter_store(listing(), batch_size=3)}
    assert (results[first].status, results[first].message) == ("failed", CHANGED_WHILE_SENT)
    assert [results[p].status for p in (second, third)] == ["stored", "stored"]
    assert held(local_server) == 2  # old dcmweb stored the half-written file, "stored"
    # The cut request reached the server as no request at all; the others went in one.
    assert sum(r.method == "POST" for r in local_server.requests) == 1


def age(path: Path, seconds: float) -> None:
    """Date the file's last change ``seconds`` ago."""
    when = time.time() - seconds
    os.utime(path, (when, when))


def test_min_age_leaves_a_file_still_being_copied_in_for_a_later_run(
        local_server: LocalServer, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "tree", 3)
    for path in files:
        age(path, 3600)
    fresh = files[0]
    age(fresh, 5)  # a copy that was still going on a few seconds ago
    journal, report = tmp_path / "j.db", tmp_path / "r.csv"
    night = ("-q", local_server.url, "store", str(tmp_path / "tree"), "--journal",
             str(journal), "--report", str(report), "--min-age", "60")
    first = run(*night)
    assert (first.exit_code, first.stderr) == (0, "")  # a good night: nothing to say
    by_path = {row["path"]: row for row in rows(report)}
    assert by_path[str(fresh)]["status"] == "too new"
    assert by_path[str(fresh)]["message"] == ("modified 5 s ago, less than the minimum age "
                                              "of 60 s: left for a later run")
    assert held(local_server) == 2
    verbose = run(*night[1:])
    assert lines(verbose.stderr)[-1] == ("dcmweb: info: Transferred 0 B in 0 files; 2 already "
                                  "stored, 1 too new (left for a later run)")
    age(fresh, 120)  # the copy is done: the next night sends it
    assert run(*night).exit_code == 0
    assert {row["path"]: row["status"] for row in rows(report)}[str(fresh)] == "stored"
    assert held(local_server) == 3


def test_a_run_of_only_files_too_new_has_nothing_to_do_yet(local_server: LocalServer,
                                                           tmp_path: Path) -> None:
    corpus.synthetic_files(tmp_path / "tree", 2)
    result = run("-q", local_server.url, "store", str(tmp_path / "tree"), "--min-age", "60")
    assert (result.exit_code, result.stderr) == (0, "")
    assert held(local_server) == 0


def test_a_quiet_night_does_not_warn_again_about_skips_the_journal_holds(
        local_server: LocalServer, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    corpus.synthetic_files(tree, 2)
    (tree / "README.txt").write_text("hello\n")
    (tree / "loop").symlink_to(tree)  # a link to a folder it is in
    journal, report = tmp_path / "j.db", tmp_path / "r.csv"
    night = (local_server.url, "store", str(tree), "--journal", str(journal), "--report",
             str(report))
    first = run("-q", *night)
    assert first.exit_code == 0
    assert sorted(lines(first.stderr)) == [  # the night they are first seen
        f"dcmweb: warning: skipped {tree / 'README.txt'}: not a DICOM Part-10 file "
        "(no DICM marker)",
        f"dcmweb: warning: skipped {tree / 'loop'}: a symbolic link loop (the folder is one "
        "of the folders it is in)"]
    corpus.synthetic_files(tree / "new", 1)  # the tree changes: the loop's folder too
    second = run("-q", *night)
    assert (second.exit_code, second.stderr) == (0, "")  # old dcmweb: both warnings again
    assert sorted(row["status"] for row in rows(report)) == [
        "already stored", "already stored", "skipped", "skipped", "stored"]
    verbose = run("-v", *night)
    assert (f"dcmweb: info: skipped {tree / 'README.txt'}: not a DICOM Part-10 file (no "
            "DICM marker) (as on earlier runs)") in lines(verbose.stderr)


def test_the_runs_own_journal_and_report_in_the_walked_tree_are_left_out_silently(
        local_server: LocalServer, tmp_path: Path) -> None:
    """State kept on the data volume (one volume in Kubernetes): the journal, its -wal,
    -shm and lock, and the report are in the tree the job walks."""
    tree = tmp_path / "tree"
    corpus.synthetic_files(tree, 3)
    (tree / ".state").mkdir()
    night = ("-q", local_server.url, "store", str(tree), "--journal",
             str(tree / ".state" / "j.db"), "--report", str(tree / "store.csv"))
    for _ in range(2):
        result = run(*night)
        assert (result.exit_code, result.stderr) == (0, "")
        assert [row["path"] for row in rows(tree / "store.csv")] == [
            str(path) for path in sorted(tree.glob("*.dcm"))]
    assert held(local_server) == 3


def test_retry_failed_after_an_unreadable_folder_was_fixed_sends_its_files(
        local_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "tree"
    corpus.synthetic_files(tree, 3, seed="open")
    locked = tree / "locked"
    inside = corpus.synthetic_files(locked / "deeper", 2, seed="locked")
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:  # root reads every folder: refused here
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    journal, report = tmp_path / "j.db", tmp_path / "r.csv"
    night = ("-q", local_server.url, "store", str(tree), "--journal", str(journal),
             "--report", str(report))
    with monkeypatch.context() as patch:
        patch.setattr(os, "scandir", scandir)
        assert run(*night).exit_code == 6  # "tree/locked failed: cannot read the folder"
    # The cause is fixed: the retry sends the folder's files (old dcmweb: "not retried").
    retry = run(*night, "--retry-failed")
    assert (retry.exit_code, retry.stderr) == (0, "")
    assert sorted(row["path"] for row in rows(report) if row["status"] == "stored") == [
        str(path) for path in inside]
    assert held(local_server) == 5
    # The folder is readable now: the journal no longer lists it as failed.
    with Journal(journal, f"{local_server.url}/studies") as entries:
        assert entries.lookup(str(locked)) is None
        assert entries.counts() == {"stored": 5}
    again = run(*night[1:], "--retry-failed")
    assert lines(again.stderr)[-1] == ("dcmweb: info: Transferred 0 B in 0 files; "
                                       "5 already stored")


def test_retry_failed_keeps_a_fixed_folder_whose_file_was_too_new(
        local_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixed folder's row was forgotten although its file, too new, got no entry of
    its own: every later --retry-failed said `not retried` and never sent it."""
    tree = tmp_path / "tree"
    for path in corpus.synthetic_files(tree, 1, seed="open"):
        age(path, 3600)
    locked = tree / "locked"
    [landing] = corpus.synthetic_files(locked, 1, seed="landing")
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:  # root reads every folder: refused here
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    journal = tmp_path / "j.db"
    night = (local_server.url, "store", str(tree), "--journal", str(journal), "--min-age", "60")
    with monkeypatch.context() as patch:
        patch.setattr(os, "scandir", scandir)
        assert run(*night).exit_code == 6  # "tree/locked failed: cannot read the folder"
    fixed = run(*night, "--retry-failed")  # the folder's file is still landing
    assert fixed.exit_code == 0, fixed.stderr
    assert "1 too new" in lines(fixed.stderr)[-1]
    age(landing, 3600)
    later = run("-q", *night, "--retry-failed")
    assert (later.exit_code, later.stderr) == (0, "")
    assert held(local_server) == 2


def test_library_min_age(local_server: LocalServer, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "tree", 2)
    age(files[1], 3600)
    with Client(local_server.url) as client:
        summary = client.bulk_store([tmp_path / "tree"], min_age=60)
        assert (summary.counts["stored"], summary.counts["too new"]) == (1, 1)
        with pytest.raises(UsageError, match="min_age must be at least 0"):
            client.bulk_store([tmp_path / "tree"], min_age=-1)
