"""dcmweb search options (--filter, --include, --fuzzy, --limit, --offset), text formats
(csv, tsv, uids) and Orthanc-safe escaping of person names."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import Hostile

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.rawquery import unescape_caret
from dcmweb.searchformat import readable
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.docexamples import run_example
from dcmweb_devtools.orthanc import Orthanc

PATIENTS = [("DOE^JOHN", "OPT-1", "20200115", "081500"),
            ("DOE^JANE", "OPT-2", "20210620", "231000"),
            ("ROE^RICHARD^M", "OPT-3", "20220101", "120000")]


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def patient_files(directory: Path) -> list[Path]:
    """One study per patient, with the names, dates and times above."""
    paths = []
    for index, (name, pid, date, time) in enumerate(PATIENTS):
        [path] = corpus.synthetic_files(directory / str(index), 1, patient_id=pid)
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.StudyDate, ds.StudyTime = name, date, time
        ds.StudyDescription, ds.SeriesDescription = f"Study of {pid}", f"Series of {pid}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return patient_files(tmp_path_factory.mktemp("patients"))


@pytest.fixture
def orthanc_filled(orthanc: Orthanc, files: list[Path]) -> Orthanc:
    with Client(orthanc.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    return orthanc


@pytest.fixture
def local_filled(local_server: LocalServer, files: list[Path]) -> Iterator[LocalServer]:
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    local_server.clear_requests()
    yield local_server


def study_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


# -- escaping -----------------------------------------------------------------------------------
def test_caret_in_a_person_name_finds_the_patient_on_orthanc(orthanc_filled: Orthanc,
                                                             files: list[Path]) -> None:
    """Orthanc does not decode %5E: 0.1 sent DOE%5EJOHN and silently found nothing."""
    result = dcmweb(orthanc_filled.url, "search", "--filter", "PatientName=DOE^JOHN",
                    "--format", "uids")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == study_uid(files[0]) + "\n"
    # The raw KEY=VALUE words go the same way.
    result = dcmweb(orthanc_filled.url, "search", "PatientName=DOE^J*", "--format", "uids")
    assert sorted(result.stdout.split()) == sorted(study_uid(p) for p in files[:2])


def test_caret_goes_on_the_wire_unescaped_and_other_characters_escaped() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.reply(200, b"[]", "application/json"))
        result = dcmweb(fake.url, "search", "--filter", "PatientName=DOE^JOHN Q&X",
                        "--limit", "5")
        assert result.exit_code == 0, result.stderr
        [seen] = fake.requests
        assert seen.raw_query == "PatientName=DOE^JOHN%20Q%26X&limit=5"


@pytest.mark.parametrize(("target", "sent"), [
    ("/s?a=DOE%5EJOHN", "/s?a=DOE^JOHN"),
    ("/s?a=%255E", "/s?a=%255E"),  # a literal '%5E' typed by the user stays literal
    ("/p%5E?a=b", "/p%5E?a=b"),  # only the query
    ("/s", "/s"),
])
def test_unescape_caret(target: str, sent: str) -> None:
    assert unescape_caret(target) == sent


def test_verbose_logs_the_whole_request_line_without_patient_values(
        local_filled: LocalServer) -> None:
    """The request's shape is logged, the patient it looks for is not (usage.md: log
    lines never carry patient names or IDs; -v logged them as typed)."""
    result = dcmweb("-v", local_filled.url, "search", "PatientID=OPT-1", "--filter",
                    "PatientName=DOE^JOHN", "--include", "PatientID", "--format", "uids")
    assert result.exit_code == 0, result.stderr
    assert result.stdout, result.stderr  # the search found the patient
    assert f"GET {local_filled.url}/studies?PatientID=***&PatientName=***&" \
        "includefield=PatientID&limit=2000&offset=0 -> 200" in result.stderr
    assert "OPT" not in result.stderr and "DOE" not in result.stderr


# -- options ------------------------------------------------------------------------------------
def test_options_become_query_parameters(local_filled: LocalServer) -> None:
    result = dcmweb(local_filled.url, "search", "instances", "--filter", "00100020=OPT-2",
                    "--include", "StudyDate", "--include", "all", "--fuzzy",
                    "--limit", "3", "--offset", "0", "--format", "compact")
    [record] = local_filled.requests
    assert record.path.split("?", 1)[1] == ("00100020=OPT-2&includefield=StudyDate&"
                                            "includefield=all&fuzzymatching=true&limit=3&offset=0")
    assert result.exit_code == 0, result.stderr


def test_date_range_filter(orthanc_filled: Orthanc, files: list[Path]) -> None:
    result = dcmweb(orthanc_filled.url, "search", "--filter", "StudyDate=20200101-20211231",
                    "--format", "uids")
    assert result.exit_code == 0, result.stderr
    assert sorted(result.stdout.split()) == sorted(study_uid(p) for p in files[:2])
    result = dcmweb(orthanc_filled.url, "search", "--filter", "StudyDate=20220101-",
                    "--format", "uids")
    assert result.stdout.split() == [study_uid(files[2])]


def test_limit_and_offset_on_orthanc(orthanc_filled: Orthanc) -> None:
    everything = dcmweb(orthanc_filled.url, "search", "--format", "uids").stdout.split()
    assert len(everything) == 3
    result = dcmweb(orthanc_filled.url, "search", "--limit", "1", "--offset", "1",
                    "--format", "uids")
    assert result.stdout.split() == everything[1:2]


@pytest.mark.parametrize("args", [["--filter", "PatientNam=X"], ["--include", "Nonsense"],
                                  ["--filter", "novalue"], ["--format", "csv", "--fields", "Foo"],
                                  ["--format", "csv", "--fields", " , "],
                                  ["--format", "jsonl", "--fields", "Foo"],
                                  ["--format", "uids", "--fields", "PatientName"],
                                  ["offset=10", "--offset", "50"]])  # which one won: a guess
def test_bad_names_are_usage_errors_before_any_request(args: list[str]) -> None:
    with Hostile() as fake:
        result = dcmweb(fake.url, "search", *args)
        assert result.exit_code == 2
        assert "dcmweb: error:" in result.stderr
        assert fake.requests == []


# -- text formats -------------------------------------------------------------------------------
def test_csv_with_fields_by_keyword_is_readable(orthanc_filled: Orthanc, files: list[Path]
                                                ) -> None:
    result = dcmweb(orthanc_filled.url, "search", "--filter", "PatientID=OPT-*", "--format", "csv",
                    "--fields", "PatientName,PatientID,StudyDate,StudyTime,StudyInstanceUID")
    assert result.exit_code == 0, result.stderr
    rows = sorted(csv.reader(io.StringIO(result.stdout)))
    assert rows == sorted([
        ["PatientName", "PatientID", "StudyDate", "StudyTime", "StudyInstanceUID"],
        ["DOE, JOHN", "OPT-1", "2020-01-15", "08:15:00", study_uid(files[0])],
        ["DOE, JANE", "OPT-2", "2021-06-20", "23:10:00", study_uid(files[1])],
        ["ROE, RICHARD M", "OPT-3", "2022-01-01", "12:00:00", study_uid(files[2])],
    ])


def test_tsv_default_columns_and_an_empty_result_prints_the_header(local_filled: LocalServer
                                                                   ) -> None:
    result = dcmweb(local_filled.url, "search", "--format", "tsv", "--filter", "PatientID=OPT-3")
    lines = result.stdout.splitlines()
    assert lines[0].split("\t")[:4] == ["StudyInstanceUID", "PatientName", "PatientID",
                                        "StudyDate"]
    assert lines[1].split("\t")[1:4] == ["ROE, RICHARD M", "OPT-3", "2022-01-01"]
    result = dcmweb(local_filled.url, "search", "--format", "tsv", "--filter", "PatientID=NONE")
    assert result.exit_code == 0
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("StudyInstanceUID\t")


@pytest.mark.parametrize("server", ["local_filled", "orthanc_filled"])
def test_default_columns_are_asked_for(server: str, request: pytest.FixtureRequest) -> None:
    """StudyDescription and SeriesDescription are default columns that servers leave out
    unless asked for: the columns were always empty."""
    url = request.getfixturevalue(server).url
    studies = dcmweb(url, "search", "--filter", "PatientID=OPT-2", "--format", "csv")
    assert studies.exit_code == 0, studies.stderr
    [row] = csv.DictReader(io.StringIO(studies.stdout))
    assert (row["PatientID"], row["StudyDescription"]) == ("OPT-2", "Study of OPT-2")
    series = dcmweb(url, "search", "series", "--filter", "PatientID=OPT-2", "--format", "tsv")
    assert series.exit_code == 0, series.stderr
    [row] = csv.DictReader(io.StringIO(series.stdout), delimiter="\t")
    assert (row["Modality"], row["SeriesDescription"]) == ("CT", "Series of OPT-2")


def test_uids_pipe_into_xargs(orthanc_filled: Orthanc, files: list[Path]) -> None:
    """UIDs one per line, nothing else on stdout: xargs can run a command per study."""
    search = subprocess.run([sys.executable, "-m", "dcmweb", orthanc_filled.url, "search",
                             "--format", "uids"], capture_output=True, text=True, check=True)
    xargs = subprocess.run(["xargs", "-n1", "echo", "got"], input=search.stdout,
                           capture_output=True, text=True, check=True)
    assert sorted(xargs.stdout.splitlines()) == sorted(f"got {study_uid(p)}" for p in files)


def test_series_and_instance_uids(local_filled: LocalServer, files: list[Path]) -> None:
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    result = dcmweb(local_filled.url, "search", f"studies/{ds.StudyInstanceUID}/series",
                    "--format", "uids")
    assert result.stdout == f"{ds.SeriesInstanceUID}\n"
    result = dcmweb(local_filled.url, "search", f"studies/{ds.StudyInstanceUID}/instances",
                    "--format", "uids")
    assert result.stdout == f"{ds.SOPInstanceUID}\n"


CONTROL_NAME = "Ctrl^Char\x02"
CONTROL_TEXT = "bell\x07 esc\x1b[31m c1\x9b del\x7f tab\t line\nend real\rFAKE crlf\r\nend"


@pytest.fixture
def local_with_control_characters(local_server: LocalServer, tmp_path: Path) -> LocalServer:
    """A study whose name and description hold control characters (BEL, ESC, CSI, DEL)."""
    [path] = corpus.synthetic_files(tmp_path / "ctrl", 1, patient_id="CTRL-1")
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: U+009B (CSI) can be written
    ds.PatientName, ds.StudyDescription = CONTROL_NAME, CONTROL_TEXT
    ds.save_as(path, enforce_file_format=True)
    with Client(local_server.url) as client:
        assert [r.status for r in client.store([path])] == ["stored"]
    return local_server


@pytest.mark.parametrize(("fmt", "row"), [
    # CSV quotes the comma and the line breaks (a reader gets them back); the rest is
    # escaped, a lone carriage return too (on a terminal it would overwrite the row).
    # TSV escapes the tab and the line breaks as well.
    ("csv", '"Ctrl, Char\\x02","bell\\x07 esc\\x1b[31m c1\\x9b del\\x7f tab\t line\nend'
            ' real\\rFAKE crlf\r\nend"\n'),
    ("tsv", "Ctrl, Char\\x02\tbell\\x07 esc\\x1b[31m c1\\x9b del\\x7f tab\\t line\\nend"
            " real\\rFAKE crlf\\r\\nend\n"),
], ids=["csv", "tsv"])
@pytest.mark.filterwarnings("ignore:Found unknown escape sequence")  # pydicom reads the ESC
def test_text_formats_escape_control_characters(local_with_control_characters: LocalServer,
                                                fmt: str, row: str) -> None:
    """A server's value must not send a terminal an escape sequence: shown directly or
    through a pipe (column -t, less), the table holds no control character but the
    separators and CSV's quoted line break. JSON keeps the value as it came."""
    url = local_with_control_characters.url
    result = dcmweb(url, "search", "--format", fmt, "--fields", "PatientName,StudyDescription")
    assert result.exit_code == 0, result.stderr
    separator = "," if fmt == "csv" else "\t"
    written = result.stdout_bytes.decode()  # .stdout turns \r\n into \n
    assert written == f"PatientName{separator}StudyDescription\n" + row
    if fmt == "csv":
        [_, cells] = csv.reader(io.StringIO(written))
        assert cells[1] == ("bell\\x07 esc\\x1b[31m c1\\x9b del\\x7f tab\t line\nend"
                            " real\\rFAKE crlf\r\nend")
    found = json.loads(dcmweb(url, "search", "--include", "StudyDescription").stdout)
    assert found[0]["00081030"]["Value"] == [CONTROL_TEXT]


def test_readable_values() -> None:
    assert readable({"vr": "PN", "Value": [{"Alphabetic": "DOE^JOHN"}, {"Alphabetic": "X"}]}) \
        == "DOE, JOHN\\X"
    assert readable({"vr": "DA", "Value": ["20200131"]}) == "2020-01-31"
    assert readable({"vr": "TM", "Value": ["0815"]}) == "08:15"
    assert readable({"vr": "TM", "Value": ["081500.123"]}) == "08:15:00.123"
    assert readable({"vr": "SQ", "Value": [{}]}) == "(sequence)"
    assert readable({"vr": "US", "Value": [512]}) == "512"
    # A name written only in kanji or kana is shown, not an empty cell.
    assert readable({"vr": "PN", "Value": [{"Ideographic": "山田^太郎"},
                                           {"Phonetic": "やまだ^たろう"}]}) \
        == "山田, 太郎\\やまだ, たろう"
    assert readable({"vr": "PN", "Value": ["=山田^太郎=やまだ^たろう", None]}) == "山田, 太郎\\"
    assert readable(None) == ""


def test_library_search_takes_the_same_options(local_filled: LocalServer) -> None:
    with Client(local_filled.url) as client:
        rows = client.search("studies", filters=["PatientID=OPT-1"], include=["StudyDate"],
                             limit=10)
    assert [row["00100020"]["Value"] for row in rows] == [["OPT-1"]]
    assert json.loads(json.dumps(rows))  # plain JSON rows


def test_docs_examples_run(orthanc_filled: Orthanc, files: list[Path]) -> None:
    result = run_example("dcmweb HOST search --filter PatientName=DOE^JOHN --format csv "
                         "--fields PatientName,PatientID,StudyDate", orthanc_filled.url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "PatientName,PatientID,StudyDate\n\"DOE, JOHN\",OPT-1,2020-01-15\n"
    result = run_example("dcmweb HOST search --filter StudyDate=20200101-20211231 --format uids",
                         orthanc_filled.url)
    assert sorted(result.stdout.split()) == sorted(study_uid(p) for p in files[:2])
    result = run_example("dcmweb HOST search instances --filter 00100020=123 --include all "
                         "--limit 10 --offset 20", orthanc_filled.url)
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])
    result = run_example("dcmweb HOST search --filter PatientName=doe --fuzzy --format tsv",
                         orthanc_filled.url)
    assert result.exit_code == 0 and result.stdout.startswith("StudyInstanceUID\t")
