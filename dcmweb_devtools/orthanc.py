"""A private Orthanc (Debian packages `orthanc` + `orthanc-dicomweb`) for tests.

All its state (config, SQLite index, storage, log) lives in one work directory. HTTP
listens on 127.0.0.1 only (Orthanc 1.10 has no bind-address option, so the loopback shim
rewrites its wildcard bind; RemoteAccessAllowed is off as well), no authentication, the
DICOM (DIMSE) server is off, DICOMweb is at /dicom-web/.

    with Orthanc(tmp_path / "orthanc") as o:
        requests.get(o.url + "/studies")     # DICOMweb
        o.instance_count(); o.clear()        # Orthanc REST helpers
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .procs import MissingDependency, ServerProcess, http_session

INSTALL_HINT = "sudo apt-get install -y orthanc orthanc-dicomweb"
BINARY_CANDIDATES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so*",
)


class OrthancInstall(NamedTuple):
    binary: Path
    plugin: Path


def find_orthanc() -> OrthancInstall | None:
    """Paths of the Orthanc binary and its DICOMweb plugin, or None if either is missing.

    `ORTHANC_BIN`, when set, is the only binary considered.
    """
    override = os.environ.get("ORTHANC_BIN")
    binaries = [override] if override else BINARY_CANDIDATES
    binary = next((Path(b) for b in binaries if os.access(b, os.X_OK)), None)
    plugin = next(
        (
            Path(p).resolve()
            for pattern in PLUGIN_CANDIDATES
            for p in sorted(glob.glob(pattern))
            if Path(p).resolve().is_file()
        ),
        None,
    )
    if binary is None or plugin is None:
        return None
    return OrthancInstall(binary, plugin)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


class Orthanc(ServerProcess):
    """One Orthanc process; `extra_config` is deep-merged into the generated config."""

    name = "orthanc"
    ready_path = "/dicom-web/studies?limit=1"
    ready_statuses = (200,)

    def __init__(
        self,
        workdir: Path,
        *,
        cache_dir: Path | None = None,
        startup_timeout: float = 30.0,
        extra_config: Mapping[str, Any] | None = None,
        install: OrthancInstall | None = None,
    ) -> None:
        super().__init__(workdir, cache_dir=cache_dir, startup_timeout=startup_timeout)
        self.extra_config = dict(extra_config or {})
        self._install = install

    @property
    def url(self) -> str:
        """DICOMweb base URL: http://127.0.0.1:PORT/dicom-web"""
        return self.root_url + "/dicom-web"

    @property
    def rest_url(self) -> str:
        """Orthanc REST API root: http://127.0.0.1:PORT"""
        return self.root_url

    @property
    def config_path(self) -> Path:
        return self.workdir / "orthanc.json"

    def _prepare(self) -> Sequence[str]:
        install = self._install or find_orthanc()
        if install is None:
            raise MissingDependency(f"Orthanc is missing: run '{INSTALL_HINT}'")
        db = self.workdir / "db"
        db.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "Name": "dcmweb-tests",
            "StorageDirectory": str(db),
            "IndexDirectory": str(db),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,  # defence in depth; the shim binds 127.0.0.1
            "AuthenticationEnabled": False,
            "HttpDescribeErrors": True,
            "KeepAlive": True,
            "TcpNoDelay": True,
            "WebDavEnabled": False,
            "DicomServerEnabled": False,
            "DicomModalities": {},
            "SaveJobs": False,
            "OverwriteInstances": False,
            "Plugins": [str(install.plugin)],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                "Ssl": False,
                # host:port written into RetrieveURL/BulkDataURI (else the Host header)
                "Host": f"127.0.0.1:{self.port}",
            },
        }
        _merge(config, self.extra_config)
        self.config_path.write_text(json.dumps(config, indent=2))
        return [str(install.binary), str(self.config_path)]

    # -- Orthanc REST helpers -----------------------------------------------------------
    def statistics(self) -> dict[str, Any]:
        with http_session() as s:
            r = s.get(self.rest_url + "/statistics", timeout=30)
            r.raise_for_status()
            result: dict[str, Any] = r.json()
            return result

    def instance_count(self) -> int:
        """Number of instances stored (REST GET /statistics)."""
        return int(self.statistics()["CountInstances"])

    def clear(self) -> None:
        """Delete every study (REST DELETE /studies/{id} for each id of GET /studies)."""
        with http_session() as s:
            r = s.get(self.rest_url + "/studies", timeout=30)
            r.raise_for_status()
            for orthanc_id in r.json():
                s.delete(f"{self.rest_url}/studies/{orthanc_id}", timeout=60).raise_for_status()
