"""delete asks before removing a study or series when someone is at a terminal, never
otherwise; --dry-run lists what would go and deletes nothing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines


def dcmweb(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def one_study(server: LocalServer, tmp_path: Path, count: int = 3) -> str:
    with Client(server.url) as client:
        client.store(corpus.synthetic_files(tmp_path / "f", count))
        [study] = client.search("studies")
    return str(study["0020000D"]["Value"][0])


def count(server: LocalServer) -> int:
    with Client(server.url) as client:
        return len(client.search("instances"))


def test_dry_run_lists_and_deletes_nothing(local_server: LocalServer, tmp_path: Path) -> None:
    study = one_study(local_server, tmp_path)
    result = dcmweb(local_server.url, "delete", f"studies/{study}", "--dry-run")
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {row["0020000D"]["Value"][0] for row in rows} == {study} and len(rows) == 3
    assert lines(result.stderr) == [
        f"dcmweb: info: would delete studies/{study} (3 instances); nothing deleted (--dry-run)"]
    assert count(local_server) == 3
    assert [r.method for r in local_server.requests if r.method == "DELETE"] == []


def test_dry_run_of_one_instance(local_server: LocalServer, tmp_path: Path) -> None:
    study = one_study(local_server, tmp_path)
    with Client(local_server.url) as client:
        row = client.search("instances")[0]
    series, sop = row["0020000E"]["Value"][0], row["00080018"]["Value"][0]
    path = f"studies/{study}/series/{series}/instances/{sop}"
    result = dcmweb(local_server.url, "delete", path, "--dry-run")
    assert result.exit_code == 0
    assert [json.loads(line)["00080018"]["Value"][0] for line in result.stdout.splitlines()] \
        == [sop]


def test_no_terminal_never_asks(local_server: LocalServer, tmp_path: Path) -> None:
    study = one_study(local_server, tmp_path)
    result = dcmweb(local_server.url, "delete", f"studies/{study}", stdin="n\n")
    assert result.exit_code == 0, result.stderr
    assert "Delete" not in result.stderr + result.stdout
    assert count(local_server) == 0


CTRL_C = b"\x03"


def _in_terminal(args: list[str], answer: bytes, timeout: float = 60,
                 log: Path | None = None) -> tuple[int, str]:
    """dcmweb with stdin and stderr (or stdin alone, stderr to ``log``) on a
    pseudo-terminal; ``answer`` typed at the prompt."""
    import pty
    import select

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "DCMWEB_HOST"}
    with open(log, "wb") if log else contextlib.nullcontext(slave) as stderr:
        process = subprocess.Popen([sys.executable, "-m", "dcmweb", *args], stdin=slave,
                                   stdout=subprocess.DEVNULL, stderr=stderr, env=env,
                                   close_fds=True)
    os.close(slave)
    screen, answered = b"", False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            screen += data
            if not answered and b"[y/N]" in screen:
                if answer == CTRL_C:  # the pty is not the child's controlling terminal
                    # Once it waits in read(): a signal just before that call would wait
                    # for the read to end (Python runs handlers between bytecodes).
                    time.sleep(0.5)
                    process.send_signal(signal.SIGINT)
                else:
                    os.write(master, answer)
                answered = True
        elif process.poll() is not None:
            break
    os.close(master)
    return process.wait(timeout=10), screen.decode(errors="replace")


def test_a_terminal_is_asked_and_no_keeps_the_study(local_server: LocalServer,
                                                    tmp_path: Path) -> None:
    study = one_study(local_server, tmp_path)
    code, screen = _in_terminal([local_server.url, "delete", f"studies/{study}"], b"n\n")
    assert code == 2, screen
    assert f"Delete studies/{study} (3 instances)? [y/N]" in screen
    assert f"dcmweb: error: studies/{study} not deleted (answer y, or give --yes)" in screen
    assert count(local_server) == 3


def test_ctrl_c_at_the_question_is_an_interrupt(local_server: LocalServer,
                                               tmp_path: Path) -> None:
    """It had been taken for "no": a usage error (exit 2) written after the question."""
    study = one_study(local_server, tmp_path)
    code, screen = _in_terminal([local_server.url, "delete", f"studies/{study}"], CTRL_C)
    assert code == 130, screen
    question = f"Delete studies/{study} (3 instances)? [y/N]: "
    assert question + "\r\n" in screen  # the error on a line of its own
    assert screen.rstrip().endswith("dcmweb: error: interrupted")
    assert count(local_server) == 3


def test_with_stderr_in_a_log_the_question_is_asked_on_the_terminal(
        local_server: LocalServer, tmp_path: Path) -> None:
    """`delete ... 2>log` at a terminal wrote the question into the log and waited."""
    study = one_study(local_server, tmp_path)
    log = tmp_path / "delete.log"
    code, screen = _in_terminal([local_server.url, "delete", f"studies/{study}"], b"n\n",
                                timeout=20, log=log)
    assert code == 2, screen
    assert f"Delete studies/{study} (3 instances)? [y/N]" in screen
    assert "[y/N]" not in log.read_text()
    assert f"studies/{study} not deleted" in log.read_text()
    assert count(local_server) == 3


def test_a_terminal_answer_yes_deletes(local_server: LocalServer, tmp_path: Path) -> None:
    study = one_study(local_server, tmp_path)
    code, screen = _in_terminal([local_server.url, "delete", f"studies/{study}"], b"y\n")
    assert code == 0, screen
    assert count(local_server) == 0


def test_yes_never_asks_even_on_a_terminal(local_server: LocalServer, tmp_path: Path) -> None:
    study = one_study(local_server, tmp_path)
    code, screen = _in_terminal([local_server.url, "delete", f"studies/{study}", "--yes"],
                                b"n\n")
    assert code == 0, screen
    assert "[y/N]" not in screen
    assert count(local_server) == 0


def test_dry_run_of_a_missing_study_is_not_found(local_server: LocalServer) -> None:
    real = dcmweb(local_server.url, "delete", "studies/1.2.3")
    dry = dcmweb(local_server.url, "delete", "studies/1.2.3", "--dry-run")
    assert real.exit_code == dry.exit_code == 4, dry.stderr
    assert dry.stdout == ""
    assert lines(dry.stderr) == ["dcmweb: error: delete studies/1.2.3: not found (a search finds "
                                 "no instance under it) (check the HOST URL and the UIDs in the "
                                 "path)"]


def test_a_terminal_is_not_asked_about_a_missing_study(local_server: LocalServer) -> None:
    code, screen = _in_terminal([local_server.url, "delete", "studies/1.2.3"], b"y\n")
    assert code == 4, screen
    assert "[y/N]" not in screen
    assert "delete studies/1.2.3: not found" in screen
    assert [r.method for r in local_server.requests if r.method == "DELETE"] == []


@pytest.mark.parametrize("path", ["", " ", "/"])
def test_dry_run_refuses_a_store_level_path_as_the_real_delete_does(
        local_server: LocalServer, tmp_path: Path, path: str) -> None:
    """`delete "$EMPTY" --dry-run` as a safety check must not promise the whole store."""
    one_study(local_server, tmp_path)
    real = dcmweb(local_server.url, "delete", path, "--yes")
    dry = dcmweb(local_server.url, "delete", path, "--dry-run")
    assert real.exit_code == dry.exit_code == 2, dry.stderr
    assert dry.stdout == ""
    assert lines(dry.stderr) == lines(real.stderr) == [
        f"dcmweb: error: invalid path {path!r}: delete needs at least a study "
        "(expected studies/UID[/series/UID[/instances/UID]])"]
    assert [r.path for r in local_server.requests if "instances" in r.path] == []
    assert count(local_server) == 3
