"""dcmweb retrieve against answers of the wrong kind: web pages, short bodies, endless
parts, a disk about to fill up; and the files it writes (permissions)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request, multipart, once, status, trickle
from test_retrieve import files_under, sha, study_of, temp_leftovers, uids_of, where

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.output import human_size
from dcmweb.saving import DiskSpace
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

LOGIN_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Sign in - Example SSO</title></head>"
              b"<body><form>...</form></body></html>")


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return corpus.synthetic_files(tmp_path_factory.mktemp("synth"), 3)


def instance_path(source: Path) -> str:
    study, series, sop = uids_of(source)
    return f"studies/{study}/series/{series}/instances/{sop}"


# -- answers of the wrong kind ------------------------------------------------------------------
@pytest.mark.parametrize(("content_type", "body", "shown"), [
    ("text/html; charset=utf-8", LOGIN_PAGE,
     'text/html (a web page titled "Sign in - Example SSO")'),
    ("application/json", b'{"error": {"code": 200, "message": "viewer config"}}',
     "application/json: viewer config"),
    (None, b"", "no Content-Type"),
    ("multipart/mixed; boundary=x", multipart([b"x"], "x"), "multipart/mixed"),
])
def test_an_answer_that_is_not_dicomweb_data_is_a_failure(
        tmp_path: Path, content_type: str | None, body: bytes, shown: str) -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies/1.2", lambda req: req.reply(200, body, content_type))
        result = dcmweb(fake.url, "retrieve", "studies/1.2", "--output", str(tmp_path))
    assert result.exit_code == 1, result.stderr
    last = lines(result.stderr)[-1]
    assert last.startswith(f"dcmweb: error: retrieve studies/1.2: the server answered HTTP 200 "
                           f"with {shown}, not DICOMweb data (multipart/related or "
                           "application/dicom) (HOST must be the DICOMweb base URL, e.g. https:")
    assert files_under(tmp_path) == set()  # no part_1.bin


@pytest.mark.parametrize(("path", "content_type", "what", "expected"), [
    ("studies/1.2", 'multipart/related; type="application/dicom"; boundary=x',
     "retrieve studies/1.2", "multipart/related"),
    ("studies/1.2/metadata", "application/dicom+json", "metadata studies/1.2/metadata",
     "application/dicom+json"),
])
def test_a_204_with_a_content_type_is_no_data_and_not_asked_again(
        tmp_path: Path, path: str, content_type: str, what: str, expected: str) -> None:
    """A 204 has no body whatever its Content-Type says: the multipart type made the
    missing boundary look like a cut answer, asked for twice more, and said 'cut off'."""
    with Hostile() as fake:
        fake.route("GET", f"/{path}", lambda req: req.stream(204, content_type, []))
        result = dcmweb(fake.url, "retrieve", path,
                        *([] if path.endswith("metadata") else ["--output", str(tmp_path)]))
        asked = len(fake.seen("GET", f"/{path}"))
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1].startswith(
        f"dcmweb: error: {what}: the server answered HTTP 204 with no content, not DICOMweb "
        f"data ({expected}) (HOST must be the DICOMweb base URL"), result.stderr
    assert "cut off" not in result.stderr
    assert asked == 1
    assert files_under(tmp_path) == set()


def test_a_web_page_in_a_whole_store_retrieve_fails_that_study_only(
        synth: list[Path], tmp_path: Path) -> None:
    good = synth[0]
    study = uids_of(good)[0]
    rows = [{"0020000D": {"vr": "UI", "Value": [uid]}} for uid in ("9.9.1", study)]

    def studies(req: Request) -> None:
        req.json(200, rows if req.params.get("offset") == "0" else [], "application/dicom+json")

    with Hostile() as fake:
        fake.route("GET", "/studies", studies)
        fake.route("GET", "/studies/9.9.1", lambda req: req.reply(200, LOGIN_PAGE, "text/html"))
        fake.route("GET", f"/studies/{study}", lambda req: req.reply(
            200, multipart([good.read_bytes()], "b1"), "multipart/related; boundary=b1"))
        result = dcmweb(fake.url, "retrieve", "--output", str(tmp_path))
    assert result.exit_code == 6, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, good)}
    assert 'studies/9.9.1: the server answered HTTP 200 with text/html ' \
        '(a web page titled "Sign in - Example SSO")' in result.stderr


# -- answers with no instance ------------------------------------------------------------------
@pytest.mark.parametrize("path", ["studies/1.2", "studies/1.2/series/3.4",
                                  "studies/1.2/series/3.4/instances/5.6"])
def test_an_empty_multipart_answer_is_a_failure(tmp_path: Path, path: str) -> None:
    """"Transferred 0 B in 0 files", exit 0, for a path naming a study, series or instance
    that exists (a missing one is a 404 on real servers: see the next test)."""
    with Hostile() as fake:
        fake.route("GET", f"/{path}", lambda req: req.reply(
            200, multipart([], "b1"), "multipart/related; boundary=b1"))
        result = dcmweb(fake.url, "retrieve", path, "--output", str(tmp_path))
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1] == (f"dcmweb: error: retrieve {path}: the server sent "
                                        "no instance")
    assert files_under(tmp_path) == set()


def test_a_study_with_an_empty_answer_fails_alone_in_a_store_retrieve(
        synth: list[Path], tmp_path: Path) -> None:
    good = synth[0]
    study = uids_of(good)[0]
    rows = [{"0020000D": {"vr": "UI", "Value": [uid]}} for uid in ("9.9.1", study)]
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(
            200, rows if req.params.get("offset") == "0" else [], "application/dicom+json"))
        fake.route("GET", "/studies/9.9.1", lambda req: req.reply(
            200, multipart([], "b1"), "multipart/related; boundary=b1"))
        fake.route("GET", f"/studies/{study}", lambda req: req.reply(
            200, multipart([good.read_bytes()], "b1"), "multipart/related; boundary=b1"))
        result = dcmweb(fake.url, "retrieve", "--output", str(tmp_path))
    assert result.exit_code == 6, result.stderr
    assert "studies/9.9.1: the server sent no instance" in result.stderr
    assert files_under(tmp_path) == {where(tmp_path, good)}


def test_a_missing_study_is_not_found_on_the_local_server(local_server: LocalServer,
                                                          tmp_path: Path) -> None:
    for args in (["retrieve", "studies/9.9.9", "-o", str(tmp_path)],
                 ["retrieve", "studies/9.9.9/metadata", "--format", "xml"]):
        result = dcmweb(local_server.url, *args)
        assert result.exit_code == 4, result.stderr


# -- a boundary the body does not use -----------------------------------------------------------
def test_parts_with_another_boundary_are_a_server_error_asked_once(tmp_path: Path) -> None:
    """Old dcmweb: "answer cut off (no multipart boundary found in the data)", asked 3 times."""
    with Hostile() as fake:
        fake.route("GET", "/studies/1.2", lambda req: req.reply(
            200, multipart([b"DICM" * 40], "other"), "multipart/related; boundary=b1"))
        result = dcmweb(fake.url, "retrieve", "studies/1.2", "--output", str(tmp_path))
        asked = len(fake.requests)
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1] == ("dcmweb: error: retrieve studies/1.2: the body does not "
                                        "contain the boundary 'b1' its Content-Type names")
    assert "cut off" not in result.stderr
    assert asked == 1
    assert files_under(tmp_path) == set()


def test_an_unframed_answer_without_the_boundary_may_be_cut_and_is_asked_again(
        tmp_path: Path) -> None:
    """No length and no chunks: the connection may have closed before the first boundary."""
    with Hostile() as fake:
        fake.route("GET", "/studies/1.2", lambda req: req.stream(
            200, "multipart/related; boundary=b1", [b"DICM" * 40]))
        result = dcmweb(fake.url, "retrieve", "studies/1.2", "--output", str(tmp_path))
        asked = len(fake.requests)
    assert result.exit_code == 1, result.stderr
    assert "the answer was cut off: the body does not contain the boundary" in result.stderr
    assert asked == 3


# -- bodies that end early ----------------------------------------------------------------------
def test_single_part_cut_without_content_length_is_not_saved(synth: list[Path],
                                                             tmp_path: Path) -> None:
    """Connection: close and no length: only the DICOM data itself shows the cut."""
    data = synth[0].read_bytes()
    path = instance_path(synth[0])
    with Hostile() as fake:
        fake.route("GET", f"/{path}", lambda req: req.stream(
            200, "application/dicom", [data[: len(data) - 100]]))
        result = dcmweb(fake.url, "retrieve", path, "--output", str(tmp_path))
        asked = len(fake.requests)
    assert result.exit_code == 1, result.stderr
    assert f"{path}: the answer was cut off: the connection closed after {len(data) - 100} " \
        "bytes, inside the DICOM data" in result.stderr
    assert asked == 3
    assert files_under(tmp_path) == set()


def test_a_reset_mid_answer_is_named_once(synth: list[Path], tmp_path: Path) -> None:
    """Old dcmweb: "the answer was cut off: the answer was cut off: ConnectionResetError(...)"."""
    data = synth[0].read_bytes()
    path = instance_path(synth[0])
    with Hostile() as fake:
        fake.route("GET", f"/{path}", lambda req: req.stream(
            200, "application/dicom", [data[: len(data) // 2]], claimed_length=len(data),
            reset=True))
        result = dcmweb(fake.url, "retrieve", path, "--output", str(tmp_path))
    assert result.exit_code == 1, result.stderr
    [failure] = [line for line in lines(result.stderr) if line.startswith(f"dcmweb: error: {path}")]
    assert failure.count("cut off") == 1, failure
    assert files_under(tmp_path) == set()


def test_single_part_complete_without_content_length_is_saved(synth: list[Path],
                                                              tmp_path: Path) -> None:
    path = instance_path(synth[0])
    with Hostile() as fake:
        fake.route("GET", f"/{path}", lambda req: req.stream(
            200, "application/dicom", [synth[0].read_bytes()]))
        result = dcmweb(fake.url, "retrieve", path, "--output", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert sha(where(tmp_path, synth[0])) == sha(synth[0])


def test_single_part_shorter_than_content_length_is_not_saved(synth: list[Path],
                                                              tmp_path: Path) -> None:
    data = synth[0].read_bytes()
    path = instance_path(synth[0])
    with Hostile() as fake:
        fake.route("GET", f"/{path}", lambda req: req.stream(
            200, "application/dicom", [data[:-10]], claimed_length=len(data)))
        result = dcmweb(fake.url, "retrieve", path, "--output", str(tmp_path))
    assert result.exit_code == 1, result.stderr
    assert "the answer was cut off" in result.stderr
    assert files_under(tmp_path) == set()


def chunked_reply(req: Request, content_type: str, body: bytes, *, cut_at: int | None) -> None:
    """A chunked answer; with cut_at the connection closes in the middle of a chunk."""
    h = req.handler
    h.send_response(200)
    h.send_header("Content-Type", content_type)
    h.send_header("Transfer-Encoding", "chunked")
    h.send_header("Connection", "close")
    h.end_headers()
    size = 4096
    wire = b"".join(b"%x\r\n" % len(body[i:i + size]) + body[i:i + size] + b"\r\n"
                    for i in range(0, len(body), size)) + b"0\r\n\r\n"
    h.wfile.write(wire if cut_at is None else wire[:cut_at])
    h.wfile.flush()
    h.close_connection = True


@pytest.mark.parametrize("single_part", [True, False], ids=["single-part", "multipart"])
def test_a_body_cut_mid_chunk_is_asked_again(synth: list[Path], tmp_path: Path,
                                             single_part: bool) -> None:
    if single_part:
        path, content_type, body = instance_path(synth[0]), "application/dicom", \
            synth[0].read_bytes()
    else:
        path = f"studies/{uids_of(synth[0])[0]}"
        content_type = "multipart/related; boundary=ck"
        body = multipart([p.read_bytes() for p in synth], "ck")
    cuts = iter([len(body) // 2])

    def flaky(req: Request) -> None:
        chunked_reply(req, content_type, body, cut_at=next(cuts, None))

    with Hostile() as fake:
        fake.route("GET", f"/{path}", flaky)
        result = dcmweb(fake.url, "retrieve", path, "--output", str(tmp_path))
        asked = len(fake.requests)
    assert result.exit_code == 0, result.stderr
    assert asked == 2
    assert "answer cut off" in result.stderr
    expected = [synth[0]] if single_part else synth
    assert files_under(tmp_path) == {where(tmp_path, p) for p in expected}
    assert all(sha(where(tmp_path, p)) == sha(p) for p in expected)


# -- an endless part and the disk ---------------------------------------------------------------
def endless_part(req: Request, head: bytes, part_type: str = "application/dicom") -> None:
    """A multipart answer whose first part never ends (until the client goes away)."""
    h = req.handler
    h.send_response(200)
    h.send_header("Content-Type", "multipart/related; boundary=endless")
    h.send_header("Connection", "close")
    h.end_headers()
    block = os.urandom(1024 * 1024)
    try:
        h.wfile.write(f"--endless\r\nContent-Type: {part_type}\r\n\r\n".encode() + head)
        while True:
            h.wfile.write(block)
    except OSError:
        pass  # dcmweb hung up, as it should
    h.close_connection = True


def test_an_endless_part_stops_before_the_disk_is_full(synth: list[Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk is pretended to hold 100 GiB with 1 GiB + 40 MiB free: dcmweb keeps 1 GiB
    free, so it must stop after about 40 MiB and remove what it wrote."""
    study = study_of(synth[0])
    out = tmp_path / "out"
    free_at_start = 1024 ** 3 + 40 * 1024 ** 2
    written: list[int] = []

    def pretend(self: DiskSpace) -> tuple[int, int]:
        used = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        written.append(used)
        return free_at_start - used, 100 * 1024 ** 3

    monkeypatch.setattr(DiskSpace, "free", pretend)
    head = synth[0].read_bytes()
    with Hostile() as fake:
        fake.route("GET", f"/{study}", lambda req: endless_part(req, head))
        result = dcmweb(fake.url, "retrieve", study, "--output", str(out))
    assert result.exit_code == 1, result.stderr
    last = lines(result.stderr)[-1]
    assert last.startswith(f"dcmweb: error: stopped writing in {out}/")
    assert ", of which dcmweb keeps 1.0 GiB (the smaller of 1 GiB and 5 % of the disk): " \
        "the next " in last
    assert last.endswith("(free some space or choose another output folder)")
    assert 30 * 1024 ** 2 < max(written) <= 40 * 1024 ** 2
    assert files_under(out) == set()
    assert temp_leftovers(out) == []


def test_a_nearly_full_disk_is_refused_before_writing(synth: list[Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """5 % of a small (10 GiB) disk is the margin when it is less than 1 GiB."""
    study = study_of(synth[0])
    monkeypatch.setattr(DiskSpace, "free", lambda self: (500 * 1024 ** 2, 10 * 1024 ** 3))
    body = multipart([synth[0].read_bytes()], "b")
    with Hostile() as fake:
        fake.route("GET", f"/{study}",
                   lambda req: req.reply(200, body, "multipart/related; boundary=b"))
        result = dcmweb(fake.url, "retrieve", study, "--output", str(tmp_path))
    assert result.exit_code == 1
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: stopped writing in {tmp_path}/{study.split('/')[1]}/"
        f"{uids_of(synth[0])[1]}: 500.0 MiB free, less than the 512.0 MiB dcmweb keeps free "
        "(the smaller of 1 GiB and 5 % of the disk) (free some space or choose another output "
        "folder)")
    assert files_under(tmp_path) == set()


NINE_MIB = 9 * 1024 ** 2  # a small tmpfs or USB stick: dcmweb keeps 5 % of it (460.8 KiB)


@pytest.mark.parametrize("workers", ["1", "4"])
def test_a_small_download_fits_on_a_small_disk(local_server: LocalServer, synth: list[Path],
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               workers: str) -> None:
    """A few KiB on a 9 MiB disk with all of it free: only what would eat into the
    460.8 KiB kept free is refused, not every download short of 10 MiB."""
    monkeypatch.setattr(DiskSpace, "free", lambda self: (NINE_MIB, NINE_MIB))
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    out = tmp_path / "out"
    result = dcmweb("--workers", workers, local_server.url, "retrieve", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert files_under(out) == {where(out, p) for p in synth}
    result = dcmweb(local_server.url, "retrieve", f"{instance_path(synth[0])}/metadata",
                    "-o", str(tmp_path / "m.json"))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "m.json").stat().st_size > 0


def test_a_refusal_names_the_bytes_that_do_not_fit(synth: list[Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Free space above the reserve but less than the next write: the message's numbers
    say why (free, kept, what is left, what came)."""
    data = synth[0].read_bytes()
    keep = int(NINE_MIB * 0.05)
    monkeypatch.setattr(DiskSpace, "free", lambda self: (keep + len(data) // 2, NINE_MIB))
    body = multipart([data], "b")
    out = tmp_path / "out"
    with Hostile() as fake:
        fake.route("GET", f"/{study_of(synth[0])}",
                   lambda req: req.reply(200, body, "multipart/related; boundary=b"))
        result = dcmweb(fake.url, "retrieve", study_of(synth[0]), "--output", str(out))
    assert result.exit_code == 1, result.stderr
    last = lines(result.stderr)[-1]
    assert last.startswith(f"dcmweb: error: stopped writing in {out}/")
    assert (f": {human_size(keep + len(data) // 2)} free, of which dcmweb keeps "
            f"{human_size(keep)} (the smaller of 1 GiB and 5 % of the disk): the next ") in last
    assert f" would not fit in the {human_size(len(data) // 2)} left (free some space" in last
    assert not out.exists()  # no empty study and series folders left behind


@pytest.mark.parametrize("workers", ["1", "4"])
def test_the_free_space_is_looked_at_per_megabytes_not_per_file(
        local_server: LocalServer, synth: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, workers: str) -> None:
    """Eight small instances (and their thumbnails): one look at the free space each run,
    not one system call per file, and still every file whole."""
    looks: list[Path] = []
    real = DiskSpace.free

    def counted(self: DiskSpace) -> tuple[int, int]:
        looks.append(self.folder)
        return real(self)

    monkeypatch.setattr(DiskSpace, "free", counted)
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    result = dcmweb("--workers", workers, local_server.url, "retrieve", "--output",
                    str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path / "out") == {where(tmp_path / "out", p) for p in synth}
    assert len(looks) == 1
    study, series, _ = uids_of(synth[0])
    result = dcmweb("--workers", workers, local_server.url, "retrieve",
                    f"studies/{study}/series/{series}/rendered", "--output",
                    str(tmp_path / "thumbs"))
    assert result.exit_code == 0, result.stderr
    thumbs = list((tmp_path / "thumbs").rglob("*.jpg"))
    assert len(thumbs) >= 2 and all(p.read_bytes()[:2] == b"\xff\xd8" for p in thumbs)
    assert len(looks) == 2
    assert temp_leftovers(tmp_path) == []


# -- permissions --------------------------------------------------------------------------------
@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_files_get_the_permissions_the_umask_gives(local_server: LocalServer, synth: list[Path],
                                                   tmp_path: Path, mask: int,
                                                   umask: None) -> None:
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    os.umask(mask)
    result = dcmweb(local_server.url, "retrieve", f"studies/{uids_of(synth[0])[0]}",
                    "--output", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    saved = files_under(tmp_path / "out")
    assert saved == {where(tmp_path / "out", p) for p in synth}
    assert {stat.S_IMODE(p.stat().st_mode) for p in saved} == {0o666 & ~mask}


def test_a_trickling_download_is_cut_off_and_asked_again(synth: list[Path],
                                                         tmp_path: Path) -> None:
    study = study_of(synth[0])
    body = multipart([synth[0].read_bytes()], "t")
    content_type = "multipart/related; boundary=t"
    with Hostile() as fake:
        fake.route("GET", f"/{study}", once(
            trickle(200, content_type, body, 0.3),
            lambda req: req.reply(200, body, content_type)))
        result = dcmweb("--low-speed-limit", "100", "--low-speed-time", "1", fake.url,
                        "retrieve", study, "--output", str(tmp_path))
        asked = len(fake.requests)
    assert result.exit_code == 0, result.stderr
    assert asked == 2
    assert "answer cut off (the server sent" in result.stderr
    assert "below the low-speed limit of 100 bytes/s" in result.stderr
    assert files_under(tmp_path) == {where(tmp_path, synth[0])}


def test_an_endless_frame_stops_before_the_disk_is_full(synth: list[Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames, rendered images and bulk data are written by the same rules."""
    out = tmp_path / "out"
    monkeypatch.setattr(DiskSpace, "free", lambda self: (
        1024 ** 3 + 30 * 1024 ** 2 - sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
        100 * 1024 ** 3))
    path = "studies/1.2/series/3.4/instances/5.6/frames/1"
    with Hostile() as fake:
        fake.route("GET", f"/{path}", lambda req: endless_part(req, b"",
                                                               "application/octet-stream"))
        result = dcmweb(fake.url, "retrieve", path, "--output", str(out))
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1].startswith(f"dcmweb: error: stopped writing in {out}/")
    assert files_under(out) == set()


def test_a_part_of_another_type_is_not_saved(synth: list[Path], tmp_path: Path) -> None:
    study = study_of(synth[0])
    good = synth[0].read_bytes()
    body = (b"--m\r\nContent-Type: application/dicom\r\n\r\n" + good + b"\r\n"
            b"--m\r\nContent-Type: text/html\r\n\r\n" + LOGIN_PAGE + b"\r\n--m--\r\n")
    with Hostile() as fake:
        fake.route("GET", f"/{study}",
                   lambda req: req.reply(200, body, "multipart/related; boundary=m"))
        result = dcmweb(fake.url, "retrieve", study, "--output", str(tmp_path))
    assert result.exit_code == 6, result.stderr
    assert f"dcmweb: error: {study}: the server sent a text/html part where " \
        "application/dicom was asked for" in lines(result.stderr)
    assert files_under(tmp_path) == {where(tmp_path, synth[0])}


# -- files saved before an error are reported ---------------------------------------------------
def cut_after_two(synth: list[Path]) -> Callable[[Request], None]:
    """A study answer with two whole instances, cut inside the third (no length)."""
    body = multipart([p.read_bytes() for p in synth], "c")
    whole_two = len(multipart([p.read_bytes() for p in synth[:2]], "c")) - len(b"--c--\r\n")
    return lambda req: req.stream(200, "multipart/related; boundary=c",
                                  [body[:whole_two + 300]])


@pytest.mark.parametrize(("resend", "code", "message"), [
    (lambda req: req.reply(200, LOGIN_PAGE, "text/html"), 6, "the server answered HTTP 200 "
     'with text/html (a web page titled "Sign in - Example SSO"), not DICOMweb data'),
    (lambda req: req.json(404, {"error": {"code": 404, "message": "study not found"}}), 6,
     "study not found"),
], ids=["login-page", "404"])
def test_files_saved_before_the_resend_fails_are_reported(
        synth: list[Path], tmp_path: Path, resend: Callable[[Request], None], code: int,
        message: str) -> None:
    study = uids_of(synth[0])[0]
    with Hostile() as fake:
        fake.route("GET", f"/studies/{study}", once(cut_after_two(synth), resend))
        result = dcmweb(fake.url, "retrieve", f"studies/{study}", "--output", str(tmp_path))
    assert result.exit_code == code, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, p) for p in synth[:2]}
    assert sum(" saved as " in line for line in lines(result.stderr)) == 2
    assert any(f"studies/{study}: " in line and message in line
               for line in lines(result.stderr)), result.stderr
    assert "in 2 files; 1 failed" in result.stderr


def test_files_saved_before_an_outage_are_reported(synth: list[Path], tmp_path: Path) -> None:
    study = uids_of(synth[0])[0]
    with Hostile() as fake:
        fake.route("GET", f"/studies/{study}", once(cut_after_two(synth), status(503)))
        result = dcmweb("--outage-limit", "1", fake.url, "retrieve", f"studies/{study}",
                        "--output", str(tmp_path))
    assert result.exit_code == 5, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, p) for p in synth[:2]}
    assert "in 2 files" in result.stderr


@pytest.mark.parametrize("workers", ["1", "4"])
def test_a_folder_at_a_files_name_fails_that_file_alone(
        local_server: LocalServer, synth: list[Path], tmp_path: Path, workers: str) -> None:
    """`mkdir -p OUT/S/SE/I.dcm`: that file fails, named, with the real reason; the rest
    of a whole-store retrieve goes on (exit 6)."""
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    out = tmp_path / "out"
    taken = where(out, synth[1])
    taken.mkdir(parents=True)
    result = dcmweb("--workers", workers, local_server.url, "retrieve", "--output", str(out))
    assert result.exit_code == 6, result.stderr
    assert files_under(out) == {where(out, p) for p in synth if p != synth[1]}
    assert f"dcmweb: error: {study_of(synth[1])}: cannot save {taken}: a folder of that name " \
        "is in the way (move or rename it)" in lines(result.stderr)
    assert f"in {len(synth) - 1} files; 1 failed" in lines(result.stderr)[-2]
    assert lines(result.stderr)[-1] == "dcmweb: error: 1 item could not be retrieved"
    assert temp_leftovers(out) == []


def test_a_file_at_a_folders_name_fails_that_study_alone(
        local_server: LocalServer, tmp_path: Path) -> None:
    two = corpus.synthetic_files(tmp_path / "in", 2, studies=2)
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(two)} == {"stored"}
    out = tmp_path / "out"
    out.mkdir()
    (out / uids_of(two[0])[0]).write_text("notes")
    result = dcmweb(local_server.url, "retrieve", "--output", str(out))
    assert result.exit_code == 6, result.stderr
    assert files_under(out) == {out / uids_of(two[0])[0], where(out, two[1])}
    series_folder = where(out, two[0]).parent
    assert f"dcmweb: error: {study_of(two[0])}: cannot make the folder {series_folder}: " \
        f"{series_folder.parent} is a file (move or rename it)" in lines(result.stderr)


def test_files_saved_before_the_disk_fills_are_counted_beside_its_failure(
        local_server: LocalServer, synth: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The space guard stops the run after one file: exit 6, not 1 (which says nothing was
    saved), and the summary counts the stop as a failure."""
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    out = tmp_path / "out"
    keep = int(NINE_MIB * 0.05)
    room = synth[0].stat().st_size * 3 // 2  # one file fits, not two

    def pretend(self: DiskSpace) -> tuple[int, int]:
        used = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        return keep + room - used, NINE_MIB

    monkeypatch.setattr(DiskSpace, "free", pretend)
    result = dcmweb(local_server.url, "retrieve", study_of(synth[0]), "--output", str(out))
    assert result.exit_code == 6, result.stderr
    [saved] = files_under(out)
    assert f"saved as {saved}" in result.stderr
    # The study whose second file did not fit is counted too: not all of it is here.
    assert lines(result.stderr)[-2].endswith(
        " in 1 file; 1 failed, 1 study not retrieved (stopped, cut off)")
    assert lines(result.stderr)[-1].startswith(f"dcmweb: error: stopped writing in {out}/")
    assert temp_leftovers(out) == []


def test_a_write_error_before_any_file_is_saved_is_exit_1(
        local_server: LocalServer, synth: list[Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(synth)} == {"stored"}
    monkeypatch.setattr(DiskSpace, "free", lambda self: (1024, NINE_MIB))
    result = dcmweb(local_server.url, "retrieve", study_of(synth[0]), "-o", str(tmp_path / "o"))
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-2].endswith(" in 0 files")


@pytest.mark.parametrize("workers", ["1", "4"])
def test_a_study_cut_and_then_gone_keeps_its_saved_files_in_a_store_retrieve(
        synth: list[Path], tmp_path: Path, workers: str) -> None:
    study = uids_of(synth[0])[0]
    rows = [{"0020000D": {"vr": "UI", "Value": [study]}}]

    def listing(req: Request) -> None:
        req.json(200, rows if req.params.get("offset") == "0" else [], "application/dicom+json")

    with Hostile() as fake:
        fake.route("GET", "/studies", listing)
        fake.route("GET", f"/studies/{study}", once(cut_after_two(synth), status(404)))
        result = dcmweb("--workers", workers, fake.url, "retrieve", "--output", str(tmp_path))
    assert result.exit_code == 6, result.stderr
    assert files_under(tmp_path) == {where(tmp_path, p) for p in synth[:2]}
    assert "in 2 files; 1 failed" in result.stderr


def test_two_parts_for_one_instance_with_different_bytes_are_a_failure(
        synth: list[Path], tmp_path: Path) -> None:
    first = synth[0].read_bytes()
    other = first[:-4] + bytes(4 - i for i in range(4))  # same UIDs, other pixel bytes
    study = uids_of(synth[0])[0]
    body = multipart([first, other, first], "d")
    with Hostile() as fake:
        fake.route("GET", f"/studies/{study}",
                   lambda req: req.reply(200, body, "multipart/related; boundary=d"))
        result = dcmweb(fake.url, "retrieve", f"studies/{study}", "--output", str(tmp_path))
    assert result.exit_code == 6, result.stderr
    assert f"dcmweb: error: studies/{study}: the server sent {where(tmp_path, synth[0]).name} " \
        "twice in one answer, with different bytes; the first was kept" in lines(result.stderr)
    assert "in 1 file; 1 failed" in result.stderr
    assert sha(where(tmp_path, synth[0])) == sha(synth[0])
    assert temp_leftovers(tmp_path) == []


def test_a_trickling_study_is_an_outage_after_three_tries(synth: list[Path],
                                                          tmp_path: Path) -> None:
    study = study_of(synth[0])
    body = multipart([synth[0].read_bytes()], "t")
    with Hostile() as fake:
        fake.route("GET", f"/{study}", trickle(200, "multipart/related; boundary=t", body,
                                                  0.3))
        result = dcmweb("--low-speed-limit", "100", "--low-speed-time", "1", fake.url,
                        "retrieve", study, "--output", str(tmp_path))
        asked = len(fake.requests)
    assert result.exit_code == 5, result.stderr
    assert asked == 3
    assert lines(result.stderr)[-1].startswith(
        f"dcmweb: error: retrieve {study}: the server sent ")
    assert files_under(tmp_path) == set()


# -- instances other than the path asked for ----------------------------------------------------
def refusal(asked: str, name: str, sent: str) -> str:
    return f"dcmweb: error: {asked}: the server sent an instance whose {name} is {sent}, not "


@pytest.mark.parametrize("single_part", [False, True])
def test_another_instance_for_an_instance_path_is_refused(synth: list[Path], tmp_path: Path,
                                                          single_part: bool) -> None:
    asked = instance_path(synth[0])
    data = synth[1].read_bytes()  # same study and series, another SOP instance
    with Hostile() as fake:
        fake.route("GET", f"/{asked}", lambda req: req.reply(
            200, data, "application/dicom") if single_part else req.reply(
            200, multipart([data], "m"), "multipart/related; boundary=m"))
        options = ["--single-part"] if single_part else []
        result = dcmweb(fake.url, "retrieve", asked, *options, "--output", str(tmp_path))
        with Client(fake.url) as client:
            [failed] = client.retrieve(asked, tmp_path, single_part=single_part)
    assert result.exit_code == 1, result.stderr
    sop, other = uids_of(synth[0])[2], uids_of(synth[1])[2]
    assert refusal(asked, "SOPInstanceUID", other) + f"{sop} as asked" in lines(result.stderr)
    assert lines(result.stderr)[-1] == "dcmweb: error: nothing was retrieved (1 item failed)"
    assert (failed.status, failed.path) == ("failed", None)
    assert failed.message == f"the server sent an instance whose SOPInstanceUID is {other}, " \
        f"not {sop} as asked"
    assert files_under(tmp_path) == set()


def test_a_deflated_instance_of_another_study_is_refused(synth: list[Path],
                                                         pydicom_files: list[Path],
                                                         tmp_path: Path) -> None:
    """dicomhead cannot read a deflated data set: pydicom reads its UIDs from the file."""
    deflated = next(p for p in pydicom_files if p.name == "image_dfl.dcm")
    asked = instance_path(synth[0])
    with Hostile() as fake:
        fake.route("GET", f"/{asked}", lambda req: req.reply(
            200, multipart([deflated.read_bytes()], "m"), "multipart/related; boundary=m"))
        result = dcmweb(fake.url, "retrieve", asked, "--output", str(tmp_path))
    assert result.exit_code == 1, result.stderr
    assert any(line.startswith(refusal(asked, "StudyInstanceUID", uids_of(deflated)[0]))
               for line in lines(result.stderr)), result.stderr
    assert files_under(tmp_path) == set()


def test_parts_of_another_study_or_series_are_refused_the_rest_saved(
        synth: list[Path], tmp_path: Path) -> None:
    other_study = corpus.synthetic_files(tmp_path / "other", 1)[0]
    study, series, _ = uids_of(synth[0])
    body = multipart([synth[0].read_bytes(), other_study.read_bytes(),
                      synth[1].read_bytes()], "m")
    out = tmp_path / "out"
    with Hostile() as fake:
        for asked in (f"studies/{study}", f"studies/{study}/series/{series}"):
            fake.route("GET", f"/{asked}", lambda req: req.reply(
                200, body, "multipart/related; boundary=m"))
            result = dcmweb(fake.url, "retrieve", asked, "--output", str(out))
            assert result.exit_code == 6, result.stderr
            assert any(line.startswith(refusal(asked, "StudyInstanceUID",
                                               uids_of(other_study)[0]))
                       for line in lines(result.stderr)), result.stderr
            assert "in 2 files; 1 failed" in result.stderr
            assert files_under(out) == {where(out, synth[0]), where(out, synth[1])}


# -- a study split into series (-m) ------------------------------------------------------------
def test_a_series_the_series_search_leaves_out_is_still_retrieved_with_workers(
        tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 3, series_per_study=3)
    study = uids_of(files[0])[0]
    listed = files[:2]  # the series search leaves the third series out

    def count(tag: str, value: int) -> dict[str, dict[str, object]]:
        return {tag: {"vr": "IS", "Value": [value]}}

    series_rows = [{"0020000D": {"vr": "UI", "Value": [study]},
                    "0020000E": {"vr": "UI", "Value": [uids_of(f)[1]]}, **count("00201209", 1)}
                   for f in listed]
    study_row = {"0020000D": {"vr": "UI", "Value": [study]}, **count("00201208", 3)}

    def answer(sources: list[Path]) -> Callable[[Request], None]:
        return lambda req: req.reply(200, multipart([f.read_bytes() for f in sources], "b"),
                                     "multipart/related; boundary=b")

    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(
            200, [study_row] if req.params.get("offset", "0") == "0" else [],
            "application/dicom+json"))
        fake.route("GET", f"/studies/{study}/series", lambda req: req.json(
            200, series_rows if req.params.get("offset") == "0" else [],
            "application/dicom+json"))
        fake.route("GET", f"/studies/{study}", answer(files))
        for source in files:
            fake.route("GET", f"/studies/{study}/series/{uids_of(source)[1]}", answer([source]))
        out = tmp_path / "out"
        result = dcmweb("-m", fake.url, "retrieve", f"studies/{study}", "--output", str(out))
    assert result.exit_code == 0, result.stderr
    assert files_under(out) == {where(out, f) for f in files}
    assert "in 3 files" in result.stderr
