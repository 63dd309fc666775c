"""Tests of dcmweb.testing.LocalServer itself, with plain requests and pydicom's real files."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dcmweb.testing import LocalServer
from dcmweb.testing.qido import build_query

NS = {"d": "http://dicom.nema.org/PS3.19/models/NativeDICOM"}
DICOM_MP = 'multipart/related; type="application/dicom"'
RAW_MP = 'multipart/related; type="application/dicom"; transfer-syntax=*'
EXPLICIT_LE = "1.2.840.10008.1.2.1"


# -- helpers ------------------------------------------------------------------------------
def real_file(name: str) -> Path:
    """A pydicom test file, checked to be a Part 10 file (DICM at offset 128)."""
    found = get_testdata_file(name, download=False)
    if found is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    path = Path(str(found))
    with open(path, "rb") as fh:
        assert fh.read(132)[128:] == b"DICM", name
    return path


# Real files with distinct SOP instance UIDs: explicit LE, implicit LE and JPEG.
CT, MR, RTPLAN, RTDOSE, JPEG = (
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
)


def blob(name: str) -> bytes:
    return real_file(name).read_bytes()


def uids(data: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def multipart(parts: list[bytes], boundary: str = "b0undary", quoted: bool = True) -> tuple:
    body = b"".join(
        b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n" % (boundary.encode(), p)
        for p in parts
    )
    body += b"--%s--\r\n" % boundary.encode()
    shown = f'"{boundary}"' if quoted else boundary
    return body, f"{DICOM_MP}; boundary={shown}"


def stow(
    srv: LocalServer, parts: list[bytes], *, study: str | None = None, json_answer: bool = True
) -> requests.Response:
    body, ctype = multipart(parts)
    headers = {"Content-Type": ctype}
    if json_answer:
        headers["Accept"] = "application/dicom+json"
    url = srv.url + "/studies" + (f"/{study}" if study else "")
    return requests.post(url, data=body, headers=headers, timeout=30)


def split_multipart(resp: requests.Response) -> list[tuple[str, bytes]]:
    """(part headers, part body) of a multipart answer; a plain split is enough here."""
    boundary = re.search(r"boundary=\"?([^\";]+)", resp.headers["Content-Type"]).group(1)
    pieces = resp.content.split(b"--" + boundary.encode())
    assert pieces[-1].startswith(b"--"), "closing boundary missing"
    parts = []
    for piece in pieces[1:-1]:
        head, _, body = piece[2:].partition(b"\r\n\r\n")
        assert body.endswith(b"\r\n")
        parts.append((head.decode(), body[:-2]))
    return parts


def qido(srv: LocalServer, path: str, **params: Any) -> list[dict[str, Any]]:
    resp = requests.get(srv.url + path, params=params, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/dicom+json")
    return resp.json()


def value(obj: dict[str, Any], tag: str) -> Any:
    return obj[tag]["Value"][0]


def synthetic(template: bytes, study: str | None = None, series: str | None = None) -> bytes:
    """A copy of a small real file with new UIDs (for volume)."""
    ds = pydicom.dcmread(io.BytesIO(template))
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[LocalServer]:
    with LocalServer(tmp_path / "store", delete_delay=0.3) as server:
        yield server


@pytest.fixture
def loaded(srv: LocalServer) -> LocalServer:
    resp = stow(srv, [blob(CT), blob(MR), blob(RTPLAN), blob(RTDOSE), blob(JPEG)])
    assert resp.status_code == 200, resp.text
    return srv


# -- STOW ---------------------------------------------------------------------------------
def test_stow_multipart_xml_answer_and_files_kept_byte_for_byte(srv: LocalServer) -> None:
    names = [CT, MR, RTPLAN, RTDOSE]
    resp = stow(srv, [blob(n) for n in names], json_answer=False)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/dicom+xml"
    root = ET.fromstring(resp.content)
    seq = root.find("d:DicomAttribute[@tag='00081199']", NS)
    items = seq.findall("d:Item", NS)
    assert len(items) == 4
    assert root.find("d:DicomAttribute[@tag='00081198']", NS) is None
    for name, item in zip(names, items, strict=True):
        study, series, sop = uids(blob(name))
        got_sop = item.find("d:DicomAttribute[@tag='00081155']/d:Value", NS).text
        url = item.find("d:DicomAttribute[@tag='00081190']/d:Value", NS).text
        assert got_sop == sop
        assert url == f"{srv.url}/studies/{study}/series/{series}/instances/{sop}"
        assert item.find("d:DicomAttribute[@tag='00081150']/d:Value", NS).text.startswith("1.2.")
    stored = {p.read_bytes() for p in (srv.data_dir / "objects").rglob("*.dcm")}
    assert stored == {blob(n) for n in names}
    assert (srv.data_dir / "index.sqlite").exists()
    assert list((srv.data_dir / "tmp").iterdir()) == []


def test_stow_json_answer_has_study_retrieve_url(srv: LocalServer) -> None:
    study, _, sop = uids(blob(CT))
    resp = stow(srv, [blob(CT)])
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/dicom+json"
    body = resp.json()
    assert value(body, "00081190") == f"{srv.url}/studies/{study}"
    (item,) = body["00081199"]["Value"]
    assert value(item, "00081155") == sop
    assert value(item, "00081150") == "1.2.840.10008.5.1.4.1.1.2"


def test_identical_restore_is_200_and_conflict_is_409_with_detail(srv: LocalServer) -> None:
    assert stow(srv, [blob(MR)]).status_code == 200
    again = stow(srv, [blob(MR)])
    assert again.status_code == 200
    assert "00081198" not in again.json()
    # Same SOPInstanceUID, different bytes (implicit VR copy of the same image).
    conflict = stow(srv, [blob("MR_small_implicit.dcm")])
    assert conflict.status_code == 409
    (item,) = conflict.json()["00081198"]["Value"]
    assert value(item, "00081197") == 272
    assert value(item, "00090010") == "GOOGLE"
    assert "already exists with different content" in value(item, "00090097")
    assert value(item, "00081155") == uids(blob(MR))[2]
    xml = stow(srv, [blob("MR_small_implicit.dcm")], json_answer=False)
    assert xml.status_code == 409
    detail = ET.fromstring(xml.content).find(".//d:DicomAttribute[@tag='00090097']", NS)
    assert detail.get("privateCreator") == "GOOGLE"
    assert "already exists" in detail.find("d:Value", NS).text


def test_non_dicom_part_gives_202_with_one_failure(srv: LocalServer) -> None:
    resp = stow(srv, [blob(CT), b"this is not a DICOM file at all"])
    assert resp.status_code == 202
    body = resp.json()
    assert len(body["00081199"]["Value"]) == 1
    (failed,) = body["00081198"]["Value"]
    assert value(failed, "00081197") == 0xC000
    assert "not a readable DICOM" in value(failed, "00090097")
    only_bad = stow(srv, [b"garbage"])
    assert only_bad.status_code == 409


def test_stow_to_wrong_study_fails_with_a900(srv: LocalServer) -> None:
    resp = stow(srv, [blob(CT)], study="1.2.3.4")
    assert resp.status_code == 409
    (failed,) = resp.json()["00081198"]["Value"]
    assert value(failed, "00081197") == 0xA900
    assert qido(srv, "/instances") == []
    right = stow(srv, [blob(CT)], study=uids(blob(CT))[0])
    assert right.status_code == 200


def test_single_part_stow_storage_class_and_415(srv: LocalServer) -> None:
    url = srv.url + "/studies"
    ok = requests.post(
        url,
        data=blob(RTPLAN),
        headers={"Content-Type": "application/dicom", "Storage-Class": "NEARLINE"},
    )
    assert ok.status_code == 200
    assert ok.headers["Content-Type"] == "application/dicom+xml"
    row = srv.store.query("SELECT storage_class, transfer_syntax_uid FROM instances")[0]
    assert tuple(row) == ("NEARLINE", "1.2.840.10008.1.2")
    bad_class = requests.post(
        url, data=blob(CT), headers={"Content-Type": "application/dicom", "Storage-Class": "HOT"}
    )
    assert bad_class.status_code == 400
    assert bad_class.json()["error"]["status"] == "INVALID_ARGUMENT"
    wrong = requests.post(url, data=b"{}", headers={"Content-Type": "application/json"})
    assert wrong.status_code == 415
    body, _ = multipart([blob(CT)])
    json_mp = requests.post(
        url,
        data=body,
        headers={"Content-Type": 'multipart/related; type="application/dicom+json"; boundary=x'},
    )
    assert json_mp.status_code == 415


def test_chunked_upload_with_preamble_and_unquoted_boundary(srv: LocalServer) -> None:
    body, ctype = multipart([blob(CT), blob(MR)], boundary="plain-boundary", quoted=False)
    body = b"This is a preamble.\r\n" + body

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(body), 7000):
            yield body[i : i + 7000]

    resp = requests.post(
        srv.url + "/studies",
        data=pieces(),
        headers={"Content-Type": ctype, "Accept": "application/dicom+json"},
    )
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["00081199"]["Value"]) == 2
    record = srv.requests[-1]
    assert record.headers.get("Transfer-Encoding") == "chunked"
    assert record.body_length == len(body)
    assert record.body_sha256 == hashlib.sha256(body).hexdigest()
    assert record["status"] == 200


def test_large_upload_and_retrieve_stream_without_holding_the_body(srv: LocalServer) -> None:
    import tracemalloc

    ds = pydicom.dcmread(real_file(CT))
    ds.Rows, ds.Columns = 4096, 2560  # 20 MiB of 16-bit pixels
    ds.PixelData = b"\x01\x02" * (4096 * 2560)
    study = str(ds.StudyInstanceUID)
    big = srv.data_dir.parent / "big.dcm"
    ds.save_as(big, enforce_file_format=True)
    del ds
    tracemalloc.start()
    try:
        with open(big, "rb") as fh:
            resp = requests.post(
                srv.url + "/studies", data=fh, headers={"Content-Type": "application/dicom"}
            )
        assert resp.status_code == 200
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with requests.get(
            f"{srv.url}/studies/{study}", headers={"Accept": RAW_MP}, stream=True
        ) as got:
            received = sum(len(c) for c in got.iter_content(65536))
        _, retrieve_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received > big.stat().st_size
    # Client and server run in this process; both together stay far below 20 MiB.
    assert upload_peak < 8 * 1024 * 1024, f"upload peak {upload_peak} bytes"
    assert retrieve_peak < 8 * 1024 * 1024, f"retrieve peak {retrieve_peak} bytes"
