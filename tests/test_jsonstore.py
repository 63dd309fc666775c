"""store --metadata FILE.json --jpeg IMAGE.jpg: the exact request, the server's truth
(answer, or a search after a lost answer), generated UIDs, and Orthanc's refusal."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request, status
from PIL import Image

from dcmweb import Client, UsageError
from dcmweb.cli import cli
from dcmweb.jsonstore import JsonInstance
from dcmweb.testing import LocalServer
from dcmweb_devtools.docexamples import run_example
from dcmweb_devtools.orthanc import Orthanc

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
STUDY, SERIES, SOP = "1.2.3", "1.2.3.4", "1.2.3.4.5"


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buffer, format="JPEG")
    return buffer.getvalue()


def sop_of(name: str) -> str:
    return f"{SOP}.{ord(name)}"


def write_pair(folder: Path, name: str, uids: bool = True) -> tuple[Path, Path]:
    metadata = {
        "00080016": {"vr": "UI", "Value": [SECONDARY_CAPTURE]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]},
        "00280010": {"vr": "US", "Value": [8]},
        "00280011": {"vr": "US", "Value": [8]},
    }
    if uids:
        metadata.update({"0020000D": {"vr": "UI", "Value": [STUDY]},
                         "0020000E": {"vr": "UI", "Value": [SERIES]},
                         "00080018": {"vr": "UI", "Value": [sop_of(name)]}})
    json_path, jpeg_path = folder / f"{name}.json", folder / f"{name}.jpg"
    json_path.write_text(json.dumps(metadata))
    jpeg_path.write_bytes(jpeg_bytes())
    return json_path, jpeg_path


def stow_answer(sop: str) -> bytes:
    return json.dumps({"00081199": {"vr": "SQ", "Value": [{
        "00081150": {"vr": "UI", "Value": [SECONDARY_CAPTURE]},
        "00081155": {"vr": "UI", "Value": [sop]},
        "00081190": {"vr": "UR", "Value": [f"http://x/studies/{STUDY}/instances/{sop}"]},
    }]}}).encode()


def sop_in(body: bytes) -> str:
    match = re.search(rb'"00080018":\{"vr":"UI","Value":\["([0-9.]+)"\]', body)
    assert match
    return match.group(1).decode()


def test_the_request_is_google_s_json_plus_jpeg_form(tmp_path: Path) -> None:
    json_path, jpeg_path = write_pair(tmp_path, "a")
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.reply(
            200, stow_answer(sop_in(req.seen.body)), "application/dicom+json"))
        result = dcmweb(fake.url, "store", "--metadata", str(json_path), "--jpeg", str(jpeg_path))
        [seen] = fake.requests
    assert result.exit_code == 0, result.stderr
    url = f"http://x/studies/{STUDY}/instances/{sop_of('a')}"
    assert f"{json_path} uploaded as {url}" in result.stderr
    content_type = seen.headers["Content-Type"]
    boundary = content_type.rsplit("boundary=", 1)[1]
    assert content_type == ('multipart/related; type="application/dicom+json"; '
                            f"boundary={boundary}")
    assert seen.headers["Accept"] == "application/dicom+json"
    head, jpeg_part = seen.body.split(f"\r\n--{boundary}\r\n".encode())
    assert head.startswith(f"--{boundary}\r\nContent-Type: application/dicom+json\r\n\r\n"
                           .encode())
    [dataset] = json.loads(head.split(b"\r\n\r\n", 1)[1])
    assert dataset["7FE00010"] == {"vr": "OB", "BulkDataURI": "jpeg-image"}  # JSON part first
    assert dataset["00100010"]["Value"] == [{"Alphabetic": "DOE^JANE"}]
    headers, image = jpeg_part.split(b"\r\n\r\n", 1)
    assert headers == (b"Content-Type: image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50\r\n"
                       b"Content-Location: jpeg-image")
    assert image == jpeg_path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()


def test_several_pairs_and_generated_uids(tmp_path: Path) -> None:
    pairs = [write_pair(tmp_path, name, uids=False) for name in ("a", "b")]
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.reply(
            200, stow_answer(sop_in(req.seen.body)), "application/dicom+json"))
        args = [a for j, p in pairs for a in ("--metadata", str(j), "--jpeg", str(p))]
        result = dcmweb(fake.url, "store", "--generate-uids", *args, "--report",
                        str(tmp_path / "report.jsonl"))
        bodies = [r.body for r in fake.requests]
    assert result.exit_code == 0, result.stderr
    assert len(bodies) == 2
    reports = [json.loads(line) for line in (tmp_path / "report.jsonl").read_text().splitlines()]
    for body, report in zip(bodies, reports, strict=True):
        assert report["status"] == "stored" and report["sop_instance_uid"] == sop_in(body)
        assert re.fullmatch(r"generated StudyInstanceUID=2\.25\.\d+, SeriesInstanceUID="
                            r"2\.25\.\d+, SOPInstanceUID=2\.25\.\d+", report["message"])
        assert f"SOPInstanceUID={sop_in(body)}" in result.stderr  # shown to the user


def test_missing_uids_without_generate_is_a_usage_error(tmp_path: Path) -> None:
    json_path, jpeg_path = write_pair(tmp_path, "a", uids=False)
    with Hostile() as fake:
        result = dcmweb(fake.url, "store", "--metadata", str(json_path), "--jpeg", str(jpeg_path))
        assert fake.requests == []
    assert result.exit_code == 2
    assert "--generate-uids" in result.stderr
    # From Python, the hint names the keyword (old dcmweb: the flag).
    with Hostile() as fake, Client(fake.url) as client, pytest.raises(UsageError) as refused:
        client.store_json((json_path, jpeg_path))
    assert refused.value.hint == "add it, or pass generate_uids=True"


def test_an_answer_that_names_nothing_is_checked_by_search(tmp_path: Path) -> None:
    """A 200 that names nothing is not proof; a search that finds nothing makes it a failure."""
    json_path, jpeg_path = write_pair(tmp_path, "a")
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.reply(200, b"", "application/dicom+json"))
        fake.route("GET", f"/studies/{STUDY}/series/{SERIES}/instances",
                   lambda req: req.reply(200, b"[]", "application/dicom+json"))
        result = dcmweb(fake.url, "store", "--metadata", str(json_path), "--jpeg", str(jpeg_path))
        assert [r.method for r in fake.requests] == ["POST", "GET"]
    assert result.exit_code == 1
    assert "not on the server" in result.stderr


def test_a_lost_answer_found_by_search_is_stored(tmp_path: Path) -> None:
    json_path, jpeg_path = write_pair(tmp_path, "a")
    row = {"00080018": {"vr": "UI", "Value": [sop_of("a")]}}
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.reply(502, b"bad gateway", "text/plain"))
        fake.route("GET", f"/studies/{STUDY}/series/{SERIES}/instances",
                   lambda req: req.json(200, [row], "application/dicom+json"))
        fake.route("GET", f"/studies/{STUDY}/series/{SERIES}/instances/{sop_of('a')}",
                   status(200))  # served: not deleted moments ago
        with Client(fake.url) as client:
            [result] = client.store_json([(json_path, jpeg_path)])
    assert (result.status, result.confirmed_by) == ("stored", "search")


def test_the_report_row_has_the_instance_s_uids_and_http_status(local_server: LocalServer,
                                                                 tmp_path: Path) -> None:
    json_path, jpeg_path = write_pair(tmp_path, "a")
    report = tmp_path / "report.jsonl"
    result = dcmweb(local_server.url, "store", "--metadata", str(json_path), "--jpeg",
                    str(jpeg_path), "--report", str(report))
    assert result.exit_code == 0, result.stderr
    [row] = map(json.loads, report.read_text().splitlines())
    # Old dcmweb left the study, series and HTTP status empty.
    assert (row["study_instance_uid"], row["series_instance_uid"], row["sop_instance_uid"],
            row["http_status"]) == (STUDY, SERIES, sop_of("a"), 200)


def test_an_answer_cut_half_way_is_found_by_search(local_server: LocalServer,
                                                   tmp_path: Path) -> None:
    json_path, jpeg_path = write_pair(tmp_path, "a")
    local_server.inject_fault(cut=True, method="POST")  # stored, then half an answer
    report = tmp_path / "report.jsonl"
    result = dcmweb(local_server.url, "store", "--metadata", str(json_path), "--jpeg",
                    str(jpeg_path), "--report", str(report))
    # Old dcmweb: "unexpected error: TransportError", exit 1, an empty report.
    assert result.exit_code == 0, result.stderr
    [row] = map(json.loads, report.read_text().splitlines())
    assert (row["status"], row["confirmed_by"]) == ("stored", "search")
    # The search, and a retrieve of what it found (searches lag behind deletes).
    assert [r.method for r in local_server.requests] == ["POST", "GET", "GET"]


def test_a_pair_the_request_deadline_cuts_is_unconfirmed_and_not_sent_again(
        local_server: LocalServer, tmp_path: Path) -> None:
    """As for files: the server stores after 3 s, the request deadline (1 s) cut the wait.
    Old dcmweb sent the pair again (and again), named the read timeout and stopped the run
    as "unavailable" (exit 5)."""
    json_path, jpeg_path = write_pair(tmp_path, "a")
    local_server.inject_fault(method="POST", delay=3, count=10)  # then it stores
    report = tmp_path / "report.jsonl"
    result = dcmweb("--request-deadline", "1", local_server.url, "store", "--metadata",
                    str(json_path), "--jpeg", str(jpeg_path), "--report", str(report))
    assert result.exit_code == 1, result.stderr
    [row] = map(json.loads, report.read_text().splitlines())
    assert (row["status"], row["message"]) == ("unconfirmed", (
        f"store {json_path}: no answer within the request deadline (1 s) after the request "
        "was sent; 0 of 1 found on the server by search; not sent again: the server may "
        "still store it (raise --request-deadline for a server this slow)"))
    for _ in range(50):  # the server finishes the store it was at
        if local_server.store.query("SELECT sop_uid FROM instances"):
            break
        time.sleep(0.1)
    assert [r.method for r in local_server.requests].count("POST") == 1
    assert "unavailable" not in result.stderr


@pytest.mark.parametrize("done", [True, False], ids=["stored-then-303", "303-only"])
def test_an_answer_by_a_redirect_is_settled_by_search_and_stops_the_run(
        local_server: LocalServer, tmp_path: Path, done: bool) -> None:
    """Old dcmweb: no row for the pair ("not attempted") and "nothing was done", though a
    303 may answer a POST carried out."""
    pairs = [write_pair(tmp_path, name) for name in "ab"]
    local_server.inject_fault(303, after=done, method="POST")
    report = tmp_path / "report.jsonl"
    args = [a for j, p in pairs for a in ("--metadata", str(j), "--jpeg", str(p))]
    result = dcmweb(local_server.url, "store", "--report", str(report), *args)
    assert result.exit_code == 1, result.stderr
    [row] = map(json.loads, report.read_text().splitlines())
    assert (row["status"], row["http_status"], row["confirmed_by"]) == (
        ("stored", 303, "search") if done else ("failed", 303, None))
    assert row["message"].startswith(f"HTTP 303 redirect to {local_server.url}/studies: a POST"
                                     " is never redirected")
    # The search (and, when it finds the pair, a retrieve of it); b: not attempted.
    assert [r.method for r in local_server.requests] == ["POST", "GET"] + ["GET"] * done
    assert "1 not attempted" in result.stderr


def test_refusal_names_the_reason(tmp_path: Path) -> None:
    json_path, jpeg_path = write_pair(tmp_path, "a")
    failed = {"00081198": {"vr": "SQ", "Value": [{
        "00081155": {"vr": "UI", "Value": [sop_of("a")]},
        "00081197": {"vr": "US", "Value": [0xA900]}}]}}
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.json(409, failed,
                                                              "application/dicom+json"))
        result = dcmweb(fake.url, "store", "--metadata", str(json_path), "--jpeg", str(jpeg_path))
    assert result.exit_code == 1
    assert "0xA900" in result.stderr


def test_orthanc_refuses_json_stow_with_415(orthanc: Orthanc, tmp_path: Path) -> None:
    json_path, jpeg_path = write_pair(tmp_path, "a")
    result = dcmweb(orthanc.url, "store", "--metadata", str(json_path), "--jpeg", str(jpeg_path))
    assert result.exit_code == 1
    assert "HTTP 415" in result.stderr
    assert orthanc.instance_count() == 0


@pytest.mark.parametrize("args", [
    ["--metadata", "{json}"],  # no --jpeg
    ["--metadata", "{json}", "--jpeg", "{jpeg}", "some.dcm"],
    ["--generate-uids", "some.dcm"],
    ["--metadata", "{jpeg}", "--jpeg", "{jpeg}"],  # not JSON
    ["--metadata", "{json}", "--jpeg", "{json}"],  # not a JPEG
    [],
])
def test_usage_errors(args: list[str], tmp_path: Path) -> None:
    json_path, jpeg_path = write_pair(tmp_path, "a")
    words = [a.format(json=json_path, jpeg=jpeg_path) for a in args]
    with Hostile() as fake:
        result = dcmweb(fake.url, "store", *words)
        assert fake.requests == []
    assert result.exit_code == 2, result.stderr


def test_docs_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    json_path, jpeg_path = write_pair(tmp_path, "a", uids=False)
    json_path.rename("photo.json")
    jpeg_path.rename("photo.jpg")
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.reply(
            200, stow_answer(sop_in(req.seen.body)), "application/dicom+json"))
        result = run_example("dcmweb HOST store --metadata photo.json --jpeg photo.jpg "
                             "--generate-uids", fake.url)
    assert result.exit_code == 0, result.stderr
    assert "Transferred" in result.stderr and "in 1 file\n" in result.stderr


def test_one_pair_may_be_given_alone(local_server: LocalServer, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """store_json(("a.json", "a.jpg")): old dcmweb took each name for a pair, and read
    the files "a" and "."."""
    monkeypatch.chdir(tmp_path)
    write_pair(tmp_path, "a")
    with Client(local_server.url) as client:
        [result] = client.store_json(("a.json", "a.jpg"))
        assert (result.status, result.sop_instance_uid) == ("stored", sop_of("a"))
        with pytest.raises(UsageError, match=r"not a \(metadata, jpeg\) pair: 'a\.json'"):
            client.store_json(["a.json", "a.jpg", "b.json"])  # type: ignore[list-item]
    assert [r.method for r in local_server.requests] == ["POST"]


def test_a_bad_pair_among_good_ones_is_refused_before_anything_is_sent(
        local_server: LocalServer, tmp_path: Path) -> None:
    """Old dcmweb stored p1, then raised on the bad JSON: the caller got no result for
    p1, p3 was never tried, and the CLI said '3 not attempted'."""
    first, last = write_pair(tmp_path, "a"), write_pair(tmp_path, "c")
    bad = (tmp_path / "bad.json", last[1])
    bad[0].write_text("{not json")
    report = tmp_path / "report.jsonl"
    pairs = [first, bad, last]
    args = [a for j, p in pairs for a in ("--metadata", str(j), "--jpeg", str(p))]
    result = dcmweb(local_server.url, "store", "--report", str(report), *args)
    assert result.exit_code == 2, result.stderr
    assert f"dcmweb: error: cannot read {bad[0]} / {bad[1]}: " in result.stderr
    assert "Transferred" not in result.stderr and not report.exists()
    with Client(local_server.url) as client:
        with pytest.raises(UsageError, match=r"cannot read .*bad\.json"):
            client.store_json(pairs)
        assert local_server.requests == []
        # Lazily, each pair when its turn comes: the bad one fails on its own.
        lazy = client.iter_store_json(JsonInstance(*pair) for pair in pairs)
        assert [(r.path.name, r.status) for r in lazy] == [
            ("a.json", "stored"), ("bad.json", "failed"), ("c.json", "stored")]


def test_a_pair_sent_when_the_run_gives_up_is_unconfirmed(local_server: LocalServer,
                                                         tmp_path: Path) -> None:
    """Stored, its answer lost, then no search can run until the outage limit. Old
    dcmweb: "2 not attempted", no report row, and the server held the first pair."""
    pairs = [write_pair(tmp_path, name) for name in "ab"]
    local_server.inject_fault(after=True, method="POST")
    local_server.inject_fault(502, count=10**6, method="GET")
    report = tmp_path / "report.jsonl"
    args = [a for j, p in pairs for a in ("--metadata", str(j), "--jpeg", str(p))]
    result = dcmweb("--outage-limit", "1", local_server.url, "store", "--report", str(report),
                    *args)
    assert result.exit_code == 5, result.stderr
    assert re.search(r"Transferred 0 B in 0 files; 1 unconfirmed \(sent, no answer: the "
                     r"server may hold it\), 1 not attempted, server unavailable", result.stderr)
    [row] = [json.loads(line) for line in report.read_text().splitlines()]
    assert (row["path"], row["status"], row["sop_instance_uid"]) == (
        str(pairs[0][0]), "unconfirmed", sop_of("a"))
    assert row["message"] == (f"store {pairs[0][0]}: connection dropped after the request was "
                              "sent; the run stopped before the server's answer or a search "
                              "confirmed it")
    assert [r["sop_uid"] for r in local_server.store.query("SELECT sop_uid FROM instances")] \
        == [sop_of("a")]


@pytest.mark.parametrize("after", [True, False], ids=["stored-then-524", "524-only"])
def test_a_pair_answered_524_is_settled_by_one_search_and_the_run_goes_on(
        local_server: LocalServer, tmp_path: Path, after: bool) -> None:
    """As for files: Cloudflare's 524 (the server took over 100 s), which dcmweb does not
    retry. Old dcmweb called the pair unconfirmed without asking, though the server held
    it, and stopped the run: the next pair "not attempted"."""
    pairs = [write_pair(tmp_path, name) for name in "ab"]
    local_server.inject_fault(524, method="POST", after=after)  # the first pair's
    report = tmp_path / "report.jsonl"
    args = [a for j, p in pairs for a in ("--metadata", str(j), "--jpeg", str(p))]
    result = dcmweb(local_server.url, "store", "--report", str(report), *args)
    rows = {row["path"]: row for row in map(json.loads, report.read_text().splitlines())}
    held = {r["sop_uid"] for r in local_server.store.query("SELECT sop_uid FROM instances")}
    assert held == {sop_of("a"), sop_of("b")} if after else {sop_of("b")}
    first = rows[str(pairs[0][0])]
    assert (first["status"], first["http_status"], first["confirmed_by"]) == (
        ("stored", 524, "search") if after else ("unconfirmed", 524, None))
    assert first["message"] == ("HTTP 524: injected fault; found on the server by search"
                                if after else
                                "HTTP 524: injected fault; 0 of 1 found on the server by "
                                "search; not sent again: the server may still store it")
    assert rows[str(pairs[1][0])]["status"] == "stored"
    assert [r.method for r in local_server.requests].count("POST") == 2
    assert result.exit_code == (0 if after else 6), result.stderr


def test_iter_store_json_takes_the_pairs_store_json_takes(local_server: LocalServer,
                                                          tmp_path: Path) -> None:
    """Old dcmweb: AttributeError ('tuple' object has no attribute 'metadata') for the
    (json, jpeg) pairs the docs show; only its internal JsonInstance worked."""
    pairs = [write_pair(tmp_path, name, uids=False) for name in "ab"]
    bad = (tmp_path / "bad.json", pairs[0][1])
    bad[0].write_text("{not json")
    read: list[str] = []

    def lazily() -> Iterator[tuple[Path, Path]]:
        for pair in (pairs[0], bad, pairs[1]):
            read.append(pair[0].name)
            yield pair

    with Client(local_server.url) as client:
        results = client.iter_store_json(lazily(), generate_uids=True)
        assert read == []  # nothing is read before the caller asks for a result
        assert next(results).status == "stored" and read == ["a.json"]
        assert [(r.path.name, r.status) for r in results] == [
            ("bad.json", "failed"), ("b.json", "stored")]
        [alone] = client.iter_store_json((str(pairs[0][0]), str(pairs[0][1])),
                                         generate_uids=True)
        assert alone.status == "stored"
        with pytest.raises(UsageError, match=r"not a \(metadata, jpeg\) pair: 'a\.json'"):
            list(client.iter_store_json(["a.json", "a.jpg", "b.json"]))  # type: ignore[list-item]


def test_a_run_stopped_half_way_counts_only_the_rest_as_not_attempted(tmp_path: Path) -> None:
    pairs = [write_pair(tmp_path, name) for name in "abc"]
    answers = iter([200])

    def stow(req: Request) -> None:
        if next(answers, 401) == 200:
            req.reply(200, stow_answer(sop_in(req.seen.body)), "application/dicom+json")
        else:
            req.reply(401, b"who are you?", "text/plain")

    with Hostile() as fake:
        fake.route("POST", "/studies", stow)
        args = [a for j, p in pairs for a in ("--metadata", str(j), "--jpeg", str(p))]
        result = dcmweb(fake.url, "store", *args)
    assert result.exit_code == 3, result.stderr
    # Old dcmweb: "Transferred 1.1 kB in 1 file; 3 not attempted" for three pairs; then
    # "2 not attempted", the pair sent and refused (401) among them.
    assert re.search(r"Transferred \S+ \S+ in 1 file; 1 failed, 1 not attempted\n",
                     result.stderr)
    assert f"dcmweb: error: {pairs[1][0]} failed: HTTP 401 Unauthorized: who are you?" \
        in result.stderr


def test_a_pair_sent_to_no_store_is_a_failed_row_with_the_404(local_server: LocalServer,
                                                             tmp_path: Path) -> None:
    """A mistyped store name: old dcmweb wrote no row for the pair it sent."""
    pairs = [write_pair(tmp_path, name) for name in "ab"]
    report = tmp_path / "r.jsonl"
    args = [a for j, p in pairs for a in ("--metadata", str(j), "--jpeg", str(p))]
    url = local_server.url.replace("/dicomStores/store/", "/dicomStores/nostore/")
    result = dcmweb(url, "store", *args, "--report", str(report))
    assert result.exit_code == 4, result.stderr
    assert "Transferred 0 B in 0 files; 1 failed, 1 not attempted\n" in result.stderr
    (row,) = map(json.loads, report.read_text().splitlines())
    assert (row["path"], row["status"], row["http_status"]) == (str(pairs[0][0]), "failed", 404)


@pytest.mark.parametrize("option", [["--journal", "{journal}"], ["--skip-existing"]])
def test_journal_and_skip_existing_are_refused_with_pairs(local_server: LocalServer,
                                                          tmp_path: Path,
                                                          option: list[str]) -> None:
    """They decide files by path or by the UIDs read from them: pairs (new UIDs each run
    with --generate-uids) would be stored again on every run."""
    json_path, jpeg_path = write_pair(tmp_path, "a", uids=False)
    words = [word.format(journal=tmp_path / "j.db") for word in option]
    result = dcmweb(local_server.url, "store", "--metadata", str(json_path), "--jpeg",
                    str(jpeg_path), "--generate-uids", *words)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.rstrip().endswith(
        f"dcmweb: error: {option[0]} works on DICOM files, not on JSON + JPEG pairs "
        "(a rerun would store the pairs again; store them without it)")
    assert local_server.requests == []


@pytest.mark.parametrize(("fault", "posts"), [
    ({"drop": True}, 2), ({"status": 500}, 2), ({"status": 502}, 2),
    ({"status": 500, "count": 3}, 3),
], ids=["dropped", "500", "502", "500-every-time"])
def test_a_pair_whose_answer_is_lost_is_searched_then_resent_with_the_same_uids(
        local_server: LocalServer, tmp_path: Path, fault: dict, posts: int) -> None:
    """As for DICOM files. Was: one dropped connection or one 500 failed the pair at once
    (`not on the server`, exit 1), and a rerun generated other UIDs."""
    json_path, jpeg_path = write_pair(tmp_path, "a", uids=False)
    local_server.inject_fault(method="POST", **fault)
    report = tmp_path / "report.jsonl"
    result = dcmweb(local_server.url, "store", "--metadata", str(json_path), "--jpeg",
                    str(jpeg_path), "--generate-uids", "--report", str(report))
    [row] = map(json.loads, report.read_text().splitlines())
    held = [r["sop_uid"] for r in local_server.store.query("SELECT sop_uid FROM instances")]
    posted = [r for r in local_server.requests if r.method == "POST"]
    assert len(posted) == posts
    assert len({r.body_sha256 for r in posted}) == 1  # the same body: the same generated UIDs
    if posts == 3:  # a 500 is tried twice more, then the pair fails
        assert result.exit_code == 1, result.stderr
        assert (row["status"], held) == ("failed", [])
        assert row["message"].startswith(
            "HTTP 500: injected fault; not on the server (after 3 attempts)")
    else:
        assert result.exit_code == 0, result.stderr
        assert (row["status"], row["confirmed_by"]) == ("stored", "answer")
        assert held == [row["sop_instance_uid"]]
        assert "generated StudyInstanceUID=" in row["message"]  # kept after the resend


def test_a_pair_whose_check_search_fails_is_unconfirmed_and_the_run_goes_on(
        local_server: LocalServer, tmp_path: Path) -> None:
    """As for files: the search that should settle a lost answer failed (500s), so the
    pair is undecided, alone. Was: the run stopped with the search's error (exit 1),
    the pairs after it never sent."""
    pairs = [write_pair(tmp_path, name) for name in ("a", "b", "c")]
    local_server.inject_fault(after=True, method="POST", body_contains=sop_of("b"))
    local_server.inject_fault(500, count=10**6, method="GET")
    report = tmp_path / "report.jsonl"
    result = dcmweb("--retries", "2", local_server.url, "store", "--report", str(report),
                    *[arg for json_path, jpeg_path in pairs
                      for arg in ("--metadata", str(json_path), "--jpeg", str(jpeg_path))])
    assert result.exit_code == 6, result.stderr
    statuses = {row["path"]: row["status"] for row in map(json.loads,
                                                          report.read_text().splitlines())}
    assert statuses == {str(pairs[0][0]): "stored", str(pairs[1][0]): "unconfirmed",
                        str(pairs[2][0]): "stored"}
    held = {r["sop_uid"] for r in local_server.store.query("SELECT sop_uid FROM instances")}
    assert held == {sop_of("a"), sop_of("b"), sop_of("c")}  # b was stored: its answer lost


@pytest.mark.parametrize(("option", "named", "hint"), [
    (["--on-conflict", "overwrite"], "--on-conflict overwrite", "it would delete the "
     "server's instance without storing the pair again; delete it first (dcmweb HOST "
     "delete studies/S/series/R/instances/I), then store the pair"),
    (["--study", STUDY], "--study", "a pair goes to the study its JSON names (0020000D)")],
    ids=["overwrite", "study"])
def test_overwrite_and_study_are_refused_with_pairs(local_server: LocalServer,
                                                   tmp_path: Path, option: list[str],
                                                   named: str, hint: str) -> None:
    """Overwrite deleted the server's instance, then re-sent the JSON as a DICOM file
    (skipped: not DICOM), so the server held neither copy (exit 2, "no DICOM files").
    --study was ignored: the pair went to the study its JSON names."""
    json_path, jpeg_path = write_pair(tmp_path, "a")
    result = dcmweb(local_server.url, "store", "--metadata", str(json_path), "--jpeg",
                    str(jpeg_path), *option)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.rstrip().endswith(
        f"dcmweb: error: {named} works on DICOM files, not on JSON + JPEG pairs ({hint})")
    assert local_server.requests == []


def test_stats_count_a_pair_resent_after_lost_answers_as_retries(local_server: LocalServer,
                                                                  tmp_path: Path) -> None:
    """As for files (test_throttle): the JSON store resends a pair itself after a lost
    answer that a search found not stored; each resend counts in ``stats.retries``."""
    pair = write_pair(tmp_path, "a")
    local_server.inject_fault(drop=True, count=2, method="POST")  # before the server stores
    with Client(local_server.url, backoff=0.01) as client:
        [result] = client.store_json([pair])
        stats = client.http.stats
    assert (result.status, result.sop_instance_uid) == ("stored", sop_of("a"))
    posts = [r.status for r in local_server.requests if r.method == "POST"]
    assert posts == [None, None, 200]  # one pair, sent three times
    assert stats.retries == 2
