"""Search rows that contradict an exact filter: the server ignored the key (matching.py).

tiny-pacs matches a few keys and silently ignores the rest, so it answers every row as a
match; dcmweb leaves out the rows whose value cannot match and says so. Orthanc and the
local server match the keys: nothing changes there.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.matching import FilterCheck, exact_filters
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines
from dcmweb_devtools.orthanc import Orthanc
from dcmweb_devtools.tinypacs import TinyPacs

DESCRIPTIONS = ("Head CT", "Chest CT")


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two studies of one series each, instances numbered 1 to 3 in each series."""
    paths = corpus.synthetic_files(tmp_path_factory.mktemp("truth"), 6, studies=2,
                                   patient_id="TRUTH")
    for index, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = index // 2 + 1  # round-robin over the studies: 1, 1, 2, 2, 3, 3
        ds.StudyDescription = DESCRIPTIONS[index % 2]
        ds.ReferringPhysicianName = "DOC^ALICE"
        ds.AccessionNumber = f"ACC-{index % 2}"
        ds.save_as(path, enforce_file_format=True)
    return paths


def stored(url: str, files: list[Path]) -> dict[str, str]:
    """Store the files; the series path of each study, by its description."""
    with warnings.catch_warnings(), Client(url) as client:
        warnings.simplefilter("ignore")  # tiny-pacs' answer lacks attributes dcmweb wants
        assert {r.status for r in client.store(files)} == {"stored"}
    series = {}
    for path in files[:2]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        series[str(ds.StudyDescription)] = (f"studies/{ds.StudyInstanceUID}/series/"
                                            f"{ds.SeriesInstanceUID}")
    return series


def warning_lines(result: Result) -> list[str]:
    return [line.split("warning: ", 1)[1] for line in lines(result.stderr)
            if "warning: " in line]


@pytest.fixture(scope="module")
def tinypacs_filled(tinypacs: TinyPacs, files: list[Path]) -> tuple[str, dict[str, str]]:
    return tinypacs.url, stored(tinypacs.url, files)


def test_tinypacs_rows_contradicting_an_ignored_key_are_left_out(
        tinypacs_filled: tuple[str, dict[str, str]]) -> None:
    url, series = tinypacs_filled
    head = series["Head CT"]
    result = dcmweb(url, "search", f"{head}/instances", "--filter", "InstanceNumber=2",
                    "--format", "csv", "--fields", "InstanceNumber")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["InstanceNumber", "2"]
    assert warning_lines(result) == [
        f"search {head}/instances: the server ignored the filter InstanceNumber=2: 2 rows "
        "do not match it; dcmweb left them out"]
    nothing = dcmweb(url, "search", "--filter", "StudyDescription=nomatch", "--format", "uids")
    assert (nothing.exit_code, nothing.stdout) == (0, "")
    assert warning_lines(nothing) == [
        "search studies: the server ignored the filter StudyDescription=***: 2 rows do "
        "not match it; dcmweb left them out"]
    # Text is compared without case and surrounding spaces: no server ignored a key
    # because it matched "chest ct" to "Chest CT".
    chest = dcmweb(url, "search", "--filter", "StudyDescription= chest ct", "--format", "csv",
                   "--fields", "StudyDescription")
    assert chest.stdout.splitlines() == ["StudyDescription", "Chest CT"]
    assert warning_lines(chest) == [
        "search studies: the server ignored the filter StudyDescription=***: 1 row does "
        "not match it; dcmweb left it out"]


def test_tinypacs_a_limit_counts_the_servers_rows_and_the_warning_says_so(
        tinypacs_filled: tuple[str, dict[str, str]]) -> None:
    url, series = tinypacs_filled
    head = series["Head CT"]
    result = dcmweb(url, "search", f"{head}/instances", "--filter", "InstanceNumber=3",
                    "--limit", "2", "--format", "uids")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # instances 1 and 2 were the server's two rows
    assert warning_lines(result)[0].endswith(
        "2 rows do not match it; dcmweb left them out (--limit counted the rows the server "
        "sent)")
    # Paged (pages of one row) from an offset: every page is read, the offset counts the
    # server's rows too.
    paged = dcmweb(url, "search", f"{head}/instances", "--filter", "InstanceNumber=3",
                   "--offset", "1", "--page-size", "1", "--format", "csv", "--fields",
                   "InstanceNumber")
    assert paged.stdout.splitlines() == ["InstanceNumber", "3"]
    assert warning_lines(paged)[0].endswith(
        "1 row does not match it; dcmweb left it out (--offset counted the rows the server "
        "sent)")


def test_tinypacs_names_are_warned_of_never_left_out(
        tinypacs_filled: tuple[str, dict[str, str]]) -> None:
    url, _ = tinypacs_filled
    result = dcmweb(url, "search", "--filter", "ReferringPhysicianName=zzz", "--format", "uids")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.split()) == 2
    assert warning_lines(result) == [
        "search studies: the server ignored the filter ReferringPhysicianName=***: 2 rows do "
        "not match it; shown all the same (servers match names loosely)"]
    loose = dcmweb(url, "search", "--filter", "ReferringPhysicianName=alice", "--format", "uids")
    assert (len(loose.stdout.split()), loose.stderr) == (2, "")


def test_tinypacs_keys_it_matches_get_no_warning(
        tinypacs_filled: tuple[str, dict[str, str]]) -> None:
    url, _ = tinypacs_filled
    for key in ("PatientID=TRUTH", "AccessionNumber=ACC-1"):
        result = dcmweb(url, "search", "--filter", key, "--format", "uids")
        assert result.exit_code == 0, result.stderr
        assert (len(result.stdout.split()), result.stderr) == (2 if "TRUTH" in key else 1, "")


def test_tinypacs_library_search_leaves_the_rows_out_and_logs_why(
        tinypacs_filled: tuple[str, dict[str, str]], caplog: pytest.LogCaptureFixture) -> None:
    url, series = tinypacs_filled
    with caplog.at_level(logging.WARNING, "dcmweb"), Client(url) as client:
        rows = client.search(f"{series['Chest CT']}/instances", filters="InstanceNumber=1")
    assert [row["00200013"]["Value"] for row in rows] == [[1]]
    assert [r.getMessage() for r in caplog.records] == [
        f"search {series['Chest CT']}/instances: the server ignored the filter "
        "InstanceNumber=1: 2 rows do not match it; dcmweb left them out"]


def test_orthanc_matches_the_keys_and_nothing_changes(orthanc: Orthanc,
                                                     files: list[Path]) -> None:
    series = stored(orthanc.url, files)
    head = series["Head CT"]
    for args, expected in [
            ((f"{head}/instances", "--filter", "InstanceNumber=2"), 1),
            (("studies", "--filter", "StudyDescription=nomatch"), 0),
            (("studies", "--filter", "AccessionNumber=acc-1"), 1),  # Orthanc ignores case
            (("studies", "--filter", "PatientID=truth"), 2),
            (("studies", "--filter", "ReferringPhysicianName=zzz"), 0),
            (("studies", "--filter", "ReferringPhysicianName=DOC^ALICE", "--limit", "1"), 1)]:
        result = dcmweb(orthanc.url, "search", *args, "--format", "uids")
        assert result.exit_code == 0, result.stderr
        assert (len(result.stdout.split()), result.stderr) == (expected, ""), args


@pytest.fixture
def extended(tmp_path: Path, files: list[Path]) -> Iterator[LocalServer]:
    with LocalServer(tmp_path / "store", search_keys="extended") as server:
        stored(server.url, files)
        yield server


def test_local_server_matches_the_keys_and_nothing_changes(extended: LocalServer,
                                                          files: list[Path]) -> None:
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    for args, expected in [
            (("instances", "--filter", "InstanceNumber=2"), 2),
            (("instances", "--filter", "InstanceNumber=02"), 2),
            (("studies", "--filter", f"StudyDate={ds.StudyDate}"), 2),
            (("studies", "--filter", "StudyDescription=Head CT"), 1),
            (("studies", "--filter", "ReferringPhysicianName=doc^alice"), 2),
            (("instances", "--filter", f"SOPInstanceUID={ds.SOPInstanceUID}"), 1),
            (("series", "--filter", f"StudyInstanceUID={ds.StudyInstanceUID}"), 1)]:
        result = dcmweb(extended.url, "search", *args, "--format", "uids")
        assert result.exit_code == 0, result.stderr
        assert (len(result.stdout.split()), result.stderr) == (expected, ""), args


# -- which filters are exact, and how a value is compared -----------------------------------
@pytest.mark.parametrize("words", [
    "StudyDescription=CT*", "StudyDescription=C?", "SOPInstanceUID=1.2,1.3",
    "ModalitiesInStudy=CT\\MR", "StudyDescription=", "StudyDescription=%20",
    "StudyDate=20200101-20201231", "StudyTime=0800-1200",
    "InstanceNumber=1&InstanceNumber=2", "InstanceNumber=1&00200013=2",
    "PatientName=DOE&fuzzymatching=true", "OtherPatientIDsSequence.PatientID=1",
    "NoSuchKeyword=1", "limit=1&offset=3&includefield=all"])
def test_no_row_is_judged_by_a_filter_that_is_not_one_exact_value(words: str) -> None:
    from dcmweb.search import parse_params

    contradicting = {tag: {"vr": vr, "Value": [value]} for tag, vr, value in [
        ("00081030", "LO", "zzz"), ("00080018", "UI", "9.9"), ("00080061", "CS", "XA"),
        ("00080020", "DA", "19000101"), ("00080030", "TM", "230000"),
        ("00200013", "IS", 9), ("00100010", "PN", {"Alphabetic": "ROE^JANE"}),
        ("00101002", "SQ", "x")]}
    check = FilterCheck(exact_filters(parse_params([words])))
    assert check.keep(contradicting)
    assert check.messages("") == []


@pytest.mark.parametrize(("vr", "wanted", "value", "kept"), [
    ("IS", "5", "05", True), ("IS", "5", 5, True), ("IS", "5", 6, False),
    ("DS", "2.50", "2.5", True), ("DS", "2.5", 2.25, False), ("US", "512", 512, True),
    ("DA", "20200131", "2020.01.31", True), ("DA", "20200131", "20200130", False),
    ("TM", "0815", "081500.000", True), ("TM", "08:15", "081500", True),
    ("TM", "0815", "0816", False), ("DT", "20200131", "20200131081500+0100", True),
    ("UI", "1.2.3", "1.2.3\0", True), ("UI", "1.2.3", "1.2.30", False),
    ("CS", "ct", "CT", True), ("CS", "CT", "MR", False), ("LO", "Müller", "MÜLLER ", True),
    ("PN", "DOE^JOHN", {"Alphabetic": "Doe^John^^Dr"}, True),
    ("PN", "DOE^JOHN", {"Alphabetic": "ROE^JANE"}, True),  # warned of, not left out
    ("SQ", "x", "y", True), ("IS", "5", "five", True), ("DS", "nan", "nan", True)])
def test_values_are_compared_as_their_vr_matches(vr: str, wanted: str, value: object,
                                                 kept: bool) -> None:
    tag = {"IS": "00200013", "DS": "00181050", "US": "00280010", "DA": "00080020",
           "TM": "00080030", "DT": "0008002A", "UI": "00080018", "CS": "00080060",
           "LO": "00081030", "PN": "00100010", "SQ": "00081115"}[vr]
    check = FilterCheck(exact_filters([(tag, wanted)]))
    assert check.keep({tag: {"vr": vr, "Value": ["other", value]}
                       if vr in ("CS", "LO") else {"vr": vr, "Value": [value]}}) is kept


def test_a_row_lacking_the_attribute_or_its_value_is_kept() -> None:
    check = FilterCheck(exact_filters([("InstanceNumber", "5")]))
    assert check.keep({})
    assert check.keep({"00200013": {"vr": "IS"}})
    assert check.keep({"00200013": {"vr": "IS", "Value": []}})
    assert check.messages("") == []


@pytest.mark.parametrize(("key", "value", "vr", "shown"), [
    ("AccessionNumber", "A20261202-0042", "SH", "***"),  # was shown
    ("00080050", "A20261202-0042", "SH", "***"),
    ("PatientAge", "099Y", "AS", "***"),
    ("PatientSex", "O", "CS", "***"),
    ("PatientWeight", "12.5", "DS", "***"),
    ("PatientSize", "1.55", "DS", "***"),
    ("StudyDate", "20261202", "DA", "***"),
    ("Modality", "CT", "CS", "CT"),
    ("SeriesNumber", "3", "IS", "3"),
    ("SOPInstanceUID", "1.2.3", "UI", "1.2.3"),
])
def test_a_warning_shows_only_values_that_identify_no_one(key: str, value: str, vr: str,
                                                          shown: str) -> None:
    check = FilterCheck(exact_filters([(key, value)]))
    tag = exact_filters([(key, value)])[0].tag
    assert not check.keep({tag: {"vr": vr, "Value": ["7" if vr in ("DS", "IS") else "OTHER"]}})
    assert check.messages("") == [f"the server ignored the filter {key}={shown}: 1 row does "
                                  "not match it; dcmweb left it out"]


def test_a_patient_key_is_hidden_in_the_warning() -> None:
    check = FilterCheck(exact_filters([("PatientID", "SECRET-ID")]))
    assert not check.keep({"00100020": {"vr": "LO", "Value": ["OTHER"]}})
    assert check.messages("") == ["the server ignored the filter PatientID=***: 1 row does "
                                  "not match it; dcmweb left it out"]
