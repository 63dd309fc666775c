"""The files to store, as a lazy stream: paths, directories, glob masks and file lists.

Nothing is listed in advance, so the first upload starts while the walk goes on and
memory does not grow with the tree: a directory is read with ``os.scandir`` when the
walk reaches it, and only the names of the directories being walked are held. Masks
are walked the same way (``**`` recurses, as in Google's old tool: ``./**.dcm`` is
every ``.dcm`` file below ``.``). Lists come from ``--files-from FILE`` or ``-``
(stdin), one path per line or NUL-separated (``find -print0``).

Filters apply to every source: ``--include``/``--exclude`` globs and ``--shard K/N``,
a deterministic share of the paths (a stable hash), so N machines split one job
without talking to each other.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from .errors import DcmwebError, UsageError
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


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for one glob: ``*``/``?``/``[..]`` stay in one folder, ``**/`` spans any."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append(r"(?:[^/]*/)*")
            index += 3
            continue
        if pattern.startswith("**", index):
            out.append(r".*")
            index += 2
            continue
        if char == "*":
            out.append(r"[^/]*")
        elif char == "?":
            out.append(r"[^/]")
        elif char == "[":
            end = pattern.find("]", index + 2)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[index + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                index = end + 1
                continue
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


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
    """'dir' (walked), 'link-dir' (not walked: no link loops) or 'file' (anything else).

    Anything else is passed on, as os.walk does: the store skips FIFOs and devices with
    a reason and reports a dangling link as a file it cannot read.
    """
    try:
        if entry.is_dir():
            return "link-dir" if entry.is_symlink() else "dir"
    except OSError:
        pass
    return "file"


def walk(directory: str, prune: Callable[[str], bool] = lambda name: False) -> Iterator[str]:
    """Every regular file below ``directory``, depth first, in name order, lazily."""
    stack = [directory]
    while stack:
        folder = stack.pop()
        subfolders = []
        entries = _sorted_entries(folder)
        if entries is None:
            # Passed on as a path: the store fails it with the reason (permission
            # denied), where skipping it would hide the files inside.
            yield folder
            continue
        for entry in entries:
            kind = _kind(entry)
            if kind == "dir":
                if not prune(entry.name):
                    subfolders.append(entry.path)
            elif kind == "file":
                yield entry.path
        stack.extend(reversed(subfolders))


def _expand_mask(mask: str, prune: Callable[[str], bool]) -> Iterator[str]:
    """Files matched by a glob mask, walking only below its fixed leading folders."""
    # The old tool's '**' matched files at any depth: 'a/**' is 'a/**/*' and './**.dcm'
    # is './**/*.dcm'.
    pattern = re.sub(r"\*\*(?![/\\])", "**/*", mask).replace(os.sep, "/")
    parts = pattern.split("/")
    fixed = 0
    while fixed < len(parts) - 1 and not glob.has_magic(parts[fixed]):
        fixed += 1
    root = "/".join(parts[:fixed]) or ("/" if pattern.startswith("/") else "")
    rest = parts[fixed:]
    regex = _glob_regex("/".join(rest))
    hidden = any(part.startswith(".") for part in rest)
    deep = any("**" in part for part in rest)
    top = root or "."
    stack: list[tuple[str, int]] = [(top, 0)]
    while stack:
        folder, depth = stack.pop()
        subfolders = []
        entries = _sorted_entries(folder)
        if entries is None:
            yield folder if root else os.path.relpath(folder, top)  # as walk() does
            continue
        for entry in entries:
            if entry.name.startswith(".") and not hidden:
                continue  # like glob: '*' does not match hidden names
            relative = os.path.relpath(entry.path, top).replace(os.sep, "/")
            kind = _kind(entry)
            if kind == "dir":
                if prune(entry.name):
                    continue
                if not deep and depth + 1 >= len(rest):
                    if regex.match(relative):  # a folder the mask names: walked, as when
                        # the shell expands the mask and passes the folder on
                        for path in walk(entry.path, prune):
                            yield path if root else os.path.relpath(path, top)
                    continue
                if deep or fnmatch.fnmatchcase(entry.name, rest[depth]):
                    subfolders.append((entry.path, depth + 1))
            elif kind == "file" and regex.match(relative):
                yield entry.path if root else relative
        stack.extend(reversed(subfolders))


def read_list(stream: IO[bytes], null_separated: bool) -> Iterator[str]:
    """Paths from a list, one per line (or per NUL), read as it arrives."""
    separator = b"\0" if null_separated else b"\n"
    pending = b""
    read = getattr(stream, "read1", stream.read)  # read1: a pipe's lines as they arrive
    while chunk := read(65536):
        pending += chunk
        *complete, pending = pending.split(separator)
        for raw in complete:
            yield from _list_entry(raw, null_separated)
    yield from _list_entry(pending, null_separated)


def _list_entry(raw: bytes, null_separated: bool) -> Iterator[str]:
    if not null_separated:
        raw = raw.rstrip(b"\r")
    if raw.strip():
        yield os.fsdecode(raw)


@record
class InputStats:
    """What the walk saw, for the summary: filled in while the stream is consumed."""

    unmatched: list[str] = field(default_factory=list)  # masks that matched nothing
    excluded: int = 0  # left out by --include/--exclude
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

    def _excluded(self, path: str) -> bool:
        def hit(patterns: tuple[str, ...]) -> bool:
            name = os.path.basename(path)
            return any(fnmatch.fnmatchcase(path if "/" in p else name, p) for p in patterns)

        return bool((self.spec.include and not hit(self.spec.include))
                    or (self.spec.exclude and hit(self.spec.exclude)))

    def _pruned(self, name: str) -> bool:
        """A folder named by an --exclude pattern (without '/') is not entered."""
        return any("/" not in p and fnmatch.fnmatchcase(name, p) for p in self.spec.exclude)

    def _sources(self) -> Iterator[str]:
        for mask in self.spec.masks:
            expanded = os.path.expanduser(mask)
            if os.path.isdir(expanded) or (glob.has_magic(expanded)
                                           and not os.path.lexists(expanded)):
                found = False
                for path in (walk(expanded, self._pruned) if os.path.isdir(expanded)
                             else _expand_mask(expanded, self._pruned)):
                    found = True
                    yield path
                if not found:
                    self.stats.unmatched.append(mask)
            else:
                # A plain path is passed on even when missing or unreadable: the store
                # reports it as a failed file rather than dropping it silently.
                yield expanded
        for name in self.spec.files_from:
            if name == "-":
                stream = self.stdin or _stdin_bytes()
                yield from read_list(stream, self.spec.null_separated)
                continue
            try:
                with open(name, "rb") as handle:
                    yield from read_list(handle, self.spec.null_separated)
            except OSError as error:
                raise _unreadable_list(name, error) from None

    def __iter__(self) -> Iterator[Path]:
        several = len(self.spec.masks) + len(self.spec.files_from) > 1
        seen: set[int] = set()
        for path in self._sources():
            if self._excluded(path):
                self.stats.excluded += 1
                continue
            if self.spec.shard and not self.spec.shard.holds(path):
                self.stats.other_shards += 1
                continue
            if several:
                # A 64-bit digest per file instead of the name: less memory, and
                # a collision is as likely as a cosmic ray.
                key = hash(os.path.realpath(path))
                if key in seen:
                    continue
                seen.add(key)
            yield Path(path)


def unmatched_message(mask: str) -> str:
    """What is said of an input that gave no file: an empty folder is not a mask."""
    if os.path.isdir(os.path.expanduser(mask)):
        return f"no files in the folder {mask}"
    return f"no files match {mask}"


def _unreadable_list(name: str, error: OSError) -> UsageError:
    return UsageError(f"cannot read the file list {name}: {error.strerror}")


def check_lists(spec: InputSpec) -> None:
    """Refuse a --files-from that cannot be opened before a run starts (the lists are
    read lazily, once the files before them are sent)."""
    for name in spec.files_from:
        if name == "-":
            _stdin_bytes()
        else:
            try:
                open(name, "rb").close()
            except OSError as error:
                raise _unreadable_list(name, error) from None


def _stdin_bytes() -> IO[bytes]:
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
        self.done = threading.Event()
        self._spec = spec
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if "-" not in spec.files_from:
            self._thread = threading.Thread(target=self._count, name="dcmweb-count",
                                            daemon=True)
            self._thread.start()

    def _count(self) -> None:
        count = 0
        try:
            for path in Inputs(self._spec):
                if self._stop.is_set():
                    return
                count += 1
                with contextlib.suppress(OSError):  # the store reports an unreadable file
                    self.total_bytes += os.stat(path).st_size
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
