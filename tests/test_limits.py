"""dcmweb under a memory limit too small for its worker threads (``ulimit -v``): the run
names the limit and the remedy, sends nothing, and runs with one worker; threads that
only speed a run up (listing the next page, counting the files, the progress lines) are
done without. And dcmweb out of file descriptors (``ulimit -n``) mid-run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ulimits import NO_THREADS, run_limited, run_out_of_descriptors

from dcmweb import Client
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

REFUSED = ("dcmweb: error: could not start 4 worker threads: can't start new thread (a "
           "memory or process limit, ulimit -v or ulimit -u: use fewer --workers, or raise it)")


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    return corpus.synthetic_files(tmp_path / "in", 4, studies=2)


def test_a_store_whose_workers_cannot_start_sends_nothing(local_server: LocalServer,
                                                          files: list[Path]) -> None:
    """Old dcmweb: "unexpected error: RuntimeError: can't start new thread (rerun with
    --traceback and report it)"."""
    folder = str(files[0].parent)
    done = run_limited(NO_THREADS, "-m", "--workers", "4", local_server.url, "store", folder)
    assert done.returncode == 1, done.stderr
    assert lines(done.stderr)[-2:] == [
        "dcmweb: info: Transferred 0 B in 0 files; 4 not attempted", REFUSED]
    assert [r for r in local_server.requests if r.method == "POST"] == []
    # The remedy works: one worker needs no thread (nor do the progress lines).
    done = run_limited(NO_THREADS, "--workers", "1", local_server.url, "store",
                       "--progress-every", "60", folder)
    assert done.returncode == 0, done.stderr
    assert ("dcmweb: warning: could not start the thread that shows progress: can't start "
            "new thread (a memory or process limit): no progress is shown"
            ) in lines(done.stderr)
    assert lines(done.stderr)[-1].endswith(" in 4 files")


def test_a_retrieve_whose_workers_cannot_start_asks_nothing(local_server: LocalServer,
                                                            files: list[Path],
                                                            tmp_path: Path) -> None:
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    local_server.clear_requests()
    out = tmp_path / "out"
    done = run_limited(NO_THREADS, "-m", "--workers", "4", local_server.url, "retrieve",
                       "-o", str(out))
    assert done.returncode == 1, done.stderr
    assert lines(done.stderr)[-2:] == ["dcmweb: info: Transferred 0 B in 0 files", REFUSED]
    assert local_server.requests == []
    assert not out.exists()
    # One worker: the store's listing is read page by page without a thread of its own.
    done = run_limited(NO_THREADS, local_server.url, "retrieve", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert len(list(out.rglob("*.dcm"))) == 4


def test_a_retry_needs_no_descriptor(local_server: LocalServer) -> None:
    """The one descriptor left is the search's connection; the 503 is retried. Old
    dcmweb imported ``random`` for the backoff's jitter on the first retry: "unexpected
    error: OSError: [Errno 24] Too many open files: '.../random.py'", exit 1."""
    local_server.inject_fault(503, count=1)
    done = run_out_of_descriptors(1, local_server.url, "search")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"
    assert lines(done.stderr) == [
        "dcmweb: warning: search studies: HTTP 503 Service Unavailable; retrying (attempt 2)"]


LIMIT_HINT = ("Too many open files (this process may open no more files: use fewer "
              "--workers, or raise its limit with ulimit -n)")


@pytest.mark.parametrize("mode", ["multipart", "single-part"])
def test_a_store_out_of_descriptors_stops_and_names_the_limit(
        local_server: LocalServer, files: list[Path], mode: str) -> None:
    """One descriptor left: a multipart store's connection takes it, and its first file
    finds none; a single-part store's file takes it, and its connection finds none.
    Neither the files nor the server is at fault. Old dcmweb failed every file "cannot
    read: Too many open files" (multipart), or retried the connection as the server's
    outage and ended "server unavailable" (exit 5) at --outage-limit (single-part)."""
    folder = files[0].parent
    single = ["--single-part"] if mode == "single-part" else []
    # The files named, not their folder: the walk of a folder would race the store for
    # the one descriptor (and a module imported late might find none).
    done = run_out_of_descriptors(1, "--outage-limit", "3", local_server.url, "store",
                                  *single, *map(str, files))
    assert done.returncode == 1, done.stderr
    summary, error = lines(done.stderr)[-2:]
    assert summary == "dcmweb: info: Transferred 0 B in 0 files; 4 not attempted"
    where = (rf"{re.escape(str(folder))}/\S+\.dcm" if mode == "multipart" else
             rf"a connection to 127\.0\.0\.1:{local_server.port}")
    assert re.fullmatch(rf"dcmweb: error: cannot open {where}: {re.escape(LIMIT_HINT)}",
                        error), error
    assert [r for r in local_server.requests if r.method == "POST"] == []
    # The remedy works: with descriptors to spare, all 4 are stored.
    done = run_out_of_descriptors(3, local_server.url, "store", *single, str(folder))
    assert done.returncode == 0, done.stderr
    assert lines(done.stderr)[-1].endswith(" in 4 files")


def test_a_module_imported_late_out_of_descriptors_names_the_limit(
        local_server: LocalServer, files: list[Path], tmp_path: Path) -> None:
    """The report file takes the last descriptor; the module that locks it, imported
    only by runs with a report, finds none. Old dcmweb: "unexpected error: ImportError:
    .../fcntl...so: cannot open shared object file: Too many open files (rerun with
    --traceback and report it)"."""
    done = run_out_of_descriptors(1, local_server.url, "store", str(files[0].parent),
                                  "--report", str(tmp_path / "report.csv"))
    assert done.returncode == 1, done.stderr
    assert lines(done.stderr)[-1].endswith(f": {LIMIT_HINT}"), done.stderr
    assert "unexpected" not in done.stderr
    assert local_server.requests == []
