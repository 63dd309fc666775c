"""Symbolic links to folders in the walk of ``store``: followed, each folder once, and
never round a loop (a loop is passed on to the store, which skips it with its reason).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from typing import Literal

# Why the store skips a folder the walk passed on: walking it would never end.
LINK_LOOP = "a symbolic link loop (the folder is one of the folders it is in)"
# What the walk does with a folder: walk it, pass it on as a loop, or leave it out (its
# files are taken under another path).
Step = Literal["walk", "loop", "again"]


def loops_back(path: str | os.PathLike[str]) -> bool:
    """Whether the folder ``path`` is one of the folders on its own path, reached again
    through a symbolic link (``tree/self -> ..``): walking it would never end."""
    try:
        status = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(status.st_mode):
        return False
    folder = os.path.abspath(path)
    while (parent := os.path.dirname(folder)) != folder:
        folder = parent
        try:
            above = os.stat(folder)
        except OSError:
            continue
        if (above.st_dev, above.st_ino) == (status.st_dev, status.st_ino):
            return True
    return False


def inside(real: str, tree: str) -> str | None:
    """The path of ``real`` below the real folder ``tree`` ('' for itself), or None."""
    if real == tree:
        return ""
    prefix = tree.rstrip(os.sep) + os.sep
    return real[len(prefix):].replace(os.sep, "/") if real.startswith(prefix) else None


def _self_and_above(real: str) -> Iterator[str]:
    yield real
    while (parent := os.path.dirname(real)) != real:
        yield (real := parent)


class FolderLinks:
    """Symbolic links to folders are followed (as aws s3 and gsutil do), each folder
    walked once, each file taken once, never round a loop.

    Memory grows with the links, not with the tree: held are the real paths and the
    (st_dev, st_ino) of the folders walked whole (the inputs, the folders a mask names,
    the link targets met in them), the (st_dev, st_ino) of the link targets followed, of
    the files taken through a link and of the loops passed on; the folders on the
    current path are the ones :func:`loops_back` looks at.
    """

    def __init__(self) -> None:
        self._whole: set[str] = set()  # real paths
        self._whole_ids: set[tuple[int, int]] = set()
        self._followed: set[tuple[int, int]] = set()
        self._linked_files: set[tuple[int, int]] = set()
        self._loops: set[tuple[int, int]] = set()  # the links, not their targets
        self._met_link = False  # until then no folder can be reached twice

    def walks_whole(self, folder: str) -> None:
        """Every folder below ``folder`` is walked under its own path: a link into it is
        left out, and so is a later path to it."""
        self._whole.add(os.path.realpath(folder))
        with contextlib.suppress(OSError):  # the walk reports the folder it cannot read
            self._whole_ids.add(_identity(os.stat(folder)))
        if os.path.islink(folder.rstrip(os.sep) or folder):
            self._met_link = True  # a link given as an input

    def enter(self, path: str, link: bool, via_link: bool, whole: bool,
              reached: Callable[[str], bool] = lambda real: False) -> Step:
        """Whether to walk the folder ``path``: 'walk', 'loop' (passed on: the store
        skips it with the reason) or 'again' (left out: its files are taken under another
        path). ``whole``: the folder is walked whole when entered; ``reached``: whether
        the walk takes the same files from a link's real target under its own path."""
        if not (link or via_link or self._met_link):
            return "walk"  # no link followed yet: no loop, no folder met twice
        if (link or via_link) and loops_back(path):
            with contextlib.suppress(OSError):
                loop = _identity(os.lstat(path))
                if loop in self._loops:
                    return "again"  # the same loop reached through another link
                self._loops.add(loop)
            return "loop"
        try:
            status = os.stat(path)
        except OSError:
            return "walk"  # the walk reports the folder it cannot read
        target = _identity(status)
        # Walked whole already under another path (through a link, or its own path
        # before a link to it): every file of it was taken.
        if target in self._whole_ids or ((link or via_link) and target in self._followed):
            return "again"
        if link:
            real = os.path.realpath(path)
            # By the folders above it, not by each tree: a farm of links stays linear.
            if reached(real) or not self._whole.isdisjoint(_self_and_above(real)):
                return "again"
            self._followed.add(target)
            self._met_link = True
            if whole:
                self._whole.add(real)
                self._whole_ids.add(target)
        return "walk"

    def taken_again(self, path: str, via_link: bool) -> bool:
        """Whether the file ``path`` was taken already under another path: a folder the
        walk takes only part of can be reached both through a link and its own path."""
        if not (via_link or self._linked_files):
            return False
        try:
            key = _identity(os.stat(path))
        except OSError:
            return False  # the store reports the file it cannot read
        if key in self._linked_files:
            return True
        if via_link:
            self._linked_files.add(key)
        return False


def _identity(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino
