"""Answers to writes whose body dcmweb cannot decode (a Content-Encoding such as br, a gzip
body broken or cut short): the server answered and may have done the work, so the outcome
is settled by search (store) or said to be unknown (delete), never "failed" on sight.
The writes go through a loopback forwarder to the local test server, which does them."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, forward
from test_jsonstore import sop_of, write_pair
from test_store_truth import held, report_rows, sop_uid

from dcmweb.cli import cli
from dcmweb.testing import LocalServer
from dcmweb_devtools.logs import lines

CODING_HINT = ("dcmweb decodes gzip and deflate only: have the server or proxy send those, or "
               "no coding")
BROKEN_HINT = "the server, or a proxy in between, sends broken compressed answers; check HOST"
FOUND = "the server's answer could not be read; found on the server by search"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def gzipped(body: bytes) -> bytes:
    return zlib.compress(body, wbits=16 + zlib.MAX_WBITS)


def corrupt(body: bytes) -> bytes:
    coded = bytearray(gzipped(body))
    coded[len(coded) // 2] ^= 0xFF
    return bytes(coded)


def truncated(body: bytes) -> bytes:
    return gzipped(body)[:-8]  # its end (CRC and length) left out, the Content-Length right


# name -> (how the body is coded, its Content-Encoding, what dcmweb says, the hint)
CODINGS: dict[str, tuple[Callable[[bytes], bytes], str, str, str]] = {
    "br": (gzipped, "br", " with Content-Encoding 'br', which dcmweb cannot decode",
           CODING_HINT),
    "corrupt-gzip": (corrupt, "gzip", ", but the answer's gzip body cannot be decoded: Error -3",
                     BROKEN_HINT),
    "truncated-gzip": (truncated, "gzip", ", but the answer's gzip body ends before the end of "
                       "its compressed data", BROKEN_HINT),
}


def coded(root_url: str, coding: str) -> Callable:
    """Forward to the real server, and code its answer so that dcmweb cannot read it."""
    alter, label = CODINGS[coding][:2]
    return forward(root_url, alter=alter, headers={"Content-Encoding": label})


@pytest.fixture
def two(pydicom_files: list[Path]) -> list[Path]:
    return [next(p for p in pydicom_files if p.name == name)
            for name in ("CT_small.dcm", "MR_small.dcm")]


@pytest.mark.parametrize("coding", list(CODINGS))
@pytest.mark.parametrize("single_part", [False, True], ids=["multipart", "single-part"])
def test_a_store_answer_it_cannot_decode_is_settled_by_search(
        local_server: LocalServer, two: list[Path], tmp_path: Path, coding: str,
        single_part: bool) -> None:
    """Old dcmweb (br): every file of the batch "failed: the server sent its answer (HTTP
    200) with Content-Encoding 'br' ...", exit 1, while the server held them all; a broken
    gzip answer was taken for a dropped connection (resent, waited out as an outage)."""
    report = tmp_path / "report.jsonl"
    base = urlsplit(local_server.url).path
    with Hostile() as fake:
        fake.fallback = forward(local_server.root_url)
        fake.route("POST", f"{base}/studies", coded(local_server.root_url, coding))
        result = run(fake.root_url + base, "store", "--report", str(report),
                     *(["--single-part"] if single_part else []), *map(str, two))
        posts = fake.seen("POST")
        reads = [seen.path for seen in fake.seen("GET") if "SOPInstanceUID" not in seen.params]
    assert result.exit_code == 0, result.stderr
    assert held(local_server) == set(map(sop_uid, two))
    rows = report_rows(report)
    assert [(rows[str(p)]["status"], rows[str(p)]["confirmed_by"], rows[str(p)]["message"])
            for p in two] == [("stored", "search", FOUND)] * 2
    assert len(posts) == (2 if single_part else 1)  # none sent again
    assert sorted(path.rsplit("/", 1)[-1] for path in reads) == sorted(map(sop_uid, two))


@pytest.mark.parametrize("coding", list(CODINGS))
def test_a_store_answer_it_cannot_decode_fails_a_file_no_search_finds(
        two: list[Path], coding: str) -> None:
    """Not on the server: failed, naming the coding, sent once and not waited out."""
    alter, label, said, hint = CODINGS[coding]
    ct = two[0]
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.reply(
            200, alter(b"{}"), "application/dicom+json", headers={"Content-Encoding": label}))
        fake.fallback = lambda req: req.reply(200, b"[]", "application/dicom+json")
        started = time.monotonic()
        result = run(fake.url, "--outage-limit", "30", "store", str(ct))
        took = time.monotonic() - started
        posts = fake.seen("POST")
    assert result.exit_code == 1, result.stderr
    error = lines(result.stderr)[1]
    assert error.startswith(f"dcmweb: error: {ct} failed: the server sent its answer (HTTP 200)"
                            f"{said}"), error
    assert error.endswith(f", and a search does not find it ({hint})"), error
    assert len(posts) == 1
    assert took < 10


@pytest.mark.parametrize("coding", ["br", "corrupt-gzip"])
def test_a_json_jpeg_answer_it_cannot_decode_is_settled_by_search(
        local_server: LocalServer, tmp_path: Path, coding: str) -> None:
    json_path, jpeg_path = write_pair(tmp_path, "a")
    report = tmp_path / "report.jsonl"
    base = urlsplit(local_server.url).path
    with Hostile() as fake:
        fake.fallback = forward(local_server.root_url)
        fake.route("POST", f"{base}/studies", coded(local_server.root_url, coding))
        result = run(fake.root_url + base, "store", "--metadata", str(json_path), "--jpeg",
                     str(jpeg_path), "--report", str(report))
        posts = fake.seen("POST")
    assert result.exit_code == 0, result.stderr  # old dcmweb (br): exit 1, "failed"
    assert held(local_server) == {sop_of("a")}
    [row] = report_rows(report).values()
    assert (row["status"], row["confirmed_by"], row["http_status"]) == ("stored", "search", 200)
    assert row["message"].startswith(
        f"the server sent its answer (HTTP 200){CODINGS[coding][2]}")
    assert row["message"].endswith("; found on the server by search")
    assert len(posts) == 1


def test_a_json_jpeg_answer_in_br_fails_a_pair_no_search_finds(tmp_path: Path) -> None:
    json_path, jpeg_path = write_pair(tmp_path, "a")
    with Hostile() as fake:
        fake.route("POST", "/studies", lambda req: req.reply(
            200, b"{}", "application/dicom+json", headers={"Content-Encoding": "br"}))
        fake.fallback = lambda req: req.reply(200, b"[]", "application/dicom+json")
        result = run(fake.url, "store", "--metadata", str(json_path), "--jpeg", str(jpeg_path))
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[1] == (
        f"dcmweb: error: {json_path} failed: the server sent its answer (HTTP 200) with "
        "Content-Encoding 'br', which dcmweb cannot decode; not on the server "
        f"({CODING_HINT})")


def test_a_delete_answer_in_br_says_the_outcome_is_unknown(
        local_server: LocalServer, two: list[Path]) -> None:
    """Old dcmweb: "delete ... failed: the server sent its answer ...", as if nothing had
    been deleted, while the server had deleted it."""
    ct = two[0]
    assert run(local_server.url, "store", str(ct)).exit_code == 0
    ds = pydicom.dcmread(ct, stop_before_pixels=True)
    path = f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{sop_uid(ct)}"
    base = urlsplit(local_server.url).path
    with Hostile() as fake:
        fake.fallback = forward(local_server.root_url)
        fake.route("DELETE", f"{base}/{path}", coded(local_server.root_url, "br"))
        result = run(fake.root_url + base, "delete", path)
        deletes = fake.seen("DELETE")
    assert held(local_server) == set()
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-2:] == [
        f"dcmweb: error: delete {path}: the server sent its answer (HTTP 200) with "
        "Content-Encoding 'br', which dcmweb cannot decode; its outcome is unknown: the "
        f"server may have deleted it (search for it to see; {CODING_HINT})",
        f"dcmweb: error: a search finds nothing left under {path}",
    ]
    assert len(deletes) == 1


def test_an_operation_poll_in_br_says_the_outcome_is_unknown() -> None:
    """A poll is a read: its error after an accepted delete is an unknown outcome."""
    name = "projects/p/locations/l/datasets/d/operations/42"
    with Hostile() as fake:
        fake.route("DELETE", "/studies/1.2", lambda req: req.json(200, {"name": name}))
        fake.route("GET", f"/v1/{name}", lambda req: req.reply(
            200, gzipped(b"{}"), "application/json", headers={"Content-Encoding": "br"}))
        result = run(fake.url, "delete", "studies/1.2")
    assert result.exit_code == 1, result.stderr
    assert any(line.startswith(
        f"dcmweb: error: delete studies/1.2: the server accepted it (operation {name}), then "
        f"check operation {name} failed: the server sent its answer (HTTP 200) with "
        "Content-Encoding 'br', which dcmweb cannot decode; its outcome is unknown")
        for line in lines(result.stderr)), result.stderr
