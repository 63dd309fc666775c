"""The library's front door: ``Client(host)`` with store, search, retrieve and delete."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from . import bounds
from .auth import (
    check_header_name,
    check_header_value,
    choose_auth,
    hide_credential_headers,
    warn_if_header_overridden,
)
from .errors import DcmwebError, ServerError, UsageError
from .http import Http, HttpConfig, RetryPolicy
from .optionnames import on_command_line, option
from .redact import redact_url
from .speed import LowSpeed
from .tls import check_ca_bundle

# Each operation's module is imported by its method: a command loads only its own.
if TYPE_CHECKING:
    from .bulkrecords import Outcome, Summary
    from .delete import DeleteResult
    from .hostprobe import HostProbe
    from .inputs import InputSpec, PathsLike
    from .jsonstore import PairsLike
    from .metadata import Metadata
    from .operations import Operation
    from .params import ParamsLike
    from .pathlist import PathList
    from .rendered import RenderOptions
    from .retrieve import RetrieveResult
    from .storefiles import StoreOptions, StoreResult

log = logging.getLogger("dcmweb")
# The library never prints: without a handler of its own, Python's last-resort handler
# would write a program's warnings (retries, say) to stderr. The CLI adds its own.
log.addHandler(logging.NullHandler())

GCP_API = "https://healthcare.googleapis.com/v1"
T = TypeVar("T")
_STORE_NAME = re.compile(r"projects/[^/]+/locations/[^/]+/datasets/[^/]+/dicomStores/[^/]+")


def normalize_host(host: str) -> str:
    """The DICOMweb base URL; a bare GCP store name expands to its v1 URL."""
    if not isinstance(host, str):
        raise UsageError(f"HOST must be a URL or a store name, not {host!r}", _host_hint(""))
    host = host.strip().rstrip("/")
    if _STORE_NAME.fullmatch(host):
        return f"{GCP_API}/{host}/dicomWeb"
    shown = redact_url(host)  # never a password, however mistyped
    after_scheme = host.partition("://")[2]
    if "@" in after_scheme[_authority_end(after_scheme):]:
        # The host would be read from inside the password: 'Pa#ss@host' is a fragment.
        raise UsageError(f"invalid HOST {shown!r}: a character in its password (before the"
                         " last '@') ends the host part of a URL",
                         "percent-encode '#', '?', '/' and '@' in a password in HOST (%23,"
                         f" %3F, %2F, %40), or give it with {option('user')}")
    try:
        parts = urlsplit(host)
        parts.port  # noqa: B018 - a port out of range or not a number raises here
    except ValueError as error:  # a broken IPv6 literal, a bad port
        raise UsageError(f"invalid HOST {shown!r}: {error}", _host_hint(shown)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"invalid HOST {shown!r}", _host_hint(shown))
    if parts.query or parts.fragment or host.endswith(("?", "#")):
        # Every path would be added after it (and a key in it logged with -v).
        what = "query string ('?...')" if "?" in host.partition("#")[0] else "fragment ('#...')"
        base = redact_url(host.partition("?")[0].partition("#")[0])
        key_hint = (f"; send an API key as a header ({option('headers')} 'X-Api-Key: KEY', or"
                    " the name the server wants)" if what.startswith("query") else "")
        raise UsageError(f"invalid HOST {base!r} with a {what}: dcmweb adds its own paths and"
                         " queries to HOST", f"give HOST without it{key_hint}")
    resource = _RESOURCE_TAIL.search(parts.path)
    if resource:
        raise UsageError(f"invalid HOST {shown!r}: it names a resource, not the DICOMweb base",
                         f"did you mean {shown[:len(shown) - len(resource.group(0))]}?")
    return host


# HOST ending in a DICOMweb resource: .../studies, .../studies/UID/series/UID/instances
_RESOURCE_TAIL = re.compile(r"(/(studies|series|instances)(/[^/]+)?)+$")


_NO_SCHEME = re.compile(r"[A-Za-z0-9.-]+(:[0-9]+)?(/.*)?")
_LOCAL_NAMES = re.compile(r"(localhost|127(\.[0-9]+){3}|\[::1\])(:[0-9]+)?(/.*)?")


def _authority_end(after_scheme: str) -> int:
    """Where a URL's host part ends (its first '/', '?' or '#'), given what follows '://'."""
    return min((i for i in map(after_scheme.find, "/?#") if i >= 0), default=len(after_scheme))


def _host_hint(host: str) -> str:
    """'did you mean http://...?' for a URL typed without its scheme."""
    netloc = host.split("/", 1)[0]
    if _NO_SCHEME.fullmatch(host) and ("." in netloc or ":" in netloc):
        scheme = "http" if _LOCAL_NAMES.fullmatch(host) else "https"
        return f"did you mean {scheme}://{host}?"
    return ("HOST is a DICOMweb base URL such as http://127.0.0.1:8042/dicom-web, "
            "or a store name projects/P/locations/L/datasets/D/dicomStores/S")


def _text(name: str, value: object, *, secret: bool = False) -> str:
    """A path or name argument; anything else would fail deep inside, unexplained."""
    if not isinstance(value, str):
        # A credential's value is never shown, not even a wrong one: only its type.
        shown = f"a value of type {type(value).__name__}" if secret else repr(value)
        raise UsageError(f"{name} must be a str, not {shown}")
    return value


def _optional_text(name: str, value: object, *, secret: bool = False) -> str | None:
    return None if value is None else _text(name, value, secret=secret)


def _texts(name: str, value: object) -> list[str]:
    """Filters or fields: a lone str is one (iterated, it would be its characters)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (bytes, bytearray)) or not isinstance(value, Iterable):
        raise UsageError(f"{name} must be a str or a list of str, not {value!r}")
    return [_text(f"an item of {name}", item) for item in value]


def _listed(results: Iterable[T]) -> list[T]:
    """Every result of a run, as a list. A run that stops raises after yielding what it
    knows (the files stored or saved so far, those sent without an answer): they go
    with the error as its ``results``, else the caller would not learn of them."""
    listed: list[T] = []
    try:
        for result in results:
            listed.append(result)
    except DcmwebError as error:
        error.results = listed
        raise
    except KeyboardInterrupt as stop:
        stop.results = listed  # type: ignore[attr-defined]  # as error.results
        raise
    return listed


def _path(name: str, value: object, kind: str = "file") -> str | os.PathLike[str]:
    """A file's or folder's path (a str or a Path)."""
    if not isinstance(value, (str, os.PathLike)):
        raise UsageError(f"{name} must be a {kind}'s path, not {value!r}")
    return value


class Client:
    """A DICOMweb server. Every method is what the command of the same name does."""

    def __init__(
        self,
        host: str,
        *,
        token: str | None = None,
        user: str | None = None,
        google_auth: bool | None = None,
        headers: Mapping[str, str] | None = None,
        ca_bundle: str | None = None,
        workers: int = 1,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        retries: int = 5,
        backoff: float = 1.0,
        request_deadline: float = 900.0,
        low_speed_limit: float = 1024.0,
        low_speed_time: float = 120.0,
        outage_limit: float = 300.0,
        max_rate: float | None = None,
    ) -> None:
        self.base_url = normalize_host(host)
        self.workers = bounds.WORKERS.check("workers", workers)
        if headers is not None and not isinstance(headers, Mapping):
            # Never echoed: a header value may be a credential.
            raise UsageError("headers must be a dict of names and values, not a "
                             f"{type(headers).__name__}")
        if any(isinstance(name, str) and name.strip().lower() == "accept"
               for name in (headers or {})):
            # Each call picks its own Accept (and parses the answer by it): a global one
            # would be silently overridden, or break every other call.
            choose = (f"a retrieve's type: {option('part_type')}, "
                      f"{option('transfer_syntax')} or {option('single_part')}")
            if on_command_line():  # a search writes what --format says (in Python: rows)
                choose = f"a search's output: {option('format')}; {choose}"
            raise UsageError(f"an Accept header cannot be set with {option('headers')}: each "
                             "command asks for the type it reads", choose)
        config = HttpConfig(
            connect_timeout=bounds.CONNECT_TIMEOUT.check("connect_timeout", connect_timeout),
            read_timeout=bounds.READ_TIMEOUT.check("read_timeout", read_timeout),
            retry=RetryPolicy(attempts=bounds.RETRIES.check("retries", retries) + 1,
                              base=bounds.BACKOFF.check("backoff", backoff)),
            # Per request, so that --ca-bundle wins over REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE.
            verify=check_ca_bundle(os.fspath(_path("ca_bundle", ca_bundle)))
            if ca_bundle else True,
            headers={check_header_name(_text("a header name", name)):
                     check_header_value(_text(f"the header {name} value", value, secret=True),
                                        f"the {option('headers')} {name} value")
                     for name, value in (headers or {}).items()},
            pool_size=max(workers, 4),
            request_deadline=bounds.REQUEST_DEADLINE.check("request_deadline", request_deadline),
            low_speed=LowSpeed(bounds.LOW_SPEED_LIMIT.check("low_speed_limit", low_speed_limit),
                               bounds.LOW_SPEED_TIME.check("low_speed_time", low_speed_time)),
            outage_limit=bounds.OUTAGE_LIMIT.check("outage_limit", outage_limit),
            max_rate=None if max_rate is None else bounds.MAX_RATE.check("max_rate", max_rate),
        )
        hide_credential_headers(config.headers or {})
        auth = choose_auth(self.base_url, token=_optional_text("token", token, secret=True),
                           user=_optional_text("user", user, secret=True), google=google_auth,
                           timeout=(config.connect_timeout,
                                    min(config.read_timeout, config.request_deadline)))
        warn_if_header_overridden(auth, config.headers or {})
        self._http = Http(auth, config)
        self._closed = False
        self._host_probe: HostProbe | None = None  # made by the first failure (explain)
        self._probe_lock = threading.Lock()

    @property
    def http(self) -> Http:
        """The HTTP session every call goes through; refused once the Client is closed
        (its connections gone, a call would only fail as 'cancelled')."""
        if self._closed:
            raise UsageError("the client is closed",
                             "make a new Client, or call it inside its with block")
        return self._http

    def _session(self) -> Http:
        """:attr:`http` for a call that begins: the call counts its own outage (not
        the time since an earlier call failed)."""
        http = self.http
        http.begin_call()
        return http

    def close(self) -> None:
        """Close the connections (the Client is also a context manager); calls made
        afterwards raise UsageError."""
        self._closed = True
        self._http.close()

    def explain(self, error: DcmwebError) -> bool:
        """After a failure a wrong HOST explains (HTTP 400, 404, 405, or a 2xx answer
        that is not DICOMweb), ask the likely DICOMweb base once (one GET, at most once
        per Client) and, when it answers, add a line to ``error`` naming it: ``HOST looks
        like the server's root; did you mean http://127.0.0.1:8042/dicom-web?``. True
        when a line was added; never raises. Leaving a ``with Client(...)`` block with a
        DcmwebError calls it."""
        from .hostprobe import HostProbe  # only a failed run needs it

        with self._probe_lock:
            if self._host_probe is None:
                self._host_probe = HostProbe(self._http, self.base_url)
        return self._host_probe.explain(error)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            if isinstance(exc, DcmwebError):
                clearer = self.unserved(exc)
                if clearer is not None:
                    raise clearer from exc
                self.explain(exc)
        finally:
            self.close()

    def unserved(self, error: DcmwebError) -> DcmwebError | None:
        """After a 404 to a request below a study, series or instance (its /metadata,
        /rendered, frames, ...) or to a top-level /series or /instances, one search asks
        whether what the path names is there; when it is, the error to report instead:
        :class:`~dcmweb.errors.Unserved` (the server does not serve that kind of
        request), or for frames, bulk data and an image whose search row lacks Rows a
        404 that says so. None keeps the error;
        never raises. Leaving a ``with Client(...)`` block with such a 404 raises it."""
        from .unserved import check  # only a failed run needs it

        verdict = check(self._http, self.base_url, error)
        return verdict.error(error) if verdict is not None else None

    # store -----------------------------------------------------------------
    def files_to_store(self, masks: PathsLike) -> list[Path]:
        """Expand files, directories and glob masks (a lone str or path is one); warn
        about masks matching nothing."""
        from .inputs import Inputs, from_paths, unmatched_message  # store only

        inputs = Inputs(from_paths(masks))  # the walk of the CLI and bulk_store
        files = list(inputs)
        for mask in inputs.stats.unmatched:
            log.warning("%s", unmatched_message(mask))
        if not files:
            raise UsageError("no files to store", "check the paths and masks")
        return files

    def iter_store(self, paths: PathsLike, *, single_part: bool = False,
                   batch_size: int = 20, batch_bytes: int = 16 * 1024 * 1024,
                   workers: int | None = None, storage_class: str | None = None,
                   study_uid: str | None = None) -> Iterator[StoreResult]:
        """Store DICOM files; one :class:`~dcmweb.storefiles.StoreResult` per file, "stored"
        only when the answer or a search proves it.

        ``batch_size`` instances (at most ``batch_bytes``) travel in one multipart
        request, one each with ``single_part``; ``workers`` requests at a time (default:
        the Client's); ``storage_class`` (Google: STANDARD, NEARLINE, COLDLINE, ARCHIVE);
        ``study_uid`` posts to .../studies/UID, which refuses other studies. ``paths``
        are files (a lone str or path is one file), read as the upload goes.
        """
        from .inputs import one_or_many
        from .store import iter_store

        options = self._store_options(single_part, batch_size, batch_bytes, workers,
                                      storage_class, study_uid)
        files = (Path(path) for path in one_or_many(paths))
        return iter_store(self._session(), self.base_url, files, options)

    def _store_options(self, single_part: bool, batch_size: int, batch_bytes: int,
                       workers: int | None, storage_class: str | None,
                       study_uid: str | None) -> StoreOptions:
        from .paths import safe_uid
        from .storefiles import StoreOptions

        if study_uid is not None and safe_uid(study_uid) is None:
            # It becomes part of the URL: studies/../x would post elsewhere.
            raise UsageError(f"study_uid {study_uid!r} is not a UID",
                             "digits and dots, such as 1.2.840.113619.2.55")
        return StoreOptions(
            single_part=single_part,
            batch_size=bounds.BATCH_SIZE.check("batch_size", batch_size),
            batch_bytes=bounds.BATCH_BYTES.check("batch_bytes", batch_bytes),
            workers=self.workers if workers is None else bounds.WORKERS.check("workers", workers),
            storage_class=_optional_text("storage_class", storage_class), study_uid=study_uid)

    def iter_store_json(self, items: PairsLike, *, generate_uids: bool = False
                        ) -> Iterator[StoreResult]:
        """Create instances from DICOM JSON metadata plus a JPEG each (Google's JSON+JPEG
        STOW); ``items`` are ``(metadata, jpeg)`` path pairs, as for :meth:`store_json`
        (one pair may come alone). One result per pair, stored only when the answer or a
        search proves it. Each pair is read when its turn comes: one that cannot be read
        is a failed result, and the others are still sent (:meth:`store_json` checks
        them first)."""
        from .jsonstore import iter_store_json

        return iter_store_json(self._session(), self.base_url, items, generate_uids)

    def store_json(self, items: PairsLike, *, generate_uids: bool = False
                   ) -> list[StoreResult]:
        """``store_json([("photo.json", "photo.jpg")], generate_uids=True)``; one pair
        may be given alone. Every pair is read first: one that cannot be sent raises a
        :class:`~dcmweb.UsageError` before anything is sent. An error that stops the run
        carries the results it had as ``error.results``."""
        from .jsonstore import check_pairs, json_pairs

        pairs = json_pairs(items)
        check_pairs(pairs, generate_uids)
        return _listed(self.iter_store_json(pairs, generate_uids=generate_uids))

    def store(self, masks: PathsLike, *, single_part: bool = False,
              batch_size: int = 20, batch_bytes: int = 16 * 1024 * 1024,
              workers: int | None = None, storage_class: str | None = None,
              study_uid: str | None = None) -> list[StoreResult]:
        """Store files, folders and glob masks (a lone str or path is one); the results
        as a list (the options are those of :meth:`iter_store`). An error that stops the
        run carries the results it had as ``error.results`` (files stored, unconfirmed).
        For journals, reports and skipping what is there already, see :meth:`bulk_store`."""
        return _listed(self.iter_store(self.files_to_store(masks), single_part=single_part,
                                       batch_size=batch_size, batch_bytes=batch_bytes,
                                       workers=workers, storage_class=storage_class,
                                       study_uid=study_uid))

    def bulk_store(self, inputs: InputSpec | PathsLike, *,
                   journal: str | os.PathLike[str] | None = None, retry_failed: bool = False,
                   skip_existing: bool = False, verify_journal: bool = False,
                   on_conflict: str = "fail", dry_run: bool = False, min_age: float = 0.0,
                   report: str | os.PathLike[str] | None = None,
                   on_outcome: Callable[[Outcome], None] | None = None,
                   single_part: bool = False, batch_size: int = 20,
                   batch_bytes: int = 16 * 1024 * 1024, workers: int | None = None,
                   storage_class: str | None = None, study_uid: str | None = None) -> Summary:
        """What ``dcmweb store`` does: walk the inputs lazily, skip what the journal (or,
        with ``skip_existing``, the server) holds, store the rest, write the report.
        ``verify_journal`` asks the server whether it still holds what the journal
        lists as stored, and sends again what it no longer holds. ``min_age`` (seconds)
        leaves files modified less long ago (maybe still being copied in) for a later
        run: their outcome is ``too new``, and the journal does not record them.

        ``inputs`` is an :class:`~dcmweb.inputs.InputSpec` or paths, folders and masks.
        ``on_outcome`` is called with each file's :class:`~dcmweb.bulkrecords.Outcome` as it
        is decided; the returned :class:`~dcmweb.bulkrecords.Summary` has the counts. The
        other options are those of :meth:`iter_store`.
        """
        from .bulk import BulkStore
        from .bulkrecords import BulkOptions
        from .inputs import InputSpec, from_paths

        if on_outcome is not None and not callable(on_outcome):
            # Called only once a file is decided: the files would be sent first.
            raise UsageError("on_outcome must be a function that takes an Outcome, not "
                             f"{on_outcome!r}")
        spec = inputs if isinstance(inputs, InputSpec) else from_paths(inputs)
        journal = None if journal is None else _path("journal", journal)
        report = None if report is None else _path("report", report)
        options = self._store_options(single_part, batch_size, batch_bytes, workers,
                                      storage_class, study_uid)
        bulk = BulkOptions(journal=journal, retry_failed=retry_failed,
                           skip_existing=skip_existing, verify_journal=verify_journal,
                           dry_run=dry_run, min_age=min_age,
                           on_conflict=on_conflict)  # type: ignore[arg-type]
        return BulkStore(self._session(), self.base_url, spec, options, bulk,
                         report=report, on_outcome=on_outcome).run()

    # search ----------------------------------------------------------------
    def iter_search(self, path: str | None = "studies", params: ParamsLike = None,
                    page_size: int | None = None, *, filters: str | Iterable[str] = (),
                    include: str | Iterable[str] = (), fuzzy: bool = False,
                    limit: int | None = None, offset: int | None = None
                    ) -> Iterator[dict[str, Any]]:
        """Every matching row (at most ``limit``), paging past the server's page caps.

        The search command's options: ``filters=["PatientName=DOE^J*"]``
        (keywords or tags), ``include=["StudyDate"]`` or ``["all"]``, ``fuzzy=True``,
        ``limit=N``, ``offset=N`` (a str is one filter or field); ``params`` are raw
        query words sent as they are: a dict (``{"PatientID": "P005"}``; a list value
        repeats the key), a list of ``(key, value)`` pairs, or a query string
        (``"PatientID=P005&limit=10"``). A value of None is refused (it would match
        nothing, or everything); so is ``limit`` or ``offset`` given twice or out of
        bounds, as a keyword or a parameter. A row that contradicts a filter of one
        exact value (the server ignored the key) is left out, with a warning on the
        ``dcmweb`` logger; ``limit`` and ``offset`` count the rows the server sent.
        """
        from .params import to_pairs
        from .query import Query
        from .search import Searcher

        # The keywords' types are checked here; the Searcher checks limit and offset
        # (given twice, out of bounds) whichever way they came, before any request.
        query = Query(_texts("filters", filters), _texts("include", include), fuzzy,
            None if limit is None else bounds.LIMIT.check("limit", limit),
            None if offset is None else bounds.OFFSET.check("offset", offset),
            to_pairs(params))
        if page_size is not None:
            bounds.PAGE_SIZE.check("page_size", page_size)
        return Searcher(self._session(), self.base_url).iter_rows(_optional_text("path", path),
                                                            query.params(), page_size)

    def search(self, path: str | None = "studies", params: ParamsLike = None,
               page_size: int | None = None, *, filters: str | Iterable[str] = (),
               include: str | Iterable[str] = (), fuzzy: bool = False,
               limit: int | None = None, offset: int | None = None
               ) -> list[dict[str, Any]]:
        """Every matching row as a list (see :meth:`iter_search`); read values by keyword
        with :func:`dcmweb.rows.value`."""
        return list(self.iter_search(path, params, page_size, filters=filters,
                                     include=include, fuzzy=fuzzy, limit=limit, offset=offset))

    # retrieve --------------------------------------------------------------
    def iter_retrieve(self, path: str | Iterable[str] | PathList | None = None,
                      output: str | os.PathLike[str] = ".", *,
                      part_type: str | None = None, transfer_syntax: str | None = None,
                      single_part: bool = False, render: RenderOptions | None = None
                      ) -> Iterator[RetrieveResult]:
        """Download to files under OUTPUT; one result per file.

        ``path`` may be several paths (a list, or any iterable: a file's lines): they
        are all checked before the first request, then fetched in one run whose pool
        (``workers``) takes the items of every path; a path that fails is one failed
        result. Metadata and bulk data are retrieved one path at a time.

        Studies, series and instances go to OUTPUT/STUDY/SERIES/SOP.dcm (with a
        ``part_type`` other than DICOM, each instance is asked for alone and its parts go
        to SOP_frame_N.png); frames to SOP_frame_N.raw (or the image type asked for),
        rendered images to SOP.jpg or SOP_frame_N.png, bulk data to SOP_TAG.raw.
        ``transfer_syntax`` is a readable shortcut for ``part_type``; ``single_part`` asks
        for one instance as a bare application/dicom body; ``render`` sets format,
        viewport, window and quality.
        """
        from .saving import check_output_folder
        from .wadopath import parse_wado_path

        out = Path(_path("output", output, "folder"))
        part_type = _optional_text("part_type", part_type)
        transfer_syntax = _optional_text("transfer_syntax", transfer_syntax)
        if isinstance(path, Iterable) and not isinstance(path, (str, bytes, bytearray)):
            from .pathlist import PathList

            paths = path if isinstance(path, PathList) else PathList(
                (f"path {number}", given) for number, given in enumerate(path, start=1))
            if render is not None:
                paths.render_all()
            if len(paths) > 1:
                return self._retrieve_many(paths, out, part_type, transfer_syntax,
                                           single_part, render)
            path = paths.first
        elif render is not None and path is not None:
            from .pathlist import rendered_path

            path = rendered_path(_text("path", path))  # as a list of one is
        kind = parse_wado_path(None if path is None else _text("path", path)).kind
        check_output_folder(out)
        if render is not None and kind != "rendered":
            raise UsageError("rendering options apply to .../rendered paths")
        if single_part and kind != "dicom":
            raise UsageError(f"{option('single_part')} applies to an instance path")
        if kind == "rendered":
            from .rendered import RenderOptions as Options
            from .rendered import save_rendered

            if render is not None and not isinstance(render, Options):
                raise UsageError(f"render must be a RenderOptions, not {render!r}")
            return save_rendered(self._session(), self.base_url, str(path), out,
                                 render or Options(), self.workers)
        if kind == "frames":
            from .frames import save_frames

            return save_frames(self._session(), self.base_url, str(path), out, part_type,
                               transfer_syntax)
        if kind == "bulkdata":
            from .bulkdata import save_bulk

            def bulk_value() -> Iterator[RetrieveResult]:
                # Saved as the result is asked for, as the other kinds are: a failure
                # comes out of the loop that reports, which then closes with its summary.
                yield save_bulk(self._session(), self.base_url, str(path), out)

            return bulk_value()
        if kind == "metadata":
            raise UsageError("metadata is not written as files here",
                             "use Client.metadata() (the CLI prints it)")
        from .retrieve import dicom_part_type, iter_retrieve

        return iter_retrieve(self._session(), self.base_url, path, output,
                             part_type=dicom_part_type(part_type, transfer_syntax),
                             workers=self.workers, single_part=single_part)

    def _retrieve_many(self, paths: PathList, output: Path, part_type: str | None,
                       transfer_syntax: str | None, single_part: bool,
                       render: RenderOptions | None) -> Iterator[RetrieveResult]:
        from .rendered import RenderOptions as Options
        from .retrievemany import ManyOptions, check_paths, iter_retrieve_many
        from .saving import check_output_folder

        if render is not None and not isinstance(render, Options):
            raise UsageError(f"render must be a RenderOptions, not {render!r}")
        options = ManyOptions(part_type, transfer_syntax, single_part, render)
        check_paths(paths, options)  # before any request, as for one path
        check_output_folder(output)
        return iter_retrieve_many(self._session(), self.base_url, paths, output, options,
                                  self.workers)

    def retrieve(self, path: str | Iterable[str] | PathList | None = None,
                 output: str | os.PathLike[str] = ".", *,
                 part_type: str | None = None, transfer_syntax: str | None = None,
                 single_part: bool = False, render: RenderOptions | None = None
                 ) -> list[RetrieveResult]:
        """Download to files under OUTPUT; the results as a list (see
        :meth:`iter_retrieve`). An error that stops the run carries the files saved
        before it as ``error.results``. For instances in memory see
        :meth:`retrieve_instance`."""
        return _listed(self.iter_retrieve(path, output, part_type=part_type,
                                          transfer_syntax=transfer_syntax,
                                          single_part=single_part, render=render))

    def iter_instances(self, path: str, *, dataset: bool = False) -> Iterator[Any]:
        """Each instance of a study, series or instance path, in memory, as the answer
        streams in: its stored Part-10 bytes, or a pydicom Dataset with ``dataset=True``."""
        from .instances import as_dataset, iter_instance_bytes

        for data in iter_instance_bytes(self._session(), self.base_url, _text("path", path)):
            yield as_dataset(data) if dataset else data

    def retrieve_instance(self, path: str, *, dataset: bool = False) -> Any:
        """One instance (``studies/S/series/R/instances/I``) in memory: its stored
        Part-10 bytes, or a pydicom Dataset with ``dataset=True``."""
        from .paths import parse_resource_path

        if parse_resource_path(_text("path", path)).level != "instance":
            raise UsageError("retrieve_instance takes an instance path",
                             "studies/S/series/R/instances/I; use iter_instances for more")
        found = list(self.iter_instances(path, dataset=dataset))
        if len(found) != 1:
            raise ServerError(f"retrieve {path}: the server sent {len(found)} instances "
                              "where one was asked for")
        return found[0]

    # metadata, rendered images, frames, bulk data -----------------------------
    def fetch_metadata(self, path: str, fmt: str = "json", *, parse: bool = True
                       ) -> Metadata:
        """The metadata answer of a study, series or instance: ``.raw`` bytes as sent,
        ``.rows`` (JSON) or ``.documents`` (XML, one per instance). ``parse=False``: only
        ``.raw`` is wanted, and JSON rows are not built when the answer's framing and its
        first and last bytes show a complete array of objects."""
        from .metadata import fetch_metadata

        return fetch_metadata(self._session(), self.base_url, _text("path", path), fmt, parse=parse)

    def metadata(self, path: str, *, datasets: bool = False) -> list[Any]:
        """DICOM JSON rows (one per instance), or pydicom Datasets with ``datasets=True``
        (bulk values are left empty: read them with :meth:`bulkdata`)."""
        answer = self.fetch_metadata(path)
        return answer.datasets() if datasets else answer.rows

    def rendered(self, path: str, *, format: str = "jpeg", viewport: str | None = None,
                 window: str | None = None, quality: int | None = None) -> bytes:
        """One instance or frame rendered as JPEG, PNG or GIF (viewport "W,H", window
        "C,W[,FN]", quality 1-100). Write files with :meth:`retrieve`."""
        from .rendered import RenderOptions as Options
        from .rendered import render, rendered_target

        options = Options(format, viewport, window, quality)
        target = rendered_target(_text("path", path))
        if target.resource.level != "instance" or len(target.frames) > 1:
            raise UsageError("Client.rendered renders one instance or frame",
                             "write several with Client.retrieve(PATH/rendered, OUTPUT)")
        return render(self._session(), self.base_url, target, options)

    def frames(self, path: str, *, part_type: str | None = None,
               transfer_syntax: str | None = None) -> dict[int, bytes]:
        """Frame number -> bytes for .../frames/1,3,5 (the stored bytes by default)."""
        from .frames import frames_bytes

        return frames_bytes(self._session(), self.base_url, _text("path", path),
                            _optional_text("part_type", part_type),
                            _optional_text("transfer_syntax", transfer_syntax))

    def bulkdata(self, uri: str) -> bytes:
        """A bulk value by BulkDataURI (on HOST's server) or .../bulkdata/PATH."""
        from .bulkdata import bulk_bytes

        return bulk_bytes(self._session(), self.base_url, _text("uri", uri))

    # delete ----------------------------------------------------------------
    def delete(self, path: str, *, timeout: float = 600.0, wait: bool = True) -> DeleteResult:
        """Delete a study, series or instance; wait for GCP's operation to finish (with
        ``wait=False`` return at once: ``result.operation`` names it)."""
        from .delete import Deleter

        timeout = bounds.TIMEOUT.check("timeout", timeout)
        return Deleter(self._session(), self.base_url, timeout, wait).delete(_text("path", path))

    # long-running operations ---------------------------------------------------
    def operation(self, name: str) -> Operation:
        """Google's operation NAME (or its ID, the dataset taken from HOST), as it is now."""
        from .operations import get_operation, users_name

        return get_operation(self._session(), self.base_url,
                             users_name(self.base_url, _text("name", name)))

    def wait_operation(self, name: str, *, timeout: float = 600.0) -> Operation:
        """Wait until the operation is done; raise if it failed (an error, or failed
        instances counted) or is still running after ``timeout`` seconds."""
        from .operations import users_name, wait_operation

        timeout = bounds.TIMEOUT.check("timeout", timeout)
        return wait_operation(self._session(), self.base_url,
                              users_name(self.base_url, _text("name", name)), timeout)
