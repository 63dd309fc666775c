"""A retrieve that a local write error stops (the space guard of a full disk, the limits
of the process): the summary says how much it never retrieved, in the units of the run
(studies of the store, instances of a series, the paths of a list), beside the one
failure that stopped it."""

from __future__ import annotations

import re
import resource
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Route, multipart
from test_retrieve import files_under, study_of, temp_leftovers, uids_of
from ulimits import run_limited

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.dicomhead import HEAD_BYTES
from dcmweb.saving import DiskSpace
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

STUDIES = 4
PER_STUDY = 3
SMALL_DISK = 9 * 1024 ** 2  # dcmweb keeps 5 % of it free


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def stored(local_server: LocalServer, tmp_path: Path) -> list[Path]:
    """4 studies of 3 instances (one series each), on the server."""
    files = corpus.synthetic_files(tmp_path / "in", STUDIES * PER_STUDY, studies=STUDIES)
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    return files


def disk_with_room_for(files: int, size: int, out: Path, monkeypatch: pytest.MonkeyPatch
                       ) -> None:
    """A small disk whose free space beyond what dcmweb keeps fits ``files`` files of
    ``size`` bytes (not one more) under ``out``."""
    keep = int(SMALL_DISK * 0.05)
    room = files * size + size // 2

    def free(self: DiskSpace) -> tuple[int, int]:
        used = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        return keep + room - used, SMALL_DISK

    monkeypatch.setattr(DiskSpace, "free", free)


def complete_studies(out: Path, files: list[Path]) -> int:
    """The studies whose every instance is saved under ``out``."""
    saved = {p.stem for p in files_under(out)}
    studies: dict[str, set[str]] = {}
    for path in files:
        study, _, sop = uids_of(path)
        studies.setdefault(study, set()).add(sop)
    return sum(sops <= saved for sops in studies.values())


def not_retrieved(summary: str, unit: str) -> int:
    found = re.search(rf"; 1 failed, (\d+) {unit} not retrieved \(stopped, "
                      rf"(cut off|\d+ of them cut off)\)$", summary)
    assert found, summary
    return int(found[1])


@pytest.mark.parametrize("workers", ["1", "4"])
def test_a_full_disk_counts_the_studies_it_never_retrieved(
        local_server: LocalServer, stored: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, workers: str) -> None:
    """Old dcmweb: "Transferred ... in 4 files; 1 failed", though 2 of the 4 studies were
    never asked for and 1 was cut off (a log parser counted one failure)."""
    out = tmp_path / "out"
    disk_with_room_for(4, stored[0].stat().st_size, out, monkeypatch)
    result = dcmweb("--workers", workers, local_server.url, "retrieve", "-o", str(out))
    assert result.exit_code == 6, result.stderr
    summary, error = lines(result.stderr)[-2:]
    assert error.startswith(f"dcmweb: error: stopped writing in {out}/")
    saved = len(files_under(out))
    assert f" in {saved} files; " in summary
    if workers == "1":  # the first study whole, the second cut off after its first file
        assert saved == 4
        assert summary.endswith("; 1 failed, 3 studies not retrieved (stopped, 1 of them "
                                "cut off)")
    # Every study is either saved whole or counted.
    assert complete_studies(out, stored) + not_retrieved(summary, "stud(y|ies)") == STUDIES
    assert temp_leftovers(out) == []


@pytest.mark.parametrize("workers", ["1", "4"])
def test_a_full_disk_counts_the_paths_of_a_list_it_never_retrieved(
        local_server: LocalServer, stored: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, workers: str) -> None:
    """--paths-from: the unit is the path given; a study path cut off is one of them."""
    out = tmp_path / "out"
    listing = tmp_path / "paths.txt"
    listing.write_text("".join(f"{study_of(p)}\n" for p in stored[:STUDIES]))
    disk_with_room_for(4, stored[0].stat().st_size, out, monkeypatch)
    result = dcmweb("--workers", workers, local_server.url, "retrieve", "--paths-from",
                    str(listing), "-o", str(out))
    assert result.exit_code == 6, result.stderr
    summary = lines(result.stderr)[-2]
    if workers == "1":
        assert summary.endswith(" in 4 files; 1 failed, 3 paths not retrieved (stopped, "
                                "1 of them cut off)")
    assert complete_studies(out, stored) + not_retrieved(summary, "paths?") == STUDIES


def test_a_full_disk_counts_the_instance_paths_it_never_retrieved(
        local_server: LocalServer, stored: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """retrieve PATH...: 12 instances, room for 4: the 5th is cut off, 7 never asked for."""
    out = tmp_path / "out"
    paths = ["studies/{}/series/{}/instances/{}".format(*uids_of(p)) for p in stored]
    disk_with_room_for(4, stored[0].stat().st_size, out, monkeypatch)
    result = dcmweb(local_server.url, "retrieve", *paths, "-o", str(out))
    assert result.exit_code == 6, result.stderr
    assert lines(result.stderr)[-2].endswith(
        " in 4 files; 1 failed, 8 paths not retrieved (stopped, 1 of them cut off)")
    assert len(files_under(out)) == 4


def test_a_full_disk_counts_the_rendered_images_it_never_retrieved(
        local_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A series rendered instance by instance: the unit is the instance."""
    files = corpus.synthetic_files(tmp_path / "in", 6)
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    study, series, _ = uids_of(files[0])
    path = f"studies/{study}/series/{series}/rendered"
    first = dcmweb(local_server.url, "retrieve", path, "-o", str(tmp_path / "first"))
    assert first.exit_code == 0, first.stderr
    size = max(p.stat().st_size for p in files_under(tmp_path / "first"))
    out = tmp_path / "out"
    disk_with_room_for(2, size, out, monkeypatch)
    result = dcmweb(local_server.url, "retrieve", path, "-o", str(out))
    assert result.exit_code == 6, result.stderr
    saved = len(files_under(out))
    summary = lines(result.stderr)[-2]
    assert 0 < saved < 6 and f" in {saved} files; " in summary
    assert not_retrieved(summary, "instances?") == 6 - saved


# -- the operating system's own refusals (ulimit), in a process of its own --------------------
def test_too_many_open_files_names_the_limit_and_counts_the_paths(tmp_path: Path) -> None:
    """ulimit -n 6: stdin, stdout, stderr and the 2 workers' connections leave one
    descriptor for the files being written; both studies are answered at once and pause
    inside their second file, so the second worker finds none. Old dcmweb blamed the
    folder ("Too many open files (check the output folder: its permissions and free
    space)") and counted "1 failed" for the study it cut off."""
    # Files larger than the head read before a file is opened: it stays open in the pause.
    template = corpus.pydicom_test_files_dir() / "examples_palette.dcm"
    assert template.stat().st_size > 2 * HEAD_BYTES
    files = corpus.synthetic_files(tmp_path / "in", 6, studies=2, template=template)
    both = threading.Barrier(2, timeout=30)

    def answer(sources: list[Path]) -> Route:
        body = multipart([p.read_bytes() for p in sources], "b")
        keep = len(multipart([p.read_bytes() for p in sources[:1]], "b")) + HEAD_BYTES + 1024

        def chunks() -> Iterator[bytes]:
            both.wait()  # both requests in flight: two connections open
            yield body[:keep]  # the first file, and the head of the second: it is opened
            time.sleep(0.5)
            yield body[keep:]

        return lambda req: req.stream(200, "multipart/related; boundary=b", chunks(),
                                      claimed_length=len(body))

    studies = sorted({study_of(p) for p in files})
    out = tmp_path / "out"
    with Hostile() as fake:
        for study in studies:
            fake.route("GET", f"/{study}", answer([p for p in files if study_of(p) == study]))
        done = run_limited({resource.RLIMIT_NOFILE: 6}, "--workers", "2", fake.url,
                           "retrieve", *studies, "-o", str(out))
    assert done.returncode == 6, done.stderr
    summary, error = lines(done.stderr)[-2:]
    assert re.fullmatch(
        rf"dcmweb: error: cannot write in {out}/\S+: Too many open files \(this process may "
        r"open no more files: use fewer --workers, or raise its limit with ulimit -n\)",
        error), done.stderr
    saved = len(files_under(out))
    assert saved in (3, 4)  # one study whole, the other cut off at its first or second file
    assert summary.endswith(f" in {saved} files; 1 failed, 1 path not retrieved (stopped, "
                            "cut off)"), summary
    assert complete_studies(out, files) == 1


def test_a_file_size_limit_names_the_limit_and_counts_every_study(
        local_server: LocalServer, stored: list[Path], tmp_path: Path) -> None:
    """ulimit -f below a file's size: the first file fails, nothing is saved (exit 1),
    and the summary counts the 4 studies (the listing's rest, read to count it)."""
    out = tmp_path / "out"
    done = run_limited({resource.RLIMIT_FSIZE: 4096}, local_server.url, "retrieve", "-o",
                       str(out))
    assert done.returncode == 1, done.stderr
    summary, error = lines(done.stderr)[-2:]
    assert summary == ("dcmweb: info: Transferred 0 B in 0 files; 4 studies not retrieved "
                       "(stopped, 1 of them cut off)")
    assert re.fullmatch(
        rf"dcmweb: error: cannot write in {out}/\S+: File too large \(a limit on the size of "
        r"a file: this process's, set with ulimit -f, or the largest file the file system "
        r"holds\)", error), done.stderr
    assert files_under(out) == set()
