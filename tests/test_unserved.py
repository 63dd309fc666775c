"""A 404 to a kind of request the server does not serve (tiny-pacs: no top-level /series,
no /metadata, no rendered images) is said so, exit 1; a 404 to what may really be missing
keeps exit 4 and "check the UIDs"; a loop over a series' images stops after a few.

tiny-pacs' search rows carry no Rows (not even with includefield), so nothing shows its
instances are images: an instance without one has nothing to render, and its 404 stays
one (exit 4, or one failed item of a series)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result
from hostile import Hostile, Request

from dcmweb import Client
from dcmweb.cli import cli
from dcmweb.testing import LocalServer
from dcmweb_devtools import corpus, logs
from dcmweb_devtools.orthanc import Orthanc
from dcmweb_devtools.tinypacs import TinyPacs

STUDY_HINT = "(check the HOST URL and the UIDs in the path)"


def dcmweb(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def last_line(result: Result) -> str:
    return logs.lines(result.stderr)[-1]


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One series of 8 instances."""
    return corpus.synthetic_files(tmp_path_factory.mktemp("series"), 8)


@pytest.fixture(scope="module")
def stored(tinypacs: TinyPacs, series: list[Path]) -> tuple[str, str, str]:
    """The series stored on the module's tiny-pacs: its study, series and first SOP UID."""
    with Client(tinypacs.url) as client:
        assert {r.status for r in client.store(series)} == {"stored"}
    head = pydicom.dcmread(series[0], stop_before_pixels=True)
    return str(head.StudyInstanceUID), str(head.SeriesInstanceUID), str(head.SOPInstanceUID)


def test_top_level_searches_tiny_pacs_lacks(tinypacs: TinyPacs, stored: tuple) -> None:
    """Was: "HTTP 404 ... (check the HOST URL and the UIDs in the path)", exit 4, for a
    path without UIDs on the right HOST."""
    for level, shape in (("series", "series"), ("instances", "series/UID/instances")):
        result = dcmweb(tinypacs.url, "search", level)
        assert (result.exit_code, result.stdout) == (1, ""), result.stderr
        assert last_line(result) == (
            f"dcmweb: error: search {level} failed: HTTP 404 Not Found: Not found: "
            f"'/{level}'; a search of studies answers, so the server does not serve "
            f"/{level} (a search of {level} across all studies) (search studies/UID/{shape} "
            "instead)")


def test_requests_below_a_study_tiny_pacs_lacks(tinypacs: TinyPacs, stored: tuple,
                                                tmp_path: Path) -> None:
    study, series, sop = stored
    instance = f"studies/{study}/series/{series}/instances/{sop}"
    found = "the {} is on the server (a search finds it)"
    for args, what, told in [
        (["search", f"studies/{study}/instances"], f"search studies/{study}/instances",
         f"{found.format('study')}, so the server does not serve studies/UID/instances (a "
         "search of a study's instances) (search studies/UID/series/UID/instances instead)"),
        (["retrieve", f"studies/{study}/metadata"], f"metadata studies/{study}/metadata",
         f"{found.format('study')}, so the server does not serve metadata (retrieve the "
         "instances instead: their files hold it)"),
        (["retrieve", f"{instance}/rendered", "-o", str(tmp_path)], f"render {instance}/rendered",
         f"{found.format('instance')}: it has no image, or the server does not serve "
         "rendered images"),
    ]:
        result = dcmweb(tinypacs.url, *args)
        assert result.exit_code == (4 if "image" in told else 1), result.stderr
        path = args[1]
        assert last_line(result) == (f"dcmweb: error: {what} failed: HTTP 404 Not Found: Not "
                                     f"found: '/{path}'; {told}")


def test_frames_may_be_missing_so_their_404_stays(tinypacs: TinyPacs, stored: tuple,
                                                  tmp_path: Path) -> None:
    """The instance is there, and frame 1 may not be (an instance without pixels): exit
    4 still, saying what the search found instead of "check the UIDs"."""
    study, series, sop = stored
    path = f"studies/{study}/series/{series}/instances/{sop}/frames/1"
    result = dcmweb(tinypacs.url, "retrieve", path, "-o", str(tmp_path))
    assert result.exit_code == 4, result.stderr
    assert last_line(result) == (
        f"dcmweb: error: retrieve {path} failed: HTTP 404 Not Found: Not found: '/{path}'; "
        "the instance is on the server (a search finds it): it has no such frame, or the "
        "server does not serve frames (check the frame numbers)")


@pytest.mark.parametrize("path", ["studies/1.2.3/metadata", "studies/{study}/series/1.2.3/"
                                  "instances/1.2.3/metadata"])
def test_what_a_search_does_not_find_is_still_not_found(tinypacs: TinyPacs, stored: tuple,
                                                        path: str) -> None:
    path = path.format(study=stored[0])
    result = dcmweb(tinypacs.url, "retrieve", path)
    assert result.exit_code == 4, result.stderr
    assert last_line(result).endswith(f"Not found: '/{path}' {STUDY_HINT}")


def test_a_series_rendered_without_rows_asks_every_instance(tinypacs: TinyPacs,
                                                             stored: tuple,
                                                             tmp_path: Path) -> None:
    """Nothing shows tiny-pacs' instances are images: each is asked for and fails alone
    (was: stopped after 3, the rule that stopped a series of SR then images)."""
    study, series, _ = stored
    result = dcmweb(tinypacs.url, "retrieve", f"studies/{study}/series/{series}/rendered",
                    "-o", str(tmp_path))
    found = logs.lines(result.stderr)
    assert len([line for line in found if line.endswith("/rendered'")]) == 8
    assert "does not serve" not in result.stderr
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]


# -- what the check must not conclude (hostile servers) ------------------------------------------
def _no_dicomweb(req: Request) -> None:
    req.reply(404, b"no such page", "text/plain")


def test_a_wrong_host_keeps_its_404(tmp_path: Path) -> None:
    """Every path 404 (not a DICOMweb server, or a wrong base): the search of studies does
    not answer either, so nothing is said of what the server serves."""
    with Hostile() as fake:
        fake.fallback = _no_dicomweb
        result = dcmweb(fake.url, "search", "series")
        asked = [seen.path for seen in fake.seen("GET")]
    assert result.exit_code == 4, result.stderr
    assert logs.lines(result.stderr)[0] == (
        f"dcmweb: error: search series failed: HTTP 404 Not Found: no such page {STUDY_HINT}")
    assert asked[:2] == ["/series", "/studies"]


def test_a_server_that_ignores_the_uid_key_proves_nothing(tmp_path: Path) -> None:
    """The study search lists another study (the key ignored): the study may be missing."""
    other = {"0020000D": {"vr": "UI", "Value": ["9.9"]}}
    with Hostile() as fake:
        fake.route("GET", "/studies", lambda req: req.json(200, [other],
                                                           "application/dicom+json"))
        fake.fallback = _no_dicomweb
        result = dcmweb(fake.url, "retrieve", "studies/1.2/metadata")
        asked = fake.seen("GET", "/studies")
    assert result.exit_code == 4, result.stderr
    assert last_line(result).endswith(STUDY_HINT)
    assert [seen.params for seen in asked] == [{"StudyInstanceUID": "1.2"}]


def test_a_resource_itself_is_never_checked(local_server: LocalServer) -> None:
    """A 404 to a study's retrieve means it is missing: no search after it."""
    result = dcmweb(local_server.url, "retrieve", "studies/1.2.3", "-o", "/nonexistent/x")
    assert result.exit_code == 4, result.stderr
    assert last_line(result).endswith(STUDY_HINT)
    assert [r.method for r in local_server.requests] == ["GET"]


def test_orthanc_keeps_exit_4_for_a_missing_study(orthanc: Orthanc) -> None:
    result = dcmweb(orthanc.url, "retrieve", "studies/1.2.3/metadata")
    assert result.exit_code == 4, result.stderr
    assert last_line(result).endswith(STUDY_HINT)


# -- an instance without an image (SR, KO, PR, no pixel data) has nothing to render ------------
_IMAGE_KEYS = ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
               "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation")


def _mixed_series(local_server: LocalServer, folder: Path, images: int) -> list[str]:
    """A series of 3 instances without an image, then ``images`` with one, stored on the
    local server (which lists them in that order); their study, series and SOP UIDs."""
    files = corpus.synthetic_files(folder, 3 + images)
    for number, path in enumerate(files[:3]):
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = number + 1
        for keyword in _IMAGE_KEYS:
            delattr(ds, keyword)
        ds.save_as(path)
    with Client(local_server.url) as client:
        assert {r.status for r in client.store(files)} == {"stored"}
    heads = [pydicom.dcmread(path, stop_before_pixels=True) for path in files]
    return [str(heads[0].StudyInstanceUID), str(heads[0].SeriesInstanceUID),
            *(str(head.SOPInstanceUID) for head in heads)]


def _rendered_gets(local_server: LocalServer) -> list[int]:
    return [r.status for r in local_server.requests if r.path.endswith("/rendered")]


def test_instances_without_an_image_do_not_stop_a_series(local_server: LocalServer,
                                                         tmp_path: Path) -> None:
    """Was: exit 1 "the server does not serve rendered images" after the 3 listed first
    (the local server answers 404 "the instance has 0" frames), the images never asked."""
    study, series, *_ = _mixed_series(local_server, tmp_path / "in", 2)
    result = dcmweb(local_server.url, "retrieve", f"studies/{study}/series/{series}/rendered",
                    "-o", str(tmp_path / "out"))
    assert result.exit_code == 6, result.stderr
    assert sorted(_rendered_gets(local_server)) == [200, 200, 404, 404, 404]
    assert len(list((tmp_path / "out").rglob("*.jpg"))) == 2
    assert "does not serve" not in result.stderr


def test_one_instance_without_an_image_is_not_found(local_server: LocalServer,
                                                    tmp_path: Path) -> None:
    """Was: exit 1, "...the instance has 0; ..., so the server does not serve rendered
    images"; the docs promise exit 4 for one instance that has no such frame."""
    study, series, sop, *_ = _mixed_series(local_server, tmp_path / "in", 0)
    path = f"studies/{study}/series/{series}/instances/{sop}/rendered"
    result = dcmweb(local_server.url, "retrieve", path, "-o", str(tmp_path / "out"))
    assert result.exit_code == 4, result.stderr
    assert last_line(result).endswith(
        "the instance is on the server (a search finds it): it has no image, or the server "
        "does not serve rendered images")


def test_images_that_answer_404_still_stop_a_series(local_server: LocalServer,
                                                    tmp_path: Path) -> None:
    """Images (their rows carry Rows) answered 404: the server does not render; the
    instances without one do not count toward the 3."""
    study, series, *_ = _mixed_series(local_server, tmp_path / "in", 5)
    local_server.inject_fault(404, method="GET", path_contains="/rendered", count=100)
    result = dcmweb(local_server.url, "retrieve", f"studies/{study}/series/{series}/rendered",
                    "-o", str(tmp_path / "out"))
    assert result.exit_code == 1, result.stderr
    assert _rendered_gets(local_server) == [404] * 6
    assert not [path for path in tmp_path.rglob("*.jpg")]
    assert last_line(result).endswith(
        "stopped after HTTP 404 to every instance asked for, the others not asked for: the "
        "instance is on the server and is an image (a search finds it, with Rows), so the "
        "server does not serve rendered images")


def test_with_workers_the_loop_stops_too(local_server: LocalServer, tmp_path: Path) -> None:
    study, series, *_ = _mixed_series(local_server, tmp_path / "in", 12)
    local_server.inject_fault(404, method="GET", path_contains="/rendered", count=100)
    result = dcmweb("--workers", "2", local_server.url, "retrieve",
                    f"studies/{study}/series/{series}/rendered", "-o", str(tmp_path / "out"))
    assert result.exit_code == 1, result.stderr
    assert 6 <= len(_rendered_gets(local_server)) < 15
    assert "so the server does not serve rendered images" in last_line(result)
