"""Start-up: a command imports only what it needs (each import is paid on every run).

A whole `dcmweb retrieve` process should spend at most about 120 ms before its first byte
(docs/performance.md); most of that is the interpreter and click. These tests pin that
nothing heavier comes along: requests, urllib3, http.client and its email package (dcmweb
speaks HTTP itself, wire.py), ssl for an http:// HOST,
pydicom (numpy), google-auth, sqlite, the test server, the store machinery, a TOML parser
without a config file, the search pager, dataclasses (each class costs about 1 ms to make:
dcmweb's own are records, dcmweb/record.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dcmweb import Client
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus

# Runs the command in a fresh interpreter, then lists every module it imported.
_RUN = """
import json, sys
report = sys.argv.pop(1)
from dcmweb.cli import cli
try:
    cli.main(prog_name="dcmweb")  # main() would end the process before the report
except SystemExit as done:
    code = done.code
with open(report, "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""

HEAVY = ("pydicom", "numpy", "google.auth", "sqlite3", "dcmweb.testing", "dcmweb.store",
         "dcmweb.bulk", "dcmweb.bulkrecords", "dcmweb.conflicts", "dcmweb.onserver",
         "dcmweb.journal", "dcmweb.files", "dcmweb.inputs", "tqdm",
         "requests_toolbelt", "pytest")


def imported(tmp_path: Path, *args: str) -> set[str]:
    report = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", _RUN, str(report), *args],
                          capture_output=True, text=True, timeout=120)
    result = json.loads(report.read_text())
    assert result["code"] in (0, None), done.stderr
    return set(result["modules"])


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_help_imports_no_http_stack(tmp_path: Path) -> None:
    modules = imported(tmp_path, "--help")
    assert loaded(modules, ("requests", "urllib3", "ssl", *HEAVY)) == []


@pytest.fixture
def one_study(local_server: LocalServer, tmp_path: Path) -> str:
    files = corpus.synthetic_files(tmp_path / "files", 2)
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
        return str(client.search("studies")[0]["0020000D"]["Value"][0])


def test_retrieve_of_a_study_imports_only_what_it_needs(local_server: LocalServer,
                                                         one_study: str,
                                                         tmp_path: Path) -> None:
    modules = imported(tmp_path, local_server.url, "retrieve", f"studies/{one_study}",
                       "--output", str(tmp_path / "out"))
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 2
    # No config file (the tests' XDG_CONFIG_HOME is empty): no TOML parser. One study
    # without -m: no listing, so no search pager and its futures.
    assert loaded(modules, (*HEAVY, "requests", "urllib3", "tomllib", "tomli",
                            "dcmweb.search", "concurrent.futures", "secrets", "http.client",
                            "email", "ssl", "encodings.idna", "dataclasses")) == []


def test_a_plain_store_imports_none_of_the_options_machinery(local_server: LocalServer,
                                                             tmp_path: Path) -> None:
    """Without --journal, --report, --shard or --skip-existing: no SQLite, csv, hashlib,
    search pager; and, as for every command on http://, no http.client, email or ssl."""
    files = corpus.synthetic_files(tmp_path / "files", 2)
    modules = imported(tmp_path, local_server.url, "store", str(tmp_path / "files"))
    with Client(local_server.url) as client:
        assert len(client.search("instances")) == len(files)
    assert loaded(modules, ("sqlite3", "csv", "hashlib", "dcmweb.search", "dcmweb.existing",
                            "dcmweb.report", "http.client", "email", "ssl", "requests",
                            "urllib3", "pydicom", "numpy", "dataclasses")) == []


def test_the_collector_does_not_walk_start_up_objects_over_and_over(tmp_path: Path) -> None:
    """The CLI raises the collector's first threshold before its imports (dcmweb/cli.py):
    at the default one, importing what a command needs took some 25 passes."""
    script = ("import gc, sys\n"
              "passes = []\n"
              "gc.callbacks.append(lambda phase, info: passes.append(phase))\n"
              "import dcmweb.cli, dcmweb.client, dcmweb.retrieve, dcmweb.bulk\n"
              "print(passes.count('stop'), gc.get_threshold()[0])\n")
    # Bytecode in a private cache, written by the first run, as an installed wheel has it:
    # compiling the modules on every run would allocate far more than importing them.
    env = {name: value for name, value in os.environ.items()
           if name != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "bytecode")
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=120, check=True, env=env)
    passes, threshold = map(int, done.stdout.split())
    assert threshold == 20_000
    assert passes <= 5, f"{passes} collector passes while importing (26 at the default)"


# The console script, with a teardown hook that says whether Python's teardown ran.
_CONSOLE = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("teardown ran\\\\n"))
from dcmweb.cli import main
main()
"""


def console(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _CONSOLE, *args], capture_output=True,
                          text=True, timeout=120)


def test_the_console_script_ends_without_the_interpreters_teardown() -> None:
    """Freeing every module and object at exit took 20-40 ms of each run (cli.main)."""
    done = console("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("dcmweb, version ")
    assert "teardown ran" not in done.stderr


def test_the_console_script_keeps_every_exit_status_and_line(local_server: LocalServer,
                                                             tmp_path: Path) -> None:
    """The statuses of a partial failure and of a usage error, and every output line,
    survive the early exit, stdout in a pipe (block-buffered) included."""
    files = corpus.synthetic_files(tmp_path / "files", 30)
    stored = console(local_server.url, "store", str(tmp_path / "files"),
                     str(tmp_path / "missing.dcm"))  # named, and not there: a failed item
    assert stored.returncode == 6, stored.stderr
    assert stored.stderr.count(" uploaded as ") == len(files)
    listed = console(local_server.url, "search", "instances", "--format", "uids")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.split()) == len(files)
    assert listed.stdout.endswith("\n")
    wrong = console(local_server.url, "search", "--limit", "many")
    assert wrong.returncode == 2
    assert " dcmweb: error: Invalid value for '--limit'" in wrong.stderr
