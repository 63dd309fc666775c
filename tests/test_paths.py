"""paths.py: names that come from servers or users, and where they may end up on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcmweb.errors import UsageError
from dcmweb.http import Http
from dcmweb.paths import ResourcePath, parse_resource_path, safe_uid
from dcmweb.retrieve import Downloader


@pytest.mark.parametrize("name", [
    "CON", "con", "NUL", "Nul.1.2", "PRN", "AUX.dcm", "COM1", "com9.5", "LPT1", "LPT0.1",
    "1.2.", "1.2.3.", "a<b", 'a"b', "a:b", "a|b", "a?b", "a*b", "a\\b", "a\x01b", "a\x7fb",
    "1.2 ", " 1.2", "..", "1..2", ".hidden", "-1.2", "", "a/b", "1" * 129,
])
def test_names_refused_on_some_system_are_refused(name: str) -> None:
    assert safe_uid(name) is None
    if name == name.strip():  # what a user types is stripped of spaces first
        with pytest.raises(UsageError):
            parse_resource_path(f"studies/{name}")


@pytest.mark.parametrize("name", ["1.2.840.10008.1", "CONSOLE", "NULL.1", "COM10", "LPT",
                                  "1_2-3", "A" * 128, "CON1"])
def test_ordinary_names_are_kept(name: str) -> None:
    assert safe_uid(name) == name


ANY_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
UID_LIKE = st.from_regex(r"[0-9A-Za-z./\\:_-]{0,20}", fullmatch=True)


@settings(max_examples=400, deadline=None)
@given(study=ANY_TEXT | UID_LIKE, series=ANY_TEXT | UID_LIKE, sop=ANY_TEXT | UID_LIKE)
def test_uids_from_a_server_never_name_a_file_outside_the_output_folder(
        tmp_path_factory: pytest.TempPathFactory, study: str, series: str, sop: str) -> None:
    output = Path("/srv/out/folder")
    downloader = Downloader(Http(), "http://127.0.0.1:1/dicomWeb", output, None)
    where = downloader._dicom_path(ResourcePath(), (study, series, sop))  # the whole store
    if isinstance(where, str):
        return  # refused, with a message
    assert where.parent.parent.parent == output
    assert os.path.normpath(where) == str(where)  # no '..', '.', '//' to resolve
    for name in (where.parent.parent.name, where.parent.name, where.stem):
        assert safe_uid(name) == name


@settings(max_examples=300, deadline=None)
@given(words=st.lists(ANY_TEXT | UID_LIKE | st.sampled_from(["studies", "series", "instances",
                                                              "frames", "..", "."]),
                      max_size=8))
def test_typed_paths_parse_to_safe_names_or_a_usage_error(words: list[str]) -> None:
    try:
        target = parse_resource_path("/".join(words), allow_frames=True)
    except UsageError:
        return
    for uid in (target.study, target.series, target.instance):
        assert uid is None or safe_uid(uid) == uid
