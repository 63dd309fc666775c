"""The questions a bulk store asks the server before sending (--skip-existing,
--verify-journal, the files an interrupted run left unconfirmed): one request per series
the server holds whole, asked on the run's workers, never missing an instance past a
page cap."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result

from dcmweb.cli import cli
from dcmweb.journal import Journal, Stamp
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

DELAY = 0.4  # seconds each search (and read-back) takes on the server


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def gets(server: LocalServer) -> list[str]:
    return [r.path for r in server.requests if r.method == "GET"]


def searches(server: LocalServer) -> list[str]:
    return [path for path in gets(server) if "/instances?" in path]


def retrieves(server: LocalServer) -> list[str]:
    """The instances retrieved to check what a search listed (searches lag behind
    deletes): their status only."""
    return [path for path in gets(server) if "?" not in path]


def posts(server: LocalServer) -> int:
    return sum(1 for r in server.requests if r.method == "POST")


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


@pytest.fixture
def series_of_one(tmp_path: Path) -> list[Path]:
    """12 series of one instance each (a study each)."""
    return corpus.synthetic_files(tmp_path / "in", 12, studies=12, seed="checks")


def test_skip_existing_asks_once_per_series_the_server_holds(
        local_server: LocalServer, tmp_path: Path) -> None:
    """The first page lists the file: the empty page after it is not asked for."""
    files = corpus.synthetic_files(tmp_path / "in", 12, studies=2, series_per_study=2,
                                   seed="once")
    assert run(local_server.url, "store", str(tmp_path / "in")).exit_code == 0
    local_server.clear_requests()
    result = run(local_server.url, "store", str(tmp_path / "in"), "--skip-existing")
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr)[-1].endswith("in 0 files; 12 already stored")
    assert posts(local_server) == 0
    listed = searches(local_server)
    assert len(listed) == 4  # one per series, not two
    assert all("offset=0" in search for search in listed), listed
    # The first instance found in each series is retrieved: a listing may show instances
    # deleted moments ago (Google), not the others.
    assert len(retrieves(local_server)) == 4
    assert len(gets(local_server)) == 8
    assert len(files) == 12


def test_a_page_cap_below_the_limit_asked_never_hides_an_instance(
        local_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that caps instance pages at 2 rows (dcmweb asks for 50,000): a file whose
    instance is past the first page is still found, not sent again, and one the server
    lost is sent: the pages after a short one are read for what the first did not list."""
    from dcmweb.testing import qido

    files = corpus.synthetic_files(tmp_path / "in", 7, seed="capped")
    assert run(local_server.url, "store", str(tmp_path / "in")).exit_code == 0
    lost = files[3]
    study, _, sop = _uids(lost)
    local_server.store.delete(study, sop=sop, unblock=False)
    monkeypatch.setitem(qido.MAX_LIMIT, qido.INSTANCE, 2)
    local_server.clear_requests()
    result = run("-m", local_server.url, "store", str(tmp_path / "in"), "--skip-existing")
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr)[-1].endswith("in 1 file; 6 already stored")
    posted = [r for r in local_server.requests if r.method == "POST"]
    assert len(posted) == 1
    assert sop_uid(lost) in {row["sop_uid"] for row in local_server.store.query(
        "SELECT sop_uid FROM instances")}
    # Pages of 2 up to the empty one: the lost file is on none of them.
    assert len(searches(local_server)) == 4
    assert len(retrieves(local_server)) == 1


def _uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def _mark_sending(journal: Path, url: str, files: list[Path]) -> None:
    """What a run killed while sending the files leaves in its journal."""
    with Journal(journal, f"{url}/studies") as entries:
        for path in files:
            entries.mark_sending(os.path.abspath(path), Stamp.of(path.stat()),
                                 (None, None, None), attempts=1)
        entries.commit()


@pytest.mark.parametrize("check", ["skip-existing", "verify-journal", "resume"])
def test_checks_run_on_the_workers(local_server: LocalServer, series_of_one: list[Path],
                                   tmp_path: Path, check: str) -> None:
    """With -m, the series searches (and a resumed run's read-backs) of the next files
    run at once, not one after the other on the thread that hands files to the workers:
    12 searches of 0.4 s each took 4.8 s or more."""
    folder, journal = str(tmp_path / "in"), tmp_path / "j.db"
    assert run(local_server.url, "store", folder, "--journal", str(journal)).exit_code == 0
    options = {"skip-existing": ["--skip-existing"],
               "verify-journal": ["--journal", str(journal), "--verify-journal"],
               "resume": ["--journal", str(journal)]}[check]
    if check == "resume":
        _mark_sending(journal, local_server.url, series_of_one)
    local_server.inject_fault(delay=DELAY, method="GET", count=10**6)
    local_server.clear_requests()
    started = time.monotonic()
    result = run("-m", "--workers", "6", local_server.url, "store", folder, *options)
    took = time.monotonic() - started
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr)[-1].endswith("in 0 files; 12 already stored")
    assert posts(local_server) == 0
    # A search, and a retrieve: the status of the instance it lists (searches lag behind
    # deletes), or the read-back of the copy an interrupted run sent.
    assert took < 12 * 2 * DELAY / 2, took
    assert (len(searches(local_server)), len(retrieves(local_server))) == (12, 12)


def test_a_server_that_ignores_offset_lists_the_series_once(
        local_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every page is the first one: the second page repeats it, so the first held all
    there is. Old dcmweb stopped the run ("the server ignores 'offset' or pages in
    circles") before sending anything."""
    from dcmweb.testing import qido

    files = corpus.synthetic_files(tmp_path / "in", 3, seed="offset")
    for path in files[:2]:
        assert run(local_server.url, "store", str(path)).exit_code == 0
    read = qido._int_param
    monkeypatch.setattr(qido, "_int_param",
                        lambda key, value: 0 if key.lower() == "offset" else read(key, value))
    local_server.clear_requests()
    result = run(local_server.url, "store", str(tmp_path / "in"), "--skip-existing")
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr)[-1].endswith("in 1 file; 2 already stored")
    assert posts(local_server) == 1
    assert (len(searches(local_server)), len(retrieves(local_server))) == (2, 1)
