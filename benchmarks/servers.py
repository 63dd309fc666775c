"""Fresh Orthanc servers on loopback, through the launcher the tests use too.

The launcher lives in dcmweb_devtools (beside dcmweb/, not shipped in the wheel): Orthanc
on a free 127.0.0.1 port, an LD_PRELOAD shim that rewrites wildcard binds to loopback,
stopped by its own PID only.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from dcmweb_devtools import corpus
from dcmweb_devtools.orthanc import Orthanc, find_orthanc
from dcmweb_devtools.procs import compile_shim, http_session

from .measure import say

if TYPE_CHECKING:
    from .data import DataSet

__all__ = ["Orthanc", "compile_shim", "corpus", "find_orthanc", "fresh_orthanc", "load",
           "orthanc_version"]

# Same server settings for every client. No paging cap beyond what is asked for.
ORTHANC_CONFIG: dict[str, Any] = {
    "Name": "dcmweb-bench",
    "LimitFindInstances": 0,
    "LimitFindResults": 0,
    "ConcurrentJobs": 2,
}


def fresh_orthanc(workdir: Path) -> Orthanc:
    """Start an empty Orthanc in ``workdir`` (wiped first) and return it running."""
    if workdir.exists():
        subprocess.run(["rm", "-rf", str(workdir)], check=True)
    return Orthanc(workdir, extra_config=ORTHANC_CONFIG).start()


def orthanc_version(server: Orthanc) -> str:
    with http_session() as s:
        info = s.get(server.rest_url + "/system", timeout=10).json()
        plugins = s.get(server.rest_url + "/plugins/dicom-web", timeout=10).json()
    return f"Orthanc {info.get('Version')} + DICOMweb plugin {plugins.get('Version')}"


def load(server: Orthanc, bodies: list[Path], expected: int) -> float:
    """Store prebuilt multipart bodies with curl (4 in parallel); check the instance count."""
    from . import curl
    from .data import CONTENT_TYPE

    started = time.monotonic()
    headers = {"Content-Type": CONTENT_TYPE, "Accept": "application/dicom+json"}
    cfg = curl.write_config(server.workdir / "load.curlrc",
                            (curl.block(f"{server.url}/studies", headers=headers, data_file=body)
                             for body in bodies))
    # Orthanc 1.10 now and then refuses a few instances of a 10,000-instance load (a 200
    # with a FailedSOPSequence); it ignores duplicates, so sending everything again fills
    # the gaps.
    for attempt in range(3):
        subprocess.run(curl.command(cfg, parallel=4), check=False)
        count = server.instance_count()
        if count == expected:
            return time.monotonic() - started
        say(f"loading {server.url}: {count} of {expected} instances stored"
            + ("; sending again" if attempt < 2 else ""))
    raise RuntimeError(f"loading {server.url}: {count} instances stored, {expected} expected")


def clear_check(server: Orthanc) -> int:
    return server.instance_count()


def study_uids(server: Orthanc) -> list[str]:
    with http_session() as s:
        r = s.get(server.url + "/studies", params={"limit": "0"},
                  headers={"Accept": "application/dicom+json"}, timeout=60)
        r.raise_for_status()
        return [row["0020000D"]["Value"][0] for row in r.json()]


def expect_count(server: Orthanc, dataset: DataSet) -> None:
    count = server.instance_count()
    if count != dataset.count:
        raise RuntimeError(f"{server.url}: {count} instances, {dataset.count} expected")


def get(url: str, **kwargs: Any) -> requests.Response:
    with http_session() as s:
        return s.get(url, timeout=60, **kwargs)
