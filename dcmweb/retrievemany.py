"""Several retrieve paths in one run: every item of every path through one bounded pool.

A list of instances (from a search, a CSV, another system) is fetched by one process
instead of one process per path. Each path becomes its items as the pool takes them (an
instance, a study, each instance of a series to render, a list of frames), so the run
starts at once and holds only the items in flight. Files are named as a retrieve of each
path alone names them; a path that fails (not found, a bad answer) is one failed item
and the others are still fetched.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import NameTaken, NotFoundError, ServerError, UsageError
from .frames import frame_type, save_frames
from .http import Http
from .leftover import Taken, Tally
from .optionnames import option
from .pathlist import PathList
from .paths import ResourcePath
from .record import record
from .rendered import Renderer, RenderOptions
from .retrieve import (
    Downloader,
    Named,
    RetrieveResult,
    check_request,
    dicom_part_type,
    dicom_targets,
    fetch_item,
    run_items,
)
from .wado import item_message
from .wadopath import WadoPath, parse_wado_path


@record(frozen=True)
class Listed:
    """A study, series or instance that a listing named, not the user (the instances of
    a study asked for one by one): answered 404 and no longer on the server, it is
    ``gone``, as in a retrieve of that one path (see :func:`fetch_item`)."""

    resource: ResourcePath


Item = ResourcePath | Listed | WadoPath | RetrieveResult


@record(frozen=True)
class ManyOptions:
    part_type: str | None = None  # as --type gives it
    transfer_syntax: str | None = None
    single_part: bool = False
    render: RenderOptions | None = None


def check_paths(paths: PathList, options: ManyOptions) -> None:
    """The usage errors of a run of several paths, found before any request."""
    if options.render is not None and "rendered" not in paths.kinds:
        raise UsageError("rendering options apply to .../rendered paths",
                         "none of the paths ends in /rendered")
    if options.single_part and (paths.kinds != {"dicom"} or paths.levels != {"instance"}):
        raise UsageError(f"{option('single_part')} retrieves instances",
                         "give only paths studies/S/series/R/instances/I")
    if "dicom" in paths.kinds:
        check_request(ResourcePath(), dicom_type(options), False)
    if "frames" in paths.kinds:
        frame_type(options.part_type, options.transfer_syntax)


def dicom_type(options: ManyOptions) -> str | None:
    return dicom_part_type(options.part_type, options.transfer_syntax)


def iter_retrieve_many(http: Http, base_url: str, paths: PathList, output: Path,
                       options: ManyOptions, workers: int = 1) -> Iterator[RetrieveResult]:
    """Retrieve every path of ``paths`` (checked whole: see :class:`PathList`; the
    options by :func:`check_paths`, before the first request), up to ``workers`` items
    at a time across all of them; one result per file, or per item that failed."""
    part_type = dicom_type(options)
    downloader = Downloader(http, base_url, output, part_type, options.single_part)
    saver = downloader.saver  # one for the run: a stop discards every partial file
    renderer = Renderer(http, base_url, output, options.render or RenderOptions(), saver) \
        if "rendered" in paths.kinds else None

    # A stopped run counts what it left in paths, the unit of the list it was given.
    tally = Tally()
    tally.expect(len(paths), "path")

    def items() -> Iterator[Taken[Item]]:
        for path in paths:
            group = tally.group("path")
            target = parse_wado_path(path)
            try:
                # A study is one item: the list is what runs in parallel.
                targets = (renderer.targets(target) if renderer and target.kind == "rendered"
                           else dicom_targets(http, base_url, target.resource, part_type,
                                              split=False)
                           if target.kind == "dicom" else [target])
                for item in targets:
                    # A study or instance other than the path itself: a search named it.
                    yield tally.take(Listed(item) if isinstance(item, ResourcePath)
                                     and item != target.resource else item, group)
            except (NotFoundError, ServerError) as error:
                # A listing (the instances of a series to render) that fails before its
                # first row: that path fails, the others go on.
                what = ("render " if target.kind == "rendered" else "retrieve ") + (
                    target.resource.url_path())
                yield tally.take(RetrieveResult("failed", target.url_path(),
                                                message=item_message(error, what)), group)
            tally.close(group)

    def results_of(item: Item, named: Named | None) -> Iterable[RetrieveResult]:
        if isinstance(item, Listed):
            return fetch_item(downloader, item.resource, named, several=True, listed=True)
        if not isinstance(item, WadoPath):
            return fetch_item(downloader, item, named, several=True)
        if item.kind == "rendered":
            assert renderer is not None  # made when a path is rendered
            return renderer.one(item, named=named)
        return _frames(http, base_url, item, output, options, downloader, named)

    yield from run_items(results_of, items(), workers, saver, tally, overlap=True)


def _frames(http: Http, base_url: str, target: WadoPath, output: Path,
            options: ManyOptions, downloader: Downloader, named: Named | None
            ) -> Iterator[RetrieveResult]:
    """One path's frames; its failure is one failed item."""
    try:
        yield from save_frames(http, base_url, target.url_path(), output, options.part_type,
                               options.transfer_syntax, saver=downloader.saver, named=named)
    except (NotFoundError, ServerError, NameTaken) as error:  # NameTaken: a file in the way
        yield RetrieveResult("failed", target.url_path(), message=item_message(
            error, f"retrieve {target.url_path()}"))
