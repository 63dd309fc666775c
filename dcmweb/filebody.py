"""A single-part upload body: exactly the bytes measured when the file was listed.

requests would stream an open file to its end, past the Content-Length it announced, if
the file grew meanwhile; the server then reads a different instance than the one counted.
This body stops at the measured size and fails when the file changed size, was written
or was replaced since it was listed: before its last byte goes out, so that the server
never gets a whole body of a file still being written, or of another file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .files import Stamp
from .multipart import SLICE_MIN, FileChanged, check_unchanged, file_slice, open_unblocked
from .wire import FileSlice

_CHUNK = 1024 * 1024


class SizedFileBody:
    """Rewindable file body of the size ``listed`` (the file's stamp when it was listed);
    requests sends Content-Length = len(body)."""

    def __init__(self, path: Path, listed: Stamp) -> None:
        self.path = path
        self._size = listed.size
        self._listed = listed
        self._file = open_unblocked(path)  # closed by close()
        self._check_unchanged()

    def __len__(self) -> int:
        return self._size  # requests subtracts tell() itself

    def _check_unchanged(self) -> None:
        """One fstat: the open file is still the one listed, unchanged."""
        try:
            check_unchanged(self.path, os.fstat(self._file.fileno()), self._size,
                            self._listed)
        except FileChanged:
            self.close()
            raise

    def _check_reached(self, reached: int, end: int) -> None:
        """A read (or a send) that stopped at ``reached``, short of ``end``: it shrank."""
        if reached < end:
            self.close()
            raise FileChanged(self.path, f"changed size while being sent "
                                         f"({self._size} -> {reached})")

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def read(self, size: int | None = -1) -> bytes:
        left = self._size - self._file.tell()
        if size is None or size < 0 or size > left:
            size = max(left, 0)
        data = self._file.read(size) if size else b""
        while len(data) < size:  # a raw read may be short; b"" means the file shrank
            more = self._file.read(size - len(data))
            if not more:
                self._check_reached(self._file.tell(), self._size)
            data += more
        if self._file.tell() >= self._size:  # the end: a file that changed must not pass
            self._check_unchanged()
        return data

    def read_or_slice(self, size: int) -> bytes | FileSlice:
        """:meth:`read`, except that the rest of a file of at least SLICE_MIN bytes comes as
        a :class:`FileSlice`, which the kernel sends without a copy in memory. Its last
        byte is left to :meth:`read`, which checks the file first: the server must not
        have the whole body before the check."""
        offset = self._file.tell()
        if self._size - offset < SLICE_MIN:
            return self.read(size)
        end = self._size - 1
        self._file.seek(end)
        return file_slice(self._file, offset, end,
                          lambda reached: self._check_reached(reached, end))

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_CHUNK):
            yield chunk

    def close(self) -> None:
        self._file.close()
