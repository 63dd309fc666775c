"""The local server's modules import in one direction only (no cycles).

From the bottom: helpers, the HTTP handler, the modules answering requests, the
route table, the server, and its command line. A module may import only modules of
a lower layer, including imports made inside functions or under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dcmweb.testing

PACKAGE = Path(dcmweb.testing.__file__).parent
LAYERS: list[set[str]] = [
    {"multipart", "responses", "faults", "storage", "dicomjson", "pixels", "jsonjpeg"},
    {"operations"},
    {"handler"},
    {"metadata", "frames"},
    {"rendered"},
    {"qido", "stow", "wado"},
    {"routes"},
    {"server"},
    {"cli", "__init__"},
    {"__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def local_imports(path: Path) -> set[str]:
    """Names of the sibling modules a module imports, wherever the import is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "dcmweb.testing."
        ):
            found.add(node.module.split(".")[2])  # type: ignore[union-attr]
    return found


def test_every_module_has_a_layer() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules == set(RANK), "place new modules of dcmweb/testing in LAYERS"


def test_imports_only_go_down() -> None:
    upward = [
        f"{path.stem} imports {name}"
        for path in sorted(PACKAGE.glob("*.py"))
        for name in sorted(local_imports(path))
        if RANK[name] >= RANK[path.stem]
    ]
    assert upward == []


def test_the_checker_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .server import LocalServer\n"
        "def f():\n    from . import routes\n"
    )
    assert local_imports(module) == {"server", "routes"}
