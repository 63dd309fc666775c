"""What a delete or a retrieve would touch, found by a search (for --dry-run and for the
question a delete asks on a terminal)."""

from __future__ import annotations

from collections.abc import Iterator
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
