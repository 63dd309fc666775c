"""Packaging: the sdist builds a wheel, the wheel installs into a clean virtualenv and
works there (--version, one store against the local server), and carries its license."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from dcmweb import Client, __version__
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel, the wheel built from the unpacked sdist (python -m build)."""
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend (setuptools>=77, in the dev extra) comes from this
    # environment, so building needs no download.
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    return out


def test_sdist_has_what_its_tests_need(dist: Path) -> None:
    [sdist] = dist.glob("dcmweb-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in ("LICENSE", "CHANGELOG.md", "pyproject.toml", "tests/conftest.py",
                   "tests/hostile.py", "dcmweb_devtools/procs.py",
                   "dcmweb_devtools/loopback-bind.c", "docs/usage.md", "scripts/test"):
        assert needed in names, needed
    assert not [name for name in names if "__pycache__" in name]


def test_wheel_metadata(dist: Path) -> None:
    [wheel] = dist.glob("dcmweb-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"dcmweb-{__version__}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert f"{info}/licenses/LICENSE" in names
    assert not [name for name in names if name.startswith(("tests/", "dcmweb_devtools/"))]
    assert "License-Expression: Apache-2.0" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    assert "Keywords: dicom,dicomweb" in metadata
    assert "requests-toolbelt" not in metadata
    assert 'Requires-Dist: tomli>=1.1; python_version < "3.11"' in metadata
    assert "dcmweb = dcmweb.pytest_plugin" in entry_points


def test_wheel_in_a_clean_virtualenv(dist: Path, tmp_path: Path) -> None:
    [wheel] = dist.glob("dcmweb-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DCMWEB_", "PYTHON"))}
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", str(wheel)],
                   check=True, timeout=600, env=env)
    dcmweb = str(venv / "bin" / "dcmweb")
    version = subprocess.run([dcmweb, "--version"], capture_output=True, text=True,
                             check=True, timeout=60, env=env, cwd=tmp_path)
    assert version.stdout == f"dcmweb, version {__version__}\n"
    files = corpus.synthetic_files(tmp_path / "f", 2)
    with LocalServer(tmp_path / "store") as server:
        stored = subprocess.run([dcmweb, server.url, "store", str(tmp_path / "f")],
                                capture_output=True, text=True, timeout=120, env=env,
                                cwd=tmp_path)
        assert stored.returncode == 0, stored.stderr
        assert stored.stderr.rstrip().endswith(" in 2 files")
        with Client(server.url) as client:
            assert len(client.search("instances")) == len(files)
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import dcmweb; print(dcmweb.__file__)"], capture_output=True,
                           text=True, check=True, timeout=60, env=env, cwd=tmp_path)
    assert where.stdout.startswith(str(venv))  # the wheel's copy, not this checkout
