"""Reading answer bodies with bounds: a minimum transfer rate, a size limit, JSON limits.

A server that trickles one byte every two seconds is never cut off by a read
timeout (each read gets a byte in time), so every body read here also checks the
transfer rate, like curl's --speed-limit/--speed-time: fewer than ``limit`` bytes
per second over ``seconds`` seconds ends the transfer.

``iter_body`` reads with ``read1`` (whatever the socket has, up to the chunk size):
requests' ``iter_content`` waits for a full chunk, so a trickle would never be seen.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions

from .errors import ServerError, UnavailableError

CHUNK = 64 * 1024
_REQUIRED = object()


@dataclass(frozen=True)
class LowSpeed:
    """Cut a transfer slower than ``limit`` bytes/s for ``seconds`` seconds (0: never)."""

    limit: float = 1024.0
    seconds: float = 120.0


class TooSlowError(UnavailableError):
    """The server sent the body slower than the low-speed limit."""


# The limit each response is read with, set by Http.request: whoever reads the body
# (store, retrieve, search) gets it without passing it around.
_LIMITS: weakref.WeakKeyDictionary[requests.Response, LowSpeed] = weakref.WeakKeyDictionary()


def set_low_speed(response: requests.Response, limit: LowSpeed) -> None:
    """Read this response with ``limit``; its ``iter_content`` becomes :func:`iter_body`,
    so every caller that streams (retrieve, multipart parsing) is guarded too."""
    _LIMITS[response] = limit
    plain = response.iter_content

    def iter_content(chunk_size: int | None = 1, decode_unicode: bool = False) -> Iterator[Any]:
        if decode_unicode:
            return plain(chunk_size, decode_unicode)
        return iter_body(response, chunk_size or CHUNK)

    setattr(response, "iter_content", iter_content)  # noqa: B010


class _Meter:
    def __init__(self, limit: LowSpeed) -> None:
        self.limit = limit
        self.window_start = time.monotonic()
        self.window_bytes = 0

    def add(self, count: int) -> None:
        if not self.limit.limit or not self.limit.seconds:
            return
        self.window_bytes += count
        now = time.monotonic()
        elapsed = now - self.window_start
        if elapsed < self.limit.seconds:
            return
        if self.window_bytes / elapsed < self.limit.limit:
            raise TooSlowError(
                f"the server sent {self.window_bytes} bytes in {elapsed:.0f} s, below the"
                f" low-speed limit of {self.limit.limit:g} bytes/s",
                "the server or the network is stalling; see --low-speed-limit and"
                " --low-speed-time",
            )
        self.window_start, self.window_bytes = now, 0


def iter_body(response: requests.Response, chunk_size: int = CHUNK) -> Iterator[bytes]:
    """The body in chunks as they arrive, cut off when slower than the response's limit.

    Raises the same exceptions as ``response.iter_content`` for a cut body
    (``requests.exceptions.ChunkedEncodingError`` and friends), and
    :class:`TooSlowError` for a trickle.
    """
    if getattr(response, "_content_consumed", False) or response.raw is None:  # already read
        yield from requests.Response.iter_content(response, chunk_size)
        return
    meter = _Meter(_LIMITS.get(response, LowSpeed()))
    raw = response.raw
    # Without a content coding the socket's bytes are handed on as read: decoding would
    # only copy each chunk through urllib3's buffer (a tenth of a 500 MB retrieve's CPU).
    coding = response.headers.get("Content-Encoding", "").strip().lower()
    decode = coding not in ("", "identity")
    # The same translation requests' iter_content makes, so callers catch one family.
    try:
        while True:
            chunk = raw.read1(chunk_size, decode_content=decode)
            if not chunk:
                break
            meter.add(len(chunk))
            yield chunk
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except urllib3.exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from exc
    _mark_consumed(response)


def read_all(response: requests.Response, limit: int | None = None, what: str = "") -> None:
    """Read a whole body into ``response.content`` through :func:`iter_body`; more than
    ``limit`` bytes is a :class:`ServerError` (an endless answer)."""
    try:
        content = read_limited(response, limit + 1) if limit is not None else b"".join(
            iter_body(response))
        if limit is not None and len(content) > limit:
            raise _too_large(what, limit)
    except BaseException:
        response.close()  # the rest of a cut or trickling body is never read
        raise
    response._content = content
    _mark_consumed(response)
    response.raw.release_conn()


def _mark_consumed(response: requests.Response) -> None:
    # requests' own flag (not in its type stubs): its iter_content then serves _content.
    setattr(response, "_content_consumed", True)  # noqa: B010


def read_limited(response: requests.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of a body: a hostile server may send one without end."""
    data = bytearray()
    for chunk in iter_body(response):
        data += chunk
        if len(data) >= limit:
            break
    return bytes(data[:limit])


def _too_large(what: str, limit: int) -> ServerError:
    return ServerError(f"{what} failed: the server's answer is larger than {limit} bytes",
                       "the server sent more than any sensible answer; check HOST")


def read_json(response: requests.Response, limit: int, what: str, *,
              if_empty: Any = _REQUIRED) -> Any:
    """The JSON answer, refused with a clear :class:`ServerError` when it is larger than
    ``limit`` bytes, nested too deeply, or not JSON. ``if_empty``: what an empty (or
    blank) body stands for, when that is allowed."""
    data = read_limited(response, limit + 1)
    if len(data) > limit:
        raise _too_large(what, limit)
    if if_empty is not _REQUIRED and not data.strip():
        return if_empty
    try:
        return json.loads(data)
    except RecursionError:
        raise ServerError(f"{what} failed: the server's JSON answer is nested too deeply",
                          "check HOST", status=response.status_code) from None
    except ValueError as exc:
        start = data[:60].decode("utf-8", "replace")
        raise ServerError(f"{what} failed: the answer is not JSON ({exc.__class__.__name__}:"
                          f" starts with {start!r})", "check HOST",
                          status=response.status_code) from None


def server_message(response: requests.Response) -> str:
    """The human part of an error body."""
    try:
        raw = read_limited(response, 64 * 1024)
    except (requests.RequestException, UnavailableError):
        return ""
    return body_message(raw.decode(response.encoding or "utf-8", "replace"))


def body_message(text: str) -> str:
    """Google's error envelope, Orthanc's JSON error, or the first line of text."""
    text = text.strip()
    if text[:1] in "{[":
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError):
            payload = None
        if isinstance(payload, dict):
            error = payload.get("error")
            if isinstance(error, dict) and error.get("message"):
                return str(error["message"])
            if isinstance(error, str):
                return error
            parts = [str(payload[k]) for k in ("Message", "Details") if payload.get(k)]
            return ": ".join(parts)
        if payload is not None:
            return ""  # JSON with nothing readable (e.g. a DICOM data set)
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first_line[:300]
