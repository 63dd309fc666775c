"""docs/python.md: every Python example runs, in order, against the local server; so do
the short ones of README.md and docs/usage.md."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pydicom
import pytest

from dcmweb import Client
from dcmweb.testing import LocalServer
from dcmweb_devtools.corpus import pydicom_test_files_dir

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "python.md"
EXAMPLE_URL = '"http://127.0.0.1:8042/dicom-web"'


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_the_examples_run(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    blocks = _python_blocks(DOC)
    assert len(blocks) >= 6
    with LocalServer(tmp_path / "store", delete_delay=0.05) as server:
        namespace: dict[str, object] = {}
        for block in blocks:
            code = block.replace(EXAMPLE_URL, repr(server.url))
            exec(compile(code, str(DOC), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "stored 1.3.6.1.4.1." in printed
    assert f"404 {server.url}/studies/1.2.3.404" in printed


@pytest.mark.parametrize("page", ["README.md", "docs/usage.md"])
def test_the_short_example_runs(page: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Its ./scans, study 1.2.3 and PatientID 123 stand for CT_small.dcm's."""
    [block] = [b for b in _python_blocks(ROOT / page) if EXAMPLE_URL in b]
    ct = pydicom_test_files_dir() / "CT_small.dcm"
    (tmp_path / "scans").mkdir()
    shutil.copy(ct, tmp_path / "scans")
    monkeypatch.chdir(tmp_path)
    header = pydicom.dcmread(ct, stop_before_pixels=True)
    with LocalServer(tmp_path / "store", delete_delay=0.05) as server:
        code = (block.replace(EXAMPLE_URL, repr(server.url))
                .replace("studies/1.2.3", f"studies/{header.StudyInstanceUID}")
                .replace('("PatientID", "123")', f'("PatientID", "{header.PatientID}")'))
        namespace: dict[str, object] = {}
        exec(compile(code, page, "exec"), namespace)
        assert [r.status for r in namespace["results"]] == ["stored"]  # type: ignore[attr-defined]
        assert len(namespace["rows"]) == 1  # type: ignore[arg-type]
        assert [p.read_bytes() for p in (tmp_path / "out").rglob("*.dcm")] == [ct.read_bytes()]
        with Client(server.url) as client:
            assert client.search("instances") == []  # deleted
