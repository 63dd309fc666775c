"""stowanswer.py on real STOW answers: the local GCP-like server (XML and JSON), Orthanc, tiny-pacs.

The answers are fetched with plain requests, so a parser bug cannot hide behind the
client code that produced them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
import requests

from dcmweb.multipart import MultipartBody
from dcmweb.stowanswer import InstanceFailure, parse_dataset, parse_stow_answer

JSON = "application/dicom+json"


def _file(pydicom_files: list[Path], name: str) -> Path:
    return next(p for p in pydicom_files if p.name == name)


def _conflicting_copy(source: Path, target: Path) -> Path:
    """Same SOPInstanceUID as `source`, different bytes."""
    ds = pydicom.dcmread(source)
    ds.PatientName = "Conflict^Copy"
    ds.save_as(target, enforce_file_format=True)
    return target


def _post(url: str, paths: list[Path], accept: str | None = None) -> requests.Response:
    body = MultipartBody(paths)
    headers = {"Content-Type": body.content_type}
    if accept:
        headers["Accept"] = accept
    return requests.post(url + "/studies", data=body.read(), headers=headers, timeout=30)


def _uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


@pytest.mark.parametrize("accept", [None, JSON])
def test_local_server_answers_success_conflict_and_partial(
        local_server, pydicom_files: list[Path], tmp_path: Path, accept: str | None) -> None:
    ct = _file(pydicom_files, "CT_small.dcm")
    mr = _file(pydicom_files, "MR_small.dcm")
    conflict = _conflicting_copy(ct, tmp_path / "ct-conflict.dcm")
    study, series, sop = _uids(ct)

    first = _post(local_server.url, [ct], accept)
    assert first.status_code == 200
    assert first.headers["Content-Type"] == (JSON if accept else "application/dicom+xml")
    assert first.content.lstrip().startswith(b"{" if accept else b"<?xml")
    answer = parse_stow_answer(first.content)
    url = f"{local_server.url}/studies/{study}/series/{series}/instances/{sop}"
    assert answer.stored == {sop: url}
    assert answer.retrieve_url == f"{local_server.url}/studies/{study}"
    assert answer.failed == {} and answer.warnings == {} and answer.text == ""

    refused = _post(local_server.url, [conflict], accept)
    assert refused.status_code == 409
    answer = parse_stow_answer(refused.content)
    assert answer.stored == {}
    assert list(answer.failed) == [sop]
    failure = answer.failed[sop]
    assert failure.reason == 0x0110
    assert failure.detail == (
        "an instance with the same SOPInstanceUID already exists with different content")
    assert failure.describe() == (
        "processing failure (0x0110): an instance with the same SOPInstanceUID already exists"
        " with different content")

    partial = _post(local_server.url, [mr, conflict], accept)
    assert partial.status_code == 202
    answer = parse_stow_answer(partial.content)
    mr_study, mr_series, mr_sop = _uids(mr)
    assert answer.stored == {
        mr_sop: f"{local_server.url}/studies/{mr_study}/series/{mr_series}/instances/{mr_sop}"}
    assert list(answer.failed) == [sop]
    assert answer.failed[sop].reason == 0x0110


def test_xml_and_json_answers_parse_to_the_same_result(
        local_server, pydicom_files: list[Path], tmp_path: Path) -> None:
    ct = _file(pydicom_files, "CT_small.dcm")
    conflict = _conflicting_copy(ct, tmp_path / "ct-conflict.dcm")
    mr = _file(pydicom_files, "MR_small.dcm")
    assert _post(local_server.url, [ct]).status_code == 200
    xml = _post(local_server.url, [mr, conflict])
    as_json = _post(local_server.url, [mr, conflict], JSON)
    assert xml.status_code == as_json.status_code == 202
    assert parse_stow_answer(xml.content) == parse_stow_answer(as_json.content)
    # XML carries every value as text; the answer's numbers are read from both forms.
    xml_item = parse_dataset(xml.content)["00081198"][0]
    assert xml_item["00081197"] == ["272"] and xml_item["00090097"] == [
        "an instance with the same SOPInstanceUID already exists with different content"]


@pytest.mark.parametrize("accept", [None, JSON], ids=["xml", "json"])
def test_an_answer_after_a_byte_order_mark_is_read(local_server, pydicom_files: list[Path],
                                                    accept: str | None) -> None:
    """Old dcmweb read an answer starting with EF BB BF as foreign: "failed", though stored."""
    answer = _post(local_server.url, [_file(pydicom_files, "CT_small.dcm")], accept).content
    with_mark = parse_stow_answer(b"\xef\xbb\xbf" + answer)
    assert with_mark.kind == "dataset"
    assert with_mark == parse_stow_answer(answer) and len(with_mark.stored) == 1


def test_not_dicom_part_has_no_uid_but_is_still_reported(local_server, tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    response = _post(local_server.url, [junk])
    assert response.status_code == 409
    answer = parse_stow_answer(response.content)
    assert list(answer.failed) == ["<unknown #1>"]
    failure = answer.failed["<unknown #1>"]
    assert failure.reason == 0xC000
    assert failure.describe() == (
        "cannot understand (0xC000): the file meta information has no TransferSyntaxUID")


def test_orthanc_answers(orthanc, pydicom_files: list[Path]) -> None:
    ct = _file(pydicom_files, "CT_small.dcm")
    response = _post(orthanc.url, [ct], JSON)
    assert response.status_code == 200
    answer = parse_stow_answer(response.content)
    study, series, sop = _uids(ct)
    assert answer.stored == {sop: f"{orthanc.url}/studies/{study}/series/{series}/instances/{sop}"}
    assert answer.failed == {}

    rejected = _post(orthanc.url, [_file(pydicom_files, "SC_rgb_jpeg.dcm")], JSON)
    assert rejected.status_code == 400
    # Orthanc 1.10 sends no Content-Type here, 1.12 two media types in one header: the
    # body is sniffed, not trusted to its header.
    header = rejected.headers.get("Content-Type")
    assert header in (None, "application/dicom+json, text/plain")
    answer = parse_stow_answer(rejected.content, header)
    assert answer.stored == {} and answer.text == ""
    assert answer.describe() in ("no Content-Type", "application/dicom+json")


def test_a_content_type_listing_two_media_types_is_read_by_its_first() -> None:
    answer = parse_stow_answer(b'{"00081199": {"vr": "SQ"}}',
                               "application/dicom+json, text/plain")
    assert answer.content_type == "application/dicom+json"


def test_tiny_pacs_duplicate(tinypacs_fresh, pydicom_files: list[Path]) -> None:
    ct = _file(pydicom_files, "CT_small.dcm")
    study, series, sop = _uids(ct)
    first = _post(tinypacs_fresh.url, [ct], JSON)
    assert first.status_code == 200
    assert parse_stow_answer(first.content).stored == {
        sop: f"{tinypacs_fresh.url}/studies/{study}/series/{series}/instances/{sop}"}
    again = _post(tinypacs_fresh.url, [ct], JSON)
    assert again.status_code == 409
    answer = parse_stow_answer(again.content)
    assert answer.stored == {}
    assert answer.failed == {sop: InstanceFailure(0x0110, "")}
    assert answer.retrieve_url == f"{tinypacs_fresh.url}/studies/{study}"


# -- bodies no real server here produces ----------------------------------------------------
def test_warning_reason_and_failure_without_detail() -> None:
    body = json.dumps({
        "00081199": {"vr": "SQ", "Value": [
            {"00081155": {"vr": "UI", "Value": ["1.2.3"]},
             "00081190": {"vr": "UR", "Value": ["http://x/1.2.3"]},
             "00081196": {"vr": "US", "Value": [0xB000]}}]},
        "00081198": {"vr": "SQ", "Value": [
            {"00081155": {"vr": "UI", "Value": ["4.5.6"]},
             "00081197": {"vr": "US", "Value": [0xC122]}},
            {"00081197": {"vr": "US", "Value": [0x9999]}}]},
    }).encode()
    answer = parse_stow_answer(body)
    assert answer.stored == {"1.2.3": "http://x/1.2.3"}
    assert answer.warnings == {"1.2.3": 0xB000}
    assert answer.failed["4.5.6"].describe() == "transfer syntax not supported (0xC122)"
    assert answer.failed["<unknown #2>"].describe() == "failure (0x9999)"


def test_google_creator_is_not_shown_as_a_reason() -> None:
    item = {"00081155": {"vr": "UI", "Value": ["1.2"]},
            "00090010": {"vr": "LO", "Value": ["GOOGLE"]},
            "00090097": {"vr": "LT", "Value": ["already exists"]}}
    answer = parse_stow_answer(json.dumps({"00081198": {"vr": "SQ", "Value": [item]}}).encode())
    assert answer.failed["1.2"] == InstanceFailure(None, "already exists")
    assert answer.failed["1.2"].describe() == "already exists"
    assert InstanceFailure(None, "").describe() == "failed (no reason given)"


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"Internal error\nmore", b"<html><body>502 Bad Gateway</body></html",
     b"{not json", b"\xff\xfe\x00garbage"],
)
def test_unreadable_bodies_become_text(body: bytes) -> None:
    answer = parse_stow_answer(body)
    assert answer.stored == {} and answer.failed == {}
    assert answer.text == body.decode("utf-8", "replace").strip()[:300]


def test_json_array_and_empty_object() -> None:
    assert parse_stow_answer(b"[]").stored == {}
    one = json.dumps([{"00081199": {"vr": "SQ", "Value": [
        {"00081155": {"vr": "UI", "Value": ["7.8"]}}]}}]).encode()
    assert parse_stow_answer(one).stored == {"7.8": None}
    assert parse_stow_answer(b"{}").text == ""
