"""A 404 to a kind of request the server does not serve (tiny-pacs: no top-level /series,
no /metadata, no rendered images) is said so, exit 1; a 404 to what may really be missing
keeps exit 4 and "check the UIDs"; a loop over a series' instances stops after a few."""

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
         f"{found.format('instance')}, so the server does not serve rendered images"),
    ]:
        result = dcmweb(tinypacs.url, *args)
        assert result.exit_code == 1, result.stderr
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


def test_a_series_rendered_stops_after_a_few_404s(tinypacs: TinyPacs, stored: tuple,
                                                  tmp_path: Path) -> None:
    """Was: one request and one identical 404 line per instance (50 for 50), exit 1."""
    study, series, _ = stored
    result = dcmweb(tinypacs.url, "retrieve", f"studies/{study}/series/{series}/rendered",
                    "-o", str(tmp_path))
    assert result.exit_code == 1, result.stderr
    found = logs.lines(result.stderr)
    assert len([line for line in found if line.endswith("/rendered'")]) == 3
    assert found[-2:] == [
        "dcmweb: info: Transferred 0 B in 0 files; 3 failed",
        f"dcmweb: error: render studies/{study}/series/{series}/rendered: stopped after HTTP "
        "404 to every instance asked for, the others not asked for: the instance is on the "
        "server (a search finds it), so the server does not serve rendered images"]
    assert not list(tmp_path.iterdir())


def test_with_workers_the_loop_stops_too(tinypacs: TinyPacs, stored: tuple,
                                         tmp_path: Path) -> None:
    study, series, _ = stored
    result = dcmweb("--workers", "2", tinypacs.url, "retrieve",
                    f"studies/{study}/series/{series}/rendered", "-o", str(tmp_path))
    assert result.exit_code == 1, result.stderr
    failed = [line for line in logs.lines(result.stderr) if line.endswith("/rendered'")]
    assert 3 <= len(failed) < 8
    assert "so the server does not serve rendered images" in last_line(result)


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
