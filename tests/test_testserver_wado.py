"""The local server's metadata, frames, bulkdata, rendered and transcoding routes."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import requests
from test_testserver import blob, real_file, split_multipart, stow, uids

from dcmweb.testing import LocalServer

NS = {"d": "http://dicom.nema.org/PS3.19/models/NativeDICOM"}
CT = "CT_small.dcm"  # explicit VR LE, 128x128, 16 bit
MULTI = "emri_small.dcm"  # 10 frames, 64x64, 16 bit, explicit VR LE
RLE_MULTI = "emri_small_RLE.dcm"  # the same frames, RLE Lossless
JPEG = "SC_rgb_jpeg_dcmtk.dcm"  # JPEG baseline RGB
SEQ = "rtplan.dcm"  # nested sequences


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[LocalServer]:
    with LocalServer(tmp_path / "store", delete_delay=0.3) as server:
        yield server


def put(srv: LocalServer, name: str) -> str:
    """Store a pydicom test file; its instance URL."""
    data = blob(name)
    resp = stow(srv, [data])
    assert resp.status_code == 200, resp.text
    study, series, sop = uids(data)
    return f"{srv.url}/studies/{study}/series/{series}/instances/{sop}"


# -- metadata -----------------------------------------------------------------------------
def test_instance_metadata_json_has_bulkdata_uris_that_resolve(srv: LocalServer) -> None:
    url = put(srv, CT)
    resp = requests.get(url + "/metadata", timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/dicom+json"
    [obj] = resp.json()
    ds = pydicom.dcmread(real_file(CT))
    assert obj["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": str(ds.PatientName)}]}
    assert obj["00280010"] == {"vr": "US", "Value": [128]}
    assert "00020010" not in obj  # the file meta group is not metadata
    assert obj["7FE00010"] == {"vr": "OW", "BulkDataURI": url + "/bulkdata/7FE00010"}
    # Every attribute of the file is there, the pixels as a URI only.
    assert set(obj) == {f"{int(tag):08X}" for tag in ds.keys()}  # noqa: SIM118


def test_study_and_series_metadata_list_every_instance(srv: LocalServer) -> None:
    put(srv, CT)
    url = put(srv, SEQ)
    study_url = url.split("/series/")[0]
    for level in (study_url, url.split("/instances/")[0]):
        resp = requests.get(level + "/metadata", timeout=30)
        assert resp.status_code == 200
        sops = [o["00080018"]["Value"][0] for o in resp.json()]
        assert sops == [url.rsplit("/", 1)[1]]


def test_metadata_sequences_nest_and_404_406(srv: LocalServer) -> None:
    url = put(srv, SEQ)
    [obj] = requests.get(url + "/metadata", timeout=30).json()
    ds = pydicom.dcmread(real_file(SEQ))
    beams = obj["300A00B0"]["Value"]
    assert len(beams) == len(ds.BeamSequence)
    assert beams[0]["300A00C2"]["Value"] == [ds.BeamSequence[0].BeamName]
    assert requests.get(url + "x/metadata", timeout=30).status_code == 404
    resp = requests.get(url + "/metadata", headers={"Accept": "image/png"}, timeout=30)
    assert resp.status_code == 406


def test_metadata_xml_parts_are_native_dicom_model(srv: LocalServer) -> None:
    url = put(srv, CT)
    accept = 'multipart/related; type="application/dicom+xml"'
    resp = requests.get(url + "/metadata", headers={"Accept": accept}, timeout=30)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith(accept)
    [(head, body)] = split_multipart(resp)
    assert "application/dicom+xml" in head
    root = ET.fromstring(body)
    assert root.tag == f"{{{NS['d']}}}NativeDicomModel"
    name = root.find("d:DicomAttribute[@keyword='PatientName']/d:PersonName/d:Alphabetic", NS)
    assert name is not None
    assert name.find("d:FamilyName", NS).text == "CompressedSamples"
    rows = root.find("d:DicomAttribute[@tag='00280010']/d:Value", NS)
    assert (rows.get("number"), rows.text) == ("1", "128")
    pixels = root.find("d:DicomAttribute[@tag='7FE00010']/d:BulkData", NS)
    assert pixels.get("uri") == url + "/bulkdata/7FE00010"


def test_json_and_xml_metadata_carry_the_same_tags(srv: LocalServer) -> None:
    url = put(srv, SEQ)
    [obj] = requests.get(url + "/metadata", timeout=30).json()
    accept = 'multipart/related; type="application/dicom+xml"'
    resp = requests.get(url + "/metadata", headers={"Accept": accept}, timeout=30)
    [(_, body)] = split_multipart(resp)
    root = ET.fromstring(body)
    assert [a.get("tag") for a in root.findall("d:DicomAttribute", NS)] == sorted(obj)
    assert re.search(rb'keyword="BeamSequence"', body)
