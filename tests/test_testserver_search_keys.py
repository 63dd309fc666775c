"""The local server's search keys: the ones Google documents, at the levels Google allows,
with Google's matching and its 400 for anything else; and the wider `extended` set.

Each key is shown to find a real file from pydicom's test data and not the others.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from click.testing import CliRunner, Result
from test_testserver import blob, qido, stow, synthetic, uids

from dcmweb.cli import cli
from dcmweb.testing import LocalServer
from dcmweb.testing.qido import EXTENDED_KEYS, GOOGLE_KEYS

CT, MR, RTPLAN, RTDOSE = "CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm"
SC = "SC_rgb_jpeg_dcmtk.dcm"  # PatientName Lestrade^G, ReferringPhysicianName Moriarty^James
LIVER = "liver_1frame.dcm"  # the one with an AccessionNumber (03086212), modality SEG
NM = "JPEG2000.dcm"  # BodyPartExamined WHOLE BODY
GOOGLE_FILES = (CT, MR, RTPLAN, RTDOSE, SC, LIVER)
DATED_STUDY = "2.25.310077154230119071500"  # the study of dated_copy() below


def study(name: str) -> str:
    return uids(blob(name))[0]


def series(name: str) -> str:
    return uids(blob(name))[1]


def sop(name: str) -> str:
    return uids(blob(name))[2]


def found(srv: LocalServer, path: str, params: dict[str, str]) -> set[str]:
    """The files (by name) whose study is in the answer; every file has its own study."""
    by_study = {study(name): name for name in (*GOOGLE_FILES, NM)} | {DATED_STUDY: "DATED"}
    return {by_study[row["0020000D"]["Value"][0]] for row in qido(srv, path, **params)}


def refused(srv: LocalServer, path: str, params: dict[str, str]) -> str:
    resp = requests.get(srv.url + path, params=params, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain")
    return resp.text.strip()


@pytest.fixture(scope="module")
def google(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(tmp_path_factory.mktemp("google")) as server:
        assert stow(server, [blob(name) for name in GOOGLE_FILES]).status_code == 200
        yield server


def test_google_documents_nine_keys_over_three_levels() -> None:
    levels: dict[str, set[str]] = {}
    for keyword, (level, _, _) in GOOGLE_KEYS.items():
        levels.setdefault(level, set()).add(keyword)
    assert levels == {
        "study": {"StudyInstanceUID", "PatientName", "PatientID", "AccessionNumber",
                  "ReferringPhysicianName", "StudyDate"},
        "series": {"SeriesInstanceUID", "Modality"},
        "instance": {"SOPInstanceUID"},
    }  # fmt: skip
    assert set(GOOGLE_KEYS) < set(EXTENDED_KEYS)


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("/studies", {"StudyInstanceUID": f"{study(CT)}"}, {CT}),
        ("/studies", {"StudyInstanceUID": f"{study(MR)},{study(LIVER)}"}, {MR, LIVER}),
        ("/studies", {"0020000D": f"{study(MR)}\\{study(SC)}"}, {MR, SC}),
        ("/studies", {"PatientName": "CompressedSamples^CT1"}, {CT}),
        ("/studies", {"PatientName": "compressedsamples^mr1"}, {MR}),  # names: any case
        ("/studies", {"PatientID": "1CT1"}, {CT}),
        ("/studies", {"PatientID": "1ct1"}, set()),  # other text: exact
        ("/studies", {"AccessionNumber": "03086212"}, {LIVER}),
        ("/studies", {"00080050": "0308621"}, set()),
        ("/studies", {"ReferringPhysicianName": "Moriarty^James"}, {SC}),
        ("/studies", {"ReferringPhysicianName": "Moriarty"}, set()),
        ("/studies", {"StudyDate": "20040119"}, {CT}),
        ("/studies", {"StudyDate": "20040101-20041231"}, {CT, MR}),
        ("/studies", {"StudyDate": "-20031231"}, {RTPLAN, RTDOSE, LIVER}),
        ("/studies", {"StudyDate": "20030701-20030731"}, {RTPLAN}),
        ("/studies", {"StudyDate": "20170101-"}, {SC}),
        ("/series", {"SeriesInstanceUID": series(MR)}, {MR}),
        ("/series", {"Modality": "SEG"}, {LIVER}),
        ("/series", {"PatientID": "4MR1"}, {MR}),  # study keys work at series level
        ("/series", {"Modality": "CT", "PatientID": "4MR1"}, set()),
        (f"/studies/{study(CT)}/series", {"PatientID": "1CT1"}, {CT}),
        (f"/studies/{study(CT)}/series", {"Modality": "MR"}, set()),
        ("/instances", {"SOPInstanceUID": f"{sop(RTDOSE)},{sop(RTPLAN)}"}, {RTDOSE, RTPLAN}),
        ("/instances", {"00080018": sop(SC)}, {SC}),
        ("/instances", {"Modality": "RTPLAN"}, {RTPLAN}),
        ("/instances", {"AccessionNumber": "03086212", "SeriesInstanceUID": series(LIVER)},
         {LIVER}),
        (f"/studies/{study(MR)}/series/{series(MR)}/instances", {"StudyDate": "20040826"},
         {MR}),
    ],
)  # fmt: skip
def test_each_google_key_finds_its_file_and_not_the_others(
    google: LocalServer, path: str, params: dict[str, str], expected: set[str]
) -> None:
    assert found(google, path, params) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("compressed", {CT, MR}),
        ("ct1", {CT}),
        ("Lestrade G", {SC}),  # any word of the query starting any word of the name
        ("LAST", {RTPLAN, RTDOSE}),  # Last^First^mid^pre, Lastname^Firstname
        ("janct", {LIVER}),  # JANCT000
        ("Léstrade", {SC}),  # accents do not count
        ("estrade", set()),  # a word's middle is no match
    ],
)
def test_fuzzy_patient_name_is_a_word_prefix_match(
    google: LocalServer, name: str, expected: set[str]
) -> None:
    assert found(google, "/studies", {"PatientName": name, "fuzzymatching": "true"}) == expected
    assert found(google, "/studies", {"PatientName": name}) == set()  # without: exact


def test_fuzzy_matching_is_for_patient_name_only(google: LocalServer) -> None:
    params = {"ReferringPhysicianName": "moriarty", "fuzzymatching": "true"}
    assert found(google, "/studies", params) == set()


def test_wildcards_are_plain_characters_for_google_but_star_alone_matches_all(
    google: LocalServer,
) -> None:
    assert found(google, "/studies", {"PatientName": "Compressed*"}) == set()
    assert found(google, "/studies", {"PatientID": "1CT?"}) == set()
    assert found(google, "/studies", {"PatientID": "*"}) == set(GOOGLE_FILES)


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/studies", {"SeriesInstanceUID": "1.2.3"},
         "SeriesInstanceUID is not a supported study level attribute"),
        ("/studies", {"Modality": "CT"}, "Modality is not a supported study level attribute"),
        ("/studies", {"00080018": "1.2.3"},
         "SOPInstanceUID is not a supported study level attribute"),
        ("/series", {"SOPInstanceUID": "1.2.3"},
         "SOPInstanceUID is not a supported series level attribute"),
        (f"/studies/{study(CT)}/series", {"SOPInstanceUID": "1.2.3"},
         "SOPInstanceUID is not a supported series level attribute"),
        # Keys Google does not document, answered as Google's stores were seen to answer.
        ("/studies", {"StudyDescription": "e+1"},
         "StudyDescription is not a supported study level attribute"),
        ("/instances", {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"},
         "SOPClassUID is not a supported instance level attribute"),
        ("/instances", {"PatientSex": "F"},
         "PatientSex is not a supported instance level attribute"),
        ("/instances", {"NotAKeyword": "x"}, "unknown query parameter 'NotAKeyword'"),
    ],
)  # fmt: skip
def test_a_key_at_the_wrong_level_or_undocumented_is_googles_400(
    google: LocalServer, path: str, params: dict[str, str], message: str
) -> None:
    assert refused(google, path, params) == message


# -- search_keys="extended" ---------------------------------------------------------------------
def dated_copy() -> bytes:
    """CT_small under new UIDs with a birth date and a performed procedure step start,
    which no file of pydicom's test data has."""
    ds = pydicom.dcmread(io.BytesIO(synthetic(blob(CT), study=DATED_STUDY)))
    ds.PatientBirthDate = "19700401"
    ds.PerformedProcedureStepStartDate = "20040119"
    ds.PerformedProcedureStepStartTime = "071500"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture(scope="module")
def extended(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(tmp_path_factory.mktemp("extended"), search_keys="extended") as server:
        files = [blob(name) for name in (*GOOGLE_FILES, NM)] + [dated_copy()]
        assert stow(server, files).status_code == 200
        yield server


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("/studies", {"PatientName": "compressed*"}, {CT, MR, NM, "DATED"}),
        ("/studies", {"PatientName": "*SAMPLES^?R1"}, {MR}),
        ("/studies", {"PatientID": "?CT1"}, {CT, "DATED"}),
        ("/studies", {"ReferringPhysicianName": "moria", "fuzzymatching": "true"}, {SC}),
        ("/studies", {"StudyTime": "072730"}, {CT, "DATED"}),
        ("/studies", {"StudyTime": "150000-190000"}, {MR, RTPLAN, NM}),
        ("/studies", {"StudyTime": "-080000"}, {CT, "DATED"}),
        ("/studies", {"StudyID": "study1"}, {RTPLAN}),
        ("/studies", {"StudyID": "S?"}, {RTDOSE}),
        ("/studies", {"StudyDescription": "Whole*"}, {NM}),
        ("/studies", {"ModalitiesInStudy": "SEG"}, {LIVER}),
        ("/studies", {"PatientBirthDate": "19700101-19701231"}, {"DATED"}),
        ("/studies", {"PatientSex": "M"}, {NM, LIVER}),
        ("/series", {"SeriesNumber": "2"}, {RTPLAN}),
        ("/series", {"SeriesDescription": "Liver*"}, {LIVER}),
        ("/series", {"InstitutionName": "*IMAGING*"}, {CT, "DATED"}),
        ("/series", {"BodyPartExamined": "WHOLE BODY"}, {NM}),
        ("/series", {"Manufacturer": "TOSHIBA_MEC"}, {MR}),
        ("/series", {"PerformedProcedureStepStartDate": "20040119"}, {"DATED"}),
        ("/series", {"PerformedProcedureStepStartTime": "070000-073000"}, {"DATED"}),
        ("/instances", {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.66.4"}, {LIVER}),
        ("/instances", {"InstanceNumber": "1", "Modality": "SEG"}, {LIVER}),
        ("/instances", {"InstanceNumber": "2"}, set()),
    ],
)  # fmt: skip
def test_each_extended_key_finds_its_file_and_not_the_others(
    extended: LocalServer, path: str, params: dict[str, str], expected: set[str]
) -> None:
    assert found(extended, path, params) == expected


# Every key the server matches as a range, and a range of each form holding the value
# dated_copy() has.
RANGE_KEYS = {
    "StudyDate": ("/studies", "20040101", "20041231"),
    "StudyTime": ("/studies", "070000", "080000"),
    "PatientBirthDate": ("/studies", "19700101", "19701231"),
    "PerformedProcedureStepStartDate": ("/series", "20040101", "20041231"),
    "PerformedProcedureStepStartTime": ("/series", "070000", "080000"),
}


@pytest.fixture(scope="module")
def undated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """The dated copy, and two studies without any of its dates and times: one with the
    attributes empty, one without them."""
    with LocalServer(tmp_path_factory.mktemp("undated"), search_keys="extended") as server:
        copies = []
        for empty in (True, False):
            ds = pydicom.dcmread(io.BytesIO(synthetic(dated_copy())))
            for keyword in RANGE_KEYS:
                if empty:
                    setattr(ds, keyword, "")
                elif keyword in ds:
                    delattr(ds, keyword)
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            copies.append(out.getvalue())
        assert stow(server, [dated_copy(), *copies]).status_code == 200
        yield server


@pytest.mark.parametrize("form", ["START-END", "START-", "-END"])
@pytest.mark.parametrize("keyword", RANGE_KEYS)
def test_a_range_never_matches_a_missing_value(
    undated: LocalServer, keyword: str, form: str
) -> None:
    """`StudyDate=-20041231` found every study without a StudyDate: the index keeps a
    missing value as '', and '' <= '20041231'."""
    path, start, end = RANGE_KEYS[keyword]
    value = form.replace("START", start).replace("END", end)
    rows = qido(undated, path, **{keyword: value})
    assert [row["0020000D"]["Value"][0] for row in rows] == [DATED_STUDY]


def test_extended_keys_keep_their_levels(extended: LocalServer) -> None:
    assert refused(extended, "/studies", {"SeriesNumber": "1"}) == (
        "SeriesNumber is not a supported study level attribute")
    assert refused(extended, "/series", {"InstanceNumber": "1"}) == (
        "InstanceNumber is not a supported series level attribute")
    assert refused(extended, "/instances", {"Rows": "128"}) == (
        "Rows is not a supported instance level attribute")


def test_search_keys_must_be_google_or_extended(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="google, extended"):
        LocalServer(tmp_path, search_keys="all")


def test_search_keys_can_change_while_the_server_runs(google: LocalServer) -> None:
    refused(google, "/studies", {"PatientSex": "F"})
    google.search_keys = "extended"  # what a dcmweb_server fixture user can do
    try:
        assert found(google, "/studies", {"PatientSex": "F"}) == {MR, SC}
    finally:
        google.search_keys = "google"


# -- dcmweb's own search command ---------------------------------------------------------------
def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def rows_of(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_dcmweb_search_with_google_keys_against_the_local_server(google: LocalServer) -> None:
    result = dcmweb(google.url, "search", "--filter", "AccessionNumber=03086212",
                    "--format", "uids")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [study(LIVER)]
    result = dcmweb(google.url, "search", "--filter", "PatientName=last", "--fuzzy",
                    "--format", "uids")  # fmt: skip
    assert sorted(result.stdout.split()) == sorted([study(RTPLAN), study(RTDOSE)])
    rows = rows_of(dcmweb(google.url, "search", "series", "--filter", "Modality=SEG",
                          "--filter", "StudyDate=20030101-20031231"))  # fmt: skip
    assert [row["0020000E"]["Value"][0] for row in rows] == [series(LIVER)]
    refused_cli = dcmweb(google.url, "search", "studies", "--filter", "Modality=CT")
    assert refused_cli.exit_code != 0 and refused_cli.stdout == ""
    assert "Modality is not a supported study level attribute" in refused_cli.stderr


def test_dcmweb_search_with_extended_keys_against_the_local_server(
    extended: LocalServer,
) -> None:
    rows = rows_of(dcmweb(extended.url, "search", "instances", "--filter",
                          "BodyPartExamined=WHOLE BODY", "--filter", "PatientSex=M"))  # fmt: skip
    assert [row["00080018"]["Value"][0] for row in rows] == [sop(NM)]
