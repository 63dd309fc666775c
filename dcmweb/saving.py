"""Writing a download's files: whole or not at all, and never filling the disk.

Each file goes to a temporary file beside its final name and is renamed once complete,
so a half file never carries a final name. One :class:`Saver` serves a whole run and all
its threads: folders are made once, the free space is looked at every few MiB written
(not per file), temporary names need no random bytes, and files are written with plain
``os.write``. A thousand thumbnails thus cost four system calls each (open, write, close,
rename) instead of ten; with four threads every call is also a hand-over of the GIL.

A run that is killed (SIGKILL, the OOM killer, a power cut) leaves its temporary files
behind. Their names say who wrote them: ``.dcmweb-SPACE-PID-TAG-N.part``, SPACE being
where that PID names one process (this boot of this machine, its PID namespace). The
first time a run writes in a folder it removes the temporary files of its own SPACE whose
PID is not alive: a live writer's never (its PID is alive), another machine's or
container's never (another SPACE, where this one cannot tell). Where SPACE cannot be known
(not Linux), nothing is removed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import LocalFileError, NameTaken, UnavailableError, UsageError
from .limits import limit_hint
from .neterrors import TransportError
from .optionnames import option
from .output import human_size

# Free space a download leaves on the disk: the smaller of these, so that a small disk
# can still be filled up to 95 % and a large one keeps 1 GiB for everything else.
KEEP_FREE_BYTES = 1024 ** 3
KEEP_FREE_FRACTION = 0.05
# A download's reads and writes: per-chunk overhead, not bytes, limits Python (64 KiB:
# 390 MB/s, 1 MiB: 780 MB/s).
CHUNK = 1024 * 1024
SPACE_CHECK_BYTES = 8 * CHUNK  # written between two looks at the free space
# What a new file costs beyond its bytes: its last block, partly used (4 KiB on most file
# systems); counted, or a run of thousands of tiny files would take more than it counts.
FILE_BLOCK = 4096

Chunk = bytes | bytearray | memoryview
# Temporary names: unique within this process by the counter, across processes (two
# runs into one folder) by the PID and tag; O_EXCL settles what is left.
_TAG = os.urandom(4).hex()
_NUMBERS = itertools.count()
_PREFIX = ".dcmweb-"
_SUFFIX = ".part"

log = logging.getLogger("dcmweb")


def _read_pid_space() -> str | None:
    """Where a PID names one process: this boot of this machine (the kernel's random
    boot ID: unlike a host name or a machine ID, never shared by two machines, even cloned
    ones) and this PID namespace (containers). None where they cannot be read."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            boot = file.read().strip().replace("-", "")
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except (OSError, ValueError):
        return None
    inode = namespace.partition("[")[2].rstrip("]")
    if len(boot) != 32 or not boot.isalnum() or not inode.isdigit():
        return None
    return f"{boot[:16]}.{inode}"


_PID_SPACE = _read_pid_space()


def _alive(pid: int) -> bool:
    """Whether a process with this PID exists here (another user's counts: EPERM)."""
    if pid == os.getpid():
        return True  # another Saver of this process (library calls in threads)
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only the check is made
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_parts(folder: Path) -> int:
    """Remove the temporary files in ``folder`` that a dead run of this PID space left
    (see the module's docstring); how many were removed."""
    if _PID_SPACE is None:
        return 0
    mine = f"{_PREFIX}{_PID_SPACE}-"
    removed = 0
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith(mine) and name.endswith(_SUFFIX)):
                continue
            pid = name[len(mine):].split("-", 1)[0]
            # pid 0 would be kill()'s "every process in my group": digits and > 0 only
            if not (pid.isdigit() and pid.isascii()) or int(pid) <= 0 or _alive(int(pid)):
                continue
            with contextlib.suppress(FileNotFoundError):  # another run removed it first
                os.unlink(entry.path)
                removed += 1
    if removed:
        log.info("removed %d temporary file%s left in %s by a run that was killed",
                 removed, "" if removed == 1 else "s", folder)
    return removed


def temp_name(number: int) -> str:
    """The name of this process's temporary file ``number``."""
    return f"{_PREFIX}{_PID_SPACE or 'unknown'}-{os.getpid()}-{_TAG}-{number}{_SUFFIX}"


def _file_in_the_way(folder: Path) -> Path | None:
    """The file standing where ``folder``, or a folder above it, goes: the first entry
    found going up, when it is not a folder."""
    for path in (folder, *folder.parents):
        if path.is_dir():
            return None
        if os.path.lexists(path):
            return path
    return None


def check_output_folder(folder: Path) -> None:
    """Refuse, before any request, an output folder that is a file or lies under one:
    nothing could be saved in it."""
    in_way = _file_in_the_way(folder)
    if in_way is not None:
        raise UsageError(f"{option('output', str(folder))} is not a folder",
                         "choose a folder" if in_way == folder
                         else f"{in_way} is a file: choose a folder")


def _folder_in_the_way(final: Path) -> NameTaken:
    return NameTaken(f"cannot save {final}: a folder of that name is in the way",
                     "move or rename it")


def _cannot_make(folder: Path, in_way: Path) -> NameTaken:
    return NameTaken(f"cannot make the folder {folder}: {in_way} is a file",
                     "move or rename it")


def name_taken(final: Path) -> NameTaken | None:
    """The error saving ``final`` would meet from a name taken by the other kind of entry
    (a folder at the file's name, a file at a folder's), or None: a dry run's forecast."""
    if final.is_dir():
        return _folder_in_the_way(final)
    in_way = _file_in_the_way(final.parent)
    return None if in_way is None else _cannot_make(final.parent, in_way)


class DiskSpace:
    """Stops a download before it eats into the space kept free (an endless answer, a
    huge study): a full disk breaks other programs too, and dcmweb removes its partial
    file. Only what is about to be written counts, so a small file fits on a small disk.
    Used under the Saver's lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.room = 0  # bytes that may be written before the next look
        self.writing = 0  # bytes handed to writers (threads) and not yet written: the Saver's
        self.check(0)

    def free(self) -> tuple[int, int]:
        """(bytes free for this user, size of the file system)."""
        if not hasattr(os, "statvfs"):  # Windows
            import shutil

            usage = shutil.disk_usage(self.folder)
            return usage.free, usage.total
        found = os.statvfs(self.folder)  # what shutil.disk_usage reads, without its imports
        return found.f_bavail * found.f_frsize, found.f_blocks * found.f_frsize

    def use(self, size: int) -> None:
        """``size`` bytes are about to be written: refused if they would eat into the
        space kept free. The disk is looked at every SPACE_CHECK_BYTES (other programs
        write too), and sooner when the room left is smaller than the write."""
        if size > self.room:
            self.check(size)
        self.room -= size

    def check(self, size: int) -> None:
        free, total = self.free()
        free -= self.writing  # other threads' chunks, not on the disk yet
        keep = min(KEEP_FREE_BYTES, int(total * KEEP_FREE_FRACTION))
        room = free - keep
        if size > room:
            kept = "(the smaller of 1 GiB and 5 % of the disk)"
            raise LocalFileError(
                f"stopped writing in {self.folder}: {human_size(max(free, 0))} free, "
                + (f"less than the {human_size(keep)} dcmweb keeps free {kept}" if room < 0
                   else f"of which dcmweb keeps {human_size(keep)} {kept}: the next "
                        f"{human_size(size)} would not fit in the {human_size(room)} left"),
                "free some space or choose another output folder")
        self.room = min(room, size + SPACE_CHECK_BYTES)


@contextlib.contextmanager
def writing(folder: Path) -> Iterator[None]:
    """Local write failures (permissions, a full disk) end the run with a clear message;
    network errors, which the transport also derives from OSError, pass through.

    The message names the folder the failing entry was to be made in: for a folder
    mkdir could not make (``folder`` or one above it), its parent, the one refusing."""
    try:
        yield
    except OSError as error:
        if isinstance(error, TransportError):
            raise
        where = Path(os.fsdecode(error.filename)).parent if error.filename else folder
        raise LocalFileError(f"cannot write in {where}: {error.strerror or error}",
                             limit_hint(error.errno)
                             or "check the output folder: its permissions and free space"
                             ) from error


class Saver:
    """Writes one run's files; shared by its threads."""

    def __init__(self) -> None:
        self._folders: set[Path] = set()  # made already
        self._made: list[Path] = []  # folders that did not exist before this run
        self._partial: set[str] = set()  # temporary files being written right now
        self._lock = threading.Lock()
        self._stopped = False
        self._space: DiskSpace | None = None

    def folder(self, path: Path) -> None:
        if path in self._folders:
            return
        # Under the lock discard_partial() takes: a thread whose answer comes after the
        # stop makes no folder, which would be left behind empty.
        with self._lock, writing(path):
            if self._stopped:
                raise UnavailableError("cancelled")
            for missing in (path, *path.parents):
                if missing.is_dir():
                    break
                self._made.append(missing)
            try:
                path.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                in_way = _file_in_the_way(path)
                if in_way is None:
                    raise  # moved since: a write error like any other
                raise _cannot_make(path, in_way) from None
        remove_stale_parts(path)  # once per folder and run: a listing, not per file
        self._folders.add(path)

    def create(self, folder: Path) -> tuple[int, str]:
        """A new, empty temporary file in folder (made if need be): its handle and path.
        Unlike mkstemp's (always 0600) its mode is what the umask gives new files, so
        other users and services can read the result."""
        self.folder(folder)
        with self._lock, writing(folder):
            if self._stopped:
                raise UnavailableError("cancelled")
            if self._space is None:
                self._space = DiskSpace(folder)  # a nearly full disk: refused at once
            self._space.use(FILE_BLOCK)
            while True:
                temp = os.path.join(folder, temp_name(next(_NUMBERS)))
                # Known before it exists: Ctrl-C may come the moment os.open returns,
                # and discard_partial() then still removes it (or, never made, skips it).
                self._partial.add(temp)
                try:
                    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                except FileExistsError:  # a name left by another run: take the next
                    self._partial.discard(temp)
                    continue
                except BaseException:  # Ctrl-C as it was made: the caller never gets it
                    self.abandon(temp)
                    raise
                return handle, temp

    def write(self, handle: int, chunk: Chunk, folder: Path) -> None:
        space = self._space
        assert space is not None  # made by create()
        with writing(folder):
            with self._lock:
                space.use(len(chunk))
                space.writing += len(chunk)
            try:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(handle, view):]
            finally:
                with self._lock:
                    space.writing -= len(chunk)

    def finish(self, temp: str, final: Path, then: Callable[[], None] | None = None) -> None:
        """Give a complete file its final name; ``then`` (its bookkeeping) runs at once,
        under the lock discard_partial() takes: a file named before the stop is known to
        the run that stops, and none is named after it."""
        with self._lock:
            if self._stopped:
                raise UnavailableError("cancelled")  # discard_partial() removed temp
            with writing(final.parent):
                try:
                    os.replace(temp, final)
                except IsADirectoryError:
                    raise _folder_in_the_way(final) from None
            self._partial.discard(temp)
            if then is not None:
                then()

    def abandon(self, temp: str) -> None:
        """A truncated or interrupted file: never left behind."""
        with contextlib.suppress(OSError):
            os.unlink(temp)
        self._partial.discard(temp)

    def discard_partial(self) -> None:
        """Remove the temporary files still being written, and the folders this run made
        that hold nothing (a run stopped before its first file), and create no more
        (after Ctrl-C the threads writing them are not waited for)."""
        with self._lock:
            self._stopped = True
            for temp in list(self._partial):
                with contextlib.suppress(OSError):
                    os.unlink(temp)
            for folder in sorted(self._made, key=lambda made: len(made.parts), reverse=True):
                with contextlib.suppress(OSError):  # not empty: a file was saved in it
                    folder.rmdir()

    def stage(self, chunks: Iterable[Chunk], folder: Path) -> tuple[str, int]:
        """Write chunks to a new temporary file in ``folder`` (removed if this fails):
        its path and size, for :meth:`finish` or :meth:`abandon`."""
        handle, temp = self.create(folder)
        size = 0
        try:
            try:
                for chunk in chunks:
                    self.write(handle, chunk, folder)
                    size += len(chunk)
            finally:
                os.close(handle)
        except BaseException:
            self.abandon(temp)
            raise
        return temp, size

    def save(self, chunks: Iterable[Chunk], final: Path,
             named: Callable[[int], None] | None = None) -> int:
        """Write chunks to ``final`` whole or not at all; the size. ``named`` is told
        the size as the file gets its name (see :meth:`finish`)."""
        temp, size = self.stage(chunks, final.parent)
        try:
            self.finish(temp, final, then=None if named is None else lambda: named(size))
        except BaseException:
            self.abandon(temp)
            raise
        return size
