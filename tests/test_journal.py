"""The journal's file as a nightly job meets it: an empty name from an unset variable,
a folder or file the job cannot write, other names for the same journal (the lock),
dry runs beside the job, and the journal deleted or replaced while a run writes it."""

from __future__ import annotations

import ctypes
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_bulk import held_by_another_process

from dcmweb import Client, LocalFileError, UsageError
from dcmweb.bulkrecords import Outcome
from dcmweb.cli import cli
from dcmweb.journal import Journal
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

# Root (the tests in CI) without these reads and writes only as the files' modes say:
# CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER.
ROOT_POWERS = (1, 2, 3)
PR_CAPBSET_DROP = 24


def _drop_root_powers() -> None:
    """In the child before exec: leave the powers out of the bounding set, so the new
    program never has them."""
    libc = ctypes.CDLL(None, use_errno=True)
    for power in ROOT_POWERS:
        if libc.prctl(PR_CAPBSET_DROP, power, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def posts(server: LocalServer) -> int:
    return sum(1 for request in server.requests if request.method == "POST")


def as_job(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """dcmweb run as a job that the files' modes bind (root without its powers)."""
    return subprocess.run([sys.executable, "-m", "dcmweb", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd,
                          preexec_fn=_drop_root_powers if os.geteuid() == 0 else None)


def stored_journal(server: LocalServer, folder: Path, files: list[Path]) -> Path:
    """A journal of a night that stored ``files``, closed cleanly (no -wal, no -shm)."""
    journal = folder / "n.db"
    assert run(server.url, "store", *map(str, files), "--journal", str(journal)
               ).exit_code == 0
    assert sorted(path.name for path in folder.iterdir() if path.name.startswith("n.db")) == [
        "n.db", "n.db.lock"]
    return journal


# -- an empty name -----------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--journal", "--report"])
def test_an_empty_journal_or_report_is_refused_before_anything_is_sent(
        local_server: LocalServer, tmp_path: Path, flag: str) -> None:
    """A cron line's --journal "$JOURNAL" with the variable unset: old dcmweb ran without
    a journal (the whole tree sent again each night, exit 0, silent under -q); an empty
    --report stopped with 'cannot write the report : No such file or directory'."""
    files = corpus.synthetic_files(tmp_path / "in", 2, seed="empty")
    result = run(local_server.url, "store", str(tmp_path / "in"), flag, "", "-q")
    assert result.exit_code == 2, result.stderr
    assert lines(result.stderr) == [
        f"dcmweb: error: {flag} '' names no file (give the {flag[2:]}'s path; a variable in "
        "the command may be unset)"]
    assert posts(local_server) == 0
    assert len(files) == 2


@pytest.mark.parametrize("keyword", ["journal", "report"])
def test_the_library_refuses_an_empty_journal_or_report(local_server: LocalServer,
                                                         tmp_path: Path, keyword: str) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 1, seed="empty")
    with Client(local_server.url) as client, pytest.raises(UsageError) as refused:
        client.bulk_store(files, **{keyword: ""})  # type: ignore[arg-type]
    assert refused.value.message == f"{keyword}='' names no file"
    assert posts(local_server) == 0


# -- a journal the job cannot write ------------------------------------------------------
def test_a_journal_in_a_folder_the_job_cannot_write_is_named_as_such(
        local_server: LocalServer, tmp_path: Path) -> None:
    """The job's own journal and lock in a folder it cannot write (root's, after a
    restore): old dcmweb called it "not a dcmweb journal: attempt to write a readonly
    database" (exit 2), which invites deleting it."""
    files = corpus.synthetic_files(tmp_path / "in", 2, seed="ro")
    state = tmp_path / "state"
    state.mkdir()
    journal = stored_journal(local_server, state, files[:1])
    before = journal.read_bytes()
    state.chmod(0o555)
    result = as_job(local_server.url, "store", "in", "--journal", "state/n.db", "-q",
                    cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert lines(result.stderr) == [
        f"dcmweb: error: cannot write the journal state/n.db: its folder {state} is not "
        "writable (SQLite needs n.db-wal and n.db-shm there)"]
    assert posts(local_server) == 1  # the first night's
    assert journal.read_bytes() == before


def test_a_read_only_journal_is_refused_at_the_start(local_server: LocalServer,
                                                     tmp_path: Path) -> None:
    """chmod 444 on the journal: old dcmweb passed a night with nothing new, then stopped
    at the first new file with exit 1 and the hint "free some space"."""
    files = corpus.synthetic_files(tmp_path / "in", 2, seed="ro")
    state = tmp_path / "state"
    state.mkdir()
    journal = stored_journal(local_server, state, files[:1])
    journal.chmod(0o444)
    result = as_job(local_server.url, "store", "in", "--journal", "state/n.db", "-q",
                    cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert lines(result.stderr) == [
        "dcmweb: error: cannot write the journal state/n.db: the file is read-only"]
    assert posts(local_server) == 1


def test_a_dry_run_reads_a_journal_it_cannot_write(local_server: LocalServer,
                                                   tmp_path: Path) -> None:
    """An auditor who can read the journal (0644) but not write its folder: old dcmweb
    took the writer's lock and stopped, 'cannot open the journal: Permission denied'."""
    files = corpus.synthetic_files(tmp_path / "in", 2, seed="audit")
    state = tmp_path / "state"
    state.mkdir()
    stored_journal(local_server, state, files[:1])
    (state / "n.db.lock").unlink()
    state.chmod(0o555)
    result = as_job(local_server.url, "store", "in", "--journal", "state/n.db", "--dry-run",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert lines(result.stderr)[-1].endswith("would send 1 file (38.4 KiB, 1 study); "
                                             "1 already stored")
    assert sorted(path.name for path in state.iterdir()) == ["n.db"]


# -- one journal, several names ----------------------------------------------------------
@pytest.mark.parametrize("name", ["link.db", "state-link/n.db", "state/../state/n.db"])
def test_the_lock_holds_for_every_name_of_the_journal(
        local_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        name: str) -> None:
    """The cron job on state/n.db, a run by hand through a link: old dcmweb locked
    NAME.lock, ran both at once on one database, and reported the other run's files as
    "named again in the inputs"."""
    monkeypatch.chdir(tmp_path)
    files = corpus.synthetic_files(tmp_path / "in", 1, seed="link")
    Path("state").mkdir()
    Path("link.db").symlink_to("state/n.db")
    Path("state-link").symlink_to("state")
    with Journal("state/n.db", f"{local_server.url}/studies"):  # the cron job's run
        result = run(local_server.url, "store", str(files[0]), "--journal", name, "-q")
    assert result.exit_code == 7, result.stderr
    assert lines(result.stderr) == [
        f"dcmweb: error: the journal {name} is in use by another dcmweb run (wait for it to "
        "finish, or use another --journal)"]
    assert posts(local_server) == 0


def test_two_runs_through_a_symbolic_link_the_second_exits_7(
        local_server: LocalServer, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 1, seed="link")
    journal, link = tmp_path / "n.db", tmp_path / "link.db"
    link.symlink_to(journal)
    with held_by_another_process(journal):
        second = subprocess.run([sys.executable, "-m", "dcmweb", local_server.url, "store",
                                 str(files[0]), "--journal", str(link), "-q"],
                                capture_output=True, text=True, timeout=60)
    assert second.returncode == 7, second.stderr
    assert "in use by another dcmweb run" in second.stderr


# -- dry runs beside the job -------------------------------------------------------------
def test_a_dry_run_takes_no_lock(local_server: LocalServer, tmp_path: Path) -> None:
    """Old dcmweb's dry run held the writer's lock: the cron job starting meanwhile
    exited 7 and sent nothing that night; a dry run also left FILE.lock behind."""
    files = corpus.synthetic_files(tmp_path / "in", 2, seed="dry")
    journal = tmp_path / "n.db"
    with Journal(journal, f"{local_server.url}/studies"):  # the cron job's run
        dry = run(local_server.url, "store", str(tmp_path / "in"), "--journal", str(journal),
                  "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    with Journal(journal, f"{local_server.url}/studies", read_only=True):  # a dry run
        job = run(local_server.url, "store", str(tmp_path / "in"), "--journal",
                  str(journal), "-q")
    assert job.exit_code == 0, job.stderr
    assert len(local_server.store.query("SELECT sop_uid FROM instances")) == len(files)
    never = tmp_path / "never.db"
    assert run(local_server.url, "store", str(tmp_path / "in"), "--journal", str(never),
               "--dry-run").exit_code == 0
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("never")
                  ) == []


# -- the journal deleted or replaced during a run ----------------------------------------
@pytest.mark.parametrize("what", ["deleted", "replaced by another file"])
def test_a_journal_deleted_or_replaced_during_the_run_is_reported(
        local_server: LocalServer, tmp_path: Path, what: str) -> None:
    """A clean-up script or a restore during the night: old dcmweb wrote the outcomes
    into the deleted file, exited 0 in silence, and the next night sent everything again."""
    files = corpus.synthetic_files(tmp_path / "in", 4, seed="gone")
    journal = tmp_path / "n.db"

    def take_away(outcome: Outcome) -> None:
        if outcome.path == files[0]:
            for name in ("n.db", "n.db-wal", "n.db-shm"):
                (tmp_path / name).unlink(missing_ok=True)
            if what != "deleted":
                sqlite3.connect(journal).close()  # an (empty) journal put in its place

    with Client(local_server.url) as client, pytest.raises(LocalFileError) as lost:
        client.bulk_store(files, journal=journal, batch_size=1, workers=1,
                          on_outcome=take_away)
    assert lost.value.message == (f"the journal {journal} was {what} during the run: this "
                               "run's outcomes are lost")
    assert lost.value.exit_status == 1
    assert lost.value.hint is not None and "skip_existing" in lost.value.hint
    assert lost.value.summary is not None and lost.value.summary.counts["stored"] >= 1


def test_a_journal_deleted_early_stops_the_run(local_server: LocalServer, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen at a commit (at most once a second), the loss stops the run as a full disk
    does: sending the rest would store files no journal will remember."""
    monkeypatch.setattr("dcmweb.journal.LOOK_EVERY_SECONDS", 0.0)
    files = corpus.synthetic_files(tmp_path / "in", 10, seed="gone")
    journal = tmp_path / "n.db"

    def delete(outcome: Outcome) -> None:
        if outcome.path == files[0]:
            journal.unlink()

    with Client(local_server.url) as client, pytest.raises(LocalFileError, match="deleted"):
        client.bulk_store(files, journal=journal, batch_size=1, workers=1, on_outcome=delete)
    assert posts(local_server) < len(files)
