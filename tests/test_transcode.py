"""retrieve --transfer-syntax and --single-part; a server that cannot transcode is reported
as such (no retry storm, no "server down"); -H Accept is refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request, multipart

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.errors import ServerError, UsageError
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus
from dcmweb_devtools.docexamples import run_example
from dcmweb_devtools.logs import lines
from dcmweb_devtools.orthanc import Orthanc
from dcmweb_devtools.tinypacs import TinyPacs

EXPLICIT_LE = "1.2.840.10008.1.2.1"
INSTANCE = "studies/1/series/2/instances/3"


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def instance_path(path: Path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return (f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")


def test_orthanc_without_gdcm_cannot_transcode_jpeg2000(orthanc: Orthanc, tmp_path: Path
                                                        ) -> None:
    source = corpus.pydicom_test_files_dir() / "JPEG2000.dcm"
    with Client(orthanc.url) as client:
        client.store([source])
    result = dcmweb("-v", "--retries", "5", orthanc.url, "retrieve", instance_path(source),
                    "--transfer-syntax", EXPLICIT_LE, "-o", str(tmp_path))
    assert result.exit_code == 1
    assert "cannot send" in result.stderr and "HTTP 500" in result.stderr
    assert "(leave out --type or --transfer-syntax: the stored bytes are the default)" \
        in result.stderr
    assert "overloaded" not in result.stderr
    assert result.stderr.count(" -> 500 ") == 2  # asked twice, not six times
    # The stored bytes come whole with the default.
    result = dcmweb(orthanc.url, "retrieve", instance_path(source), "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    [saved] = tmp_path.rglob("*.dcm")
    assert hashlib.sha256(saved.read_bytes()).digest() == \
        hashlib.sha256(source.read_bytes()).digest()


def test_orthanc_transcodes_what_it_can(orthanc: Orthanc, tmp_path: Path) -> None:
    source = corpus.pydicom_test_files_dir() / "MR_small_implicit.dcm"
    with Client(orthanc.url) as client:
        client.store([source])
    result = dcmweb(orthanc.url, "retrieve", instance_path(source), "--transfer-syntax",
                    EXPLICIT_LE, "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    [saved] = tmp_path.rglob("*.dcm")
    assert pydicom.dcmread(saved).file_meta.TransferSyntaxUID == EXPLICIT_LE


def test_406_is_one_request_and_a_clear_error(tmp_path: Path) -> None:
    with Hostile() as fake:
        fake.route("GET", f"/{INSTANCE}", lambda req: req.reply(
            406, b'{"error": {"code": 406, "message": "transcoding is not supported"}}',
            "application/json"))
        result = dcmweb(fake.url, "retrieve", INSTANCE, "--transfer-syntax", EXPLICIT_LE,
                        "-o", str(tmp_path))
        [seen] = fake.requests
    assert seen.headers["Accept"] == (f'multipart/related; type="application/dicom"; '
                                      f"transfer-syntax={EXPLICIT_LE}")
    assert result.exit_code == 1
    assert "transcoding is not supported" in result.stderr
    assert "(leave out --type or --transfer-syntax: the stored bytes are the default)" \
        in result.stderr


def test_one_500_then_success_is_success(tmp_path: Path) -> None:
    source = corpus.pydicom_test_files_dir() / "CT_small.dcm"
    answers = [500, 200]

    def route(req: Request) -> None:
        status = answers.pop(0)
        if status == 500:
            req.reply(500, b"hiccup", "text/plain")
        else:
            req.reply(200, multipart([source.read_bytes()], "bb"),
                      'multipart/related; type="application/dicom"; boundary=bb')

    ds = pydicom.dcmread(source, stop_before_pixels=True)
    path = (f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")  # another instance would be refused
    with Hostile() as fake:
        fake.route("GET", f"/{path}", route)
        result = dcmweb(fake.url, "retrieve", path, "--transfer-syntax", EXPLICIT_LE,
                        "-o", str(tmp_path))
        assert len(fake.requests) == 2
    assert result.exit_code == 0, result.stderr
    assert len(list(tmp_path.rglob("*.dcm"))) == 1


def test_single_part_instance_on_tinypacs(tinypacs: TinyPacs, tmp_path: Path) -> None:
    [source] = corpus.synthetic_files(tmp_path / "in", 1)
    with Client(tinypacs.url) as client:
        client.store([source])
    result = dcmweb(tinypacs.url, "retrieve", instance_path(source), "--single-part",
                    "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    [saved] = (tmp_path / "out").rglob("*.dcm")
    # tiny-pacs rewrites the preamble and file meta; the data set comes back as stored.
    assert pydicom.dcmread(saved) == pydicom.dcmread(source)


def test_single_part_accept_header_and_orthanc_refusal(orthanc: Orthanc, tmp_path: Path
                                                       ) -> None:
    source = corpus.pydicom_test_files_dir() / "CT_small.dcm"
    with Client(orthanc.url) as client:
        client.store([source])
    result = dcmweb(orthanc.url, "retrieve", instance_path(source), "--single-part",
                    "-o", str(tmp_path))
    assert result.exit_code == 2  # Orthanc: 400 to a bare application/dicom
    with Hostile() as fake:
        dcmweb(fake.url, "retrieve", INSTANCE, "--single-part")
        assert fake.requests[0].headers["Accept"] == "application/dicom; transfer-syntax=*"


@pytest.mark.parametrize("args", [
    ["retrieve", "studies/1", "--single-part"],
    ["retrieve", INSTANCE, "--type", "application/dicom", "--transfer-syntax", "*"],
    ["retrieve", f"{INSTANCE}/metadata", "--single-part"],
])
def test_option_misuse_is_exit_2_without_a_request(args: list[str]) -> None:
    with Hostile() as fake:
        result = dcmweb(fake.url, *args)
        assert result.exit_code == 2, result.stderr
        assert fake.requests == []


@pytest.mark.parametrize("command", [("retrieve", INSTANCE), ("search",)])
def test_header_accept_is_refused_not_silently_overridden(command: tuple[str, ...]) -> None:
    with Hostile() as fake:
        result = dcmweb("-H", "accept: application/dicom", fake.url, *command)
        assert result.exit_code == 2
        # Old dcmweb: only 'choose what retrieve asks for ...', on a search too.
        assert lines(result.stderr) == [
            "dcmweb: error: an Accept header cannot be set with -H: each command asks for the"
            " type it reads (a search's output: --format; a retrieve's type: --type,"
            " --transfer-syntax or --single-part)"]
        assert fake.requests == []
    with pytest.raises(UsageError) as refused:
        Client(fake.url, headers={"Accept": "image/png"})
    # Python's search gives rows: no format to name.
    assert refused.value.hint == "a retrieve's type: part_type, transfer_syntax or single_part"


def test_docs_example_runs(orthanc: Orthanc, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    source = corpus.pydicom_test_files_dir() / "MR_small_implicit.dcm"
    with Client(orthanc.url) as client:
        client.store([source])
    monkeypatch.chdir(tmp_path)
    study = instance_path(source).split("/series/")[0]
    result = run_example("dcmweb HOST retrieve studies/1.2.3 --transfer-syntax "
                         "1.2.840.10008.1.2.1", orthanc.url, {"studies/1.2.3": study})
    assert result.exit_code == 0, result.stderr
    [saved] = tmp_path.rglob("*.dcm")
    assert pydicom.dcmread(saved).file_meta.TransferSyntaxUID == EXPLICIT_LE


def test_local_server_refuses_a_syntax_it_cannot_make_with_406(local_server: LocalServer,
                                                               tmp_path: Path) -> None:
    source = corpus.pydicom_test_files_dir() / "CT_small.dcm"
    with Client(local_server.url) as client:
        client.store([source])
    local_server.clear_requests()
    result = dcmweb(local_server.url, "retrieve", instance_path(source), "--transfer-syntax",
                    "1.2.840.10008.1.2.4.50", "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "HTTP 406" in result.stderr
    assert lines(result.stderr)[-1].endswith(
        "(leave out --type or --transfer-syntax: the stored bytes are the default)")
    assert [r.status for r in local_server.requests] == [406]  # asked once, not retried
    # From Python, the hint names the keyword (old dcmweb: the flag).
    with Client(local_server.url) as client, pytest.raises(ServerError) as refused:
        client.retrieve(instance_path(source), tmp_path / "lib",
                        transfer_syntax="1.2.840.10008.1.2.4.50")
    assert refused.value.hint == ("leave out part_type or transfer_syntax: the stored bytes "
                                  "are the default")
    result = dcmweb(local_server.url, "retrieve", instance_path(source), "--single-part",
                    "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    [saved] = (tmp_path / "out").rglob("*.dcm")
    assert saved.read_bytes() == source.read_bytes()


def test_a_refused_type_hints_to_leave_out_type(local_server: LocalServer,
                                                 tmp_path: Path) -> None:
    """Frames of CT_small (not JPEG) asked for as image/jpeg: 406. Old dcmweb hinted at
    --transfer-syntax '*', a usage error next to --type (give one, not both)."""
    source = corpus.pydicom_test_files_dir() / "CT_small.dcm"
    with Client(local_server.url) as client:
        client.store([source])
    result = dcmweb(local_server.url, "retrieve", instance_path(source) + "/frames/1",
                    "--type", "image/jpeg", "-o", str(tmp_path / "f"))
    assert result.exit_code == 1, result.stderr
    assert lines(result.stderr)[-1].endswith(
        "(HTTP 406: frames are multipart/related; type=\"application/octet-stream\") "
        "(leave out --type: the stored bytes are the default)")
    result = dcmweb(local_server.url, "retrieve", instance_path(source) + "/frames/1",
                    "-o", str(tmp_path / "f"))
    assert result.exit_code == 0, result.stderr
