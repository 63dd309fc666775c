"""A single-part upload body: exactly the bytes measured when the file was listed.

requests would stream an open file to its end, past the Content-Length it announced, if
the file grew meanwhile; the server then reads a different instance than the one counted.
This body stops at the measured size and fails when the file changed size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .multipart import SLICE_MIN, MultipartError, file_slice
from .wire import FileSlice

_CHUNK = 1024 * 1024


class FileChanged(MultipartError):
    """The file changed size between listing and sending."""


class SizedFileBody:
    """Rewindable file body of a fixed size; requests sends Content-Length = len(body)."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self._size = size
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._check(os.fstat(self._file.fileno()).st_size)

    def __len__(self) -> int:
        return self._size  # requests subtracts tell() itself

    def _check(self, actual: int) -> None:
        if actual != self._size:
            self.close()
            raise FileChanged(f"{self.path} changed size while being sent "
                              f"({self._size} -> {actual})")

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
                self._check(self._file.tell())
            data += more
        if self._file.tell() >= self._size:  # the end: a file that grew must not pass
            self._check(os.fstat(self._file.fileno()).st_size)
        return data

    def read_or_slice(self, size: int) -> bytes | FileSlice:
        """:meth:`read`, except that the rest of a file of at least SLICE_MIN bytes comes as
        a :class:`FileSlice`, which the kernel sends without a copy in memory."""
        offset = self._file.tell()
        if self._size - offset < SLICE_MIN:
            return self.read(size)
        self._file.seek(self._size)
        return file_slice(self._file, offset, self._size, self._check)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_CHUNK):
            yield chunk

    def close(self) -> None:
        self._file.close()
