"""The benchmark's data: synthetic instances, the real pydicom test files, curl bodies.

Synthetic instances follow the project's synthetic-data recipe (MR Image Storage,
Explicit VR Little Endian, 16-bit MONOCHROME2, reproducible UIDs derived from a seed):
64 x 64 pixels give ~8.9 KB files, 512 x 512 give ~525 KB. Every set has its own seed,
so no two sets share a UID. Sets are cached in the work folder and rebuilt only when
the recipe (or pydicom's version) changes.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

RECIPE_VERSION = 1
BOUNDARY = "dcmweb-bench-7d1f0c2a9e4b"  # fixed, for the prebuilt curl bodies
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


@dataclass(frozen=True)
class SynthSpec:
    name: str
    studies: int
    per_study: int
    series: int = 2
    rows: int = 64
    cols: int = 64

    @property
    def count(self) -> int:
        return self.studies * self.per_study


SMALL = SynthSpec("small", studies=20, per_study=100)  # 2,000 x 8.9 KB
LARGE = SynthSpec("large", studies=1, per_study=100, rows=512, cols=512)  # 52.5 MB study
LARGE10 = SynthSpec("large10", studies=1, per_study=10, rows=512, cols=512)  # 5.2 MB study
SEARCH = SynthSpec("search", studies=100, per_study=100)  # 10,000 x 8.9 KB
META = SynthSpec("meta", studies=1, per_study=2000)  # one study, 2 series of 1,000
HUGE = SynthSpec("huge", studies=1, per_study=1000, rows=512, cols=512)  # 525 MB study


@dataclass
class DataSet:
    """Files of one set, with what the checks need: SOP UID -> sha256, study UIDs."""

    name: str
    root: Path
    files: list[Path]
    sha256: dict[str, str]  # SOP Instance UID -> sha256 of the file
    studies: list[str]
    total_bytes: int

    @property
    def count(self) -> int:
        return len(self.files)


def _write_synthetic(spec: SynthSpec, root: Path) -> None:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        UID,
        ExplicitVRLittleEndian,
        MRImageStorage,
        generate_uid,
    )

    seed = spec.name

    def uid(*parts: object) -> str:
        # One joined entropy source: pydicom concatenates sources without a separator.
        return generate_uid(entropy_srcs=["/".join(["gen-synth", seed, *map(str, parts)])])

    rng = np.random.default_rng(int.from_bytes(seed.encode(), "little") % (2**32))
    base_date = datetime.date(2020, 1, 1)
    for st in range(spec.studies):
        study_uid = uid("study", st)
        sdate = (base_date + datetime.timedelta(days=st)).strftime("%Y%m%d")
        per_series = [spec.per_study // spec.series + (1 if i < spec.per_study % spec.series
                                                       else 0) for i in range(spec.series)]
        for se, count in enumerate(per_series):
            series_uid = uid("series", st, se)
            folder = root / f"{st:03d}" / f"{se:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                sop_uid = uid("instance", st, se, i)
                meta = FileMetaDataset()
                meta.MediaStorageSOPClassUID = MRImageStorage
                meta.MediaStorageSOPInstanceUID = UID(sop_uid)
                meta.TransferSyntaxUID = ExplicitVRLittleEndian
                meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
                ds = Dataset()
                ds.file_meta = meta
                ds.SpecificCharacterSet = "ISO_IR 100"
                ds.SOPClassUID = MRImageStorage
                ds.SOPInstanceUID = sop_uid
                ds.StudyDate = ds.SeriesDate = ds.ContentDate = sdate
                ds.StudyTime = ds.SeriesTime = ds.ContentTime = f"{8 + st % 10:02d}{se:02d}00"
                ds.AccessionNumber = f"ACC{st:05d}"
                ds.Modality = "MR"
                ds.Manufacturer = "dcmweb-bench"
                ds.ReferringPhysicianName = ""
                ds.StudyDescription = f"Synthetic study {st}"
                ds.SeriesDescription = f"Synthetic series {se}"
                ds.PatientName = f"Synthetic^{seed}{st // 2:04d}"
                ds.PatientID = f"{seed.upper()}{st // 2:04d}"
                ds.PatientBirthDate = "19700101"
                ds.PatientSex = "O"
                ds.StudyInstanceUID = study_uid
                ds.SeriesInstanceUID = series_uid
                ds.StudyID = str(st)
                ds.SeriesNumber = se + 1
                ds.InstanceNumber = i + 1
                ds.ImagePositionPatient = [0, 0, float(i)]
                ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
                ds.SliceThickness = 1
                ds.PixelSpacing = [1, 1]
                ds.SamplesPerPixel = 1
                ds.PhotometricInterpretation = "MONOCHROME2"
                ds.Rows, ds.Columns = spec.rows, spec.cols
                ds.BitsAllocated = 16
                ds.BitsStored = 12
                ds.HighBit = 11
                ds.PixelRepresentation = 0
                ds.WindowCenter = 2048
                ds.WindowWidth = 4096
                ds.PixelData = rng.integers(0, 4096, (spec.rows, spec.cols),
                                            dtype=np.uint16).tobytes()
                ds.save_as(folder / f"{i:04d}.dcm", enforce_file_format=True)


def _uids(path: Path) -> tuple[str | None, str | None]:
    """(SOP Instance UID, Study Instance UID) of a file; None where pydicom cannot tell."""
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the real corpus holds deliberately odd files
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True,
                                 specific_tags=["SOPInstanceUID", "StudyInstanceUID"])
        except Exception:
            return None, None
    sop, study = ds.get("SOPInstanceUID"), ds.get("StudyInstanceUID")
    return (str(sop) if sop else None), (str(study) if study else None)


def _index(name: str, root: Path, files: list[Path]) -> dict[str, object]:
    sha: dict[str, str] = {}
    studies: list[str] = []
    total = 0
    for path in files:
        data = path.read_bytes()
        total += len(data)
        uid, study = _uids(path)
        if uid:
            sha[uid] = hashlib.sha256(data).hexdigest()
        if study and study not in studies:
            studies.append(study)
    return {"name": name, "files": [str(p.relative_to(root)) for p in files], "sha256": sha,
            "studies": studies, "total_bytes": total}


def _manifest(root: Path) -> Path:
    return root.with_name(root.name + ".manifest.json")  # beside the set, not inside it


def _load(root: Path, key: str) -> DataSet | None:
    manifest = _manifest(root)
    try:
        info = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if info.get("key") != key:
        return None
    return DataSet(info["name"], root, [root / f for f in info["files"]], info["sha256"],
                   info["studies"], info["total_bytes"])


def _save(root: Path, key: str, index: dict[str, object]) -> DataSet:
    _manifest(root).write_text(json.dumps({"key": key, **index}))
    loaded = _load(root, key)
    assert loaded is not None
    return loaded


def _key(*parts: object) -> str:
    import pydicom

    return json.dumps([RECIPE_VERSION, pydicom.__version__, *parts], sort_keys=True)


def _empty(root: Path) -> None:
    """root as a new, empty folder (a stale cached set is removed)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)


def synthetic(spec: SynthSpec, data_dir: Path) -> DataSet:
    """The set for ``spec`` under data_dir/spec.name, generated when missing or stale."""
    root = data_dir / spec.name
    key = _key(asdict(spec))
    found = _load(root, key)
    if found is not None:
        return found
    _empty(root)
    _write_synthetic(spec, root)
    files = sorted(p for p in root.rglob("*.dcm"))
    return _save(root, key, _index(spec.name, root, files))


def real_files(data_dir: Path, candidates: Iterable[Path]) -> DataSet:
    """Copies of the real test files (one per SOP Instance UID) in data_dir/real."""
    root = data_dir / "real"
    chosen: list[Path] = []
    seen: set[str] = set()
    for path in candidates:
        uid, _ = _uids(path)
        if uid is None or uid in seen:
            continue
        seen.add(uid)
        chosen.append(path)
    key = _key("real", sorted(str(p) for p in chosen))
    found = _load(root, key)
    if found is not None:
        return found
    _empty(root)
    files = []
    for n, path in enumerate(chosen):
        target = root / f"{n:04d}-{path.name}"
        shutil.copyfile(path, target)
        files.append(target)
    return _save(root, key, _index("real", root, files))


def curl_bodies(dataset: DataSet, data_dir: Path, per_body: int = 1) -> list[Path]:
    """Prebuilt multipart/related bodies (``per_body`` instances each) for curl's STOW."""
    folder = data_dir / "bodies" / f"{dataset.name}-{per_body}"
    stamp = folder / "stamp.json"
    key = json.dumps([BOUNDARY, [str(p) for p in dataset.files], per_body])
    count = (dataset.count + per_body - 1) // per_body
    bodies = [folder / f"{n:05d}.body" for n in range(count)]
    try:
        if stamp.read_text() == key and all(b.exists() for b in bodies):
            return bodies
    except OSError:
        pass
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    for n, body in enumerate(bodies):
        with open(body, "wb") as out:
            for path in dataset.files[n * per_body:(n + 1) * per_body]:
                out.write(head + path.read_bytes() + b"\r\n")
            out.write(f"--{BOUNDARY}--\r\n".encode())
    stamp.write_text(key)
    return bodies


def default_work_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dcmweb-bench"
