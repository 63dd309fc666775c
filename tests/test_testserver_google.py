"""The local server's Google-specific behaviour: v1beta1, operation counters, includefield."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.uid import generate_uid
from test_testserver import blob, qido, real_file, stow, synthetic, uids

from dcmweb.testing import LocalServer

CT = "CT_small.dcm"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[LocalServer]:
    with LocalServer(tmp_path / "store", delete_delay=1.0) as server:
        yield server


def test_v1beta1_serves_the_same_store_with_its_own_urls(srv: LocalServer) -> None:
    data = blob(CT)
    study, series, sop = uids(data)
    resp = requests.post(srv.beta_url + "/studies", data=data,
                         headers={"Content-Type": "application/dicom",
                                  "Accept": "application/dicom+json"}, timeout=30)  # fmt: skip
    assert resp.status_code == 200
    assert resp.json()["00081190"]["Value"][0] == f"{srv.beta_url}/studies/{study}"
    assert [o["0020000D"]["Value"][0] for o in qido(srv, "/studies")] == [study]
    url = f"{srv.beta_url}/studies/{study}/series/{series}/instances/{sop}"
    [obj] = requests.get(url + "/metadata", timeout=30).json()
    assert obj["7FE00010"]["BulkDataURI"] == url + "/bulkdata/7FE00010"
    deleted = requests.delete(f"{srv.beta_url}/studies/{study}", timeout=30)
    name = deleted.json()["name"]
    assert requests.get(f"{srv.root_url}/v1beta1/{name}", timeout=30).json()["name"] == name


def test_delete_counters_move_while_the_operation_runs(srv: LocalServer) -> None:
    study, series = generate_uid(), generate_uid()
    template = blob(CT)
    assert stow(srv, [synthetic(template, study, series) for _ in range(5)]).status_code == 200
    name = requests.delete(f"{srv.url}/studies/{study}", timeout=30).json()["name"]
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        op = requests.get(f"{srv.root_url}/v1/{name}", timeout=30).json()
        counter = op["metadata"]["counter"]
        seen.append((int(counter["success"]), int(counter["pending"])))
        if op.get("done"):
            break
        time.sleep(0.02)
    assert seen[-1] == (5, 0)
    assert all(success + pending == 5 for success, pending in seen)
    successes = [success for success, _ in seen]
    assert successes == sorted(successes)
    assert len(set(successes)) >= 3  # seen between the start and the end, not only 0 and 5


def test_includefield_all_returns_every_stored_attribute_but_bulk(srv: LocalServer) -> None:
    assert stow(srv, [blob(CT)]).status_code == 200
    ds = pydicom.dcmread(real_file(CT))
    [obj] = qido(srv, "/instances", includefield="all")
    assert list(obj) == sorted(obj)
    study, series, sop = uids(blob(CT))
    url = f"{srv.url}/studies/{study}/series/{series}/instances/{sop}/metadata"
    [metadata] = requests.get(url, timeout=30).json()
    bulk = {tag for tag, el in metadata.items() if "BulkDataURI" in el}
    assert {"7FE00010", "00431029"} <= bulk
    assert set(metadata) - bulk <= set(obj)
    assert not bulk & set(obj)
    assert obj["00180050"]["Value"] == [float(ds.SliceThickness)]
    [study] = qido(srv, "/studies", includefield="all")
    assert study["00201208"]["Value"] == [1]  # computed attributes stay


def test_includefield_by_keyword_or_tag_and_unknown_400(srv: LocalServer) -> None:
    assert stow(srv, [blob(CT)]).status_code == 200
    [obj] = qido(srv, "/instances", includefield="Rows,00280011")
    assert obj["00280010"]["Value"] == [128] and obj["00280011"]["Value"] == [128]
    plain = qido(srv, "/instances")[0]
    assert "00280010" not in plain
    resp = requests.get(srv.url + "/instances", params={"includefield": "NoSuchThing"},
                        timeout=30)  # fmt: skip
    assert resp.status_code == 400 and resp.headers["Content-Type"].startswith("text/plain")


@pytest.fixture
def three(tmp_path: Path) -> Iterator[LocalServer]:
    with LocalServer(tmp_path / "store", search_keys="extended") as server:
        files = [blob(CT), blob("MR_small.dcm"), blob("rtplan.dcm")]
        assert stow(server, files).status_code == 200
        yield server


def study_of(name: str) -> str:
    return uids(blob(name))[0]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"PatientSex": "F"}, {"MR_small.dcm"}),
        ({"InstitutionName": "*IMAGING*"}, {CT}),
        ({"Manufacturer": "TOSHIBA_MEC"}, {"MR_small.dcm"}),
        ({"StudyTime": "150000-190000"}, {"MR_small.dcm", "rtplan.dcm"}),
        ({"StudyTime": "-080000"}, {CT}),
        ({"StudyDescription": "e+1"}, {CT}),
        ({"SeriesNumber": "2"}, {"rtplan.dcm"}),
        ({"00200011": "1", "PatientSex": "O"}, {CT}),
    ],
)  # fmt: skip
def test_more_search_keys(three: LocalServer, params: dict[str, str], expected: set[str]) -> None:
    found = {first["0020000D"]["Value"][0] for first in qido(three, "/instances", **params)}
    assert found == {study_of(name) for name in expected}


@pytest.mark.parametrize(
    ("params", "message"),
    [({"SeriesNumber": "one"}, "not an integer"), ({"StudyTime": "7pm"}, "HHMMSS"),
     ({"Rows": "128"}, "Rows is not a supported instance level attribute"),
     ({"NotAKeyword": "x"}, "unknown query parameter")],
)  # fmt: skip
def test_unsupported_or_bad_search_keys_are_plain_400(
    three: LocalServer, params: dict[str, str], message: str
) -> None:
    resp = requests.get(three.url + "/instances", params=params, timeout=30)
    assert resp.status_code == 400
    assert resp.headers["Content-Type"].startswith("text/plain") and message in resp.text


def test_an_older_index_gains_the_new_search_columns(tmp_path: Path) -> None:
    import sqlite3

    from dcmweb.testing import storage

    (tmp_path / "store").mkdir()
    old = "\n".join(line for line in storage._SCHEMA.splitlines()
                    if line.strip().split(" ")[0] not in storage._ADDED_COLUMNS)  # fmt: skip
    with sqlite3.connect(tmp_path / "store" / "index.sqlite") as db:
        db.executescript(old)
    with LocalServer(tmp_path / "store", search_keys="extended") as server:
        assert stow(server, [blob(CT)]).status_code == 200
        assert len(qido(server, "/instances", PatientSex="O")) == 1


def test_qido_values_are_dicom_json_like_metadata(srv: LocalServer) -> None:
    """A name with three component groups and a multi-valued attribute: QIDO answered
    one Alphabetic string 'Yamada^Tarou=山田^太郎=やまだ^たろう' and one value 'S\\T',
    unlike the instance's own metadata (and Google)."""
    ds = pydicom.dcmread(real_file(CT))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.SeriesDescription = ["S", "T"]
    ds.ReferringPhysicianName = "=山田^花子"  # ideographic only
    data = synthetic(_bytes(ds))
    study, series, _ = uids(data)
    assert stow(srv, [data]).status_code == 200
    [meta] = requests.get(f"{srv.url}/studies/{study}/metadata", timeout=30).json()
    [row] = qido(srv, "/series", SeriesInstanceUID=series, includefield="SeriesDescription")
    for tag in ("00100010", "0008103E", "00080090"):
        assert row[tag] == meta[tag], tag
    assert row["00100010"]["Value"] == [{"Alphabetic": "Yamada^Tarou",
                                         "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}]
    assert row["0008103E"]["Value"] == ["S", "T"]


def _bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
