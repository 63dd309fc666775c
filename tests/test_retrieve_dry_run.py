"""retrieve --dry-run: the files that would be written, found with a search; nothing written."""

from __future__ import annotations

from pathlib import Path

import pydicom
from click.testing import CliRunner

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb_devtools import corpus


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
