"""QIDO-RS: build the query, then page through every result.

Servers cut results silently (GCP returns 100 studies or 1,000 series/instances
when no limit is given; a PACS may cap pages lower than asked). So unless the user
gave a limit, dcmweb asks for the largest page the server allows and keeps asking
until a page comes back empty: a short page alone may be a cap, not the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from .errors import ServerError, UsageError
from .http import Http
from .paths import parse_search_path

# GCP's caps; larger pages mean fewer round trips on servers without caps too.
PAGE_SIZES = {"studies": 5000, "series": 5000, "instances": 50000}

Params = list[tuple[str, str]]
# Wildcards, UID lists and the person-name separator travel unescaped: Orthanc's plugin
# does not percent-decode, so PatientName=Sally%2A or DOE%5EJOHN finds nothing where
# Sally* or DOE^JOHN matches (requests escapes '^' anyway: see rawquery.py).
_QUERY_SAFE = "*?,^"


def parse_params(words: Iterable[str]) -> Params:
    """Query words, each a query string (``a=1&b=2``, as the old tool took) or ``KEY=VALUE``."""
    params: Params = []
    for word in words:
        if "=" not in word:
            raise UsageError(f"invalid search parameter {word!r}", "write KEY=VALUE")
        params.extend(parse_qsl(word.lstrip("?"), keep_blank_values=True))
    return params


def _int_param(params: Params, key: str) -> int | None:
    for name, value in params:
        if name.lower() == key:
            try:
                return int(value)
            except ValueError:
                raise UsageError(f"{key} must be a whole number, not {value!r}") from None
    return None


def _row_key(row: Any) -> Any:
    return json.dumps(row, sort_keys=True) if isinstance(row, dict) else row


class Searcher:
    def __init__(self, http: Http, base_url: str) -> None:
        self.http = http
        self.base_url = base_url

    def page(self, url_path: str, params: Params) -> list[dict[str, Any]]:
        query = urlencode(params, safe=_QUERY_SAFE, quote_via=quote)
        # The query is part of the URL (not params=) so that -v logs the whole request line.
        response = self.http.request(
            "GET", f"{self.base_url}/{url_path}" + (f"?{query}" if query else ""),
            what=f"search {url_path}", headers={"Accept": "application/dicom+json"},
        )
        with response:
            if response.status_code == 204 or not response.content.strip():
                return []
            try:
                rows = response.json()
            except ValueError:
                raise ServerError(f"search {url_path}: the server's answer is not JSON") from None
        if not isinstance(rows, list):
            kind = type(rows).__name__
            raise ServerError(f"search {url_path}: expected a JSON array, got {kind}")
        return rows

    def iter_rows(self, path: str | None = "studies", params: Params | None = None,
                  page_size: int | None = None) -> Iterator[dict[str, Any]]:
        url_path, level = parse_search_path(path)
        params = list(params or [])
        if _int_param(params, "limit") is not None:
            yield from self.page(url_path, params)  # the user asked for exactly this page
            return
        offset = _int_param(params, "offset") or 0
        rest = [(k, v) for k, v in params if k.lower() != "offset"]
        size = page_size or PAGE_SIZES[level]

        def fetch(at: int) -> list[dict[str, Any]]:
            return self.page(url_path, [*rest, ("limit", str(size)), ("offset", str(at))])

        previous_first = None
        # One page is fetched ahead while the caller handles the current one: writing
        # pretty JSON costs about as much as the server's answer, so the two overlap.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcmweb-search") as ahead:
            upcoming = ahead.submit(fetch, offset)
            while True:
                rows = upcoming.result()
                if not rows:
                    return
                # A server that ignores offset would repeat page one forever.
                first = _row_key(rows[0])
                if first == previous_first:
                    raise ServerError(f"search {url_path}: the server ignores 'offset' "
                                      "(the same page came back twice); add a limit")
                previous_first = first
                offset += len(rows)
                upcoming = ahead.submit(fetch, offset)
                yield from rows
