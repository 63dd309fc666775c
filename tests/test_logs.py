"""Log lines: one shape for every line (timestamp with zone, level, message), JSON lines,
-q silent on success (retries a run got past included) but never hiding warnings, errors
or the summary of a failed store or retrieve, plurals."""

from __future__ import annotations

import io
import json
import re
import time
from datetime import datetime
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.output import Output, plural
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines, messages

HOST = "http://127.0.0.1:9/dicom-web"
LINE = re.compile(r"^(?P<time>\S+) dcmweb: (?P<level>debug|info|warning|error): (?P<msg>.+)$")


def dcmweb(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def parsed(stderr: str) -> list[tuple[str, str]]:
    """(level, message) of each line, checking every line's shape and time stamp."""
    out = []
    for line in stderr.splitlines():
        match = LINE.match(line)
        assert match, line
        stamp = datetime.fromisoformat(match["time"])
        assert stamp.utcoffset() is not None  # the time zone is in every line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", match["time"])
        out.append((match["level"], match["msg"]))
    return out


def test_every_line_has_one_shape(local_server: LocalServer, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "f", 1)
    (tmp_path / "f" / "notes.txt").write_text("no")
    result = dcmweb(local_server.url, "store", str(tmp_path / "f"))
    assert result.exit_code == 0
    assert [level for level, _ in parsed(result.stderr)] == ["info", "warning", "info", "info"]
    assert parsed(result.stderr)[0][1].startswith("store to ")
    assert parsed(result.stderr)[-1][1].endswith(" in 1 file; 1 skipped")
    assert f"{files[0]} uploaded as " in parsed(result.stderr)[2][1]
    usage = dcmweb(local_server.url, "delete")
    assert parsed(usage.stderr) == [
        ("error", "Missing argument 'PATH' (see 'dcmweb delete --help')")]


def test_json_log_format(local_server: LocalServer, tmp_path: Path) -> None:
    corpus.synthetic_files(tmp_path / "f", 2)
    result = dcmweb("--log-format", "json", local_server.url, "store", str(tmp_path / "f"))
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert [sorted(record) for record in records] == [["level", "message", "time"]] * 4
    assert records[0] == {"time": records[0]["time"], "level": "info", "message":
                          f"store to {local_server.url} from {tmp_path / 'f'} (1 worker; "
                          "batch-size 20)"}
    assert records[-1]["level"] == "info"
    assert records[-1]["message"].startswith("Transferred ")
    assert records[-1]["message"].endswith(" in 2 files")
    assert datetime.fromisoformat(records[0]["time"]).utcoffset() is not None


@pytest.mark.parametrize(("args", "env", "message"), [
    (("--log-format", "json", HOST, "search", "--bogus"), {},
     "No such option '--bogus' (see 'dcmweb search --help')"),
    # Another command's option: old dcmweb sent the user to 'dcmweb --help'.
    (("--log-format", "json", HOST, "search", "--dry-run"), {},
     "No such option '--dry-run' (see 'dcmweb search --help')"),
    (("--log-format", "json", HOST, "search", "--output", "x"), {},
     "No such option '--output' (see 'dcmweb search --help')"),
    # The variable is named only when the value came from it (old dcmweb: always).
    ((HOST, "search", "--limit", "0"), {"DCMWEB_LOG_FORMAT": "json"},
     "Invalid value for '--limit': 0 is not in the range x>=1 (see 'dcmweb search --help')"),
    ((HOST, "search"), {"DCMWEB_LOG_FORMAT": "json", "DCMWEB_SEARCH_LIMIT": "0"},
     "Invalid value for '--limit' (env var: 'DCMWEB_SEARCH_LIMIT'): 0 is not in the range "
     "x>=1 (see 'dcmweb search --help')"),
    (("--log-format=json", "--workers", "0", HOST, "search"), {},
     "Invalid value for '--workers': 0 is not in the range 1<=x<=64 (see 'dcmweb --help')"),
    (("--log-format=json", "--max-rate", "abc", HOST, "search"), {},
     "Invalid value for '--max-rate': invalid rate 'abc': write N, N/s, N/m or N/h with N > 0"
     " (see 'dcmweb --help')"),
    (("--log-format", "json", "--config", "/nonexistent.toml", HOST, "search"), {},
     "config file /nonexistent.toml not found"),
    (("--config", "{config}", HOST, "search", "--limit", "0"), {},
     "Invalid value for '--limit': 0 is not in the range x>=1 (see 'dcmweb search --help')"),
    # click raises a missing value without its command: the profile's format was lost.
    (("--config", "{config}", HOST, "search", "--limit"), {},
     "Option '--limit' requires an argument (see 'dcmweb search --help')"),
])
def test_usage_errors_follow_the_log_format(args: tuple[str, ...], env: dict[str, str],
                                            message: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('default-profile = "a"\n[profiles.a]\nlog-format = "json"\n')
    result = dcmweb(*(arg.format(config=config) for arg in args), env=env)
    assert (result.exit_code, result.stdout) == (2, "")
    [record] = [json.loads(line) for line in result.stderr.splitlines()]
    assert (record["level"], record["message"]) == ("error", message)


def test_a_store_run_starts_with_one_line_saying_what_it_does(
        local_server: LocalServer, tmp_path: Path) -> None:
    corpus.synthetic_files(tmp_path / "f", 2)
    host = local_server.url.replace("http://", "http://alice:secret@")
    result = dcmweb("-m", "--workers", "3", "--max-rate", "20/s", host, "store",
                    str(tmp_path / "f"), "--batch-size", "5", "--journal", str(tmp_path / "j.db"),
                    "--report", str(tmp_path / "r.csv"), "--on-conflict", "skip",
                    "--skip-existing", "--shard", "1/1")
    assert result.exit_code == 0, result.stderr
    assert parsed(result.stderr)[0] == ("info", (
        f"store to {local_server.url.replace('http://', 'http://***@')} from {tmp_path / 'f'} "
        f"(3 workers; batch-size 5; max-rate 20/s; journal {tmp_path / 'j.db'}; report "
        f"{tmp_path / 'r.csv'}; shard 1/1; on-conflict skip; skip-existing)"))
    assert "secret" not in result.stderr
    # Nothing read from the files: no patient name, ID or UID in the opening line.
    assert "/studies/" not in parsed(result.stderr)[0][1]


def test_a_quiet_store_run_prints_nothing_on_success(local_server: LocalServer,
                                                     tmp_path: Path) -> None:
    corpus.synthetic_files(tmp_path / "f", 2)
    result = dcmweb("-q", local_server.url, "store", str(tmp_path / "f"))
    assert (result.exit_code, result.stderr) == (0, "")


def test_a_quiet_store_run_that_fails_prints_its_summary(local_server: LocalServer,
                                                         tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "f", 2)
    missing = tmp_path / "missing.dcm"
    result = dcmweb("-q", local_server.url, "store", str(tmp_path / "f"), str(missing))
    assert result.exit_code == 6
    size = sum(path.stat().st_size for path in files) / 1024
    # Old dcmweb: the error lines alone, though docs/bulk-upload.md promised the summary.
    assert parsed(result.stderr) == [
        ("error", f"{missing} failed: cannot read: No such file or directory"),
        ("info", f"Transferred {size:.1f} KiB in 2 files; 1 failed"),
        ("error", "1 of 3 files failed to store")]


def test_a_quiet_retrieve_prints_nothing_on_success_and_its_summary_on_failure(
        local_server: LocalServer, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "f", 2, studies=2)
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    good = dcmweb("-q", local_server.url, "retrieve", "--output", str(tmp_path / "good"))
    assert (good.exit_code, good.stderr) == (0, "")
    lost = str(pydicom.dcmread(files[1], stop_before_pixels=True).StudyInstanceUID)
    local_server.inject_fault(404, method="GET", path_contains=f"/studies/{lost}")
    failed = dcmweb("-q", local_server.url, "retrieve", "--output", str(tmp_path / "bad"))
    assert failed.exit_code == 6
    size = files[0].stat().st_size / 1024
    [(level, message), *rest] = parsed(failed.stderr)
    assert (level, message) == ("error", f"studies/{lost}: HTTP 404 Not Found: injected fault")
    # Old dcmweb: the error lines alone; store -q printed its summary, retrieve -q did not.
    assert rest == [("info", f"Transferred {size:.1f} KiB in 1 file; 1 failed"),
                    ("error", "1 item could not be retrieved")]


def test_quiet_and_verbose_together_are_a_usage_error() -> None:
    result = dcmweb("-q", "-v", "http://127.0.0.1:9/dicom-web", "search")
    assert (result.exit_code, result.stdout) == (2, "")
    assert lines(result.stderr) == [
        "dcmweb: error: -q/--quiet and -v/--verbose cannot be used together"]
    # Set by a variable the user may have forgotten: the message names it.
    result = dcmweb("-q", "http://127.0.0.1:9/dicom-web", "search",
                    env={"DCMWEB_VERBOSE": "1"})
    assert (result.exit_code, result.stdout) == (2, "")
    assert lines(result.stderr) == [
        "dcmweb: error: -q/--quiet and -v/--verbose (set by DCMWEB_VERBOSE) cannot be used"
        " together"]


def test_no_summary_before_a_usage_error(local_server: LocalServer, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not DICOM")
    result = dcmweb(local_server.url, "store", str(text))
    assert result.exit_code == 2
    assert lines(result.stderr) == [
        f"dcmweb: info: store to {local_server.url} from {text} (1 worker; batch-size 20)",
        f"dcmweb: warning: skipped {text}: not a DICOM Part-10 file (no DICM marker)",
        "dcmweb: error: no DICOM files to store (all files were skipped as not DICOM)"]


@pytest.mark.parametrize(("args", "stdin", "why"), [
    (("-",), "", "the file lists were empty"),
    (("--files-from", "-"), "\n", "the file lists were empty"),
    (("{f}", "--exclude", "*.dcm"), "", "--include/--exclude left out every file"),
])
def test_no_files_given_is_not_blamed_on_dicom(local_server: LocalServer, tmp_path: Path,
                                               args: tuple[str, ...], stdin: str,
                                               why: str) -> None:
    corpus.synthetic_files(tmp_path / "f", 2)
    words = [arg.format(f=tmp_path / "f") for arg in args]
    result = CliRunner().invoke(cli, [local_server.url, "store", *words], input=stdin)
    assert (result.exit_code, result.stdout) == (2, "")
    assert lines(result.stderr)[1:] == [f"dcmweb: error: no files to store ({why})"]


def test_quiet_hides_the_retries_of_a_run_that_succeeds(local_server: LocalServer,
                                                        tmp_path: Path) -> None:
    """Cron mails whatever a job prints: a 503 that a retry got past is not trouble. The
    same retry is a warning without -q, and a run that gives up says so under -q."""
    corpus.synthetic_files(tmp_path / "f", 1)
    env = {"DCMWEB_RETRIES": "2"}
    local_server.inject_fault(503, count=1, method="POST")
    quiet = CliRunner().invoke(cli, ["-q", local_server.url, "store", str(tmp_path / "f")],
                               env=env, catch_exceptions=False)
    assert (quiet.exit_code, quiet.stderr) == (0, "")
    local_server.inject_fault(503, count=1, method="POST")
    shown = CliRunner().invoke(cli, [local_server.url, "store", str(tmp_path / "f")],
                               env=env, catch_exceptions=False)
    assert shown.exit_code == 0
    [(level, message)] = [line for line in parsed(shown.stderr) if "retrying" in line[1]]
    assert level == "warning"
    assert "HTTP 503 Service Unavailable; retrying" in message
    local_server.inject_fault(503, count=100_000, retry_after="0", method="POST")
    failed = CliRunner().invoke(cli, ["-q", "--outage-limit", "0.5", local_server.url,
                                      "store", str(tmp_path / "f")],
                                env=env, catch_exceptions=False)
    assert failed.exit_code != 0
    assert [level for level, message in parsed(failed.stderr) if "retrying" in message] == []
    assert "the outage limit" in failed.stderr


def test_one_deleted_instance_is_singular(local_server: LocalServer, tmp_path: Path) -> None:
    [path] = corpus.synthetic_files(tmp_path / "f", 1)
    stored = dcmweb(local_server.url, "store", str(path))
    [uploaded] = [m for m in messages(stored.stderr, "info") if " uploaded as " in m]
    study = uploaded.split("/studies/")[1].split("/")[0]
    result = dcmweb(local_server.url, "delete", f"studies/{study}")
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr)[-1] == f"dcmweb: info: deleted studies/{study} (1 instance)"


def test_plural() -> None:
    assert [plural(n, "file") for n in (0, 1, 2)] == ["0 files", "1 file", "2 files"]
    assert plural(1, "instance") == "1 instance"


def test_output_levels(tmp_path: Path) -> None:
    with (tmp_path / "err").open("w+") as err:
        output = Output(stderr=err, quiet=True)
        output.log("hidden")
        output.summary("hidden too")
        output.warning("kept")
        output.error("kept too")
        err.seek(0)
        assert [message for _, message in parsed(err.read())] == ["kept", "kept too"]


FORGED = "2026-12-01T00:00:00.000+00:00 dcmweb: info: Transferred 99 GiB in 99999 files"


def test_a_file_name_cannot_forge_a_log_line(local_server: LocalServer, tmp_path: Path) -> None:
    # Cron logs are grepped: a line break in a name must not start a line of its own.
    [source] = corpus.synthetic_files(tmp_path / "src", 1)
    evil = tmp_path / "f" / f"evil\n{FORGED}\r\x1b[2K\t.dcm"
    evil.parent.mkdir()
    source.rename(evil)
    result = dcmweb(local_server.url, "store", str(evil.parent))
    assert result.exit_code == 0, result.stderr
    logged = parsed(result.stderr)  # every line in the one shape
    assert [level for level, _ in logged] == ["info", "info", "info"]
    assert logged[1][1].startswith(f"{evil.parent}/evil\\n{FORGED}\\r\\x1b[2K\\t.dcm uploaded as ")
    assert logged[2][1].endswith(" in 1 file")
    # JSON escapes by itself: the message is the name as it is.
    records = dcmweb("--log-format", "json", local_server.url, "store", str(evil.parent))
    assert json.loads(records.stderr.splitlines()[1])["message"].startswith(
        f"{evil} uploaded as ")


def test_text_log_lines_escape_control_characters(tmp_path: Path) -> None:
    with (tmp_path / "err").open("w+") as err:
        Output(stderr=err).warning("a\nb\r\tc\x00\x7f\x9b é ✓ \\n \udcff \\xff")
        err.seek(0)
        [(_, message)] = parsed(err.read())
    # As ls -b: a backslash is doubled, so a line break (\n) and the two characters \n
    # (\\n), a byte 0xFF (\xff) and the four characters \xff (\\xff) differ.
    # \xNN is always the byte NN: a C1 control is shown by its UTF-8 bytes.
    assert message == "a\\nb\\r\\tc\\x00\\x7f\\xc2\\x9b é ✓ \\\\n \\xff \\\\xff"


def test_the_progress_bar_counts_in_words() -> None:
    """tqdm glues its unit to the count: the bar read '3file [00:00, 3.33file/s]'."""
    stderr = io.StringIO()
    output = Output(stderr=stderr, progress=True)
    output.start_progress(lambda: 0, note=lambda: "3 files")
    time.sleep(0.6)  # one redraw
    output.stop_progress()
    assert re.search(r"\b0\.00B \[[0-9:]+, \?B/s, 3 files\]", stderr.getvalue())
