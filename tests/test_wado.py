"""Metadata, frames, rendered images and bulk data: CLI and library, on Orthanc (which
supports them all), with hostile answers for what no server sends on purpose."""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request, multipart, once, trickle
from PIL import Image
from pydicom.encaps import generate_fragmented_frames
from test_transport import Scripted

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.errors import NotFoundError, ServerError, UsageError
from dcmweb.testing import LocalServer
from dcmweb.wadopath import parse_wado_path
from dcmweb_devtools import corpus
from dcmweb_devtools.docexamples import run_example
from dcmweb_devtools.logs import lines
from dcmweb_devtools.orthanc import Orthanc

MULTIFRAME = "rtdose.dcm"  # 15 uncompressed frames, 32-bit
RLE_MULTIFRAME = "SC_rgb_rle_2frame.dcm"
SINGLE = "CT_small.dcm"


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def pydicom_file(name: str) -> Path:
    return corpus.pydicom_test_files_dir() / name


def instance_path(path: Path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return (f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")


@pytest.fixture(scope="module")
def orthanc_files(orthanc_session: Orthanc) -> Orthanc:
    files = [pydicom_file(n) for n in (MULTIFRAME, RLE_MULTIFRAME, SINGLE, "JPEG2000.dcm")]
    with Client(orthanc_session.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    return orthanc_session


# -- paths --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "kind", "url"), [
    ("studies/1/metadata", "metadata", "studies/1/metadata"),
    ("studies/1/series/2/instances/3/metadata", "metadata", None),
    ("studies/1/series/2/rendered", "rendered", None),
    ("studies/1/series/2/instances/3/frames/4,1/rendered", "rendered", None),
    ("studies/1/series/2/instances/3/frames/1,3,5", "frames", None),
    ("studies/1/series/2/instances/3/bulkdata/7FE00010", "bulkdata", None),
    ("studies/1/series/2/instances/3/bulk/0040A730/1/0040A160", "bulkdata", None),
    ("studies/1/series/2", "dicom", None),
])
def test_wado_paths(path: str, kind: str, url: str | None) -> None:
    target = parse_wado_path(path)
    assert (target.kind, target.url_path()) == (kind, url or path)


@pytest.mark.parametrize("path", [
    "metadata", "rendered", "studies/1/frames/1", "studies/1/series/2/instances/3/frames/0",
    "studies/1/series/2/instances/3/frames/1,,2", "studies/1/series/2/instances/3/frames/x",
    "studies/1/bulkdata/7FE00010", "studies/1/series/2/instances/3/bulkdata/../x",
])
def test_invalid_wado_paths_are_exit_2_without_a_request(path: str) -> None:
    with Hostile() as fake:
        result = dcmweb(fake.url, "retrieve", path)
        assert result.exit_code == 2, result.stderr
        assert fake.requests == []


# -- metadata -----------------------------------------------------------------------------------
def test_metadata_xml_with_no_part_is_a_failure() -> None:
    path = "studies/1/series/2/instances/3/metadata"
    with Hostile() as fake:
        fake.route("GET", f"/{path}", lambda req: req.reply(
            200, multipart([], "b0", "application/dicom+xml"),
            'multipart/related; type="application/dicom+xml"; boundary=b0'))
        result = dcmweb(fake.url, "retrieve", path, "--format", "xml")
    assert result.exit_code == 1, result.stderr
    assert result.stdout == ""
    assert lines(result.stderr)[-1] == f"dcmweb: error: metadata {path}: the server sent " \
        "no instance"


GOOD_XML = b'<?xml version="1.0"?>\n<NativeDicomModel xml:space="preserve"/>'
BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;">]>'
                  b"<NativeDicomModel>&b;</NativeDicomModel>")


@pytest.mark.parametrize(("second", "problem"), [
    (b"<NativeDicomModel><DicomAttribute", "is not well-formed XML (unclosed token: line 1, "
     "column 18)"),
    (GOOD_XML + b"<NativeDicomModel/>", "is not well-formed XML (junk after document element: "
     "line 2, column 40)"),
    (BILLION_LAUGHS, "holds a document type declaration (refused: it may declare entities)"),
], ids=["cut", "two documents", "entities"])
def test_metadata_xml_with_a_broken_part_is_a_failure(second: bytes, problem: str) -> None:
    """Old dcmweb wrote any part that began with '<', exit 0."""
    path = "studies/1/metadata"
    with Hostile() as fake:
        fake.route("GET", f"/{path}", lambda req: req.reply(
            200, multipart([GOOD_XML, second], "b0", "application/dicom+xml"),
            'multipart/related; type="application/dicom+xml"; boundary=b0'))
        result = dcmweb(fake.url, "retrieve", path, "--format", "xml")
        asked = len(fake.requests)
    assert result.exit_code == 1, result.stderr
    assert result.stdout == ""
    assert lines(result.stderr)[-1] == f"dcmweb: error: metadata {path}: part 2 of the answer " \
        f"{problem}"
    assert asked == 1  # a server's bug, not a cut: not asked again


def test_metadata_json_with_no_instance_is_a_failure() -> None:
    """As for XML (exit-codes.md, 1): the library returned [] and the CLI printed it."""
    with Hostile() as fake:
        fake.route("GET", "/studies/1/metadata",
                   lambda req: req.reply(200, b"[]", "application/dicom+json"))
        with Client(fake.url) as client, pytest.raises(ServerError) as caught:
            client.metadata("studies/1")
    assert caught.value.message == "metadata studies/1/metadata: the server sent no instance"


XML_ELEMENT = b'<DicomAttribute tag="00081030" vr="LO"><Value number="1">x</Value>' \
              b"</DicomAttribute>"


def xml_parts(count: int, size: int) -> Callable[[Request], None]:
    """An answer of ``count`` well-formed documents of about ``size`` bytes each, sent a
    piece at a time (built whole, the server's copy would count in the client's memory)."""
    head = b'--b0\r\nContent-Type: application/dicom+xml\r\n\r\n<NativeDicomModel>'
    part = [head, *[XML_ELEMENT] * (size // len(XML_ELEMENT)), b"</NativeDicomModel>\r\n"]
    return lambda req: req.stream(
        200, 'multipart/related; type="application/dicom+xml"; boundary=b0',
        [*part * count, b"--b0--\r\n"])


def endless_json(req: Request) -> None:
    row = json.dumps({"00081030": {"vr": "LO", "Value": ["x" * 1000]}}).encode()
    req.stream(200, "application/dicom+json", [b"[", *[row + b","] * 100_000])


@pytest.mark.parametrize(("body", "fmt"), [
    (endless_json, "json"), (xml_parts(1, 6 * 2**20), "xml"), (xml_parts(6, 2**20), "xml"),
], ids=["json endless", "xml part", "xml parts together"])
def test_metadata_larger_than_the_bound_is_refused_as_it_arrives(
        body: Callable[[Request], None], fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON answer was read whole up to 4 GiB (a 3 MB gzip answer took 6 GB of memory),
    an XML one without any bound."""
    monkeypatch.setattr("dcmweb.metadata.MAX_ANSWER", 4 * 2**20, raising=False)
    with Hostile() as fake:
        fake.route("GET", "/studies/1/metadata", body)
        tracemalloc.start()
        try:
            result = dcmweb(fake.url, "retrieve", "studies/1/metadata", "--format", fmt)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert result.exit_code == 1, result.stderr
    assert result.stdout == ""
    assert lines(result.stderr)[-1] == (
        "dcmweb: error: metadata studies/1/metadata failed: the server's answer is larger "
        "than 4194304 bytes (ask for each series (studies/S/series/R/metadata); an endless "
        "answer is a server fault: check HOST)")
    assert peak < 3 * 4 * 2**20, peak


def test_a_missing_study_is_not_found_on_orthanc(orthanc_files: Orthanc,
                                                 tmp_path: Path) -> None:
    for args in (["retrieve", "studies/9.9.9", "-o", str(tmp_path)],
                 ["retrieve", "studies/9.9.9/metadata", "--format", "xml"]):
        result = dcmweb(orthanc_files.url, *args)
        assert result.exit_code == 4, result.stderr


def test_metadata_json_at_every_level(orthanc_files: Orthanc) -> None:
    path = instance_path(pydicom_file(MULTIFRAME))
    study, series = "/".join(path.split("/")[:2]), "/".join(path.split("/")[:4])
    sop = path.rsplit("/", 1)[1]
    for level in (study, series, path):
        result = dcmweb(orthanc_files.url, "retrieve", f"{level}/metadata")
        assert result.exit_code == 0, result.stderr
        rows = json.loads(result.stdout)
        assert [row["00080018"]["Value"][0] for row in rows] == [sop]
        assert "BulkDataURI" in rows[0]["7FE00010"]  # pixels stay out
        assert result.stderr == ""


def test_metadata_xml_one_document_per_instance(orthanc_files: Orthanc) -> None:
    path = instance_path(pydicom_file(SINGLE))
    result = dcmweb(orthanc_files.url, "retrieve", f"{path}/metadata", "--format", "xml")
    assert result.exit_code == 0, result.stderr
    root = ET.fromstring(result.stdout.split("?>", 1)[1])
    ns = "{http://dicom.nema.org/PS3.19/models/NativeDICOM}"
    [sop] = [a for a in root.iter(f"{ns}DicomAttribute") if a.get("tag") == "00080018"]
    assert sop.find(f"{ns}Value").text == path.rsplit("/", 1)[1]


def test_metadata_to_a_file_and_as_datasets(orthanc_files: Orthanc, tmp_path: Path) -> None:
    path = instance_path(pydicom_file(SINGLE))
    result = dcmweb(orthanc_files.url, "retrieve", f"{path}/metadata", "-o",
                    str(tmp_path / "m.json"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    rows = json.loads((tmp_path / "m.json").read_text())
    with Client(orthanc_files.url) as client:
        assert client.metadata(path) == rows
        [ds] = client.metadata(path, datasets=True)
    original = pydicom.dcmread(pydicom_file(SINGLE), stop_before_pixels=True)
    assert (ds.PatientName, ds.SOPInstanceUID) == (original.PatientName,
                                                  original.SOPInstanceUID)


def test_metadata_to_dash_is_stdout_and_render_options_are_refused(
        orthanc_files: Orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-o - had written a file named '-'; --viewport on metadata had been ignored."""
    monkeypatch.chdir(tmp_path)
    path = instance_path(pydicom_file(SINGLE))
    result = dcmweb(orthanc_files.url, "retrieve", f"{path}/metadata", "-o", "-")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["00080018"]["Value"] == [path.rsplit("/", 1)[1]]
    assert list(tmp_path.iterdir()) == []
    refused = dcmweb(orthanc_files.url, "retrieve", f"{path}/metadata", "--viewport", "1,1")
    assert (refused.exit_code, refused.stdout) == (2, "")
    assert "--viewport, --window and --quality apply to .../rendered paths" in refused.stderr


def test_metadata_that_is_not_json_is_an_error_not_data() -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies/1/metadata",
                   lambda req: req.reply(200, b"<html>Sign in</html>", "text/html"))
        result = dcmweb(fake.url, "retrieve", "studies/1/metadata")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "text/html (a web page), not DICOMweb data (application/dicom+json)" in result.stderr
    assert "HOST must be the DICOMweb base URL" in result.stderr


@pytest.mark.parametrize(("body", "error"), [
    (b'[{"00080018": {"vr": "UI", "Value": ["1.2"]}}]', None),
    (b' [ {"00280030": {"vr": "DS", "Value": [0.5, 1e-300, 1.0E+99]}} , {} ]\n', None),
    (b'{"rows": []}', "expected a JSON array of objects, got an object"),
    (b'[{"00080018": {"vr": "UI"}}, "x"]', "expected a JSON array of objects, but row 2 is a "
                                           "string"),
    (b'["x", {"00080018": {"vr": "UI"}}]', "but row 1 is a string"),
    (b'[{"00080018": {"vr": "UI", "Value": []', "not JSON"),
    # Shaped like an array of objects, brackets paired, framed: written with exit 0 before.
    (b'[{"00280030": {"vr": "DS", "Value": [NaN, 1]}}]', "the answer holds NaN, which is not "
                                                        "JSON"),
    (b'[{"00100010": {"vr": "PN"}} {"00100020": {"vr": "LO"}}]', "not JSON"),
    (b'[{}}{{}]', "not JSON"),
    (b'[{"00280010": {"vr": "US", "Value": [' + b"9" * 5001 + b']}}]', "not JSON"),
    (b'[{"00280030": {"vr": "DS", "Value": [1e400]}}]', "the number 1e400, too large"),
    (b'[{"00280030": {"vr": "DS", "Value": [' + b"9" * 400 + b'.5]}}]', "too large to be read"),
    (b'[{}] []', "not JSON"),
    (b'[{},]', "not JSON"),
    (b' [ ]\n', "metadata studies/1/metadata: the server sent no instance"),
])
def test_metadata_the_cli_writes_is_proven_json(body: bytes, error: str | None,
                                                tmp_path: Path) -> None:
    """The CLI writes the bytes as sent, and only once they parse as a JSON array of at
    least one object (it wrote any framed answer shaped like one: NaN, a missing comma,
    unpaired braces, a number no reader takes, and an empty array, with exit 0)."""
    with Hostile() as fake:
        fake.route("GET", "/studies/1/metadata",
                   lambda req: req.reply(200, body, "application/dicom+json"))
        printed = dcmweb(fake.url, "retrieve", "studies/1/metadata")
        written = dcmweb(fake.url, "retrieve", "studies/1/metadata", "-o",
                         str(tmp_path / "m.json"))
    if error is None:
        assert (printed.exit_code, written.exit_code) == (0, 0), printed.stderr
        assert printed.stdout_bytes.rstrip(b"\n") == body.rstrip(b"\n")
        assert (tmp_path / "m.json").read_bytes() == printed.stdout_bytes
    else:
        assert (printed.exit_code, written.exit_code) == (1, 1)
        assert printed.stdout == "" and not (tmp_path / "m.json").exists()
        assert error in printed.stderr


def test_metadata_without_framing_is_parsed_before_it_is_written() -> None:
    """An answer that ends where the connection closed (no length, not chunked) may be
    cut anywhere, even after a ']': only a parse shows it is whole."""
    cut = b'[{"00080018": {"vr": "UI", "Value": ["1.2"]}}, {"00100010": {"vr": "PN", "Value": []'
    server = Scripted([(b"HTTP/1.0 200 OK\r\nContent-Type: application/dicom+json\r\n\r\n"
                        + cut, True)] * 3)
    try:
        result = dcmweb(f"http://127.0.0.1:{server.port}/dicomWeb", "retrieve",
                        "studies/1/metadata")
    finally:
        server.close()
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "not JSON" in result.stderr


@pytest.mark.parametrize(("row", "error"), [
    (b'{"00100010": "x"}', "TypeError"),  # an element that is not an object
    (b'{"hello": {"vr": "PN"}}', "ValueError"),  # a key that is not a tag
    (b'{"00100010": {"Value": ["a"]}}', "KeyError"),  # no VR
])
def test_metadata_rows_pydicom_cannot_read_are_a_server_error(row: bytes, error: str) -> None:
    body = b'[{"00080018": {"vr": "UI", "Value": ["1.2"]}}, ' + row + b"]"
    with Hostile() as fake:
        fake.route("GET", "/studies/1/metadata",
                   lambda req: req.reply(200, body, "application/dicom+json"))
        with Client(fake.url) as client:
            assert len(client.metadata("studies/1")) == 2  # the rows are handed out as sent
            with pytest.raises(ServerError) as caught:
                client.metadata("studies/1", datasets=True)
    assert caught.value.message.startswith(
        f"metadata row 2 of 2 is not DICOM JSON that pydicom can read ({error}: ")


def test_metadata_nested_too_deeply_is_a_server_error() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    with Hostile() as fake:
        fake.route("GET", "/studies/1/metadata",
                   lambda req: req.reply(200, body, "application/dicom+json"))
        with Client(fake.url) as client, pytest.raises(ServerError) as caught:
            client.metadata("studies/1")
        result = dcmweb(fake.url, "retrieve", "studies/1/metadata")
    assert caught.value.message == ("metadata studies/1/metadata: the server's JSON answer is "
                                    "nested too deeply")
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1] == ("dcmweb: error: metadata studies/1/metadata: the "
                                        "server's JSON answer is nested too deeply (check HOST)")


def test_metadata_rows_with_numbers_json_has_not_are_a_server_error() -> None:
    """The library parses metadata itself: it refuses NaN as every other JSON answer does
    (it returned rows holding nan)."""
    body = b'[{"00280030": {"vr": "DS", "Value": [NaN]}}]'
    with Hostile() as fake:
        fake.route("GET", "/studies/1/metadata",
                   lambda req: req.reply(200, body, "application/dicom+json"))
        with Client(fake.url) as client, pytest.raises(ServerError) as caught:
            client.metadata("studies/1")
    assert caught.value.message == ("metadata studies/1/metadata: the answer holds NaN, "
                                    "which is not JSON")


# -- frames -------------------------------------------------------------------------------------
def test_uncompressed_multiframe_round_trips_frame_by_frame(orthanc_files: Orthanc,
                                                            tmp_path: Path) -> None:
    source = pydicom_file(MULTIFRAME)
    ds = pydicom.dcmread(source)
    frames = int(ds.NumberOfFrames)
    size = len(ds.PixelData) // frames
    path = instance_path(source)
    asked = ",".join(str(n) for n in range(1, frames + 1))
    result = dcmweb(orthanc_files.url, "retrieve", f"{path}/frames/{asked}", "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    folder = tmp_path.joinpath(*path.split("/")[1:4:2])
    pixels = ds.pixel_array
    for number in range(1, frames + 1):
        raw = (folder / f"{ds.SOPInstanceUID}_frame_{number}.raw").read_bytes()
        assert raw == ds.PixelData[(number - 1) * size:number * size]
        assert raw == pixels[number - 1].tobytes()  # what pydicom decodes
    assert f"Transferred 5.9 KiB in {frames} files" in result.stderr


def test_frames_keep_the_asked_numbers_and_order(orthanc_files: Orthanc) -> None:
    source = pydicom_file(MULTIFRAME)
    ds = pydicom.dcmread(source)
    size = len(ds.PixelData) // int(ds.NumberOfFrames)
    with Client(orthanc_files.url) as client:
        frames = client.frames(f"{instance_path(source)}/frames/5,1,15")
    assert list(frames) == [5, 1, 15]
    assert frames[15] == ds.PixelData[14 * size:]


def test_compressed_frames_are_the_stored_fragments(orthanc_files: Orthanc) -> None:
    source = pydicom_file(RLE_MULTIFRAME)
    ds = pydicom.dcmread(source)
    stored = [b"".join(f) for f in generate_fragmented_frames(ds.PixelData,
                                                              number_of_frames=2)]
    with Client(orthanc_files.url) as client:
        frames = client.frames(f"{instance_path(source)}/frames/1,2")
    assert [frames[1], frames[2]] == [f + b"\0" * (len(frames[n]) - len(f))
                                      for n, f in ((1, stored[0]), (2, stored[1]))]
    assert all(frames[n].startswith(stored[n - 1]) for n in (1, 2))


def test_frame_past_the_end_is_an_error(orthanc_files: Orthanc, tmp_path: Path) -> None:
    path = instance_path(pydicom_file(SINGLE))
    result = dcmweb(orthanc_files.url, "retrieve", f"{path}/frames/2", "-o", str(tmp_path))
    assert result.exit_code == 2  # Orthanc answers 400
    assert list(tmp_path.rglob("*.raw")) == []


@pytest.mark.parametrize("asked", ["frames/2,2", "frames/1,2,3,2/rendered"])
def test_a_frame_listed_twice_is_a_usage_error(asked: str, tmp_path: Path) -> None:
    """PS3.18: a frame list holds no duplicates. Saving frame 2 twice under one name
    counted two files where one was on the disk (and lost one if they differed)."""
    path = f"studies/1/series/2/instances/3/{asked}"
    with Hostile() as fake:
        result = dcmweb(fake.url, "retrieve", path, "-o", str(tmp_path))
        assert fake.requests == []
    assert result.exit_code == 2, result.stderr
    assert lines(result.stderr)[-1] == (f"dcmweb: error: invalid path {path!r} (frame 2 is "
                                        "listed twice: give each frame number once)")
    with pytest.raises(UsageError, match="frame 2 is listed twice"):
        Client(fake.url).frames("studies/1/series/2/instances/3/frames/2,1,2")


@pytest.mark.parametrize(("body", "content_type", "said"), [
    (multipart([b"x" * 10], "b0", "application/octet-stream"), "multipart",
     "the server sent 1 part for 2 frames"),
    (multipart([b"x" * 10] * 3, "b0", "application/octet-stream"), "multipart",
     "the server sent more parts than the 2 frames asked for"),
    (b"x" * 10, "application/octet-stream", "the server sent 1 part for 2 frames"),
], ids=["fewer", "more", "one-single-part"])
def test_a_part_count_that_differs_from_the_frames_asked_is_a_failure(
        body: bytes, content_type: str, said: str, tmp_path: Path) -> None:
    if content_type == "multipart":
        content_type = 'multipart/related; boundary=b0; type="application/octet-stream"'
    with Hostile() as fake:
        fake.route("GET", "/studies/1/series/2/instances/3/frames/1,2",
                   lambda req: req.reply(200, body, content_type))
        result = dcmweb(fake.url, "retrieve", "studies/1/series/2/instances/3/frames/1,2",
                        "-o", str(tmp_path))
        accept = fake.requests[0].headers["Accept"]
    assert accept == 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    assert result.exit_code == 1
    assert lines(result.stderr)[-1] == ("dcmweb: error: retrieve studies/1/series/2/instances/3"
                                        f"/frames/1,2: {said}")
    assert "saved as" not in result.stderr
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no file named by a guess


# -- rendered -----------------------------------------------------------------------------------
def test_rendered_png_has_the_asked_size(orthanc_files: Orthanc, tmp_path: Path) -> None:
    path = instance_path(pydicom_file(SINGLE))
    result = dcmweb(orthanc_files.url, "retrieve", f"{path}/rendered", "--format", "png",
                    "--viewport", "40,40", "--window", "100,500", "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    [png] = tmp_path.rglob("*.png")
    assert png.name == path.rsplit("/", 1)[1] + ".png"
    with Image.open(png) as image:
        assert (image.format, image.size) == ("PNG", (40, 40))


def test_rendered_frames_and_jpeg_quality(orthanc_files: Orthanc, tmp_path: Path) -> None:
    path = instance_path(pydicom_file(RLE_MULTIFRAME))
    result = dcmweb(orthanc_files.url, "retrieve", f"{path}/frames/1,2/rendered",
                    "--quality", "60", "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in tmp_path.rglob("*.jpg"))
    sop = path.rsplit("/", 1)[1]
    assert names == [f"{sop}_frame_1.jpg", f"{sop}_frame_2.jpg"]
    for jpg in tmp_path.rglob("*.jpg"):
        with Image.open(jpg) as image:
            assert image.format == "JPEG"


def test_a_whole_series_renders_each_instance_in_parallel(orthanc_files: Orthanc,
                                                          tmp_path: Path) -> None:
    series = "/".join(instance_path(pydicom_file(SINGLE)).split("/")[:4])
    result = dcmweb("-m", orthanc_files.url, "retrieve", f"{series}/rendered", "-o",
                    str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert len(list(tmp_path.rglob("*.jpg"))) == 1


@pytest.mark.parametrize("server", ["local", "orthanc"])
def test_rendering_a_study_or_series_with_no_instance_is_not_found(
        server: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """As a retrieve of the same path: exit 4, NotFoundError, not 'Transferred 0 B'."""
    url = request.getfixturevalue("local_server" if server == "local" else "orthanc_files").url
    out = tmp_path / "out"
    for path in ("studies/9.9", "studies/9.9/series/8.8"):
        result = dcmweb(url, "retrieve", f"{path}/rendered", "-o", str(out))
        assert result.exit_code == 4, result.stderr
        # Nothing listed, nothing left: the summary said "the rest of the listing not
        # retrieved (stopped)".
        assert lines(result.stderr) == [
            "dcmweb: info: Transferred 0 B in 0 files",
            f"dcmweb: error: render {path}: not found (a search finds no instance under it) "
            "(check the HOST URL and the UIDs in the path)"]
        with Client(url) as client, pytest.raises(NotFoundError):
            client.retrieve(f"{path}/rendered", out)
    assert not out.exists()


@pytest.mark.parametrize("server", ["local", "orthanc"])
@pytest.mark.parametrize("asked", ["rendered", "frames/1/rendered"])
def test_rendering_a_missing_instance_says_only_that(
        server: str, asked: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The one image asked for, answered 404: the summary said '1 instance not retrieved
    (stopped, cut off; the rest of the listing not counted)', of a run with no listing
    that cut nothing off."""
    url = request.getfixturevalue("local_server" if server == "local" else "orthanc_files").url
    path = f"studies/9.9/series/8.8/instances/7.7/{asked}"
    result = dcmweb(url, "retrieve", path, "-o", str(tmp_path / "out"))
    assert result.exit_code == 4, result.stderr
    messages = lines(result.stderr)
    assert messages[0] == "dcmweb: info: Transferred 0 B in 0 files", messages
    assert messages[1].startswith(f"dcmweb: error: render {path} failed: HTTP 404 "), messages
    assert len(messages) == 2, messages


def test_library_rendered_returns_bytes(orthanc_files: Orthanc) -> None:
    with Client(orthanc_files.url) as client:
        data = client.rendered(instance_path(pydicom_file(SINGLE)), format="png",
                               viewport="16,24")
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (16, 24)


def test_rendered_answer_that_is_not_an_image_is_a_failure(tmp_path: Path) -> None:
    with Hostile() as fake:
        fake.route("GET", "/studies/1/series/2/instances/3/rendered",
                   lambda req: req.reply(200, b"<html>login</html>", "text/html"))
        result = dcmweb(fake.url, "retrieve", "studies/1/series/2/instances/3/rendered",
                        "--format", "png", "-o", str(tmp_path))
        assert fake.requests[0].headers["Accept"] == "image/png"
    assert result.exit_code == 1
    assert "did not send image/png" in result.stderr
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_rendered_answer_of_the_asked_type_that_is_no_image_says_so(tmp_path: Path) -> None:
    """Old dcmweb: "the server did not send image/jpeg (it sent image/jpeg)"."""
    with Hostile() as fake:
        fake.route("GET", "/studies/1/series/2/instances/3/rendered",
                   lambda req: req.reply(200, b"\x1f\x8b\x08\x00 not a JPEG", "image/jpeg"))
        result = dcmweb(fake.url, "retrieve", "studies/1/series/2/instances/3/rendered",
                        "-o", str(tmp_path))
    assert result.exit_code == 1
    assert lines(result.stderr)[-1] == (
        "dcmweb: error: render studies/1/series/2/instances/3/rendered: the server's "
        "image/jpeg answer does not start like a JPEG image (its first bytes: "
        "1f 8b 08 00 20 6e 6f 74)")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_frame_in_a_coding_dcmweb_cannot_decode_is_named_and_not_asked_again(
        tmp_path: Path) -> None:
    """Old dcmweb: "answer cut off (the body does not contain the boundary ...)", 3 times."""
    path = "studies/1/series/2/instances/3/frames/1"
    body = multipart([b"\x00" * 64], "b1", "application/octet-stream")
    with Hostile() as fake:
        fake.route("GET", f"/{path}", lambda req: req.reply(
            200, zlib.compress(body, wbits=16 + zlib.MAX_WBITS),
            "multipart/related; boundary=b1", headers={"Content-Encoding": "br"}))
        result = dcmweb(fake.url, "retrieve", path, "-o", str(tmp_path))
        asked = len(fake.requests)
    assert result.exit_code == 1
    assert lines(result.stderr)[-1].startswith(
        f"dcmweb: error: retrieve {path} failed: the server sent its answer (HTTP 200) with "
        "Content-Encoding 'br', which dcmweb cannot decode")
    assert asked == 1
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def image_bytes(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(("fmt", "mime", "extension"), [
    ("jpeg", "image/jpeg", "jpg"), ("png", "image/png", "png"), ("gif", "image/gif", "gif")])
def test_a_rendered_image_cut_without_content_length_is_not_saved(
        tmp_path: Path, fmt: str, mime: str, extension: str) -> None:
    """Connection: close and no length: only the image's own end (JPEG FF D9, PNG IEND,
    GIF 3B) shows the cut."""
    image = image_bytes(fmt)
    path = "studies/1/series/2/instances/3"
    with Hostile() as fake:
        fake.route("GET", f"/{path}/rendered",
                   lambda req: req.stream(200, mime, [image[: len(image) // 2]]))
        result = dcmweb(fake.url, "retrieve", f"{path}/rendered", "--format", fmt,
                        "-o", str(tmp_path))
        asked = len(fake.requests)
    assert result.exit_code == 1, result.stderr
    assert f"render {path}/rendered: the answer was cut off 3 times: the connection closed " \
        f"after {len(image) // 2} bytes, before the end of the {mime} image" in result.stderr
    assert asked == 3
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    # The whole image without a length is kept.
    with Hostile() as fake:
        fake.route("GET", f"/{path}/rendered", lambda req: req.stream(200, mime, [image]))
        result = dcmweb(fake.url, "retrieve", f"{path}/rendered", "--format", fmt,
                        "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "1" / "2" / f"3.{extension}").read_bytes() == image


@pytest.mark.parametrize("args", [["--viewport", "0,10"], ["--viewport", "10"],
                                  ["--window", "a,b"], ["--window", "1,2,cubic"],
                                  ["--window", "40,0"], ["--window", "40,-0.5,sigmoid"],
                                  ["--format", "xml"]])
def test_bad_render_options_are_usage_errors(args: list[str]) -> None:
    with Hostile() as fake:
        result = dcmweb(fake.url, "retrieve", "studies/1/series/2/instances/3/rendered", *args)
        assert result.exit_code == 2, result.stderr
        assert fake.requests == []


def test_a_window_width_that_is_not_positive_is_refused_by_the_library() -> None:
    """Orthanc renders width 0, the local server answers 400: refused before asking."""
    with Hostile() as fake, Client(fake.url) as client:
        with pytest.raises(UsageError, match="the width must be positive"):
            client.rendered(f"{INSTANCE}/rendered", window="40,0")
        assert fake.requests == []


@pytest.mark.parametrize("path", ["studies/1/metadata", "studies/1/series/2/instances/3/frames/1",
                                  "studies/1/bulk/x"])
def test_render_options_on_a_path_that_cannot_render_are_usage_errors(path: str) -> None:
    """A study, series or instance renders (test_retrieve_paths); metadata, frames and
    bulk data cannot."""
    with Hostile() as fake:
        result = dcmweb(fake.url, "retrieve", path, "--viewport", "10,10")
        assert result.exit_code == 2, result.stderr
        assert fake.requests == []


# -- bulk data ----------------------------------------------------------------------------------
def test_bulk_data_by_uri_from_metadata(orthanc_files: Orthanc, tmp_path: Path) -> None:
    source = pydicom_file(MULTIFRAME)
    with Client(orthanc_files.url) as client:
        [row] = client.metadata(instance_path(source))
        uri = row["7FE00010"]["BulkDataURI"]
        assert client.bulkdata(uri) == pydicom.dcmread(source).PixelData
    result = dcmweb(orthanc_files.url, "retrieve", uri, "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    [raw] = tmp_path.rglob("*.raw")
    assert raw.name == f"{pydicom.dcmread(source).SOPInstanceUID}_7fe00010.raw"
    assert raw.read_bytes() == pydicom.dcmread(source).PixelData


def test_bulk_data_uri_on_another_server_is_refused() -> None:
    with Hostile() as fake:
        result = dcmweb(fake.url, "retrieve", "http://127.0.0.2:1/studies/1/series/2/"
                        "instances/3/bulkdata/7FE00010")
        assert result.exit_code == 2
        assert "not on HOST's server" in result.stderr
        assert fake.requests == []


def test_v1_google_host_reads_bulk_data_from_v1beta1() -> None:
    from dcmweb.bulkdata import beta_base

    v1 = "https://healthcare.googleapis.com/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"
    assert beta_base(v1) == v1.replace("/v1/", "/v1beta1/")
    assert beta_base(v1.replace("/v1/", "/v1beta1/")) == v1.replace("/v1/", "/v1beta1/")
    assert beta_base("http://127.0.0.1:8042/dicom-web") == "http://127.0.0.1:8042/dicom-web"


# -- docs ---------------------------------------------------------------------------------------
def test_docs_examples_run(orthanc_files: Orthanc, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = instance_path(pydicom_file(MULTIFRAME))
    study = "/".join(path.split("/")[:2])
    instance = "studies/1.2.3/series/4.5/instances/6.7"
    rendered = instance_path(pydicom_file(SINGLE))  # Orthanc renders no 32-bit images
    for example, real in ((f"dcmweb HOST retrieve {instance}/frames/1,3,5 -o frames", path),
                          ("dcmweb HOST retrieve studies/1.2.3/metadata -o metadata.json", path),
                          (f"dcmweb HOST retrieve {instance}/rendered --format png "
                           "--viewport 128,128", rendered)):
        result = run_example(example, orthanc_files.url, {"studies/1.2.3": study,
                                                          instance: real})
        assert result.exit_code == 0, result.stderr
    assert json.loads(Path("metadata.json").read_text())[0]["00080018"]["Value"] == [
        path.rsplit("/", 1)[1]]
    assert len(list(Path("frames").rglob("*_frame_*.raw"))) == 3
    with Image.open(next(Path(".").rglob("*.png"))) as image:
        assert max(image.size) <= 128


# -- the local GCP-like server ------------------------------------------------------------------
def test_local_server_metadata_json_xml_and_bulk_uri(local_server: LocalServer,
                                                     tmp_path: Path) -> None:
    source = pydicom_file(MULTIFRAME)
    path = instance_path(source)
    with Client(local_server.url) as client:
        client.store([source])
        [row] = client.metadata(path)
        [ds] = client.metadata(path, datasets=True)
        [xml] = client.fetch_metadata("/".join(path.split("/")[:4]), "xml").documents
    original = pydicom.dcmread(source, stop_before_pixels=True)
    assert row["00080018"]["Value"] == [original.SOPInstanceUID]
    assert "BulkDataURI" in row["7FE00010"]
    assert (ds.SOPInstanceUID, ds.NumberOfFrames) == (original.SOPInstanceUID,
                                                     original.NumberOfFrames)
    assert original.SOPInstanceUID in xml.decode()
    result = dcmweb(local_server.url, "retrieve", f"{path}/metadata", "-o",
                    str(tmp_path / "m.json"))
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "m.json").read_text()) == [row]


def test_local_server_frames_rendered_and_bulk_data(local_server: LocalServer,
                                                    tmp_path: Path) -> None:
    multiframe, single = pydicom_file(MULTIFRAME), pydicom_file(SINGLE)
    ds = pydicom.dcmread(multiframe)
    size = len(ds.PixelData) // int(ds.NumberOfFrames)
    with Client(local_server.url) as client:
        client.store([multiframe, single])
        frames = client.frames(f"{instance_path(multiframe)}/frames/2,15")
        [row] = client.metadata(instance_path(multiframe))
        bulk = client.bulkdata(row["7FE00010"]["BulkDataURI"])
        png = client.rendered(instance_path(single), format="png", viewport="32,32")
    assert frames == {2: ds.PixelData[size:2 * size], 15: ds.PixelData[14 * size:]}
    assert bulk == ds.PixelData
    with Image.open(io.BytesIO(png)) as image:
        assert (image.format, image.size) == ("PNG", (32, 32))
    result = dcmweb(local_server.url, "retrieve", f"{instance_path(single)}/rendered",
                    "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    [jpg] = (tmp_path / "out").rglob("*.jpg")
    assert jpg.read_bytes()[:2] == b"\xff\xd8"
    # A frame the instance does not have is not found, as the frame's retrieve is (exit 4),
    # not one failed item of many (exit 1).
    missing = f"{instance_path(multiframe)}/frames/{int(ds.NumberOfFrames) + 1}"
    for path in (missing, f"{missing}/rendered"):
        result = dcmweb(local_server.url, "retrieve", path, "-o", str(tmp_path / "gone"))
        assert result.exit_code == 4, result.stderr
    assert files_in(tmp_path / "gone") == []


# -- answers that are not what was asked for, or are cut off ------------------------------------
INSTANCE = "studies/1/series/2/instances/3"
LOGIN = b"<html><head><title>Sign in</title></head><body>...</body></html>"
# What each kind of request is: its path, the part type it asks for, its extra options.
KINDS = {
    "frames": (f"{INSTANCE}/frames/1,2", "application/octet-stream", []),
    "bulk": (f"{INSTANCE}/bulkdata/7FE00010", "application/octet-stream", []),
    "xml": (f"{INSTANCE}/metadata", "application/dicom+xml", ["--format", "xml"]),
}


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def good_body(kind: str) -> bytes:
    part_type = KINDS[kind][1]
    values = [b"<NativeDicomModel/>"] if kind == "xml" else [b"\x01" * 40] * (
        2 if kind == "frames" else 1)
    return multipart(values, "g", part_type)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("body", "content_type"), [
    (LOGIN, "text/html"),
    (b'{"error": {"code": 403, "message": "denied"}}', "application/json"),
    (multipart([LOGIN, LOGIN], "h", "text/html"), 'multipart/related; boundary=h'),
], ids=["login-page", "json-error", "html-parts"])
def test_an_answer_of_another_type_is_not_saved(kind: str, body: bytes, content_type: str,
                                                tmp_path: Path) -> None:
    path, _, options = KINDS[kind]
    output = ["-o", str(tmp_path)] if kind != "xml" else []
    with Hostile() as fake:
        fake.route("GET", f"/{path}", lambda req: req.reply(200, body, content_type))
        result = dcmweb(fake.url, "retrieve", path, *options, *output)
    assert result.exit_code == 1, result.stderr
    assert result.stdout == ""
    assert "text/html" in result.stderr or "application/json" in result.stderr
    assert files_in(tmp_path) == []


def test_library_frames_refuse_a_login_page() -> None:
    with Hostile() as fake:
        fake.route("GET", f"/{INSTANCE}/frames/1", lambda req: req.reply(200, LOGIN, "text/html"))
        with Client(fake.url) as client, pytest.raises(ServerError, match="text/html"):
            client.frames(f"{INSTANCE}/frames/1")


def cut(body: bytes) -> Callable[[Request], None]:
    """The answer cut in its middle: the connection closes, no length was promised."""
    return lambda req: req.stream(200, "multipart/related; boundary=g", [body[:len(body) // 2]])


@pytest.mark.parametrize("kind", KINDS)
def test_a_cut_answer_is_asked_again(kind: str, tmp_path: Path) -> None:
    path, _, options = KINDS[kind]
    body = good_body(kind)
    with Hostile() as fake:
        fake.route("GET", f"/{path}", once(cut(body), lambda req: req.reply(
            200, body, "multipart/related; boundary=g")))
        result = dcmweb(fake.url, "retrieve", path, *options, "-o", str(tmp_path / "out"))
        asked = len(fake.requests)
    assert result.exit_code == 0, result.stderr
    assert asked == 2
    assert len(files_in(tmp_path)) == (2 if kind == "frames" else 1)


@pytest.mark.parametrize("kind", KINDS)
def test_an_answer_cut_three_times_is_a_failure(kind: str, tmp_path: Path) -> None:
    path, _, options = KINDS[kind]
    with Hostile() as fake:
        fake.route("GET", f"/{path}", cut(good_body(kind)))
        result = dcmweb(fake.url, "retrieve", path, *options, "-o", str(tmp_path / "out"))
        asked = len(fake.requests)
    assert result.exit_code == 1, result.stderr
    assert asked == 3
    assert lines(result.stderr)[-1].startswith("dcmweb: error: ")
    assert "the answer was cut off 3 times" in lines(result.stderr)[-1]
    assert "unexpected" not in result.stderr
    assert files_in(tmp_path) == []


def gzip_cut(data: bytes, content_type: str) -> Callable[[Request], None]:
    """All the promised bytes arrive, but the gzip stream inside them has no end."""
    compressed = gzip.compress(data)[:-40]
    return lambda req: req.reply(200, compressed, content_type,
                                 headers={"Content-Encoding": "gzip"})


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20


@pytest.mark.parametrize(("path", "content_type", "options"), [
    (f"{INSTANCE}/frames/1", "application/octet-stream", []),
    (f"{INSTANCE}/bulkdata/7FE00010", "application/octet-stream", []),
    (f"{INSTANCE}/rendered", "image/png", ["--format", "png"]),
], ids=["frames", "bulk", "rendered"])
def test_a_gzip_answer_without_its_end_is_cut_off(path: str, content_type: str,
                                                  options: list[str], tmp_path: Path) -> None:
    with Hostile() as fake:
        fake.route("GET", f"/{path}", gzip_cut(PNG, content_type))
        result = dcmweb(fake.url, "retrieve", path, *options, "-o", str(tmp_path))
        asked = len(fake.requests)
    assert result.exit_code == 1, result.stderr
    assert asked == 3
    assert "the answer's gzip body ends before the end of its compressed data" in result.stderr
    # Each kind of retrieve closes with its summary, a failed bulk value's too.
    assert "dcmweb: info: Transferred 0 B in 0 files" in result.stderr
    assert files_in(tmp_path) == []


def test_a_series_renders_the_other_instances_when_one_is_gone(tmp_path: Path) -> None:
    rows = [{"0020000E": {"vr": "UI", "Value": ["2"]}, "00080018": {"vr": "UI", "Value": [sop]}}
            for sop in ("3", "4")]

    def listing(req: Request) -> None:
        req.json(200, rows if req.params.get("offset") == "0" else [], "application/dicom+json")

    with Hostile() as fake:
        fake.route("GET", "/studies/1/series/2/instances", listing)
        fake.route("GET", "/studies/1/series/2/instances/3/rendered",
                   lambda req: req.json(404, {"error": {"code": 404, "message": "gone"}}))
        fake.route("GET", "/studies/1/series/2/instances/4/rendered",
                   lambda req: req.reply(200, PNG, "image/png"))
        # The series is served: the instance it lists first is gone alone.
        fake.route("GET", "/studies/1/series/2",
                   lambda req: req.reply(200, b"", 'multipart/related; type="application/dicom"'))
        result = dcmweb(fake.url, "retrieve", "studies/1/series/2/rendered", "--format", "png",
                        "-o", str(tmp_path))
    assert result.exit_code == 6, result.stderr
    assert files_in(tmp_path) == [tmp_path / "1" / "2" / "4.png"]
    assert "in 1 file; 1 failed" in result.stderr


@pytest.mark.parametrize(("what", "path", "content_type", "body", "options"), [
    ("retrieve", f"{INSTANCE}/frames/1", "application/octet-stream", b"\x01" * 200, []),
    ("render", f"{INSTANCE}/rendered", "image/png", PNG[:200], ["--format", "png"]),
    ("metadata", f"{INSTANCE}/metadata", "application/dicom+json", b"[" + b" " * 200 + b"]",
     []),
], ids=["frames", "rendered", "metadata"])
def test_a_trickling_answer_is_an_outage_that_names_its_request(
        what: str, path: str, content_type: str, body: bytes, options: list[str],
        tmp_path: Path) -> None:
    with Hostile() as fake:
        fake.route("GET", f"/{path}", trickle(200, content_type, body, 0.3))
        result = dcmweb("--low-speed-limit", "100", "--low-speed-time", "1", fake.url,
                        "retrieve", path, *options, "-o", str(tmp_path / "out"))
        asked = len(fake.requests)
    assert result.exit_code == 5, result.stderr
    assert asked == 3
    assert lines(result.stderr)[-1].startswith(f"dcmweb: error: {what} {path}: the server sent")
    assert "below the low-speed limit of 100 bytes/s" in lines(result.stderr)[-1]
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("name", ["", "md/", "a/b/"])
def test_metadata_to_a_folder_is_a_usage_error_without_a_request(tmp_path: Path,
                                                                  name: str) -> None:
    """An existing folder, or a name ending in a slash (a folder, and metadata has no file
    name of its own): never a file named like the folder."""
    output = f"{tmp_path}/{name}" if name else str(tmp_path)
    with Hostile() as fake:
        result = dcmweb(fake.url, "retrieve", f"{INSTANCE}/metadata", "-o", output)
        asked = len(fake.requests)
    assert result.exit_code == 2, result.stderr
    assert lines(result.stderr)[-1] == (
        f"dcmweb: error: --output {output} is a folder (metadata goes to one file: give its "
        "name, or none for stdout)")
    assert asked == 0
    assert list(tmp_path.iterdir()) == []


def test_bulk_data_is_logged_under_the_path_asked_for(tmp_path: Path) -> None:
    path = KINDS["bulk"][0]
    with Hostile() as fake:
        fake.route("GET", f"/{path}", lambda req: req.reply(
            200, good_body("bulk"), "multipart/related; boundary=g"))
        result = dcmweb(fake.url, "retrieve", path, "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert f"dcmweb: info: {path} saved as {tmp_path}/1/2/3_7FE00010.raw" in result.stderr


BULK_VALUE = b"\x01" * 40
# The value and the delimiter line after it, then the connection closes.
FIRST_PART_ONLY = multipart([BULK_VALUE], "g", "application/octet-stream").replace(
    b"--g--\r\n", b"--g\r\n")


@pytest.mark.parametrize(("route", "message"), [
    (lambda req: req.reply(200, b"--g--\r\n", "multipart/related; boundary=g"),
     "the server sent no part where one value was asked for"),
    (lambda req: req.reply(200, multipart([BULK_VALUE, b"\x02" * 40], "g",
                                          "application/octet-stream"),
                           "multipart/related; boundary=g"),
     "the server sent more than one part for one value"),
    (lambda req: req.stream(200, "multipart/related; boundary=g", [FIRST_PART_ONLY]),
     "the answer was cut off 3 times"),
], ids=["no-part", "two-parts", "cut-after-the-part"])
def test_bulk_data_is_exactly_one_part(route: Callable[[Request], None], message: str,
                                       tmp_path: Path) -> None:
    path = KINDS["bulk"][0]
    with Hostile() as fake:
        fake.route("GET", f"/{path}", route)
        result = dcmweb(fake.url, "retrieve", path, "-o", str(tmp_path))
        with Client(fake.url, retries=0) as client, pytest.raises(ServerError) as caught:
            client.bulkdata(path)
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1].startswith(f"dcmweb: error: retrieve bulk data {fake.url}/")
    assert message in lines(result.stderr)[-1]
    assert message in caught.value.message
    assert files_in(tmp_path) == []
