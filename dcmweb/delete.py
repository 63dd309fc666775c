"""DELETE: studies, series and instances, including Google's long-running operations.

GCP answers a study or series delete with an operation name and does the work in
the background: dcmweb polls it until it is done, and ``done`` with ``error`` is a
failure. Orthanc has no DICOMweb DELETE (405) but its own REST API can delete, so
dcmweb falls back to that when the server says it is Orthanc.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .errors import DcmwebError, NotFoundError, ServerError
from .http import Http
from .operations import wait_operation
from .paths import ResourcePath, parse_resource_path

log = logging.getLogger("dcmweb")


@dataclass(frozen=True)
class DeleteResult:
    path: str
    operation: str | None = None  # the long-running operation's name, if there was one
    counter: dict[str, int] | None = None  # GCP's success/failure counts


class Deleter:
    def __init__(self, http: Http, base_url: str, timeout: float = 600.0,
                 wait: bool = True) -> None:
        self.http = http
        self.base_url = base_url
        self.timeout = timeout
        self.wait = wait  # False: return the operation's name at once (--no-wait)

    def delete(self, path: str) -> DeleteResult:
        target = parse_resource_path(path)
        if target.level == "store":
            raise ServerError("delete needs a path: studies/UID[/series/UID[/instances/UID]]")
        url_path = target.url_path()
        response = self.http.request("DELETE", f"{self.base_url}/{url_path}",
                                     what=f"delete {url_path}", accept_status=(405,))
        with response:
            if response.status_code == 405:
                return self._orthanc_fallback(target)
            try:
                payload = response.json() if response.content.strip() else {}
            except ValueError:
                payload = {}
        name = payload.get("name") if isinstance(payload, dict) else None
        if not name:
            return DeleteResult(url_path)
        if not self.wait:
            return DeleteResult(url_path, str(name))
        try:
            operation = wait_operation(self.http, self.base_url, str(name), self.timeout,
                                       what=f"delete {url_path}")
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the server is not told to stop
            log.warning("delete %s: stopped waiting; operation %s goes on on the server",
                        url_path, name)
            raise
        return DeleteResult(url_path, operation.name, operation.counter)

    def _orthanc_root(self) -> str | None:
        """Orthanc's REST root (one level above /dicom-web), if this server is Orthanc."""
        root = self.base_url.rstrip("/").rsplit("/", 1)[0]
        try:
            response = self.http.request("GET", f"{root}/system", what="identify the server")
            with response:
                system = response.json()
        except (DcmwebError, ValueError):
            return None
        is_orthanc = isinstance(system, dict) and "ApiVersion" in system and "DicomAet" in system
        return root if is_orthanc else None

    def _orthanc_fallback(self, target: ResourcePath) -> DeleteResult:
        """Delete through Orthanc's REST API: DICOMweb DELETE is not in its plugin."""
        root = self._orthanc_root()
        if root is None:
            raise ServerError(f"delete {target.url_path()}: the server does not support "
                              "DICOMweb DELETE (HTTP 405)")
        uid = target.instance or target.series or target.study
        level = {"instance": "Instance", "series": "Series", "study": "Study"}[target.level]
        response = self.http.request("POST", f"{root}/tools/lookup", what=f"look up {uid}",
                                     body=lambda: str(uid).encode())
        with response:
            matches = [m for m in response.json() if m.get("Type") == level]
        if not matches:
            raise NotFoundError(f"delete {target.url_path()} failed: not found on the server")
        for match in matches:
            self.http.request("DELETE", f"{root}{match['Path']}",
                              what=f"delete {target.url_path()}").close()
        return DeleteResult(target.url_path())
