"""After a 404: a resource that is missing, or a kind of request the server does not serve.

A 404 says both "no such study" and "no such route": tiny-pacs has no top-level
``/series`` or ``/instances``, no ``studies/UID/instances``, no ``/metadata``, frames or
rendered images, and answers each with 404 as it would a wrong UID. So only after a 404
to a request below a resource (its ``/series``, ``/instances``, ``/metadata``,
``/rendered``, frames or bulk data) or to a top-level ``/series`` or ``/instances``, one
search asks whether that resource is there: a search by its UID whose row carries the
UID (a server may ignore a key), or, for a top-level path, a one-row search of studies;
then, since searches lag behind deletes (Google: a deleted instance still shows in
searches for a few seconds), a retrieve of the resource itself (its status only), which
every server serves. When it is there, the server does not serve that kind of request:
:class:`Unserved` (exit 1), not "check the UIDs" (exit 4). Frames and bulk data may
really be missing under an instance that is there: they stay a 404 that says what the
search found. So does an image: an instance without one (SR, KO, PR, no pixel data) has
nothing to render, so only an instance known to be an image (its search row carries
Rows) that answers 404 shows the server does not render. A 404 to a resource itself
(``retrieve studies/UID``) is never checked: it is missing. A check that fails in any way
keeps the 404.

A loop over instances a listing just named (a series' rendered images) asks once, after
:data:`STREAK` of them its listing showed as images (with Rows) answered 404 with none
saved, and stops there when the server does not serve them: the other instances are not
asked for. The 404 of an instance without an image is that item's own failure.
"""

from __future__ import annotations

import threading
from urllib.parse import urlencode, urlsplit

from .errors import DcmwebError, NotFoundError, Unserved
from .hostprobe import ask
from .http import Http
from .paths import ResourcePath
from .record import record
from .served import served_probe

STREAK = 3  # instances a listing named, each answered 404, before the loop asks why
ROWS_BYTES = 1024 * 1024  # a server that ignores the UID key lists the whole level
ROWS = "00280010"  # Rows: a search row that carries it is an image's

# The search for a resource by its UID: the collection above it, the key, the tag.
_SEARCH = {"study": ("studies", "StudyInstanceUID", "0020000D"),
           "series": ("series", "SeriesInstanceUID", "0020000E"),
           "instance": ("instances", "SOPInstanceUID", "00080018")}


@record(frozen=True)
class Kind:
    """A kind of request below a resource, as messages name it."""

    name: str
    hint: str | None = None
    part: str | None = None  # what may really be missing under the resource (a frame)
    image: bool = False  # not missing, unless the instance's search row lacks Rows


@record(frozen=True)
class Verdict:
    """What the search after a 404 found: the resource is there (``found`` says how)."""

    kind: Kind
    found: str

    def error(self, original: DcmwebError) -> DcmwebError:
        """The error to report instead of ``original`` (the 404)."""
        if self.kind.part is not None:
            return NotFoundError(f"{original.message}; {self.found}: it has no "
                                 f"{self.kind.part}, or the server does not serve "
                                 f"{self.kind.name}", self.kind.hint, status=404,
                                 url=original.url)
        return Unserved(f"{original.message}; {self.found}, so the server does not serve "
                        f"{self.kind.name}", self.kind.hint, status=404, url=original.url)


def _split(path: str) -> tuple[ResourcePath, str]:
    """The resource a path below the base names, and what it asks of it (the rest)."""
    words = [word for word in path.split("/") if word]
    uids: list[str] = []
    for name in ("studies", "series", "instances"):
        at = 2 * len(uids)
        if len(words) < at + 2 or words[at] != name:
            break
        uids.append(words[at + 1])
    return ResourcePath(*uids), "/".join(words[2 * len(uids):])


def _kind(resource: ResourcePath, rest: str) -> Kind | None:
    """The kind of request ``rest`` is below ``resource``; None for one not checked (the
    resource itself, a search of studies: there a 404 means missing, or a wrong HOST)."""
    level = resource.level
    if level == "store" and rest in ("series", "instances"):
        shape = "series" if rest == "series" else "series/UID/instances"
        return Kind(f"/{rest} (a search of {rest} across all studies)",
                    f"search studies/UID/{shape} instead")
    if level == "study" and rest == "instances":
        return Kind("studies/UID/instances (a search of a study's instances)",
                    "search studies/UID/series/UID/instances instead")
    if (level, rest) in (("study", "series"), ("series", "instances")):
        return Kind(f"a search of a {level}'s {rest}")
    if level == "store":
        return None
    if rest == "metadata":
        return Kind("metadata", "retrieve the instances instead: their files hold it")
    if rest == "rendered":
        return Kind("rendered images", part="image", image=True)
    if rest.startswith("frames/"):
        return Kind("frames", "check the frame numbers", part="such frame")
    if rest.startswith(("bulkdata/", "bulk/")):
        return Kind("bulk data", "take the path from the instance's metadata (BulkDataURI)",
                    part="such bulk data")
    return None


def _holds(http: Http, base_url: str, resource: ResourcePath, kind: Kind
           ) -> Verdict | None:
    """What a search shows of the resource, or None (not found, or no answer)."""
    if resource.level == "store":
        return Verdict(kind, "a search of studies answers") if ask(
            http, f"{base_url}/studies?limit=1") is not None else None
    collection, key, tag = _SEARCH[resource.level]
    uid = {"study": resource.study, "series": resource.series,
           "instance": resource.instance}[resource.level]
    parent = {"study": ResourcePath(), "series": ResourcePath(resource.study),
              "instance": ResourcePath(resource.study, resource.series)}[resource.level]
    above = f"{parent.url_path()}/" if parent.study else ""
    query = {key: uid, **({"includefield": ROWS} if kind.image else {})}
    rows = ask(http, f"{base_url}/{above}{collection}?{urlencode(query)}", ROWS_BYTES)
    found = [row for row in rows or [] if _value(row, tag) == uid]
    # Searches lag behind deletes (Google: a deleted instance still shows for a few
    # seconds): one deleted moments ago is found, and missing all the same.
    if not found or served_probe(http, base_url, resource) is not True:
        return None
    if kind.image and any(_value(row, ROWS) is not None for row in found):
        return Verdict(Kind(kind.name, kind.hint), f"the {resource.level} is on the server "
                       "and is an image (a search finds it, with Rows)")
    return Verdict(kind, f"the {resource.level} is on the server (a search finds it)")


def _value(row: dict, tag: str) -> object:
    values = row.get(tag, {}).get("Value") if isinstance(row.get(tag), dict) else None
    return values[0] if isinstance(values, list) and values else None


def check(http: Http, base_url: str, error: DcmwebError) -> Verdict | None:
    """Whether a 404 is to a kind of request the server does not serve (see the module
    docstring); None keeps the 404 as it is. Never raises."""
    if not isinstance(error, NotFoundError) or error.status != 404 or not error.url:
        return None
    base = urlsplit(base_url).path.rstrip("/")
    path = urlsplit(error.url).path
    if not path.startswith(f"{base}/"):
        return None
    resource, rest = _split(path[len(base) + 1:])
    kind = _kind(resource, rest)
    if kind is None:
        return None
    return _holds(http, base_url, resource, kind)


class Streak:
    """The 404s of a loop over instances a listing named (see the module docstring);
    shared by the loop's threads."""

    def __init__(self, http: Http, base_url: str, what: str) -> None:
        self.http, self.base_url, self.what = http, base_url, what
        self._lock = threading.Lock()
        self._images: set[str] = set()
        self._missing = 0
        self._saved = False
        self._last: DcmwebError | None = None
        self._asked = False

    def saved(self) -> None:
        with self._lock:
            self._saved = True

    def listed(self, row: dict) -> None:
        """A listing's row: an instance whose row carries Rows is an image."""
        if _value(row, ROWS) is not None:
            with self._lock:
                self._images.add(str(_value(row, "00080018")))

    def failed(self, error: DcmwebError, instance: str | None) -> None:
        """The request for ``instance`` failed: a 404 counts when the listing showed it
        as an image (one without has nothing to render)."""
        if isinstance(error, NotFoundError) and error.status == 404:
            with self._lock:
                if instance not in self._images:
                    return
                self._missing += 1
                self._last = error

    def before_next(self) -> None:
        """Raise :class:`Unserved` instead of asking for the next instance, once the
        404s so far show the server does not serve this kind of request."""
        with self._lock:
            if self._asked or self._saved or self._missing < STREAK:
                return
            self._asked = True
            last = self._last
        assert last is not None
        verdict = check(self.http, self.base_url, last)
        if verdict is None or verdict.kind.part is not None:
            return  # deleted since the listing, maybe, or no image: each is asked for
        raise Unserved(f"{self.what}: stopped after HTTP 404 to every instance asked for, "
                       f"the others not asked for: {verdict.found}, so the server does not "
                       f"serve {verdict.kind.name}", verdict.kind.hint, status=404,
                       url=last.url)
