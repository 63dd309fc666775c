"""The journal's file as a nightly job meets it: an empty name from an unset variable."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dcmweb import Client, UsageError
from dcmweb.cli import cli
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
