"""The exclusive locks a run holds on its files, so that two runs never write one: the
journal's (``FILE.lock`` beside it) and the report's (the report file itself). A lock is
held for as long as its file stays open, and goes with the process, however it ends."""

from __future__ import annotations

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
