"""retrieve --dry-run: the files that would be written, found with a search; nothing written."""

from __future__ import annotations

from pathlib import Path

import pydicom
from click.testing import CliRunner
from hostile import Hostile, multipart

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines
from dcmweb_devtools.tinypacs import TinyPacs


def test_retrieve_dry_run_lists_files_and_writes_nothing(local_server, tmp_path: Path  # type: ignore[no-untyped-def]
                                                         ) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 3)
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    out = tmp_path / "out"
    expected = sorted(f"{out}/{d.StudyInstanceUID}/{d.SeriesInstanceUID}/{d.SOPInstanceUID}.dcm"
                      for d in heads)
    study = heads[0].StudyInstanceUID
    result = CliRunner().invoke(cli, [local_server.url, "retrieve", f"studies/{study}",
                                      "--output", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    listed = sorted(line for line in result.stdout.splitlines() if line)
    assert listed == sorted(e for e, d in zip(expected, heads, strict=True)
                            if d.StudyInstanceUID == study)
    assert "nothing written (--dry-run)" in result.stderr
    assert not out.exists()
    result = CliRunner().invoke(cli, [local_server.url, "retrieve", "--output", str(out),
                                      "--dry-run"])
    assert result.exit_code == 0, result.output
    assert sorted(line for line in result.stdout.splitlines() if line) == expected
    assert not out.exists()


def test_retrieve_dry_run_applies_to_instances_only(local_server) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(cli, [local_server.url, "retrieve", "studies/1.2/metadata",
                                      "--dry-run"])
    assert result.exit_code == 2
    assert "--dry-run applies to" in result.stderr


def _with_uids(source: Path, folder: Path, study: str, series: str, sop: str) -> Path:
    dataset = pydicom.dcmread(source)
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = sop
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{len(list(folder.iterdir()))}.dcm"
    dataset.save_as(target)
    return target


def test_retrieve_dry_run_tells_what_the_real_run_would_refuse(tmp_path: Path) -> None:
    """Unsafe UIDs and an instance of another study: the real run refuses them (exit 6);
    the dry run lists only the file it would write, and exits as the real run does."""
    good = corpus.synthetic_files(tmp_path / "in", 1)[0]
    head = pydicom.dcmread(good, stop_before_pixels=True)
    study, series = str(head.StudyInstanceUID), str(head.SeriesInstanceUID)
    sources = [good, *(_with_uids(good, tmp_path / "bad", *uids) for uids in (
        (study, series, "../../../etc/x"), (study, "..", "7.8"), ("9.9", "3.4", "7.7")))]
    rows = [{tag: {"vr": "UI", "Value": [str(pydicom.dcmread(f, stop_before_pixels=True)
                                              .get(keyword))]}
             for tag, keyword in (("0020000D", "StudyInstanceUID"),
                                  ("0020000E", "SeriesInstanceUID"),
                                  ("00080018", "SOPInstanceUID"))} for f in sources]
    body = multipart([f.read_bytes() for f in sources], "b")
    out = tmp_path / "out"
    with Hostile() as fake:
        fake.route("GET", f"/studies/{study}/instances", lambda req: req.json(
            200, rows if req.params.get("offset") == "0" else [], "application/dicom+json"))
        fake.route("GET", f"/studies/{study}", lambda req: req.reply(
            200, body, "multipart/related; boundary=b"))
        # Served (not deleted moments ago): the first instance listed has metadata.
        fake.route("GET", f"/studies/{study}/series/{series}/instances/{head.SOPInstanceUID}"
                   "/metadata", lambda req: req.json(200, rows[:1], "application/dicom+json"))
        dry = CliRunner().invoke(cli, [fake.url, "retrieve", f"studies/{study}", "-o", str(out),
                                       "--dry-run"])
        assert not out.exists()
        real = CliRunner().invoke(cli, [fake.url, "retrieve", f"studies/{study}", "-o",
                                        str(out)])
    saved = sorted(str(p) for p in out.rglob("*") if p.is_file())
    assert real.exit_code == 6, real.stderr
    assert dry.exit_code == real.exit_code, dry.stderr
    assert dry.stdout.splitlines() == saved == [f"{out}/{study}/{series}/{head.SOPInstanceUID}.dcm"]
    refusals = [line for line in lines(dry.stderr) if line.startswith("dcmweb: error: ")]
    assert len(refusals) == 4  # three refused instances, then the exit's message
    assert any("StudyInstanceUID is 9.9" in line for line in refusals)
    assert "would write 1 file under" in dry.stderr and "3 would fail" in dry.stderr


def test_retrieve_dry_run_exits_as_the_real_run_would(local_server: LocalServer,
                                                      tmp_path: Path) -> None:
    for extra, code in ((["studies/1.2.3"], 4), (["studies/1.2.3", "--single-part"], 2)):
        real = CliRunner().invoke(cli, [local_server.url, "retrieve", *extra, "-o",
                                        str(tmp_path / "real")])
        dry = CliRunner().invoke(cli, [local_server.url, "retrieve", *extra, "-o",
                                       str(tmp_path / "dry"), "--dry-run"])
        assert real.exit_code == code, real.stderr
        assert dry.exit_code == code, dry.stderr
        assert dry.stdout == ""


def test_dry_runs_walk_series_where_the_server_lists_no_instances_above_them(
        tinypacs_fresh: TinyPacs, tmp_path: Path) -> None:
    """tiny-pacs answers 404 to /instances and /studies/S/instances: the dry run lists a
    study's (and the store's) files through its series, as the real retrieve finds them,
    and delete's count does too."""
    files = corpus.synthetic_files(tmp_path / "in", 6, studies=2, series_per_study=2)
    url = tinypacs_fresh.url
    with Client(url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    studies = [str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID) for f in files]
    study = studies[0]
    for path in ([f"studies/{study}"], []):
        out = tmp_path / "out" / (path[0].replace("/", "_") if path else "store")
        dry = CliRunner().invoke(cli, [url, "retrieve", *path, "-o", str(out), "--dry-run"])
        assert dry.exit_code == 0, dry.stderr
        assert not out.exists()
        real = CliRunner().invoke(cli, [url, "retrieve", *path, "-o", str(out)])
        assert real.exit_code == 0, real.stderr
        saved = sorted(str(p) for p in out.rglob("*.dcm"))
        assert len(saved) == (studies.count(study) if path else 6)
        assert sorted(dry.stdout.splitlines()) == saved
    delete = CliRunner().invoke(cli, [url, "delete", f"studies/{study}", "--dry-run"])
    assert delete.exit_code == 0, delete.stderr
    assert len(delete.stdout.splitlines()) == studies.count(study)
    missing = CliRunner().invoke(cli, [url, "retrieve", "studies/9.9", "--dry-run"])
    assert missing.exit_code == 4, missing.stderr
    assert "retrieve studies/9.9: not found (a search finds no instance under it)" \
        in missing.stderr


def test_retrieve_dry_run_tells_which_files_would_be_replaced(local_server: LocalServer,
                                                              tmp_path: Path) -> None:
    """A rerun replaces the files of the same name (idempotent), whatever they hold: the
    dry run says which exist, and predicts a folder at a file's name as a failure."""
    files = corpus.synthetic_files(tmp_path / "in", 3)
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    out = tmp_path / "out"
    notes, taken, fresh = (out / d.StudyInstanceUID / d.SeriesInstanceUID
                           / f"{d.SOPInstanceUID}.dcm" for d in heads)
    notes.parent.mkdir(parents=True)
    notes.write_text("my precious notes")
    taken.mkdir(parents=True)
    dry = CliRunner().invoke(cli, [local_server.url, "retrieve", "-o", str(out), "--dry-run"])
    assert dry.exit_code == 6, dry.stderr
    assert sorted(dry.stdout.splitlines()) == sorted([str(notes), str(fresh)])
    assert f"dcmweb: info: {notes} exists: the real run replaces it" in lines(dry.stderr)
    assert f"dcmweb: error: the store: cannot save {taken}: a folder of that name is in " \
        "the way (move or rename it)" in lines(dry.stderr)
    assert f"dcmweb: info: would write 2 files under {out} (1 existing file replaced); " \
        "1 would fail; nothing written (--dry-run)" in lines(dry.stderr)
    assert notes.read_text() == "my precious notes"
    real = CliRunner().invoke(cli, [local_server.url, "retrieve", "-o", str(out)])
    assert real.exit_code == dry.exit_code, real.stderr
    assert notes.read_bytes() == files[0].read_bytes()
