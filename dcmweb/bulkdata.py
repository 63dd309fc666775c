"""WADO-RS bulk data: the values metadata leaves out and points at with a BulkDataURI.

A path ``.../instances/I/bulkdata/7FE00010`` (``bulk/`` on Orthanc) is read below HOST; a
whole BulkDataURI must be on HOST's own server (scheme, host and port), so credentials
never travel to a server a metadata answer names. Google serves bulk data in its
v1beta1 API: with a v1 HOST on healthcare.googleapis.com the v1beta1 URL is asked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ServerError, UsageError, quoted
from .failures import same_origin
from .http import Http
from .multipart import Chunk
from .redact import redact_url
from .retrieve import RetrieveResult
from .saving import Saver
from .valuelength import length_check
from .wado import answer_parts, asking_again, get, instance_file
from .wadopath import WadoPath, parse_wado_path

# The standard multipart form (Orthanc requires it), or the single part Google documents.
ACCEPT = ('multipart/related; type="application/octet-stream"; transfer-syntax=*, '
          "application/octet-stream; transfer-syntax=*; q=0.9")
GOOGLE_HOST = "healthcare.googleapis.com"


def beta_base(base_url: str) -> str:
    """Google's v1beta1 DICOMweb base for a v1 one; any other base as it is."""
    parts = urlsplit(base_url)
    if parts.hostname == GOOGLE_HOST and parts.path.startswith("/v1/"):
        return base_url.replace("/v1/", "/v1beta1/", 1)
    return base_url


def bulk_url(base_url: str, target: WadoPath) -> str:
    if target.bulk and urlsplit(target.bulk).scheme:
        # Scheme, host (any case) and port (the default one filled in): HOST's own
        # user:password@ is no part of where its server is.
        if not same_origin(target.bulk, base_url):
            raise UsageError(f"the BulkDataURI {redact_url(target.bulk)!r} is not on HOST's "
                             "server",
                             "dcmweb sends credentials only to HOST: give HOST for that server")
        return target.bulk
    return f"{beta_base(base_url)}/{target.url_path()}"


def _what(url: str) -> str:
    """What messages call the retrieve: a BulkDataURI may carry a credential in its query
    (a signed URL), shown hidden as in -v lines."""
    return f"retrieve bulk data {redact_url(url)}"


def _target(path: str) -> WadoPath:
    target = parse_wado_path(path)
    if target.kind != "bulkdata":
        raise UsageError(f"invalid bulk data path {quoted(path)}",
                         "studies/S/series/R/instances/I/bulkdata/TAG or a BulkDataURI")
    if target.bulk and urlsplit(target.bulk).scheme:
        # Name the file after what the URI's own path says, when it says it.
        below = urlsplit(target.bulk).path.partition("/studies/")[2]
        inner = parse_wado_path(f"studies/{below}" if below else None)
        if inner.kind == "bulkdata":
            return WadoPath(inner.resource, "bulkdata", bulk=target.bulk)
    return target


def _tag_path(target: WadoPath) -> list[str]:
    """The words after bulkdata/ (Orthanc: bulk/): the value's tag path."""
    tail = urlsplit(target.bulk or "").path.rstrip("/").split("/")
    return tail[tail.index("bulkdata" if "bulkdata" in tail else "bulk") + 1:]


def _chunks(http: Http, base_url: str, target: WadoPath, url: str) -> Iterator[Chunk]:
    """The value: exactly one part. The answer is read to its end, so that no part, a
    second part or an answer cut after the first raises instead of passing for the value;
    one body ended only by the connection's close needs its length confirmed."""
    what = _what(url)
    tag_path = _tag_path(target) if target.resource.instance else []
    confirm = length_check(http, base_url, target.resource, "/".join(tag_path),
                           f"value {'/'.join(tag_path) or url}")
    with get(http, url, what, ACCEPT) as response:
        count = 0
        for count, (_, chunks) in enumerate(
                answer_parts(response, what, "application/octet-stream", confirm), start=1):
            if count > 1:
                raise ServerError(f"{what}: the server sent more than one part for one value")
            yield from chunks
        if count == 0:
            raise ServerError(f"{what}: the server sent no part where one value was asked for")


def bulk_bytes(http: Http, base_url: str, path: str) -> bytes:
    target = _target(path)
    url = bulk_url(base_url, target)
    return asking_again(_what(url),
                        lambda: b"".join(_chunks(http, base_url, target, url)))


def save_bulk(http: Http, base_url: str, path: str, output: Path) -> RetrieveResult:
    """Write OUTPUT/STUDY/SERIES/SOP_TAG[_I_TAG].raw (or OUTPUT/bulkdata.raw when a
    BulkDataURI does not name its instance)."""
    target = _target(path)
    if target.resource.instance:
        final = instance_file(output, target.resource, "_" + "_".join(_tag_path(target)),
                              "application/octet-stream")
    else:
        final = output / "bulkdata.raw"
    url = bulk_url(base_url, target)
    saver = Saver()
    size = asking_again(_what(url),
                        lambda: saver.save(_chunks(http, base_url, target, url), final))
    return RetrieveResult("saved", path, final, size)
