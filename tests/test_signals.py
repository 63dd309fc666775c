"""Ctrl-C (SIGINT), SIGTERM and SIGHUP stop every command promptly, in a real process: the
summary so far, one closing line, no partial files, exit 130 / 143 / 129.

Each test starts `python -m dcmweb` against a fake that stalls or keeps answering 503,
waits until dcmweb is provably waiting (the fake has seen the retries), sends the signal
and checks what the process said and left behind. The time bound only catches a hang.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pydicom
import pytest
from hostile import Hostile, Request, forward, multipart
from test_retrieve import files_under, study_of
from test_retrieve_stopped import complete_studies

from dcmweb import Client
from dcmweb.journal import Journal, Stamp
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

HANG = 10.0  # seconds: far more than the < 1 s dcmweb takes; only a hang goes past it
STOPS = [(signal.SIGINT, 130, "dcmweb: error: interrupted"),
         (signal.SIGTERM, 143, "dcmweb: error: terminated (SIGTERM)"),
         (signal.SIGHUP, 129, "dcmweb: error: terminated (SIGHUP)")]
STOP_IDS = ["SIGINT", "SIGTERM", "SIGHUP"]


def start(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCMWEB_")}
    return subprocess.Popen([sys.executable, "-m", "dcmweb", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str],
             timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"dcmweb ended early: {process.communicate()}")
        assert time.monotonic() < deadline, "dcmweb never got to the point of the test"
        time.sleep(0.05)


def stop(process: subprocess.Popen[str], number: int) -> tuple[str, list[str], float]:
    """Send the signal; (stdout, stderr lines, seconds until the process ended)."""
    sent = time.monotonic()
    process.send_signal(number)
    try:
        stdout, stderr = process.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError(f"dcmweb still running {HANG} s after the signal") from None
    elapsed = time.monotonic() - sent
    return stdout, lines(stderr), elapsed


def unavailable(req: Request) -> None:
    req.reply(503, b"busy", "text/plain", headers={"Retry-After": "1"})


def rows(*uids: str, tag: str = "0020000D") -> list[dict]:
    return [{tag: {"vr": "UI", "Value": [uid]}} for uid in uids]


@pytest.mark.parametrize(("number", "code", "line"), STOPS, ids=STOP_IDS)
def test_search_stops_while_the_next_page_is_retried(number: int, code: int,
                                                     line: str) -> None:
    def studies(req: Request) -> None:
        if req.params["offset"] == "0":
            req.json(200, rows("1.1", "1.2"), "application/dicom+json")
        else:
            unavailable(req)

    with Hostile() as fake:
        fake.route("GET", "/studies", studies)
        process = start(fake.url, "search", "--page-size", "2", "--format", "jsonl")
        wait_for(lambda: len(fake.seen("GET", "/studies")) >= 3, process)  # page 2 retried
        stdout, stderr, _ = stop(process, number)
    assert process.returncode == code, stderr
    assert stderr[-1] == line
    assert [json.loads(row) for row in stdout.splitlines()] == rows("1.1", "1.2")
    assert not any("Traceback" in text for text in stderr)


@pytest.mark.parametrize(("number", "code", "line"), STOPS, ids=STOP_IDS)
def test_whole_store_retrieve_stops_while_the_listing_is_retried(
        tmp_path: Path, number: int, code: int, line: str) -> None:
    [instance] = corpus.synthetic_files(tmp_path / "in", 1)
    study = corpus_uids(instance)[0]

    def studies(req: Request) -> None:
        if req.params["offset"] == "0":
            req.json(200, rows(study), "application/dicom+json")
        else:
            unavailable(req)

    out = tmp_path / "out"
    with Hostile() as fake:
        fake.route("GET", "/studies", studies)
        fake.route("GET", f"/studies/{study}", lambda req: req.reply(
            200, multipart([instance.read_bytes()], "b"), "multipart/related; boundary=b"))
        process = start("-m", fake.url, "retrieve", "--output", str(out))
        wait_for(lambda: len(fake.seen("GET", "/studies")) >= 3, process)
        _, stderr, _ = stop(process, number)
    assert process.returncode == code, stderr
    assert stderr[-1] == line
    assert stderr[-2].startswith("dcmweb: info: Transferred ")
    # The one saved before the signal, and the listing it never finished.
    assert stderr[-2].endswith(" in 1 file; the rest of the listing not retrieved (stopped)")
    assert [p.name for p in out.rglob("*") if p.is_file()] == [f"{corpus_uids(instance)[2]}.dcm"]


@pytest.mark.parametrize(("number", "code", "line"), STOPS, ids=STOP_IDS)
def test_retrieve_stopped_mid_file_leaves_no_partial_file(tmp_path: Path, number: int,
                                                          code: int, line: str) -> None:
    def stalls(req: Request) -> None:
        h = req.handler
        h.send_response(200)
        h.send_header("Content-Type", "multipart/related; boundary=s")
        h.end_headers()
        h.wfile.write(b"--s\r\nContent-Type: image/jpeg\r\n\r\n" + os.urandom(300_000))
        h.wfile.flush()
        time.sleep(30)  # and never more
        h.close_connection = True

    out = tmp_path / "out"
    with Hostile() as fake:
        instance = "studies/1.2/series/3.4/instances/5.6"  # image types: one per request
        fake.route("GET", f"/{instance}", stalls)
        process = start(fake.url, "retrieve", instance, "--type", "image/jpeg",
                        "--output", str(out))
        wait_for(lambda: any(out.rglob(".dcmweb-*")), process)  # writing the part
        _, stderr, _ = stop(process, number)
    assert process.returncode == code, stderr
    assert stderr[-1] == line
    assert "Transferred 0 B in 0 files" in stderr[-2], stderr
    assert [p for p in out.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("threads", [[], ["-m"]], ids=["one-thread", "-m"])
@pytest.mark.parametrize(("number", "code", "line"), STOPS, ids=STOP_IDS)
def test_retrieve_stopped_mid_study_reports_the_files_saved(
        tmp_path: Path, number: int, code: int, line: str, threads: list[str]) -> None:
    """The first instance is whole on disk when the signal comes during the second."""
    first, second = corpus.synthetic_files(tmp_path / "in", 2)
    study = corpus_uids(first)[0]

    def stalls(req: Request) -> None:
        h = req.handler
        h.send_response(200)
        h.send_header("Content-Type", "multipart/related; boundary=s")
        h.end_headers()
        h.wfile.write(b"--s\r\nContent-Type: application/dicom\r\n\r\n" + first.read_bytes()
                      + b"\r\n--s\r\nContent-Type: application/dicom\r\n\r\n"
                      + second.read_bytes()[:1000])
        h.wfile.flush()
        time.sleep(30)  # and never more
        h.close_connection = True

    out = tmp_path / "out"
    saved = out / study / corpus_uids(first)[1] / f"{corpus_uids(first)[2]}.dcm"
    with Hostile() as fake:
        fake.route("GET", f"/studies/{study}/series", lambda req: req.json(
            200, [], "application/dicom+json"))
        fake.route("GET", f"/studies/{study}", stalls)
        process = start(*threads, fake.url, "retrieve", f"studies/{study}", "--output", str(out))
        wait_for(saved.exists, process)
        _, stderr, _ = stop(process, number)
    assert process.returncode == code, stderr
    assert stderr[-1] == line
    assert stderr[-2].startswith("dcmweb: info: Transferred ")
    assert stderr[-2].endswith(" in 1 file; 1 study not retrieved (stopped, cut off)"), stderr
    assert [p for p in out.rglob("*") if p.is_file()] == [saved]


@pytest.mark.parametrize(("number", "code", "line"), STOPS, ids=STOP_IDS)
def test_store_stops_while_the_server_keeps_answering_503(local_server: LocalServer,
                                                          tmp_path: Path, number: int,
                                                          code: int, line: str) -> None:
    """The first file is stored; then the server answers 503 to everything."""
    files = corpus.synthetic_files(tmp_path / "in", 4)
    local_server.inject_fault(delay=0.01, method="POST")  # faults apply in order: this one
    local_server.inject_fault(503, count=1000, retry_after="1", method="POST")  # then these
    process = start(local_server.url, "store", "--batch-size", "1", *map(str, files))
    wait_for(lambda: len(posts(local_server)) >= 3, process)  # the second file, retried
    _, stderr, _ = stop(process, number)
    assert process.returncode == code, stderr
    assert stderr[-1] == line
    assert stderr[-2].startswith("dcmweb: info: Transferred "), stderr
    assert " in 1 file" in stderr[-2]  # the one the server took before the signal
    with Client(local_server.url) as client:
        assert len(client.search("instances")) == 1  # what the summary says


@pytest.mark.parametrize("threads", [[], ["-m"]], ids=["one-thread", "-m"])
@pytest.mark.parametrize(("number", "code", "line"), STOPS, ids=STOP_IDS)
def test_a_stopped_store_reports_every_file_the_server_may_hold(
        local_server: LocalServer, tmp_path: Path, number: int, code: int, line: str,
        threads: list[str]) -> None:
    """The server stores every file it is sent but answers only the first; the others'
    answers never come. A signal then: each file the server holds has a report row,
    stored or unconfirmed, and the summary counts the files never sent."""
    files = corpus.synthetic_files(tmp_path / "in", 12)
    report = tmp_path / "report.jsonl"
    local_server.inject_fault(delay=0.01, method="POST")  # faults apply in order: this one
    local_server.inject_fault(stall=30, count=1000, method="POST")  # stored, then silence
    process = start(*threads, local_server.url, "store", "--batch-size", "1", "--report",
                    str(report), *map(str, files))
    wait_for(lambda: len(posts(local_server)) >= (4 if threads else 2), process)
    time.sleep(0.3)  # the stalled requests' files are stored by now
    _, stderr, _ = stop(process, number)
    assert process.returncode == code, stderr
    assert stderr[-1] == line
    rows = [json.loads(row) for row in report.read_text().splitlines()]
    statuses = {row["path"]: row["status"] for row in rows}
    assert len(statuses) == len(rows)  # one row a file
    assert sorted(statuses.values()).count("stored") == 1
    with Client(local_server.url) as client:
        held = {row["00080018"]["Value"][0] for row in client.search("instances")}
    reported = {row["sop_instance_uid"] for row in rows}
    assert held <= reported, "a file the server holds has no report row"
    unconfirmed = sum(status == "unconfirmed" for status in statuses.values())
    assert unconfirmed >= len(held) - 1
    not_attempted = len(files) - len(rows)
    assert stderr[-2] == (
        f"dcmweb: info: Transferred {stderr[-2].split()[3]} {stderr[-2].split()[4]} in 1 "
        f"file; {unconfirmed} unconfirmed (sent, no answer: the server may hold "
        f"{'it' if unconfirmed == 1 else 'them'}), {not_attempted} not attempted")


def test_a_store_whose_terminal_hangs_up_completes_its_report_and_journal(
        local_server: LocalServer, tmp_path: Path) -> None:
    """The ssh session drops under a `-m` store run by hand: the terminal is gone (every
    write to it fails, EIO, the progress bar's too) and SIGHUP comes, from the kernel and
    again from the shell. Old dcmweb died at once (exit 129): no summary, and no report
    row for files the server held."""
    files = corpus.synthetic_files(tmp_path / "in", 12)
    report, journal = tmp_path / "r.csv", tmp_path / "j.db"
    local_server.inject_fault(delay=0.01, method="POST")  # faults apply in order: this one
    local_server.inject_fault(stall=30, count=1000, method="POST")  # stored, then silence
    terminal, its_end = os.openpty()
    os.set_blocking(terminal, False)

    def read_terminal() -> None:  # what a terminal shows; a full one would block dcmweb
        with contextlib.suppress(BlockingIOError):
            while os.read(terminal, 65536):
                pass

    env = {k: v for k, v in os.environ.items() if not k.startswith("DCMWEB_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "dcmweb", "-m", local_server.url, "store", "--batch-size",
         "1", "--report", str(report), "--journal", str(journal), *map(str, files)],
        stdin=subprocess.DEVNULL, stdout=its_end, stderr=its_end, env=env)
    os.close(its_end)
    try:
        wait_for(lambda: read_terminal() or len(posts(local_server)) >= 4, process)
        time.sleep(0.3)  # the stalled requests' files are stored by now
        read_terminal()
    finally:
        os.close(terminal)  # hung up
    process.send_signal(signal.SIGHUP)  # the kernel's
    process.send_signal(signal.SIGHUP)  # the shell's, passed on to its jobs
    assert process.wait(timeout=HANG) == 129
    statuses = {row["path"]: row["status"] for row in csv.DictReader(report.open())}
    with Client(local_server.url) as client:
        held = {row["00080018"]["Value"][0] for row in client.search("instances")}
    reported = {corpus_uids(Path(path))[2] for path in statuses}
    assert held <= reported, "a file the server holds has no report row"
    assert list(statuses.values()).count("stored") == 1
    with Journal(journal, f"{local_server.url}/studies") as kept:
        for path, status in statuses.items():
            entry = kept.lookup(os.path.abspath(path))
            assert entry is not None
            assert entry.status == ("sending" if status == "unconfirmed" else status)


def test_a_store_run_under_nohup_ignores_sighup(local_server: LocalServer,
                                               tmp_path: Path) -> None:
    """`nohup dcmweb ... &` asks for the run to outlive the terminal: SIGHUP stays
    ignored."""
    files = corpus.synthetic_files(tmp_path / "in", 3)
    local_server.inject_fault(delay=1, count=1, method="POST")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCMWEB_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "dcmweb", local_server.url, "store", *map(str, files)],
        stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    wait_for(lambda: bool(local_server.requests), process)
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert lines(stderr)[-1].endswith(" in 3 files")


@pytest.mark.parametrize(("number", "code", "line"), STOPS, ids=STOP_IDS)
def test_a_file_stopped_while_it_waits_for_its_turn_is_not_attempted(
        local_server: LocalServer, tmp_path: Path, number: int, code: int, line: str) -> None:
    """With -m, one request answered 503 with a long Retry-After, one stored; the third
    file's request waits for the Retry-After (every worker does) when the signal comes.
    Was: reported "unconfirmed (sent, no answer: the server may hold it)", never sent.

    A forwarder orders the answers: the first request is answered 503 once the second is
    in, and that one is stored only after the 503 was heard (a timed fault raced on a busy
    CI machine: the second request came after the 503, or its 200 before it). Which file
    goes first is dcmweb's choice (the largest first, and the copies differ by a UID
    digit), so the order of arrival decides, not the file."""
    files = corpus.synthetic_files(tmp_path / "in", 3)
    report = tmp_path / "report.jsonl"
    second_in, refusal_sent = threading.Event(), threading.Event()
    arrivals = itertools.count()
    store = forward(local_server.root_url)

    def ordered(req: Request) -> None:
        turn = next(arrivals) if req.seen.method == "POST" else None
        if turn == 0:
            second_in.wait(30)
            req.reply(503, b"busy", "text/plain", headers={"Retry-After": "30"})
            refusal_sent.set()
            return
        if turn == 1:
            second_in.set()
            refusal_sent.wait(30)
            time.sleep(0.5)  # the client reads the 503 first
        store(req)

    with Hostile() as forwarder:
        forwarder.fallback = ordered
        process = start("-m", "--workers", "2",
                        forwarder.root_url + urlsplit(local_server.url).path,
                        "store", "--batch-size", "1", "--report", str(report),
                        *map(str, files))
        wait_for(lambda: len(posts(local_server)) == 1, process)
        time.sleep(0.5)  # the worker that was answered 200 takes the third file meanwhile
        _, stderr, _ = stop(process, number)
        sent = len(forwarder.seen("POST"))
    assert process.returncode == code, stderr
    rows = [json.loads(row) for row in report.read_text().splitlines()]
    assert sorted(row["status"] for row in rows) == ["stored", "unconfirmed"]  # those sent
    assert sent == 2 and len(posts(local_server)) == 1
    assert stderr[-1] == line
    # The 503 is a real outage: it is counted once it lasted a second (a slow machine).
    assert re.fullmatch(r"dcmweb: info: Transferred 38\.4 KiB in 1 file; 1 unconfirmed \(sent, "
                        r"no answer: the server may hold it\), 1 not attempted"
                        r"(, server unavailable for \d+ s)?", stderr[-2]), stderr


@pytest.mark.parametrize(("number", "code", "line"), STOPS, ids=STOP_IDS)
def test_a_store_stopped_while_it_checks_a_file_counts_every_file(
        tmp_path: Path, number: int, code: int, line: str) -> None:
    """Files a killed run left "sending" are looked up on the server before they are sent
    again; a signal during that search: old dcmweb counted 2 of the 3 files (the one being
    checked was taken from the input, then counted nowhere)."""
    files = corpus.synthetic_files(tmp_path / "in", 3, seed="unsure")
    journal = tmp_path / "j.db"
    searched, release = threading.Event(), threading.Event()

    def hold(req: Request) -> None:
        searched.set()
        release.wait(HANG)
        req.json(200, [])

    with Hostile() as fake:
        with Journal(journal, f"{fake.url}/studies") as marks:
            for path in files:
                marks.mark_sending(os.path.abspath(path), Stamp.of(path.stat()),
                                   (None, None, None))
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                fake.route("GET", f"/studies/{ds.StudyInstanceUID}/series/"
                                  f"{ds.SeriesInstanceUID}/instances", hold)
        process = start(fake.url, "store", str(tmp_path / "in"), "--journal", str(journal))
        try:
            wait_for(searched.is_set, process)
            _, stderr, _ = stop(process, number)
        finally:
            release.set()
        assert fake.seen("POST") == []
    assert process.returncode == code, stderr
    assert stderr[-2:] == ["dcmweb: info: Transferred 0 B in 0 files; 3 not attempted", line]


# Run in a child: a stop leaves the "dcmweb" logger's handlers muted for other threads.
_DEFERRED = """
import signal, sys
from dcmweb.signals import deferred, resumed, stop_on_signals
steps = []
try:
    with stop_on_signals():
        with deferred():
            signal.raise_signal(signal.SIGTERM)
            steps.append("after the signal")
            with deferred():
                steps.append("nested")
            if sys.argv[1] == "resumed":
                with resumed():
                    steps.append("resumed")
            steps.append("end of the block")
        steps.append("after the block")
except KeyboardInterrupt as stop:
    steps.append(type(stop).__name__)
print(",".join(steps))
"""


@pytest.mark.parametrize(("how", "steps"), [
    ("deferred", "after the signal,nested,end of the block,Terminated"),
    ("resumed", "after the signal,nested,Terminated")],
    ids=["deferred", "resumed"])
def test_a_signal_waits_for_the_bookkeeping_it_lands_in(how: str, steps: str) -> None:
    """A signal inside signals.deferred() (one file's count, journal entry and report
    row) is raised when the block ends; inside resumed() (requests that may take
    minutes) at once."""
    done = subprocess.run([sys.executable, "-c", _DEFERRED, how], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == steps, done.stderr


_HANGUPS = """
import signal
from dcmweb.signals import deferred, stop_on_signals
try:
    with stop_on_signals():
        try:
            with deferred():
                signal.raise_signal(signal.SIGHUP)  # the kernel's
                signal.raise_signal(signal.SIGHUP)  # the shell's, passed on to its jobs
        except KeyboardInterrupt:
            signal.raise_signal(signal.SIGHUP)  # while stopping
            raise
except KeyboardInterrupt as stop:
    print(type(stop).__name__, stop.exit_status)
signal.raise_signal(signal.SIGHUP)  # after the block, before the closing line
print("still here")
"""


def test_a_hang_up_that_comes_again_does_not_cut_the_stop_short() -> None:
    """A terminal's hang-up brings SIGHUP twice, from the kernel and from the shell; a
    second SIGINT or SIGTERM ends the process at once (the user insists), a second SIGHUP
    must not: the report and the journal are being completed."""
    done = subprocess.run([sys.executable, "-c", _HANGUPS], capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stdout.split("\n")) == (0, ["HungUp 129", "still here", ""]
                                                          ), done.stderr


def posts(server: LocalServer) -> list[object]:
    return [r for r in server.requests if r.method == "POST"]


@pytest.mark.parametrize(("number", "code", "line"), STOPS, ids=STOP_IDS)
def test_delete_stops_waiting_and_names_the_operation(number: int, code: int,
                                                      line: str) -> None:
    name = "projects/p/locations/l/datasets/d/operations/42"
    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2", lambda req: req.json(200, {"name": name}))
        fake.route("GET", f"/v1/{name}", lambda req: req.json(200, {"name": name}))
        process = start(fake.url, "delete", "studies/1.2")
        wait_for(lambda: len(fake.seen("GET")) >= 2, process)
        _, stderr, _ = stop(process, number)
    assert process.returncode == code, stderr
    assert stderr[-1] == line
    assert stderr[-2] == ("dcmweb: warning: delete studies/1.2: stopped waiting; operation "
                          f"{name} goes on on the server")


def corpus_uids(path: Path) -> tuple[str, str, str]:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def test_worker_lines_stay_muted_after_the_stop_until_the_process_ends() -> None:
    """The closing line is written after stop_on_signals is left: a worker thread's retry
    line must not land after it (it did when leaving the block unmuted the workers)."""
    import io
    import logging
    import threading

    from dcmweb.output import Output, StderrLogHandler
    from dcmweb.signals import stop_on_signals

    stream = io.StringIO()
    logger = logging.getLogger("dcmweb")
    saved = logger.handlers[:], logger.level
    logger.handlers[:] = [StderrLogHandler(Output(stderr=stream))]
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(KeyboardInterrupt), stop_on_signals():
            signal.raise_signal(signal.SIGINT)
        worker = threading.Thread(target=logger.warning, args=("retrying (attempt 3)",))
        worker.start()
        worker.join()
        assert stream.getvalue() == ""
    finally:
        for handler in logger.handlers:
            handler.filters.clear()
        logger.handlers[:], level = saved
        logger.setLevel(level)


# -- SIGKILL: nothing can clean up; the next run into the folder does -------------------------
def test_the_parts_a_killed_retrieve_left_are_removed_by_the_next_run(
        local_server: LocalServer, tmp_path: Path) -> None:
    from dcmweb import saving

    if saving._PID_SPACE is None:
        pytest.skip("no boot ID or PID namespace to read here: nothing is ever removed")
    # 230 KB: half of it is more than the 64 KiB read before a part's file is opened
    template = corpus.pydicom_test_files_dir() / "examples_rgb_color.dcm"
    [instance] = corpus.synthetic_files(tmp_path / "in", 1, template=template)
    study, series, sop = corpus_uids(instance)
    with Client(local_server.url) as client:
        client.store([instance])
    out = tmp_path / "out"
    folder = out / study / series
    local_server.inject_fault(stall=60.0, method="GET")  # half the answer, then nothing
    process = start(local_server.url, "retrieve", f"studies/{study}", "--output", str(out))
    wait_for(lambda: any(folder.glob(".dcmweb-*.part")), process)
    process.kill()  # SIGKILL: no handler runs, the part stays
    process.communicate(timeout=HANG)
    [killed] = folder.glob(".dcmweb-*.part")
    assert killed.name.startswith(f".dcmweb-{saving._PID_SPACE}-{process.pid}-")
    # What must stay: a live run's part (this test's PID), another machine's or
    # container's (another PID space: its PIDs mean nothing here), and an older dcmweb's.
    kept = [folder / f".dcmweb-{saving._PID_SPACE}-{os.getpid()}-0badc0de-0.part",
            folder / f".dcmweb-0123456789abcdef.4026531836-{process.pid}-0badc0de-0.part",
            folder / ".dcmweb-0badc0de-0.part"]
    for path in kept:
        path.write_bytes(b"partial")
    local_server.clear_faults()
    again = subprocess.run([sys.executable, "-m", "dcmweb", local_server.url, "retrieve",
                            f"studies/{study}", "--output", str(out)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0, again.stderr
    assert (f"dcmweb: info: removed 1 temporary file left in {folder} by a run that was "
            "killed") in lines(again.stderr)
    assert not killed.exists()
    assert sorted(folder.iterdir()) == sorted([*kept, folder / f"{sop}.dcm"])


@pytest.mark.parametrize("threads", [[], ["-m", "--workers", "3"]], ids=["one-thread", "-m"])
@pytest.mark.parametrize("at", [1, 5])
def test_a_signal_while_a_file_is_reported_leaves_every_saved_file_in_the_summary(
        local_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        threads: list[str], at: int) -> None:
    """The signal lands in the printing of the at-th 'saved as' line (not in the
    download): every file on disk has its line and is counted, whatever the threads had
    saved and not handed out yet."""
    from click.testing import CliRunner

    from dcmweb.cli import cli
    from dcmweb.output import Output, plural

    files = corpus.synthetic_files(tmp_path / "in", 24, studies=3, series_per_study=2)
    with Client(local_server.url) as client:
        client.store(files)
    printed = 0
    log = Output.log

    def interrupted_log(self: Output, message: str) -> None:
        nonlocal printed
        if " saved as " in message:
            printed += 1
            if printed == at:
                signal.raise_signal(signal.SIGINT)  # as Ctrl-C lands in write_err
        log(self, message)

    monkeypatch.setattr(Output, "log", interrupted_log)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [*threads, local_server.url, "retrieve", "-o", str(out)])
    stderr = lines(result.stderr)
    assert result.exit_code == 130, stderr
    assert stderr[-1] == "dcmweb: error: interrupted"
    reported = {line.rsplit(" saved as ", 1)[1] for line in stderr if " saved as " in line}
    on_disk = {str(path) for path in out.rglob("*.dcm")}
    assert on_disk == reported
    # And what it never retrieved: the studies it cut off or never asked for, or the rest
    # of the listing when it had not read it all (none left when every file was saved).
    left = (r"; (\d+ stud(y|ies) not retrieved \(stopped, [^)]*\)"
            r"|the rest of the listing not retrieved \(stopped\))")
    assert re.fullmatch(
        rf"dcmweb: info: Transferred .* in {plural(len(reported), 'file')}"
        + (left if len(reported) < len(files) else f"({left})?"), stderr[-2]), stderr
    assert not list(out.rglob(".dcmweb-*"))


@pytest.mark.parametrize("threads", [[], ["-m", "--workers", "2"]], ids=["one-thread", "-m"])
@pytest.mark.parametrize("where", ["run", "report"])
def test_a_retrieve_stopped_by_a_signal_counts_what_it_never_retrieved(
        local_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        threads: list[str], where: str) -> None:
    """Ctrl-C in the run (a download) or in the report of a saved file: old dcmweb said
    'Transferred 38.4 KiB in 1 file' alone, though 3 of the 4 studies asked for were never
    retrieved; a full disk's stop counted them (test_retrieve_stopped)."""
    from click.testing import CliRunner

    from dcmweb.cli import cli
    from dcmweb.output import Output
    from dcmweb.saving import Saver

    files = corpus.synthetic_files(tmp_path / "in", 8, studies=4)
    with Client(local_server.url) as client:
        client.store(files)
    signalled = False

    def interrupt_once() -> None:
        nonlocal signalled
        if not signalled:
            signalled = True
            signal.raise_signal(signal.SIGINT)

    if where == "run":  # as the second file is about to be written (by a worker with -m)
        create = Saver.create
        created = 0

        def interrupted_create(self: Saver, folder: Path) -> tuple[int, str]:
            nonlocal created
            created += 1
            if created == 2:
                interrupt_once()
            if signalled and threading.current_thread() is not threading.main_thread():
                time.sleep(0.5)  # the main thread stops the run before more is saved
            return create(self, folder)

        monkeypatch.setattr(Saver, "create", interrupted_create)
    else:  # as the first 'saved as' line is written
        log = Output.log

        def interrupted_log(self: Output, message: str) -> None:
            if " saved as " in message:
                interrupt_once()
            log(self, message)

        monkeypatch.setattr(Output, "log", interrupted_log)
    out = tmp_path / "out"
    studies = sorted({study_of(path) for path in files})
    result = CliRunner().invoke(cli, [*threads, local_server.url, "retrieve", *studies,
                                      "-o", str(out)])
    stderr = lines(result.stderr)
    assert result.exit_code == 130, stderr
    summary = re.fullmatch(r"dcmweb: info: Transferred .* in (\d+) files?; (\d+) paths? not "
                           r"retrieved \(stopped, (cut off|\d+ of them cut off)\)", stderr[-2])
    assert summary, stderr
    assert int(summary[1]) == len(files_under(out)) < len(files)
    # Every study is either saved whole or counted. With -m, a study whose last file a
    # worker saved as the stop came may be both: its answer was not read to its end.
    told = complete_studies(out, files) + int(summary[2])
    assert told >= len(studies) if threads else told == len(studies)


def test_a_signal_as_a_temporary_file_is_made_leaves_no_part(
        local_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C the moment os.open has made the .part file, before dcmweb has its name."""
    files = corpus.synthetic_files(tmp_path / "in", 3)
    with Client(local_server.url) as client:
        client.store(files)
    real_open = os.open
    made: list[str] = []

    def open_then_stop(path: str, flags: int, mode: int = 0o777) -> int:
        handle = real_open(path, flags, mode)
        if os.path.basename(path).startswith(".dcmweb-"):
            made.append(path)
            raise KeyboardInterrupt  # the signal handler runs as os.open returns
        return handle

    out = tmp_path / "out"
    monkeypatch.setattr(os, "open", open_then_stop)
    with Client(local_server.url) as client, pytest.raises(KeyboardInterrupt):
        list(client.iter_retrieve(None, out))
    monkeypatch.undo()
    assert made
    assert not [path for path in out.rglob("*") if path.is_file()]


@pytest.mark.parametrize(("number", "code", "line"), STOPS, ids=STOP_IDS)
def test_delete_stopped_before_its_answer_says_the_server_may_have_deleted(
        number: int, code: int, line: str) -> None:
    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2", lambda req: time.sleep(30))  # never answers
        process = start(fake.url, "delete", "studies/1.2", "-y")
        wait_for(lambda: len(fake.seen("DELETE")) >= 1, process)
        _, stderr, _ = stop(process, number)
    assert process.returncode == code, stderr
    assert stderr[-1] == line
    assert stderr[-2] == ("dcmweb: warning: delete studies/1.2: stopped before the server "
                          "answered; the DELETE may have been sent, so its outcome is unknown "
                          "(the server may have deleted it: search for it to see)")


@pytest.mark.parametrize(("number", "code", "line"), STOPS, ids=STOP_IDS)
def test_a_stop_during_the_overwrites_store_stops_the_run(local_server: LocalServer,
                                                         tmp_path: Path, number: int,
                                                         code: int, line: str) -> None:
    """--on-conflict overwrite deleted the server's copy and re-sends the file, which the
    server keeps answering 503: old dcmweb took the file's unconfirmed result and went on
    with the next files, ignoring the signal (exit 0, or 2 "no DICOM files")."""
    held = corpus.synthetic_files(tmp_path / "held", 1, seed="overwrite")[0]
    with Client(local_server.url) as client:
        client.store(held)
    copy = pydicom.dcmread(held)
    copy.PatientName = "Conflict^Copy"
    (tmp_path / "in").mkdir()
    copy.save_as(tmp_path / "in" / "0.dcm", enforce_file_format=True)
    corpus.synthetic_files(tmp_path / "in" / "new", 2, seed="others")
    report = tmp_path / "r.jsonl"
    local_server.inject_fault(delay=0.01, method="POST")  # faults apply in order: 0.dcm's
    local_server.inject_fault(503, count=1000, retry_after="1", method="POST")  # the re-store
    process = start(local_server.url, "store", str(tmp_path / "in"), "--on-conflict",
                    "overwrite", "--batch-size", "1", "--report", str(report))
    wait_for(lambda: len(posts(local_server)) >= 3, process)  # the re-store, retried
    _, stderr, _ = stop(process, number)
    assert process.returncode == code, stderr
    assert stderr[-2:] == ["dcmweb: info: Transferred 0 B in 0 files; 1 unconfirmed (sent, "
                           "no answer: the server may hold it), 2 not attempted", line]
    (row,) = [json.loads(row) for row in report.read_text().splitlines()]
    assert row["status"] == "unconfirmed" and row["path"].endswith("0.dcm")
    assert row["message"].startswith("deleted the server's conflicting instance, then sent "
                                     "this file without learning whether it was stored; ")
    assert [r.method for r in local_server.requests].count("DELETE") == 1
    local_server.clear_faults()
    with Client(local_server.url) as client:  # the old copy deleted, no other file sent
        assert client.search("instances") == []


@pytest.mark.parametrize("kind", ["frames/1", "rendered"])
def test_a_frame_or_image_another_thread_named_as_the_stop_came_is_reported(
        local_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        kind: str) -> None:
    """-m with a list of frames or rendered paths, Ctrl-C as a worker has just given a
    file its final name and before the main thread has its result: the file is on disk,
    and the summary said `Transferred 0 B in 0 files` (DICOM files are handed over by
    the run as it stops; frames and rendered images were not)."""
    from click.testing import CliRunner

    from dcmweb.cli import cli
    from dcmweb.saving import Saver

    files = corpus.synthetic_files(tmp_path / "in", 2)
    with Client(local_server.url) as client:
        client.store(files)
    finish = Saver.finish
    signalled = False

    def finish_then_stop(self: Saver, temp: str, final: Path, *args: object,
                         **kwargs: object) -> None:
        nonlocal signalled
        finish(self, temp, final, *args, **kwargs)  # type: ignore[arg-type]
        if not signalled and threading.current_thread() is not threading.main_thread():
            signalled = True
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.5)  # the main thread stops the run before it has this file

    monkeypatch.setattr(Saver, "finish", finish_then_stop)
    paths = [f"{study_of(p)}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/"
             f"{kind}" for p in files for ds in [pydicom.dcmread(p)]]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["-m", "--workers", "2", local_server.url, "retrieve",
                                      *paths, "-o", str(out)])
    stderr = lines(result.stderr)
    assert result.exit_code == 130, stderr
    saved = files_under(out)
    assert saved
    assert {Path(line.split(" saved as ")[1]) for line in stderr if " saved as " in line
            } == saved
    assert re.match(rf"dcmweb: info: Transferred \S+ \S+ in {len(saved)} files?\b",
                    stderr[-2]), stderr


def test_a_frame_named_as_the_stop_came_is_reported_without_m(
        local_server: LocalServer, pydicom_files: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The frames of one answer are named one after the other once all have come:
    Ctrl-C after the first got its name left it on disk, unreported (`Transferred 0 B
    in 0 files`), in a run of one worker too."""
    from click.testing import CliRunner

    from dcmweb.cli import cli
    from dcmweb.saving import Saver

    dose, ct = (next(p for p in pydicom_files if p.name == name)
                for name in ("rtdose.dcm", "CT_small.dcm"))
    with Client(local_server.url) as client:
        assert {r.status for r in client.store([dose, ct])} == {"stored"}
    finish = Saver.finish
    signalled = False

    def finish_then_stop(self: Saver, temp: str, final: Path, *args: object,
                         **kwargs: object) -> None:
        nonlocal signalled
        finish(self, temp, final, *args, **kwargs)  # type: ignore[arg-type]
        if not signalled:
            signalled = True
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Saver, "finish", finish_then_stop)
    paths = [f"{study_of(p)}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
             for p in (dose, ct) for ds in [pydicom.dcmread(p, stop_before_pixels=True)]]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [local_server.url, "retrieve", f"{paths[0]}/frames/1,2",
                                      paths[1], "-o", str(out)])
    stderr = lines(result.stderr)
    assert result.exit_code == 130, stderr
    saved = files_under(out)
    assert [path.name.rsplit("_", 1)[1] for path in saved] == ["1.raw"]
    assert stderr[0] == f"dcmweb: info: {paths[0]}/frames/1 saved as {next(iter(saved))}"
    assert stderr[-2] == ("dcmweb: info: Transferred 400 B in 1 file; 2 paths not "
                          "retrieved (stopped, 1 of them cut off)")
