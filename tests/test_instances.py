"""Client.retrieve_instance / iter_instances: instances in memory, against real servers."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from dcmweb import Client
from dcmweb.errors import NotFoundError, ServerError, UsageError


def _stored(client: Client, files: list[Path]) -> dict[str, Path]:
    """SOP Instance UID -> file, for the files stored."""
    results = client.store(files)
    assert [r.status for r in results] == ["stored"] * len(files)
    return {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f for f in files}


def _path(file: Path) -> str:
    ds = pydicom.dcmread(file, stop_before_pixels=True)
    return (f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")


def test_local_server_instances_in_memory(local_server, pydicom_files: list[Path]) -> None:  # type: ignore[no-untyped-def]
    files = [f for f in pydicom_files if f.name in ("CT_small.dcm", "MR_small.dcm")]
    assert len(files) == 2
    with Client(local_server.url) as client:
        by_uid = _stored(client, files)
        for file in files:
            assert client.retrieve_instance(_path(file)) == file.read_bytes()
            ds = client.retrieve_instance(_path(file), dataset=True)
            assert isinstance(ds, pydicom.Dataset)
            assert ds.SOPInstanceUID == pydicom.dcmread(file).SOPInstanceUID
            study = _path(file).split("/series/")[0]
            got = list(client.iter_instances(study))
            assert got == [file.read_bytes()]
            datasets = list(client.iter_instances(study, dataset=True))
            assert [d.SOPInstanceUID for d in datasets] == [pydicom.dcmread(file).SOPInstanceUID]
        assert set(by_uid) == {pydicom.dcmread(f).SOPInstanceUID for f in files}


def test_bad_paths_and_missing_instances(local_server) -> None:  # type: ignore[no-untyped-def]
    with Client(local_server.url) as client:
        with pytest.raises(UsageError, match="instance path"):
            client.retrieve_instance("studies/1.2.3")
        with pytest.raises(UsageError, match="study, series or instance"):
            list(client.iter_instances(""))
        with pytest.raises(NotFoundError):
            client.retrieve_instance("studies/1.2.3/series/4.5/instances/6.7")


def test_orthanc_instance_in_memory(orthanc, pydicom_files: list[Path]) -> None:  # type: ignore[no-untyped-def]
    file = next(f for f in pydicom_files if f.name == "CT_small.dcm")
    with Client(orthanc.url) as client:
        _stored(client, [file])
        assert client.retrieve_instance(_path(file)) == file.read_bytes()
        ds = client.retrieve_instance(_path(file), dataset=True)
        assert ds.SOPInstanceUID == pydicom.dcmread(file).SOPInstanceUID
        series = _path(file).split("/instances/")[0]
        assert [d.SOPInstanceUID for d in client.iter_instances(series, dataset=True)] == [
            ds.SOPInstanceUID]


PATH = "studies/1.2/series/3.4/instances/5.6"


@pytest.mark.parametrize("answer", [
    (200, b"<html>sign in</html>", "text/html"),  # a login page with 200
    (200, b"--b\r\nContent-Type: text/html\r\n\r\n<html></html>\r\n--b--\r\n",
     'multipart/related; type="application/dicom"; boundary=b'),  # a web page as a part
])
def test_hostile_answers_are_not_instances(answer: tuple[int, bytes, str]) -> None:
    from hostile import Hostile

    status, body, content_type = answer
    with Hostile() as fake:
        fake.route("GET", f"/{PATH}", lambda req: req.reply(status, body, content_type))
        with Client(fake.url, retries=0) as client, pytest.raises(ServerError) as caught:
            client.retrieve_instance(PATH)
    assert "text/html" in caught.value.message


def test_a_cut_multipart_answer_raises(pydicom_files: list[Path]) -> None:
    from hostile import Hostile, multipart

    data = next(f for f in pydicom_files if f.name == "CT_small.dcm").read_bytes()
    body = multipart([data], "b")[:-200]  # cut inside the part: no closing boundary
    with Hostile() as fake:
        fake.route("GET", f"/{PATH}", lambda req: req.reply(
            200, body, 'multipart/related; type="application/dicom"; boundary=b'))
        with Client(fake.url, retries=0) as client, pytest.raises(ServerError, match="cut off"):
            client.retrieve_instance(PATH)


def test_parts_with_another_boundary_are_not_called_a_cut() -> None:
    from hostile import Hostile, multipart

    with Hostile() as fake:
        fake.route("GET", "/studies/1.2", lambda req: req.reply(
            200, multipart([b"DICM"], "x"), 'multipart/related; type="application/dicom"; '
            "boundary=b"))
        with Client(fake.url, retries=0) as client, pytest.raises(
                ServerError, match=r"^retrieve studies/1\.2: the body does not contain the "
                "boundary 'b' its Content-Type names$"):
            list(client.iter_instances("studies/1.2"))


def test_an_empty_multipart_answer_raises() -> None:
    from hostile import Hostile, multipart

    with Hostile() as fake:
        fake.route("GET", "/studies/1.2", lambda req: req.reply(
            200, multipart([], "b"), 'multipart/related; type="application/dicom"; boundary=b'))
        with Client(fake.url, retries=0) as client, pytest.raises(
                ServerError, match=r"^retrieve studies/1\.2: the server sent no instance$"):
            list(client.iter_instances("studies/1.2"))


def _answers(data: bytes) -> dict[str, tuple[bytes, str]]:
    """The same bytes as a multipart answer and as a single application/dicom body."""
    return {"multipart": (multipart_of(data), 'multipart/related; type="application/dicom"; '
                          "boundary=b"),
            "single part": (data, "application/dicom")}


def multipart_of(data: bytes) -> bytes:
    from hostile import multipart

    return multipart([data], "b")


@pytest.mark.parametrize("form", ["multipart", "single part"])
@pytest.mark.parametrize("body", [b"<html>Sign in</html>", b"hello"])
@pytest.mark.parametrize("dataset", [False, True])
def test_bytes_that_are_not_dicom_are_not_an_instance(form: str, body: bytes,
                                                      dataset: bool) -> None:
    from hostile import Hostile

    data, content_type = _answers(body)[form]
    with Hostile() as fake:
        fake.route("GET", f"/{PATH}", lambda req: req.reply(200, data, content_type))
        with Client(fake.url, retries=0) as client, pytest.raises(ServerError) as caught:
            client.retrieve_instance(PATH, dataset=dataset)
    assert caught.value.message == (f"retrieve {PATH}: the server sent a part that is not "
                                    "a readable DICOM file")


@pytest.mark.parametrize("form", ["multipart", "single part"])
@pytest.mark.parametrize("dataset", [False, True])
def test_another_instance_is_not_the_one_asked_for(pydicom_files: list[Path], form: str,
                                                   dataset: bool) -> None:
    from hostile import Hostile

    ct, mr = (next(f for f in pydicom_files if f.name == name)
              for name in ("CT_small.dcm", "MR_small.dcm"))
    asked = _path(ct)
    data, content_type = _answers(mr.read_bytes())[form]
    with Hostile() as fake:
        fake.route("GET", f"/{asked}", lambda req: req.reply(200, data, content_type))
        with Client(fake.url, retries=0) as client, pytest.raises(ServerError) as caught:
            client.retrieve_instance(asked, dataset=dataset)
    ct_study = pydicom.dcmread(ct, stop_before_pixels=True).StudyInstanceUID
    mr_study = pydicom.dcmread(mr, stop_before_pixels=True).StudyInstanceUID
    assert caught.value.message == (f"retrieve {asked}: the server sent an instance whose "
                                    f"StudyInstanceUID is {mr_study}, not {ct_study} as asked")


def test_an_instance_of_another_series_ends_iter_instances(pydicom_files: list[Path]) -> None:
    from hostile import Hostile, multipart

    ct, mr = (next(f for f in pydicom_files if f.name == name)
              for name in ("CT_small.dcm", "MR_small.dcm"))
    study, series = _path(ct).split("/")[1:4:2]
    other = pydicom.dcmread(ct)
    other.SeriesInstanceUID = "1.2.3.4"
    other.SOPInstanceUID = "1.2.3.4.5"
    from io import BytesIO

    buffer = BytesIO()
    other.save_as(buffer)
    body = multipart([ct.read_bytes(), buffer.getvalue(), mr.read_bytes()], "b")
    asked = f"studies/{study}/series/{series}"
    with Hostile() as fake:
        fake.route("GET", f"/{asked}", lambda req: req.reply(
            200, body, 'multipart/related; type="application/dicom"; boundary=b'))
        got = []
        with Client(fake.url, retries=0) as client, pytest.raises(ServerError) as caught:
            for data in client.iter_instances(asked):
                got.append(data)
    assert got == [ct.read_bytes()]  # the instance of the series asked for, then the refusal
    assert caught.value.message == (f"retrieve {asked}: the server sent an instance whose "
                                    f"SeriesInstanceUID is 1.2.3.4, not {series} as asked")
