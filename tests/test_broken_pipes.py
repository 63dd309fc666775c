"""A reader that goes away: `dcmweb ... 2>&1 | head -1`, a log collector that dies.

Without stderr a run does all its work and exits with the work's code; without stdout,
a listing ends quietly (search | head) but a store's report (`--report -`) is cut short,
which is a failure. Each test gives dcmweb a pipe whose reader is gone before it starts:
every write to it fails with EPIPE, as after `head -1` has read its line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dcmweb import Client
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

THREADS = pytest.mark.parametrize("threads", [[], ["-m"]], ids=["one-thread", "-m"])


def run(*args: str, broken: tuple[str, ...]) -> tuple[int, str, str]:
    """Run dcmweb with the named streams ("stdout", "stderr") on a pipe nobody reads;
    (exit code, stdout, stderr) of the others."""
    read, write = os.pipe()
    os.close(read)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCMWEB_")}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dcmweb", *args], text=True, timeout=120, env=env,
            stdin=subprocess.DEVNULL,
            stdout=write if "stdout" in broken else subprocess.PIPE,
            stderr=write if "stderr" in broken else subprocess.PIPE)
    finally:
        os.close(write)
    return done.returncode, done.stdout or "", done.stderr or ""


def held(server: LocalServer) -> int:
    with Client(server.url) as client:
        return len(client.search("instances"))


@pytest.fixture
def stored(local_server: LocalServer, tmp_path: Path) -> list[Path]:
    files = corpus.synthetic_files(tmp_path / "held", 12, studies=3, series_per_study=2)
    with Client(local_server.url) as client:
        client.store(files)
    return files


@THREADS
@pytest.mark.parametrize("broken", [("stderr",), ("stdout", "stderr")],
                         ids=["2>closed", "2>&1 closed"])
def test_retrieve_without_stderr_saves_every_file(local_server: LocalServer, tmp_path: Path,
                                                  stored: list[Path], threads: list[str],
                                                  broken: tuple[str, ...]) -> None:
    out = tmp_path / "out"
    code, _, _ = run(*threads, local_server.url, "retrieve", "-o", str(out), broken=broken)
    assert code == 0
    assert len(list(out.rglob("*.dcm"))) == len(stored)
    assert not list(out.rglob(".dcmweb-*"))


@THREADS
def test_store_without_stderr_stores_every_file(local_server: LocalServer, tmp_path: Path,
                                                threads: list[str]) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 12)
    code, _, _ = run(*threads, local_server.url, "store", "--batch-size", "1",
                     *map(str, files), broken=("stderr",))
    assert code == 0
    assert held(local_server) == len(files)


def test_failed_store_without_stderr_still_exits_with_its_code(
        local_server: LocalServer, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 3)
    code, _, _ = run(local_server.url, "store", *map(str, files), str(tmp_path / "missing.dcm"),
                     broken=("stderr",))
    assert code == 6


@pytest.mark.parametrize("quiet", [[], ["-q"]], ids=["verbose", "-q"])
def test_store_with_its_log_on_a_full_disk_does_all_its_work(
        local_server: LocalServer, tmp_path: Path, quiet: list[str]) -> None:
    """cron's `>> dcmweb.log 2>&1` on a full disk (/dev/full: every write is ENOSPC): as
    without stderr, the messages are lost, the work and the exit code are not."""
    files = corpus.synthetic_files(tmp_path / "in", 6)
    missing = str(tmp_path / "missing.dcm")
    journal = str(tmp_path / "j.db")
    with open("/dev/full", "w") as full:
        def night(*inputs: str) -> int:
            return subprocess.run(
                [sys.executable, "-m", "dcmweb", *quiet, local_server.url, "store",
                 "--batch-size", "1", "--journal", journal, *inputs, *map(str, files)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=full,
                timeout=120).returncode

        assert night(missing) == 6  # the missing file failed first; the others were sent
        assert held(local_server) == len(files)
        assert night() == 0  # a good night: nothing to send


def test_delete_without_stderr_waits_for_its_operation(local_server: LocalServer,
                                                      stored: list[Path]) -> None:
    with Client(local_server.url) as client:
        study = client.search("studies")[0]["0020000D"]["Value"][0]
    code, _, _ = run("-v", local_server.url, "delete", f"studies/{study}", broken=("stderr",))
    assert code == 0
    assert held(local_server) == len(stored) - 4  # 12 instances in 3 studies


@THREADS
def test_store_whose_report_reader_left_fails_and_accounts_for_every_file(
        local_server: LocalServer, tmp_path: Path, threads: list[str]) -> None:
    """`store --report - | head -1`: the run stops sending, the files in flight get their
    answer, and the summary matches what the server holds."""
    files = corpus.synthetic_files(tmp_path / "in", 30)
    code, _, stderr = run(*threads, local_server.url, "store", "--batch-size", "1",
                          "--report", "-", *map(str, files), broken=("stdout",))
    assert code == 1, stderr
    *_, summary, error = lines(stderr)
    assert error == ("dcmweb: error: cannot write the report to stdout: its reader went "
                     "away (broken pipe); the run was stopped (read the whole report, or "
                     "write it to a file)")
    stored = held(local_server)
    assert 0 < stored < len(files)
    assert summary.startswith("dcmweb: info: Transferred "), stderr
    assert summary.endswith(f" in {stored} file{'s' * (stored > 1)}; "
                            f"{len(files) - stored} not attempted"), stderr


def test_store_whose_report_and_log_reader_left_fails(local_server: LocalServer,
                                                      tmp_path: Path) -> None:
    """`store --report - 2>&1 | head -1`: nothing to say it on, but the exit code."""
    files = corpus.synthetic_files(tmp_path / "in", 10)
    code, _, _ = run(local_server.url, "store", "--batch-size", "1", "--report", "-",
                     *map(str, files), broken=("stdout", "stderr"))
    assert code == 1
    assert 0 < held(local_server) < len(files)


@pytest.mark.parametrize("args", [["search", "instances", "--format", "jsonl"],
                                  ["retrieve", "-o", "OUT", "--dry-run"],
                                  ["delete", "STUDY", "--dry-run"]],
                         ids=["search", "retrieve-dry-run", "delete-dry-run"])
def test_a_listing_whose_reader_left_ends_quietly(local_server: LocalServer, tmp_path: Path,
                                                  stored: list[Path], args: list[str]) -> None:
    """`search | head -1`: the reader took what it wanted; nothing failed."""
    with Client(local_server.url) as client:
        study = client.search("studies")[0]["0020000D"]["Value"][0]
    words = [{"OUT": str(tmp_path / "out"), "STUDY": f"studies/{study}"}.get(word, word)
             for word in args]
    code, _, stderr = run(local_server.url, *words, broken=("stdout",))
    assert code == 0, stderr
    assert not [line for line in lines(stderr) if "error" in line or "Traceback" in line]
    assert held(local_server) == len(stored)  # the dry run deleted nothing


def test_the_report_of_a_whole_run_reaches_a_reader_that_stays(local_server: LocalServer,
                                                               tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 3)
    done = subprocess.run([sys.executable, "-m", "dcmweb", local_server.url, "store",
                           "--report", "-", *map(str, files)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert [json.loads(row)["status"] for row in done.stdout.splitlines()] == ["stored"] * 3
