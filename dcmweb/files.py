"""Which files are DICOM Part-10, and what their heads say: the cheap check (the
128-byte preamble + ``DICM``, then the group 0002 meta elements read by hand, see
dicomhead), which gives the SOP Instance UID needed to match a store answer back to
its file. The walk of paths, folders and masks is in inputs.py.
"""

from __future__ import annotations

import os
import stat

from .dicomhead import HEAD_BYTES, read_meta, read_uids
from .record import record


@record(frozen=True)
class Part10Info:
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str


NOT_REGULAR = "not a regular file"  # what not_regular says, with the kind when known
_KINDS = ((stat.S_ISFIFO, "FIFO (named pipe)", "FIFOs (named pipes)"),
          (stat.S_ISSOCK, "socket", "sockets"),
          (stat.S_ISCHR, "character device", "character devices"),
          (stat.S_ISBLK, "block device", "block devices"),
          (stat.S_ISDIR, "directory", "directories"))
# How a summary counts each reason of not_regular: one, several.
NOT_REGULAR_COUNTS = {f"{NOT_REGULAR}: a {one}": (one, many) for _, one, many in _KINDS}
NOT_REGULAR_COUNTS[NOT_REGULAR] = (NOT_REGULAR, "not regular files")


def not_regular(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` must not be read (a FIFO would block forever), or None for a file.

    A missing or unreadable path is None: opening it gives the precise error.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kind = next((one for test, one, _ in _KINDS if test(mode)), None)
    return f"{NOT_REGULAR}: a {kind}" if kind else NOT_REGULAR


@record(frozen=True)
class Stamp:
    """What a file is known by besides its path, from one ``os.stat`` (the journal's, and
    the upload's check that it sends the file it listed). Size and mtime say whether it
    changed; inode and ctime whether it is still the file seen: a copy put in its place
    with the same size and mtime (``cp -p``, ``rsync -a``, ``tar x``) has another inode,
    or the ctime of its writing."""

    size: int
    mtime_ns: int
    inode: int | None = None  # None: not known (a version 1 journal, a vanished file)
    ctime_ns: int | None = None

    @classmethod
    def of(cls, status: os.stat_result) -> Stamp:
        return cls(status.st_size, status.st_mtime_ns, status.st_ino, status.st_ctime_ns)

    def same_size_and_mtime(self, other: Stamp) -> bool:
        return (self.size, self.mtime_ns) == (other.size, other.mtime_ns)

    def same_inode_and_ctime(self, other: Stamp) -> bool:
        return self.inode is not None and (self.inode, self.ctime_ns) == (other.inode,
                                                                           other.ctime_ns)


@record(frozen=True)
class Part10Head:
    """What one read of a file's first bytes tells: its File Meta, the UIDs of its data
    set (None when they lie past the bytes read, or the encoding is unusual), and the
    file's stamp (the fstat of that read): the upload fails a file that has changed, or
    was replaced, since."""

    info: Part10Info
    uids: tuple[str, str, str] | None
    stamp: Stamp

    @property
    def size(self) -> int:
        return self.stamp.size


def read_part10_head(path: str | os.PathLike[str], *, checked: bool = False
                     ) -> Part10Head | None:
    """Read the start of a Part-10 file once, or None if it is not one.

    Only regular files are opened (checked before, unless the caller did, and again on
    the open file, so a FIFO swapped in meanwhile cannot block the read).
    """
    if not checked and not_regular(path) is not None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:  # os.read, not a buffered file: no lseek, ioctl and buffer for one read
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            return None
        head = os.read(fd, HEAD_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    meta = read_meta(head)
    if meta is None:
        return None
    values = meta[0]
    info = Part10Info(values.get(0x00020002, ""), values.get(0x00020003, ""),
                      values.get(0x00020010, ""))
    return Part10Head(info, read_uids(head, meta), Stamp.of(status))


def read_part10_info(path: str | os.PathLike[str]) -> Part10Info | None:
    """The File Meta Information of a Part-10 file, or None if it is not one."""
    head = read_part10_head(path)
    return head.info if head else None
