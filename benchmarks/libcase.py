"""Library clients, run in a child process: ``python -m benchmarks.libcase TASK.json OUT.json``.

Each task is what a user of that library would write. Only the work is timed (the
interpreter and the imports are excluded: a library user pays them once); CPU is
this process's user+sys time over the same span, all threads included.

dcmweb:          Client(url, workers=N).store([folder]) / .retrieve(path, out) / .search(...)
dicomweb-client: pydicom.dcmread every file, then DICOMwebClient(url).store_instances(...);
                 retrieve_study(uid, media_types=(("application/dicom", "*"),)) and
                 ds.save_as(...) for every instance; search_for_instances(..., get_remaining=True)
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _files(folder: str) -> list[str]:
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, n) for n in sorted(names)]
    return found


# -- dcmweb ----------------------------------------------------------------------------------
def dcmweb_store(task: dict[str, Any]) -> dict[str, Any]:
    from dcmweb import Client

    with Client(task["url"], workers=task.get("workers", 1)) as client:
        results = client.store([task["folder"]])
    stored = sum(r.status == "stored" for r in results)
    # Why files were not stored, for the report's check column (a run of 2026-12-03 had
    # 10 of 2,000 fail against a quiet Orthanc, and no word of why).
    reasons = Counter(f"{r.status}: {r.message}" for r in results if r.status != "stored")
    return {"stored": stored, "failed": len(results) - stored,
            "failures": dict(reasons.most_common(3))}


def dcmweb_retrieve(task: dict[str, Any]) -> dict[str, Any]:
    from dcmweb import Client

    with Client(task["url"], workers=task.get("workers", 1)) as client:
        results = client.retrieve(task.get("path"), task["output"])
    saved = sum(r.status == "saved" for r in results)
    return {"saved": saved, "failed": len(results) - saved}


def dcmweb_search(task: dict[str, Any]) -> dict[str, Any]:
    from dcmweb import Client

    with Client(task["url"]) as client:
        rows = client.search("instances", page_size=task.get("page_size"))
    return {"rows": len(rows)}


def dcmweb_metadata(task: dict[str, Any]) -> dict[str, Any]:
    from dcmweb import Client

    with Client(task["url"]) as client:
        rows = client.metadata(task["path"])
    return {"rows": len(rows)}


# -- dicomweb-client -------------------------------------------------------------------------
def _dwc(url: str) -> Any:
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(url)


def dwc_store(task: dict[str, Any]) -> dict[str, Any]:
    import pydicom

    client = _dwc(task["url"])
    per_call = task.get("per_call") or 0
    paths = _files(task["folder"])
    stored = failed = 0
    errors: dict[str, int] = {}
    if per_call:
        for start in range(0, len(paths), per_call):
            try:
                batch = [pydicom.dcmread(p) for p in paths[start:start + per_call]]
                client.store_instances(batch)
                stored += len(batch)
            except Exception as exc:  # what a user's loop would catch and count
                failed += per_call
                reason = f"{type(exc).__name__}: {str(exc)[:80]}"
                errors[reason] = errors.get(reason, 0) + 1
    else:
        datasets = [pydicom.dcmread(p) for p in paths]
        client.store_instances(datasets)
        stored = len(datasets)
    return {"stored": stored, "failed": failed, "errors": errors}


def _save_all(datasets: list[Any], output: Path) -> int:
    count = 0
    for ds in datasets:
        folder = output / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID)
        folder.mkdir(parents=True, exist_ok=True)
        ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        count += 1
    return count


ANY_TS = (("application/dicom", "*"),)


def dwc_retrieve_study(task: dict[str, Any]) -> dict[str, Any]:
    client = _dwc(task["url"])
    datasets = client.retrieve_study(task["study"], media_types=ANY_TS)
    return {"saved": _save_all(datasets, Path(task["output"])), "failed": 0}


def dwc_retrieve_store(task: dict[str, Any]) -> dict[str, Any]:
    client = _dwc(task["url"])
    saved = 0
    for row in client.search_for_studies(fields=["StudyInstanceUID"], get_remaining=True):
        uid = row["0020000D"]["Value"][0]
        saved += _save_all(client.retrieve_study(uid, media_types=ANY_TS), Path(task["output"]))
    return {"saved": saved, "failed": 0}


def dwc_search(task: dict[str, Any]) -> dict[str, Any]:
    client = _dwc(task["url"])
    rows = client.search_for_instances(limit=task["page_size"], get_remaining=True)
    return {"rows": len(rows)}


def dwc_metadata(task: dict[str, Any]) -> dict[str, Any]:
    rows = _dwc(task["url"]).retrieve_study_metadata(task["study"])
    return {"rows": len(rows)}


TASKS = {
    "dcmweb-metadata": dcmweb_metadata,
    "dwc-metadata": dwc_metadata,
    "dcmweb-store": dcmweb_store,
    "dcmweb-retrieve": dcmweb_retrieve,
    "dcmweb-search": dcmweb_search,
    "dwc-store": dwc_store,
    "dwc-retrieve-study": dwc_retrieve_study,
    "dwc-retrieve-store": dwc_retrieve_store,
    "dwc-search": dwc_search,
}


def main() -> None:
    task = json.loads(Path(sys.argv[1]).read_text())
    func = TASKS[task["kind"]]
    # Import the library before the clock starts: a library user pays that once.
    if task["kind"].startswith("dcmweb"):
        import dcmweb.client  # noqa: F401
    else:
        import dicomweb_client.api  # noqa: F401
        import pydicom  # noqa: F401
    cpu0, wall0 = _cpu(), time.perf_counter()
    extra = func(task)
    wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
    Path(sys.argv[2]).write_text(json.dumps({"wall": wall, "cpu": cpu, "extra": extra}))


if __name__ == "__main__":
    main()
