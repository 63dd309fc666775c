"""Other clients against the local server: dicomweb-client's whole API, and the shapes
of metadata, frames and rendered answers compared with Orthanc's."""

from __future__ import annotations

import io
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.uid import generate_uid
from test_testserver import blob, real_file, split_multipart, uids

from dcmweb.testing import LocalServer
from dcmweb_devtools.orthanc import Orthanc

CT, MULTI, RLE_MULTI = "CT_small.dcm", "emri_small.dcm", "emri_small_RLE.dcm"
NS = {"d": "http://dicom.nema.org/PS3.19/models/NativeDICOM"}


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[LocalServer]:
    with LocalServer(tmp_path / "store", delete_delay=0.2) as server:
        yield server


def datasets(*names: str) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(real_file(name)) for name in names]


def first(obj: dict[str, Any], tag: str) -> Any:
    return obj[tag]["Value"][0]


def test_dicomweb_client_whole_api(srv: LocalServer) -> None:
    client = DICOMwebClient(url=srv.url)
    ct, multi, rle = datasets(CT, MULTI, RLE_MULTI)
    # The RLE file is the same instance as MULTI, compressed: make it another one.
    rle.StudyInstanceUID, rle.SeriesInstanceUID = generate_uid(), generate_uid()
    rle.SOPInstanceUID = rle.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    client.store_instances(datasets=[ct, multi, rle])
    study, series, sop = (str(ct.StudyInstanceUID), str(ct.SeriesInstanceUID),
                          str(ct.SOPInstanceUID))  # fmt: skip
    # The three searches.
    studies = client.search_for_studies(search_filters={"PatientID": str(ct.PatientID)})
    assert [first(s, "0020000D") for s in studies] == [study]
    assert {first(s, "0020000E") for s in client.search_for_series(study)} == {series}
    found = client.search_for_instances(study, series, fields=["Rows"])
    assert [first(i, "00080018") for i in found] == [sop]
    assert first(found[0], "00280010") == 128
    # Retrieve with its default Accept: studies and series as Explicit VR LE (the
    # compressed one decoded), an instance as stored (it asks transfer-syntax=*).
    [whole] = client.retrieve_study(study)
    assert whole.SOPInstanceUID == sop and whole.PixelData == ct.PixelData
    [in_series] = client.retrieve_series(study, series)
    assert in_series.SOPInstanceUID == sop
    [decoded] = client.retrieve_study(str(rle.StudyInstanceUID))
    assert decoded.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert (decoded.pixel_array == rle.pixel_array).all()
    stored = client.retrieve_instance(str(rle.StudyInstanceUID), str(rle.SeriesInstanceUID),
                                      str(rle.SOPInstanceUID))  # fmt: skip
    assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
    assert (stored.pixel_array == rle.pixel_array).all()
    # Metadata at the three levels, and the bulk data its URI names.
    [meta] = client.retrieve_study_metadata(study)
    assert client.retrieve_series_metadata(study, series) == [meta]
    assert client.retrieve_instance_metadata(study, series, sop) == meta
    assert first(meta, "00100020") == str(ct.PatientID)
    [pixels] = client.retrieve_bulkdata(meta["7FE00010"]["BulkDataURI"])
    assert pixels == ct.PixelData
    # Frames and rendered.
    m_study, m_series, m_sop = (str(multi.StudyInstanceUID), str(multi.SeriesInstanceUID),
                                str(multi.SOPInstanceUID))  # fmt: skip
    frames = client.retrieve_instance_frames(m_study, m_series, m_sop, frame_numbers=[2, 5])
    assert frames == [multi.pixel_array[i].astype("<u2").tobytes() for i in (1, 4)]
    png = client.retrieve_instance_rendered(study, series, sop, media_types=("image/png",),
                                            params={"viewport": "32,32"})  # fmt: skip
    assert Image.open(io.BytesIO(png)).size == (32, 32)
    jpeg = client.retrieve_instance_frames_rendered(m_study, m_series, m_sop, frame_numbers=[3])
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    # Delete: instance at once, series and study as operations.
    client.delete_instance(study, series, sop)
    assert client.search_for_instances(study) == []
    client.delete_series(m_study, m_series)
    client.delete_study(str(rle.StudyInstanceUID))
    deadline = time.monotonic() + 10
    while client.search_for_studies() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.search_for_studies() == []


def test_shapes_agree_with_orthanc(srv: LocalServer, orthanc: Orthanc) -> None:
    """Where Orthanc supports the call, its answer and ours have the same shape."""
    data = {name: blob(name) for name in (CT, MULTI)}
    for base in (srv.url, orthanc.url):
        for body in data.values():
            resp = requests.post(base + "/studies", data=_multipart(body), timeout=30,
                                 headers={"Content-Type": _MP})  # fmt: skip
            assert resp.status_code == 200, resp.text
    study, series, sop = uids(data[MULTI])
    path = f"/studies/{study}/series/{series}/instances/{sop}"
    ours, theirs = (requests.get(b + path + "/metadata", timeout=30).json()[0]
                    for b in (srv.url, orthanc.url))  # fmt: skip
    for tag in ("00080018", "00100010", "00280008", "00280010", "00280011", "00280100"):
        assert ours[tag] == theirs[tag], tag
    assert set(ours["7FE00010"]) == set(theirs["7FE00010"]) == {"vr", "BulkDataURI"}
    xml_accept = 'multipart/related; type="application/dicom+xml"'
    for base in (srv.url, orthanc.url):
        resp = requests.get(base + path + "/metadata", headers={"Accept": xml_accept},
                            timeout=30)  # fmt: skip
        [(_, body)] = split_multipart(resp)
        root = ET.fromstring(body)
        rows = root.find("d:DicomAttribute[@tag='00280010']/d:Value", NS)
        assert rows is not None and rows.text == "64", base
    octets = 'multipart/related; type="application/octet-stream"'
    ours_frames, theirs_frames = (
        [b for _, b in split_multipart(requests.get(base + path + "/frames/1,3", timeout=30,
                                                    headers={"Accept": octets}))]
        for base in (srv.url, orthanc.url)
    )  # fmt: skip
    assert ours_frames == theirs_frames
    for base in (srv.url, orthanc.url):
        resp = requests.get(base + path + "/rendered", headers={"Accept": "image/png"},
                            timeout=30)  # fmt: skip
        image = Image.open(io.BytesIO(resp.content))
        assert (image.format, image.size) == ("PNG", (64, 64)), base


_MP = 'multipart/related; type="application/dicom"; boundary=BOUNDARY'


def _multipart(body: bytes) -> bytes:
    return (b"--BOUNDARY\r\nContent-Type: application/dicom\r\n\r\n" + body
            + b"\r\n--BOUNDARY--\r\n")  # fmt: skip


# dicomweb-client sets the private FailureDetail and PrivateCreator by keyword: pydicom warns.
@pytest.mark.filterwarnings("ignore:Camel case attribute")
def test_dicomweb_client_reads_a_partial_failure(srv: LocalServer) -> None:
    """Our XML answer with Google's private FailureDetail parses in dicomweb-client."""
    client = DICOMwebClient(url=srv.url)
    ct, mr = datasets(CT, "MR_small.dcm")
    client.store_instances(datasets=[ct])
    ct.PatientID = "changed"  # same UIDs, other bytes: refused
    answer = client.store_instances(datasets=[ct, mr])
    [failed] = answer.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == ct.SOPInstanceUID
    assert int(failed.FailureReason) == 272
    [stored] = answer.ReferencedSOPSequence
    assert stored.ReferencedSOPInstanceUID == mr.SOPInstanceUID
