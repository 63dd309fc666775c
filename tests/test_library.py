"""The library's surface: search params in three shapes, rows read by keyword, exported
types, errors with status and url, clear TypeErrors."""

from __future__ import annotations

import _thread
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dcmweb
from dcmweb import Client, NotFoundError, StoreResult
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
    with pytest.raises(dcmweb.UsageError, match="got the item 'PatientID'"):
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
    from dcmweb.storefiles import StoreResult

    assert (dcmweb.StoreResult, dcmweb.RetrieveResult, dcmweb.DeleteResult) == (
        StoreResult, RetrieveResult, DeleteResult)
    for name in dcmweb.__all__:
        assert getattr(dcmweb, name) is not None
    # Errors a script may catch by name: a journal another run holds, a process limit.
    from dcmweb.errors import Busy
    from dcmweb.limits import DescriptorLimit, ThreadLimit

    assert (dcmweb.Busy, dcmweb.DescriptorLimit, dcmweb.ThreadLimit) == (
        Busy, DescriptorLimit, ThreadLimit)


def test_the_types_the_docs_name_are_exported_and_import_dcmweb_stays_light() -> None:
    """usage.md names RenderOptions and Operation; old dcmweb had them only in
    dcmweb.rendered and dcmweb.operations (ImportError from dcmweb). python.md names
    bulk_store's Summary and Outcome, which were only in dcmweb.bulkrecords."""
    from dcmweb import Operation, Outcome, RenderOptions, Summary
    from dcmweb.bulkrecords import Outcome as OutcomeItself
    from dcmweb.bulkrecords import Summary as SummaryItself
    from dcmweb.operations import Operation as OperationItself
    from dcmweb.rendered import RenderOptions as RenderOptionsItself

    assert (Operation, RenderOptions) == (OperationItself, RenderOptionsItself)
    assert (Summary, Outcome) == (SummaryItself, OutcomeItself)
    code = ("import sys, dcmweb; print(sorted(m for m in sys.modules if m in "
            "('dcmweb.rendered', 'dcmweb.operations', 'dcmweb.client', 'dcmweb.bulkrecords')))")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, timeout=60)
    assert fresh.stdout.strip() == "[]"  # imported on first use, like Client


def test_rendered_images_with_the_exported_options(local_server: LocalServer,
                                                   tmp_path: Path) -> None:
    from dcmweb import RenderOptions

    with Client(local_server.url) as client:
        [stored] = client.store(corpus.synthetic_files(tmp_path / "in", 1))
        path = (f"studies/{stored.study_instance_uid}/series/{stored.series_instance_uid}"
                f"/instances/{stored.sop_instance_uid}/rendered")
        [result] = client.retrieve(path, tmp_path / "out",
                                   render=RenderOptions(format="png", viewport="16,16"))
    assert result.path is not None
    assert result.path.read_bytes().startswith(b"\x89PNG")


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


# Client's options: the CLI's bounds, checked at construction ------------------------------
@pytest.mark.parametrize(("cli_option", "keyword", "value"), [
    ("--read-timeout", "read_timeout", 0),  # every request cut at once, blamed on the server
    ("--read-timeout", "read_timeout", float("nan")),
    ("--connect-timeout", "connect_timeout", float("inf")),
    ("--retries", "retries", -1),
    ("--retries", "retries", 21),
    ("--workers", "workers", 0),
    ("--workers", "workers", 65),
    ("--request-deadline", "request_deadline", 0.5),
    ("--low-speed-limit", "low_speed_limit", -1),
    ("--low-speed-time", "low_speed_time", 1e12),
    ("--outage-limit", "outage_limit", float("-inf")),
    ("--max-rate", "max_rate", 0),
    ("--max-rate", "max_rate", -1),
])
def test_client_refuses_what_the_cli_refuses(cli_option: str, keyword: str,
                                             value: float) -> None:
    from click.testing import CliRunner

    from dcmweb.cli import cli

    result = CliRunner().invoke(cli, ["http://127.0.0.1:9", cli_option, str(value), "search"])
    assert result.exit_code == 2, result.output
    with pytest.raises(dcmweb.UsageError, match=f"^{keyword} must be "):
        Client("http://127.0.0.1:9", **{keyword: value})


@pytest.mark.parametrize(("keywords", "message"), [
    ({"workers": "4"}, "workers must be a whole number (from 1 to 64), not '4'"),
    ({"workers": True}, "workers must be a whole number (from 1 to 64), not True"),
    ({"read_timeout": "30"}, "read_timeout must be a number (at least 0.1), not '30'"),
    ({"backoff": float("nan")}, "backoff must be at least 0, finite and at most 1000000000"),
    ({"retries": 2.5}, "retries must be a whole number (from 0 to 20), not 2.5"),
    ({"headers": [("X-A", "1")]}, "headers must be a dict of names and values, not a list"),
])
def test_client_names_the_option_of_a_wrong_type(keywords: dict[str, object],
                                                message: str) -> None:
    with pytest.raises(dcmweb.UsageError) as caught:
        Client("http://127.0.0.1:9", **keywords)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)


def test_client_accepts_the_edges_of_each_range() -> None:
    Client("http://127.0.0.1:9", workers=64, retries=0, read_timeout=0.1, backoff=0,
           outage_limit=0, low_speed_limit=0, max_rate=0.001).close()


def test_a_host_that_is_not_text_is_a_usage_error() -> None:
    with pytest.raises(dcmweb.UsageError, match="HOST must be a URL or a store name, not None"):
        Client(None)  # type: ignore[arg-type]


def test_a_closed_client_says_so(local_server: LocalServer, tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "f", 1)
    with Client(local_server.url) as client:
        pass
    client.close()  # twice is fine
    for call in (lambda: client.search("studies"), lambda: client.store(files),
                 lambda: client.metadata("studies/1.2"), lambda: client.delete("studies/1.2")):
        with pytest.raises(dcmweb.UsageError, match=r"^the client is closed"):
            call()
    assert not list((tmp_path / "store").rglob("*.dcm"))


# Arguments of the methods --------------------------------------------------------------------
def test_store_checks_its_options_before_sending(local_server: LocalServer,
                                                 tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "f", 1)
    with Client(local_server.url) as client:
        for keywords, message in [
            ({"workers": 0}, "workers must be from 1 to 64, not 0"),  # was: the default
            ({"batch_size": 0}, "batch_size must be from 1 to 1000, not 0"),
            ({"batch_size": "5"}, "batch_size must be a whole number (from 1 to 1000)"),
            ({"batch_bytes": 0}, "batch_bytes must be at least 1, not 0"),
            # was posted as studies/../x: a 404 that ended the whole store
            ({"study_uid": "../x"}, "study_uid '../x' is not a UID"),
        ]:
            with pytest.raises(dcmweb.UsageError) as caught:
                client.store(files, **keywords)  # type: ignore[arg-type]
            assert str(caught.value).startswith(message)
        assert client.search("instances") == []


def test_search_arguments(local_server: LocalServer, tmp_path: Path) -> None:
    with Client(local_server.url) as client:
        client.store(corpus.synthetic_files(tmp_path / "a", 2, patient_id="P005"))
        client.store(corpus.synthetic_files(tmp_path / "b", 1, patient_id="P006"))
        # A str is one filter (it was read as a list of letters: "invalid filter 'P'").
        assert len(client.search("instances", filters="PatientID=P005")) == 2
        assert len(client.search("instances", include="StudyDescription")) == 3
        # The same paging word twice: which one the server used was a guess.
        with pytest.raises(dcmweb.UsageError, match=r"^offset is given twice"):
            client.search("instances", {"offset": 1}, offset=2)
        with pytest.raises(dcmweb.UsageError, match=r"^limit is given twice"):
            client.search("instances", "LIMIT=1", limit=2)
        # None was sent as the text 'None' (no match), never as "any value".
        with pytest.raises(dcmweb.UsageError, match=r"^search parameter 'PatientID' is None"):
            client.search("instances", {"PatientID": None})
        with pytest.raises(dcmweb.UsageError, match=r"^search parameter 'PatientID' is None"):
            client.search("instances", [("PatientID", None)])
        for keywords, message in [({"limit": 0}, "limit must be at least 1, not 0"),
                                  ({"offset": -1}, "offset must be at least 0, not -1"),
                                  ({"page_size": 0}, "page_size must be at least 1"),
                                  ({"limit": "1"}, "limit must be a whole number")]:
            with pytest.raises(dcmweb.UsageError) as caught:
                client.search("instances", **keywords)  # type: ignore[arg-type]
            assert str(caught.value).startswith(message)


@pytest.mark.parametrize("call", [
    lambda c: c.metadata(None), lambda c: c.fetch_metadata(None),
    lambda c: c.rendered(None), lambda c: c.frames(None), lambda c: c.bulkdata(None),
    lambda c: c.retrieve_instance(None), lambda c: list(c.iter_instances(None)),
    lambda c: c.delete(None), lambda c: c.operation(None), lambda c: c.wait_operation(None),
    lambda c: list(c.iter_retrieve([None], ".")), lambda c: c.retrieve("studies/1", None),
    lambda c: c.retrieve(["studies/1", b"studies/2"]),
])
def test_a_path_that_is_not_text_is_a_usage_error(call: Any) -> None:
    with Client("http://127.0.0.1:9") as client, pytest.raises(dcmweb.UsageError):
        call(client)


_SHAPES = "a dict, a list of (key, value) pairs or a query string"


@pytest.mark.parametrize(("call", "message"), [
    # each was a raw TypeError or AttributeError from deep inside
    (lambda c: c.search("instances", 5), f"search params must be {_SHAPES}, not 5"),
    (lambda c: c.search("instances", [5]), f"search params must be {_SHAPES}; got the item 5"),
    (lambda c: c.search("instances", b"PatientID=1"), "search params must be"),
    (lambda c: c.search(5), "path must be a str, not 5"),
    (lambda c: c.search(filters=5), "filters must be a str or a list of str, not 5"),
    (lambda c: c.search(include=[5]), "an item of include must be a str, not 5"),
    (lambda c: c.frames(5), "path must be a str, not 5"),
    (lambda c: c.bulkdata(5), "uri must be a str, not 5"),
    (lambda c: c.delete(5), "path must be a str, not 5"),
    (lambda c: c.retrieve_instance(5), "path must be a str, not 5"),
    (lambda c: c.retrieve(5), "path must be a str, not 5"),
    (lambda c: c.retrieve(["studies/1", 5]), "path 2: a path must be a str, not 5"),
    (lambda c: c.retrieve("studies/1.2", ".", part_type=5), "part_type must be a str, not 5"),
    (lambda c: c.frames("studies/1/series/2/instances/3/frames/1", transfer_syntax=1.2),
     "transfer_syntax must be a str, not 1.2"),
    (lambda c: c.retrieve("studies/1/series/2/instances/3/rendered", ".", render="png"),
     "render must be a RenderOptions, not 'png'"),
    (lambda c: c.rendered("studies/1/series/2/instances/3", viewport=64), "invalid viewport 64"),
    (lambda c: c.rendered("studies/1/series/2/instances/3", quality="9"),
     "quality must be a whole number (from 1 to 100), not '9'"),
    (lambda c: c.store(5), "paths must be a path or a list of paths, not 5"),
    (lambda c: c.store([5]), "each of the paths must be a str or a Path, not 5"),
    (lambda c: list(c.iter_store(None)), "paths must be a path or a list of paths, not None"),
    (lambda c: c.store(".", storage_class=5), "storage_class must be a str, not 5"),
    (lambda c: c.bulk_store(".", journal=5), "journal must be a file's path, not 5"),
    (lambda c: c.store_json(5), "not a (metadata, jpeg) pair: 5"),
    (lambda c: Client(c.base_url, token=12345),  # type: ignore[arg-type]
     "token must be a str, not a value of type int"),
    (lambda c: Client(c.base_url, headers={"X-Key": 12345}),  # type: ignore[dict-item]
     "the header X-Key value must be a str, not a value of type int"),  # never the value
    (lambda c: Client(c.base_url, ca_bundle=5),  # type: ignore[arg-type]
     "ca_bundle must be a file's path, not 5"),
])
def test_an_argument_of_a_wrong_type_is_a_usage_error_naming_it(
        call: Any, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    corpus.synthetic_files(tmp_path, 1)  # what "." would store, were it reached
    with Client("http://127.0.0.1:9", retries=0) as client, \
            pytest.raises(dcmweb.UsageError) as caught:
        call(client)
    assert str(caught.value).startswith(message)


def test_waits_refuse_what_the_cli_refuses() -> None:
    with Client("http://127.0.0.1:9") as client:
        with pytest.raises(dcmweb.UsageError, match=r"^timeout must be at least 1, finite"):
            client.delete("studies/1.2", timeout=-1)
        with pytest.raises(dcmweb.UsageError, match=r"^timeout must be at least 1, finite"):
            client.wait_operation("1", timeout=float("nan"))


def test_the_library_writes_nothing_to_stderr_when_logging_is_not_set_up(
        local_server: LocalServer) -> None:
    """A retried request logs a warning; in a program that configured no logging,
    Python's last-resort handler would print it, and the library never prints."""
    local_server.inject_fault(503, count=1, retry_after="0")  # one retry: a warning
    script = ("import sys; from dcmweb import Client\n"
              "with Client(sys.argv[1], retries=2) as client:\n"
              "    print(len(client.search('studies')))\n")
    run = subprocess.run([sys.executable, "-c", script, local_server.url],
                         capture_output=True, text=True, timeout=60, check=True)
    assert (run.stdout, run.stderr) == ("0\n", "")


# Runs that stop, loops left, threads -------------------------------------------------------
def test_a_store_that_stops_carries_the_results_it_had(local_server: LocalServer,
                                                       tmp_path: Path) -> None:
    """store() returns a list: a run stopped by an error (credentials here) raised with
    nothing, and the caller never learnt of the files the server already held."""
    files = corpus.synthetic_files(tmp_path / "in", 6)
    local_server.inject_fault(401, count=10**6, body_contains=corpus.sop_instance_uid(files[2]))
    with Client(local_server.url) as client:
        with pytest.raises(dcmweb.AuthError) as caught:
            client.store(files, batch_size=2)
        results = caught.value.results
        assert results is not None
        assert [(r.path, r.status) for r in results] == [
            (files[0], "stored"), (files[1], "stored"), (files[2], "failed"), (files[3], "failed")]
        held = {value(row, "SOPInstanceUID") for row in client.search("instances")}
    assert held == {r.sop_instance_uid for r in results if r.status == "stored"}


def test_a_retrieve_that_stops_carries_the_files_it_saved(local_server: LocalServer,
                                                          tmp_path: Path) -> None:
    files = corpus.synthetic_files(tmp_path / "in", 6, studies=3)
    with Client(local_server.url) as client:
        client.store(files)
        studies = sorted({value(row, "StudyInstanceUID") for row in client.search("studies")})
        local_server.inject_fault(401, count=10**6, path_contains=studies[1])
        with pytest.raises(dcmweb.AuthError) as caught:
            client.retrieve([f"studies/{uid}" for uid in studies], tmp_path / "out")
    results = caught.value.results
    assert results is not None and {r.status for r in results} == {"saved"}
    assert {r.path for r in results} == {p for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert len(results) == 2


def dcmweb_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith("dcmweb-") and not t.name.startswith("dcmweb-testserver")]


def test_leaving_a_retrieve_loop_leaves_no_empty_folder(local_server: LocalServer,
                                                        tmp_path: Path) -> None:
    """The studies in flight when the loop was left made their folders when their
    answers came, after the stop had removed the empty ones: left behind, empty."""
    files = corpus.synthetic_files(tmp_path / "in", 6, studies=3)
    with Client(local_server.url) as client:
        client.store(files)
        studies = [value(row, "StudyInstanceUID") for row in client.search("studies")]
    for slow in studies[1:]:
        local_server.inject_fault(delay=0.5, method="GET", path_contains=slow)
    out = tmp_path / "out"
    with Client(local_server.url, workers=3) as client:
        results = client.iter_retrieve([f"studies/{uid}" for uid in studies], out)
        first = next(results)
        results.close()
        deadline = time.monotonic() + 10
        while dcmweb_threads() and time.monotonic() < deadline:
            time.sleep(0.05)  # until the slow answers came, and their threads ended
    assert dcmweb_threads() == []
    assert first.path is not None and first.path.is_file()
    assert [p for p in out.rglob("*") if p.is_dir() and not any(p.iterdir())] == []
    assert {p.parent.parent for p in out.rglob("*.dcm")} == {first.path.parent.parent}


def test_a_call_leaves_no_thread_behind(local_server: LocalServer, tmp_path: Path) -> None:
    """The worker threads were told to end as the call returned, and some still ran."""
    files = corpus.synthetic_files(tmp_path / "in", 12, studies=4)
    with Client(local_server.url, workers=4) as client:
        for call in (lambda: client.store(files, batch_size=1),
                     lambda: client.retrieve(None, tmp_path / "all"),
                     lambda: client.retrieve([f"studies/{value(row, 'StudyInstanceUID')}"
                                              for row in client.search("studies")],
                                             tmp_path / "some"),
                     lambda: client.bulk_store(files, skip_existing=True)):
            for _ in range(5):
                call()
                assert dcmweb_threads() == []


def test_an_on_outcome_that_cannot_be_called_is_refused_before_sending(
        local_server: LocalServer, tmp_path: Path) -> None:
    """It was a TypeError once the first file was decided: after the files were sent."""
    files = corpus.synthetic_files(tmp_path / "in", 3)
    refused = r"^on_outcome must be a function that takes an Outcome, not 'print'$"
    with Client(local_server.url) as client, pytest.raises(dcmweb.UsageError, match=refused):
        client.bulk_store(files, on_outcome="print")  # type: ignore[arg-type]
    assert [r.method for r in local_server.requests] == []


def test_paths_that_fail_while_listed_stop_the_store_after_its_batches_in_flight(
        local_server: LocalServer, tmp_path: Path) -> None:
    """The caller's own iterable raising (a listing of its own that broke) ended the run
    at once: the batches in flight were stored, and never reported."""
    files = corpus.synthetic_files(tmp_path / "in", 8)

    def listing() -> Iterator[Path]:
        yield from files[:5]
        deadline = time.monotonic() + 10
        while not local_server.requests and time.monotonic() < deadline:
            time.sleep(0.01)  # until a batch is on its way
        raise RuntimeError("the listing broke")

    local_server.inject_fault(delay=0.3, count=10, method="POST")  # in flight as it breaks
    seen: list[StoreResult] = []
    with Client(local_server.url, workers=3) as client:
        with pytest.raises(RuntimeError, match="the listing broke"):
            seen.extend(client.iter_store(listing(), batch_size=1))
        held = {value(row, "SOPInstanceUID") for row in client.search("instances")}
    assert dcmweb_threads() == []
    assert held and {r.status for r in seen} == {"stored"}
    assert {r.sop_instance_uid for r in seen} == held


def test_a_call_whose_client_is_closed_meanwhile_says_so(local_server: LocalServer) -> None:
    """A web service closing its client at shutdown: the call in flight in another
    thread raised a bare 'cancelled'."""
    local_server.inject_fault(503, retry_after="30")  # a wait that close() ends
    client = Client(local_server.url)
    failed: list[dcmweb.DcmwebError] = []

    def search() -> None:
        try:
            client.search("studies")
        except dcmweb.DcmwebError as error:
            failed.append(error)

    thread = threading.Thread(target=search)
    thread.start()
    deadline = time.monotonic() + 10
    while not local_server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    client.close()
    thread.join(10)
    assert not thread.is_alive()
    [error] = failed
    assert isinstance(error, dcmweb.UnavailableError)
    assert str(error) == "cancelled: the client was closed during the call"


def test_a_store_interrupted_carries_the_results_it_had(local_server: LocalServer,
                                                        tmp_path: Path) -> None:
    """Ctrl-C in a script's store(): the files stored so far went with the list."""
    files = corpus.synthetic_files(tmp_path / "in", 8)
    local_server.inject_fault(delay=0.2, count=100, method="POST")

    def interrupt_after_three_posts() -> None:
        deadline = time.monotonic() + 10
        while (sum(r.method == "POST" for r in local_server.requests) < 3
               and time.monotonic() < deadline):
            time.sleep(0.01)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_after_three_posts, daemon=True).start()
    with Client(local_server.url) as client:
        with pytest.raises(KeyboardInterrupt) as caught:
            client.store(files, batch_size=1)
        time.sleep(0.5)  # the request in flight ends
        local_server.clear_faults()
        held = {value(row, "SOPInstanceUID") for row in client.search("instances")}
    results = caught.value.results  # type: ignore[attr-defined]
    stored = {r.sop_instance_uid for r in results if r.status == "stored"}
    unsure = {r.sop_instance_uid for r in results if r.status == "unconfirmed"}
    assert len(stored) >= 2 and stored <= held <= stored | unsure
