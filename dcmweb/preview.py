"""What a delete or a retrieve would touch, found by a search (for --dry-run and for the
question a delete asks on a terminal)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .paths import parse_resource_path

if TYPE_CHECKING:
    from .client import Client

def instances_under(client: Client, path: str | None) -> Iterator[dict[str, Any]]:
    """The search rows of every instance under a study, series or instance path (or the
    whole store when ``path`` is empty)."""
    target = parse_resource_path(path)
    if target.level == "store":
        return client.iter_search("instances")
    if target.level == "study":
        return client.iter_search(f"studies/{target.study}/instances")
    series = f"studies/{target.study}/series/{target.series}/instances"
    if target.level == "series":
        return client.iter_search(series)
    return client.iter_search(series, [("SOPInstanceUID", target.instance or "")])


def files_under(client: Client, path: str | None, output: str | os.PathLike[str]
                ) -> Iterator[Path | str]:
    """Where retrieve would write each instance under ``path`` (OUTPUT/STUDY/SERIES/SOP.dcm,
    from a search), or why its UIDs could not name a file; nothing is written."""
    from .retrieve import dicom_file

    for row in instances_under(client, path):
        uids = [((row.get(tag) or {}).get("Value") or [None])[0]
                for tag in ("0020000D", "0020000E", "00080018")]
        yield dicom_file(Path(output), *uids)
