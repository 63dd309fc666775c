"""dcmweb search against answers of the wrong shape or size, and pages that go in circles."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request

from dcmweb import search
from dcmweb.cli import cli
from dcmweb.http import Http
from dcmweb.search import Searcher
from dcmweb_devtools.logs import lines

SOP_TAG, STUDY_TAG = "00080018", "0020000D"


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def row(uid: str, tag: str = SOP_TAG) -> dict:
    return {tag: {"vr": "UI", "Value": [uid]}}


@pytest.mark.parametrize(("payload", "shown"), [
    ([row("1.2.1"), "1.2.2"], "row 2 is a string"),
    ([row("1.2.1"), None], "row 2 is null"),
    ([[row("1.2.1")]], "row 1 is an array"),
    ({"rows": []}, "got an object"),
    ("studies", "got a string"),
    (42, "got a number"),
])
def test_rows_that_are_not_objects_are_a_server_error(payload: object, shown: str) -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(200, payload,
                                                            "application/dicom+json"))
        result = dcmweb(fake.url, "search")
    assert result.exit_code == 1
    assert lines(result.stderr)[-1] == \
        f"dcmweb: error: search studies: expected a JSON array of objects, but {shown}" \
        if "row" in shown else \
        f"dcmweb: error: search studies: expected a JSON array of objects, {shown}"
    assert "unexpected error" not in result.stderr
    assert result.stdout == ""


def test_a_row_that_is_not_an_object_in_a_whole_store_retrieve(tmp_path: Path) -> None:
    """It used to end as 'unexpected error: AttributeError ... report it'."""
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(200, ["1.2.3"],
                                                            "application/dicom+json"))
        result = dcmweb(fake.url, "retrieve", "--output", str(tmp_path))
    assert result.exit_code == 1
    assert lines(result.stderr)[-1] == "dcmweb: error: search studies: expected a JSON " \
        "array of objects, but row 1 is a string"
    assert list(tmp_path.iterdir()) == []


def test_deeply_nested_json_is_a_server_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.reply(200, deep, "application/dicom+json"))
        result = dcmweb(fake.url, "search")
    assert result.exit_code == 1
    assert lines(result.stderr)[-1] == \
        "dcmweb: error: search studies failed: the server's JSON answer is nested too deeply " \
        "(check HOST)"
    assert "RecursionError" not in result.stderr


def endless_json(req: Request) -> None:
    h = req.handler
    h.send_response(200)
    h.send_header("Content-Type", "application/dicom+json")
    h.send_header("Connection", "close")
    h.end_headers()
    block = (json.dumps(row("1.2.3")) + ",").encode() * 1000
    try:
        h.wfile.write(b"[")
        while True:
            h.wfile.write(block)
    except OSError:
        pass  # dcmweb stopped reading
    h.close_connection = True


def test_an_endless_answer_is_cut_at_the_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "ANSWER_LIMIT", 4 * 1024 * 1024)
    with Hostile() as fake:
        fake.route("GET", "/studies", endless_json)
        result = dcmweb(fake.url, "search")
    assert result.exit_code == 1
    assert lines(result.stderr)[-1] == "dcmweb: error: search studies failed: the " \
        "server's answer is larger than 4194304 bytes (the server sent more than any sensible " \
        "answer; check HOST)"


def test_pages_in_circles_end_with_an_error() -> None:
    """The server ignores offset but rotates its answer, so the first row differs on
    every page: only remembering every row seen stops it (it stops by itself after 50
    pages, so that a broken guard fails here instead of hanging)."""
    rows = [row(f"1.2.{i}") for i in range(5)]
    calls = []

    def rotating(req: Request) -> None:
        calls.append(req.params.get("offset"))
        start = len(calls) % len(rows)
        page = rows[start:start + 2] + rows[: max(0, start + 2 - len(rows))]
        req.json(200, page if len(calls) < 50 else [], "application/dicom+json")

    with Hostile() as fake:
        fake.route("GET", "/instances", rotating)
        result = dcmweb(fake.url, "search", "instances", "--format", "jsonl", "--page-size", "2")
    assert result.exit_code == 1, result.stderr
    assert "holds only rows that came before: the server ignores 'offset' or pages in " \
        "circles (add a limit)" in lines(result.stderr)[-1]
    printed = [json.loads(line)[SOP_TAG]["Value"][0] for line in result.stdout.splitlines()]
    assert sorted(printed) == sorted(set(printed))  # each row once
    assert len(calls) < 10


def test_a_row_shifted_onto_the_next_page_is_shown_once() -> None:
    """An instance stored while paging shifts every offset by one: the last row of a
    page comes back first on the next. Shown once, with a warning; not an error."""
    pages = {"0": [row("1.2.1"), row("1.2.2")], "2": [row("1.2.2"), row("1.2.3")],
             "4": [row("1.2.4")], "5": []}
    with Hostile() as fake:
        fake.route("GET", "/instances", lambda req: req.json(
            200, pages[req.params["offset"]], "application/dicom+json"))
        result = dcmweb(fake.url, "search", "instances", "--format", "jsonl", "--page-size", "2")
    assert result.exit_code == 0, result.stderr
    printed = [json.loads(line)[SOP_TAG]["Value"][0] for line in result.stdout.splitlines()]
    assert printed == ["1.2.1", "1.2.2", "1.2.3", "1.2.4"]
    assert "search instances: 1 row at offset 2 came back from an earlier page (shown " \
        "once): rows moved between pages" in result.stderr


@pytest.mark.parametrize(("answer", "said"), [
    (lambda req: req.reply(200, b"<html><title>Sign in</title></html>", "text/html"),
     'the server answered HTTP 200 with text/html (a web page titled "Sign in")'),
    (lambda req: req.reply(302, b"", headers={"Location": "https://sso.example/login"}),
     "HTTP 302 redirect to https://sso.example/login"),
    (lambda req: req.json(400, {"error": {"code": 400, "message": "offset is at most 5"}}),
     "HTTP 400 Bad Request: offset is at most 5 (the server lists this query only so far:"
     " narrow the query"),
], ids=["login page", "redirect", "400"])
def test_a_page_that_fails_after_rows_were_shown_says_the_rest_were_not(
        answer: Callable[[Request], None], said: str) -> None:
    """A session that expires while paging (a sign-in page or a redirect to one): the
    rows before it are on stdout, and the error said only what HOST must be, as if
    nothing had been listed. A 400 there is the server's limit (Google's offset cap): it
    ended exit 2, "fix the command line", of a command line that was right."""
    rows = [row(f"1.2.{n}") for n in range(10)]

    def pages(req: Request) -> None:
        offset = int(req.params["offset"])
        if offset >= 6:
            answer(req)
        else:
            req.json(200, rows[offset:offset + 3], "application/dicom+json")

    with Hostile() as fake:
        fake.route("GET", "/instances", pages)
        result = dcmweb(fake.url, "search", "instances", "--format", "uids", "--page-size", "3")
    assert result.exit_code == 1, result.stderr
    assert result.stdout.split() == [f"1.2.{n}" for n in range(6)]
    assert said in lines(result.stderr)[-2]
    assert lines(result.stderr)[-1] == ("dcmweb: error: search instances: the listing stopped "
                                        "at offset 6, after 6 rows; the rest were not listed")


def test_rows_a_server_pages_in_another_order_each_time_are_said_to_be_missing() -> None:
    """A server whose order is not the same from page to page (no stable sort) sends a
    row again where another belonged: that one is never shown. Before, the warning said
    only 'came back from an earlier page; shown once', and the run ended 0 as if the
    listing were whole."""
    rows = [row(f"1.2.{n}") for n in range(10)]
    order = {"0": [0, 1, 2], "3": [2, 4, 5], "6": [6, 7, 8], "9": [9], "10": []}  # 3 never
    with Hostile() as fake:
        fake.route("GET", "/instances", lambda req: req.json(
            200, [rows[n] for n in order[req.params["offset"]]], "application/dicom+json"))
        result = dcmweb(fake.url, "search", "instances", "--format", "uids", "--page-size", "3")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [f"1.2.{n}" for n in (0, 1, 2, 4, 5, 6, 7, 8, 9)]
    assert lines(result.stderr) == [
        "dcmweb: warning: search instances: 1 row at offset 3 came back from an earlier page"
        " (shown once): rows moved between pages (added while paging, or the server does"
        " not keep its order), so as many others may be missing; search again to be sure"]


@pytest.mark.parametrize("asked", [["--limit", "5"], ["limit=5"]])
def test_a_server_that_ignores_limit_shows_at_most_limit_rows(asked: list[str]) -> None:
    rows = [row(f"1.2.{n}") for n in range(1, 51)]
    with Hostile() as fake:
        fake.route("GET", "/instances", lambda req: req.json(200, rows,
                                                             "application/dicom+json"))
        result = dcmweb(fake.url, "search", "instances", *asked, "--format", "jsonl")
        assert fake.requests[0].params["limit"] == "5"
    assert result.exit_code == 0, result.stderr
    printed = [json.loads(line)[SOP_TAG]["Value"][0] for line in result.stdout.splitlines()]
    assert printed == ["1.2.1", "1.2.2", "1.2.3", "1.2.4", "1.2.5"]
    assert "dcmweb: warning: search instances: the server sent 50 rows, more than the " \
        "limit of 5; showing the first 5" in lines(result.stderr)


def test_a_server_that_ignores_limit_while_a_large_limit_is_paged() -> None:
    """A limit above the page size is fetched in pages; a server that sends every row
    for the first page is warned about, and at most the limit is shown."""
    rows = [row(f"1.2.{n}") for n in range(1, 51)]
    with Hostile() as fake:
        fake.route("GET", "/instances", lambda req: req.json(200, rows,
                                                             "application/dicom+json"))
        result = dcmweb(fake.url, "search", "instances", "--limit", "30", "--page-size", "10",
                        "--format", "jsonl")
        assert [(r.params["limit"], r.params["offset"]) for r in fake.requests] == [("10", "0")]
    assert result.exit_code == 0, result.stderr
    printed = [json.loads(line)[SOP_TAG]["Value"][0] for line in result.stdout.splitlines()]
    assert printed == [f"1.2.{n}" for n in range(1, 31)]
    assert lines(result.stderr) == ["dcmweb: warning: search instances: the server sent 50 "
                                    "rows, more than the limit of 10; showing the first 30"]


def test_a_listing_that_starts_downloads_asks_for_a_small_page_first(tmp_path: Path) -> None:
    """Rendering a series of 150 instances: the first 100 are listed (and their images
    asked for) before the rest of the listing, which a server takes as long per row to
    answer as the first; every instance is rendered once."""
    study, series = "1.2", "1.2.3"
    rows = [{**row(f"1.2.3.{i}"), "0020000E": {"vr": "UI", "Value": [series]}}
            for i in range(150)]
    listed: list[tuple[str, str]] = []

    def listing(req: Request) -> None:
        offset, limit = int(req.params["offset"]), int(req.params["limit"])
        listed.append((req.params["offset"], req.params["limit"]))
        req.json(200, rows[offset:offset + limit], "application/dicom+json")

    with Hostile() as fake:
        fake.route("GET", f"/studies/{study}/series/{series}/instances", listing)
        for index in range(150):
            fake.route("GET", f"/studies/{study}/series/{series}/instances/1.2.3.{index}/"
                       "rendered", lambda req: req.reply(200, b"\xff\xd8 a JPEG", "image/jpeg"))
        fake.route("GET", f"/studies/{study}/series/{series}/instances/1.2.3.0/metadata",
                   lambda req: req.json(200, [rows[0]], "application/dicom+json"))
        result = dcmweb("-m", fake.url, "retrieve", f"studies/{study}/series/{series}/rendered",
                        "--output", str(tmp_path))
        rendered = [r for r in fake.seen("GET") if r.path.endswith("/rendered")]
    assert result.exit_code == 0, result.stderr
    assert listed == [("0", "100"), ("100", "2000"), ("150", "2000")]
    assert len(rendered) == 150 and len({r.target for r in rendered}) == 150
    assert len(list(tmp_path.rglob("*.jpg"))) == 150


# -- odd values in rows ---------------------------------------------------------------------------
def serve(rows: list[dict], *args: str) -> Result:
    """dcmweb search ARGS against a server answering ROWS (then an empty page)."""
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(
            200, rows if req.params.get("offset", "0") == "0" else [],
            "application/dicom+json"))
        return dcmweb(fake.url, "search", *args)


def test_null_values_are_empty_not_none() -> None:
    """DICOM JSON writes an empty value among several as null: it used to print 'None'."""
    rows = [{STUDY_TAG: {"vr": "UI", "Value": ["1.2.1"]},
             "00100010": {"vr": "PN", "Value": [None, {"Alphabetic": "B^C"}]},
             "00080061": {"vr": "CS", "Value": [None, "CT"]},
             "00080020": {"vr": "DA", "Value": [None]}}]
    result = serve(rows, "--format", "csv", "--fields",
                   "StudyInstanceUID,PatientName,ModalitiesInStudy,StudyDate")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[1] == '1.2.1,"\\B, C",\\CT,'


def test_uids_leaves_out_rows_without_a_usable_uid() -> None:
    """A null, missing, multi-valued or line-breaking UID is never printed (it printed
    'None', or split one row into two lines for xargs): left out, counted, warned about."""
    rows = [row("1.2.1", STUDY_TAG), {STUDY_TAG: {"vr": "UI", "Value": [None]}},
            {"00100020": {"vr": "LO", "Value": ["NOUID"]}}, {STUDY_TAG: {"vr": "UI"}},
            row("1.2.3\n9.9.9", STUDY_TAG), row("1.2.4\r", STUDY_TAG),
            {STUDY_TAG: {"vr": "UI", "Value": ["1.2.5", "1.2.6"]}}, row("1.2.7", STUDY_TAG)]
    result = serve(rows, "--format", "uids")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "1.2.1\n1.2.7\n"
    assert lines(result.stderr) == [
        "dcmweb: warning: search: 6 rows without a usable StudyInstanceUID left out "
        "(first: [None])"]


@pytest.mark.parametrize(("fmt", "expected"), [
    ("csv", "PatientID\nA\\ud800B\n"), ("tsv", "PatientID\nA\\ud800B\n"),
    ("uids", "1.2.2\n"), ("jsonl", None)])
def test_a_lone_surrogate_is_escaped_not_a_crash(fmt: str, expected: str | None) -> None:
    """'\\ud800' is valid JSON but cannot be written as UTF-8: csv, tsv and uids ended
    with 'unexpected error: UnicodeEncodeError' after some rows."""
    rows = [{**row("1.2.1\ud800", STUDY_TAG), "00100020": {"vr": "LO", "Value": ["A\ud800B"]}},
            row("1.2.2", STUDY_TAG)]
    args = ["--fields", "PatientID"] if fmt in ("csv", "tsv") else []
    result = serve(rows[:1] if fmt != "uids" else rows, "--format", fmt, *args)
    assert result.exit_code == 0, result.stderr
    assert "unexpected error" not in result.stderr
    if expected is not None:
        assert result.stdout == expected
    else:
        assert json.loads(result.stdout)["00100020"]["Value"] == ["A\ud800B"]


@pytest.mark.parametrize(("number", "shown"), [
    ("NaN", "NaN, which is not JSON"), ("Infinity", "Infinity, which is not JSON"),
    ("-Infinity", "-Infinity, which is not JSON"),
    ("1e400", "the number 1e400, too large to be read")])
def test_numbers_json_cannot_carry_are_a_server_error(number: str, shown: str) -> None:
    """Python reads NaN, Infinity and 1e400 (as inf): jsonl wrote them back as non-JSON."""
    body = f'[{{"0020000D": {{"vr": "UI", "Value": ["1.2.1"]}}, ' \
           f'"00201208": {{"vr": "IS", "Value": [{number}]}}}}]'.encode()
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.reply(200, body, "application/dicom+json"))
        result = dcmweb(fake.url, "search", "--format", "jsonl")
    assert result.exit_code == 1
    assert lines(result.stderr)[-1] == \
        f"dcmweb: error: search studies failed: the answer holds {shown} (check HOST)"
    assert result.stdout == ""


def test_tsv_escapes_tabs_and_line_breaks_instead_of_quoting() -> None:
    """TSV quoted such values the CSV way: a row spread over two lines, `cut -f` broke."""
    rows = [{**row("1.2.1", STUDY_TAG),
             "00081030": {"vr": "LO", "Value": ['a\tb "c"\r\nd']},
             "00100020": {"vr": "LO", "Value": ["P1"]}}]
    result = serve(rows, "--format", "tsv", "--fields",
                   "StudyInstanceUID,StudyDescription,PatientID")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "StudyInstanceUID\tStudyDescription\tPatientID\n" \
                            '1.2.1\ta\\tb "c"\\r\\nd\tP1\n'


def test_an_empty_web_page_is_not_an_empty_result() -> None:
    """An empty body stands for no match, but not one that says it is a web page (old
    dcmweb printed [] and exit 0)."""
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.reply(200, b"", "text/html"))
        result = dcmweb(fake.url, "search")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "an empty text/html answer (a web page), not DICOMweb data" in result.stderr


def test_values_that_are_not_strings_are_shown_in_json_notation() -> None:
    """A table showed a value the server sent as an object or true as Python writes it
    ({'x': 1}, True)."""
    rows = [{**row("1.2.1", STUDY_TAG), "00080020": {"vr": "DA", "Value": [{"x": 1}]},
             "00081030": {"vr": "LO", "Value": [True, 2.5, "é"]}}]
    for fmt, separator in (("csv", ","), ("tsv", "\t")):
        result = serve(rows, "--format", fmt, "--fields",
                       "StudyInstanceUID,StudyDate,StudyDescription")
        assert result.exit_code == 0, result.stderr
        cells = ['"{""x"": 1}"', "true\\2.5\\é"] if fmt == "csv" else ['{"x": 1}', "true\\2.5\\é"]
        assert result.stdout.splitlines()[1] == separator.join(["1.2.1", *cells])


# -- the server's warnings ------------------------------------------------------------------------
CAPPED = ('299 dcmweb-probe: "The number of results exceeded the maximum supported by the '
          'server. Additional results can be requested."')
IGNORED_KEY = '299 probe "The following attributes are not supported as query parameters: ' \
              'PatientSex", 199 - "a \\"quoted\\" word"'


def test_the_server_s_warnings_are_shown_once_each() -> None:
    """PS3.18 has a server say in a Warning header that it cut the result or ignored a
    filter; dcmweb read the rows only, and a script acted on all of them."""
    pages = {"0": [row("1.2.1"), row("1.2.2")], "2": [row("1.2.3")], "3": []}

    def warning(req: Request) -> None:
        h = req.handler
        body = json.dumps(pages[req.params["offset"]]).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/dicom+json")
        h.send_header("Warning", CAPPED)
        h.send_header("Warning", IGNORED_KEY)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    with Hostile() as fake:
        fake.route("GET", "/instances", warning)
        result = dcmweb(fake.url, "search", "instances", "PatientSex=F", "--page-size", "2",
                        "--format", "uids")
        searcher = Searcher(Http(), fake.url)  # the library: the warnings are kept too
        assert len(list(searcher.iter_rows("instances", [("PatientSex", "F")], 2))) == 3
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "1.2.1\n1.2.2\n1.2.3\n"
    assert lines(result.stderr) == [
        "dcmweb: warning: search instances: the server warns: The number of results exceeded "
        "the maximum supported by the server. Additional results can be requested.",
        "dcmweb: warning: search instances: the server warns: The following attributes are "
        "not supported as query parameters: PatientSex",
        'dcmweb: warning: search instances: the server warns: a "quoted" word']
    assert searcher.warnings == [
        "The number of results exceeded the maximum supported by the server. Additional "
        "results can be requested.",
        "The following attributes are not supported as query parameters: PatientSex",
        'a "quoted" word']


# -- what a page costs ----------------------------------------------------------------------------
def test_a_page_far_larger_than_the_limit_is_read_without_building_every_row(
        tmp_path: Path) -> None:
    """--limit 5 against a server that ignores limit and sends 300,000 small rows: the
    page is read whole (it must be JSON) but only 5 rows are built. Built whole, the rows
    took 30 times the answer's size (a 751 KB gzip answer cost 4.4 GB). The client runs
    in a process of its own, which measures itself: in the test process the server's and
    other tests' threads allocate too."""
    body = b"[" + b",".join([b"{}"] * 300_000) + b"]"
    peak_file = tmp_path / "peak"
    # As test_retrieve's PEAK_SCRIPT, but Python's allocations (tracemalloc), not the RSS;
    # to a file, since stderr is checked line by line.
    measuring = f"""
import sys, tracemalloc
sys.argv[0] = "dcmweb"
from dcmweb import client, search  # the modules are not the page's cost
from dcmweb.cli import cli
tracemalloc.start()
try:
    cli.main(prog_name="dcmweb")  # dcmweb.cli.main would end the process without the finally
finally:
    with open({str(peak_file)!r}, "w") as out:
        out.write(str(tracemalloc.get_traced_memory()[1]))
"""
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.reply(200, body, "application/dicom+json"))
        result = subprocess.run([sys.executable, "-c", measuring, fake.url, "search", "--limit",
                                 "5", "--format", "jsonl"], capture_output=True, text=True,
                                timeout=120, check=False)
    peak = int(peak_file.read_text())
    assert result.returncode == 0, result.stderr
    assert result.stdout == "{}\n" * 5
    assert lines(result.stderr) == ["dcmweb: warning: search studies: the server sent 300000 "
                                    "rows, more than the limit of 5; showing the first 5"]
    assert peak < 6 * len(body), peak  # the body, a copy and its text; not 300,000 dicts


def test_a_page_with_more_rows_than_asked_is_read_page_by_page() -> None:
    """Without a limit, rows past the page size are asked for again from the next offset
    (not built: a page may hold millions); a server that then sends nothing although its
    first page held them is an error, not a short result with exit 0."""
    rows = [row(f"1.2.{n}") for n in range(1, 8)]
    honest = {"0": rows, "3": rows[3:], "6": rows[6:], "7": []}
    first_only = {"0": rows, "3": []}
    with Hostile() as fake:
        fake.route("GET", "/instances", lambda req: req.json(
            200, honest[req.params["offset"]], "application/dicom+json"))
        paged = dcmweb(fake.url, "search", "instances", "--page-size", "3", "--format", "uids")
    with Hostile() as fake:
        fake.route("GET", "/instances", lambda req: req.json(
            200, first_only[req.params["offset"]], "application/dicom+json"))
        cut = dcmweb(fake.url, "search", "instances", "--page-size", "3", "--format", "uids")
    assert paged.exit_code == 0, paged.stderr
    assert paged.stdout == "".join(f"1.2.{n}\n" for n in range(1, 8))
    assert lines(paged.stderr) == [
        "dcmweb: warning: search instances: the server sent 7 rows, more than the limit of 3; "
        "the rows after them are asked for again, page by page"]
    assert cut.exit_code == 1
    assert cut.stdout == "1.2.1\n1.2.2\n1.2.3\n"
    assert lines(cut.stderr)[-1] == (
        "dcmweb: error: search instances: the page at offset 3 is empty, but an earlier page "
        "held rows up to offset 7: the server ignores 'limit', and sends the rest on the "
        "first page only (give --page-size 7 to read that page whole)")


def test_an_ignored_accession_number_is_not_shown_in_the_warning() -> None:
    """Was: "the server ignored the filter AccessionNumber=A20261202-0042" at default
    verbosity: an accession number identifies a patient's exam."""
    rows = [{"0020000D": {"vr": "UI", "Value": ["1.2.3"]},
             "00080050": {"vr": "SH", "Value": ["OTHER"]}}]
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda r: r.json(200, rows, "application/dicom+json"))
        result = CliRunner().invoke(cli, [fake.url, "search", "studies",
                                          "AccessionNumber=A20261202-0042", "limit=10"])
    assert result.exit_code == 0, result.stderr
    assert "A20261202" not in result.stderr
    assert "the server ignored the filter AccessionNumber=***: 1 row does not match it" \
        in result.stderr
