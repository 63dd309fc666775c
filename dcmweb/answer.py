"""An HTTP answer whose body is read on demand, decoded (gzip, deflate; another coding
is never read as if it were none) and checked against its Content-Length; reading it to
the end gives its connection back."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from .neterrors import Overdue, ReadTimeout, TransportError, UndecodableBody, UnknownCoding
from .speed import SpeedMeter
from .wire import Answer, Headers

READ_CHUNK = 64 * 1024


class _Decoder:
    """gzip or deflate (zlib-wrapped or raw), as servers send them, decoded a bounded
    amount at a time: 1 MiB of zeros gzips to 1 KiB, so a small answer could otherwise
    become gigabytes in one read."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS if coding == "gzip"
                                        else zlib.MAX_WBITS)
        self._first = True
        self.tail = b""  # compressed input not decoded yet: decoded before reading more

    @property
    def unfinished(self) -> bool:
        """Whether compressed bytes came without the end of their stream (a cut answer:
        every byte of its Content-Length may have arrived, but not the whole file)."""
        return not self._first and not self._zlib.eof

    def decode(self, data: bytes, limit: int) -> bytes:
        """At most ``limit`` decoded bytes of ``data``; what is left of it is ``tail``."""
        try:
            out = self._zlib.decompress(data, limit)
        except zlib.error:
            if not (self._first and self.coding == "deflate"):
                raise
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, no header
            out = self._zlib.decompress(data, limit)
        self._first = False
        self.tail = self._zlib.unconsumed_tail
        if self.coding == "gzip" and self._zlib.eof and self._zlib.unused_data:
            self.tail = self._zlib.unused_data  # another gzip member: the next call's
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return out

    def flush(self) -> bytes:
        return self._zlib.flush()


class Response:
    """An answer whose body is read on demand: ``read1`` (one socket read),
    ``iter_content``, or ``content`` (all of it). Close it, or read it to the end, to give
    its connection back to the pool."""

    def __init__(self, raw: Answer, url: str,
                 release: Callable[[bool], None]) -> None:
        self._raw = raw
        self.url = url
        self.status_code: int = raw.status
        self.reason: str = raw.reason
        self.headers: Headers = raw.headers
        self._release: Callable[[bool], None] | None = release
        self.unknown_coding: str | None = None  # a Content-Encoding not decoded here
        self._decoder = self._decoder_for(", ".join(raw.headers.get_all("Content-Encoding")))
        self._content: bytes | None = None
        self.meter: SpeedMeter | None = None

    def _decoder_for(self, header: str) -> _Decoder | None:
        """gzip or deflate (identity is no coding); any other, or codings applied one on
        another, make ``unknown_coding`` the header."""
        codings = [word.strip().lower() for word in header.split(",")]
        codings = [coding for coding in codings if coding not in ("", "identity")]
        if not codings:
            return None
        if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
            return _Decoder("gzip" if codings[0] == "x-gzip" else codings[0])
        self.unknown_coding = header
        return None

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"

    @property
    def encoding(self) -> str | None:
        """The charset the Content-Type names, if any."""
        charset = self.headers.get_content_charset() if self.headers else None
        return charset or None

    def read1(self, size: int = READ_CHUNK) -> bytes:
        """Up to ``size`` bytes of the body as they arrive (decoded); b"" at its end."""
        decoder = self._decoder
        if self.unknown_coding is not None:
            self.close()
            raise UnknownCoding(f"the answer's Content-Encoding {self.unknown_coding!r} is "
                                "not one dcmweb decodes (gzip, deflate)")
        if decoder is None:
            return self._read_raw(size)
        while True:
            data = decoder.tail or self._read_raw(size)
            try:
                out = decoder.decode(data, size) if data else decoder.flush()
            except zlib.error as exc:
                self.close()
                raise UndecodableBody(f"the answer's {decoder.coding} body cannot be"
                                     f" decoded: {exc}") from exc
            if not data and decoder.unfinished:
                self.close()
                raise UndecodableBody(f"the answer's {decoder.coding} body ends before"
                                     " the end of its compressed data")
            if out or not data:
                return out

    def _read_raw(self, size: int) -> bytes:
        raw = self._raw
        if self._release is None:
            return b""
        try:
            data = self._read_metered(size)
        except TimeoutError as exc:
            self.close()
            raise ReadTimeout("no bytes within the read timeout") from exc
        except TransportError:
            self.close()
            raise
        except (OSError, ValueError) as exc:
            self.close()
            # Callers say "the answer was cut off: ..." already: name the cause only.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else repr(exc)
            raise TransportError(f"the connection broke mid-answer ({reason})") from exc
        if data and raw.length != 0:
            return data
        if not data and raw.length:  # the server closed before its Content-Length
            missing = raw.length
            self.close()
            raise TransportError(f"the answer ended {missing} bytes before its"
                                 " Content-Length")
        self._finish()
        return data

    def _read_metered(self, size: int) -> bytes:
        """One read of the body, counted by the meter, which also judges a read that
        waited its whole window with nothing."""
        meter = self.meter
        if meter is None:
            return self._raw.read1(size)
        while True:
            try:
                data = self._raw.read1(size, meter.judge_by())
            except Overdue:
                meter.add(0)  # raises when the window was too slow; else a new window
                continue
            if data:
                meter.add(len(data))
            return data

    def _finish(self) -> None:
        """The body is read: the connection goes back to the pool unless it closes."""
        reusable = not self._raw.will_close
        self._raw.close()
        release, self._release = self._release, None
        if release is not None:
            release(reusable)

    def iter_content(self, chunk_size: int | None = READ_CHUNK) -> Iterator[bytes]:
        """The body in chunks of at most ``chunk_size`` bytes, each as soon as it arrives."""
        size = chunk_size or READ_CHUNK
        if self._content is not None:
            for start in range(0, len(self._content), size):
                yield self._content[start:start + size]
            return
        while chunk := self.read1(size):
            yield chunk

    @property
    def has_content(self) -> bool:
        """Whether the whole body was read already (``content`` then costs no copy)."""
        return self._content is not None

    def keep(self, content: bytes) -> None:
        """Keep ``content`` (read by the caller) as the whole body: later reads serve it."""
        self._content = content

    @property
    def content(self) -> bytes:
        if self._content is None:
            self._content = b"".join(self.iter_content())
        return self._content

    def json(self) -> Any:
        return json.loads(self.content)

    def close(self) -> None:
        """Stop reading: an unread rest means the connection cannot be reused."""
        release, self._release = self._release, None
        if release is not None:
            self._raw.close()
            release(False)
