"""The library's surface: search params in three shapes, rows read by keyword, exported
types, errors with status and url, clear TypeErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

import dcmweb
from dcmweb import Client, NotFoundError
from dcmweb.params import to_pairs
from dcmweb.rows import as_dataset, value, values
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus


def test_params_shapes() -> None:
    assert to_pairs({"PatientID": "P005", "limit": 10, "fuzzymatching": True}) == [
        ("PatientID", "P005"), ("limit", "10"), ("fuzzymatching", "true")]
    assert to_pairs({"includefield": ["00081030", "00080060"]}) == [
        ("includefield", "00081030"), ("includefield", "00080060")]
    assert to_pairs([("PatientID", "P005")]) == [("PatientID", "P005")]
    assert to_pairs("PatientName=Sally%20Zhang&limit=10") == [
        ("PatientName", "Sally Zhang"), ("limit", "10")]
    assert to_pairs(None) == to_pairs("") == to_pairs({}) == []
    with pytest.raises(TypeError, match="got the item 'PatientID'"):
        to_pairs(["PatientID"])  # type: ignore[list-item]


def test_search_with_a_dict_a_string_and_pairs(local_server: LocalServer,
                                               tmp_path: Path) -> None:
    with Client(local_server.url) as client:
        client.store(corpus.synthetic_files(tmp_path / "a", 2, patient_id="P005"))
        client.store(corpus.synthetic_files(tmp_path / "b", 1, patient_id="P006"))
        by_dict = client.search("instances", {"PatientID": "P005"})
        by_text = client.search("instances", "PatientID=P005")
        by_pairs = client.search("instances", [("PatientID", "P005")])
        assert len(by_dict) == len(by_text) == len(by_pairs) == 2
        assert {value(row, "PatientID") for row in by_dict} == {"P005"}
        with pytest.raises(TypeError, match="colour"):
            client.search("instances", colour="red")  # type: ignore[call-arg]


def test_rows_by_keyword() -> None:
    row = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^JOHN"}]},
           "00080061": {"vr": "CS", "Value": ["CT", "MR"]},
           "0020000D": {"vr": "UI", "Value": ["1.2.3"]}}
    assert value(row, "PatientName") == "DOE^JOHN"
    assert values(row, "ModalitiesInStudy") == ["CT", "MR"]
    assert value(row, "00080061") == "CT"
    assert value(row, "PatientID", "?") == "?"
    ds = as_dataset(row)
    assert (str(ds.PatientName), ds.StudyInstanceUID) == ("DOE^JOHN", "1.2.3")


def test_exported_types() -> None:
    from dcmweb.delete import DeleteResult
    from dcmweb.retrieve import RetrieveResult
    from dcmweb.store import StoreResult

    assert (dcmweb.StoreResult, dcmweb.RetrieveResult, dcmweb.DeleteResult) == (
        StoreResult, RetrieveResult, DeleteResult)
    for name in dcmweb.__all__:
        assert getattr(dcmweb, name) is not None


def test_http_errors_carry_status_and_url(local_server: LocalServer, tmp_path: Path) -> None:
    with Client(local_server.url) as client, pytest.raises(NotFoundError) as caught:
        client.retrieve("studies/1.2.3.404", tmp_path)
    assert caught.value.status == 404
    assert caught.value.url == f"{local_server.url}/studies/1.2.3.404"
    assert dcmweb.UsageError("x").status is None


def test_every_public_client_method_has_a_docstring() -> None:
    import inspect

    public = [name for name, member in inspect.getmembers(Client, inspect.isfunction)
              if not name.startswith("_")]
    assert {"store", "iter_store", "bulk_store", "search", "retrieve", "close",
            "retrieve_instance", "iter_instances"} <= set(public)
    assert [name for name in public if not (getattr(Client, name).__doc__ or "").strip()] == []


@pytest.mark.parametrize("method", ["store", "iter_store", "bulk_store", "search",
                                    "iter_search", "retrieve", "iter_retrieve"])
def test_keywords_are_typed_and_explicit(method: str) -> None:
    import inspect

    parameters = inspect.signature(getattr(Client, method)).parameters.values()
    assert all(p.kind != p.VAR_KEYWORD for p in parameters)
    keywords = [p for p in parameters if p.kind == p.KEYWORD_ONLY]
    assert keywords and all(p.annotation is not p.empty for p in keywords)


def test_a_misspelt_store_keyword_is_a_type_error_naming_it(local_server: LocalServer,
                                                           tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "f", 1)
    with Client(local_server.url) as client:
        with pytest.raises(TypeError, match="batchsize"):
            client.store(files, batchsize=5)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="single_parts"):
            client.bulk_store(files, single_parts=True)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="trasnfer_syntax"):
            client.retrieve("studies/1.2", tmp_path, trasnfer_syntax="*")  # type: ignore[call-arg]
        assert [r.status for r in client.store(files, batch_size=5, workers=2)] == ["stored"]
    assert "batch_size" in (Client.store.__doc__ or "") + (Client.iter_store.__doc__ or "")


def test_a_lone_path_is_one_path_not_its_characters(local_server: LocalServer, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """store("one.dcm") for store(["one.dcm"]): old dcmweb iterated the characters, and
    "." walked the current folder, uploading every file in it."""
    monkeypatch.chdir(tmp_path)
    corpus.synthetic_files(tmp_path / "unrelated", 5)
    [one] = corpus.synthetic_files(tmp_path / "wanted", 1, patient_id="ONE")
    with Client(local_server.url) as client:
        assert client.bulk_store(str(one), dry_run=True).would_send == 1
        assert [r.path for r in client.iter_store(str(one))] == [one]
        assert [r.status for r in client.store(one.relative_to(tmp_path))] == ["stored"]
        assert [r.status for r in client.store(str(one))] == ["stored"]
        assert client.bulk_store(one).counts == {"stored": 1}
        assert [value(row, "PatientID") for row in client.search("instances")] == ["ONE"]
