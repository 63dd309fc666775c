"""The files to store, as a lazy stream: paths, directories, glob masks and file lists.

Nothing is listed in advance, so the first upload starts while the walk goes on and
memory does not grow with the tree: a directory is read with ``os.scandir`` when the
walk reaches it, and only the names of the directories being walked are held. Masks
are walked the same way (``**`` recurses, as in Google's old tool: ``./**.dcm`` is
every ``.dcm`` file below ``.``). Lists come from ``--files-from FILE`` or ``-``
(stdin), one path per line or NUL-separated (``find -print0``).

Symbolic links to folders are followed, each folder once (see :mod:`links`).

Filters apply to every source: ``--include``/``--exclude`` globs (as aws s3 reads them:
with '/', the path below the input folder, '*' crossing '/', '**/' any folders or none;
without, each name on the way; a trailing '/' for folders only; an excluded folder left
unwalked and counted) and ``--shard K/N``, a deterministic share of the
paths (a stable hash), so N machines split one job without talking to each other.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import glob
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, NamedTuple

from .errors import DcmwebError, UsageError
from .globs import Glob, check_filter, glob_regex, mask_parts, matches, without_dot
from .limits import ThreadLimit, start_thread
from .links import FolderLinks, inside
from .optionnames import option
from .record import field, record


@record(frozen=True)
class Shard:
    """Share ``index`` (1-based) of ``count``: the files whose path hashes to it."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match or not 1 <= int(match[1]) <= int(match[2]):
            raise UsageError(f"invalid shard {text!r}",
                             f"write K/N with 1 <= K <= N, e.g. {option('shard', '2/8')}")
        return cls(int(match[1]), int(match[2]))

    def holds(self, path: str) -> bool:
        # blake2b of the path's bytes: the same on every machine and Python version
        # (hash() is salted per process). Imported here: only --shard needs it.
        import hashlib

        digest = hashlib.blake2b(os.fsencode(path), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index - 1


@record(frozen=True)
class InputSpec:
    """Where the files come from and which of them to take."""

    masks: tuple[str, ...] = ()
    files_from: tuple[str, ...] = ()  # list files; "-" is stdin
    null_separated: bool = False  # lists are NUL-separated (find -print0)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    shard: Shard | None = None

    def __post_init__(self) -> None:
        if not self.masks and not self.files_from:
            raise UsageError("no files to store",
                             f"give paths, masks or {option('files_from')}")
        for keyword, patterns in (("include", self.include), ("exclude", self.exclude)):
            for pattern in patterns:
                check_filter(keyword, pattern, self.masks)


def _sorted_entries(directory: str) -> list[os.DirEntry[str]] | None:
    """One folder's entries in name order (a stable order; memory ~ the largest folder);
    None when the folder cannot be read."""
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except FileNotFoundError:
        return []  # gone since it was listed: nothing to take from it
    except OSError:
        return None


def _kind(entry: os.DirEntry[str]) -> str:
    """'dir', 'link' (a symbolic link to a folder) or 'file' (anything else).

    Anything else is passed on, as os.walk does: the store skips FIFOs and devices with
    a reason and reports a dangling link as a file it cannot read.
    """
    try:
        if entry.is_dir():
            return "link" if entry.is_symlink() else "dir"
    except OSError:
        pass
    return "file"


class Found(NamedTuple):
    """One item of a walk: a file, or a folder the store reports (unreadable, a loop)."""

    path: str  # as walked: what the journal, the report and --shard know it by
    relative: str | None  # below the input folder it was found under; None: given directly
    folder: bool = False


def _below(relative: str, name: str) -> str:
    return f"{relative}/{name}" if relative else name


def _nothing(relative: str) -> bool:
    return False


def walk(directory: str, prune: Callable[[str], bool] = _nothing,
         links: FolderLinks | None = None, base: str = "", via_link: bool = False
         ) -> Iterator[Found]:
    """Every file below ``directory``, depth first, in name order, lazily, and the
    folders the store reports (unreadable, a loop). ``prune`` gets a folder's path
    relative to ``directory`` (prefixed by ``base``) and says whether to leave it out."""
    links = links or FolderLinks()
    links.walks_whole(directory)
    via_link = via_link or os.path.islink(directory.rstrip(os.sep) or directory)
    stack = [(directory, base, via_link)]
    while stack:
        folder, relative, linked = stack.pop()
        entries = _sorted_entries(folder)
        if entries is None:
            # Passed on as a path: the store fails it with the reason (permission
            # denied), where skipping it would hide the files inside.
            yield Found(folder, relative, folder=True)
            continue
        subfolders = []
        for entry in entries:
            below = _below(relative, entry.name)
            kind = _kind(entry)
            if kind == "file":
                if not links.taken_again(entry.path, linked):
                    yield Found(entry.path, below)
            elif not prune(below):
                step = links.enter(entry.path, kind == "link", linked, whole=True)
                if step == "loop":
                    yield Found(entry.path, below, folder=True)
                elif step == "walk":
                    subfolders.append((entry.path, below, linked or kind == "link"))
        stack.extend(reversed(subfolders))


def _expand_mask(mask: str, prune: Callable[[str], bool], links: FolderLinks) -> Iterator[Found]:
    """Files matched by a glob mask, walking only below its fixed leading folders (the
    input folder that ``prune`` and the relative paths start from)."""
    root, rest = mask_parts(mask)
    regex = glob_regex("/".join(rest))
    hidden = any(part.startswith(".") for part in rest)
    deep = any("**" in part for part in rest)
    top = root or "."
    real_top = os.path.realpath(top)

    def reached(real: str, link: str) -> bool:
        """Whether the mask takes from the folder ``real`` under its own path what it
        takes from it through the link at ``link`` (a path below ``top``)."""
        below = inside(real, real_top)
        if not below:
            return False
        names = below.split("/")
        if not hidden and any(name.startswith(".") for name in names):
            return False
        if rest[:-1] == ["**"]:  # '**/NAME': every folder is walked, whatever its path
            return True
        return (not deep and len(names) == link.count("/") + 1
                and all(map(fnmatch.fnmatchcase, names, rest)))

    stack: list[tuple[str, str, int, bool]] = [(top, "", 0, False)]
    while stack:
        folder, relative, depth, linked = stack.pop()
        entries = _sorted_entries(folder)
        if entries is None:
            yield Found(folder if root else relative or ".", relative, folder=True)
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith(".") and not hidden:
                continue  # like glob: '*' does not match hidden names
            below = _below(relative, entry.name)
            path = entry.path if root else below
            kind = _kind(entry)
            if kind == "file":
                if regex.match(below) and not links.taken_again(entry.path, linked):
                    yield Found(path, below)
                continue
            # A folder the mask names is walked, as when the shell expands the mask
            # and passes the folder on.
            named = not deep and depth + 1 >= len(rest)
            if not (regex.match(below) if named else
                    deep or fnmatch.fnmatchcase(entry.name, rest[depth])) or prune(below):
                continue  # pruned only when the mask goes into it: counted as excluded
            step = links.enter(entry.path, kind == "link", linked, whole=named,
                               reached=functools.partial(reached, link=below))
            into_link = linked or kind == "link"
            if step == "loop":
                yield Found(path, below, folder=True)
            elif step == "walk" and named:
                for found in walk(entry.path, prune, links, below, into_link):
                    yield found if root else found._replace(path=found.relative or found.path)
            elif step == "walk":
                subfolders.append((entry.path, below, depth + 1, into_link))
        stack.extend(reversed(subfolders))


_BOM = "\ufeff".encode()


def read_list(stream: IO[bytes], null_separated: bool) -> Iterator[str]:
    """Paths from a list, one per line (or per NUL), read as it arrives."""
    return (text for _, text in numbered_list(stream, null_separated))


def numbered_list(stream: IO[bytes], null_separated: bool) -> Iterator[tuple[int, str]]:
    """(line or entry number, text) of each entry of a list that is not blank, read as
    it arrives: a message can name the line of a bad one."""
    separator = b"\0" if null_separated else b"\n"
    pending = b""
    number = 0
    read = getattr(stream, "read1", stream.read)  # read1: a pipe's lines as they arrive
    while chunk := read(65536):
        pending += chunk
        *complete, pending = pending.split(separator)
        for raw in complete:
            number += 1
            yield from _list_entry(number, raw, null_separated)
    yield from _list_entry(number + 1, pending, null_separated)


def _list_entry(number: int, raw: bytes, null_separated: bool
                ) -> Iterator[tuple[int, str]]:
    if number == 1:
        # A UTF-8 byte order mark (a list saved by Notepad or PowerShell) is no part of
        # the first path: no file name starts with it.
        raw = raw.removeprefix(_BOM)
    if not null_separated:
        raw = raw.rstrip(b"\r")
    if raw.strip():
        yield number, os.fsdecode(raw)


@record
class InputStats:
    """What the walk saw, for the summary: filled in while the stream is consumed."""

    unmatched: list[str] = field(default_factory=list)  # masks that matched nothing
    excluded: int = 0  # left out by --include/--exclude
    excluded_folders: int = 0  # left unwalked by --exclude: their files are not counted
    other_shards: int = 0  # left to the other --shard machines


class Inputs:
    """A lazy stream of the paths an :class:`InputSpec` names, each once.

    A file named by two masks is taken once; to stay flat in memory the set of
    names seen is kept only when there are several sources.
    """

    def __init__(self, spec: InputSpec, stdin: IO[bytes] | None = None) -> None:
        self.spec = spec
        self.stdin = stdin
        self.stats = InputStats()
        self._include = tuple(map(Glob.parse, spec.include))
        self._exclude = tuple(map(Glob.parse, spec.exclude))

    def _excluded(self, found: Found) -> bool:
        if found.folder:
            return False  # a folder the store reports: an --exclude would have pruned it
        path = without_dot(found.path) if found.relative is None else found.relative
        return bool((self._include and not matches(self._include, path))
                    or matches(self._exclude, path))

    def _pruned(self, relative: str) -> bool:
        """A folder an --exclude names is not entered: everything below it is left out,
        unread, and the folder is counted."""
        pruned = matches(self._exclude, relative, folder=True)
        self.stats.excluded_folders += pruned
        return pruned

    def _sources(self) -> Iterator[Found]:
        links = FolderLinks()  # shared: a folder met in two inputs is walked once
        for mask in self.spec.masks:
            expanded = os.path.expanduser(mask)
            if os.path.isdir(expanded) or (glob.has_magic(expanded)
                                           and not os.path.lexists(expanded)):
                found = False
                for item in (walk(expanded, self._pruned, links) if os.path.isdir(expanded)
                             else _expand_mask(expanded, self._pruned, links)):
                    found = True
                    yield item
                if not found:
                    self.stats.unmatched.append(mask)
            else:
                # A plain path is passed on even when missing or unreadable: the store
                # reports it as a failed file rather than dropping it silently.
                yield Found(expanded, None)
        for name in self.spec.files_from:
            if name == "-":
                stream = self.stdin or stdin_bytes()
                yield from _given(read_list(stream, self.spec.null_separated))
                continue
            try:
                with open(name, "rb") as handle:
                    yield from _given(read_list(handle, self.spec.null_separated))
            except OSError as error:
                raise unreadable_list(name, error) from None

    def __iter__(self) -> Iterator[Path]:
        several = len(self.spec.masks) + len(self.spec.files_from) > 1
        seen: set[int] = set()
        for found in self._sources():
            path = found.path
            if self._excluded(found):
                self.stats.excluded += 1
                continue
            if several:
                # Before the shard: every machine drops the same later mention.
                # A 64-bit digest per file instead of the name: less memory, and
                # a collision is as likely as a cosmic ray.
                key = hash(os.path.realpath(path))
                if key in seen:
                    continue
                seen.add(key)
            if self.spec.shard and not self.spec.shard.holds(path):
                self.stats.other_shards += 1
                continue
            yield Path(path)


def _given(paths: Iterable[str]) -> Iterator[Found]:
    return (Found(path, None) for path in paths)


def unmatched_message(mask: str) -> str:
    """What is said of an input that gave no file: an empty folder is not a mask."""
    if os.path.isdir(os.path.expanduser(mask)):
        return f"no files in the folder {mask}"
    return f"no files match {mask}"


def unreadable_list(name: str, error: OSError) -> UsageError:
    return UsageError(f"cannot read the file list {name}: {error.strerror}")


def check_lists(spec: InputSpec) -> None:
    """Refuse a --files-from that cannot be opened before a run starts (the lists are
    read lazily, once the files before them are sent)."""
    for name in spec.files_from:
        if name == "-":
            stdin_bytes()
        else:
            try:
                open(name, "rb").close()
            except OSError as error:
                raise unreadable_list(name, error) from None


def stdin_bytes() -> IO[bytes]:
    import sys

    if sys.stdin is None:  # started with fd 0 closed
        raise UsageError("cannot read the file list -: stdin is closed")
    return sys.stdin.buffer


class BackgroundCount:
    """Counts the files (and bytes) of a spec in a thread: the progress total, and the
    size of the job that request shaping needs. ``total`` is None until done.

    Lists on stdin cannot be read twice, so they are never counted.
    """

    def __init__(self, spec: InputSpec) -> None:
        self.total: int | None = None
        self.total_bytes = 0
        self.largest = 0  # bytes of the largest file
        self.done = threading.Event()
        self._spec = spec
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if "-" not in spec.files_from:
            # Only an estimate: under a memory or process limit the run goes without it.
            with contextlib.suppress(ThreadLimit):
                self._thread = start_thread(self._count, "dcmweb-count",
                                            what="the thread that counts the files")

    def _count(self) -> None:
        count = 0
        try:
            for path in Inputs(self._spec):
                if self._stop.is_set():
                    return
                count += 1
                with contextlib.suppress(OSError):  # the store reports an unreadable file
                    size = os.stat(path).st_size
                    self.total_bytes += size
                    self.largest = max(self.largest, size)
            self.total = count
        except (DcmwebError, OSError):
            # The store walks the same inputs and reports this in one line (a list that
            # cannot be read): a thread's traceback beside it would only be noise.
            return
        finally:
            self.done.set()  # counted or not: no one waits for a total that cannot come

    def wait(self, seconds: float) -> bool:
        """Whether the count finished within ``seconds``."""
        return self._thread is not None and self.done.wait(seconds)

    def stop(self) -> None:
        self._stop.set()


PathsLike = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]


def one_or_many(paths: PathsLike) -> Iterable[str | os.PathLike[str]]:
    """What a library caller passes as paths: a lone path is one (iterating a str would
    take each character for a path: '.' and '/' walk whole trees)."""
    if isinstance(paths, (str, os.PathLike)):
        return (paths,)
    if isinstance(paths, (bytes, bytearray)) or not isinstance(paths, Iterable):
        raise UsageError(f"paths must be a path or a list of paths, not {paths!r}")
    return (_one_path(path) for path in paths)


def _one_path(path: object) -> str | os.PathLike[str]:
    if not isinstance(path, (str, os.PathLike)):
        raise UsageError(f"each of the paths must be a str or a Path, not {path!r}")
    return path


def as_masks(paths: PathsLike) -> tuple[str, ...]:
    return tuple(os.fspath(path) for path in one_or_many(paths))


def from_paths(paths: PathsLike) -> InputSpec:
    """An input spec for library callers that pass masks and paths."""
    return InputSpec(masks=as_masks(paths))
