"""The dcmweb command line: help, version, HOST handling, the documented example commands
run verbatim against real servers, and the real process (exit codes, stdout vs stderr,
a closed pipe)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from click.testing import CliRunner, Result

from dcmweb import Client, __version__
from dcmweb.cli import cli
from dcmweb.client import normalize_host
from dcmweb.errors import UsageError
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines
from dcmweb_devtools.orthanc import Orthanc

COMMANDS = ("store", "search", "retrieve", "delete")
NO_HOST_ENV = {"DCMWEB_HOST": None}


def dcmweb(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env={**NO_HOST_ENV, **(env or {})},
                              catch_exceptions=False)


def run_process(*args: str, stdin: int | None = subprocess.DEVNULL, timeout: float = 60,
                **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """dcmweb as a real process (python -m dcmweb), never near a terminal."""
    env = {k: v for k, v in os.environ.items() if k != "DCMWEB_HOST"}
    kwargs.setdefault("capture_output", True)
    return subprocess.run([sys.executable, "-m", "dcmweb", *args], text=True, stdin=stdin,
                          timeout=timeout, env=env, **kwargs)


# -- help and version -------------------------------------------------------------------------
def test_group_help_lists_commands_and_examples() -> None:
    result = dcmweb("--help")
    assert result.exit_code == 0
    assert "Examples:" in result.stdout
    assert 'dcmweb -m HOST store "./**.dcm"' in result.stdout
    assert 'dcmweb HOST search instances "PatientName=Sally%20Zhang&limit=10"' in result.stdout
    for command in COMMANDS:
        assert f"  {command} " in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_has_an_example(command: str) -> None:
    result = dcmweb("http://127.0.0.1:9/dicom-web", command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert "dcmweb" in result.stdout and f" {command} " in result.stdout.split("Example:")[1]


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_with_host_from_env(command: str) -> None:
    result = dcmweb(command, "--help", env={"DCMWEB_HOST": "http://127.0.0.1:9/dicom-web"})
    assert result.exit_code == 0
    assert "Example:" in result.stdout


def test_version() -> None:
    for flag in ("--version", "-V"):
        result = dcmweb(flag)
        assert result.exit_code == 0
        assert result.stdout == f"dcmweb, version {__version__}\n"


# -- HOST -------------------------------------------------------------------------------------
def test_store_name_expands_to_the_v1_url() -> None:
    name = "projects/P/locations/L/datasets/D/dicomStores/S"
    expected = ("https://healthcare.googleapis.com/v1/projects/P/locations/L/datasets/D"
                "/dicomStores/S/dicomWeb")
    assert normalize_host(name) == expected
    assert normalize_host(f"  {name}/ ") == expected
    assert normalize_host("http://127.0.0.1:8042/dicom-web/") == "http://127.0.0.1:8042/dicom-web"
    # Not a full store name: not expanded, and not a URL either.
    for host in ("projects/P/locations/L/datasets/D", "projects/P/locations/L/datasets/D/"
                 "dicomStores/S/dicomWeb", "ftp://example/x", "127.0.0.1:8042", ""):
        with pytest.raises(UsageError):
            normalize_host(host)


@pytest.mark.parametrize("host", ["127.0.0.1:8042/dicom-web", "ftp://127.0.0.1/x", "http://",
                                  "http://[::1/dicom-web", "http://[zz]/dicom-web",
                                  "http://127.0.0.1:99999/dicom-web", "http://host:abc/x",
                                  "http://:80/dicom-web", "http://user:pw@/dicom-web"])
def test_invalid_host_is_exit_2(host: str) -> None:
    result = dcmweb(host, "search")
    assert result.exit_code == 2
    assert lines(result.stderr)[0].startswith("dcmweb: error: invalid HOST")
    assert result.stdout == ""


def test_missing_host_is_exit_2() -> None:
    result = dcmweb("search", "instances")
    assert result.exit_code == 2
    assert "HOST is missing" in result.stderr
    assert result.stdout == ""


def test_dcmweb_host_stands_in_for_host(local_server: LocalServer, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "f", 3)
    with Client(local_server.url) as client:
        client.store(files)
    result = dcmweb("search", "instances", env={"DCMWEB_HOST": local_server.url})
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3
    # Global options before the command still work with the host left out.
    quiet = dcmweb("-q", "--retries", "1", "search", env={"DCMWEB_HOST": local_server.url})
    assert quiet.exit_code == 0, quiet.stderr
    assert len(json.loads(quiet.stdout)) == 1


def test_global_options_may_follow_host(local_server: LocalServer, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "f", 2)
    with Client(local_server.url) as client:
        client.store(files)
    result = dcmweb(local_server.url, "-q", "--workers", "2", "-m", "search", "instances",
                    "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert result.stderr == ""


def test_unreachable_host_is_exit_5() -> None:
    result = dcmweb("--retries", "0", "http://127.0.0.1:1/dicom-web", "search")
    assert result.exit_code == 5
    assert "connection refused" in result.stderr
    assert result.stdout == ""


# -- the documented examples, verbatim ------------------------------------------------------------
@pytest.fixture
def example_dir(tmp_path: Path, pydicom_files: list[Path]) -> Path:
    """A folder with copies of pydicom files and three instances of patient Sally Zhang."""
    folder = tmp_path / "scans"
    folder.mkdir()
    picked = [p for p in corpus.unique_by_sop(corpus.orthanc_safe(pydicom_files))
              if p.suffix == ".dcm"][:12]
    for path in picked:
        shutil.copyfile(path, folder / path.name)
    for path in corpus.synthetic_files(folder / "sally" / "deep", 3, patient_id="SZ"):
        ds = pydicom.dcmread(path)
        ds.PatientName = "Sally Zhang"
        ds.save_as(path, enforce_file_format=True)
    (folder / "notes.txt").write_text("not DICOM and not matched by the mask")
    return folder


VERBATIM_QUERY = "PatientName=Sally%20Zhang&limit=10"


def run_examples(host: str, folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                 query: str = VERBATIM_QUERY) -> None:
    monkeypatch.chdir(folder)
    stored = dcmweb("-m", host, "store", "./**.dcm")
    assert stored.exit_code == 0, stored.stderr
    assert "in 15 files" in lines(stored.stderr)[-1]
    assert " uploaded as " in stored.stderr
    assert stored.stdout == ""

    found = dcmweb(host, "search", "instances", query)
    assert found.exit_code == 0, found.stderr
    rows = json.loads(found.stdout)
    assert len(rows) == 3
    [study] = {row["0020000D"]["Value"][0] for row in rows}

    out = tmp_path / "downloads"
    got = dcmweb(host, "retrieve", f"studies/{study}", "--output", str(out))
    assert got.exit_code == 0, got.stderr
    saved = sorted(p for p in out.rglob("*.dcm"))
    assert len(saved) == 3
    sources = sorted((folder / "sally" / "deep").iterdir())
    assert sorted(p.read_bytes() for p in saved) == sorted(p.read_bytes() for p in sources)

    deleted = dcmweb(host, "delete", f"studies/{study}")
    assert deleted.exit_code == 0, deleted.stderr
    after = dcmweb(host, "search", "instances", query)
    assert json.loads(after.stdout) == []
    others = dcmweb(host, "search", "instances")
    assert len(json.loads(others.stdout)) == 12


def test_examples_against_the_local_server(tmp_path: Path, example_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalServer(tmp_path / "store", delete_delay=0.05) as srv:
        run_examples(srv.url, example_dir, monkeypatch, tmp_path)


def test_examples_against_orthanc(orthanc: Orthanc, example_dir: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Orthanc 1.10 never matches a PatientName holding a space exactly (its own quirk:
    # Sally%20Zhang finds nothing, with curl too); one wildcard stands in for the space.
    run_examples(orthanc.url, example_dir, monkeypatch, tmp_path,
                 query="PatientName=Sally?Zhang&limit=10")


# -- settings checked before anything is sent -------------------------------------------------
@pytest.mark.parametrize("where", ["missing/r.csv", "a-file/r.jsonl", "missing/deeper/r.csv"])
def test_a_report_in_a_missing_folder_is_refused_before_sending(
        local_server: LocalServer, tmp_path: Path, where: str) -> None:
    corpus.synthetic_files(tmp_path / "f", 2)
    (tmp_path / "a-file").write_text("")
    report = tmp_path / where
    result = dcmweb(local_server.url, "store", str(tmp_path / "f"), "--report", str(report))
    assert (result.exit_code, result.stdout) == (2, "")
    assert lines(result.stderr) == [
        f"dcmweb: error: cannot write the report {report}: there is no folder "
        f"{report.parent} (create it, or give another --report)"]
    with Client(local_server.url) as client:
        assert client.search("instances") == []


def test_a_report_named_like_an_input_is_not_overwritten(
        local_server: LocalServer, tmp_path: Path) -> None:
    """``--report a.dcm b.dcm`` names an input as the report: it is kept, nothing is sent.
    An earlier report (CSV or JSON lines, of any version) is replaced as before."""
    files = corpus.synthetic_files(tmp_path / "f", 2)
    before = files[0].read_bytes()
    result = dcmweb(local_server.url, "store", "--report", str(files[0]), str(files[1]))
    assert (result.exit_code, result.stdout) == (2, "")
    assert lines(result.stderr) == [
        f"dcmweb: error: --report {files[0]} is an existing file that is not a dcmweb "
        "report: not overwritten (give a new file name: .csv or .jsonl)"]
    assert files[0].read_bytes() == before
    with Client(local_server.url) as client:
        assert client.search("instances") == []
    for name in ("r.csv", "r.jsonl"):
        report = tmp_path / name
        for _ in range(2):
            again = dcmweb(local_server.url, "store", str(files[1]), "--report", str(report))
            assert again.exit_code == 0, again.stderr
        assert report.read_text().count(str(files[1])) == 1


def test_report_dash_is_stdout(local_server: LocalServer, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    corpus.synthetic_files(tmp_path / "f", 2)
    monkeypatch.chdir(tmp_path)
    result = dcmweb(local_server.url, "store", "f", "--report", "-")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(row)["status"] for row in result.stdout.splitlines()] == ["stored"] * 2
    assert not (tmp_path / "-").exists()


# -- the real process ---------------------------------------------------------------------------
@pytest.fixture
def many(local_server: LocalServer, tmp_path: Path) -> LocalServer:
    """300 instances: their pretty JSON (about 250 KB) overflows a pipe buffer."""
    files = corpus.synthetic_files(tmp_path / "many", 300, studies=3)
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(files, batch_size=100)} == {"stored"}
    return local_server


def test_process_separates_stdout_and_stderr(many: LocalServer) -> None:
    ok = run_process("-v", many.url, "search", "instances")
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)) == 300  # only data on stdout...
    assert "debug: GET" in ok.stderr  # ...the request log on stderr
    assert "[" not in ok.stderr

    missing = run_process(many.url, "retrieve", "studies/1.2.3.404", "--output", "/nonexistent")
    assert missing.returncode == 4
    assert missing.stdout == ""
    assert lines(missing.stderr)[-1].startswith("dcmweb: error: retrieve studies/1.2.3.404")
    assert "Traceback" not in missing.stderr

    usage = run_process(many.url, "search", "nowhere")
    assert (usage.returncode, usage.stdout) == (2, "")


@pytest.mark.parametrize("args", [("search", "instances"), ("search", "--format", "csv"),
                                  ("retrieve", "{study}/metadata")])
def test_a_full_disk_behind_stdout_is_a_clear_error(many: LocalServer, args: tuple[str, ...],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """> FILE on a full disk: said as such, once, exit 1; it had been an "unexpected
    error" (a bug, report it), then, in CSV, said twice (the second time as "[Errno 28]
    No space left on device", by the flush at exit)."""
    with Client(many.url) as client:
        study = "studies/" + client.search("studies")[0]["0020000D"]["Value"][0]
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # stdout buffered, as for users
    with open("/dev/full", "w") as full:
        result = run_process(many.url, *(arg.format(study=study) for arg in args),
                             capture_output=False, stdout=full, stderr=subprocess.PIPE)
    assert result.returncode == 1, result.stderr
    assert [line for line in lines(result.stderr) if " error: " in line] == [
        "dcmweb: error: cannot write to stdout: No space left on device"]


def test_console_script(many: LocalServer) -> None:
    script = Path(sys.executable).with_name("dcmweb")
    if not script.exists():
        pytest.skip("the dcmweb console script is not installed next to this python")
    done = subprocess.run([str(script), many.url, "search", "studies", "--format", "jsonl"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3


def test_closed_stdout_prints_no_traceback(many: LocalServer) -> None:
    """`dcmweb HOST search instances | head -1`."""
    env = {k: v for k, v in os.environ.items() if k != "DCMWEB_HOST"}
    producer = subprocess.Popen([sys.executable, "-m", "dcmweb", many.url, "search", "instances"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert producer.stdout is not None and producer.stderr is not None
    head = subprocess.run(["head", "-1"], stdin=producer.stdout, capture_output=True,
                          timeout=60)
    producer.stdout.close()  # only head holds the read end now; it has exited
    stderr = producer.stderr.read().decode()
    producer.stderr.close()
    assert producer.wait(timeout=60) == 0, stderr
    assert head.stdout == b"[\n"
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr
    assert "BrokenPipe" not in stderr


def _closed(fd: int) -> Callable[[], None]:
    return lambda: os.close(fd)


def test_closed_stdout_or_stdin_is_one_error_line(many: LocalServer) -> None:
    # A wrapper that closes fd 1 (or 0): Python starts with sys.stdout (sys.stdin) None.
    search = run_process(many.url, "search", "--format", "uids", stdout=None,
                         preexec_fn=_closed(1), capture_output=False, stderr=subprocess.PIPE)
    assert search.returncode == 1
    assert lines(search.stderr) == [
        "dcmweb: error: cannot write to stdout: it is closed (run dcmweb with its output "
        "open, e.g. > FILE)"]
    store = run_process(many.url, "store", "-", stdin=None, preexec_fn=_closed(0))
    assert store.returncode == 2
    assert lines(store.stderr) == [
        "dcmweb: error: cannot read the file list -: stdin is closed"]


def test_closed_stderr_still_stores(local_server: LocalServer, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "f", 3)
    done = run_process(local_server.url, "store", str(tmp_path / "f"), preexec_fn=_closed(2),
                       capture_output=False, stdout=subprocess.PIPE)
    assert done.returncode == 0
    with Client(local_server.url) as client:
        assert len(client.search("instances")) == len(files)


def test_ctrl_c_is_exit_130_and_stops_promptly(local_server: LocalServer,
                                                tmp_path: Path) -> None:
    """SIGINT during a store whose server is slow: one 'interrupted' line, exit 130, and
    the process ends without waiting for the slow answers."""
    files = corpus.synthetic_files(tmp_path / "f", 6)
    local_server.inject_fault(200, count=100, delay=30.0, method="POST")
    env = {k: v for k, v in os.environ.items() if k != "DCMWEB_HOST"}
    process = subprocess.Popen(
        [sys.executable, "-m", "dcmweb", "-m", "--workers", "2", local_server.url, "store",
         "--batch-size", "1", *map(str, files)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(2.0)  # started, and waiting for the slow answers (recorded only when sent)
    assert process.poll() is None
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=25)
    assert process.returncode == 130, stderr
    assert time.monotonic() - started < 10
    assert stdout == ""
    assert "dcmweb: error: interrupted" in stderr
    assert "Traceback" not in stderr


def _run_in_terminal(args: list[str], timeout: float = 60) -> tuple[int, str]:
    """dcmweb with stdout and stderr on a pseudo-terminal of 100 columns."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "DCMWEB_HOST"}
    process = subprocess.Popen([sys.executable, "-m", "dcmweb", *args], stdin=slave,
                               stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            out += data
        elif process.poll() is not None:
            break
    os.close(master)
    return process.wait(timeout=5), out.decode(errors="replace")


def test_progress_bar_on_a_terminal_only(local_server: LocalServer, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "f", 30)
    code, screen = _run_in_terminal([local_server.url, "store", str(tmp_path / "f")])
    assert code == 0, screen
    assert "30/30 files" in screen and "B/s" in screen  # bytes, with files after them
    piped = run_process(local_server.url, "store", *map(str, files))
    assert piped.returncode == 0
    assert "\r" not in piped.stderr and "B/s" not in piped.stderr  # a cron log stays clean
