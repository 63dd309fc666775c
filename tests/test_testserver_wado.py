"""The local server's metadata, frames, bulkdata, rendered and transcoding routes."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import requests
from PIL import Image
from pydicom.encaps import generate_frames
from test_testserver import RAW_MP, blob, real_file, split_multipart, stow, uids

from dcmweb.testing import LocalServer

NS = {"d": "http://dicom.nema.org/PS3.19/models/NativeDICOM"}
CT = "CT_small.dcm"  # explicit VR LE, 128x128, 16 bit
MULTI = "emri_small.dcm"  # 10 frames, 64x64, 16 bit, explicit VR LE
RLE_MULTI = "emri_small_RLE.dcm"  # the same frames, RLE Lossless
JPEG = "SC_rgb_jpeg_dcmtk.dcm"  # JPEG baseline RGB
SEQ = "rtplan.dcm"  # nested sequences
EXPLICIT_LE = "1.2.840.10008.1.2.1"


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


@pytest.mark.filterwarnings("ignore:Found unknown escape sequence")  # the ESC, on reading
def test_xml_metadata_is_well_formed_whatever_the_values_hold(srv: LocalServer) -> None:
    """XML 1.0 forbids most C0 controls even as character references: the bytes 07, 1B
    and 01 went out raw and no XML parser read the part. They are sent as U+FFFD; what
    XML can hold (a CR, markup characters) parses back to the stored value."""
    ds = pydicom.dcmread(real_file(CT))
    ds.StudyDescription = "bell\x07 esc\x1b \x01 end"
    ds.PatientName = "Ctrl^Char\x02"
    ds.SeriesDescription = "]]> <tag> & \"q\" 'a'"
    ds.ImageComments = "line one\r\nline two\rthree"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert stow(srv, [out.getvalue()]).status_code == 200
    study, series, sop = uids(out.getvalue())
    url = f"{srv.url}/studies/{study}/series/{series}/instances/{sop}"
    accept = 'multipart/related; type="application/dicom+xml"'
    resp = requests.get(url + "/metadata", headers={"Accept": accept}, timeout=30)
    [(_, body)] = split_multipart(resp)
    root = ET.fromstring(body)  # expat: raises on a document that is not well-formed

    def text(keyword: str, inner: str = "d:Value") -> str | None:
        return root.find(f"d:DicomAttribute[@keyword='{keyword}']/{inner}", NS).text

    assert text("StudyDescription") == "bell\ufffd esc\ufffd \ufffd end"
    assert text("PatientName", "d:PersonName/d:Alphabetic/d:GivenName") == "Char\ufffd"
    assert text("SeriesDescription") == "]]> <tag> & \"q\" 'a'"
    assert text("ImageComments") == "line one\r\nline two\rthree"


# -- frames and bulk data -----------------------------------------------------------------
OCTET_MP = 'multipart/related; type="application/octet-stream"'


def frames(url: str, numbers: str, accept: str = OCTET_MP) -> list[tuple[str, bytes]]:
    resp = requests.get(f"{url}/frames/{numbers}", headers={"Accept": accept}, timeout=30)
    assert resp.status_code == 200, resp.text
    return split_multipart(resp)


@pytest.mark.parametrize("name", [MULTI, RLE_MULTI])
def test_frames_equal_what_pydicom_decodes(srv: LocalServer, name: str) -> None:
    url = put(srv, name)
    expected = pydicom.dcmread(real_file(name)).pixel_array
    got = frames(url, "1,3,10")
    assert [body for _, body in got] == [expected[i].astype("<u2").tobytes() for i in (0, 2, 9)]
    assert all(f"transfer-syntax={EXPLICIT_LE}" in head for head, _ in got)


def test_frames_as_stored_with_transfer_syntax_star(srv: LocalServer) -> None:
    url = put(srv, RLE_MULTI)
    ds = pydicom.dcmread(real_file(RLE_MULTI))
    stored = list(generate_frames(ds.PixelData, number_of_frames=10))
    got = frames(url, "2,1", OCTET_MP + "; transfer-syntax=*")
    assert [body for _, body in got] == [stored[1], stored[0]]
    assert all(ds.file_meta.TransferSyntaxUID in head for head, _ in got)


def test_jpeg_frames_as_image_jpeg_and_single_part(srv: LocalServer) -> None:
    url = put(srv, JPEG)
    [(head, body)] = frames(url, "1", 'multipart/related; type="image/jpeg"')
    assert head.startswith("Content-Type: image/jpeg") and body.startswith(b"\xff\xd8")
    resp = requests.get(url + "/frames/1", headers={"Accept": "application/octet-stream"},
                        timeout=30)  # fmt: skip
    ds = pydicom.dcmread(real_file(JPEG))
    assert resp.status_code == 200 and resp.content == ds.pixel_array.tobytes()


@pytest.mark.parametrize(("numbers", "status"), [("0", 400), ("1,x", 400), ("11", 404)])
def test_bad_frame_numbers(srv: LocalServer, numbers: str, status: int) -> None:
    url = put(srv, MULTI)
    resp = requests.get(f"{url}/frames/{numbers}", headers={"Accept": OCTET_MP}, timeout=30)
    assert resp.status_code == status, resp.text


def test_frames_refuse_image_types_of_uncompressed_and_unknown_syntaxes(srv: LocalServer) -> None:
    url = put(srv, MULTI)
    for accept in ('multipart/related; type="image/jpeg"',
                   OCTET_MP + "; transfer-syntax=1.2.840.10008.1.2.4.50"):  # fmt: skip
        resp = requests.get(url + "/frames/1", headers={"Accept": accept}, timeout=30)
        assert resp.status_code == 406, accept


def test_bulkdata_uri_from_metadata_returns_the_value(srv: LocalServer) -> None:
    url = put(srv, CT)
    [obj] = requests.get(url + "/metadata", timeout=30).json()
    uri = obj["7FE00010"]["BulkDataURI"]
    resp = requests.get(uri, headers={"Accept": OCTET_MP}, timeout=30)
    assert resp.status_code == 200
    [(_, body)] = split_multipart(resp)
    assert body == pydicom.dcmread(real_file(CT)).PixelData
    single = requests.get(uri, headers={"Accept": "application/octet-stream"}, timeout=30)
    assert single.content == body
    assert requests.get(url + "/bulkdata/00100010", timeout=30).status_code == 404
    assert requests.get(url + "/bulkdata/7FE00010/x", timeout=30).status_code == 404


# -- rendered -----------------------------------------------------------------------------
def rendered(url: str, accept: str = "image/png", **params: str) -> requests.Response:
    return requests.get(url + "/rendered", headers={"Accept": accept}, params=params, timeout=30)


def test_rendered_png_has_the_viewport_size(srv: LocalServer) -> None:
    url = put(srv, CT)
    resp = rendered(url, viewport="64,64")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(resp.content))
    assert (image.format, image.size, image.mode) == ("PNG", (64, 64), "L")


def test_rendered_jpeg_default_window_and_frame(srv: LocalServer) -> None:
    url = put(srv, MULTI)
    resp = requests.get(url + "/frames/2/rendered", timeout=30)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(resp.content)).size == (64, 64)
    narrow = rendered(url, window="100,1")  # a 1-wide window: only black and white
    histogram = Image.open(io.BytesIO(narrow.content)).histogram()
    assert {v for v, count in enumerate(histogram) if count} == {0, 255}
    assert rendered(url, window="0,1,sigmoid").status_code == 200


def test_rendered_color_jpeg_instance(srv: LocalServer) -> None:
    url = put(srv, JPEG)
    resp = rendered(url, "image/jpeg", quality="50", viewport="50,100")
    image = Image.open(io.BytesIO(resp.content))
    ds = pydicom.dcmread(real_file(JPEG))
    assert image.mode == "RGB"
    assert image.size == (50, round(int(ds.Rows) * 50 / int(ds.Columns)))


@pytest.mark.parametrize(
    "params",
    [{"viewport": "0,10"}, {"viewport": "10"}, {"window": "1,0"}, {"window": "a,b"},
     {"quality": "101"}, {"size": "1"}],
)  # fmt: skip
def test_rendered_bad_parameters_400(srv: LocalServer, params: dict[str, str]) -> None:
    assert rendered(put(srv, CT), **params).status_code == 400


def test_rendered_406_for_other_types(srv: LocalServer) -> None:
    assert rendered(put(srv, CT), "image/gif").status_code == 406


def hide_module(monkeypatch: pytest.MonkeyPatch, hidden: str) -> None:
    """Make the server believe a module is not installed."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == hidden else real(name, *a)
    )


def test_rendered_without_pillow_is_501_naming_the_extra(
    srv: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = put(srv, CT)
    hide_module(monkeypatch, "PIL")
    resp = rendered(url)
    assert resp.status_code == 501
    assert "pip install 'dcmweb[testserver]'" in resp.json()["error"]["message"]


# -- transcoding on retrieve --------------------------------------------------------------
@pytest.mark.parametrize("accept", ['multipart/related; type="application/dicom"',
                                    "application/dicom"])  # fmt: skip
def test_compressed_instance_is_decoded_to_explicit_le(srv: LocalServer, accept: str) -> None:
    url = put(srv, RLE_MULTI)
    resp = requests.get(url, headers={"Accept": accept}, timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.content if accept == "application/dicom" else split_multipart(resp)[0][1]
    ds = pydicom.dcmread(io.BytesIO(body))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
    original = pydicom.dcmread(real_file(RLE_MULTI))
    assert ds.SOPInstanceUID == original.SOPInstanceUID
    assert (ds.pixel_array == original.pixel_array).all()


@pytest.mark.parametrize("accept", [None, "*/*"], ids=["no Accept", "*/*"])
@pytest.mark.parametrize("level", ["study", "instance"])
def test_no_accept_or_any_type_gets_googles_default(
    srv: LocalServer, accept: str | None, level: str
) -> None:
    """Google transcodes to Explicit VR LE unless the request asks for transfer-syntax=*;
    no Accept header, and curl's and requests' `*/*`, got the stored RLE bytes."""
    url = put(srv, RLE_MULTI)
    target = url if level == "instance" else url.split("/series/")[0]
    resp = requests.get(target, headers={"Accept": accept}, timeout=30)  # None: not sent
    assert resp.status_code == 200, resp.text
    assert srv.requests[-1].headers.get("Accept") == accept
    assert resp.headers["Content-Type"].startswith('multipart/related; type="application/dicom"')
    [(head, body)] = split_multipart(resp)
    assert head == f"Content-Type: application/dicom; transfer-syntax={EXPLICIT_LE}"
    ds = pydicom.dcmread(io.BytesIO(body))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert (ds.pixel_array == pydicom.dcmread(real_file(RLE_MULTI)).pixel_array).all()
    stored = requests.get(target, headers={"Accept": "*/*; transfer-syntax=*"}, timeout=30)
    assert split_multipart(stored)[0][1] == blob(RLE_MULTI)


@pytest.mark.parametrize("accept", [None, "*/*"], ids=["no Accept", "*/*"])
def test_other_routes_answer_their_default_type_to_no_accept_or_any(
    srv: LocalServer, accept: str | None
) -> None:
    """Metadata as JSON, frames decoded as multipart octet-stream, bulk data as
    multipart octet-stream, rendered as JPEG: each route's first type, as Google's."""
    url = put(srv, RLE_MULTI)
    headers = {"Accept": accept}
    metadata = requests.get(url + "/metadata", headers=headers, timeout=30)
    assert metadata.headers["Content-Type"] == "application/dicom+json"
    frames = requests.get(url + "/frames/2", headers=headers, timeout=30)
    assert frames.headers["Content-Type"].startswith(OCTET_MP)
    [(head, frame)] = split_multipart(frames)
    assert head == f"Content-Type: application/octet-stream; transfer-syntax={EXPLICIT_LE}"
    assert frame == pydicom.dcmread(real_file(RLE_MULTI)).pixel_array[1].tobytes()
    bulk = requests.get(url + "/bulkdata/7FE00010", headers=headers, timeout=30)
    assert bulk.headers["Content-Type"].startswith(OCTET_MP)
    image = requests.get(url + "/rendered", headers=headers, timeout=30)
    assert image.headers["Content-Type"] == "image/jpeg"


def test_undecodable_syntax_gets_406_before_the_answer(
    srv: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = put(srv, RLE_MULTI)
    hide_module(monkeypatch, "numpy")
    resp = requests.get(url, headers={"Accept": "application/dicom"}, timeout=30)
    assert resp.status_code == 406
    assert "cannot transcode from 1.2.840.10008.1.2.5" in resp.json()["error"]["message"]


# -- instances from DICOM JSON + JPEG -----------------------------------------------------
def jpeg_image(width: int = 32, height: int = 24) -> bytes:
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 8, y * 10, 128) for y in range(height) for x in range(width)])
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95)
    return out.getvalue()


def json_metadata(**extra: str) -> dict:
    obj = {
        "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.7"]},
        "00080018": {"vr": "UI", "Value": [pydicom.uid.generate_uid()]},
        "0020000D": {"vr": "UI", "Value": [pydicom.uid.generate_uid()]},
        "0020000E": {"vr": "UI", "Value": [pydicom.uid.generate_uid()]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Photo^Jane"}]},
        "7FE00010": {"vr": "OB", "BulkDataURI": "jpeg-image"},
    }
    obj.update(extra)
    return obj


def post_json(srv: LocalServer, document: object, images: dict[str, bytes]) -> requests.Response:
    parts = [b"Content-Type: application/dicom+json\r\n\r\n" + json.dumps(document).encode()]
    for location, data in images.items():
        parts.append(
            b"Content-Type: image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50\r\n"
            + f"Content-Location: {location}\r\n\r\n".encode() + data
        )
    body = b"".join(b"--B\r\n" + p + b"\r\n" for p in parts) + b"--B--\r\n"
    headers = {
        "Content-Type": 'multipart/related; type="application/dicom+json"; boundary=B',
        "Accept": "application/dicom+json",
    }
    return requests.post(srv.url + "/studies", data=body, headers=headers, timeout=30)


def test_json_plus_jpeg_creates_a_real_part10_instance(srv: LocalServer) -> None:
    obj, jpeg = json_metadata(), jpeg_image()
    resp = post_json(srv, [obj], {"jpeg-image": jpeg})
    assert resp.status_code == 200, resp.text
    [ref] = resp.json()["00081199"]["Value"]
    url = ref["00081190"]["Value"][0]
    assert ref["00081155"]["Value"] == obj["00080018"]["Value"]
    raw = requests.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"},
                       timeout=30)  # fmt: skip
    ds = pydicom.dcmread(io.BytesIO(raw.content))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert (ds.Rows, ds.Columns, ds.SamplesPerPixel) == (24, 32, 3)
    assert str(ds.PatientName) == "Photo^Jane"
    assert ds.pixel_array.shape == (24, 32, 3)
    [(_, frame)] = frames(url, "1", 'multipart/related; type="image/jpeg"')
    assert frame in (jpeg, jpeg + b"\x00")  # DICOM pads odd-length fragments
    # The same request again stores nothing new and succeeds (identical bytes).
    assert post_json(srv, obj, {"jpeg-image": jpeg}).status_code == 200


def test_json_array_of_two_instances_and_failures(srv: LocalServer) -> None:
    good, no_sop, bad_uri = json_metadata(), json_metadata(), json_metadata()
    del no_sop["00080018"]
    bad_uri["7FE00010"] = {"vr": "OB", "BulkDataURI": "elsewhere"}
    resp = post_json(srv, [good, no_sop, bad_uri], {"jpeg-image": jpeg_image()})
    assert resp.status_code == 202
    failures = resp.json()["00081198"]["Value"]
    details = [f["00090097"]["Value"][0] for f in failures]
    assert details == ["the metadata has no SOPInstanceUID",
                       "BulkDataURI 'elsewhere' names no part's Content-Location"]  # fmt: skip
    assert len(resp.json()["00081199"]["Value"]) == 1


def test_json_body_that_is_not_json_is_400(srv: LocalServer) -> None:
    body = b"--B\r\nContent-Type: application/dicom+json\r\n\r\n{nope\r\n--B--\r\n"
    headers = {"Content-Type": 'multipart/related; type="application/dicom+json"; boundary=B'}
    resp = requests.post(srv.url + "/studies", data=body, headers=headers, timeout=30)
    assert resp.status_code == 400 and "not JSON" in resp.json()["error"]["message"]


@pytest.mark.parametrize("level", ["study", "series", "instance"])
def test_a_decoder_that_fails_gets_406_before_the_answer(srv: LocalServer, level: str) -> None:
    """JPEG Extended 12-bit has a decoder plugin, which fails on it: the study or series
    answer was a 200 cut mid-stream, a single instance a 500. Every instance is decoded
    before the answer starts; the 406 says why."""
    url = put(srv, "JPEG-lossy.dcm")
    study_url, series_url = url.split("/series/")[0], url.split("/instances/")[0]
    # An instance sent as stored, in the same study: the answer could start with it.
    assert stow(srv, [_in_study(blob(CT), study_url.rsplit("/", 1)[1])]).status_code == 200
    target = {"study": study_url, "series": series_url, "instance": url}[level]
    accept = "application/dicom" if level == "instance" else \
        'multipart/related; type="application/dicom"'
    resp = requests.get(target, headers={"Accept": accept}, timeout=30)
    assert resp.status_code == 406, resp.status_code
    message = resp.json()["error"]["message"]
    assert message.startswith("cannot decode JPEG Extended"), message
    assert message.endswith("; ask for transfer-syntax=* to get the stored bytes")
    stored = requests.get(target, headers={"Accept": accept + "; transfer-syntax=*"}, timeout=30)
    assert stored.status_code == 200


def _in_study(data: bytes, study: str) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.StudyInstanceUID = study
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("level", ["study", "instance"])
def test_an_instance_that_cannot_be_rewritten_gets_406_not_500(srv: LocalServer,
                                                              level: str) -> None:
    """pydicom's SC_rgb_jpeg.dcm (JPEG baseline, its dataset in implicit VR) decodes but
    cannot be written as Explicit VR LE (old server: 500 with a traceback)."""
    url = put(srv, "SC_rgb_jpeg.dcm")
    target = url.split("/series/")[0] if level == "study" else url
    resp = requests.get(target, timeout=30)
    assert resp.status_code == 406, resp.status_code
    message = resp.json()["error"]["message"]
    assert message.startswith("cannot write the instance as Explicit VR Little Endian: ")
    assert message.endswith("; ask for transfer-syntax=* to get the stored bytes")
    stored = requests.get(target, headers={"Accept": RAW_MP}, timeout=30)
    assert stored.status_code == 200


@pytest.mark.parametrize("value", [
    {"00280002": {"vr": "US", "Value": [70000]}},
    {"00200013": {"vr": "SS", "Value": [-70000]}},
    {"00080020": {"vr": "DA", "Value": [20240101]}},
    {"00280010": {"vr": "US", "Value": [24, 2]}},
])  # fmt: skip
def test_json_value_that_cannot_be_written_fails_that_instance(srv: LocalServer,
                                                               value: dict) -> None:
    """pydicom takes these values but cannot write them (old server: a 500 for the whole
    request, the objects before it stored all the same)."""
    good, bad = json_metadata(), json_metadata(**value)
    resp = post_json(srv, [good, bad], {"jpeg-image": jpeg_image()})
    assert resp.status_code == 202, resp.text
    [failure] = resp.json()["00081198"]["Value"]
    assert failure["00081155"]["Value"] == bad["00080018"]["Value"]
    assert failure["00081197"]["Value"] == [0xC000]
    detail = failure["00090097"]["Value"][0]
    assert detail.startswith("the metadata has a value that cannot be written: "), detail
    [stored] = resp.json()["00081199"]["Value"]
    assert stored["00081155"]["Value"] == good["00080018"]["Value"]
