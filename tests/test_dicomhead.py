"""dicomhead reads UIDs from raw bytes exactly as pydicom does, or declines (None)."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import pydicom
import pytest

from dcmweb import dicomhead
from dcmweb.dicomhead import (
    HEAD_BYTES,
    DataSetWalk,
    MoreBytesNeeded,
    ends_complete,
    read_meta,
    read_uids,
    walk_data_set,
)


def _pydicom_uids(path: Path) -> tuple[str, str, str] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            return None
        uids = tuple(str(dataset.get(k, "")) for k in
                     ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
    return uids if all(uids) else None  # type: ignore[return-value]


def test_uids_agree_with_pydicom_on_every_real_file(pydicom_files: list[Path],
                                                    pydicom_data_files: list[Path]) -> None:
    answered = 0
    for path in pydicom_files + pydicom_data_files:
        ours = read_uids(path.read_bytes()[:65536])
        if ours is None:
            continue  # the caller falls back to pydicom: allowed, never wrong
        answered += 1
        assert ours == _pydicom_uids(path), path.name
    # Declining is the exception (deflated files, broken headers): 210 of 230 answered.
    assert answered >= 200


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "MR_small_implicit.dcm",
                                  "nested_priv_SQ.dcm", "CT_small.dcm"])
def test_encodings_and_nested_sequences(pydicom_files: list[Path], name: str) -> None:
    path = next(p for p in pydicom_files if p.name == name)
    expected = _pydicom_uids(path)
    if expected is None:
        assert read_uids(path.read_bytes()) is None
    else:
        assert read_uids(path.read_bytes()) == expected


def test_declines_what_it_cannot_read(pydicom_files: list[Path]) -> None:
    deflated = next(p for p in pydicom_files if p.name == "image_dfl.dcm")
    assert read_uids(deflated.read_bytes()) is None
    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm").read_bytes()
    assert read_uids(ct[:400]) is None  # cut before the UIDs: no guess
    assert read_uids(b"\0" * 128 + b"NOPE" + ct[132:]) is None
    assert read_meta(b"short") is None


def test_meta_gives_transfer_syntax_and_data_set_start(pydicom_files: list[Path]) -> None:
    path = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    meta = read_meta(path.read_bytes())
    assert meta is not None
    values, start = meta
    reference = pydicom.filereader.read_file_meta_info(path)
    assert values[0x00020010] == reference.TransferSyntaxUID
    assert values[0x00020003] == reference.MediaStorageSOPInstanceUID
    assert start == 132 + 12 + reference.FileMetaInformationGroupLength


def test_ends_complete_sees_every_cut_inside_the_last_element(pydicom_files: list[Path]) -> None:
    """Complete files end exactly after their last element; a body cut inside any element
    or open sequence does not (a cut exactly between two elements cannot be seen)."""
    checked = 0
    for path in pydicom_files:
        data = path.read_bytes()
        if ends_complete(data) is not True:
            continue
        checked += 1
        # Inside the last element, or the deflated stream (which may end in padding),
        # and inside the File Meta.
        last = len(data) // 2 if b"1.2.840.10008.1.2.1.99" in data[:1024] else len(data) - 3
        for cut in (last, 133, 140):
            assert ends_complete(data[:cut]) is False, (path.name, cut)
    assert checked > 60


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan_truncated.dcm"])
def test_ends_complete_on_truncated_corpus_files(pydicom_files: list[Path], name: str) -> None:
    [path] = [p for p in pydicom_files if p.name == name]
    assert ends_complete(path.read_bytes()) is False


def test_ends_complete_cannot_tell_without_part10_or_syntax() -> None:
    assert ends_complete(b"\0" * 300) is None


def test_the_walk_from_the_first_bytes_agrees_with_the_whole_file(
        pydicom_files: list[Path]) -> None:
    """Walked from its first 64 KiB and its size, a file gets the answer its whole bytes
    give, or asks for them (MoreBytesNeeded): never another answer."""
    for path in pydicom_files:
        data = path.read_bytes()
        whole = walk_data_set(data)
        for size in (len(data), len(data) - 3):
            try:
                from_head = walk_data_set(data[:HEAD_BYTES], size)
            except MoreBytesNeeded:
                continue
            assert from_head == walk_data_set(data[:size]), (path.name, size)
        assert whole.complete == ends_complete(data)


def test_the_walk_finds_a_uid_given_twice(pydicom_files: list[Path]) -> None:
    """Study, Series or SOP Instance UID twice at the top level (DCMTK reads the first,
    pydicom the last); in a sequence item they are other instances' UIDs."""
    data = next(p for p in pydicom_files if p.name == "CT_small.dcm").read_bytes()
    assert walk_data_set(data).repeated is None
    at = data.index(b"\x20\x00\x0e\x00UI")
    (length,) = struct.unpack_from("<H", data, at + 6)
    end = at + 8 + length
    twice = data[:end] + b"\x20\x00\x0d\x00UI\x04\x009.9\0" + data[end:]
    assert walk_data_set(twice) == DataSetWalk(True, "StudyInstanceUID")
    assert walk_data_set(twice[:HEAD_BYTES], len(twice)).repeated == "StudyInstanceUID"


# -- the remembered layout (dicomhead._Layout) ------------------------------------------------
def _fresh_uids(data: bytes) -> tuple[str, str, str] | None:
    dicomhead._last_layout = None
    return read_uids(data)


def test_a_remembered_layout_never_changes_an_answer(pydicom_files: list[Path],
                                                     pydicom_data_files: list[Path]) -> None:
    """Every file read right after every other one (its layout remembered) gives what a
    fresh walk gives."""
    heads = [p.read_bytes()[:65536] for p in pydicom_files + pydicom_data_files]
    expected, layouts = [], []
    for head in heads:
        expected.append(_fresh_uids(head))
        layouts.append(dicomhead._last_layout)
    assert sum(layout is not None for layout in layouts) >= 150
    for layout in layouts:
        for head, uids in zip(heads, expected, strict=True):
            dicomhead._last_layout = layout
            assert read_uids(head) == uids


def test_same_layout_other_values_and_other_layouts(pydicom_files: list[Path],
                                                    tmp_path: Path) -> None:
    ct = next(p for p in pydicom_files if p.name == "CT_small.dcm")
    dataset = pydicom.dcmread(ct)
    sop = str(dataset.SOPInstanceUID)
    other_sop = sop[:-1] + ("1" if sop[-1] != "1" else "2")  # same length
    same_layout = ct.read_bytes().replace(sop.encode(), other_sop.encode())
    assert _fresh_uids(ct.read_bytes()) == _pydicom_uids(ct)
    remembered = dicomhead._last_layout
    assert remembered is not None
    uids = read_uids(same_layout)
    assert uids is not None and uids[2] == other_sop
    assert dicomhead._last_layout is remembered  # read by the layout, not walked again

    dataset.PatientName = "A^LONGER^NAME^THAN^BEFORE"  # every element after it moves
    dataset.StudyInstanceUID = dataset.StudyInstanceUID + ".7"
    dataset.save_as(tmp_path / "moved.dcm")
    moved = (tmp_path / "moved.dcm").read_bytes()
    assert read_uids(moved) == _pydicom_uids(tmp_path / "moved.dcm") == _fresh_uids(moved)
    assert dicomhead._last_layout is not remembered
    dicomhead._last_layout = remembered
    assert read_uids(ct.read_bytes()[:700]) is None  # cut inside the remembered headers
