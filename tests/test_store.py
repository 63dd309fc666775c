"""Store (STOW-RS) through the library and the CLI, against Orthanc, tiny-pacs and the local
GCP-like server, with real pydicom files: what is stored, what is reported, how it exits."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import requests
from click.testing import CliRunner, Result

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.multipart import MultipartBody
from dcmweb.storefiles import StoreResult
from dcmweb_devtools import corpus
from dcmweb_devtools.logs import lines

UPLOADED = re.compile(r"^dcmweb: info: (?P<path>.+) uploaded as (?P<url>\S+)$")
SUMMARY = re.compile(r"^dcmweb: info: Transferred (?P<size>\S+ \S+) in (?P<files>\d+) files?"
                     r"(?:; (?P<extras>.*))?$")
CONFLICT_DETAIL = ("processing failure (0x0110): an instance with the same SOPInstanceUID"
                   " already exists with different content")
# Files the local server stores (readable, valid UIDs), unique SOPInstanceUIDs, clean meta.
CLEAN = ["CT_small.dcm", "MR_small.dcm", "693_J2KI.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm"]


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def by_name(files: list[Path], *names: str) -> list[Path]:
    index = {p.name: p for p in files}
    return [index[name] for name in names]


def uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def instance_url(base: str, path: Path) -> str:
    study, series, sop = uids(path)
    return f"{base}/studies/{study}/series/{series}/instances/{sop}"


def conflicting_copy(source: Path, target: Path) -> Path:
    """A file with the same UIDs as `source` and different bytes."""
    ds = pydicom.dcmread(source)
    ds.PatientName = "Conflict^Copy"
    ds.save_as(target, enforce_file_format=True)
    assert target.read_bytes() != source.read_bytes()
    return target


def expected_body(record, paths: list[Path]) -> bytes:
    """The multipart body holding `paths` under the boundary the record's request used."""
    boundary = record.headers["Content-Type"].rsplit("boundary=", 1)[1].strip('"')
    return MultipartBody(paths, boundary=boundary).read()


def stored_bytes(local_server, path: Path) -> bytes:
    response = requests.get(instance_url(local_server.url, path),
                            headers={"Accept": "application/dicom; transfer-syntax=*"}, timeout=30)
    response.raise_for_status()
    return response.content


def orthanc_instances(orthanc) -> int:
    response = requests.get(orthanc.rest_url + "/instances", timeout=30)
    response.raise_for_status()
    return len(response.json())


def uploaded_lines(stderr: str) -> dict[str, str]:
    matches = [m for m in map(UPLOADED.match, lines(stderr)) if m]
    paths = [m["path"] for m in matches]
    assert len(paths) == len(set(paths)), "a file was reported twice"
    return {m["path"]: m["url"] for m in matches}


def summary(stderr: str) -> re.Match[str]:
    matches = [m for m in map(SUMMARY.match, lines(stderr)) if m]
    assert len(matches) == 1, stderr
    return matches[0]


def statuses(results: list[StoreResult]) -> dict[str, str]:
    return {r.path.name: r.status for r in results}


# -- Orthanc -----------------------------------------------------------------------------------
def test_library_stores_every_acceptable_pydicom_file_in_orthanc(
        orthanc, pydicom_files: list[Path]) -> None:
    files = corpus.orthanc_safe(pydicom_files)
    with Client(orthanc.url, backoff=0.01) as client:
        results = client.store(files)
    assert [r.path for r in results] == files  # one worker: input order
    assert {r.status for r in results} == {"stored"}, [r for r in results if r.status != "stored"]
    assert orthanc_instances(orthanc) == len(corpus.unique_by_sop(files))
    ct = next(r for r in results if r.path.name == "CT_small.dcm")
    assert ct.retrieve_url == instance_url(orthanc.url, ct.path)
    assert ct.size == ct.path.stat().st_size
    # The stored bytes are the file's bytes: never re-encoded on the way.
    response = requests.get(f"{orthanc.rest_url}/instances", timeout=30)
    first = response.json()[0]
    raw = requests.get(f"{orthanc.rest_url}/instances/{first}/file", timeout=30).content
    assert hashlib.sha256(raw).hexdigest() in {
        hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.parametrize("parallel", [[], ["-m", "--workers", "3"]], ids=["serial", "parallel"])
def test_cli_stores_pydicom_corpus_in_orthanc_reporting_rejects(
        orthanc, pydicom_files: list[Path], tmp_path: Path, parallel: list[str]) -> None:
    report = tmp_path / "report.jsonl"
    result = run(*parallel, orthanc.url, "store", "--batch-size", "7", "--report", str(report),
                 *map(str, pydicom_files))
    assert result.exit_code == 6, result.stderr  # old dcmweb said 0 here
    assert result.stdout == ""

    skipped = {p for p in pydicom_files if p.name.startswith("DICOMDIR")}
    rejects = {p for p in pydicom_files if p.name in corpus.ORTHANC_REJECTS} - skipped
    accepted = set(pydicom_files) - skipped - rejects
    # Orthanc answers 200 to a file whose SOPInstanceUID it already holds, before it parses
    # the file: a reject sharing its UID with an accepted file (rtdose_rle.dcm and badVR.dcm)
    # may be reported either way, depending on which arrives first.
    accepted_uids = {corpus.sop_instance_uid(p) for p in accepted}
    either = {p for p in rejects if corpus.sop_instance_uid(p) in accepted_uids}
    assert either  # the corpus still has such a case
    assert orthanc_instances(orthanc) == len(corpus.unique_by_sop(sorted(accepted)))

    uploaded = uploaded_lines(result.stderr)
    stored = {Path(p) for p in uploaded}
    assert accepted <= stored <= accepted | either
    failed = rejects - stored
    assert uploaded[str(by_name(pydicom_files, "CT_small.dcm")[0])] == instance_url(
        orthanc.url, by_name(pydicom_files, "CT_small.dcm")[0])
    errors = [line for line in lines(result.stderr) if line.startswith("dcmweb: error: ")]
    for path in failed:  # Orthanc names some in FailedSOPSequence, some only by the 400
        assert (f"dcmweb: error: {path} failed: HTTP 400 Bad Request" in result.stderr
                or f"dcmweb: error: {path} failed: cannot understand (0xC000)" in result.stderr)
    assert errors[-1] == (
        f"dcmweb: error: {len(failed)} of {len(pydicom_files)} files failed to store")
    assert len(errors) == len(failed) + 1
    for path in skipped:
        assert f"dcmweb: warning: skipped {path}: a DICOMDIR index, not an image" in result.stderr
    total = sum(p.stat().st_size for p in stored)
    line = summary(result.stderr)
    assert int(line["files"]) == len(stored)
    assert line["extras"] == f"{len(failed)} failed, {len(skipped)} skipped"
    assert line["size"] == f"{total / 1024 / 1024:.1f} MiB"

    rows = [json.loads(text) for text in report.read_text().splitlines()]
    assert len(rows) == len(pydicom_files)
    assert {Path(r["path"]): r["status"] for r in rows} == {
        **{p: "stored" for p in stored}, **{p: "failed" for p in failed},
        **{p: "skipped" for p in skipped}}
    ct = by_name(pydicom_files, "CT_small.dcm")[0]
    row = next(r for r in rows if r["path"] == str(ct))
    assert row | {"seconds": 0} == {
        "path": str(ct), "status": "stored", "sop_instance_uid": uids(ct)[2],
        "study_instance_uid": uids(ct)[0], "series_instance_uid": uids(ct)[1],
        "retrieve_url": instance_url(orthanc.url, ct), "message": None,
        "size": ct.stat().st_size, "http_status": 200, "reason_code": None, "attempts": 1,
        "seconds": 0, "confirmed_by": "answer"}
    assert row["seconds"] >= 0
    assert all(r["message"] for r in rows if r["status"] != "stored")


def test_orthanc_rejecting_one_file_keeps_the_rest_of_its_batch(
        orthanc, pydicom_files: list[Path]) -> None:
    files = by_name(pydicom_files, "CT_small.dcm", "SC_rgb_jpeg.dcm", "MR_small.dcm")
    with Client(orthanc.url, backoff=0.01) as client:
        results = client.store(files, batch_size=10)
    assert statuses(results) == {
        "CT_small.dcm": "stored", "SC_rgb_jpeg.dcm": "failed", "MR_small.dcm": "stored"}
    bad = next(r for r in results if r.status == "failed")
    assert bad.message is not None and bad.message.startswith("HTTP 400 Bad Request")
    assert orthanc_instances(orthanc) == 2


def test_a_file_orthanc_holds_sent_to_another_study_fails_and_is_no_duplicate(
        orthanc, pydicom_files: list[Path], tmp_path: Path) -> None:
    """Orthanc refuses a file posted to another study with a bare 0x0110 (409), and
    answers 200 to duplicates. Old dcmweb found the file on the server by its SOP UID and
    reported it 'stored', 'already on the server: a duplicate refused', exit 0."""
    mr = by_name(pydicom_files, "MR_small.dcm")[0]
    assert run(orthanc.url, "store", str(mr)).exit_code == 0
    report = tmp_path / "r.csv"
    result = run(orthanc.url, "store", "--study", "1.2.3.999", "--report", str(report),
                 str(mr))
    assert result.exit_code == 1, result.stderr
    reason = f"processing failure (0x0110) (its Study Instance UID is {uids(mr)[0]}, not 1.2.3.999)"
    assert f"dcmweb: error: {mr} failed: {reason}" in lines(result.stderr)
    with report.open(newline="") as handle:
        [row] = csv.DictReader(handle)
    assert (row["status"], row["http_status"], row["message"]) == ("failed", "409", reason)
    # Sent to its own study, the same file is the duplicate Orthanc answers 200 to.
    again = run(orthanc.url, "store", "--study", uids(mr)[0], str(mr))
    assert again.exit_code == 0, again.stderr
    assert orthanc_instances(orthanc) == 1


def test_single_part_to_orthanc_is_415_per_file_with_a_hint(
        orthanc, pydicom_files: list[Path]) -> None:
    files = by_name(pydicom_files, "CT_small.dcm", "MR_small.dcm")
    result = run(orthanc.url, "store", "--single-part", *map(str, files))
    assert result.exit_code == 1  # nothing stored: not 6 (old dcmweb said 6)
    assert result.stdout == ""
    for path in files:
        assert (f"dcmweb: error: {path} failed: HTTP 415 Unsupported Media Type:"
                " Unsupported media type (this server needs multipart uploads:"
                " drop --single-part)") in lines(result.stderr)
    assert summary(result.stderr)["extras"] == "2 failed"
    assert lines(result.stderr)[-1] == "dcmweb: error: nothing stored: 2 of 2 files failed"
    assert orthanc_instances(orthanc) == 0


def test_parallel_store_of_300_synthetic_files(orthanc, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "synth", 300, studies=3, series_per_study=2)
    result = run("-m", "--workers", "4", orthanc.url, "store", str(tmp_path / "synth"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    uploaded = uploaded_lines(result.stderr)
    assert set(uploaded) == {str(p) for p in files}
    assert set(uploaded.values()) == {instance_url(orthanc.url, p) for p in files}
    assert orthanc_instances(orthanc) == 300
    line = summary(result.stderr)
    assert line["files"] == "300" and line["extras"] is None
    total = sum(p.stat().st_size for p in files)
    assert line["size"] == f"{total / 1024 / 1024:.1f} MiB"
    assert "error" not in result.stderr and "warning" not in result.stderr


# -- local GCP-like server ------------------------------------------------------------------
@pytest.mark.parametrize("mode", [[], ["--single-part"]], ids=["multipart", "single-part"])
def test_cli_store_to_local_server(local_server, pydicom_files: list[Path],
                                   mode: list[str]) -> None:
    files = by_name(pydicom_files, *CLEAN)
    result = run(local_server.url, "store", *mode, *map(str, files))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert uploaded_lines(result.stderr) == {
        str(p): instance_url(local_server.url, p) for p in files}
    assert summary(result.stderr)["files"] == str(len(files))
    for path in files:
        assert stored_bytes(local_server, path) == path.read_bytes()
    posts = [r for r in local_server.requests if r.method == "POST"]
    if mode:
        assert len(posts) == len(files)
        for record, path in zip(posts, files, strict=True):
            assert record.headers["Content-Type"] == "application/dicom"
            assert record.body_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    else:
        assert len(posts) == 1
        assert posts[0].headers["Content-Type"].startswith(
            'multipart/related; type="application/dicom"; boundary=')
    assert {r.headers["Accept"] for r in posts} == {"application/dicom+json"}


def test_library_batches_by_count(local_server, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "s", 7)
    with Client(local_server.url, backoff=0.01) as client:
        results = client.store([tmp_path / "s"], batch_size=3)
    assert [r.status for r in results] == ["stored"] * 7
    assert [r.path for r in results] == files
    posts = [r for r in local_server.requests if r.method == "POST"]
    assert len(posts) == 3
    for record, batch in zip(posts, (files[0:3], files[3:6], files[6:]), strict=True):
        body = expected_body(record, batch)
        assert (record.body_length, record.body_sha256) == (
            len(body), hashlib.sha256(body).hexdigest())
    assert local_server.store.query("SELECT COUNT(*) FROM instances")[0][0] == 7


def test_conflict_is_reported_per_file_and_the_others_stored(
        local_server, pydicom_files: list[Path], tmp_path: Path) -> None:
    ct, mr = by_name(pydicom_files, "CT_small.dcm", "MR_small.dcm")
    copy = conflicting_copy(ct, tmp_path / "ct-copy.dcm")
    report = tmp_path / "r.jsonl"
    result = run(local_server.url, "store", "--report", str(report), str(ct), str(copy), str(mr))
    assert result.exit_code == 6
    assert result.stdout == ""
    assert f"dcmweb: error: {copy} failed: {CONFLICT_DETAIL}" in lines(result.stderr)
    assert uploaded_lines(result.stderr) == {
        str(ct): instance_url(local_server.url, ct), str(mr): instance_url(local_server.url, mr)}
    assert summary(result.stderr)["extras"] == "1 failed"
    assert lines(result.stderr)[-1] == "dcmweb: error: 1 of 3 files failed to store"
    assert stored_bytes(local_server, ct) == ct.read_bytes()
    assert stored_bytes(local_server, mr) == mr.read_bytes()
    rows = {Path(r["path"]).name: r for r in map(json.loads, report.read_text().splitlines())}
    assert rows["ct-copy.dcm"]["status"] == "failed"
    assert rows["ct-copy.dcm"]["message"] == CONFLICT_DETAIL


def test_conflict_inside_one_batch_is_matched_to_its_file(
        local_server, pydicom_files: list[Path], tmp_path: Path) -> None:
    ct, mr, j2k = by_name(pydicom_files, "CT_small.dcm", "MR_small.dcm", "693_J2KI.dcm")
    with Client(local_server.url, backoff=0.01) as client:
        assert statuses(client.store([ct])) == {"CT_small.dcm": "stored"}
        local_server.clear_requests()
        results = client.store([mr, conflicting_copy(ct, tmp_path / "copy.dcm"), j2k])
    assert statuses(results) == {
        "MR_small.dcm": "stored", "copy.dcm": "failed", "693_J2KI.dcm": "stored"}
    assert next(r for r in results if r.status == "failed").message == CONFLICT_DETAIL
    # The 202 answer named the failed instance: no request per file was needed.
    assert [r.status for r in local_server.requests] == [202]


def test_meta_uid_differing_from_dataset_uid_still_gets_the_servers_answer(
        local_server, pydicom_files: list[Path]) -> None:
    # rtdose*.dcm: File Meta UID 1.2.999..., data set UID 1.9.999..., different bytes.
    first, second = by_name(pydicom_files, "rtdose.dcm", "rtdose_1frame.dcm")
    with Client(local_server.url, backoff=0.01) as client:
        results = client.store([first, second])
    assert statuses(results) == {"rtdose.dcm": "stored", "rtdose_1frame.dcm": "failed"}
    assert results[0].retrieve_url == instance_url(local_server.url, first)
    assert results[1].message == CONFLICT_DETAIL


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom, reading odd corpus files
def test_whole_pydicom_corpus_to_local_server(local_server, pydicom_files: list[Path]) -> None:
    with Client(local_server.url, backoff=0.01) as client:
        results = client.store(pydicom_files)
    assert len(results) == len(pydicom_files)
    got = {r.path: r.status for r in results}
    skipped = {p for p in pydicom_files if p.name.startswith("DICOMDIR")}
    # Like GCP: a SOPInstanceUID already held is 200 for the same bytes, 409 for others.
    first_bytes: dict[str | None, bytes] = {}
    stored = set()
    for path in pydicom_files:
        if path.name not in corpus.NOT_STORABLE:
            data = first_bytes.setdefault(corpus.sop_instance_uid(path), path.read_bytes())
            if data == path.read_bytes():
                stored.add(path)
    assert {p for p, s in got.items() if s == "skipped"} == skipped
    assert {p for p, s in got.items() if s == "stored"} == stored
    assert local_server.store.query("SELECT COUNT(*) FROM instances")[0][0] == len(first_bytes)
    for r in results:
        if r.status == "failed":
            assert r.message and (r.message.startswith(("processing failure (0x0110)",
                                                        "cannot understand (0xC000)"))), r


def test_storage_class_and_study(local_server, pydicom_files: list[Path]) -> None:
    ct, mr = by_name(pydicom_files, "CT_small.dcm", "MR_small.dcm")
    study = uids(ct)[0]
    result = run(local_server.url, "store", "--storage-class", "nearline", "--study", study,
                 str(ct), str(mr))
    assert result.exit_code == 6
    assert f"{ct} uploaded as {instance_url(local_server.url, ct)}" in result.stderr
    assert (f"dcmweb: error: {mr} failed: data set does not match the study or SOP class"
            " (0xA900)") in result.stderr
    post = next(r for r in local_server.requests if r.method == "POST")
    assert post.path.endswith(f"/studies/{study}")
    assert post.headers["Storage-Class"] == "NEARLINE"
    rows = local_server.store.query("SELECT storage_class FROM instances")
    assert [row[0] for row in rows] == ["NEARLINE"]


def test_unknown_storage_class_is_a_usage_error(local_server, pydicom_files: list[Path]) -> None:
    result = run(local_server.url, "store", "--storage-class", "FROZEN",
                 str(by_name(pydicom_files, "CT_small.dcm")[0]))
    assert result.exit_code == 2
    assert "dcmweb: error: unknown storage class 'FROZEN'" in result.stderr
    assert local_server.requests == []


@pytest.mark.parametrize("study", ["../../../x", "1.2.3?x=1", "1.2/3", "bad uid", ""])
def test_a_study_uid_that_is_not_one_is_a_usage_error(local_server, pydicom_files: list[Path],
                                                      study: str) -> None:
    """--study goes into the URL: '../x' had posted to another path of the server."""
    result = run(local_server.url, "store", "--study", study,
                 str(by_name(pydicom_files, "CT_small.dcm")[0]))
    assert result.exit_code == 2, result.stderr
    assert f"dcmweb: error: invalid study UID {study!r}" in result.stderr
    assert local_server.requests == []


# -- tiny-pacs ----------------------------------------------------------------------------------
def test_store_to_tiny_pacs_and_duplicates(tinypacs_fresh, pydicom_files: list[Path],
                                           tmp_path: Path) -> None:
    files = by_name(pydicom_files, "CT_small.dcm", "MR_small.dcm")
    first = run(tinypacs_fresh.url, "store", *map(str, files))
    assert first.exit_code == 0, first.stderr
    assert uploaded_lines(first.stderr) == {
        str(p): instance_url(tinypacs_fresh.url, p) for p in files}
    listed = requests.get(tinypacs_fresh.url + "/studies", timeout=30).json()
    assert len(listed) == 2
    # tiny-pacs answers 409 to duplicates: a rerun finds them by search, so it is safe
    # (old dcmweb: every file failed, exit 6).
    again = run(tinypacs_fresh.url, "store", "--report", str(tmp_path / "again.jsonl"),
                *map(str, files))
    assert again.exit_code == 0, again.stderr
    assert "error" not in again.stderr
    for path in files:
        assert (f"{path} uploaded as {instance_url(tinypacs_fresh.url, path)} (already on the"
                " server: a duplicate refused; confirmed by search)") in again.stderr
    rows = [json.loads(line) for line in (tmp_path / "again.jsonl").read_text().splitlines()]
    assert {(r["status"], r["confirmed_by"]) for r in rows} == {("stored", "search")}
    assert len(requests.get(tinypacs_fresh.url + "/studies", timeout=30).json()) == 2


def test_a_tiny_pacs_refusal_naming_no_instance_keeps_its_reason(
        tinypacs_fresh, tmp_path: Path) -> None:
    """tiny-pacs refuses a part with a malformed UID by 409 and a failure 0x0110 that
    names no instance (it never echoes a malformed UID): the report's reason_code was
    empty and the message only 'HTTP 409 Conflict'."""
    [path] = corpus.synthetic_files(tmp_path / "in", 1)
    dataset = pydicom.dcmread(path)
    malformed = "1.2.826.0.1.3680043.8.498.01"  # a component with a leading zero
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = malformed
    dataset.save_as(path)
    report = tmp_path / "report.jsonl"
    result = run(tinypacs_fresh.url, "store", "--report", str(report), str(path))
    assert result.exit_code == 1
    assert f"dcmweb: error: {path} failed: processing failure (0x0110)" in lines(result.stderr)
    [row] = [json.loads(line) for line in report.read_text().splitlines()]
    assert (row["status"], row["http_status"], row["reason_code"]) == ("failed", 409, "0x0110")


# -- what is not DICOM, and bad paths ----------------------------------------------------------
def test_non_dicom_and_empty_files_are_skipped(local_server, pydicom_files: list[Path],
                                               tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    ct = by_name(pydicom_files, "CT_small.dcm")[0]
    result = run(local_server.url, "store", str(text), str(empty), str(ct))
    assert result.exit_code == 0, result.stderr
    assert (f"dcmweb: warning: skipped {text}: not a DICOM Part-10 file (no DICM marker)"
            in lines(result.stderr))
    assert f"dcmweb: warning: skipped {empty}: empty file" in lines(result.stderr)
    assert summary(result.stderr)["extras"] == "2 skipped"
    assert uploaded_lines(result.stderr) == {str(ct): instance_url(local_server.url, ct)}


def test_broken_link_is_a_failure_that_says_where_it_points(
        local_server, pydicom_files: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    ct = by_name(pydicom_files, "CT_small.dcm")[0]
    (folder / "ct.dcm").write_bytes(ct.read_bytes())
    (folder / "gone.dcm").symlink_to(tmp_path / "deleted-meanwhile.dcm")  # lists, cannot open
    result = run(local_server.url, "store", str(folder))
    assert result.exit_code == 6, result.stderr
    # Old dcmweb: "cannot read: No such file or directory", for a file the folder lists.
    assert (f"dcmweb: error: {folder / 'gone.dcm'} failed: cannot read: a broken symbolic "
            f"link to {tmp_path / 'deleted-meanwhile.dcm'} (No such file or directory)"
            ) in lines(result.stderr)
    assert summary(result.stderr)["extras"] == "1 failed"
    assert list(uploaded_lines(result.stderr)) == [str(folder / "ct.dcm")]


def test_nothing_dicom_exits_2(local_server, pydicom_files: list[Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    dicomdir = by_name(pydicom_files, "DICOMDIR")[0]
    result = run(local_server.url, "store", str(text), str(dicomdir))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"dcmweb: warning: skipped {dicomdir}: a DICOMDIR index, not an image" in result.stderr
    assert lines(result.stderr)[-1] == (
        "dcmweb: error: no DICOM files to store (all files were skipped as not DICOM)")
    assert local_server.requests == []


@pytest.mark.parametrize(("target", "warning"), [
    ("empty-dir", "no files in the folder {mask}"),  # was "no files match": not a mask
    ("empty-dir/*.dcm", "no files match {mask}")])
def test_no_files_exits_2_with_one_clear_error(local_server, tmp_path: Path,
                                               target: str, warning: str) -> None:
    (tmp_path / "empty-dir").mkdir()
    mask = str(tmp_path / target)
    result = run(local_server.url, "store", mask)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert lines(result.stderr) == [
        f"dcmweb: info: store to {local_server.url} from {mask} (1 worker; batch-size 20)",
        "dcmweb: warning: " + warning.format(mask=mask),
        "dcmweb: error: no files to store (check the paths and masks)",
    ]
    assert local_server.requests == []


def test_missing_explicit_path_is_a_failed_item(local_server, pydicom_files: list[Path],
                                                tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.dcm")
    alone = run(local_server.url, "store", missing)
    assert alone.exit_code == 1  # nothing stored
    assert lines(alone.stderr)[1] == (
        f"dcmweb: error: {missing} failed: cannot read: No such file or directory")
    assert lines(alone.stderr)[-1] == "dcmweb: error: nothing stored: 1 of 1 file failed"
    assert local_server.requests == []
    ct = str(by_name(pydicom_files, "CT_small.dcm")[0])
    report = tmp_path / "report.jsonl"
    mixed = run(local_server.url, "store", "--report", str(report), ct, missing)
    assert mixed.exit_code == 6, mixed.stderr  # old dcmweb: a warning and exit 0
    assert summary(mixed.stderr)["extras"] == "1 failed"
    rows = {r["path"]: r["status"] for r in map(json.loads, report.read_text().splitlines())}
    assert rows == {ct: "stored", missing: "failed"}


def test_unmatched_mask_does_not_stop_the_others(local_server, pydicom_files: list[Path],
                                                 tmp_path: Path) -> None:
    ct = by_name(pydicom_files, "CT_small.dcm")[0]
    result = run(local_server.url, "store", str(tmp_path / "nope*.dcm"), str(ct))
    assert result.exit_code == 0
    assert f"dcmweb: warning: no files match {tmp_path / 'nope*.dcm'}" in result.stderr
    assert list(uploaded_lines(result.stderr)) == [str(ct)]


def test_quiet_is_silent_on_success_and_keeps_warnings(local_server, pydicom_files: list[Path],
                                                      tmp_path: Path) -> None:
    files = by_name(pydicom_files, *CLEAN[:2])
    result = run("-q", local_server.url, "store", *map(str, files))
    assert (result.exit_code, result.stderr, result.stdout) == (0, "", "")
    text = tmp_path / "notes.txt"
    text.write_text("not DICOM")
    warned = run("-q", local_server.url, "store", str(text), *map(str, files))
    assert warned.exit_code == 0
    assert lines(warned.stderr) == [
        f"dcmweb: warning: skipped {text}: not a DICOM Part-10 file (no DICM marker)"]


def test_library_results_count(local_server, pydicom_files: list[Path], tmp_path: Path) -> None:
    (tmp_path / "junk.bin").write_bytes(b"junk")
    files = by_name(pydicom_files, *CLEAN)
    with Client(local_server.url, backoff=0.01) as client:
        results = client.store([*map(str, files), str(tmp_path / "junk.bin")])
    assert Counter(r.status for r in results) == {"stored": len(files), "skipped": 1}
    for r in results:
        if r.status == "stored":
            assert r.retrieve_url == instance_url(local_server.url, r.path)
            assert r.sop_instance_uid == uids(r.path)[2]


def test_file_removed_after_listing_fails_alone(local_server, pydicom_files: list[Path],
                                                tmp_path: Path) -> None:
    """Listed, then gone before its batch is sent: that file fails, its batch-mates are
    stored, and nothing crashes."""
    sources = [by_name(pydicom_files, n)[0] for n in ("CT_small.dcm", "MR_small.dcm")]
    copies = []
    for source in sources:
        copies.append(tmp_path / source.name)
        copies[-1].write_bytes(source.read_bytes())

    def listing():
        yield copies[0]
        copies[0].unlink()  # after its header was read, before the batch goes out
        yield copies[1]

    with Client(local_server.url, backoff=0.01) as client:
        results = list(client.iter_store(listing(), batch_size=2))
    by_path = {r.path: r for r in results}
    assert by_path[copies[0]].status == "failed"
    assert by_path[copies[0]].message == "cannot read: No such file or directory"
    assert by_path[copies[1]].status == "stored"


def test_leaving_the_loop_starts_no_new_upload(local_server, tmp_path: Path) -> None:
    """Old dcmweb went on sending the batches queued for its threads after the caller
    left the loop (the caller saw 1 result; the server got 8 files)."""
    files = corpus.synthetic_files(tmp_path / "s", 40)
    workers = 4
    local_server.inject_fault(method="POST")  # the first upload is answered at once,
    local_server.inject_fault(delay=0.3, method="POST", count=100)  # the others are slow
    with Client(local_server.url, workers=workers) as client:
        for _ in client.iter_store(files, batch_size=1):
            break  # the generator is closed here; 3 batches wait in the queue
        time.sleep(1.5)  # the requests in flight have ended
    posts = sum(r.method == "POST" for r in local_server.requests)
    # The first, and one more per worker already sending when the loop was left.
    assert posts <= 1 + workers
    assert local_server.store.query("SELECT count(*) FROM instances")[0][0] == posts


def counted(paths: list[Path], taken: list[Path]) -> Iterator[Path]:
    """``paths``, each noted in ``taken`` when the run takes it."""
    for path in paths:
        taken.append(path)
        yield path


@pytest.mark.parametrize("workers", [1, 3])
def test_files_decided_without_sending_are_told_at_once(
        local_server, tmp_path: Path, workers: int) -> None:
    # A nightly rerun of a list naming many gone or non-DICOM files: their outcomes come
    # as they are decided, not held (in memory, unreported) until a batch is sent.
    real = corpus.synthetic_files(tmp_path / "s", 2)
    (tmp_path / "notes.txt").write_text("not DICOM")
    gone = [tmp_path / f"gone-{n}.dcm" for n in range(2000)]
    paths = [*gone, tmp_path / "notes.txt", *real]
    taken: list[Path] = []
    with Client(local_server.url, backoff=0.01) as client:
        results = client.iter_store(counted(paths, taken), batch_size=1, workers=workers)
        first = next(results)
        assert (first.path, first.status) == (gone[0], "failed")
        assert len(taken) == 1  # none held back
        assert not [r for r in local_server.requests if r.method == "POST"]
        rest = [first, *results]
    assert [r.status for r in rest] == ["failed"] * 2000 + ["skipped"] + ["stored"] * 2
    assert [r.path for r in rest[:2001]] == paths[:2001]
