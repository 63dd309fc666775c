"""dcmweb retrieve against content that arrives whole but is not what it claims: a file
cut inside its data in a framed answer, another transfer syntax than asked, UIDs given
twice, a 206 or a Warning, listings that break or ignore offset, rendered listings with
rows that cannot name a file."""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request, multipart, status
from test_retrieve import files_under, study_of, uids_of, where

from dcmweb import Client, search
from dcmweb.cli import cli
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DICOM_ANSWER = 'multipart/related; type="application/dicom"; boundary=b1'
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """3 instances of one study and series."""
    return corpus.synthetic_files(tmp_path_factory.mktemp("synth"), 3)


def rewritten(source: Path, folder: Path, change: str, value: str) -> Path:
    """``source`` with one attribute changed (its UIDs kept), saved in ``folder``."""
    ds = pydicom.dcmread(source)
    setattr(ds, change, value)
    path = folder / f"{change}.dcm"
    ds.save_as(path)
    return path


def in_implicit_vr(source: Path, folder: Path) -> Path:
    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = IMPLICIT_LE
    path = folder / "implicit.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True)
    return path


def with_study_uid_twice(source: Path, other: str) -> bytes:
    """``source`` with a second StudyInstanceUID, ``other``, right after the series UID
    (tags out of order: DCMTK reads the first, pydicom the last)."""
    data = source.read_bytes()
    at = data.index(b"\x20\x00\x0e\x00UI")
    (length,) = struct.unpack_from("<H", data, at + 6)
    value = other.encode() + b"\0" * (len(other) % 2)
    extra = b"\x20\x00\x0d\x00UI" + struct.pack("<H", len(value)) + value
    end = at + 8 + length
    return data[:end] + extra + data[end:]


def answer(*parts: bytes) -> tuple[bytes, str]:
    return multipart(list(parts), "b1"), DICOM_ANSWER


# -- a file cut inside its data, in an answer framed as whole ---------------------------------
def retrieve_study(good: Path, parts: tuple[bytes, str], out: Path, *options: str,
                   status: int = 200, headers: dict[str, str] | None = None,
                   again: Path | None = None) -> tuple[Result, Result | None]:
    """Retrieve the study of ``good`` from a server answering it with ``parts`` (and
    ``status``, ``headers``) into ``out``; ``again``: a second retrieve, without the
    options, into that folder."""
    body, content_type = parts
    with Hostile() as fake:
        fake.route("GET", f"/{study_of(good)}", lambda req: req.reply(
            status, body, content_type, headers or {}))
        first = dcmweb(fake.url, "retrieve", study_of(good), *options, "-o", str(out))
        second = dcmweb(fake.url, "retrieve", study_of(good), "-o", str(again)) if again else None
    return first, second


def test_a_file_cut_inside_its_data_fails_alone_on_the_local_server(
        local_server: LocalServer, synth: list[Path], tmp_path: Path) -> None:
    """The local server keeps what it is given: a short file comes back framed (a
    Content-Length, a closed multipart), as from a cache or gateway that cut it."""
    good, short = synth[0], synth[1]
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(short.read_bytes()[:-300])
    with Client(local_server.url) as client:
        assert {r.status for r in client.store([good, cut])} == {"stored"}
    out = tmp_path / "out"
    result = dcmweb(local_server.url, "retrieve", study_of(good), "-o", str(out))
    assert result.exit_code == 6, result.stderr
    assert files_under(out) == {where(out, good)}
    name = where(out, short).name
    # The server holds the file as it was stored, short: the message does not blame
    # the transfer alone.
    assert re.search(rf"the server sent {re.escape(name)} cut inside its data \(after \d+ "
                     r"bytes: an answer cut short, or a file stored so\)", result.stderr)
    study, series, sop = uids_of(short)
    result = dcmweb(local_server.url, "retrieve",
                    f"studies/{study}/series/{series}/instances/{sop}", "--single-part",
                    "-o", str(tmp_path / "single"))
    assert result.exit_code == 1, result.stderr
    assert f"the server sent {name} cut inside its data" in result.stderr
    assert files_under(tmp_path / "single") == set()


def test_a_boundary_inside_a_files_data_keeps_no_piece_of_it(synth: list[Path],
                                                              tmp_path: Path) -> None:
    """The boundary line inside a value (a server with a fixed boundary) ends the part
    there: that first piece is not kept as the instance."""
    good = synth[0]
    evil = rewritten(synth[1], tmp_path, "ImageComments",
                     "x\r\n--b1\r\nContent-Type: application/dicom\r\n\r\n")
    out = tmp_path / "out"
    result, _ = retrieve_study(good, answer(evil.read_bytes(), good.read_bytes()), out)
    assert result.exit_code == 6, result.stderr
    assert files_under(out) == {where(out, good)}
    assert f"the server sent {where(out, evil).name} cut inside its data" in result.stderr


# -- another transfer syntax than asked -------------------------------------------------------
@pytest.mark.parametrize("asking", [
    ["--transfer-syntax", EXPLICIT_LE],
    ["--type", f"application/dicom; transfer-syntax={EXPLICIT_LE}"]])
def test_a_file_in_another_transfer_syntax_than_asked_fails_alone(
        synth: list[Path], tmp_path: Path, asking: list[str]) -> None:
    good = synth[0]
    implicit = in_implicit_vr(synth[1], tmp_path)
    out = tmp_path / "out"
    result, stored = retrieve_study(good, answer(good.read_bytes(), implicit.read_bytes()),
                                    out, *asking, again=tmp_path / "any")
    assert stored is not None
    assert result.exit_code == 6, result.stderr
    assert files_under(out) == {where(out, good)}
    assert (f"{study_of(good)}: the server sent {where(out, implicit).name} in transfer "
            f"syntax {IMPLICIT_LE}, not {EXPLICIT_LE} as asked") in lines(result.stderr)[-3]
    assert stored.exit_code == 0, stored.stderr  # transfer-syntax=*: whatever is stored


# -- UIDs given twice ---------------------------------------------------------------------------
def test_a_file_with_its_study_uid_given_twice_is_refused(synth: list[Path],
                                                          tmp_path: Path) -> None:
    good = synth[0]
    twice = with_study_uid_twice(synth[1], "9.9")
    assert pydicom.dcmread(io.BytesIO(twice)).StudyInstanceUID == "9.9"  # pydicom: the last
    out = tmp_path / "out"
    result, _ = retrieve_study(good, answer(good.read_bytes(), twice), out)
    assert result.exit_code == 6, result.stderr
    assert files_under(out) == {where(out, good)}
    assert (f"the server sent {where(out, synth[1]).name} with its StudyInstanceUID given "
            "twice") in result.stderr


# -- the server's word that its answer is partial -----------------------------------------------
WARNING = ('299 example: "Some instances could not be converted to the requested transfer '
           'syntax and were not returned."')


def test_a_206_answer_keeps_its_files_and_fails_the_item(synth: list[Path],
                                                         tmp_path: Path) -> None:
    good = synth[0]
    result, _ = retrieve_study(good, answer(good.read_bytes()), tmp_path, status=206,
                               headers={"Warning": WARNING})
    assert result.exit_code == 6, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, good)}
    assert (f"dcmweb: error: {study_of(good)}: the server answered 206 Partial Content: Some "
            "instances could not be converted to the requested transfer syntax and were not "
            "returned.") in lines(result.stderr)
    assert "; 1 failed" in result.stderr


def test_a_warning_on_a_whole_answer_is_shown(synth: list[Path], tmp_path: Path) -> None:
    good = synth[0]
    result, _ = retrieve_study(good, answer(good.read_bytes()), tmp_path, headers={
        "Warning": '299 example: "Served from a stale copy."'})
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, good)}
    assert (f"dcmweb: warning: retrieve {study_of(good)}: the server warns: Served from a "
            "stale copy.") in lines(result.stderr)


# -- listings that break, or ignore offset ---------------------------------------------------------
def study_row(study: str) -> dict[str, object]:
    return {"0020000D": {"vr": "UI", "Value": [study]}}


def serve_studies(fake: Hostile, files: list[Path]) -> None:
    for path in files:
        body, content_type = answer(path.read_bytes())
        fake.route("GET", f"/{study_of(path)}",
                   lambda req, body=body, content_type=content_type: req.reply(
                       200, body, content_type))


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """3 instances, each of its own study."""
    return corpus.synthetic_files(tmp_path_factory.mktemp("studies"), 3, studies=3)


@pytest.mark.parametrize("workers", [[], ["-m"]])
def test_a_study_listing_that_breaks_after_some_studies_is_one_failed_item(
        studies: list[Path], tmp_path: Path, workers: list[str]) -> None:
    rows = [study_row(uids_of(path)[0]) for path in studies]

    def listing(req: Request) -> None:
        if req.params.get("offset") == "0":
            req.json(200, rows, "application/dicom+json")
        else:
            req.reply(200, b'[{"0020000D": ', "application/dicom+json")

    with Hostile() as fake:
        fake.route("GET", "/studies", listing)
        serve_studies(fake, studies)
        result = dcmweb(*workers, fake.url, "retrieve", "-o", str(tmp_path))
    assert result.exit_code == 6, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, path) for path in studies}
    assert "dcmweb: error: studies: the listing stopped after 3 items: search studies" \
        in result.stderr
    assert "in 3 files; 1 failed" in result.stderr


def test_a_server_that_ignores_offset_has_listed_the_whole_store(
        studies: list[Path], tmp_path: Path) -> None:
    rows = [study_row(uids_of(path)[0]) for path in studies]
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(200, rows, "application/dicom+json"))
        serve_studies(fake, studies)
        result = dcmweb(fake.url, "retrieve", "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, path) for path in studies}
    assert "the server ignores 'offset' and lists everything on every page" in result.stderr
    assert "add a limit" not in result.stderr


def test_a_full_page_that_comes_again_may_hide_more_studies(
        studies: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "FIRST_PAGE", 2)
    monkeypatch.setitem(search.PAGE_SIZES, "studies", 2)
    rows = [study_row(uids_of(path)[0]) for path in studies]
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(
            200, rows[:int(req.params["limit"])], "application/dicom+json"))
        serve_studies(fake, studies)
        result = dcmweb(fake.url, "retrieve", "-o", str(tmp_path))
    assert result.exit_code == 6, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, path) for path in studies[:2]}
    assert "it may hold more" in result.stderr
    assert "add a limit" not in result.stderr


@pytest.mark.parametrize("workers", [[], ["-m"]])
def test_a_study_listing_whose_order_changes_between_pages_is_one_failed_item(
        studies: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        workers: list[str]) -> None:
    """The second page repeats a study of the first in the place of another (a study
    stored while listing, or a server whose order is not stable): that one is never
    listed. Before, a warning, and exit 0 as if the store had been retrieved whole."""
    monkeypatch.setattr(search, "FIRST_PAGE", 2)
    monkeypatch.setitem(search.PAGE_SIZES, "studies", 2)
    rows = [study_row(uids_of(path)[0]) for path in studies]
    pages = {"0": rows[:2], "2": rows[1:3], "4": []}
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(
            200, pages[req.params["offset"]], "application/dicom+json"))
        serve_studies(fake, studies)
        result = dcmweb(*workers, fake.url, "retrieve", "-o", str(tmp_path))
    assert result.exit_code == 6, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, path) for path in studies}
    assert "dcmweb: error: studies: the listing may have left out 1 item: as many came " \
        "back from earlier pages in their place" in result.stderr
    assert "in 3 files; 1 failed" in result.stderr


def test_a_short_page_of_some_rows_of_the_page_before_is_no_whole_listing(
        studies: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that ignores offset sends the page before again; one whose order changed
    sends some of its rows, in the place of others: before, 'the server ignores offset
    and lists everything on every page', exit 0, and the third study never retrieved."""
    monkeypatch.setattr(search, "FIRST_PAGE", 2)
    monkeypatch.setitem(search.PAGE_SIZES, "studies", 2)
    rows = [study_row(uids_of(path)[0]) for path in studies]
    pages = {"0": rows[:2], "2": rows[1:2]}
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(
            200, pages[req.params["offset"]], "application/dicom+json"))
        serve_studies(fake, studies)
        result = dcmweb(fake.url, "retrieve", "-o", str(tmp_path))
    assert result.exit_code == 6, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, path) for path in studies[:2]}
    assert "lists everything" not in result.stderr
    assert "the listing stopped after 2 items" in result.stderr
    assert "it may hold more" in result.stderr


# -- rendered: listed rows that cannot name a file ------------------------------------------------
def instance_row(study: str, series: str, sop: str) -> dict[str, object]:
    return {tag: {"vr": "UI", "Value": [uid]} for tag, uid in
            (("0020000D", study), ("0020000E", series), ("00080018", sop))}


@pytest.mark.parametrize("workers", [[], ["-m"]])
@pytest.mark.parametrize("path", ["studies/1.2/series/3.4", "studies/1.2"])
def test_a_listed_instance_with_unsafe_uids_fails_alone_when_rendering(
        tmp_path: Path, path: str, workers: list[str]) -> None:
    rows = [instance_row("1.2", "3.4", "5.6"), instance_row("1.2", "3.4", "../x"),
            instance_row("1.2", "3.4", "CON"), instance_row("1.2", "3.4", "5.7")]
    with Hostile() as fake:
        fake.route("GET", f"/{path}/instances", lambda req: req.json(
            200, rows if req.params.get("offset") == "0" else [], "application/dicom+json"))
        # Served (not deleted moments ago): the first instance listed has metadata.
        fake.route("GET", "/studies/1.2/series/3.4/instances/5.6/metadata", status(200))
        for sop in ("5.6", "5.7"):
            fake.route("GET", f"/studies/1.2/series/3.4/instances/{sop}/rendered",
                       lambda req: req.reply(200, PNG, "image/png"))
        result = dcmweb(*workers, fake.url, "retrieve", f"{path}/rendered", "--format", "png",
                        "-o", str(tmp_path))
    assert result.exit_code == 6, result.stderr
    assert files_under(tmp_path) == {tmp_path / "1.2" / "3.4" / "5.6.png",
                                     tmp_path / "1.2" / "3.4" / "5.7.png"}
    assert result.stderr.count("refused unsafe UIDs from the server") == 2
    assert "in 2 files; 2 failed" in result.stderr


def test_rendering_fails_with_exit_1_when_every_listed_instance_is_refused(
        tmp_path: Path) -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies/1.2/instances", lambda req: req.json(
            200, [instance_row("1.2", "3.4", "CON")] if req.params.get("offset") == "0"
            else [], "application/dicom+json"))
        result = dcmweb(fake.url, "retrieve", "studies/1.2/rendered", "-o", str(tmp_path))
    assert result.exit_code == 1, result.stderr
    assert "nothing was retrieved (1 item failed)" in result.stderr
