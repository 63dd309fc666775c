"""DELETE: studies, series and instances, including Google's long-running operations.

GCP answers a study or series delete with an operation name and does the work in
the background: dcmweb polls it until it is done, and ``done`` with ``error`` is a
failure. Orthanc has no DICOMweb DELETE (405) but its own REST API can delete, so
dcmweb falls back to that when the server says it is Orthanc.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import DcmwebError, NotFoundError, ServerError, UnavailableError
from .http import Http
from .paths import ResourcePath, parse_resource_path

log = logging.getLogger("dcmweb")

POLL_FIRST = 1.0
POLL_MAX = 10.0
API_VERSIONS = ("v1", "v1beta1", "v1alpha2")
# projects/P/locations/L/datasets/D/operations/ID: polled on the same host, so a
# hostile name must not reach other paths there.
_OPERATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*(/[A-Za-z0-9._~-]+)*")


@dataclass(frozen=True)
class DeleteResult:
    path: str
    operation: str | None = None  # the long-running operation's name, if there was one
    counter: dict[str, int] | None = None  # GCP's success/failure counts


def operation_url(base_url: str, name: str) -> str:
    """GCP serves operations at the API root: https://host/v1/{name}."""
    if not _OPERATION_NAME.fullmatch(name) or ".." in name.split("/"):
        raise ServerError(f"the server answered the delete with an odd operation name {name!r}")
    parts = urlsplit(base_url)
    words = parts.path.split("/")
    for index, word in enumerate(words):
        if word in API_VERSIONS:
            root = "/".join(words[: index + 1])
            return urlunsplit((parts.scheme, parts.netloc, f"{root}/{name}", "", ""))
    raise ServerError(
        f"the server started operation {name!r} but HOST has no API version segment "
        f"({'/'.join(API_VERSIONS)}) to poll it at"
    )


def _counter(metadata: Any) -> dict[str, int] | None:
    raw = metadata.get("counter") if isinstance(metadata, dict) else None
    if not isinstance(raw, dict):
        return None
    counts = {}
    for key in ("success", "failure", "pending"):
        try:
            counts[key] = int(raw.get(key, 0))  # GCP sends int64 as JSON strings
        except (TypeError, ValueError):
            counts[key] = 0
    return counts


class Deleter:
    def __init__(self, http: Http, base_url: str, timeout: float = 600.0) -> None:
        self.http = http
        self.base_url = base_url
        self.timeout = timeout

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
        return self._wait(url_path, str(name))

    def _wait(self, url_path: str, name: str) -> DeleteResult:
        url = operation_url(self.base_url, name)
        deadline = time.monotonic() + self.timeout
        delay = POLL_FIRST
        while True:
            response = self.http.request("GET", url, what=f"check operation {name}")
            with response:
                operation = response.json()
            counter = _counter(operation.get("metadata"))
            if operation.get("done"):
                error = operation.get("error")
                if error:
                    message = error.get("message") if isinstance(error, dict) else str(error)
                    raise ServerError(f"delete {url_path} failed on the server: {message}",
                                      f"operation {name}")
                return DeleteResult(url_path, name, counter)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UnavailableError(
                    f"delete {url_path} still running after {self.timeout:g} s",
                    f"it goes on on the server; follow operation {name} or raise --timeout",
                )
            log.info("delete %s: operation %s still running", url_path, name)
            self.http.sleep(min(delay, remaining))
            delay = min(delay * 2, POLL_MAX)

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
