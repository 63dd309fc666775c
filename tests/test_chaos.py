"""Chaos: a 2,000-file ``-m`` store into the local server while it injects faults at random
(seeded): lost answers after the files were stored, answers cut half-way after it,
drops before, 500, 503 and 429 with Retry-After. (A redirect stops a store: HOST is wrong;
tests/test_redirects.py.) Afterwards the report must be the server's truth:
the files it calls stored are exactly the instances the server holds (by SOP Instance
UID), nothing was sent twice to a server that refuses duplicates, and the exit code
matches the report.

CI runs one fixed seed. ``DCMWEB_CHAOS_SEEDS=20`` runs seeds 1..20 instead (slower; see
tests/README.md).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from dcmweb.cli import cli
from dcmweb.testing import LocalServer
from dcmweb.testing.faults import Chaos
from dcmweb_devtools import corpus

FILES = 2000
CI_SEED = 7
# Rates per POST: every kind happens several times in a 2,000-file run (about 100 batches
# plus their resends), yet most batches get through.
RATES = {"lost": 0.04, "cut": 0.04, "drop": 0.04, "500": 0.04, "503": 0.03, "429": 0.02}
FOUND = re.compile(r"; (\d+) of (\d+) found on the server by search")


def _seeds() -> list[int]:
    many = os.environ.get("DCMWEB_CHAOS_SEEDS", "").strip()
    return list(range(1, int(many) + 1)) if many else [CI_SEED]


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 valid instances of about 600 bytes (8x8 pixels) in 20 studies x 2 series."""
    folder = tmp_path_factory.mktemp("chaos")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Chaos^Test", "CHAOS", "OT"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = bytes(range(64))
    template = folder / "template.dcm"
    ds.save_as(template, enforce_file_format=True)
    corpus.synthetic_files(folder / "in", FILES, template=template, studies=20,
                           series_per_study=2, seed="chaos")
    return folder / "in"


@pytest.mark.parametrize("seed", _seeds())
def test_chaos_report_equals_the_servers_truth(small_files: Path, tmp_path: Path,
                                               seed: int) -> None:
    report = tmp_path / "report.jsonl"
    chaos = Chaos(seed, RATES)
    with LocalServer(tmp_path / "server", refuse_duplicates=True) as server:
        server.faults.set_chaos(chaos)
        started = time.monotonic()
        result = CliRunner().invoke(cli, [
            "-m", "--workers", "4", "--retries", "4", server.url, "store",
            "--report", str(report), str(small_files)])
        elapsed = time.monotonic() - started
        server.faults.set_chaos(None)
        held = {row[0] for row in server.store.query("SELECT sop_uid FROM instances")}
        duplicates = list(server.duplicates)

    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(rows) == FILES, result.stderr[-3000:]
    assert len({r["path"] for r in rows}) == FILES  # each file reported once
    stored = {r["sop_instance_uid"] for r in rows if r["status"] == "stored"}
    failed = [r for r in rows if r["status"] == "failed"]
    # The report is the server's truth.
    assert stored == held, (len(stored - held), len(held - stored))
    # Search before resend: no instance the server already held was sent again.
    assert duplicates == []
    expected_exit = 0 if not failed else 6 if stored else 1
    assert result.exit_code == expected_exit, result.stderr[-3000:]
    assert all(r["message"] for r in failed)
    if seed == CI_SEED:  # chosen so that every kind of fault happens: every path is taken
        assert set(chaos.injected) == set(RATES), chaos.injected

    saved = sum(int(m[1]) for m in FOUND.finditer(result.stderr))
    by_search = sum(1 for r in rows if r["confirmed_by"] == "search")
    print(f"\nchaos seed {seed}: {elapsed:.1f} s, faults {dict(sorted(chaos.injected.items()))},"
          f" stored {len(stored)}, failed {len(failed)}, confirmed by search {by_search},"
          f" resends saved by search-before-resend {saved}, exit {result.exit_code}"
          + (f", e.g. {failed[0]['message']}" if failed else ""))
    assert saved >= chaos.injected["lost"] > 0  # each lost answer's files were found


def _outage_after(server: LocalServer, posts: int) -> threading.Thread:
    """Once the server has received ``posts`` stores: every store is stored and its
    answer lost, and every search fails (a proxy that lost its way back), for good."""
    def watch() -> None:
        while sum(1 for r in server.requests if r.method == "POST") < posts:
            time.sleep(0.01)
        server.inject_fault(after=True, count=10**6, method="POST")
        server.inject_fault(502, count=10**6, method="GET")

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_run_that_gives_up_under_chaos_reports_every_file_once(tmp_path: Path) -> None:
    """Chaos, then an outage that outlasts --outage-limit while batches are in flight:
    what the server holds is reported stored or unconfirmed, never "not attempted";
    each file is counted once; a rerun with the journal stores the rest, sending nothing
    the server holds."""
    files = corpus.synthetic_files(tmp_path / "in", 300, studies=3, seed="gives-up")
    report, journal = tmp_path / "report.jsonl", tmp_path / "j.db"
    with LocalServer(tmp_path / "server", refuse_duplicates=True) as server:
        server.faults.set_chaos(Chaos(CI_SEED, RATES))
        watcher = _outage_after(server, 8)
        result = CliRunner().invoke(cli, [
            "-m", "--workers", "4", "--retries", "2", "--outage-limit", "2", server.url,
            "store", "--batch-size", "5", "--report", str(report), "--journal", str(journal),
            str(tmp_path / "in")])
        watcher.join(5)
        server.faults.set_chaos(None)
        server.clear_faults()
        held = {row[0] for row in server.store.query("SELECT sop_uid FROM instances")}
        assert result.exit_code == 5, result.stderr[-3000:]
        rows = [json.loads(line) for line in report.read_text().splitlines()]
        summary = result.stderr.splitlines()[-2]
        unconfirmed = re.search(r"; (?:.*, )?(\d+) unconfirmed \(sent, no answer", summary)
        not_attempted = re.search(r"(\d+) not attempted", summary)
        assert unconfirmed and not_attempted, summary
        by_status: dict[str, set[str]] = {}
        for row in rows:
            by_status.setdefault(row["status"], set()).add(row["sop_instance_uid"])
        assert len({row["path"] for row in rows}) == len(rows)  # one row per file
        assert len(rows) + int(not_attempted[1]) == len(files)  # and every file counted
        assert len(by_status["unconfirmed"]) == int(unconfirmed[1]) > 0
        stored = by_status.get("stored", set())
        assert stored <= held  # stored is the server's truth...
        assert held <= stored | by_status["unconfirmed"]  # ...and nothing it holds is hidden
        assert server.duplicates == []
        print(f"\ngives up under chaos: {summary.split('dcmweb: info: ')[-1]}")

        rerun = CliRunner().invoke(cli, ["-m", "--workers", "4", server.url, "store",
                                         "--journal", str(journal), str(tmp_path / "in")])
        assert rerun.exit_code == 0, rerun.stderr[-3000:]
        assert {row[0] for row in server.store.query("SELECT sop_uid FROM instances")} == {
            corpus.sop_instance_uid(p) for p in files}
        assert server.duplicates == []
