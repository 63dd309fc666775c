"""The report's file as a nightly job meets it: deleted, replaced or emptied (logrotate's
copytruncate) while a run writes it, and two runs given the same --report."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_bulk import held_in_another_process

from dcmweb import Client, LocalFileError
from dcmweb.bulkrecords import Outcome
from dcmweb.cli import cli
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines


def posts(server: LocalServer) -> int:
    return sum(1 for request in server.requests if request.method == "POST")


def rows_in(text: str, suffix: str) -> list[dict[str, str]]:
    if suffix == ".csv":
        return list(csv.DictReader(io.StringIO(text)))
    return [json.loads(line) for line in text.splitlines()]


# -- deleted or replaced during a run -----------------------------------------------------
@pytest.mark.parametrize("what", ["deleted", "replaced by another file"])
def test_a_report_deleted_or_replaced_during_the_run_is_reported(
        local_server: LocalServer, tmp_path: Path, what: str) -> None:
    """A clean-up script during the night: old dcmweb wrote the rows into the deleted file
    and exited 0 in silence; the morning found no report, or another file's."""
    files = corpus.synthetic_files(tmp_path / "in", 4, seed="gone")
    report = tmp_path / "r.csv"

    def take_away(outcome: Outcome) -> None:
        if outcome.path == files[0]:
            report.unlink()
            if what != "deleted":
                report.write_text("path,status\n")  # another report put in its place

    with Client(local_server.url) as client, pytest.raises(LocalFileError) as lost:
        client.bulk_store(files, report=report, batch_size=1, workers=1,
                          on_outcome=take_away)
    assert lost.value.message == (f"the report {report} was {what} during the run: this "
                                  "run's rows are not in it")
    assert lost.value.exit_status == 1
    assert lost.value.summary is not None and lost.value.summary.counts["stored"] == 4


def test_a_store_whose_report_was_deleted_exits_1_after_its_summary(
        local_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 3, seed="gone")
    report = tmp_path / "r.jsonl"
    from dcmweb.progress import StorePrinter

    printed = StorePrinter.__call__

    def delete_then_print(self: StorePrinter, outcome: Outcome) -> None:
        report.unlink(missing_ok=True)
        printed(self, outcome)

    monkeypatch.setattr(StorePrinter, "__call__", delete_then_print)
    result = CliRunner().invoke(cli, [local_server.url, "store", "--batch-size", "1",
                                      "--report", str(report), *map(str, files)])
    assert result.exit_code == 1, result.stderr
    summary, error = lines(result.stderr)[-2:]
    assert summary.startswith("dcmweb: info: Transferred ") and summary.endswith(" in 3 files")
    assert error == (
        f"dcmweb: error: the report {report} was deleted during the run: this run's rows "
        "are not in it (the server holds what the summary counts; a rerun with this run's "
        "--journal, or with --skip-existing, lists those files as already stored)")


# -- emptied during a run (logrotate's copytruncate) ---------------------------------------
@pytest.mark.parametrize("name", ["r.csv", "r.jsonl"])
def test_a_report_emptied_during_the_run_goes_on_from_its_start(
        local_server: LocalServer, tmp_path: Path, name: str) -> None:
    """logrotate's copytruncate copies the report, then empties it: old dcmweb wrote on
    where it had got to, leaving the file a hole of NUL bytes as long as the copy and no
    CSV header. Now the rows go on at its start, under the header again: the copy and the
    file each read as a whole report, and together hold every row once."""
    files = corpus.synthetic_files(tmp_path / "in", 6, seed="rotate")
    report = tmp_path / name
    rotated = tmp_path / f"{name}.1"

    def copytruncate(outcome: Outcome) -> None:
        if outcome.path == files[2]:
            rotated.write_bytes(report.read_bytes())
            os.truncate(report, 0)

    with Client(local_server.url) as client:
        client.bulk_store(files, report=report, batch_size=1, workers=1,
                          on_outcome=copytruncate)
    kept = report.read_bytes()
    assert b"\0" not in kept
    before, after = (rows_in(path.read_text(), report.suffix) for path in (rotated, report))
    assert sorted(row["path"] for row in before + after) == sorted(map(str, files))
    assert {row["status"] for row in before + after} == {"stored"}
    if name.endswith(".csv"):
        assert kept.startswith(b"path,status,")


# -- two runs, one report -----------------------------------------------------------------
def held_by_another_run(report: Path) -> AbstractContextManager[None]:
    """The report opened (and locked) by another run for as long as the block runs."""
    return held_in_another_process(
        f"from dcmweb.report import ReportWriter; r = ReportWriter({str(report)!r})")


@pytest.mark.parametrize("spelling", ["{tmp}/r.csv", "{tmp}/link.csv"])
def test_a_report_another_run_writes_is_refused_before_anything_is_sent(
        local_server: LocalServer, tmp_path: Path, spelling: str) -> None:
    """Two runs with their own journals and one --report: old dcmweb ran both, each
    writing over the other's rows (exit 0 twice, rows lost)."""
    files = corpus.synthetic_files(tmp_path / "in", 2, seed="two")
    report = tmp_path / "r.csv"
    (tmp_path / "link.csv").symlink_to(report)
    given = spelling.format(tmp=tmp_path)
    with held_by_another_run(report):
        report.write_bytes(report.read_bytes() + b"x.dcm,stored\n")  # the other run's row
        second = subprocess.run(
            [sys.executable, "-m", "dcmweb", local_server.url, "store", *map(str, files),
             "--report", given, "--journal", str(tmp_path / "own.db"), "-q"],
            capture_output=True, text=True, timeout=60)
        assert second.returncode == 7, second.stderr
        assert lines(second.stderr) == [
            f"dcmweb: error: the report {given} is in use by another dcmweb run (wait for "
            "it to finish, or give another --report)"]
        assert posts(local_server) == 0
        assert report.read_text().endswith("\nx.dcm,stored\n")  # untouched
    after = CliRunner().invoke(cli, [local_server.url, "store", *map(str, files), "--report",
                                     given])
    assert after.exit_code == 0, after.stderr
    assert len(rows_in(report.read_text(), ".csv")) == 2  # the earlier report replaced
