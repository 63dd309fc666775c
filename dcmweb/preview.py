"""What a delete or a retrieve would touch, found by a search (for --dry-run and for the
question a delete asks on a terminal). A dry run ends as its real run would: what the
real run would refuse is told as a failure, and a path with nothing under it is not found."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NotFoundError, ServerError
from .paths import ResourcePath, parse_resource_path, safe_uid
from .record import record
from .rows import value
from .search import Params
from .served import GONE, listed_instance, served_on

if TYPE_CHECKING:
    from .client import Client

_UID_TAGS = ("0020000D", "0020000E", "00080018")
Row = dict[str, Any]
# A search: (path, params) to rows, as Client.iter_search and Searcher.iter_rows take them.
Search = Callable[[str, Params], Iterable[Row]]
# Whether the server serves an instance (and, when it is gone, the path whose listing
# named it): served.served_on(http, base_url).
Served = Callable[[ResourcePath, ResourcePath | None], bool]


def instances_under(search: Search, target: ResourcePath, what: str, *,
                    served: Served | None) -> Iterator[Row]:
    """The search rows of every instance under a study, series or instance (or the whole
    store: its caller decides whether ``what`` may take it). A path under which the search
    finds none raises NotFoundError once the rows are read: the real ``what`` (delete,
    retrieve, render) gets a 404. So does one whose first listed instance the server does
    not serve, nor the path itself (``served``, asked before any row is given): searches
    lag behind deletes (Google: a deleted instance still shows in searches for a few
    seconds)."""
    found = False
    check = served if target.level != "store" else None
    held: list[Row] = []  # rows before the first that names an instance (rare: none)
    for row in _instance_rows(search, target):
        found = True
        held.append(row)
        if check is not None:
            instance = listed_instance(target, row)
            if instance is None:
                continue
            if not check(instance, target):
                raise NotFoundError(f"{what} {target.url_path()}: not found (a search still "
                                    f"lists instances under it, but a retrieve of it answers "
                                    f"404: deleted moments ago; {GONE})",
                                    "check the HOST URL and the UIDs in the path")
            check = None
        yield from held
        held.clear()
    yield from held  # no row named an instance: the search's word stands
    if not found and target.level != "store":
        raise NotFoundError(f"{what} {target.url_path()}: not found (a search finds no "
                            "instance under it)", "check the HOST URL and the UIDs in the path")


def _instance_rows(search: Search, target: ResourcePath) -> Iterator[Row]:
    series = f"studies/{target.study}/series/{target.series}/instances"
    if target.level == "series":
        yield from search(series, [])
    elif target.level == "instance":
        yield from search(series, [("SOPInstanceUID", target.instance or "")])
    else:
        yield from _above_series(search, target)


def _above_series(search: Search, target: ResourcePath) -> Iterator[Row]:
    """Every instance of a study (or of the store). A server without an instance search
    above a series (tiny-pacs answers 404) is walked as the real retrieve walks it: its
    studies, their series, then each series' instances."""
    rows = iter(search("instances" if target.level == "store"
                       else f"studies/{target.study}/instances", []))
    try:
        first = next(rows, None)
    except NotFoundError:
        studies = [target.study] if target.study else _uids(search("studies", []), "study")
        for study in studies:
            for series in _uids(search(f"studies/{study}/series", []), "series"):
                yield from search(f"studies/{study}/series/{series}/instances", [])
        return
    if first is not None:
        yield first
        yield from rows


def instance_paths(search: Search, target: ResourcePath, what: str, *,
                   served: Served | None) -> Iterator[ResourcePath | str]:
    """Each instance under ``target`` as its own path (each once; the UIDs ``target``
    names, the others from the search rows), or why a listed one cannot be asked for
    (UIDs that cannot be part of a path or name a folder). Not found as
    :func:`instances_under` is."""
    listed: set[ResourcePath] = set()
    for row in instances_under(search, target, what, served=served):
        given = (target.study or value(row, "0020000D"), target.series or value(row, "0020000E"),
                 value(row, "00080018"))
        study, series, sop = (safe_uid(uid) for uid in given)
        if not (study and series and sop):
            shown = ", ".join(repr(uid) for uid in given)
            yield f"refused unsafe UIDs from the server ({shown})"
            continue
        path = ResourcePath(study, series, sop)
        if path not in listed:  # listed twice (Orthanc: once per patient): asked for once
            listed.add(path)
            yield path


def _uids(rows: Iterable[Row], level: str) -> Iterator[str]:
    """The study or series UIDs of a listing, each once (Orthanc lists a study once per
    patient); one that cannot be part of a search path stops the listing."""
    tag = "0020000D" if level == "study" else "0020000E"
    listed: set[str] = set()
    for row in rows:
        uid = safe_uid(value(row, tag))
        if uid is None:
            raise ServerError(f"the server listed a {level} with an unsafe UID "
                              f"{value(row, tag)!r}")
        if uid not in listed:
            listed.add(uid)
            yield uid


@record(frozen=True)
class PlannedFile:
    """A file a retrieve would write."""

    path: Path
    replaces: bool = False  # a file of that name exists: the real run replaces it


def files_under(client: Client, path: str | None, output: str | os.PathLike[str], *,
                part_type: str | None = None, transfer_syntax: str | None = None,
                single_part: bool = False) -> Iterator[PlannedFile | str]:
    """Each file retrieve would write for the instances under ``path``
    (OUTPUT/STUDY/SERIES/SOP.dcm, from a search, each once), or why the real run would
    fail it (unsafe UIDs, an instance of another study, a folder at its name); nothing is
    written. The options are checked as the real run checks them. For a part type other
    than DICOM each instance is listed by its first part's file, SOP_frame_1.png: how
    many parts it gets is the server's answer to tell."""
    from .multipart import parse_content_type
    from .partcheck import dicom_path
    from .retrieve import check_request, dicom_part_type, per_instance
    from .saving import check_output_folder
    from .wado import instance_file

    target = parse_resource_path(path)
    part_type = dicom_part_type(part_type, transfer_syntax)
    check_request(target, part_type, single_part)
    check_output_folder(Path(output))
    if per_instance(part_type):
        mime, _ = parse_content_type(part_type or "")
        for item in instance_paths(client.iter_search, target, "retrieve",
                                   served=served_on(client.http, client.base_url)):
            yield item if isinstance(item, str) else _planned(
                instance_file(Path(output), item, "_frame_1", mime))
        return
    listed: set[Path] = set()
    for row in instances_under(client.iter_search, target, "retrieve",
                               served=served_on(client.http, client.base_url)):
        uids = tuple(value(row, tag) for tag in _UID_TAGS)
        final = dicom_path(Path(output), target, uids)
        if isinstance(final, str):
            yield final
            continue
        if final in listed:
            continue  # listed twice: the real run saves it once
        listed.add(final)
        yield _planned(final)


def files_under_each(client: Client, paths: Iterable[str | None],
                     output: str | os.PathLike[str], *, part_type: str | None = None,
                     transfer_syntax: str | None = None, single_part: bool = False
                     ) -> Iterator[tuple[str | None, PlannedFile | str]]:
    """(path, what :func:`files_under` gives) for each path. Several paths (a
    :class:`~dcmweb.pathlist.PathList`, checked whole first) end as their real run
    would: a path not found, or whose search fails, is one failure and the others go on."""
    from .pathlist import PathList
    from .retrievemany import ManyOptions, check_paths
    from .wado import item_message

    several = isinstance(paths, PathList) and len(paths) > 1
    if several:
        assert isinstance(paths, PathList)
        check_paths(paths, ManyOptions(part_type, transfer_syntax, single_part))
    listed: set[Path] = set()  # a file two paths hold is listed once, as the run counts it
    for path in paths:
        try:
            for item in files_under(client, path, output, part_type=part_type,
                                    transfer_syntax=transfer_syntax, single_part=single_part):
                if isinstance(item, PlannedFile):
                    if item.path in listed:
                        continue
                    listed.add(item.path)
                yield path, item
        except (NotFoundError, ServerError) as error:
            if not several:
                raise
            what = f"retrieve {parse_resource_path(path).url_path()}"
            yield path, item_message(error, what)


def _planned(final: Path) -> PlannedFile | str:
    """The file a real run would write there, or why it would fail (a folder at its name)."""
    from .saving import name_taken

    taken = name_taken(final)
    return taken.headline if taken else PlannedFile(final, os.path.lexists(final))
