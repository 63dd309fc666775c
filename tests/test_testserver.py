"""Tests of dcmweb.testing.LocalServer itself, with plain requests and pydicom's real files."""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
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
    if resp.status_code == 204:  # no match, as Google answers it
        assert resp.content == b""
        return []
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
    xml_mp = requests.post(
        url,
        data=body,
        headers={"Content-Type": 'multipart/related; type="application/dicom+xml"; boundary=x'},
    )
    assert xml_mp.status_code == 415
    # DICOM JSON creation (test_testserver_wado.py) wants the JSON part first.
    json_mp = requests.post(
        url,
        data=body,
        headers={"Content-Type": 'multipart/related; type="application/dicom+json"; boundary=x'},
    )
    assert json_mp.status_code == 400


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


# -- QIDO ---------------------------------------------------------------------------------
def test_qido_levels_and_attributes(loaded: LocalServer) -> None:
    srv = loaded
    studies = qido(srv, "/studies")
    assert len(studies) == 5
    ct_study, ct_series, ct_sop = uids(blob(CT))
    ct = next(s for s in studies if value(s, "0020000D") == ct_study)
    assert ct["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "CompressedSamples^CT1"}]}
    assert value(ct, "00080020") == "20040119"
    assert value(ct, "00201206") == 1 and value(ct, "00201208") == 1
    assert ct["00080061"]["Value"] == ["CT"]
    assert "00081030" not in ct  # StudyDescription only on request
    rt_study = uids(blob(RTPLAN))[0]
    rt = next(s for s in studies if value(s, "0020000D") == rt_study)
    assert rt["00080061"]["Value"] == ["RTPLAN"]
    assert rt["00080050"] == {"vr": "SH"}  # empty AccessionNumber: no Value
    # Stable insertion order.
    assert [value(s, "0020000D") for s in studies][:2] == [ct_study, uids(blob(MR))[0]]

    series = qido(srv, "/series")
    assert len(series) == 5
    assert all("00201209" in s for s in series)
    assert "00100010" in series[0]  # study attributes come with a cross-study search
    in_study = qido(srv, f"/studies/{rt_study}/series")
    assert [value(s, "00080060") for s in in_study] == ["RTPLAN"]
    assert "00100010" not in in_study[0]

    instances = qido(srv, "/instances")
    assert value(instances[0], "00080018") == ct_sop
    assert len(instances) == 5
    assert value(instances[0], "00083002") == EXPLICIT_LE
    assert len(qido(srv, f"/studies/{rt_study}/instances")) == 1
    one = qido(srv, f"/studies/{ct_study}/series/{ct_series}/instances")
    assert [value(i, "00080018") for i in one] == [ct_sop]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"00100010": "lestrade^g"}, {JPEG}),
        ({"PatientID": "1CT1"}, {CT}),
        ({"StudyDate": "20040119"}, {CT}),
        ({"StudyDate": "20040101-20041231"}, {CT, MR}),
        ({"StudyDate": "-20031231"}, {RTPLAN, RTDOSE}),
        ({"StudyDate": "20030801-20030831"}, {RTDOSE}),
        ({"StudyDate": "20170101-"}, {JPEG}),
        ({"0020000D": "STUDY(MR)"}, {MR}),
        ({"StudyInstanceUID": "STUDY(MR),STUDY(CT)"}, {CT, MR}),
        ({"PatientName": "lest", "fuzzymatching": "true"}, {JPEG}),
        ({"PatientName": "lest"}, set()),
    ],
)
def test_qido_study_filters(loaded: LocalServer, params: dict, expected: set[str]) -> None:
    def resolve(text: str) -> str:
        for name in (CT, MR, JPEG):
            text = text.replace(f"STUDY({name.split('_')[0]})", uids(blob(name))[0])
        return text

    params = {key: resolve(v) for key, v in params.items()}
    got = {value(s, "0020000D") for s in qido(loaded, "/studies", **params)}
    assert got == {uids(blob(name))[0] for name in expected}


def test_qido_instance_filters_and_includefield(loaded: LocalServer) -> None:
    srv = loaded
    sop = uids(blob(RTDOSE))[2]
    (hit,) = qido(srv, "/instances", SOPInstanceUID=sop)
    assert value(hit, "00080060") == "RTDOSE"
    series_uid = uids(blob(MR))[1]
    (mr,) = qido(srv, "/series", SeriesInstanceUID=series_uid, includefield="SeriesDescription")
    assert "0008103E" in mr
    (ct,) = qido(srv, "/studies", PatientID="1CT1", includefield="00081030")
    assert value(ct, "00081030") == "e+1"
    (full,) = qido(srv, "/instances", SOPInstanceUID=sop, includefield="all")
    assert value(full, "00020010") == "1.2.840.10008.1.2"
    assert value(full, "00100010")["Alphabetic"] == "Lastname^Firstname"
    repeated = requests.get(
        srv.url + "/studies",
        params=[("PatientID", "1CT1"), ("includefield", "StudyDescription,StudyID")],
    )
    assert "00081030" in repeated.json()[0]


def test_every_testserver_option_shows_its_default() -> None:
    """Old dcmweb-testserver --help: '--port PORT  port; 0 picks a free one' and
    '--delete-delay DELETE_DELAY  seconds before a delete is done', no default shown."""
    from dcmweb.testing.cli import build_parser

    parser = build_parser()
    valued = [a for a in parser._actions if a.option_strings and a.nargs != 0]
    assert [a.dest for a in valued if "default" not in (a.help or "")] == []
    shown = " ".join(parser.format_help().split())
    assert "--port PORT port (default: 8080); 0 picks a free one" in shown
    assert "--delete-delay S seconds a study or series delete's operation runs" in shown
    assert "(default: 1.0)" in shown


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_testserver_says_its_version_as_dcmweb_does(flag: str) -> None:
    """Old dcmweb-testserver: 'unrecognized arguments: --version', exit 2."""
    from dcmweb import __version__

    result = subprocess.run([sys.executable, "-m", "dcmweb.testing", flag],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, f"dcmweb-testserver, version {__version__}\n", "")


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_a_value_its_vr_cannot_hold_is_answered_as_text(srv: LocalServer) -> None:
    """pydicom's badVR.dcm (NumberOfFrames IS "1A") is accepted; old dcmweb then answered
    500 to every instance search with includefield, and cut its study's metadata off."""
    assert stow(srv, [real_file("badVR.dcm").read_bytes(), blob(CT)]).status_code == 200
    study, series, sop = "1.2.999.999.99.9.9999.8888", "1.2.777.777.77.7.7777.7777", (
        "1.9.999.999.99.9.9999.9999.20030818153516")
    rows = {value(row, "00080018"): row for row in qido(srv, "/instances", includefield="all")}
    assert set(rows) == {sop, uids(blob(CT))[2]}
    assert rows[sop]["00280008"] == {"vr": "IS", "Value": ["1A"]}  # as CP 1861 allows
    assert value(rows[sop], "00280010") == 10  # the good values keep their JSON types
    assert len(qido(srv, "/instances", includefield="NumberOfFrames")) == 2
    resp = requests.get(f"{srv.url}/studies/{study}/series/{series}/metadata", timeout=30)
    assert resp.status_code == 200
    assert resp.json()[0]["00280008"] == {"vr": "IS", "Value": ["1A"]}


@pytest.mark.parametrize(
    "params",
    [
        {"NoSuchKey": "x"},
        {"7FE00010": "x"},  # a real tag, but not searchable
        {"includefield": "NotAKeyword"},
        {"offset": "1000001"},
        {"limit": "ten"},
        {"StudyDate": "2004"},
    ],
)
def test_qido_bad_queries_are_plain_text_400(loaded: LocalServer, params: dict) -> None:
    resp = requests.get(loaded.url + "/studies", params=params)
    assert resp.status_code == 400
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert resp.text.strip()


def test_qido_no_match_204_as_google_or_200(tmp_path: Path) -> None:
    """Google answers a search without results 204 (healthcare-api-dicomweb-cli#44)."""
    with LocalServer(tmp_path / "a") as srv:
        resp = requests.get(srv.url + "/studies")
        assert (resp.status_code, resp.content) == (204, b"")
    with LocalServer(tmp_path / "b", no_match_status=200) as srv:
        resp = requests.get(srv.url + "/studies", params={"PatientID": "nobody"})
        assert (resp.status_code, resp.text) == (200, "[]")


def test_qido_limit_is_clamped_to_google_caps() -> None:
    for level, asked, cap in [
        ("study", 9999, 5000),
        ("series", 6000, 5000),
        ("instance", 60000, 50000),
        ("study", 20, 20),
    ]:
        _, params, _ = build_query([("limit", str(asked))], level, None, None)
        assert params[-2:] == [cap, 0]
    _, params, _ = build_query([("offset", "7")], "study", None, None)
    assert params[-2:] == [100, 7]


@pytest.fixture(scope="module")
def bulk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalServer, list[str]]]:
    """151 studies, one of them with a series of 900 instances: 1,050 instances in all."""
    template = blob(RTPLAN)
    with LocalServer(tmp_path_factory.mktemp("bulk")) as srv:
        files = [synthetic(template) for _ in range(150)]
        study, series = generate_uid(), generate_uid()
        files += [synthetic(template, study, series) for _ in range(900)]
        for i in range(0, len(files), 350):
            assert stow(srv, files[i : i + 350]).status_code == 200
        order = [uids(f)[0] for f in files[:151]]
        yield srv, order


def test_qido_without_limit_is_silently_cut(bulk: tuple[LocalServer, list[str]]) -> None:
    srv, order = bulk
    studies = qido(srv, "/studies")
    assert len(studies) == 100
    assert [value(s, "0020000D") for s in studies] == order[:100]
    assert len(qido(srv, "/studies", limit=500)) == 151
    assert len(qido(srv, "/instances")) == 1000
    assert len(qido(srv, "/instances", limit=2000)) == 1050
    big = order[150]
    (row,) = [s for s in qido(srv, "/studies", limit=500) if value(s, "0020000D") == big]
    assert value(row, "00201208") == 900


def test_qido_offset_paging_visits_everything_once(bulk: tuple[LocalServer, list[str]]) -> None:
    srv, order = bulk
    seen: list[str] = []
    while True:
        page = qido(srv, "/studies", limit=40, offset=len(seen))
        seen += [value(s, "0020000D") for s in page]
        if len(page) < 40:
            break
    assert seen == order
    assert qido(srv, "/studies", limit=40, offset=151) == []


# -- WADO ---------------------------------------------------------------------------------
def test_wado_study_multipart_is_byte_identical(loaded: LocalServer) -> None:
    srv = loaded
    study = uids(blob(CT))[0]
    resp = requests.get(f"{srv.url}/studies/{study}", headers={"Accept": RAW_MP})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith(DICOM_MP)
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    ((head, data),) = split_multipart(resp)
    assert data == blob(CT)
    assert f"transfer-syntax={EXPLICIT_LE}" in head


def test_wado_accept_variants_and_series_level(loaded: LocalServer) -> None:
    srv = loaded
    study, series, _ = uids(blob(RTDOSE))
    url = f"{srv.url}/studies/{study}/series/{series}"
    for accept in ("multipart/related; type=application/dicom; transfer-syntax=*", "*/*", None):
        # A bare prepared request sent by Session.send carries no default Accept.
        request = requests.Request("GET", url).prepare()
        if accept is not None:
            request.headers["Accept"] = accept
        with requests.Session() as session:
            resp = session.send(request, timeout=10)
        assert resp.status_code == 200, accept
        assert "Accept" not in loaded.requests[-1].headers or accept is not None
        ((head, data),) = split_multipart(resp)
        if accept and "transfer-syntax=*" in accept:
            assert data == blob(RTDOSE), accept  # stored bytes, implicit VR kept
            assert head.endswith("transfer-syntax=1.2.840.10008.1.2"), head
        else:  # Google's default: Explicit VR LE
            assert head.endswith(f"transfer-syntax={EXPLICIT_LE}"), head
            ds = pydicom.dcmread(io.BytesIO(data))
            assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
            assert ds.SOPInstanceUID == uids(blob(RTDOSE))[2]
    assert requests.get(url, headers={"Accept": "application/json"}).status_code == 406


def test_wado_instance_single_part_and_404(loaded: LocalServer) -> None:
    srv = loaded
    study, series, sop = uids(blob(MR))
    url = f"{srv.url}/studies/{study}/series/{series}/instances/{sop}"
    resp = requests.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
    assert resp.headers["Content-Length"] == str(len(blob(MR)))
    assert resp.content == blob(MR)
    multi = requests.get(url, headers={"Accept": RAW_MP})
    assert [d for _, d in split_multipart(multi)] == [blob(MR)]
    for missing in (
        f"{srv.url}/studies/1.2.3",
        f"{srv.url}/studies/{study}/series/1.2.3",
        f"{srv.url}/studies/{study}/series/{series}/instances/1.2.3",
    ):
        gone = requests.get(missing, headers={"Accept": RAW_MP})
        assert gone.status_code == 404
        assert gone.headers["Content-Type"].startswith("application/json")
        assert gone.json()["error"]["status"] == "NOT_FOUND"
    # Single part makes no sense for a whole study.
    whole = requests.get(f"{srv.url}/studies/{study}", headers={"Accept": "application/dicom"})
    assert whole.status_code == 406


def test_wado_without_star_transcodes_to_explicit_le(loaded: LocalServer) -> None:
    srv = loaded
    study, series, sop = uids(blob(RTPLAN))
    url = f"{srv.url}/studies/{study}/series/{series}/instances/{sop}"
    resp = requests.get(url, headers={"Accept": "application/dicom"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].endswith(f"transfer-syntax={EXPLICIT_LE}")
    ds = pydicom.dcmread(io.BytesIO(resp.content))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert ds.SOPInstanceUID == sop
    assert ds.RTPlanLabel == pydicom.dcmread(real_file(RTPLAN)).RTPlanLabel
    ((head, data),) = split_multipart(requests.get(url, headers={"Accept": DICOM_MP}))
    assert EXPLICIT_LE in head and data != blob(RTPLAN)
    # Already Explicit VR LE: sent as stored.
    ct_study = uids(blob(CT))[0]
    ct_resp = requests.get(f"{srv.url}/studies/{ct_study}", headers={"Accept": DICOM_MP})
    assert [d for _, d in split_multipart(ct_resp)] == [blob(CT)]
    # Compressed: decoded like Google does (see test_testserver_wado.py); another
    # target syntax is refused before the answer starts.
    jpeg_study = uids(blob(JPEG))[0]
    accept = f"{DICOM_MP}; transfer-syntax=1.2.840.10008.1.2.4.90"
    refused = requests.get(f"{srv.url}/studies/{jpeg_study}", headers={"Accept": accept})
    assert refused.status_code == 406
    assert "not supported by this test server" in refused.json()["error"]["message"]
    raw = requests.get(f"{srv.url}/studies/{jpeg_study}", headers={"Accept": RAW_MP})
    assert [d for _, d in split_multipart(raw)] == [blob(JPEG)]


def test_wado_big_endian_is_converted(srv: LocalServer) -> None:
    import numpy
    data = blob("MR_small_bigendian.dcm")
    assert stow(srv, [data]).status_code == 200
    study, series, sop = uids(data)
    url = f"{srv.url}/studies/{study}/series/{series}/instances/{sop}"
    resp = requests.get(url, headers={"Accept": "application/dicom"})
    assert resp.status_code == 200
    ds = pydicom.dcmread(io.BytesIO(resp.content))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
    reference = pydicom.dcmread(real_file(MR)).pixel_array
    assert numpy.array_equal(ds.pixel_array, reference)


def test_wado_multipart_orders_by_series_then_instance(srv: LocalServer) -> None:
    template = blob(RTPLAN)
    study, first, second = generate_uid(), generate_uid(), generate_uid()
    files = [
        synthetic(template, study, first),
        synthetic(template, study, second),
        synthetic(template, study, first),
    ]
    assert stow(srv, files).status_code == 200
    resp = requests.get(f"{srv.url}/studies/{study}", headers={"Accept": RAW_MP})
    assert [d for _, d in split_multipart(resp)] == [files[0], files[2], files[1]]


# -- DELETE and operations ----------------------------------------------------------------
def poll(srv: LocalServer, name: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        op = requests.get(f"{srv.root_url}/v1/{name}").json()
        if op.get("done") or time.monotonic() > deadline:
            return op
        time.sleep(0.05)


def test_delete_study_is_a_long_running_operation(loaded: LocalServer) -> None:
    srv = loaded
    study = uids(blob(CT))[0]
    resp = requests.delete(f"{srv.url}/studies/{study}")
    assert resp.status_code == 200
    name = resp.json()["name"]
    assert re.fullmatch(r"projects/demo/locations/local/datasets/ds/operations/\d{15,}", name)
    running = requests.get(f"{srv.root_url}/v1/{name}").json()
    assert "done" not in running
    meta = running["metadata"]
    assert meta["@type"] == "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata"
    assert meta["apiMethodName"].endswith("DicomWebService.DeleteStudy")
    assert meta["counter"]["pending"] == "1" and "endTime" not in meta
    # No inserts into a study while its delete runs.
    blocked = stow(srv, [blob(CT)])
    assert blocked.status_code == 409
    assert "being deleted" in value(blocked.json()["00081198"]["Value"][0], "00090097")
    done = poll(srv, name)
    assert done["done"] is True
    assert done["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}
    assert done["metadata"]["counter"] == {"success": "1", "failure": "0", "pending": "0"}
    assert done["metadata"]["endTime"] >= done["metadata"]["createTime"]
    assert qido(srv, "/studies", StudyInstanceUID=study) == []
    assert requests.get(f"{srv.url}/studies/{study}").status_code == 404
    assert len(qido(srv, "/studies")) == 4
    assert stow(srv, [blob(CT)]).status_code == 200  # allowed again once done


def test_delete_series_instance_and_unknowns(loaded: LocalServer) -> None:
    srv = loaded
    study, series, _ = uids(blob(MR))
    resp = requests.delete(f"{srv.url}/studies/{study}/series/{series}")
    assert resp.status_code == 200
    op = poll(srv, resp.json()["name"])
    assert op["metadata"]["apiMethodName"].endswith("DeleteSeries") and op["done"]
    assert qido(srv, "/series", SeriesInstanceUID=series) == []
    r_study, r_series, r_sop = uids(blob(RTPLAN))
    gone = requests.delete(f"{srv.url}/studies/{r_study}/series/{r_series}/instances/{r_sop}")
    assert (gone.status_code, gone.json()) == (200, {})
    assert qido(srv, "/instances", SOPInstanceUID=r_sop) == []
    for url in (
        f"{srv.url}/studies/1.2.3",
        f"{srv.url}/studies/{study}/series/{series}",
        f"{srv.url}/studies/{r_study}/series/{r_series}/instances/{r_sop}",
        f"{srv.root_url}/v1/projects/demo/locations/local/datasets/ds/operations/12345",
    ):
        method = "GET" if "operations" in url else "DELETE"
        missing = requests.request(method, url)
        assert missing.status_code == 404, url
        assert missing.json()["error"]["code"] == 404


# -- faults, auth, routing ----------------------------------------------------------------
def test_fault_503_with_retry_after_then_success(srv: LocalServer) -> None:
    srv.inject_fault(503, retry_after="2", method="POST", path_contains="/studies")
    body, ctype = multipart([blob(CT)])
    first = requests.post(srv.url + "/studies", data=body, headers={"Content-Type": ctype})
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "2"
    assert first.json()["error"]["status"] == "UNAVAILABLE"
    assert qido(srv, "/instances") == []  # the failed attempt stored nothing
    second = requests.post(srv.url + "/studies", data=body, headers={"Content-Type": ctype})
    assert second.status_code == 200
    posts = [r for r in srv.requests if r.method == "POST"]
    assert [r.status for r in posts] == [503, 200]
    digest = hashlib.sha256(body).hexdigest()
    assert all(r.body_sha256 == digest and r.body_length == len(body) for r in posts)


def test_fault_matching_count_and_fifo(srv: LocalServer) -> None:
    srv.inject_fault(429, count=2, method="GET", path_contains="/series")
    srv.inject_fault(500, method="GET")
    assert requests.get(srv.url + "/studies").status_code == 500  # first fault does not match
    assert requests.get(srv.url + "/series").status_code == 429
    assert requests.get(srv.url + "/series").status_code == 429
    assert requests.get(srv.url + "/series").status_code == 204  # the empty store's answer
    srv.inject_fault(502, count=5)
    srv.clear_faults()
    assert requests.get(srv.url + "/studies").status_code == 204


@pytest.mark.parametrize("status", [204, 304])
def test_an_injected_status_without_body_sends_none(srv: LocalServer, status: int) -> None:
    """Old server: the JSON envelope went out with a 204, and the client on the same
    connection read it as the status line of its next answer."""
    srv.inject_fault(status=status)
    with requests.Session() as session:
        first = session.get(srv.url + "/studies", timeout=5)
        assert first.status_code == status and first.content == b""
        assert "Content-Length" not in first.headers
        assert session.get(srv.url + "/studies", timeout=5).status_code == 204


def test_chaos_matches_its_method_in_any_case(srv: LocalServer) -> None:
    """Old server: Chaos(method="post") injected nothing, so a chaos test passed idle."""
    from dcmweb.testing.faults import Chaos

    srv.faults.set_chaos(Chaos(seed=1, rates={"500": 1.0}, method="post"))
    codes = [requests.post(srv.url + "/studies", data=b"x", timeout=5,
                           headers={"Content-Type": "application/dicom"}).status_code
             for _ in range(3)]  # fmt: skip
    assert codes == [500] * 3 and srv.faults.chaos is not None
    assert srv.faults.chaos.injected == {"500": 3}
    assert requests.get(srv.url + "/studies", timeout=5).status_code == 204


def test_fault_drop_closes_the_connection(srv: LocalServer) -> None:
    srv.inject_fault(drop=True, method="POST")
    body, ctype = multipart([blob(MR)])
    with pytest.raises(requests.ConnectionError):
        requests.post(srv.url + "/studies", data=body, headers={"Content-Type": ctype})
    record = srv.requests[-1]
    assert record.status is None and record.body_length == len(body)
    assert qido(srv, "/instances") == []
    again = requests.post(srv.url + "/studies", data=body, headers={"Content-Type": ctype})
    assert again.status_code == 200


def test_fault_delay_causes_read_timeout(srv: LocalServer) -> None:
    srv.inject_fault(delay=0.6)
    with pytest.raises(requests.ReadTimeout):
        requests.get(srv.url + "/studies", timeout=0.2)
    started = time.monotonic()
    assert requests.get(srv.url + "/studies", timeout=5).status_code == 204  # the empty store
    assert time.monotonic() - started < 0.5
    srv.inject_fault(404, delay=0.3)
    started = time.monotonic()
    assert requests.get(srv.url + "/studies", timeout=5).status_code == 404
    assert time.monotonic() - started >= 0.3
    # docs/testserver.md's slow answer: the real answer, late (a status would replace it).
    srv.inject_fault(delay=0.3)
    started = time.monotonic()
    slow = requests.get(srv.url + "/studies", timeout=5)
    assert time.monotonic() - started >= 0.3
    assert slow.ok and "injected fault" not in slow.text


def test_control_endpoints_over_http(srv: LocalServer) -> None:
    control = srv.root_url + "/_control"
    bad = requests.post(control + "/faults", json={"status": 503, "colour": "red"})
    assert bad.status_code == 400
    ok = requests.post(control + "/faults", json={"status": 503, "count": 2, "retry_after": "1"})
    assert ok.status_code == 200
    assert requests.get(srv.url + "/studies").status_code == 503
    assert requests.delete(control + "/faults").status_code == 200
    assert requests.get(srv.url + "/studies").status_code == 204
    listed = requests.get(control + "/requests").json()
    assert [r["status"] for r in listed if "/dicomWeb/" in r["path"]] == [503, 204]
    assert all(len(r["body_sha256"]) == 64 for r in listed)
    assert requests.delete(control + "/requests").status_code == 200
    assert [r.path for r in srv.requests] == ["/_control/requests"]


def test_bearer_token_401_and_runtime_change(tmp_path: Path) -> None:
    with LocalServer(tmp_path, token="s3cret") as srv:
        missing = requests.get(srv.url + "/studies")
        assert missing.status_code == 401
        assert missing.json()["error"]["status"] == "UNAUTHENTICATED"
        wrong = requests.get(srv.url + "/studies", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        good = requests.get(srv.url + "/studies", headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 204
        srv.token = "fresh"
        again = requests.get(srv.url + "/studies", headers={"Authorization": "Bearer s3cret"})
        assert again.status_code == 401
        token = requests.post(srv.root_url + "/token", data={"grant_type": "x"}).json()
        assert token == {
            "access_token": "fresh",
            "expires_in": 3600,
            "token_type": "Bearer",
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        assert requests.get(srv.url + "/studies", headers=headers).status_code == 204


@pytest.mark.parametrize(("fault", "message"), [
    ({"method": 5}, "method must be a string, not 5"),
    ({"status": "503"}, 'status must be an integer, not "503"'),
    ({"delay": "2"}, 'delay must be a number, not "2"'),
    ({"drop": "false"}, 'drop must be true or false, not "false"'),
    ({"count": True}, "count must be an integer, not true"),
    ({"body_contains": ["1.2.3"]}, 'body_contains must be a string, not ["1.2.3"]'),
    # Was 200, then 500 "timestamp out of range" to the next request.
    ({"delay": math.nan}, "delay must be a finite number of seconds, at least 0, not nan"),
    ({"stall": math.inf}, "stall must be a finite number of seconds, at least 0, not inf"),
    ({"delay": -1}, "delay must be a finite number of seconds, at least 0, not -1"),
])  # fmt: skip
def test_a_fault_of_the_wrong_type_is_refused(srv: LocalServer, fault: dict,
                                              message: str) -> None:
    """Old server: 200, then a 500 for every request it met (or a drop for "false")."""
    resp = requests.post(srv.root_url + "/_control/faults", data=json.dumps(fault),  # NaN too
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == f"invalid fault: {message}"
    assert len(srv.faults) == 0
    assert requests.post(srv.url + "/studies", data=b"x", timeout=5,
                         headers={"Content-Type": "application/dicom"}).status_code == 409


def test_with_a_token_the_control_paths_need_it_and_credentials_are_not_shown(
        tmp_path: Path) -> None:
    """Old server: /_control answered anyone, and its request log quoted every
    Authorization header, real Google tokens a client sent included."""
    with LocalServer(tmp_path, token="s3cret", token_endpoint=False) as srv:
        google = {"Authorization": "Bearer ya29.REAL-LOOKING-ACCESS-TOKEN"}
        assert requests.get(srv.url + "/studies", headers=google).status_code == 401
        control = srv.root_url + "/_control"
        assert requests.get(control + "/requests").status_code == 401
        assert requests.post(control + "/faults", json={"status": 500}).status_code == 401
        assert requests.delete(control + "/requests", headers=google).status_code == 401
        assert len(srv.faults) == 0
        assert requests.post(srv.token_url, data={"grant_type": "x"}).status_code == 404
        ours = {"Authorization": "Bearer s3cret"}
        listed = requests.get(control + "/requests", headers=ours)
        assert listed.status_code == 200
        shown = [r["headers"].get("Authorization") for r in listed.json()]
        assert shown == ["Bearer ***", None, None, "Bearer ***", None]
        assert "REAL-LOOKING" not in listed.text and "s3cret" not in listed.text
        # In the test's own process the records keep what arrived, to be checked.
        assert srv.requests[0].headers["Authorization"] == google["Authorization"]


def test_credentials_in_a_query_are_not_shown(srv: LocalServer) -> None:
    """Was: /_control/requests listed ?access_token=s3cr3t&key=AIza... as sent."""
    query = "access_token=s3cr3t-token&key=AIzaSyFAKE&X-Amz-Signature=ab12&limit=5"
    requests.get(f"{srv.url}/studies?{query}", timeout=5)
    listed = requests.get(srv.root_url + "/_control/requests", timeout=5)
    assert listed.json()[0]["path"].endswith(
        "/studies?access_token=***&key=***&X-Amz-Signature=***&limit=5")
    assert "s3cr3t" not in listed.text and "AIza" not in listed.text


def test_a_streamed_answer_to_http_1_0_is_not_chunked(loaded: LocalServer) -> None:
    """HTTP/1.0 has no chunked encoding (old server: chunk sizes inside the body)."""
    study = uids(blob(CT))[0]
    path = loaded.url.split(str(loaded.port), 1)[1] + f"/studies/{study}/metadata"
    with socket.create_connection(("127.0.0.1", loaded.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        answer = b""
        while data := sock.recv(65536):  # the server closes: the end of the body
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"transfer-encoding" not in head.lower()
    assert [obj["00080018"]["Value"][0] for obj in json.loads(body)] == [uids(blob(CT))[2]]


def test_unknown_path_404_and_wrong_method_405(srv: LocalServer) -> None:
    assert requests.get(srv.root_url + "/v1/nothing/here").status_code == 404
    assert requests.get(srv.url + "/studies/1/series/2/instances/3/frames/1").status_code == 404
    wrong = requests.put(srv.url + "/studies", data=b"x")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == 405
    assert set(wrong.headers["Allow"].split(", ")) == {"GET", "POST"}
    assert requests.post(srv.url + "/series").status_code == 405
    assert requests.get(srv.root_url + "/token").status_code == 405


# -- robustness and persistence -----------------------------------------------------------
def test_client_dropping_mid_upload_leaves_nothing_behind(srv: LocalServer) -> None:
    body, ctype = multipart([blob(CT)])
    head = (
        f"POST {srv.base_path}/studies HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(head + body[: len(body) // 2])
    deadline = time.monotonic() + 5
    while not srv.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    (record,) = srv.requests
    assert record.complete is False and record.status is None
    assert record.body_length == len(body) // 2
    assert list((srv.data_dir / "tmp").iterdir()) == []
    assert list((srv.data_dir / "objects").rglob("*.dcm")) == []
    assert qido(srv, "/instances") == []  # and the server still answers


def test_bad_chunked_framing_gets_400(srv: LocalServer) -> None:
    head = f"POST {srv.base_path}/studies HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(head.encode() + b"Content-Type: application/dicom\r\n\r\nzz\r\nabc\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400")
    assert list((srv.data_dir / "tmp").iterdir()) == []


def test_index_survives_restart(tmp_path: Path) -> None:
    with LocalServer(tmp_path) as srv:
        assert stow(srv, [blob(CT), blob(MR)]).status_code == 200
    with LocalServer(tmp_path) as srv:
        studies = qido(srv, "/studies")
        assert {value(s, "0020000D") for s in studies} == {uids(blob(CT))[0], uids(blob(MR))[0]}
        study, series, sop = uids(blob(CT))
        url = f"{srv.url}/studies/{study}/series/{series}/instances/{sop}"
        got = requests.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
        assert got.content == blob(CT)
        assert stow(srv, [blob(CT)]).status_code == 200  # still a byte-identical duplicate


def test_concurrent_stows_keep_every_instance(srv: LocalServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    template = blob(RTPLAN)
    files = [synthetic(template) for _ in range(24)]
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda f: stow(srv, [f]).status_code, files))
    assert codes == [200] * 24
    assert len(qido(srv, "/instances")) == 24


def test_a_stow_racing_a_delete_of_its_instance_leaves_the_file_retrievable(
        srv: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The STOW of the same bytes lands between the delete's index change and its file
    removal (old server: answered 200, listed, but its file gone: WADO 404, for good)."""
    import threading

    data = blob(MR)
    study, series, sop = uids(data)
    url = f"{srv.url}/studies/{study}/series/{series}/instances/{sop}"
    assert stow(srv, [data]).status_code == 200
    codes: list[int] = []
    racer = threading.Thread(target=lambda: codes.append(stow(srv, [data]).status_code))
    real_file_path = srv.store.file_path

    def store_meanwhile(row: Any) -> Path:  # the delete is about to remove the file
        monkeypatch.setattr(srv.store, "file_path", real_file_path)
        racer.start()
        racer.join(timeout=0.5)  # done at once unless the delete holds the store
        return real_file_path(row)

    monkeypatch.setattr(srv.store, "file_path", store_meanwhile)
    assert requests.delete(url).status_code == 200
    racer.join()
    assert codes == [200]
    assert [value(i, "00080018") for i in qido(srv, "/instances")] == [sop]
    got = requests.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert got.status_code == 200 and got.content == data


def test_a_duplicate_stow_puts_back_a_file_missing_from_the_store(srv: LocalServer) -> None:
    data = blob(CT)
    study, series, sop = uids(data)
    assert stow(srv, [data]).status_code == 200
    (stored,) = srv.store.instances(study, series, sop)
    srv.store.file_path(stored).unlink()
    assert stow(srv, [data]).status_code == 200  # a duplicate: still the same instance
    url = f"{srv.url}/studies/{study}/series/{series}/instances/{sop}"
    got = requests.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert got.status_code == 200 and got.content == data
    assert srv.duplicates == [sop]


# -- the console script -------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("how", ["script", "module"])
def test_console_script_prints_url_serves_and_stops_on_sigterm(tmp_path: Path, how: str) -> None:
    script = Path(sys.executable).with_name("dcmweb-testserver")
    if how == "script" and not script.exists():
        pytest.skip("dcmweb-testserver is not installed in this environment")
    command = [str(script)] if how == "script" else [sys.executable, "-m", "dcmweb.testing"]
    port = free_port()
    command += ["--port", str(port), "--data", str(tmp_path / "data"), "--delete-delay", "0.1"]
    extended = how == "module"  # one of the two runs takes the wider set of search keys
    command += ["--search-keys", "extended", "--search-lag", "0.5"] if extended else []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url == (
            f"http://127.0.0.1:{port}/v1/projects/demo/locations/local/datasets/ds"
            "/dicomStores/store/dicomWeb"
        )
        assert stow_url(url, blob(CT)).status_code == 200
        assert len(requests.get(url + "/studies", timeout=5).json()) == 1
        by_sex = requests.get(url + "/instances", params={"PatientSex": "O"}, timeout=5)
        assert by_sex.status_code == (200 if extended else 400)
        lag = requests.get(url.split("/v1/")[0] + "/_control/search-lag", timeout=5).json()
        assert lag == {"seconds": 0.5 if extended else 0.0}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    assert out == ""  # the URL was the only line
    assert err == ""  # no request log without --verbose
    assert (tmp_path / "data" / "index.sqlite").exists()


def run_testserver(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dcmweb.testing", *args],
                          capture_output=True, text=True, timeout=30)  # fmt: skip


def test_console_script_names_a_bad_port_or_data_folder(tmp_path: Path) -> None:
    """Old dcmweb-testserver: --port 99999 a traceback, --data naming a file 'cannot
    listen on 127.0.0.1:0: ...'."""
    bad_port = run_testserver("--port", "99999")
    assert bad_port.returncode == 2
    assert bad_port.stderr.splitlines()[-1] == (
        "dcmweb-testserver: error: argument --port: port 99999 is not between 0 and 65535")
    (tmp_path / "afile").write_text("")
    bad_data = run_testserver("--port", "0", "--data", str(tmp_path / "afile"))
    assert (bad_data.returncode, bad_data.stdout) == (1, "")
    assert bad_data.stderr == (
        f"dcmweb-testserver: cannot use --data {tmp_path / 'afile'}: [Errno 20] Not a"
        f" directory: '{tmp_path / 'afile' / 'objects'}'\n")


@pytest.mark.parametrize("endpoint", [False, True])
def test_console_script_token_guards_everything_unless_the_endpoint_hands_it_out(
        tmp_path: Path, endpoint: bool) -> None:
    command = [sys.executable, "-m", "dcmweb.testing", "--port", "0", "--token", "s3cret"]
    command += ["--token-endpoint"] if endpoint else []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        root = proc.stdout.readline().strip().split("/v1/")[0]
        token = requests.post(root + "/token", data={"grant_type": "x"}, timeout=5)
        assert token.status_code == (200 if endpoint else 404)
        control = requests.get(root + "/_control/requests", timeout=5)
        assert control.status_code == 401
        assert control.headers["Server"] == "dcmweb-testserver"  # no trailing space
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def stow_url(url: str, data: bytes) -> requests.Response:
    headers = {"Content-Type": "application/dicom"}
    return requests.post(url + "/studies", data=data, headers=headers, timeout=10)


def test_expect_100_continue_is_never_required(srv: LocalServer) -> None:
    data = blob(CT)
    head = (
        f"POST {srv.base_path}/studies HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        f"Content-Type: application/dicom\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(head + data)  # body at once, without waiting for 100 Continue
        answer = b""
        while b"</NativeDicomModel>" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    assert b"HTTP/1.1 200" in answer
    assert qido(srv, "/instances", SOPInstanceUID=uids(data)[2])


class _Trickle(io.RawIOBase):
    """A reader that hands out a few bytes per read, to cross every buffer edge."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        step = 1 + self.pos % 5
        out = self.data[self.pos : self.pos + step]
        self.pos += len(out)
        return out


def test_multipart_splitter_handles_tiny_reads_and_lookalike_boundaries(tmp_path: Path) -> None:
    from dcmweb.testing.multipart import MultipartError, iter_parts

    parts = [b"", b"--b0undar\r\n--b0undar\r\n-", b"\r\n\r\n--", blob(RTPLAN)]
    body, _ = multipart(parts)
    counter = iter(range(1000))

    def new_temp() -> Path:
        return tmp_path / f"part{next(counter)}"

    got = list(iter_parts(_Trickle(b"preamble\r\n" + body + b"epilogue"), "b0undary", new_temp))
    assert [p.path.read_bytes() for p in got] == parts
    assert got[3].sha256 == hashlib.sha256(parts[3]).hexdigest()
    assert all(p.headers == {"content-type": "application/dicom"} for p in got)
    truncated = _Trickle(body[: len(body) // 2])
    complete = 0
    with pytest.raises(MultipartError):
        for part in iter_parts(truncated, "b0undary", new_temp):
            part.path.unlink()  # the caller owns the complete parts
            complete += 1
    assert complete == 3
    assert len(list(tmp_path.iterdir())) == 4  # the half part was removed by the splitter


def test_stop_during_a_request_prints_no_traceback(tmp_path: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    """A server stopped while it still handles an upload (a benchmark's SIGTERM, a
    fixture's teardown) printed 'Cannot operate on a closed database' with a traceback."""
    import threading

    server = LocalServer(tmp_path / "store").start()
    server.inject_fault(delay=0.5, method="POST")  # the upload is handled after stop()
    answers: list[object] = []

    def upload() -> None:
        try:
            answers.append(stow(server, [blob(CT)]).status_code)
        except requests.RequestException as exc:  # the connection is closed under it
            answers.append(type(exc).__name__)

    thread = threading.Thread(target=upload)
    thread.start()
    time.sleep(0.2)
    server.stop()
    thread.join(timeout=10)
    time.sleep(0.6)  # the handler thread wakes from its delay and meets the closed store
    assert answers, "the upload never ended"
    assert "Traceback" not in capfd.readouterr().err
