"""What a delete or a retrieve would touch, found by a search (for --dry-run and for the
question a delete asks on a terminal). A dry run ends as its real run would: what the
real run would refuse is told as a failure, and a path with nothing under it is not found."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NotFoundError
from .paths import ResourcePath, parse_resource_path
from .record import record
from .rows import value

if TYPE_CHECKING:
    from .client import Client

_UID_TAGS = ("0020000D", "0020000E", "00080018")


def instances_under(client: Client, target: ResourcePath, what: str
                    ) -> Iterator[dict[str, Any]]:
    """The search rows of every instance under a study, series or instance (or the whole
    store: its caller decides whether ``what`` may take it). A path under which the search
    finds none raises NotFoundError once the rows are read: the real ``what`` (delete,
    retrieve) gets a 404."""
    if target.level == "store":
        yield from client.iter_search("instances")
        return
    series = f"studies/{target.study}/series/{target.series}/instances"
    rows = (client.iter_search(f"studies/{target.study}/instances") if target.level == "study"
            else client.iter_search(series) if target.level == "series"
            else client.iter_search(series, [("SOPInstanceUID", target.instance or "")]))
    found = False
    for row in rows:
        found = True
        yield row
    if not found:
        raise NotFoundError(f"{what} {target.url_path()}: not found (a search finds no "
                            "instance under it)", "check the HOST URL and the UIDs in the path")


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
    written. The options are checked as the real run checks them."""
    from .retrieve import check_request, dicom_part_type, dicom_path
    from .saving import check_output_folder, name_taken

    target = parse_resource_path(path)
    check_request(target, dicom_part_type(part_type, transfer_syntax), single_part)
    check_output_folder(Path(output))
    listed: set[Path] = set()
    for row in instances_under(client, target, "retrieve"):
        uids = tuple(value(row, tag) for tag in _UID_TAGS)
        final = dicom_path(Path(output), target, uids)
        if isinstance(final, str):
            yield final
            continue
        if final in listed:
            continue  # listed twice: the real run saves it once
        listed.add(final)
        taken = name_taken(final)
        yield taken.headline if taken else PlannedFile(final, os.path.lexists(final))
