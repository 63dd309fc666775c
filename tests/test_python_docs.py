"""docs/python.md: every Python example runs, in order, against the local server."""

from __future__ import annotations

import re
from pathlib import Path

from dcmweb.testing import LocalServer

DOC = Path(__file__).resolve().parent.parent / "docs" / "python.md"


def test_the_examples_run(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6
    with LocalServer(tmp_path / "store", delete_delay=0.05) as server:
        namespace: dict[str, object] = {}
        for block in blocks:
            code = block.replace('"http://127.0.0.1:8042/dicom-web"', repr(server.url))
            exec(compile(code, str(DOC), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "stored 1.3.6.1.4.1." in printed
    assert f"404 {server.url}/studies/1.2.3.404" in printed
