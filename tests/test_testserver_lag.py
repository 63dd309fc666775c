"""The test server's search lag: a deleted instance still shows in searches for a few
seconds, as on Google, while retrieve and metadata answer 404."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from test_testserver import CT, MR, RAW_MP, blob, poll, qido, stow, uids, value

from dcmweb.testing import LocalServer

LAG = 1.0


@pytest.fixture
def lagging(tmp_path: Path) -> Iterator[LocalServer]:
    """A server whose searches list deleted instances for LAG seconds; CT and MR stored."""
    with LocalServer(tmp_path / "store", delete_delay=0.1, search_lag=LAG) as server:
        assert stow(server, [blob(CT), blob(MR)]).status_code == 200
        yield server


def listed(srv: LocalServer, sop: str) -> dict[str, int]:
    """What each search level shows of the instance: rows (instances), and the counts
    its study and series rows carry."""
    rows = qido(srv, "/instances", SOPInstanceUID=sop)
    if not rows:
        return {"instances": 0}
    study, series = value(rows[0], "0020000D"), value(rows[0], "0020000E")
    [study_row] = qido(srv, "/studies", StudyInstanceUID=study)
    [series_row] = qido(srv, f"/studies/{study}/series", SeriesInstanceUID=series)
    return {"instances": len(rows), "study": value(study_row, "00201208"),
            "series": value(series_row, "00201209")}


def wado_status(srv: LocalServer, path: str) -> int:
    return requests.get(f"{srv.url}/{path}", headers={"Accept": RAW_MP}, timeout=10).status_code


def test_a_deleted_instance_shows_in_searches_for_the_lag_and_nowhere_else(
        lagging: LocalServer) -> None:
    study, series, sop = uids(blob(CT))
    path = f"studies/{study}/series/{series}/instances/{sop}"
    gone = requests.delete(f"{lagging.url}/{path}", timeout=10)
    deleted_at = time.monotonic()
    assert (gone.status_code, gone.json()) == (200, {})
    # Every search level still shows it, as held.
    assert listed(lagging, sop) == {"instances": 1, "study": 1, "series": 1}
    # includefield=all reads stored attributes: the deleted file is not there to read.
    [row] = qido(lagging, f"/studies/{study}/instances", includefield="all")
    assert value(row, "00080018") == sop
    # Everything but a search knows it is gone.
    for asked in (path, f"{path}/metadata", f"studies/{study}", f"studies/{study}/metadata"):
        assert wado_status(lagging, asked) == 404, asked
    assert requests.delete(f"{lagging.url}/{path}", timeout=10).status_code == 404
    time.sleep(max(0.0, deleted_at + LAG - time.monotonic()) + 0.05)
    assert listed(lagging, sop) == {"instances": 0}
    assert qido(lagging, "/studies", StudyInstanceUID=study) == []
    assert len(qido(lagging, "/instances")) == 1  # MR, never deleted


def test_a_study_delete_leaves_its_instances_in_searches_after_the_operation(
        lagging: LocalServer) -> None:
    study, _, sop = uids(blob(MR))
    answer = requests.delete(f"{lagging.url}/studies/{study}", timeout=10)
    assert poll(lagging, answer.json()["name"])["done"] is True
    done_at = time.monotonic()
    assert listed(lagging, sop) == {"instances": 1, "study": 1, "series": 1}
    assert wado_status(lagging, f"studies/{study}") == 404
    assert requests.delete(f"{lagging.url}/studies/{study}", timeout=10).status_code == 404
    time.sleep(max(0.0, done_at + LAG - time.monotonic()) + 0.05)
    assert listed(lagging, sop) == {"instances": 0}


def test_stored_again_during_the_lag_it_is_listed_once_and_served(
        lagging: LocalServer) -> None:
    study, series, sop = uids(blob(CT))
    path = f"studies/{study}/series/{series}/instances/{sop}"
    assert requests.delete(f"{lagging.url}/{path}", timeout=10).status_code == 200
    assert stow(lagging, [blob(CT)]).status_code == 200
    assert listed(lagging, sop) == {"instances": 1, "study": 1, "series": 1}
    assert wado_status(lagging, path) == 200
    time.sleep(LAG + 0.05)
    assert listed(lagging, sop) == {"instances": 1, "study": 1, "series": 1}


def test_no_lag_by_default_and_a_change_applies_to_later_deletes(tmp_path: Path) -> None:
    with LocalServer(tmp_path / "store") as srv:
        assert srv.search_lag == 0.0
        assert stow(srv, [blob(CT), blob(MR)]).status_code == 200
        for name, lag in ((CT, 0.0), (MR, 5.0)):
            srv.search_lag = lag
            study, series, sop = uids(blob(name))
            url = f"{srv.url}/studies/{study}/series/{series}/instances/{sop}"
            assert requests.delete(url, timeout=10).status_code == 200
            assert listed(srv, sop)["instances"] == (1 if lag else 0), name


def test_the_lag_over_the_control_api(lagging: LocalServer) -> None:
    control = lagging.root_url + "/_control/search-lag"
    assert requests.get(control, timeout=5).json() == {"seconds": LAG}
    changed = requests.put(control, json={"seconds": 0.25}, timeout=5)
    assert (changed.status_code, changed.json()) == (200, {"seconds": 0.25})
    assert lagging.search_lag == 0.25
    for bad, why in (({"seconds": "2"}, "search_lag must be a number of seconds, not '2'"),
                     ({"seconds": -1}, "search_lag must be a finite number of seconds, at "
                                       "least 0, not -1"),
                     ({"lag": 2}, 'the body must be {"seconds": S}')):
        refused = requests.put(control, json=bad, timeout=5)
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] == f"invalid search lag: {why}"
    assert lagging.search_lag == 0.25


def test_the_lag_is_checked_when_set(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 0, not -1"):
        LocalServer(tmp_path, search_lag=-1)
    srv = LocalServer(tmp_path)
    with pytest.raises(ValueError, match="not True"):
        srv.search_lag = True  # type: ignore[assignment]
