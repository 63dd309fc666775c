"""Progress over slow links: store lines on a timer with bytes in flight and an ETA in
bytes; -m retrieve files reported as each is saved; a bar whose clock moves."""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request, forward

from dcmweb import Client, multipart
from dcmweb.cli import cli
from dcmweb.output import Output
from dcmweb.progress import duration, per_time
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import timed


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_store_progress_lines_come_on_a_timer_while_a_large_file_is_sent(
        local_server: LocalServer, tmp_path: Path) -> None:
    """Probe 4: a 97 s upload of one file with --progress-every 10 printed no line until
    it ended, then 'progress: 1 of 1 file, 22.9 MiB stored, 0 failed, 0.0 files/s,
    about 0 s left'. Now a line comes every N seconds, with the bytes sent so far (the
    body in flight too) and an ETA reckoned in bytes."""
    big = corpus.large_instance(tmp_path / "in" / "big.dcm", 2048)  # 8 MiB
    with Hostile(read_rate=2.5e6) as slow:  # about 3 s for the body
        slow.fallback = forward(local_server.root_url)
        result = run(slow.root_url + urlsplit(local_server.url).path, "store", str(big),
                     "--progress-every", "0.5")
    assert result.exit_code == 0, result.stderr
    entries = timed(result.stderr)
    [uploaded] = [at for at, message in entries if " uploaded as " in message]
    before = [message for at, message in entries
              if message.startswith("progress:") and at < uploaded]
    assert len(before) >= 2, result.stderr
    sent = [float(re.search(r"([\d.]+) MiB sent at ", m).group(1)) for m in before
            if " MiB sent at " in m]
    assert sent and sent[-1] > sent[0] and sent[-1] <= 8.1, before
    assert all(re.fullmatch(
        r"progress: 0 of 1 file, 0 B stored, 0 failed, [\d.]+ [KM]iB sent at "
        r"[\d.]+ [KM]iB/s, (about \d+ s left|waiting for the server's answers)", m)
        for m in before[1:]), before
    assert "s left" in before[1], before


def test_once_every_byte_is_sent_progress_waits_for_the_answer(local_server: LocalServer,
                                                               tmp_path: Path) -> None:
    """Probe 4b: a server slow to answer made every line say 'about 0 s left'."""
    files = corpus.synthetic_files(tmp_path / "in", 2)
    local_server.inject_fault(delay=1.5, method="POST")
    result = run(local_server.url, "store", *map(str, files), "--progress-every", "0.2")
    assert result.exit_code == 0, result.stderr
    lines = [message for _, message in timed(result.stderr) if message.startswith("progress:")]
    assert any(line.endswith("/s, waiting for the server's answers") for line in lines), lines
    assert not any("0 s left" in line for line in lines), lines


def test_quiet_store_prints_no_progress(local_server: LocalServer, tmp_path: Path) -> None:
    big = corpus.large_instance(tmp_path / "in" / "big.dcm", 1024)
    with Hostile(read_rate=2e6) as slow:  # about 1 s
        slow.fallback = forward(local_server.root_url)
        result = run("-q", slow.root_url + urlsplit(local_server.url).path, "store", str(big))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""


def test_retrieve_with_workers_reports_each_file_as_it_is_saved(tmp_path: Path) -> None:
    """Probe 4: with -m, a study's files were held back until its whole answer ended
    (its series' request, here the study's): no 'saved as' line for minutes while the
    first file was on the disk."""
    files = corpus.synthetic_files(tmp_path / "in", 2, seed="progress")
    study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    first = b"--b1\r\nContent-Type: application/dicom\r\n\r\n" + files[0].read_bytes()
    second = (b"\r\n--b1\r\nContent-Type: application/dicom\r\n\r\n" + files[1].read_bytes()
              + b"\r\n--b1--\r\n")

    def study_answer(req: Request) -> None:
        def chunks() -> Iterator[bytes]:
            yield first + second[:200]
            time.sleep(2)  # the second file trickles in
            yield second[200:]
        req.stream(200, 'multipart/related; type="application/dicom"; boundary=b1',
                   chunks(), claimed_length=len(first) + len(second))

    rows = [{"0020000D": {"vr": "UI", "Value": [study]}}]
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(
            200, rows if req.params.get("offset", "0") == "0" else [],
            "application/dicom+json"))
        fake.route("GET", f"/studies/{study}", study_answer)
        result = run("-m", fake.url, "retrieve", "--output", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    saved = [at for at, message in timed(result.stderr) if " saved as " in message]
    assert len(saved) == 2, result.stderr
    assert saved[1] - saved[0] > 1.5, result.stderr


def test_the_bar_counts_bytes_and_its_clock_moves_between_files() -> None:
    """The bar counted files only and was redrawn only when one finished: '0 files
    [00:00, ? files/s]' for the minutes one large file took."""
    stderr = io.StringIO()
    output = Output(stderr=stderr, progress=True)
    received = [0]
    output.start_progress(lambda: received[0], note=lambda: "0 files")
    received[0] = 3_000_000
    time.sleep(1.3)
    output.stop_progress()
    screen = stderr.getvalue()
    assert "3.00MB [00:01" in screen and "0 files" in screen, screen
    assert not re.search(r"\b\d+ files \[", screen)  # tqdm's own unit is bytes now


@pytest.mark.parametrize(("count", "seconds", "expected"), [
    (11, 10, "1.1 files/s"), (1, 60, "1.0 files/min"), (1, 97, "37.1 files/h"),
    (0, 5, "0.0 files/h")])
def test_a_rate_is_shown_in_a_unit_that_shows_it(count: int, seconds: float,
                                                 expected: str) -> None:
    assert per_time(count, seconds, "files") == expected


@pytest.mark.parametrize(("seconds", "expected"), [(17.4, "17 s"), (150, "2 min"),
                                                   (9000, "2.5 h")])
def test_an_estimate_is_as_precise_as_it_deserves(seconds: float, expected: str) -> None:
    assert duration(seconds) == expected



def test_progress_lines_tell_an_outage(local_server: LocalServer, tmp_path: Path) -> None:
    """Probe 5: with -q (no retry lines), 300 s of 429s showed only a frozen count and an
    ETA climbing to hours, as if the run were merely slow."""
    files = corpus.synthetic_files(tmp_path / "in", 2)
    local_server.inject_fault(429, count=1000, retry_after="1", method="POST")
    result = run("-q", "--outage-limit", "3", local_server.url, "store", *map(str, files),
                 "--progress-every", "0.2")
    assert result.exit_code == 5, result.stderr
    lines = [message for _, message in timed(result.stderr) if message.startswith("progress:")]
    told = [line for line in lines if "server unavailable" in line]
    # The answer is named: a quota (429) is not a server down (503) or unreachable.
    # At the limit the last try goes, and then no other.
    assert told and all(re.search(r", server unavailable \(HTTP 429\) for [123] s, (retrying "
                                  r"up to 3 s|past the outage limit \(3 s\))$", line)
                        for line in told), lines
    assert not any("left" in line for line in told), lines


def test_progress_lines_tell_a_server_that_refuses_connections(
        local_server: LocalServer, tmp_path: Path) -> None:
    """The server stops after the first file: the lines say the connection is refused,
    not 'server unavailable' alone (a cron log then tells a crash from a quota)."""
    files = corpus.synthetic_files(tmp_path / "in", 2)

    def stop_once_answered() -> None:
        deadline = time.monotonic() + 30
        while not any(r.method == "POST" and r.status for r in local_server.requests):
            assert time.monotonic() < deadline, "the first file never came"
            time.sleep(0.02)
        local_server.stop()

    stopped = threading.Thread(target=stop_once_answered)
    stopped.start()
    # --max-rate 1: the second file goes a second after the first, to a stopped server.
    result = run("--max-rate", "1", "--outage-limit", "3", local_server.url, "store",
                 "--batch-size", "1", *map(str, files), "--progress-every", "0.2")
    stopped.join()
    assert result.exit_code == 5, result.stderr
    lines = [message for _, message in timed(result.stderr) if message.startswith("progress:")]
    told = [line for line in lines if "server unavailable" in line]
    assert told and all(re.search(r", server unavailable \(connection refused\) for \d s, "
                                  r"(retrying up to 3 s|past the outage limit \(3 s\))$", line)
                        for line in told), lines
    # Once the run gave up, it retries nothing (a search still settles the file sent):
    # the lines of that search's wait for --max-rate said "for 4 s, retrying up to 3 s".
    assert not [line for line in told if re.search(r"for [4-9] s, retrying", line)], told


def test_a_failed_file_leaves_the_others_waiting_for_the_server(local_server: LocalServer,
                                                                tmp_path: Path) -> None:
    """A failure was taken away twice from the files left: with one file failed (the
    server holds other bytes under its UIDs) and the other's answer slow, the lines said
    'about 0 s left' instead of waiting for the server."""
    conflicting, slow = corpus.synthetic_files(tmp_path / "in", 2)
    ds = pydicom.dcmread(conflicting)
    with Client(local_server.url) as client:
        ds.PatientName = "Other^Bytes"
        ds.save_as(tmp_path / "other.dcm")
        assert [r.status for r in client.store([tmp_path / "other.dcm"])] == ["stored"]
    local_server.inject_fault(delay=1.5, method="POST",
                              body_contains=pydicom.dcmread(slow).SOPInstanceUID)
    result = run(local_server.url, "store", str(conflicting), str(slow), "--batch-size", "1",
                 "--progress-every", "0.2")
    assert result.exit_code == 6, result.stderr
    lines = [message for _, message in timed(result.stderr) if message.startswith("progress:")]
    after = [line for line in lines if line.startswith("progress: 1 of 2 files, 0 B stored, "
                                                       "1 failed, ")]
    assert after and all(line.endswith("/s, waiting for the server's answers")
                         for line in after), lines


def test_a_retry_waiting_for_its_turn_is_not_waiting_for_the_server(
        local_server: LocalServer, tmp_path: Path) -> None:
    """A 503 with Retry-After: 2: every byte was counted as sent, and the lines of the
    wait said 'waiting for the server's answers' while no request was at the server."""
    [file] = corpus.synthetic_files(tmp_path / "in", 1)
    local_server.inject_fault(503, retry_after="2", method="POST")
    result = run(local_server.url, "store", str(file), "--progress-every", "0.2")
    assert result.exit_code == 0, result.stderr
    entries = timed(result.stderr)
    [refused] = [at for at, message in entries if "; retrying" in message]
    during = [message for at, message in entries
              if message.startswith("progress:") and refused < at < refused + 1.8]
    assert len(during) >= 5, entries
    assert all(re.search(r"/s(, server unavailable \(HTTP 503\) for [12] s, retrying up to "
                         r"5 min)?$", line) for line in during), during


def sent_sizes(lines: list[str]) -> list[float]:
    """The bytes each progress line says were sent."""
    units = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2}
    found = [re.search(r", ([\d.]+) (B|KiB|MiB) sent at ", line) for line in lines]
    return [float(m[1]) * units[m[2]] for m in found if m]


def test_a_body_sent_again_is_not_counted_twice(local_server: LocalServer,
                                                tmp_path: Path) -> None:
    """A 503, then the resend waits for its answer: the lines said '1.0 MiB sent' of a
    512 KiB file (the refused body and the resend), and the time left believed it."""
    big = corpus.large_instance(tmp_path / "in" / "big.dcm", 512)
    size = big.stat().st_size
    local_server.inject_fault(503, retry_after="1", method="POST")
    local_server.inject_fault(delay=1.5, method="POST")
    result = run(local_server.url, "store", str(big), "--progress-every", "0.2")
    assert result.exit_code == 0, result.stderr
    entries = timed(result.stderr)
    [refused] = [at for at, message in entries if "; retrying" in message]
    sent = sent_sizes([message for at, message in entries
                       if message.startswith("progress:") and at > refused + 1.2])
    assert len(sent) >= 3, entries  # the lines of the resend's wait for its answer
    # The resend's body, once: its request head and multipart boundaries are extra.
    assert all(size <= bytes_sent < 1.01 * size for bytes_sent in sent), (size, sent)


def test_a_file_failed_unsent_counts_as_done(local_server: LocalServer, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A file made unreadable after its head was read, then another file slow to be
    answered: the failed file's bytes were never counted as done, so the lines said
    'about 1 s left' instead of waiting for the server."""
    unreadable, slow = corpus.synthetic_files(tmp_path / "in", 2)
    opener = multipart._unblocked

    def refused(path: str, flags: int) -> int:  # root reads every file: refused here
        if path == str(unreadable):
            raise PermissionError(13, "Permission denied", path)
        return opener(path, flags)

    monkeypatch.setattr(multipart, "_unblocked", refused)
    local_server.inject_fault(delay=1.5, method="POST")
    result = run(local_server.url, "store", str(unreadable), str(slow), "--batch-size", "1",
                 "--progress-every", "0.2")
    assert result.exit_code == 6, result.stderr
    assert f"{unreadable} failed: cannot read: Permission denied" in result.stderr
    lines = [message for _, message in timed(result.stderr) if message.startswith("progress:")]
    after = [line for line in lines if line.startswith("progress: 1 of 2 files, 0 B stored, "
                                                       "1 failed, ")]
    assert after and all(line.endswith("/s, waiting for the server's answers")
                         for line in after), lines
    # Sent: the slow file's bytes only (and its request's head and boundaries).
    size = slow.stat().st_size
    assert all(size <= bytes_sent < 1.02 * size for bytes_sent in sent_sizes(after)), after
