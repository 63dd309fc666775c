"""multipart/related for DICOMweb: a rewindable streaming encoder and an incremental parser.

Written in-house (standard library only) because the usual libraries lose data here:
requests-toolbelt's encoder is one-shot (a retry sends 0 bytes) and its decoder buffers the
whole response; the `multipart` packages reject preambles or boundary padding.
Wire format: RFC 2046 section 5.1 and DICOM PS3.18 (STOW-RS, WADO-RS).
"""

from __future__ import annotations

import io
import os
import re
import stat
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, BinaryIO

from .wire import FileSlice

if TYPE_CHECKING:  # files.py reads DICOM heads: not imported by a retrieve
    from .files import Stamp

__all__ = ["BoundaryNotFound", "Chunk", "FileChanged", "MultipartBody", "MultipartError", "Part",
           "iter_parts", "new_boundary", "parse_content_type"]

Chunk = bytes | memoryview  # a piece of an answer: part bodies are views of what arrived

MAX_HEADER_BYTES = 64 * 1024  # per part; a larger header section means a broken stream
_MAX_PADDING = 4096  # transport padding allowed after a boundary (RFC 2046 sets no limit)
_ITER_SIZE = 64 * 1024
SLICE_MIN = 64 * 1024  # a smaller file is read and joined with its neighbours into one send
_BCHARS = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")  # RFC 2046
_PAD = re.compile(rb"[ \t]*")
_PARAM = re.compile(r'\s*([^=;]*?)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"?|([^;]*?))\s*)?(?:;|$)')
_ESCAPE = re.compile(r"\\(.)")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class MultipartError(ValueError):
    """The multipart data is malformed or truncated, or a file changed while being sent."""


class BoundaryNotFound(MultipartError):
    """The data ended without a single delimiter: the body does not use the boundary
    (or a stream with no length of its own was cut before its first one)."""


class FileChanged(MultipartError):
    """A file changed (its size or its mtime) between listing and sending: maybe it is
    still being written. The request is cut before its last bytes, so that the server
    never gets a whole body holding a half-written file."""

    def __init__(self, path: str | os.PathLike[str], detail: str) -> None:
        super().__init__(f"{os.fspath(path)} {detail}")
        self.path = os.fspath(path)


def file_slice(file: BinaryIO, offset: int, end: int,
               reached: Callable[[int], None]) -> FileSlice:
    """Bytes ``offset`` to ``end`` of ``file``, for the transport to send; once sent,
    ``reached`` gets the offset the send reached (short of ``end``: the file shrank)."""
    return FileSlice(file, offset, end - offset, lambda sent: reached(offset + sent))


def open_unblocked(path: str | os.PathLike[str]) -> io.FileIO:
    """``path`` opened to be read without waiting: a FIFO put where a listed file was
    would otherwise wait for a writer for ever (the caller checks what it opened against
    the listing)."""
    return open(path, "rb", buffering=0, opener=_unblocked)


def _unblocked(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def check_unchanged(path: str | os.PathLike[str], status: os.stat_result, size: int,
                    listed: Stamp | None) -> None:
    """Raise :class:`FileChanged` unless the file (``status``: an fstat of it, open) still
    has ``size`` and, when ``listed`` is known, the mtime, inode and ctime it was listed
    with: a file put in its place since (same size and mtime, as ``cp -p`` or ``rsync -a``
    leave it) holds other UIDs than those its answer is matched by."""
    if status.st_size != size:
        raise FileChanged(path, f"changed size while being sent ({size} -> {status.st_size})")
    if listed is None:
        return
    if status.st_mtime_ns != listed.mtime_ns:
        raise FileChanged(path, "changed while being sent (modified since it was listed)")
    if listed.inode is not None and (status.st_ino, status.st_ctime_ns) != (listed.inode,
                                                                           listed.ctime_ns):
        raise FileChanged(path, "changed while being sent (replaced or rewritten since it "
                                "was listed: another inode or ctime)")


def new_boundary() -> str:
    """A random boundary: 32 hex chars cannot need quoting and will not occur in the data."""
    return os.urandom(16).hex()  # as secrets.token_hex, without importing it on every run


def _quote(value: str) -> str:
    if _TOKEN.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type into (lower-cased mime type, {lower-cased name: unquoted value})."""
    mime, _, rest = value.partition(";")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):  # a regex scan, not split(";"): quoted values may contain ';'
        m = _PARAM.match(rest, pos)
        assert m is not None  # every group is optional, so it always matches
        pos = m.end() if m.end() > pos else pos + 1
        name, quoted, plain = m.group(1).lower(), m.group(2), m.group(3)
        if name and (quoted is not None or plain is not None):
            val = plain if quoted is None else _ESCAPE.sub(r"\1", quoted)
            params.setdefault(name, val)  # first wins, like most HTTP stacks
    return mime.strip().lower(), params


class MultipartBody:
    """Rewindable, streaming multipart/related body built from files on disk (a body requests
    can send and re-send).

    Only the sizes are read upfront; file bytes are read lazily, one file open at a time.
    ``listed``, when given, are the files' stamps when they were listed: a file that has
    changed since (its size, mtime, inode or ctime) fails here (:class:`FileChanged`),
    before the body's last bytes (its closing delimiter) are read.
    requests sends Content-Length = len(body) - body.tell(): call seek(0) before re-sending.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        part_type: str = "application/dicom",
        boundary: str | None = None,
        listed: Sequence[Stamp] | None = None,
    ) -> None:
        if not paths:
            raise ValueError("a multipart body needs at least one file")
        self.boundary = new_boundary() if boundary is None else boundary
        if not _BCHARS.fullmatch(self.boundary):
            raise ValueError(f"invalid multipart boundary: {self.boundary!r}")
        if "\r" in part_type or "\n" in part_type:
            raise ValueError("part_type must not contain line breaks")
        # type is always quoted ('/' is not a token char); a hex boundary never needs quotes.
        self.content_type = (
            f"multipart/related; type={_quote(part_type)}; boundary={_quote(self.boundary)}"
        )
        b = self.boundary.encode("ascii")
        head = b"--" + b + b"\r\nContent-Type: " + part_type.encode("latin-1") + b"\r\n\r\n"
        self._pos = 0
        self._closed = False
        self._file: io.FileIO | None = None  # at most one open file at a time
        self._file_index = -1
        self._file_pos = 0
        # The body is a list of segments: constant bytes, or a file path read on demand.
        self._items: list[bytes | str] = []
        self._lens: list[int] = []
        self._listed: dict[int, Stamp] = {}  # a file item's stamp when it was listed
        for n, p in enumerate(paths):
            path = os.fspath(p)
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                raise MultipartError(f"not a regular file: {path}")
            if listed is not None:  # measured when listed: the file must still be that
                check_unchanged(path, st, listed[n].size, listed[n])
                self._listed[len(self._items) + 1] = listed[n]
            self._items += [head, path, b"\r\n"]
            self._lens += [len(head), st.st_size, 2]
        self._items.append(b"--" + b + b"--\r\n")
        self._lens.append(len(self._items[-1]))
        self._ends = list(accumulate(self._lens))
        self._large_starts = [
            end - n for item, n, end in zip(self._items, self._lens, self._ends, strict=True)
            if isinstance(item, str) and n >= SLICE_MIN]
        self._length = self._ends[-1]

    def __len__(self) -> int:
        return self._length

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._check_open()
        bases = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}
        if whence not in bases:
            raise ValueError(f"invalid whence: {whence}")
        pos = bases[whence] + offset
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        left = self._length - self._pos
        if size is None or size < 0 or size > left:
            size = max(left, 0)
        if size == 0:
            return b""
        pieces: list[bytes] = []
        # bisect_left: also visit zero-length files at this position, so they get checked too.
        i = bisect_left(self._ends, self._pos)
        while size > 0:
            off = self._pos - (self._ends[i] - self._lens[i])
            n = min(self._lens[i] - off, size)
            item = self._items[i]
            if isinstance(item, bytes):
                pieces.append(item[off : off + n])
            elif n or not self._lens[i]:  # an empty file is opened too, to check it is still empty
                pieces.append(self._read_file(i, item, off, n))
            self._pos += n
            size -= n
            i += 1
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def read_or_slice(self, size: int) -> bytes | FileSlice:
        """:meth:`read`, except that a file of at least SLICE_MIN bytes comes as a
        :class:`FileSlice` of the rest of it (the kernel sends it, no copy in memory), and
        bytes read stop where such a file begins."""
        self._check_open()
        i = bisect_right(self._ends, self._pos)  # the item that holds the next byte
        item = self._items[i] if i < len(self._items) else b""
        if isinstance(item, str) and self._lens[i] >= SLICE_MIN:
            path, length = item, self._lens[i]
            file = self._open(i, path)
            self._file_pos = -1  # the kernel moves the file's offset: seek before a read
            offset, self._pos = self._pos - (self._ends[i] - length), self._ends[i]
            return file_slice(file, offset, length,
                              lambda reached: self._sent(i, path, reached))
        following = bisect_right(self._large_starts, self._pos)
        stop = (self._large_starts[following] if following < len(self._large_starts)
                else self._length)
        return self.read(min(size, stop - self._pos))

    def _sent(self, i: int, path: str, reached: int) -> None:
        self._check_size(path, reached, self._lens[i])
        self._check_unchanged(i, path)
        self._close_file()

    def __iter__(self) -> Iterator[bytes]:
        # Being iterable makes requests record tell() and rewind the body on a 307/308 redirect.
        while chunk := self.read(_ITER_SIZE):
            yield chunk

    def _open(self, i: int, path: str) -> io.FileIO:
        """Item ``i``'s file, opened (and its size checked) when it is not the open one."""
        if self._file_index != i:
            self._close_file()
            self._file = open_unblocked(path)  # open across read()s
            self._file_index, self._file_pos = i, 0
            self._check_unchanged(i, path)
        assert self._file is not None
        return self._file

    def _read_file(self, i: int, path: str, off: int, n: int) -> bytes:
        size = self._lens[i]
        f = self._open(i, path)
        if self._file_pos != off:
            f.seek(off)
        data = f.read(n)
        while len(data) < n:  # a raw read may be short; b"" means the file shrank
            more = f.read(n - len(data))
            if not more:
                self._check_size(path, off + len(data), size)
            data += more
        self._file_pos = off + n
        if off + n == size:
            # A file that grew would otherwise go out cut to the promised Content-Length,
            # and one written in place (preallocated) would go out half written.
            self._check_unchanged(i, path)
            self._close_file()
        return data

    def _check_size(self, path: str, actual: int, expected: int) -> None:
        if actual != expected:
            self._close_file()
            raise FileChanged(path, f"changed size while being sent ({expected} -> {actual})")

    def _check_unchanged(self, i: int, path: str) -> None:
        """The open file of item ``i`` is still the one listed, unchanged (one fstat)."""
        assert self._file is not None
        try:
            check_unchanged(path, os.fstat(self._file.fileno()), self._lens[i],
                            self._listed.get(i))
        except FileChanged:
            self._close_file()
            raise

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._file_index = None, -1

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on a closed MultipartBody")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._close_file()
        self._closed = True

    def __enter__(self) -> MultipartBody:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Part:
    """One body part of a multipart response; read it with iter_content() before the next."""

    def __init__(self, headers: dict[str, str], body: Iterator[memoryview]) -> None:
        self.headers = headers
        self.content_type = headers.get("content-type", "")
        self._body = body

    def iter_content(self) -> Iterator[memoryview]:
        """The body as read-only views of the chunks it arrived in (no copies): write
        them, ``b"".join`` them, or ``bytes()`` one to keep it."""
        return self._body  # one shared generator: a partly read part resumes where it stopped

    def __repr__(self) -> str:
        return f"Part(headers={self.headers!r})"


_PART, _CLOSE, _MISS, _MORE = range(4)


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n") if block else []:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():  # also rejects folded lines (obsolete, never seen)
            raise MultipartError(f"malformed part header line: {line[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


class _Parser:
    """State shared by iter_parts and the body generator of the current part.

    self._buf is the chunk being parsed, unconsumed from self._pos on. Part bodies leave
    as views of it, so a byte is never copied here: a new chunk becomes the buffer as it
    is, unless a few bytes are left over (a delimiter or a header section split across
    chunks), which are then joined with it.
    """

    def __init__(self, chunks: Iterable[bytes], boundary: bytes) -> None:
        self._chunks = iter(chunks)
        self._boundary = boundary.decode("ascii")
        self._delim = b"\r\n--" + boundary
        # The leading CRLF lets a boundary at the very start of the stream match the delimiter.
        self._buf = b"\r\n"
        self._view = memoryview(self._buf)
        self._pos = 0
        self._next = (_MORE, 0)  # what followed the delimiter that ended the last part
        self._part_done = True

    def _fill(self) -> bool:
        """Drop consumed bytes and append the next non-empty chunk; False at end of stream."""
        for chunk in self._chunks:
            if chunk:
                left = self._buf[self._pos :] if self._pos < len(self._buf) else b""
                self._buf = left + chunk if left else bytes(chunk)  # bytes(bytes): no copy
                self._view = memoryview(self._buf)
                self._pos = 0
                return True
        return False

    def _classify(self, i: int) -> tuple[int, int]:
        """Look at what follows a delimiter that ends at buf[i]."""
        buf, n = self._buf, len(self._buf)
        if buf[i : i + 2] == b"--":
            return _CLOSE, i + 2
        if n == i or (n == i + 1 and buf[i] == 0x2D):
            return _MORE, 0
        j = _PAD.match(buf, i).end()  # type: ignore[union-attr]
        if j - i > _MAX_PADDING:
            raise MultipartError("too much padding after a multipart boundary")
        if j == n or (buf[j] == 0x0D and j + 1 == n):
            return _MORE, 0
        if buf[j] == 0x0D and buf[j + 1] == 0x0A:
            return _PART, j  # j: the CRLF that ends the boundary line
        return _MISS, 0  # e.g. "--B" followed by more text: not a boundary, just data

    def parts(self) -> Iterator[Part]:
        missing = (f"the body does not contain the boundary {self._boundary!r} its "
                   "Content-Type names")
        for _ in self._body(missing, BoundaryNotFound):
            pass  # the preamble is read like a part body, and thrown away
        kind, at = self._next
        while kind == _PART:
            headers = self._read_headers(at)
            self._part_done = False
            part = Part(headers, self._body("multipart stream truncated in a part body"))
            yield part
            for _ in part._body:  # the caller left part of it unread: skip it
                pass
            if not self._part_done:  # its generator failed or was closed early
                raise MultipartError("multipart stream is broken after an earlier error")
            kind, at = self._next
        for _ in self._chunks:  # the epilogue: ignored, but consumed so the connection is freed
            pass

    def _read_headers(self, at: int) -> dict[str, str]:
        self._pos = at
        scan = 0  # relative to self._pos: where to resume looking for the blank line
        while (end := self._buf.find(b"\r\n\r\n", self._pos + scan)) < 0:
            if len(self._buf) - self._pos > MAX_HEADER_BYTES:
                raise MultipartError(f"part headers larger than {MAX_HEADER_BYTES} bytes")
            scan = max(0, len(self._buf) - self._pos - 3)  # the blank line may straddle chunks
            if not self._fill():
                raise MultipartError("multipart stream truncated in part headers")
        if end - self._pos > MAX_HEADER_BYTES:
            raise MultipartError(f"part headers larger than {MAX_HEADER_BYTES} bytes")
        block = self._buf[self._pos + 2 : end]
        self._pos = end + 4
        return _parse_headers(block)

    def _data_end(self, pos: int) -> int:
        """Where the bytes from pos on stop being surely data: a tail that may be the start
        of a delimiter split across chunks is held back (it always starts with CR)."""
        buf, delim = self._buf, self._delim
        cr = buf.find(b"\r", max(pos, len(buf) - len(delim) + 1))
        while cr >= 0:
            if delim.startswith(buf[cr:]):
                return cr
            cr = buf.find(b"\r", cr + 1)
        return len(buf)

    def _body(self, eof_error: str, error: type[MultipartError] = MultipartError
              ) -> Iterator[memoryview]:
        d = self._delim
        scan = 0  # relative to self._pos
        while True:
            pos = self._pos
            idx = self._buf.find(d, pos + scan)
            if idx >= 0:
                if idx > pos:
                    self._pos = idx
                    yield self._view[pos:idx]
                kind, at = self._classify(idx + len(d))
                if kind in (_PART, _CLOSE):
                    self._next, self._part_done = (kind, at), True
                    return
                if kind == _MISS:
                    scan = 1
                    continue
                scan = 0
            else:
                cut = self._data_end(pos)
                if cut > pos:
                    self._pos = cut
                    yield self._view[pos:cut]
                scan = 0
            if not self._fill():
                raise error(eof_error)


def iter_parts(chunks: Iterable[bytes], boundary: str) -> Iterator[Part]:
    """Parse a multipart body arriving as chunks, yielding parts as their headers arrive.

    Consume part.iter_content() before advancing; whatever is left unread is skipped.
    Raises MultipartError on malformed or truncated input (never a silently short part).
    """
    if not boundary:
        raise MultipartError("empty multipart boundary")
    try:
        b = boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MultipartError(f"non-ASCII multipart boundary: {boundary!r}") from None
    return _Parser(chunks, b).parts()
