"""The pytest plugin users get with dcmweb: its fixture serves a real local server."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

EXAMPLE = '''
import json
from pathlib import Path

from pydicom.data import get_testdata_file


def test_store_and_search(dcmweb_server):
    ct = get_testdata_file("CT_small.dcm", download=False)
    [result] = dcmweb_server.client.store([ct])
    assert result.status == "stored"
    assert len(dcmweb_server.client.search("instances")) == 1
    assert dcmweb_server.url.startswith("http://127.0.0.1:")


def test_each_test_gets_an_empty_server(dcmweb_server):
    assert dcmweb_server.client.search("instances") == []


def test_searches_may_lag_behind_deletes_as_on_google(dcmweb_server):
    dcmweb_server.server.search_lag = 5
    ct = get_testdata_file("CT_small.dcm", download=False)
    [result] = dcmweb_server.client.store([ct])
    dcmweb_server.client.delete(f"studies/{result.study_instance_uid}/series/"
                                f"{result.series_instance_uid}/instances/{result.sop_instance_uid}")
    assert len(dcmweb_server.client.search("instances")) == 1
'''


def test_the_fixture_in_a_user_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_example=EXAMPLE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_the_plugin_is_registered_by_its_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one(dcmweb_server):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:dcmweb")
    result.assert_outcomes(errors=1)  # disabled: the fixture is gone
    assert "fixture 'dcmweb_server' not found" in result.stdout.str()


def test_dcmweb_never_imports_pytest() -> None:
    code = "import sys, dcmweb, dcmweb.cli; sys.exit('pytest' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
