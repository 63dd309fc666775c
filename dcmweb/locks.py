"""The files a run writes for itself, the journal and the report: locked, so that two
runs never write one (the journal's ``FILE.lock`` beside it, the report file itself; a
lock is held for as long as its file stays open, and goes with the process, however it
ends), and watched, so that a run knows when its file was deleted or replaced."""

from __future__ import annotations

import os
import sys
from typing import IO


def lock(handle: IO[bytes]) -> None:
    """Lock the open file for this process; BlockingIOError at once when another holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            raise BlockingIOError from None
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def open_locked(path: str) -> IO[bytes]:
    """``path`` (made when missing) opened and locked (see :func:`lock`)."""
    handle = open(path, "a+b")  # noqa: SIM115 - held open for the whole run
    try:
        lock(handle)
    except OSError:
        handle.close()
        raise
    return handle


def file_identity(status: os.stat_result) -> tuple[int, int]:
    """Which file a stat describes: its device and inode."""
    return status.st_dev, status.st_ino


def what_became_of(path: str, identity: tuple[int, int]) -> str | None:
    """What became of the file ``path`` named when ``identity`` was taken: "deleted",
    "replaced by another file" (a clean-up script, a restore, a rename), or None: still
    there, or the path cannot be looked at (nothing says that the file changed)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return "deleted"
    except OSError:
        return None
    return None if file_identity(status) == identity else "replaced by another file"
