"""files.py: the cheap Part-10 reader; and the expansion of paths, directories and masks
(inputs.py) as the library's store sees it."""

from __future__ import annotations

import logging
import os
import socket
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.filereader import read_file_meta_info

from dcmweb import Client
from dcmweb.errors import UsageError
from dcmweb.files import Part10Info, not_regular, read_part10_info
from dcmweb.inputs import Inputs, InputSpec
from dcmweb.record import record
from dcmweb_devtools import corpus


# -- read_part10_info ------------------------------------------------------------------------
def _pydicom_meta(path: Path) -> Part10Info:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = read_file_meta_info(path)
    return Part10Info(
        str(meta.get("MediaStorageSOPClassUID", "") or ""),
        str(meta.get("MediaStorageSOPInstanceUID", "") or ""),
        str(meta.get("TransferSyntaxUID", "") or ""),
    )


def test_read_part10_info_agrees_with_pydicom_on_every_corpus_file(
    pydicom_files: list[Path],
) -> None:
    files = pydicom_files + corpus.pydicom_data_files()
    assert len(files) > 70
    differences = {p.name: (read_part10_info(p), _pydicom_meta(p)) for p in files
                   if read_part10_info(p) != _pydicom_meta(p)}
    assert differences == {}


def test_read_part10_info_reads_meta_uid_not_dataset_uid(pydicom_files: list[Path]) -> None:
    # rtplan.dcm's File Meta names another instance than its data set: the store matches
    # answers by the meta UID, so this is what the reader must give (and store.py copes).
    rtplan = next(p for p in pydicom_files if p.name == "rtplan.dcm")
    info = read_part10_info(rtplan)
    assert info is not None
    ds = pydicom.dcmread(rtplan, stop_before_pixels=True)
    assert info.sop_instance_uid == ds.file_meta.MediaStorageSOPInstanceUID
    assert info.sop_instance_uid != ds.SOPInstanceUID
    assert info.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID


def test_missing_transfer_syntax_gives_empty_string(pydicom_files: list[Path]) -> None:
    path = next(p for p in pydicom_files if p.name == "meta_missing_tsyntax.dcm")
    info = read_part10_info(path)
    assert info is not None and info.transfer_syntax_uid == ""


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty"),
        (b"DICM", "too short"),
        (b"\0" * 128 + b"DICX" + b"\0" * 100, "wrong marker"),
        (b"hello world\n" * 100, "text"),
        (b"\0" * 131, "one byte short of the marker"),
    ],
)
def test_not_part10(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(content)
    assert read_part10_info(path) is None, why


def test_marker_only_file_is_part10_with_empty_info(tmp_path: Path) -> None:
    path = tmp_path / "bare.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM")
    assert read_part10_info(path) == Part10Info("", "", "")


def test_truncated_meta_does_not_raise(pydicom_files: list[Path], tmp_path: Path) -> None:
    source = next(p for p in pydicom_files if p.name == "CT_small.dcm").read_bytes()
    for cut in (133, 140, 150, 200, 250):
        path = tmp_path / f"cut{cut}.dcm"
        path.write_bytes(source[:cut])
        info = read_part10_info(path)  # partial values are fine; an exception is not
        assert info is not None


def test_unreadable_paths(tmp_path: Path) -> None:
    assert read_part10_info(tmp_path / "missing.dcm") is None
    assert read_part10_info(tmp_path) is None  # a directory


# -- expanding masks ------------------------------------------------------------------------
@record
class Expansion:
    files: list[Path]
    unmatched: list[str]


def expand_masks(masks: list[str]) -> Expansion:
    inputs = Inputs(InputSpec(masks=tuple(masks)))
    files = list(inputs)
    return Expansion(files, inputs.stats.unmatched)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/a.dcm root/b.txt root/sub/c.dcm root/sub/deeper/d.dcm root/empty/"""
    root = tmp_path / "root"
    for rel in ("a.dcm", "b.txt", "sub/c.dcm", "sub/deeper/d.dcm", "sub/deeper/e.txt"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    (root / "empty").mkdir()
    return root


def _rel(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_directory_is_walked_recursively_in_sorted_order(tree: Path) -> None:
    result = expand_masks([str(tree)])
    assert _rel(result.files, tree) == [
        "a.dcm", "b.txt", "sub/c.dcm", "sub/deeper/d.dcm", "sub/deeper/e.txt"]
    assert result.unmatched == []


def test_plain_glob_stays_in_one_directory(tree: Path) -> None:
    result = expand_masks([str(tree / "*.dcm")])
    assert _rel(result.files, tree) == ["a.dcm"]


def test_trailing_double_star_matches_files_at_any_depth(tree: Path) -> None:
    result = expand_masks([str(tree / "**")])
    assert _rel(result.files, tree) == [
        "a.dcm", "b.txt", "sub/c.dcm", "sub/deeper/d.dcm", "sub/deeper/e.txt"]


def test_double_star_with_suffix_crosses_directories(tree: Path) -> None:
    # The old tool's documented './**.dcm' means every .dcm below '.', not only in '.'.
    assert _rel(expand_masks([str(tree / "**.dcm")]).files, tree) == [
        "a.dcm", "sub/c.dcm", "sub/deeper/d.dcm"]
    assert _rel(expand_masks([str(tree / "sub/**.txt")]).files, tree) == ["sub/deeper/e.txt"]
    assert _rel(expand_masks([str(tree / "**/*.dcm")]).files, tree) == [
        "a.dcm", "sub/c.dcm", "sub/deeper/d.dcm"]
    assert _rel(expand_masks([str(tree / "sub/**/*.txt")]).files, tree) == ["sub/deeper/e.txt"]


def test_a_glob_walks_the_folders_it_matches_as_the_cli_does(tree: Path) -> None:
    result = expand_masks([str(tree / "*")])
    assert _rel(result.files, tree) == [
        "a.dcm", "b.txt", "sub/c.dcm", "sub/deeper/d.dcm", "sub/deeper/e.txt"]


def test_unmatched_masks_are_listed_and_the_rest_kept(tree: Path) -> None:
    masks = [str(tree / "*.nothing"), str(tree / "missing.dcm"), str(tree / "empty"),
             str(tree / "a.dcm")]
    result = expand_masks(masks)
    # An explicit path stays an item even when missing: the store reports it as failed.
    assert _rel(result.files, tree) == ["missing.dcm", "a.dcm"]
    assert result.unmatched == [masks[0], masks[2]]


def test_fifos_and_sockets_are_listed_but_never_opened(tree: Path) -> None:
    fifo = tree / "sub" / "pipe.dcm"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock_path = tree / "sub" / "sock.dcm"
    sock.bind(str(sock_path))
    try:
        listed = _rel(expand_masks([str(tree / "sub")]).files, tree)
        assert {"sub/pipe.dcm", "sub/sock.dcm"} <= set(listed)
        assert not_regular(fifo) == "not a regular file: a FIFO (named pipe)"
        assert not_regular(sock_path) == "not a regular file: a socket"
        assert not_regular("/dev/null") == "not a regular file: a character device"
        assert not_regular(tree / "a.dcm") is None
        assert not_regular(tree / "missing") is None  # opening it says why
        assert read_part10_info(fifo) is None  # returns at once: no writer is waited for
    finally:
        sock.close()


def test_each_file_listed_once_even_through_symlinks(tree: Path) -> None:
    link = tree.parent / "link.dcm"
    link.symlink_to(tree / "a.dcm")
    result = expand_masks([str(tree / "a.dcm"), str(tree), str(link), str(tree / "*.dcm")])
    assert _rel(result.files, tree) == [
        "a.dcm", "b.txt", "sub/c.dcm", "sub/deeper/d.dcm", "sub/deeper/e.txt"]


def test_tilde_is_expanded(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tree))
    result = expand_masks(["~/sub/*.dcm"])
    assert result.files == [tree / "sub" / "c.dcm"]


def test_relative_masks(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    result = expand_masks(["sub", "*.txt"])
    assert [p.as_posix() for p in result.files] == [
        "sub/c.dcm", "sub/deeper/d.dcm", "sub/deeper/e.txt", "b.txt"]


def test_client_files_to_store_follows_a_linked_folder_once(tree: Path) -> None:
    """As the CLI and bulk_store do: the library's store once walked with os.walk,
    which leaves symbolic links to folders out."""
    other = tree.parent / "other"
    other.mkdir()
    (other / "x.dcm").write_text("x")
    (tree / "sub" / "to-other").symlink_to(other)
    (tree / "sub" / "again").symlink_to(other)
    client = Client("http://127.0.0.1:9/dicom-web")  # never contacted
    files = client.files_to_store([tree / "sub"])
    assert _rel(files, tree) == ["sub/c.dcm", "sub/again/x.dcm", "sub/deeper/d.dcm",
                                 "sub/deeper/e.txt"]


def test_client_files_to_store(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    client = Client("http://127.0.0.1:9/dicom-web")  # never contacted
    with caplog.at_level(logging.WARNING, logger="dcmweb"):
        files = client.files_to_store([tree / "sub", str(tree / "*.none")])
    assert _rel(files, tree) == ["sub/c.dcm", "sub/deeper/d.dcm", "sub/deeper/e.txt"]
    assert [r.getMessage() for r in caplog.records] == [f"no files match {tree / '*.none'}"]
    with pytest.raises(UsageError) as info:
        client.files_to_store([str(tree / "empty"), os.fspath(tree / "nope*")])
    assert info.value.exit_status == 2
    assert info.value.message == "no files to store"
