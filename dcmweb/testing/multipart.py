"""Media type parsing and a streaming multipart/related splitter.

The splitter reads the request body from its temp file in 64 KiB chunks and writes
each part to its own temp file, hashing as it goes, so memory stays flat whatever
the size of the upload.

It is deliberately not dcmweb.multipart: the test server is the client's oracle, and
a parser shared by both would let one bug hide on both sides of every test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 64 * 1024
_MAX_HEADERS = 64 * 1024


class MultipartError(ValueError):
    """The body is not a well-formed multipart message."""


def parse_media_type(value: str | None) -> tuple[str, dict[str, str]]:
    """'multipart/related; type="application/dicom"' -> ('multipart/related', {...}).

    Type and parameter names are lowercased; quoted values are unquoted.
    """
    if not value:
        return "", {}
    pieces = _split_params(value)
    media = pieces[0].strip().lower()
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        name, sep, val = piece.partition("=")
        if not sep:
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1].replace('\\"', '"')
        params[name.strip().lower()] = val
    return media, params


def split_media_ranges(value: str | None) -> list[tuple[str, dict[str, str]]]:
    """Parse an Accept header into (media type, params) pairs, in the order given."""
    if not value:
        return []
    ranges = []
    for item in _split_outside_quotes(value, ","):
        if item.strip():
            ranges.append(parse_media_type(item))
    return ranges


def _split_params(value: str) -> list[str]:
    return _split_outside_quotes(value, ";")


def _split_outside_quotes(value: str, sep: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return out


@dataclass
class Part:
    headers: dict[str, str]  # lowercased names
    path: Path
    size: int
    sha256: str


class _HashingSink:
    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if data:
            self.fh.write(data)
            self.hash.update(data)
            self.size += len(data)


class _Scanner:
    """Buffered reader that can copy bytes up to a delimiter into a sink."""

    def __init__(self, src: BinaryIO, prefix: bytes = b"") -> None:
        self.src = src
        self.buf = prefix
        self.eof = False

    def _fill(self) -> None:
        chunk = self.src.read(CHUNK)
        if chunk:
            self.buf += chunk
        else:
            self.eof = True

    def copy_until(
        self, delim: bytes, sink: Callable[[bytes], None] | None, limit: int | None = None
    ) -> bool:
        """Consume up to and including delim, passing the bytes before it to sink.

        Returns False at end of input without finding delim.
        """
        keep = len(delim) - 1
        passed = 0
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                if sink is not None:
                    sink(self.buf[:i])
                self.buf = self.buf[i + len(delim) :]
                return True
            if self.eof:
                if sink is not None:
                    sink(self.buf)
                self.buf = b""
                return False
            if len(self.buf) > keep:
                # Everything except a possible partial delimiter at the end is safe.
                cut = len(self.buf) - keep
                if sink is not None:
                    sink(self.buf[:cut])
                passed += cut
                self.buf = self.buf[cut:]
                if limit is not None and passed > limit:
                    raise MultipartError("part headers too long")
            self._fill()

    def startswith(self, data: bytes) -> bool:
        while len(self.buf) < len(data) and not self.eof:
            self._fill()
        return self.buf.startswith(data)


def iter_parts(src: BinaryIO, boundary: str, new_temp: Callable[[], Path]) -> Iterator[Part]:
    """Yield each part of a multipart body, written to its own temp file.

    The caller owns (and must remove or move) each yielded part file. Raises
    MultipartError when the body is malformed, after the well-formed parts so far.
    """
    if not boundary or len(boundary) > 200:
        raise MultipartError("missing or invalid multipart boundary")
    # A leading CRLF lets a boundary on the very first line match like any other.
    scanner = _Scanner(src, prefix=b"\r\n")
    delim = b"\r\n--" + boundary.encode("latin-1")
    if not scanner.copy_until(delim, None):  # skip the preamble
        raise MultipartError("multipart boundary not found in body")
    while True:
        line: list[bytes] = []
        if not scanner.copy_until(b"\r\n", line.append, limit=1024):
            # "--boundary--" may end the body without a final CRLF.
            if b"".join(line).startswith(b"--"):
                return
            raise MultipartError("multipart body ends without closing boundary")
        if b"".join(line).startswith(b"--"):
            return  # closing delimiter; anything after it is the epilogue
        headers = _read_headers(scanner)
        path = new_temp()
        try:
            with open(path, "wb") as fh:
                sink = _HashingSink(fh)
                found = scanner.copy_until(delim, sink.write)
            if not found:
                raise MultipartError("multipart body ends inside a part")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        yield Part(headers, path, sink.size, sink.hash.hexdigest())


def _read_headers(scanner: _Scanner) -> dict[str, str]:
    if scanner.startswith(b"\r\n"):  # a part without headers
        scanner.buf = scanner.buf[2:]
        return {}
    raw: list[bytes] = []
    if not scanner.copy_until(b"\r\n\r\n", raw.append, limit=_MAX_HEADERS):
        raise MultipartError("multipart part headers are not terminated")
    headers: dict[str, str] = {}
    for line in b"".join(raw).decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def choose(accept: str | None, offers: list[str]) -> tuple[str, dict[str, str]] | None:
    """The first offer the Accept header allows, in the client's order of ranges.

    Offers are media types, multipart ones written "multipart/related; type=X". No
    Accept header, or a wildcard range, picks the first offer. Returns (offer, the
    matching range's parameters), or None when nothing offered is acceptable.
    """
    ranges = split_media_ranges(accept) or [("*/*", {})]
    parsed = [(offer, *parse_media_type(offer)) for offer in offers]
    for media, params in ranges:
        for offer, offer_media, offer_params in parsed:
            if _media_matches(media, offer_media) and (
                "type" not in params
                or offer_params.get("type", "").lower() == params["type"].lower()
                or params["type"] == "*/*"
            ):
                return offer, params
    return None


def _media_matches(wanted: str, offered: str) -> bool:
    if wanted in ("*/*", offered):
        return True
    return wanted.endswith("/*") and offered.startswith(wanted[:-1])
