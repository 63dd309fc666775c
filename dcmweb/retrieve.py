"""WADO-RS: stream studies, series and instances to DIR/STUDY/SERIES/SOP.dcm.

Each part goes to a temporary file beside its destination and is renamed only
once complete (saving.py), so a half file never carries a final name. The folder names come
from the UIDs inside each file and are checked before they touch the disk: a
hostile server cannot write outside the output folder. They are checked against the path
asked for too: an instance of another study, series or SOP instance than the path names
is refused, never saved as if it were the one asked for.
"""

from __future__ import annotations

import filecmp
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from . import wado
from .auth import check_line_breaks
from .body import TooSlowError
from .dicomhead import HEAD_BYTES, Meta, read_meta, read_uids
from .errors import (
    DcmwebError,
    LocalFileError,
    NameTaken,
    NotFoundError,
    ServerError,
    UsageError,
)
from .failures import header_hint
from .http import Http
from .leftover import Taken, Tally
from .multipart import Chunk, parse_content_type
from .optionnames import option
from .output import plural
from .parallel import run_bounded_streams
from .partcheck import (
    DICOM_TYPES,
    dicom_path,
    pydicom_uids,
    syntax_problem,
    walk_part,
    whole_problem,
)
from .paths import ResourcePath, parse_resource_path, safe_uid
from .record import record
from .rows import value
from .saving import Saver
from .served import GONE, served_on
from .transport import Response
from .wado import CUT_OFF, STREAM_ATTEMPTS, CutOffError, checked_answer

if TYPE_CHECKING:
    from .search import Searcher
    from .wadopath import WadoPath

T = TypeVar("T")

log = logging.getLogger("dcmweb")

DEFAULT_TYPE = "application/dicom; transfer-syntax=*"
_STUDY_INSTANCES = "00201208"  # NumberOfStudyRelatedInstances
_SERIES_INSTANCES = "00201209"  # NumberOfSeriesRelatedInstances


def _head(chunks: list[Chunk]) -> bytes:
    """The first HEAD_BYTES of a part's first chunks, copied once (a chunk is often a
    whole part: copying it all would cost a tenth of a large retrieve's CPU)."""
    if len(chunks) == 1:
        return bytes(memoryview(chunks[0])[:HEAD_BYTES])
    return b"".join(chunks)[:HEAD_BYTES]


@record(frozen=True)
class RetrieveResult:
    # gone: a study, series or instance a listing named that the server no longer holds
    # (deleted since: searches lag behind deletes); nothing of it was there to retrieve.
    status: Literal["saved", "failed", "gone"]
    source: str  # what was asked for, e.g. studies/1.2/series/3.4
    path: Path | None = None
    size: int = 0
    message: str | None = None


def accept_header(part_type: str | None) -> str:
    """``multipart/related; type="X"; params`` from a part type like the old tool's --type."""
    mime, params = parse_content_type(part_type or DEFAULT_TYPE)
    if not mime or "/" not in mime:
        raise UsageError(f"invalid {option('part_type', part_type)}", "for example image/jpeg")
    extra = "".join(f"; {name}={value}" for name, value in params.items())
    return f'multipart/related; type="{mime}"{extra}'


Named = Callable[[RetrieveResult], None]  # told of a file as it gets its final name


class Downloader:
    def __init__(self, http: Http, base_url: str, output: Path, part_type: str | None,
                 single_part: bool = False) -> None:
        self.http = http
        self.base_url = base_url
        self.output = output
        self.part_type = part_type or DEFAULT_TYPE
        self.accept = accept_header(part_type)
        syntax = parse_content_type(self.part_type)[1].get("transfer-syntax")
        self.syntax = None if syntax in (None, "*") else syntax  # asked for: checked per part
        if single_part:  # one instance as a bare application/dicom body (GCP, tiny-pacs)
            self.accept = self.part_type
        self.saver = Saver()

    def fetch(self, target: ResourcePath, named: Named | None = None
              ) -> Iterator[RetrieveResult]:
        """Download one study, series, instance or frame list; retry a cut stream.

        Each file is yielded as soon as it has its final name (once, however often the
        answer is asked for again): an error or Ctrl-C later on leaves it reported.
        ``named`` is told of each file (once) the moment it gets its final name, under
        the lock that stopping the run takes: a run stopped from another thread than
        this one finds every file named before the stop there."""
        source = target.url_path()
        reported: set[Path] = set()
        told: set[Path | None] = set()

        def tell(result: RetrieveResult) -> None:
            if named is not None and result.path not in told:
                told.add(result.path)
                named(result)

        for attempt in range(1, STREAM_ATTEMPTS + 1):
            try:
                response = wado.get(self.http, f"{self.base_url}/{source}", f"retrieve {source}",
                                    self.accept, transcoding=wado.wants_transcoding(self.part_type),
                                    partial_counted=True)
                with response:
                    # What the server says is missing fails the item, beside what it sent.
                    partial = wado.partial_message(response)
                    failures = [] if partial is None else [
                        RetrieveResult("failed", source, message=partial)]
                    for result in self._save_response(response, target, tell):
                        if result.path is None:
                            failures.append(result)
                        elif result.path not in reported:
                            reported.add(result.path)
                            yield result
                yield from failures
                return
            except CUT_OFF as exc:
                if attempt < STREAM_ATTEMPTS:
                    log.info("retrieve %s: answer cut off (%s); asking again", source, exc)
                elif isinstance(exc, TooSlowError):
                    raise wado.cut_error(f"retrieve {source}", exc) from exc
                else:
                    yield RetrieveResult("failed", source,
                                         message=f"the answer was cut off: {exc}")

    def _save_response(self, response: Response, target: ResourcePath,
                       named: Named) -> Iterator[RetrieveResult]:
        asked, _ = parse_content_type(self.part_type)
        answer = checked_answer(response, f"retrieve {target.url_path()}", asked)
        saved: set[Path] = set()  # by this answer
        if answer.boundary is None:
            yield self._save_part(answer.chunks, asked, target, 1, saved, named,
                                  check_end=not answer.framed)
            return
        what = f"retrieve {target.url_path()}"
        parts = wado.at_least_one(wado.parts_of(answer, answer.boundary, what), what)
        for index, part in enumerate(parts, start=1):
            part_mime, _ = parse_content_type(part.content_type or self.part_type)
            if not wado.fits(part_mime, asked):
                # e.g. a web page inside the multipart answer: never saved as a part of that type
                yield RetrieveResult("failed", target.url_path(), message=(
                    f"the server sent a {part_mime} part where {asked} was asked for"))
                continue  # the parser skips what was not read
            yield self._save_part(part.iter_content(), part_mime, target, index, saved,
                                  named)

    def _save_part(self, chunks: Iterable[Chunk], mime: str, target: ResourcePath,
                   index: int, saved: set[Path], named: Named, *,
                   check_end: bool = False) -> RetrieveResult:
        try:
            return self._write_part(chunks, mime, target, index, saved, named, check_end)
        except NameTaken as taken:  # one name in the way: that file fails, the run goes on
            return RetrieveResult("failed", target.url_path(), message=taken.headline)

    def _write_part(self, chunks: Iterable[Chunk], mime: str, target: ResourcePath,
                    index: int, saved: set[Path], named: Named, check_end: bool
                    ) -> RetrieveResult:
        source = target.url_path()
        stream = iter(chunks)
        first: list[Chunk] = []
        size = 0
        for chunk in stream:  # the first bytes name the file: read them before creating it
            first.append(chunk)
            size += len(chunk)
            if size >= HEAD_BYTES:
                break
        head = _head(first)
        meta = read_meta(head) if mime in DICOM_TYPES else None
        final = self._destination(head, meta, mime, target, index)
        if isinstance(final, str):
            return RetrieveResult("failed", source, message=final)
        # Written beside its final name: renaming within a folder is cheap, while a
        # rename across folders cost 0.6 ms of kernel time per file here.
        folder = final.parent if final is not None else self.output
        saver = self.saver
        handle, temp = saver.create(folder)
        try:
            try:
                for chunk in first:
                    saver.write(handle, chunk, folder)
                for chunk in stream:
                    saver.write(handle, chunk, folder)
                    size += len(chunk)
            finally:
                os.close(handle)
            problem = None
            if mime in DICOM_TYPES:
                walk = walk_part(head, meta, size, temp)
                if walk.complete is False and check_end:
                    raise CutOffError(f"the connection closed after {size} bytes, inside "
                                      "the DICOM data")
                problem = whole_problem(walk, final, size)
            if problem:
                saver.abandon(temp)  # a framed answer vouches for its bytes, not its file
                return RetrieveResult("failed", source, message=problem)
            if final is None:
                final = self._dicom_path(target, pydicom_uids(temp))
                if isinstance(final, str):
                    saver.abandon(temp)
                    return RetrieveResult("failed", source, message=final)
                saver.folder(final.parent)
            if final in saved and not filecmp.cmp(temp, final, shallow=False):
                saver.abandon(temp)  # the first is kept: the answer cannot say which is right
                return RetrieveResult("failed", source, message=(
                    f"the server sent {final.name} twice in one answer, with different "
                    "bytes; the first was kept"))
            saved.add(final)
            result = RetrieveResult("saved", source, final, size)
            saver.finish(temp, final, then=lambda: named(result))
        except BaseException:
            saver.abandon(temp)  # truncated or interrupted: never left behind
            raise
        return result

    def _destination(self, head: bytes, meta: Meta | None, mime: str, target: ResourcePath,
                     index: int) -> Path | str | None:
        """Where a part goes, a message saying why it cannot be kept, or None when
        only the whole file can tell."""
        if mime in DICOM_TYPES:
            uids = read_uids(head, meta)
            final = None if uids is None else self._dicom_path(target, uids)
            if meta is None or isinstance(final, str) or self.syntax is None:
                return final
            return syntax_problem(meta, final, self.syntax) or final
        assert target.instance, "other types are asked for per instance (per_instance)"
        return wado.instance_file(self.output, target, f"_frame_{index}", mime)

    def _dicom_path(self, target: ResourcePath, uids: tuple[str | None, ...]) -> Path | str:
        return dicom_path(self.output, target, uids)


def per_instance(part_type: str | None) -> bool:
    """Whether a retrieve asks for each instance on its own: the parts of a type other
    than DICOM (image/png, ...) say nothing of their instance, so only an answer for one
    instance can name them STUDY/SERIES/SOP_frame_N.png (as the old dcmweb did)."""
    mime, _ = parse_content_type(part_type or DEFAULT_TYPE)
    return mime != "application/dicom"


def check_request(target: ResourcePath, part_type: str | None, single_part: bool) -> None:
    """The usage errors of a retrieve, found before any request (a dry run finds them too)."""
    if single_part and target.level != "instance":
        raise UsageError(f"{option('single_part')} retrieves one instance",
                         "give a path studies/S/series/R/instances/I")
    if part_type:
        # Refused before the listing that an image type starts with (a header would
        # carry it only later, and the listing's 404 would hide the mistake).
        check_line_breaks(part_type, "the part type", header_hint())
    accept_header(part_type)


def dicom_part_type(part_type: str | None, transfer_syntax: str | None) -> str | None:
    """The part type asked for: ``transfer_syntax`` is a shortcut for one."""
    if not transfer_syntax:
        return part_type
    refuse_both(part_type, transfer_syntax)
    return f"application/dicom; transfer-syntax={transfer_syntax}"


def refuse_both(part_type: str | None, transfer_syntax: str | None) -> None:
    """A part type and a transfer syntax each say what to ask for: one of them."""
    if part_type and transfer_syntax:
        raise UsageError(f"give {option('part_type')} or {option('transfer_syntax')}, "
                         "not both")


Target = ResourcePath | RetrieveResult


def _listed(rows: Iterable[dict[str, Any]], search_path: str, tag: str, level: str,
            make: Callable[[str], ResourcePath]) -> Iterator[Target]:
    """Each study or series a search lists; its UID is checked before it becomes a path."""
    listed: set[str] = set()
    for row in rows:
        given = value(row, tag)
        uid = safe_uid(given)
        if uid in listed:
            continue  # one study listed under two patients: its path is fetched once
        if uid is None:
            reason = f"refused unsafe {level} UID {given!r} from the server"
            yield RetrieveResult("failed", search_path, message=reason)
        else:
            listed.add(uid)
            yield make(uid)


def _count(row: dict[str, Any], tag: str) -> int | None:
    """A search row's whole-number attribute (e.g. NumberOfSeriesRelatedInstances), or None."""
    try:
        return int(value(row, tag))
    except (TypeError, ValueError):
        return None


def _study_instances(searcher: Searcher, study: str) -> int | None:
    """The study's NumberOfStudyRelatedInstances from a study search, or None when the
    server does not say (or says two things)."""
    rows = searcher.page("studies", [("StudyInstanceUID", study),
                                     ("includefield", _STUDY_INSTANCES)])
    counts = {_count(row, _STUDY_INSTANCES) for row in rows
              if value(row, "0020000D") == study}
    return counts.pop() if len(counts) == 1 else None


def _by_series(searcher: Searcher, study: ResourcePath) -> list[Target]:
    """A study as its series, so that -m downloads them side by side; the study itself
    when it has one series, the listing is not usable, or the server does not serve an
    instance it lists (a listing made moments after a delete). The split is only a
    speed-up: unless the series' instance counts add up to the study's, a series the
    listing left out would be lost, so the whole study is asked for."""
    from .search import FIRST_PAGE  # loaded with the searcher already

    path = f"studies/{study.study}/series"
    try:
        rows = list(searcher.iter_rows(path, [("includefield", "0020000E"),
                                              ("includefield", _SERIES_INSTANCES)],
                                       first_page=FIRST_PAGE))
        if len(rows) < 2:
            return [study]
        total = _study_instances(searcher, str(study.study))
    except DcmwebError:
        return [study]
    series = list(_listed(rows, path, "0020000E", "series",
                          lambda uid: ResourcePath(study=study.study, series=uid)))
    counts = [_count(row, _SERIES_INSTANCES) for row in rows]
    if (total is None or None in counts or sum(c or 0 for c in counts) != total
            or len(series) < 2 or not all(isinstance(item, ResourcePath) for item in series)):
        log.debug("retrieve %s: the series search does not account for every instance "
                  "of the study; asking for the whole study", study.url_path())
        return [study]
    first = series[0]
    assert isinstance(first, ResourcePath)
    if not _instance_served(searcher, first):
        # Deleted moments ago, still listed (searches lag behind deletes): asked
        # whole, it is not found, as without -m.
        return [study]
    return series


def _instance_served(searcher: Searcher, series: ResourcePath) -> bool:
    """Whether the server serves the first instance a search of the series lists (a
    search of one row, then served.py's check of it; never a retrieve of the study,
    which would make the server start sending all of it). False when that cannot be
    told: the caller then asks for the whole study."""
    from .served import listed_instance, served

    try:
        rows = searcher.page(f"{series.url_path()}/instances",
                             [("limit", "1")])
        instance = listed_instance(series, rows[0]) if rows else None
        return instance is not None and served(searcher.http, searcher.base_url, instance)
    except DcmwebError:
        return False


def _instances(searcher: Searcher, target: ResourcePath) -> Iterator[Target]:
    """Each instance under a study, series or the store, as its own path (found with
    a search); an instance the listing names with unsafe UIDs fails alone."""
    from .preview import instance_paths
    from .search import FIRST_PAGE
    from .served import served_on

    search = partial(searcher.iter_rows, first_page=FIRST_PAGE)
    for item in instance_paths(search, target, "retrieve",
                               served=served_on(searcher.http, searcher.base_url)):
        yield (RetrieveResult("failed", target.url_path() or "instances", message=item)
               if isinstance(item, str) else item)


def listed_items(items: Iterable[T], what: str, failed: Callable[[str], T],
                 searcher: Searcher | None = None) -> Iterator[T]:
    """The items a listing gives (studies, instances), each handed on as it comes. A
    listing that breaks after giving some is one failed item (``failed(message)``) after
    them: what was listed is still fetched and counted (exit 6, not 1). So is one whose
    ``searcher`` met rows that came back on later pages: each took the place of a row
    that may never have been listed. A server that ignores offset, and sent every row it
    holds on each page, has listed everything: a warning. Credentials and outages still
    stop the run; so does a listing that fails before its first row (the run's error, as
    for a single item)."""
    from .search import RepeatedPage  # loaded with the listing's searcher already

    count = 0
    came_back = searcher.came_back if searcher is not None else 0
    try:
        for item in items:
            count += 1
            yield item
        if searcher is not None and searcher.came_back > came_back:
            again = searcher.came_back - came_back
            yield failed(f"the listing may have left out {plural(again, 'item')}: as many "
                         "came back from earlier pages in their place (added while it was "
                         "listed, or the server does not keep its order): a new run would "
                         "retrieve them")
    except RepeatedPage as repeated:
        if not count:
            raise
        if repeated.whole:
            log.warning("%s: the server ignores 'offset' and lists everything on every page; "
                        "each of the %d items it listed was asked for once", what, count)
            return
        yield failed(f"the listing stopped after {count} items: {repeated.message}; the "
                     "server ignores 'offset' or pages in circles: it may hold more")
    except (NotFoundError, ServerError) as error:
        if not count:
            raise
        yield failed(f"the listing stopped after {count} items: {error.message}")


def iter_retrieve(http: Http, base_url: str, path: str | None, output: str | os.PathLike[str],
                  *, part_type: str | None = None, workers: int = 1, single_part: bool = False
                  ) -> Iterator[RetrieveResult]:
    """Retrieve a path (or, with no path, the whole store); yield one result per file.

    With several workers the store is fetched study by study and a study series by
    series, in parallel. A part type other than DICOM is asked for instance by instance
    (see :func:`per_instance`), in parallel with several workers.
    """
    target = parse_resource_path(path, allow_frames=True)
    check_request(target, part_type, single_part)
    downloader = Downloader(http, base_url, Path(output), part_type, single_part)
    targets = dicom_targets(http, base_url, target, part_type, split=workers > 1)
    # Several items come from a listing (the store's studies, a study's series, ...).
    several = not isinstance(targets, list) or len(targets) > 1
    tally = Tally()
    yield from run_items(partial(fetch_item, downloader, several=several, listed=several),
                         tally.each(targets, unit_of), workers, downloader.saver, tally)


def dicom_targets(http: Http, base_url: str, target: ResourcePath, part_type: str | None,
                  *, split: bool) -> Iterable[Target]:
    """What is asked for to retrieve ``target``: itself, each study of the store, each
    instance (a part type other than DICOM), or (``split``) each series of a study."""
    by_instance = target.level in ("store", "study", "series") and per_instance(part_type)
    if not (by_instance or target.level == "store" or (target.level == "study" and split)):
        return [target]
    from .search import FIRST_PAGE, Searcher  # a listing only: one study starts sooner

    searcher = Searcher(http, base_url)
    if not (by_instance or target.level == "store"):
        return _by_series(searcher, target)
    listing = target.url_path() or ("instances" if by_instance else "studies")
    return listed_items(
        _instances(searcher, target) if by_instance else _listed(
            searcher.iter_rows("studies", [("includefield", "0020000D")],
                               first_page=FIRST_PAGE),
            "studies", "0020000D", "study", lambda uid: ResourcePath(study=uid)),
        f"retrieve {listing}",
        lambda message: RetrieveResult("failed", listing, message=message), searcher)


def fetch_item(downloader: Downloader, item: Target, named: Named | None = None, *,
               several: bool, listed: bool = False) -> Iterator[RetrieveResult]:
    """The files of one study, series or instance (or a listing's failure, as it is).
    ``listed``: a search named the item, not the user; answered 404 and gone from the
    server (see :func:`_gone`), it is ``gone``, not failed."""
    if isinstance(item, RetrieveResult):
        yield item
        return
    saved = False
    try:
        for result in downloader.fetch(item, named):
            saved = saved or result.status == "saved"
            yield result
    except (NotFoundError, ServerError) as error:
        if not (several or saved):
            raise
        if (listed and not saved and isinstance(error, NotFoundError)
                and _gone(downloader.http, downloader.base_url, item)):
            yield RetrieveResult("gone", item.url_path(), message=GONE_SINCE_LISTED)
            return
        # One study or series of many (answered badly, or 404 while the server serves
        # it), or the rest of one whose files are saved already, fails on its own;
        # credentials and outages still stop the run.
        yield RetrieveResult("failed", item.url_path(), message=wado.item_message(
            error, f"retrieve {item.url_path()}"))


GONE_SINCE_LISTED = ("gone since it was listed (the search listed it, but the server no "
                     f"longer holds it: deleted moments ago; {GONE})")


def _gone(http: Http, base_url: str, item: ResourcePath) -> bool:
    """Whether a study, series or instance a listing named, whose retrieve answered 404,
    is gone from the server: a search finds no instance under it, or the first one it
    lists is not served, nor the item (served.py; Google's searches list a deleted
    instance for a few seconds). A 404 alone proves nothing: False when the server
    serves it, or when nothing tells (the check fails)."""
    from .preview import instances_under
    from .search import Searcher

    rows = instances_under(partial(Searcher(http, base_url).iter_rows, first_page=1), item,
                           "retrieve", served=served_on(http, base_url))
    try:
        next(rows, None)  # the check comes before the first row
    except NotFoundError as error:
        return error.status is None  # the check's word, not a 404 to the search itself
    except DcmwebError:
        return False
    return False


def unit_of(item: ResourcePath | WadoPath | RetrieveResult) -> str | None:
    """What an item of a run is, as a stopped run counts it: a study, series or instance,
    a rendered instance or frame; None for a listing's failure, a result already."""
    if isinstance(item, RetrieveResult):
        return None
    if isinstance(item, ResourcePath):
        return item.level
    return "frame" if item.frames else "instance"


def run_items(results_of: Callable[[T, Named | None], Iterable[RetrieveResult]],
              items: Iterable[Taken[T]], workers: int, saver: Saver, tally: Tally,
              *, overlap: bool = False) -> Iterator[RetrieveResult]:
    """The results of every item, ``workers`` items at a time (one pool, however many
    paths the items come from); each file as soon as it is saved, not when its item is
    done. ``results_of(item, named)`` tells ``named`` of each file the moment it is
    named: a run that stops reports those too. ``tally`` follows the items (taken from
    it): a DcmwebError or a KeyboardInterrupt (Ctrl-C, SIGTERM) that stops the run
    carries what it left undone (``leftover``). ``overlap``: items may hold the same
    file (paths given by the user: a study and one of its instances, a path twice); a
    file saved again is reported once, as it is on disk once."""
    # The files the threads have named and the caller has not had yet, by path: when the
    # run stops, they are reported too.
    unreported: dict[Path | None, RetrieveResult] = {}
    # The files reported (with overlap), by a 64-bit digest of the name, as inputs.py
    # keeps the files of a store's lists: less memory than the names.
    reported: set[int] = set()

    def key_of(result: RetrieveResult) -> int | None:
        """What tells a file saved again (with overlap), or None."""
        if not overlap or result.status != "saved" or result.path is None:
            return None
        return hash(os.fspath(result.path))

    def again(result: RetrieveResult, key: int | None) -> bool:
        if key is None or key not in reported:
            return False
        log.debug("%s saved %s again (another path of the run holds it too); counted once",
                  result.source, result.path)
        return True

    def first_time(results: Iterable[RetrieveResult]) -> Iterator[RetrieveResult]:
        for result in results:
            key = key_of(result)  # before the file leaves unreported: a stop may come
            repeated = again(result, key)
            unreported.pop(result.path, None)
            if repeated:
                continue
            if key is not None:
                reported.add(key)
            yield result

    def named(result: RetrieveResult) -> None:
        unreported[result.path] = result

    def tallied(taken: Taken[T], named: Named | None) -> Iterator[RetrieveResult]:
        tally.begin(taken)
        yield from results_of(taken.item, named)
        tally.finish(taken)

    try:
        # One worker names files too: an item may name several before it yields them
        # (the frames of one answer), and a stop between them must not lose those.
        yield from first_time(
            (result for taken in items for result in tallied(taken, named)) if workers <= 1
            else run_bounded_streams(lambda taken: tallied(taken, named), items, workers))
    except GeneratorExit:
        # The caller left its loop: nothing more is written, and no half file is left
        # (the threads' requests in flight may finish; what they fetch is not kept).
        saver.discard_partial()
        raise
    except BaseException as stop:
        # Stopped (an error, or Ctrl-C here or in the caller, who then hands it in with
        # throw()): no file gets its final name from now on, and every file that has one
        # is reported: those the threads named and the caller has not had.
        saver.discard_partial()
        if isinstance(stop, DcmwebError):
            # A local write error leaves the server answering: the rest of a listing
            # is read to count what was never asked for.
            stop.leftover = tally.left(count_rest=isinstance(stop, LocalFileError))
        elif isinstance(stop, KeyboardInterrupt):  # never waits on the listing's rest
            stop.leftover = tally.left()  # type: ignore[attr-defined]  # as error.leftover
        yield from [result for result in list(unreported.values())
                    if not again(result, key_of(result))]
        raise
