"""The paths of one retrieve run: given as arguments, read from lists (``--paths-from``).

Every path is checked before the first request: one that does not parse, or that cannot
share the run's pool with the others (metadata and bulk data are retrieved alone), is a
usage error that names its list and line. Checked paths are kept in a temporary file
(in memory while small) and read back one at a time, so a list of 100,000 paths, or one
piped from a search, costs no more memory than one of ten.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator

from .errors import LocalFileError, UsageError, quoted
from .inputs import numbered_list, read_list, stdin_bytes, unreadable_list
from .limits import limit_hint
from .optionnames import option
from .wadopath import Kind, parse_wado_path

# What may share one run with other paths: each of their items is one request (or one
# listing of instances), saved under a name of its own.
SHARED_KINDS: tuple[Kind, ...] = ("dicom", "rendered", "frames")
_SPOOL_IN_MEMORY = 1 << 20  # bytes of paths held in memory before the file is used


def listed_paths(paths: Iterable[str], lists: Iterable[str], null_separated: bool = False
                 ) -> Iterator[tuple[str, str]]:
    """(where, path) for each path given, then for each entry of each list file ('-':
    stdin), one per line (per NUL with ``null_separated``); blank lines and lines
    starting with '#' are skipped. ``where`` names the argument or the list and line."""
    for number, path in enumerate(paths, start=1):
        yield f"path {number}", path.strip()
    for name in lists:
        shown = "stdin" if name == "-" else name
        unit = "entry" if null_separated else "line"
        try:
            with contextlib.ExitStack() as opened:
                # stdin is read, never closed: a later read of it gets its end, not an error.
                handle = stdin_bytes() if name == "-" else opened.enter_context(
                    open(name, "rb"))
                for number, text in numbered_list(handle, null_separated):
                    if not text.lstrip().startswith("#"):
                        yield f"{shown} {unit} {number}", text.strip()
        except OSError as error:
            raise unreadable_list(name, error) from None


class PathList:
    """Paths checked whole, read back lazily (iterate it once per run).

    ``kinds`` are the kinds of path it holds, ``levels`` the levels of its DICOM paths
    (study, series, instance), ``first`` the first path (the run's only one when
    ``len()`` is 1: that run is a one-path retrieve, metadata included)."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        self.kinds: set[Kind] = set()
        self.levels: set[str] = set()
        self.first: str = ""
        self._count = 0
        self._suffix = ""  # added to each path read back: /rendered (see render_all)
        self._alone: tuple[str, str] | None = None  # a path that goes alone: where, what
        # Kept as long as the list: read again by each run that iterates it.
        self._spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
        for where, path in entries:
            self._add(where, path)
        if not self._count:  # never the whole store, as no PATH would be
            raise UsageError("no paths to retrieve",
                             f"the lists of {option('paths_from')} hold no path (blank lines "
                             "and # comments are skipped)")

    def _add(self, where: str, path: str) -> None:
        if not isinstance(path, str):
            raise UsageError(f"{where}: a path must be a str, not {path!r}")
        try:
            if "\0" in path:  # the separator of the stored list
                raise UsageError(f"invalid path {quoted(path)}: it holds a NUL character")
            target = parse_wado_path(path)
        except UsageError as error:
            raise UsageError(f"{where}: {error.message}", error.hint) from None
        here = None if target.kind in SHARED_KINDS else (
            where, "metadata" if target.kind == "metadata" else "bulk data")
        if self._count and (here or self._alone):
            first, what = self._alone or here  # type: ignore[misc]  # one is set
            raise UsageError(f"{first}: {what} is retrieved alone, not with other paths",
                             "give it to a retrieve of its own (metadata goes to stdout or "
                             "one file)")
        self._alone = self._alone or here
        self._count += 1
        self.kinds.add(target.kind)
        if target.kind == "dicom":
            self.levels.add(target.resource.level)
        if self._count == 1:
            self.first = path
        try:
            self._spool.write(os.fsencode(path) + b"\0")
        except OSError as error:  # past _SPOOL_IN_MEMORY, a file in TMPDIR: full, read-only
            # tempfile.tempdir: the folder it chose (None when it found none usable).
            folder = f" {tempfile.tempdir}" if tempfile.tempdir else ""
            raise LocalFileError(
                f"cannot keep the list of paths in the temporary folder{folder}"
                + (" (TMPDIR)" if folder and os.environ.get("TMPDIR") else "")
                + f": {error.strerror or error}", limit_hint(error.errno)
                or "free some space there, or set TMPDIR to another folder") from None

    def render_all(self) -> None:
        """Read every path as PATH/rendered when all are studies, series or instances
        (rendering options given for a list of them, as ``search --format paths``
        prints it); a list that holds other kinds is left as it is."""
        if _renders(self.kinds, self.levels):
            self.kinds = {"rendered"}
            self._suffix = "/rendered"
            self.first = self.first.rstrip("/") + self._suffix

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        self._spool.seek(0)
        for path in read_list(self._spool, null_separated=True):
            yield path.rstrip("/") + self._suffix if self._suffix else path

    def close(self) -> None:
        self._spool.close()


def rendered_path(path: str) -> str:
    """PATH/rendered for one study, series or instance given rendering options, as a list
    of one is read (:meth:`PathList.render_all`); any other path as it is."""
    target = parse_wado_path(path)
    levels = {target.resource.level} if target.kind == "dicom" else set()
    return path.rstrip("/") + "/rendered" if _renders({target.kind}, levels) else path


def _renders(kinds: set[Kind], levels: set[str]) -> bool:
    """Whether paths of these kinds and levels are rendered (studies, series, instances)."""
    return kinds == {"dicom"} and "store" not in levels
