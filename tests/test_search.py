"""dcmweb search: paging past silent caps, limits and offsets, paths, and clean JSON on stdout.

Most tests share one local GCP-like server holding 1,200 instances in 120 studies: more
than the 1,000 instances and 100 studies it returns when no limit is sent.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request

from dcmweb import Client, UsageError
from dcmweb.cli import cli
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines
from dcmweb_devtools.orthanc import Orthanc
from dcmweb_devtools.tinypacs import TinyPacs

N_STUDIES = 120
PER_STUDY = 10
N_INSTANCES = N_STUDIES * PER_STUDY
PATIENT = "SEARCH-PAGING"
SOP_TAG, STUDY_TAG, SERIES_TAG = "00080018", "0020000D", "0020000E"


def dcmweb(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def uids(rows: list[dict], tag: str = SOP_TAG) -> list[str]:
    return [row[tag]["Value"][0] for row in rows]


def make_instances(directory: Path, studies: int, per_study: int, patient: str) -> list[Path]:
    """Small valid instances, fast: one pydicom-written template, UIDs patched in place.

    The placeholders have the same length as the UIDs they become, so every length field
    of the file stays right."""
    ds = pydicom.dcmread(corpus.pydicom_test_files_dir() / "CT_small.dcm")
    ds.Rows = ds.Columns = 8
    ds.PixelData = bytes(8 * 8 * 2)
    ds.PatientID = patient
    root = pydicom.uid.generate_uid()[:30] + "."
    # Fixed-width numbers without leading zeros (a UID component may not start with 0).
    names = {"study": root + "1.1000", "series": root + "2.1000", "sop": root + "3.100000"}
    ds.StudyInstanceUID, ds.SeriesInstanceUID = names["study"], names["series"]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = names["sop"]
    directory.mkdir(parents=True, exist_ok=True)
    template_path = directory / "template.dcm"
    ds.save_as(template_path, enforce_file_format=True)
    template = template_path.read_bytes()
    template_path.unlink()
    paths = []
    for i in range(studies * per_study):
        study = i % studies
        data = (template.replace(names["study"].encode(), f"{root}1.{1000 + study}".encode())
                .replace(names["series"].encode(), f"{root}2.{1000 + study}".encode())
                .replace(names["sop"].encode(), f"{root}3.{100000 + i}".encode()))
        path = directory / f"i{i:06d}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    tmp = tmp_path_factory.mktemp("search")
    files = make_instances(tmp / "files", N_STUDIES, PER_STUDY, PATIENT)
    with LocalServer(tmp / "store") as srv:
        with Client(srv.url) as client:
            results = client.store(files, batch_size=400)
        assert {r.status for r in results} == {"stored"}
        yield srv


@pytest.fixture
def srv(server: LocalServer) -> Iterator[LocalServer]:
    server.clear_requests()
    server.clear_faults()
    yield server
    server.no_match_status = 204
    server.search_keys = "google"


def qido_requests(srv: LocalServer) -> list[tuple[str, dict[str, str]]]:
    """(level path, query) of every search request, in order."""
    out = []
    for record in srv.requests:
        parts = urlsplit(record.path)
        if record.method == "GET" and "/dicomWeb/" in parts.path:
            level = parts.path.split("/dicomWeb/", 1)[1]
            out.append((level, dict(parse_qsl(parts.query))))
    return out


# -- paging past the caps ---------------------------------------------------------------------
def test_the_server_really_cuts_silently(srv: LocalServer) -> None:
    """The trap is real: without a limit the server returns 1,000 of 1,200 instances, and
    dicomweb-client (which sends no limit) believes it."""
    from dicomweb_client.api import DICOMwebClient

    rows = DICOMwebClient(srv.url).search_for_instances()
    assert len(rows) == 1000
    assert len(DICOMwebClient(srv.url).search_for_studies()) == 100


@pytest.mark.parametrize(("level", "count", "page"), [
    ("instances", N_INSTANCES, "2000"),
    ("studies", N_STUDIES, "2000"),
    ("series", N_STUDIES, "2000"),
])
def test_search_returns_every_row_past_the_cap(srv: LocalServer, level: str, count: int,
                                               page: str) -> None:
    result = dcmweb(srv.url, "search", level, "--format", "compact")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    tag = {"instances": SOP_TAG, "studies": STUDY_TAG, "series": SERIES_TAG}[level]
    assert len(rows) == count
    assert len(set(uids(rows, tag))) == count
    # Pages of 2,000 rows, not Google's 50,000 instances (two such pages held as Python
    # rows took 860 MB), then one more request that comes back empty.
    assert qido_requests(srv) == [
        (level, {"limit": page, "offset": "0"}),
        (level, {"limit": page, "offset": str(count)}),
    ]
    assert [r.status for r in srv.requests] == [200, 204]  # the empty page that ends the paging


def test_small_pages_are_followed_to_the_empty_page(srv: LocalServer) -> None:
    with Client(srv.url) as client:
        rows = client.search("instances", page_size=500)
    assert len(set(uids(rows))) == N_INSTANCES
    assert [q["offset"] for _, q in qido_requests(srv)] == ["0", "500", "1000", "1200"]
    assert {q["limit"] for _, q in qido_requests(srv)} == {"500"}


def test_paging_stops_on_204(srv: LocalServer) -> None:
    result = dcmweb(srv.url, "search", "studies", "--page-size", "50", "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == N_STUDIES
    assert [q["offset"] for _, q in qido_requests(srv)] == ["0", "50", "100", "120"]
    assert [r.status for r in srv.requests] == [200, 200, 200, 204]


def test_a_cut_page_is_retried_not_taken_as_the_end(srv: LocalServer) -> None:
    srv.inject_fault(503, path_contains="offset=1000")
    with Client(srv.url, backoff=0.01) as client:
        rows = client.search("instances", page_size=1000)
    assert len(set(uids(rows))) == N_INSTANCES
    assert [r.status for r in srv.requests] == [200, 503, 200, 204]


@pytest.mark.parametrize("fmt", ["pretty", "compact", "jsonl"])
def test_a_failed_later_page_leaves_the_rows_shown_and_no_closing_bracket(
        srv: LocalServer, fmt: str) -> None:
    """Deliberate: rows go out as they come, and the array is never closed over a failure,
    so a JSON parser fails on the output instead of taking part of the result for all
    of it; jsonl has the complete lines of the pages that came (the exit code says the
    rest is missing)."""
    srv.inject_fault(403, path_contains="offset=50")
    result = dcmweb(srv.url, "search", "studies", "--page-size", "50", "--format", fmt)
    assert result.exit_code == 3
    assert lines(result.stderr)[-2].startswith(
        "dcmweb: error: search studies failed: HTTP 403 Forbidden")
    assert lines(result.stderr)[-1] == ("dcmweb: error: search studies: the listing stopped "
                                        "at offset 50, after 50 rows; the rest were not listed")
    if fmt == "jsonl":
        assert len([json.loads(line) for line in result.stdout.splitlines()]) == 50
        return
    assert result.stdout.startswith("[") and not result.stdout.rstrip().endswith("]")
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout)
    assert len(json.loads(result.stdout + "]")) == 50  # the first page, whole


# -- limit and offset -------------------------------------------------------------------------
def test_user_limit_is_exactly_one_request(srv: LocalServer) -> None:
    result = dcmweb(srv.url, "search", "instances", f"PatientID={PATIENT}&limit=10")
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)) == 10
    assert qido_requests(srv) == [("instances", {"PatientID": PATIENT, "limit": "10"})]


@pytest.fixture
def capped(srv: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    """Google with a page cap of 50 studies instead of 5,000 (the server clamps a larger
    limit silently) that dcmweb knows, as it knows Google's: 120 studies are 3 pages."""
    from dcmweb import search
    from dcmweb.testing import qido

    monkeypatch.setitem(qido.MAX_LIMIT, qido.STUDY, 50)
    monkeypatch.setitem(search.PAGE_SIZES, "studies", 50)
    return srv


def test_a_limit_above_the_page_cap_is_fetched_in_pages(capped: LocalServer) -> None:
    """--limit 70 on a server that caps pages at 50 showed 50 rows, exit 0."""
    with Client(capped.url) as client:
        everything = uids(client.search("studies"), STUDY_TAG)
    capped.clear_requests()
    result = dcmweb(capped.url, "search", "studies", "--limit", "70", "--format", "uids")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == everything[:70]
    assert qido_requests(capped) == [("studies", {"limit": "50", "offset": "0"}),
                                     ("studies", {"limit": "20", "offset": "50"})]


def test_a_limit_above_the_page_cap_and_the_match_count_pages_to_the_end(
        capped: LocalServer) -> None:
    with Client(capped.url) as client:
        everything = uids(client.search("studies"), STUDY_TAG)
        capped.clear_requests()
        rows = client.search("studies", "offset=10", limit=500)
    assert uids(rows, STUDY_TAG) == everything[10:]
    assert qido_requests(capped) == [("studies", {"limit": "50", "offset": str(offset)})
                                     for offset in (10, 60, 110, 120)]


def test_a_limit_above_the_page_size_is_fetched_in_pages(srv: LocalServer,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """--page-size names a cap dcmweb does not know (a PACS that clamps at 50)."""
    from dcmweb.testing import qido

    monkeypatch.setitem(qido.MAX_LIMIT, qido.STUDY, 50)
    result = dcmweb(srv.url, "search", "studies", "limit=70", "--page-size", "50",
                    "--format", "uids")
    assert result.exit_code == 0, result.stderr
    assert len(set(result.stdout.splitlines())) == 70
    assert [q["limit"] for _, q in qido_requests(srv)] == ["50", "20"]


def test_limit_and_offset_as_key_value_words(srv: LocalServer) -> None:
    with Client(srv.url) as client:
        everything = uids(client.search("instances"))
    srv.clear_requests()
    result = dcmweb(srv.url, "search", "instances", "limit=7", "offset=1195")
    assert result.exit_code == 0, result.stderr
    assert uids(json.loads(result.stdout)) == everything[1195:]  # 5 left at that offset
    assert qido_requests(srv) == [("instances", {"limit": "7", "offset": "1195"})]


def test_offset_without_limit_pages_from_there(srv: LocalServer) -> None:
    with Client(srv.url) as client:
        everything = uids(client.search("instances"))
        srv.clear_requests()
        rows = client.search("instances", [("offset", "1100")])
    assert uids(rows) == everything[1100:]
    assert [q["offset"] for _, q in qido_requests(srv)] == ["1100", "1200"]


def test_wildcards_and_uid_lists_are_sent_unescaped(srv: LocalServer) -> None:
    srv.search_keys = "extended"  # Google documents no wildcards; this server then has them
    result = dcmweb(srv.url, "search", "studies", "PatientID=SEARCH-PAG*",
                    "StudyDate=19000101-20991231", "limit=2")
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)) == 2
    [record] = srv.requests
    assert "PatientID=SEARCH-PAG*&" in record.path


def test_query_string_with_the_path_left_out_searches_studies(srv: LocalServer) -> None:
    result = dcmweb(srv.url, "search", f"PatientID={PATIENT}&limit=3")
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3
    assert qido_requests(srv) == [("studies", {"PatientID": PATIENT, "limit": "3"})]


def test_invalid_limit_is_a_usage_error(srv: LocalServer) -> None:
    result = dcmweb(srv.url, "search", "instances", "limit=ten")
    assert result.exit_code == 2
    assert "limit must be a whole number" in result.stderr
    assert result.stdout == ""
    assert qido_requests(srv) == []


@pytest.mark.parametrize(("words", "message"), [
    (["limit=0"], "limit must be at least 1, not 0"),
    (["limit=-1"], "limit must be at least 1, not -1"),
    (["offset=-1"], "offset must be at least 0, not -1"),
    (["LIMIT=0"], "limit must be at least 1, not 0"),
    (["limit=5&limit=6"], "limit is given twice (give it once)"),
    (["offset=1", "--offset", "2"], "offset is given twice (give it once)"),
    (["limit= 5"], "limit must be a whole number, not ' 5'"),
    # Quoted as typed: decoded, the '+' is a space (' 3').
    (["limit=+3"], "limit must be a whole number, not '+3'"),
    (["PatientID=X&OFFSET=1%2B1"], "offset must be a whole number, not '1%2B1'"),
])
def test_limit_and_offset_words_are_checked_as_the_options_are(
        srv: LocalServer, words: list[str], message: str) -> None:
    """limit=0 showed nothing with exit 0; limit=-1 was sent (Orthanc's 500, retried)."""
    result = dcmweb(srv.url, "search", "studies", *words)
    assert result.exit_code == 2, result.stderr
    assert lines(result.stderr) == [f"dcmweb: error: {message}"]
    assert result.stdout == ""
    with Client(srv.url) as client, pytest.raises(UsageError) as raised:
        client.iter_search("studies", words[0], offset=2 if "--offset" in words else None)
    assert str(raised.value) == message
    assert qido_requests(srv) == []


# -- paths ------------------------------------------------------------------------------------
def test_scoped_paths(srv: LocalServer) -> None:
    with Client(srv.url) as client:
        study = client.search("studies", [("limit", "1")])[0]
        study_uid = study[STUDY_TAG]["Value"][0]
        series_uid = uids(client.search(f"studies/{study_uid}/series"), SERIES_TAG)
        assert len(series_uid) == 1
        by_study = client.search(f"studies/{study_uid}/instances")
        by_series = client.search(f"studies/{study_uid}/series/{series_uid[0]}/instances")
    assert len(by_study) == PER_STUDY
    assert sorted(uids(by_study)) == sorted(uids(by_series))
    assert {row[STUDY_TAG]["Value"][0] for row in by_series} == {study_uid}
    paths = {level for level, _ in qido_requests(srv)}
    assert f"studies/{study_uid}/series/{series_uid[0]}/instances" in paths


@pytest.mark.parametrize("path", [
    "patients", "studies/1.2/studies", "studies/../instances", "studies/1.2/series/3.4/series",
    "series/1.2/instances", "studies/1.2/series/3.4/instances/5.6",
])
def test_invalid_path_is_exit_2_without_a_request(srv: LocalServer, path: str) -> None:
    result = dcmweb(srv.url, "search", path)
    assert result.exit_code == 2
    assert lines(result.stderr)[0].startswith("dcmweb: error: invalid search path")
    assert result.stdout == ""
    assert srv.requests == []


def test_unknown_filter_key_shows_the_servers_400_message(srv: LocalServer) -> None:
    result = dcmweb(srv.url, "search", "instances", "NoSuchKey=1")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "HTTP 400" in result.stderr
    assert "unknown query parameter 'NoSuchKey'" in result.stderr  # the server's own words
    assert len(srv.requests) == 1  # 400 is never retried


# -- output -----------------------------------------------------------------------------------
def test_stdout_is_exactly_one_json_document(srv: LocalServer) -> None:
    result = dcmweb(srv.url, "search", "instances")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)  # nothing else on stdout, or this fails
    assert len(rows) == N_INSTANCES
    assert result.stdout.startswith("[\n  {") and result.stdout.endswith("\n]\n")


def test_formats_compact_and_jsonl(srv: LocalServer) -> None:
    compact = dcmweb(srv.url, "search", "studies", "--format", "compact")
    jsonl = dcmweb(srv.url, "search", "studies", "--format", "jsonl")
    pretty = dcmweb(srv.url, "search", "studies")
    assert compact.exit_code == jsonl.exit_code == pretty.exit_code == 0
    assert compact.stdout.count("\n") == 1
    lines = jsonl.stdout.splitlines()
    assert len(lines) == N_STUDIES
    assert [json.loads(line) for line in lines] == json.loads(compact.stdout)
    assert json.loads(pretty.stdout) == json.loads(compact.stdout)


@pytest.mark.parametrize(("fmt", "expected"), [
    ("pretty", "[]\n"), ("compact", "[]\n"), ("jsonl", ""),
])
def test_no_match_prints_an_empty_array(srv: LocalServer, fmt: str, expected: str) -> None:
    srv.no_match_status = 200
    result = dcmweb(srv.url, "search", "instances", "PatientID=nobody", "--format", fmt)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == expected


def test_no_match_as_204_prints_an_empty_array(srv: LocalServer) -> None:
    result = dcmweb(srv.url, "search", "studies", "PatientID=nobody")
    assert (result.exit_code, result.stdout) == (0, "[]\n")
    assert [r.status for r in srv.requests] == [204]


# -- a server that ignores offset -------------------------------------------------------------
def test_server_ignoring_offset_is_an_error_not_a_loop() -> None:
    rows = [{SOP_TAG: {"vr": "UI", "Value": [f"1.2.{i}"]}} for i in range(3)]

    def same_page(req: Request) -> None:
        req.json(200, rows, "application/dicom+json")

    with Hostile() as fake:
        fake.route("GET", "/instances", same_page)
        result = dcmweb(fake.url, "search", "instances", "--format", "jsonl")
        asked = fake.seen("GET", "/instances")
    assert result.exit_code == 1
    assert "ignores 'offset'" in result.stderr
    assert len(asked) == 2
    assert [r.params["offset"] for r in asked] == ["0", "3"]


def test_server_answering_an_object_is_an_error() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(200, {"rows": []}))
        result = dcmweb(fake.url, "search")
    assert result.exit_code == 1
    assert "expected a JSON array" in result.stderr
    assert result.stdout == ""


# -- real servers -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def few_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_instances(tmp_path_factory.mktemp("few"), 3, 4, "SEARCH-REAL")


def test_orthanc_search(orthanc: Orthanc, few_files: list[Path]) -> None:
    with Client(orthanc.url) as client:
        assert {r.status for r in client.store(few_files)} == {"stored"}
    everything = dcmweb(orthanc.url, "search", "instances", "PatientID=SEARCH-REAL")
    assert everything.exit_code == 0, everything.stderr
    assert len(json.loads(everything.stdout)) == 12
    studies = dcmweb(orthanc.url, "search", "PatientID=SEARCH-REAL&limit=2")
    assert len(json.loads(studies.stdout)) == 2
    study_uid = json.loads(studies.stdout)[0][STUDY_TAG]["Value"][0]
    scoped = dcmweb(orthanc.url, "search", f"studies/{study_uid}/instances", "--format", "jsonl")
    assert len(scoped.stdout.splitlines()) == 4
    # Wildcards reach Orthanc as wildcards (it ignores an escaped %2A or %3F).
    for pattern in ("SEARCH-RE*", "SEARCH?REAL", "*REAL"):
        wild = dcmweb(orthanc.url, "search", "instances", f"PatientID={pattern}")
        assert wild.exit_code == 0, wild.stderr
        assert len(json.loads(wild.stdout)) == 12, pattern
    none = dcmweb(orthanc.url, "search", "studies", "PatientID=nobody")  # Orthanc: 200 []
    assert (none.exit_code, none.stdout) == (0, "[]\n")


def shared_uid_files(directory: Path) -> list[Path]:
    """One SOP Instance UID in two studies, and one Study Instance UID under two patients:
    Orthanc keeps both pairs apart and lists four instances, four studies."""
    [template] = corpus.synthetic_files(directory / "template", 1, patient_id="TWIN")
    root = pydicom.uid.generate_uid()[:40]
    uids = [(f"{root}.1.1", f"{root}.2.1", f"{root}.3.1", "TWIN-A"),  # same SOP ...
            (f"{root}.1.2", f"{root}.2.1", f"{root}.3.1", "TWIN-B"),  # ... in two studies
            (f"{root}.1.3", f"{root}.2.3", f"{root}.3.3", "TWIN-C"),  # same study ...
            (f"{root}.1.3", f"{root}.2.4", f"{root}.3.4", "TWIN-D")]  # ... two patients
    paths = []
    for index, (study, series, sop, patient) in enumerate(uids):
        ds = pydicom.dcmread(template)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = study, series, patient
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        paths.append(directory / f"twin{index}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


@pytest.mark.parametrize("page_size", ["5000", "1"])
def test_rows_sharing_a_uid_are_all_shown(orthanc: Orthanc, tmp_path: Path,
                                          page_size: str) -> None:
    """Distinct rows that share the UID of the level searched are distinct rows: they
    used to be shown once, with a warning that they 'came back twice'."""
    with Client(orthanc.url) as client:
        assert {r.status for r in client.store(shared_uid_files(tmp_path))} == {"stored"}
    for level in ("instances", "studies"):
        result = dcmweb(orthanc.url, "search", level, "PatientID=TWIN-*", "--format", "jsonl",
                        "--page-size", page_size)
        assert result.exit_code == 0, result.stderr
        assert len(result.stdout.splitlines()) == 4, level
        assert result.stderr == ""
    dry = dcmweb(orthanc.url, "retrieve", "--dry-run", "--output", str(tmp_path / "out"))
    assert dry.exit_code == 0, dry.stderr
    assert len(dry.stdout.splitlines()) == 4
    # The whole store, study by study: the study listed under two patients is asked for
    # once (Orthanc cannot serve it: 404), not once per row.
    saved = dcmweb("-m", orthanc.url, "retrieve", "--output", str(tmp_path / "out"))
    assert saved.exit_code == 6, saved.stderr
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 2
    assert lines(saved.stderr)[-1] == "dcmweb: error: 1 item could not be retrieved"


def test_tinypacs_search(tinypacs: TinyPacs, few_files: list[Path]) -> None:
    with warnings.catch_warnings(), Client(tinypacs.url) as client:
        warnings.simplefilter("ignore")
        assert {r.status for r in client.store(few_files)} == {"stored"}
    studies = dcmweb(tinypacs.url, "search", "studies", "PatientID=SEARCH-REAL")
    assert studies.exit_code == 0, studies.stderr
    assert len(json.loads(studies.stdout)) == 3
    study_uid = json.loads(studies.stdout)[0][STUDY_TAG]["Value"][0]
    series = dcmweb(tinypacs.url, "search", f"studies/{study_uid}/series")
    [series_uid] = uids(json.loads(series.stdout), SERIES_TAG)
    scoped = dcmweb(tinypacs.url, "search", f"studies/{study_uid}/series/{series_uid}/instances")
    assert scoped.exit_code == 0, scoped.stderr
    assert len(json.loads(scoped.stdout)) == 4
    none = dcmweb(tinypacs.url, "search", "studies", "PatientID=nobody")  # tiny-pacs: 204
    assert (none.exit_code, none.stdout) == (0, "[]\n")
    missing = dcmweb(tinypacs.url, "search", "instances")  # no top-level /instances there
    assert missing.exit_code == 1  # not served (4 was "no such resource"): test_unserved.py
    assert missing.stdout == ""
