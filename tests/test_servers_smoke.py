"""The test servers and corpora themselves, checked with plain requests (no dcmweb code)."""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import pydicom
import pytest
import requests

from dcmweb_devtools import corpus
from dcmweb_devtools.orthanc import Orthanc
from dcmweb_devtools.procs import http_session, listening_sockets, wait_for_background_stops
from dcmweb_devtools.tinypacs import TinyPacs

ANY_TS_MULTIPART = 'multipart/related; type="application/dicom"; transfer-syntax=*'
LOOPBACK_ADDRS = {"127.0.0.1", "::1"}


# -- helpers ---------------------------------------------------------------------------------
def stow(session: requests.Session, base_url: str, files: Iterable[Path]) -> requests.Response:
    boundary = uuid.uuid4().hex
    body = bytearray()
    for path in files:
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        body += path.read_bytes() + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return session.post(
        base_url + "/studies",
        data=bytes(body),
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        },
        timeout=60,
    )


def multipart_parts(response: requests.Response) -> list[bytes]:
    """Bodies of a multipart/related response (or the whole body if it is single-part)."""
    ctype = response.headers["Content-Type"]
    if not ctype.lower().startswith("multipart/"):
        return [response.content]
    params = dict(
        p.strip().split("=", 1) for p in ctype.split(";")[1:] if "=" in p
    )
    delimiter = b"--" + params["boundary"].strip('"').encode()
    parts = []
    for chunk in response.content.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        _headers, _, body = chunk.partition(b"\r\n\r\n")
        parts.append(body.removesuffix(b"\r\n"))
    return parts


def instance_url(base_url: str, path: Path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return (
        f"{base_url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def dataset_bytes(part10: bytes) -> bytes:
    """The bytes after the File Meta group (preamble + DICM + group 0002)."""
    assert part10[128:132] == b"DICM" and part10[132:136] == b"\x02\x00\x00\x00"
    (group_length,) = struct.unpack("<I", part10[140:144])
    return part10[144 + group_length :]


def assert_loopback_only(pid: int, port: int) -> None:
    sockets = listening_sockets(pid)
    assert port in {p for _, p in sockets}, sockets
    assert {addr for addr, _ in sockets} <= LOOPBACK_ADDRS, sockets


def wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def ct_small(pydicom_files: list[Path]) -> Path:
    return next(p for p in pydicom_files if p.name == "CT_small.dcm")


# -- Orthanc -----------------------------------------------------------------------------------
def test_orthanc_listens_on_loopback_only(orthanc: Orthanc) -> None:
    assert orthanc.url == f"http://127.0.0.1:{orthanc.port}/dicom-web"
    assert orthanc.rest_url == f"http://127.0.0.1:{orthanc.port}"
    assert_loopback_only(orthanc.pid, orthanc.port)
    with http_session() as s:
        r = s.get(orthanc.url + "/studies", timeout=10)
    assert (r.status_code, r.json()) == (200, [])


def test_orthanc_stow_then_wado_is_byte_identical(orthanc: Orthanc, ct_small: Path) -> None:
    with http_session() as s:
        r = stow(s, orthanc.url, [ct_small])
        assert r.status_code == 200, r.text
        assert orthanc.instance_count() == 1
        r = s.get(instance_url(orthanc.url, ct_small),
                  headers={"Accept": ANY_TS_MULTIPART}, timeout=30)
    assert r.status_code == 200
    assert multipart_parts(r) == [ct_small.read_bytes()]


def test_orthanc_clear_empties_the_store(orthanc: Orthanc, pydicom_files: list[Path]) -> None:
    files = corpus.orthanc_safe(pydicom_files)[:5]
    with http_session() as s:
        assert stow(s, orthanc.url, files).status_code == 200
    assert orthanc.instance_count() == len(corpus.unique_by_sop(files))
    orthanc.clear()
    assert orthanc.instance_count() == 0


def test_orthanc_class_stops_its_pid(orthanc_install: object, support_cache_dir: Path,
                                     tmp_path: Path) -> None:
    with Orthanc(tmp_path / "o", cache_dir=support_cache_dir) as server:
        pid = server.pid
        assert server.running
        assert server.startup_seconds is not None and server.startup_seconds < 30
    assert not server.running
    assert not Path(f"/proc/{pid}").exists()


_fixture_pids: dict[str, int] = {}


def test_orthanc_fixture_pid_recorded(orthanc: Orthanc) -> None:
    _fixture_pids["orthanc"] = orthanc.pid
    assert Path(f"/proc/{orthanc.pid}").exists()


def test_orthanc_fixture_stopped_its_pid() -> None:
    """Runs after the test above: its fixture's Orthanc got SIGTERM and is gone."""
    if "orthanc" not in _fixture_pids:
        pytest.skip("needs test_orthanc_fixture_pid_recorded to run first")
    wait_for_background_stops()
    assert wait_gone(_fixture_pids["orthanc"])


def test_orthanc_session_is_shared(orthanc_session: Orthanc) -> None:
    with http_session() as s:
        assert s.get(orthanc_session.url + "/studies?limit=1", timeout=10).status_code == 200


def test_orthanc_rejects_exactly_the_listed_files(
    orthanc: Orthanc, pydicom_files: list[Path], pydicom_data_files: list[Path]
) -> None:
    """Keeps corpus.ORTHANC_REJECTS honest: one STOW per file, 400 iff listed."""
    refused = set()
    with http_session() as s:
        for path in pydicom_files + pydicom_data_files:
            status = stow(s, orthanc.url, [path]).status_code
            assert status in (200, 400), (path, status)
            if status == 400:
                refused.add(path.name)
    assert refused == corpus.ORTHANC_REJECTS
    expected = corpus.unique_by_sop(corpus.orthanc_safe(pydicom_files + pydicom_data_files))
    assert orthanc.instance_count() == len(expected)


# -- tiny-pacs ---------------------------------------------------------------------------------
def test_tinypacs_listens_on_loopback_only(tinypacs: TinyPacs) -> None:
    assert tinypacs.url == f"http://127.0.0.1:{tinypacs.port}/dicomweb"
    assert_loopback_only(tinypacs.pid, tinypacs.port)
    assert tinypacs.dimse_port in {p for _, p in listening_sockets(tinypacs.pid)}
    with http_session() as s:
        assert s.get(tinypacs.url + "/studies", timeout=10).status_code in (200, 204)


def test_tinypacs_stow_then_wado_keeps_the_dataset(tinypacs: TinyPacs, ct_small: Path) -> None:
    """tiny-pacs rewrites the File Meta group (its own Implementation Class UID) but returns
    the dataset after it byte for byte; instance retrieve is single-part."""
    with http_session() as s:
        r = stow(s, tinypacs.url, [ct_small])
        assert r.status_code == 200, r.text
        assert stow(s, tinypacs.url, [ct_small]).status_code == 409  # duplicate
        r = s.get(instance_url(tinypacs.url, ct_small),
                  headers={"Accept": ANY_TS_MULTIPART}, timeout=30)
    assert r.status_code == 200
    [part] = multipart_parts(r)
    assert dataset_bytes(part) == dataset_bytes(ct_small.read_bytes())


def test_tinypacs_class_stops_its_pid(tinypacs_command: list[str], support_cache_dir: Path,
                                      tmp_path: Path) -> None:
    with TinyPacs(tmp_path / "tp", cache_dir=support_cache_dir) as server:
        pid = server.pid
        assert server.running
    assert not server.running
    assert not Path(f"/proc/{pid}").exists()


def test_tinypacs_fresh_is_empty(tinypacs_fresh: TinyPacs) -> None:
    with http_session() as s:
        assert s.get(tinypacs_fresh.url + "/studies", timeout=10).status_code == 204


# -- corpora -------------------------------------------------------------------------------------
def test_pydicom_files(pydicom_files: list[Path]) -> None:
    assert len(pydicom_files) >= 79
    assert pydicom_files == sorted(pydicom_files)
    assert all(p.read_bytes()[128:132] == b"DICM" for p in pydicom_files)


def test_pydicom_data_files(pydicom_data_files: list[Path]) -> None:
    assert len(pydicom_data_files) >= 20
    assert all(p.read_bytes()[128:132] == b"DICM" for p in pydicom_data_files)
    assert not set(pydicom_data_files) & set(corpus.pydicom_files())


def test_orthanc_rejects_are_corpus_file_names(
    pydicom_files: list[Path], pydicom_data_files: list[Path]
) -> None:
    names = {p.name for p in pydicom_files + pydicom_data_files}
    assert names >= corpus.ORTHANC_REJECTS


def test_unique_by_sop_keeps_first_file_per_uid(pydicom_files: list[Path]) -> None:
    mr = [p for p in pydicom_files if p.name.startswith("MR_small")]
    assert len(mr) > 1
    assert corpus.unique_by_sop(mr) == mr[:1]
    groups = corpus.duplicate_sop_groups(pydicom_files)
    assert any(set(mr) <= set(g) for g in groups)


def test_synthetic_files(tmp_path: Path) -> None:
    paths = corpus.synthetic_files(tmp_path / "a", 12, studies=2, series_per_study=3, seed="s")
    datasets = [pydicom.dcmread(p) for p in paths]
    assert len({ds.SOPInstanceUID for ds in datasets}) == 12
    assert len({ds.StudyInstanceUID for ds in datasets}) == 2
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 6
    again = corpus.synthetic_files(tmp_path / "b", 1, studies=2, series_per_study=3, seed="s")
    assert pydicom.dcmread(again[0]).SOPInstanceUID == datasets[0].SOPInstanceUID


def test_synthetic_files_are_stored_by_orthanc(orthanc: Orthanc, tmp_path: Path) -> None:
    paths = corpus.synthetic_files(tmp_path, 20, studies=2)
    with http_session() as s:
        assert stow(s, orthanc.url, paths).status_code == 200
    assert orthanc.instance_count() == 20
