"""Search parameters as a caller may give them: a dict, a list of pairs, or a query string."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import UsageError

# {"PatientID": "P005", "includefield": ["00081030", "00080060"]},
# [("PatientID", "P005")], or "PatientID=P005&limit=10"
ParamsLike = Mapping[str, Any] | Iterable[tuple[str, Any]] | str | None


def to_pairs(params: ParamsLike) -> list[tuple[str, str]]:
    """The (key, value) pairs to send; a list or tuple value in a dict repeats its key."""
    if params is None:
        return []
    if isinstance(params, str):
        from .search import parse_params

        return parse_params([params]) if params.strip() else []
    if isinstance(params, Mapping):
        pairs = []
        for key, item in params.items():
            for one in item if isinstance(item, (list, tuple)) else [item]:
                pairs.append((str(key), _text(key, one)))
        return pairs
    if isinstance(params, (bytes, bytearray)) or not isinstance(params, Iterable):
        raise UsageError(f"search params must be {_SHAPES}, not {params!r}")
    pairs = []
    for pair in params:
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise UsageError(f"search params must be {_SHAPES}; got the item {pair!r}")
        pairs.append((str(pair[0]), _text(pair[0], pair[1])))
    return pairs


_SHAPES = "a dict, a list of (key, value) pairs or a query string"


def _text(key: object, value: Any) -> str:
    if value is None:  # sent as the text 'None' it matched nothing; left out, everything
        raise UsageError(f"search parameter {str(key)!r} is None",
                         "leave the key out to match any value")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
