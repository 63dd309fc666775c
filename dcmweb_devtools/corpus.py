"""Real DICOM files for tests, from locally installed packages only (never downloaded).

- `pydicom_files()`: pydicom's bundled test files (pydicom/data/test_files).
- `pydicom_data_files()`: the `pydicom-data` package (module `data_store`, data_store/data).
- `ORTHANC_REJECTS`, `orthanc_safe()`, `unique_by_sop()`: what a server keeps.
- `synthetic_files()`: many small valid instances with fresh UIDs, for volume tests.
- `large_instance()`: one instance of random pixels, as large as asked.

pydicom's `get_testdata_file()` can fetch missing files from the network; nothing here
calls it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from dcmweb.files import read_part10_info

PYDICOM_DATA_HINT = "pip install -e '.[test]'  (pydicom-data)"

# What Orthanc 1.10.1 + DICOMweb 1.7 refuses. Verified 2025-11-26 by STOWing every file of
# pydicom_files() (163, pydicom 3.0.2) and pydicom_data_files() (67, pydicom-data 1.0.0)
# alone, one multipart request each, into an emptied Orthanc: exactly these 24 names got
# status 400 with nothing stored; the other 206 files got 200 and were stored.
#
# Valid instances (pydicom reads them; SOP/Study/Series UIDs, transfer syntax and complete
# pixel data present) that DCMTK 3.6.7 inside Orthanc cannot parse:
ORTHANC_REJECTS_VALID: frozenset[str] = frozenset(
    {
        "SC_rgb_jpeg.dcm",  # pydicom
        "rtdose_rle.dcm",  # pydicom
        "rtdose_rle_1frame.dcm",  # pydicom
        "rtplan_truncated.dcm",  # pydicom
        "explicit_VR-UN.dcm",  # pydicom-data
    }
)
# Part-10 files (b"DICM" at 128) that are not storable instances: DICOMDIRs, files
# without SOPClassUID/StudyInstanceUID or TransferSyntaxUID, truncated pixel data.
NOT_STORABLE: frozenset[str] = frozenset(
    {
        # pydicom/data/test_files/dicomdirtests (two files are named DICOMDIR)
        "DICOMDIR",
        "DICOMDIR-bigEnd",
        "DICOMDIR-empty.dcm",
        "DICOMDIR-implicit",
        "DICOMDIR-nooffset",
        "DICOMDIR-nopatient",
        "DICOMDIR-reordered",
        # pydicom/data/test_files
        "JPEGLSNearLossless_08.dcm",  # no StudyInstanceUID
        "JPEGLSNearLossless_16.dcm",
        "SC_rgb_jls_lossy_line.dcm",
        "SC_rgb_jls_lossy_sample.dcm",
        "MR_truncated.dcm",  # PixelData shorter than Rows x Columns
        "UN_sequence.dcm",  # no SOPClassUID
        "empty_charset_LEI.dcm",
        "nested_priv_SQ.dcm",
        "no_meta_group_length.dcm",
        "priv_SQ.dcm",
        "meta_missing_tsyntax.dcm",  # no TransferSyntaxUID
        # pydicom-data
        "emri_small_jpeg_2k_lossless_too_short.dcm",  # no SOPClassUID
    }
)
# Every file name Orthanc 1.10 answers 400 for. (Orthanc does accept two files that are
# not clean either: SC_ybr_full_422_uncompressed.dcm, short PixelData, and badVR.dcm.)
ORTHANC_REJECTS: frozenset[str] = ORTHANC_REJECTS_VALID | NOT_STORABLE

# Shared SOPInstanceUIDs: 30 groups of files in the two corpora carry the same
# SOPInstanceUID (one image in several transfer syntaxes or variants), e.g. the 9
# MR_small*.dcm / MR_truncated.dcm, the 6 rtdose*.dcm + badVR.dcm, 19 SC_rgb_* files of
# both packages, 693_J2KI.dcm (pydicom) = 693_UNCI.dcm (pydicom-data). A server keeps one
# instance per UID (Orthanc ignores the repeats with 200, tiny-pacs answers 409), so
# count expected instances with unique_by_sop(), and see duplicate_sop_groups().


def _part10_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and read_part10_info(p) is not None)


def pydicom_test_files_dir() -> Path:
    return Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_data_dir() -> Path | None:
    """data_store/data of the installed pydicom-data package, or None if not installed."""
    try:
        dist = importlib.metadata.distribution("pydicom-data")
    except importlib.metadata.PackageNotFoundError:
        return None
    located = Path(str(dist.locate_file("data_store/data")))
    if located.is_dir():
        return located
    spec = importlib.util.find_spec("data_store")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "data"
        if candidate.is_dir():
            return candidate
    return None


@functools.cache
def _pydicom_files() -> tuple[Path, ...]:
    return tuple(_part10_under(pydicom_test_files_dir()))


@functools.cache
def _pydicom_data_files() -> tuple[Path, ...]:
    root = pydicom_data_dir()
    return () if root is None else tuple(_part10_under(root))


def pydicom_files() -> list[Path]:
    """Sorted Part-10 files (b"DICM" at offset 128) bundled with pydicom."""
    return list(_pydicom_files())


def pydicom_data_files() -> list[Path]:
    """Sorted Part-10 files of the pydicom-data package ([] when it is not installed)."""
    return list(_pydicom_data_files())


@functools.cache
def sop_instance_uid(path: Path) -> str | None:
    """SOPInstanceUID of a file (None if pydicom cannot read it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the corpora hold deliberately odd files
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            uid = ds.get("SOPInstanceUID")
        except Exception:
            return None
    return str(uid) if uid else None


def unique_by_sop(paths: Iterable[Path]) -> list[Path]:
    """Keep the first file per SOPInstanceUID (files without one are kept), order kept."""
    seen: set[str] = set()
    kept: list[Path] = []
    for path in paths:
        uid = sop_instance_uid(Path(path))
        if uid is not None:
            if uid in seen:
                continue
            seen.add(uid)
        kept.append(Path(path))
    return kept


def duplicate_sop_groups(paths: Iterable[Path]) -> list[list[Path]]:
    """Groups (2 or more files) that share a SOPInstanceUID, in input order."""
    groups: dict[str, list[Path]] = {}
    for path in paths:
        uid = sop_instance_uid(Path(path))
        if uid is not None:
            groups.setdefault(uid, []).append(Path(path))
    return [group for group in groups.values() if len(group) > 1]


def orthanc_safe(paths: Iterable[Path]) -> list[Path]:
    """Drop the files Orthanc 1.10 refuses (ORTHANC_REJECTS)."""
    return [Path(p) for p in paths if Path(p).name not in ORTHANC_REJECTS]


DEFAULT_TEMPLATE = "CT_small.dcm"


def synthetic_files(
    directory: Path,
    n: int,
    *,
    template: Path | None = None,
    studies: int = 1,
    series_per_study: int = 1,
    patient_id: str = "DCMWEB-SYNTH",
    seed: str | None = None,
) -> list[Path]:
    """Write `n` small valid instances into `directory` and return their paths.

    Each is a copy of a real file (default pydicom's CT_small.dcm, 39 KB) with new Study,
    Series and SOP Instance UIDs: instances are spread round-robin over `studies` x
    `series_per_study` series. With `seed`, the UIDs are the same on every run.
    """
    if n < 0 or studies < 1 or series_per_study < 1:
        raise ValueError("n >= 0, studies >= 1 and series_per_study >= 1 required")
    source = template or pydicom_test_files_dir() / DEFAULT_TEMPLATE
    base = pydicom.dcmread(source)

    def uid(*parts: object) -> str:
        if seed is None:
            return generate_uid()
        return generate_uid(entropy_srcs=[seed, *map(str, parts)])

    study_uids = [uid("study", s) for s in range(studies)]
    series_uids = [
        [uid("series", s, r) for r in range(series_per_study)] for s in range(studies)
    ]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for i in range(n):
        group = i % (studies * series_per_study)
        s, r = divmod(group, series_per_study)
        ds = base.copy()
        ds.PatientID = patient_id
        ds.StudyInstanceUID = study_uids[s]
        ds.SeriesInstanceUID = series_uids[s][r]
        ds.StudyID = str(s + 1)
        ds.SeriesNumber = r + 1
        ds.InstanceNumber = i // (studies * series_per_study) + 1
        ds.SOPInstanceUID = uid("instance", i)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = directory / f"synth-{i:06d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def large_instance(path: Path, side: int) -> Path:
    """Write a copy of CT_small.dcm with ``side`` x ``side`` 16-bit pixels of random values
    (nothing compresses them) and a new SOP Instance UID to ``path``."""
    ds = pydicom.dcmread(pydicom_test_files_dir() / DEFAULT_TEMPLATE)
    ds.Rows = ds.Columns = side
    ds.PixelData = os.urandom(side * side * 2)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
