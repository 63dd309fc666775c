"""Shared fixtures: real DICOMweb servers (Orthanc, tiny-pacs), dcmweb's local server, corpora.

Servers listen on 127.0.0.1 only and are stopped by their own PID. When a server cannot be
run because something is not installed, the test is skipped with the install command in
the reason, except under CI=true, where it fails: a missing dependency must never hide as
a skip in CI.

Measured on a 2-core machine: Orthanc starts in about 0.08 s (but takes about 2 s to shut
down, so per-test instances are stopped in the background), tiny-pacs starts in about
0.45 s and stops at once.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from dcmweb_devtools import corpus
from dcmweb_devtools.orthanc import INSTALL_HINT as ORTHANC_HINT
from dcmweb_devtools.orthanc import Orthanc, OrthancInstall, find_orthanc
from dcmweb_devtools.procs import MissingDependency, compile_shim, wait_for_background_stops
from dcmweb_devtools.tinypacs import INSTALL_HINT as TINYPACS_HINT
from dcmweb_devtools.tinypacs import TinyPacs, find_tinypacs

if TYPE_CHECKING:
    from dcmweb.testing import LocalServer


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing_dependency(message: str) -> NoReturn:
    """Skip the test, or fail it under CI=true."""
    if in_ci():
        pytest.fail(f"{message} [CI=true: a missing test dependency is an error]", pytrace=False)
    pytest.skip(message)


# -- plumbing ----------------------------------------------------------------------------
@pytest.fixture(scope="session", autouse=True)
def _no_user_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every option has a DCMWEB_* variable and a config file may set it: the tests run
    with neither from the machine they run on (a test sets what it needs), nor with the
    machine's PYTHONUNBUFFERED."""
    saved = dict(os.environ)
    for name in [name for name in os.environ if name.startswith("DCMWEB_")]:
        del os.environ[name]
    # A CI machine may set PYTHONUNBUFFERED; a user's shell does not: the dcmweb processes
    # the tests start write to pipes block-buffered, as they do under cron.
    os.environ.pop("PYTHONUNBUFFERED", None)
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg-config"))
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session", autouse=True)
def _signals_as_at_a_terminal() -> None:
    """Started under nohup, or as a background job of a script, the tests inherit an ignored
    SIGHUP or SIGINT, which dcmweb rightly keeps ignoring: the stop tests need the signals a
    terminal delivers, in this process and in the dcmweb processes it starts."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def _reap_background_stops() -> Iterator[None]:
    """At the end of the session wait until every server stopped in the background is gone."""
    yield
    wait_for_background_stops()


@pytest.fixture(scope="session")
def support_cache_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                      ) -> Path:
    """Where the loopback shim is compiled (the pytest cache, else a session temp dir)."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("dcmweb-test-support"))
    return tmp_path_factory.mktemp("support-cache")


@pytest.fixture(scope="session")
def loopback_shim(support_cache_dir: Path) -> Path:
    """The compiled LD_PRELOAD shim that keeps servers on 127.0.0.1 (needs gcc)."""
    try:
        return compile_shim(support_cache_dir)
    except MissingDependency as exc:
        missing_dependency(str(exc))


@pytest.fixture(scope="session")
def orthanc_install(loopback_shim: Path) -> OrthancInstall:
    install = find_orthanc()
    if install is None:
        missing_dependency(f"Orthanc is missing: run '{ORTHANC_HINT}'")
    return install


@pytest.fixture(scope="session")
def tinypacs_command(loopback_shim: Path) -> list[str]:
    command = find_tinypacs()
    if command is None:
        missing_dependency(f"tiny-pacs is missing: run {TINYPACS_HINT}")
    return command


# -- servers -------------------------------------------------------------------------------
@pytest.fixture
def orthanc(orthanc_install: OrthancInstall, support_cache_dir: Path, tmp_path: Path
            ) -> Iterator[Orthanc]:
    """A fresh, empty Orthanc for this test. `.url` is the DICOMweb base."""
    server = Orthanc(tmp_path / "orthanc", cache_dir=support_cache_dir, install=orthanc_install)
    server.start()
    try:
        yield server
    finally:
        server.stop(wait=False)  # SIGTERM now; reaped (SIGKILL after 10 s) in the background


@pytest.fixture(scope="session")
def orthanc_session(orthanc_install: OrthancInstall, support_cache_dir: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """One Orthanc shared by the whole session, for read-mostly tests: use unique UIDs."""
    server = Orthanc(tmp_path_factory.mktemp("orthanc-session"), cache_dir=support_cache_dir,
                     install=orthanc_install)
    with server:
        yield server


@pytest.fixture(scope="module")
def tinypacs(tinypacs_command: list[str], support_cache_dir: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyPacs]:
    """A tiny-pacs shared by one test module (0.45 s to start). It has no DELETE and answers
    409 to duplicates: store each instance once per module, or use `tinypacs_fresh`."""
    with TinyPacs(tmp_path_factory.mktemp("tinypacs"), cache_dir=support_cache_dir) as server:
        yield server


@pytest.fixture
def tinypacs_fresh(tinypacs_command: list[str], support_cache_dir: Path, tmp_path: Path
                   ) -> Iterator[TinyPacs]:
    """A new, empty tiny-pacs for this test."""
    with TinyPacs(tmp_path / "tinypacs", cache_dir=support_cache_dir) as server:
        yield server


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[LocalServer]:
    """dcmweb's own GCP-like test server, storing under tmp_path/store."""
    from dcmweb.testing import LocalServer

    with LocalServer(tmp_path / "store") as srv:
        yield srv


@pytest.fixture
def quick_operation_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll Google-like operations every 0.1 s instead of from 1 s up: quick tests."""
    from dcmweb import operations

    monkeypatch.setattr(operations, "POLL_FIRST", 0.1)
    monkeypatch.setattr(operations, "POLL_MAX", 0.1)


# -- corpora -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pydicom_files() -> list[Path]:
    """pydicom's bundled Part-10 test files (local files only, never downloaded)."""
    files = corpus.pydicom_files()
    if not files:
        missing_dependency(f"no DICOM files under {corpus.pydicom_test_files_dir()}")
    return files


@pytest.fixture(scope="session")
def pydicom_data_files() -> list[Path]:
    """The Part-10 files of the pydicom-data package."""
    files = corpus.pydicom_data_files()
    if not files:
        missing_dependency(f"pydicom-data is missing: run {corpus.PYDICOM_DATA_HINT}")
    return files


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI=true a skipped test is a failure: a skip there hides a missing dependency."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI=true (not allowed): {reason}"
