"""A SQLite journal of per-file store outcomes, so a rerun sends only what is not stored.

Each file is keyed by its absolute path and the store it went to, and remembered with
its size and modification time (a file changed since is sent again), its inode number and
its ctime (see :class:`Stamp`). A file is marked
``sending`` when its batch is handed to the pool and gets its outcome when the
server's answer is read; a kill in between leaves ``sending``, which the next run
checks with a search before it sends anything again.

WAL mode with ``synchronous=NORMAL``: every commit survives a killed process (the
data is in the WAL file, in the OS's page cache); a power cut may lose the last
commits, never the database, and a lost outcome only means that file is checked or
sent again. Each outcome is committed as it arrives.

Two runs cannot share a journal: an exclusive ``flock`` on ``FILE.lock``, beside the file
the path resolves to (so a symbolic link to the journal finds the same lock), is held for
the whole run and a second run stops at once with :class:`JournalBusy` (exit 7). A read
only look (--dry-run) takes no lock: WAL lets it read beside the run that writes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .errors import Busy, DcmwebError, LocalFileError, UsageError
from .files import Stamp
from .locks import file_identity, open_locked, what_became_of
from .optionnames import option
from .output import readable
from .record import record

if TYPE_CHECKING:
    import sqlite3

SCHEMA_VERSION = 2
LOOK_EVERY_SECONDS = 1.0  # how often a commit checks that the path still names the journal
DONE = ("stored", "already stored")  # statuses that mean the server holds the file
_SCHEMA = """
CREATE TABLE files (
    target TEXT NOT NULL,           -- the STOW URL the file went to
    path TEXT NOT NULL,             -- absolute path
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER,                  -- NULL: recorded by version 1, which did not keep it
    ctime_ns INTEGER,
    status TEXT NOT NULL,           -- sending, stored, already stored, skipped, failed, conflict
    study_uid TEXT,
    series_uid TEXT,
    sop_uid TEXT,
    http_status INTEGER,
    reason INTEGER,
    message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    PRIMARY KEY (target, path)
) WITHOUT ROWID;
"""
# The step from each version to the next, run in one transaction with the new user_version.
_MIGRATIONS = {
    1: "ALTER TABLE files ADD COLUMN inode INTEGER; ALTER TABLE files ADD COLUMN ctime_ns INTEGER;",
}
# Columns every version has: a table "files" without them is another program's.
_KEY_COLUMNS = {"target", "path", "size", "mtime_ns", "status"}


class JournalBusy(Busy):
    """Another run holds the journal (an overlapping cron run)."""


GONE = Stamp(-1, -1)  # a vanished file, or one changed while sent: never matches a file


@record(frozen=True)
class Entry:
    stamp: Stamp
    status: str
    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None
    message: str | None
    attempts: int
    updated: float  # time.time() of the last change


def _key(path: str) -> str | bytes:
    """A path as the journal keys it: its text, or its bytes when the name is not UTF-8
    (SQLite keeps text as UTF-8; the bytes, a BLOB, never equal a text key)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def _why_unwritable(path: str) -> str | None:
    """Why the file system refuses to let the journal be written, when it says so."""
    folder = os.path.dirname(os.path.realpath(path))
    if hasattr(os, "statvfs"):  # not on Windows
        with contextlib.suppress(OSError):
            if os.statvfs(folder).f_flag & os.ST_RDONLY:
                return f"its folder {folder} is on a read-only file system"
    if not os.access(folder, os.W_OK | os.X_OK):
        name = os.path.basename(path)
        return (f"its folder {folder} is not writable (SQLite needs {name}-wal and "
                f"{name}-shm there)")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return "the file is read-only"
    return None


class Journal:
    """The outcomes of one store target in one journal file; used by one thread.

    A write the disk refuses (full, gone) is a :class:`LocalFileError` naming the file; its
    transaction is rolled back, so the journal holds what it held before that write.
    """

    failed = False  # a write was refused: the disk refuses the next ones too

    def __init__(self, path: str | os.PathLike[str], target: str, *,
                 read_only: bool = False) -> None:
        """``read_only`` (--dry-run): the file is read as it is, never changed: not made
        when missing (then it is empty), not switched to WAL, not locked (the nightly run
        may start meanwhile), and a journal of an older version is not migrated (the
        dcmweb that wrote it may still be running the job)."""
        import sqlite3  # only with --journal: a store without one never loads it

        self.path = os.fspath(path)
        self.target = target
        self._stamp_columns = "inode, ctime_ns"
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file written
        self._looked = time.monotonic()  # when the path was last seen naming that file
        self._lock = None if read_only else self._take_lock()
        try:
            self.db = self._connect(read_only)
        except sqlite3.Error as error:
            self._release_lock()
            raise self._refused(error, read_only) from None
        try:
            version = self._version()  # before any change: another program's file is kept
            if read_only:
                self._read_as_it_is(version)
                return
            self._prepare(version)
        except sqlite3.Error as error:
            self._close_files()
            raise self._refused(error, read_only) from None
        except UsageError:
            self._close_files()
            raise
        with contextlib.suppress(OSError):
            self._identity = file_identity(os.stat(self.path))

    def _take_lock(self) -> IO[bytes]:
        """The writer's lock, on the file the path resolves to (a link, another relative
        path: the same lock)."""
        try:
            return open_locked(os.path.realpath(self.path) + ".lock")
        except BlockingIOError:
            raise JournalBusy(f"the journal {self.path} is in use by another dcmweb run",
                              f"wait for it to finish, or use another {option('journal')}"
                              ) from None
        except (FileNotFoundError, NotADirectoryError) as error:  # a wrong path
            raise UsageError(f"cannot open the journal {self.path}: {error.strerror}") from None
        except OSError as error:
            raise LocalFileError(f"cannot write the journal {self.path}: "
                                 f"{_why_unwritable(self.path) or error.strerror}") from None

    def _connect(self, read_only: bool) -> sqlite3.Connection:
        import sqlite3

        if not read_only:
            return sqlite3.connect(self.path, isolation_level=None)
        if not os.path.exists(self.path):
            return sqlite3.connect(":memory:", isolation_level=None)  # see _read_as_it_is
        uri = f"{Path(self.path).resolve().as_uri()}?mode=ro"
        db = sqlite3.connect(uri, isolation_level=None, uri=True)
        try:
            db.execute("SELECT count(*) FROM sqlite_master")
        except sqlite3.OperationalError:
            # A WAL journal is read through its -shm file, which a reader who cannot
            # write the folder cannot make after the last run removed it: read what that
            # run left in the file itself.
            db.close()
            db = sqlite3.connect(f"{uri}&immutable=1", isolation_level=None, uri=True)
        return db

    def _prepare(self, version: int) -> None:
        """Switch to WAL, make or migrate the schema, and make sure the file can be
        written: SQLite opens a file it cannot write read-only without a word, and the
        run would learn it at its first outcome."""
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        steps = [_SCHEMA] if not version else [
            _MIGRATIONS[step] for step in range(version, SCHEMA_VERSION)]
        if steps:
            self.db.executescript("BEGIN; " + " ".join(steps)
                                  + f" PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        else:
            self.db.executescript(f"BEGIN IMMEDIATE; PRAGMA user_version={SCHEMA_VERSION};"
                                  " ROLLBACK;")

    def _refused(self, error: sqlite3.Error, read_only: bool) -> DcmwebError:
        """The error for a journal SQLite cannot open: the file system's refusal, or a
        file that is not a journal."""
        import sqlite3

        if not isinstance(error, sqlite3.OperationalError):  # not a database, or damaged
            return UsageError(f"{self.path} is not a dcmweb journal: {error}")
        if read_only:
            return LocalFileError(f"cannot read the journal {self.path}: {error}")
        return LocalFileError(f"cannot write the journal {self.path}: "
                              f"{_why_unwritable(self.path) or error}")

    def _read_as_it_is(self, version: int) -> None:
        """Read a journal of any version without a change: a new (empty) one as an empty
        journal in memory; one of version 1 with its files' inodes and ctimes unknown."""
        import sqlite3

        if not version:
            self.db.close()
            self.db = sqlite3.connect(":memory:", isolation_level=None)
            self.db.executescript(_SCHEMA)
        elif version < 2:
            self._stamp_columns = "NULL, NULL"

    def _version(self) -> int:
        """The journal's schema version; 0 for an empty database (a new journal). A
        database that holds anything else is refused (UsageError), before any change."""
        objects = self.db.execute("SELECT type, name FROM sqlite_master").fetchall()
        version: int = self.db.execute("PRAGMA user_version").fetchone()[0]
        if not objects and not version:
            return 0
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(files)")}
        keyed = columns >= _KEY_COLUMNS
        if keyed and version > SCHEMA_VERSION:
            raise UsageError(f"the journal {self.path} was written by a newer dcmweb")
        if not keyed or version < 1 or objects != [("table", "files")]:
            raise UsageError(f"{self.path} is not a dcmweb journal: it holds other tables "
                             "(left as it is)", f"give {option('journal')} a new file, or the "
                             "journal of earlier runs")
        return version

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()

    def _close_files(self) -> None:
        self.db.close()
        self._release_lock()

    def close(self) -> None:
        """Commit and close; a :class:`LocalFileError` when the outcomes cannot be kept
        (see :meth:`commit`)."""
        try:
            self.commit()
            self._check_still_there()
        finally:
            self._close_files()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lookup(self, path: str) -> Entry | None:
        row = self.db.execute(
            f"SELECT size, mtime_ns, {self._stamp_columns}, status, study_uid, series_uid,"
            " sop_uid, message, attempts, updated"
            " FROM files WHERE target = ? AND path = ?", (self.target, _key(path))).fetchone()
        return Entry(Stamp(*row[:4]), *row[4:]) if row else None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Open a transaction unless one is; on a write the disk refuses, roll it back and
        raise a LocalFileError (SQLite may have rolled it back already: it is asked)."""
        import sqlite3

        try:
            if not self.db.in_transaction:
                self.db.execute("BEGIN")
            yield
        except sqlite3.Error as error:
            self.failed = True
            with contextlib.suppress(sqlite3.Error):
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
            full = "disk is full" in str(error)  # SQLITE_FULL, whatever the version
            raise LocalFileError(
                f"cannot write the journal {self.path}: "
                f"{(not full and _why_unwritable(self.path)) or error}",
                ("free some space; " if full else "") + "the next run asks the server about "
                "the files this one was sending") from None

    def mark_sending(self, path: str, stamp: Stamp,
                     uids: tuple[str | None, str | None, str | None], *,
                     attempts: int = 1) -> None:
        """The file is about to be sent; its outcome is unknown until :meth:`record`.
        Committed at once: a run killed after the request left must leave the mark, so
        that the next run asks the server before sending the file again. ``attempts``
        counts this run already (a killed run may have sent the file); a run that stops
        knowing it never sent it takes that back (:meth:`count_attempts`)."""
        with self._writing():
            self.db.execute(
                "INSERT INTO files (target, path, size, mtime_ns, inode, ctime_ns, status,"
                " study_uid, series_uid, sop_uid, attempts, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, 'sending', ?, ?, ?, ?, ?)"
                " ON CONFLICT (target, path) DO UPDATE SET size = excluded.size,"
                " mtime_ns = excluded.mtime_ns, inode = excluded.inode,"
                " ctime_ns = excluded.ctime_ns, status = 'sending',"
                " study_uid = excluded.study_uid, series_uid = excluded.series_uid,"
                " sop_uid = excluded.sop_uid, attempts = excluded.attempts,"
                " updated = excluded.updated",
                (self.target, _key(path), stamp.size, stamp.mtime_ns, stamp.inode,
                 stamp.ctime_ns, *uids, attempts, time.time()))
        self.commit()

    def record(self, path: str, stamp: Stamp, status: str, *,
               uids: tuple[str | None, str | None, str | None] = (None, None, None),
               http_status: int | None = None, reason: int | None = None,
               message: str | None = None, attempts: int = 0) -> None:
        """A file's outcome and the runs that sent it so far (kept uncommitted until
        :meth:`commit`)."""
        with self._writing():
            self.db.execute(
                "INSERT INTO files (target, path, size, mtime_ns, inode, ctime_ns, status,"
                " study_uid, series_uid, sop_uid, http_status, reason, message, attempts,"
                " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (target, path) DO UPDATE SET size = excluded.size,"
                " mtime_ns = excluded.mtime_ns, inode = excluded.inode,"
                " ctime_ns = excluded.ctime_ns, status = excluded.status,"
                " study_uid = coalesce(excluded.study_uid, study_uid),"
                " series_uid = coalesce(excluded.series_uid, series_uid),"
                " sop_uid = coalesce(excluded.sop_uid, sop_uid),"
                " http_status = excluded.http_status, reason = excluded.reason,"
                " message = excluded.message, attempts = excluded.attempts,"
                " updated = excluded.updated",
                (self.target, _key(path), stamp.size, stamp.mtime_ns, stamp.inode,
                 stamp.ctime_ns, status, *uids, http_status, reason,
                 None if message is None else readable(message), attempts, time.time()))

    def restamp(self, path: str, stamp: Stamp) -> None:
        """The file is still the one recorded (its UIDs say so) under a new inode or
        ctime: keep them, so that the next run need not read it again."""
        with self._writing():
            self.db.execute("UPDATE files SET inode = ?, ctime_ns = ? WHERE target = ?"
                            " AND path = ?", (stamp.inode, stamp.ctime_ns, self.target,
                                              _key(path)))
        self.commit()

    def count_attempts(self, path: str, attempts: int) -> None:
        """The runs that sent a file whose outcome is still unknown (it keeps its mark)."""
        with self._writing():
            self.db.execute("UPDATE files SET attempts = ? WHERE target = ? AND path = ?",
                            (attempts, self.target, _key(path)))

    def forget(self, path: str) -> None:
        """Drop a path's entry (a folder that failed, read since: its files have theirs)."""
        with self._writing():
            self.db.execute("DELETE FROM files WHERE target = ? AND path = ?",
                            (self.target, _key(path)))

    def commit(self) -> None:
        """Commit; a :class:`LocalFileError` when the disk refuses it, or when the path
        no longer names the file written (looked at once a second at most)."""
        if self.db.in_transaction:
            with self._writing():
                self.db.execute("COMMIT")
        if time.monotonic() - self._looked >= LOOK_EVERY_SECONDS:
            self._check_still_there()

    def _check_still_there(self) -> None:
        """Raise when the path no longer names the file written, deleted or replaced
        (a clean-up script, a restore): what this run wrote goes into a file no run will
        read, and the next run would send again every file it stored."""
        self._looked = time.monotonic()
        if self._identity is None or self.failed:
            return  # read only; or the run already stops on the journal's first failure
        what = what_became_of(self.path, self._identity)
        if what is None:
            return
        self.failed = True
        raise LocalFileError(f"the journal {self.path} was {what} during the run: this "
                             "run's outcomes are lost",
                             f"the next run does not know what this one stored: give it "
                             f"{option('skip_existing')} to ask the server instead of "
                             "sending those files again")

    def counts(self) -> dict[str, int]:
        """Files per status for this target (for --dry-run and the summary)."""
        rows = self.db.execute("SELECT status, count(*) FROM files WHERE target = ?"
                               " GROUP BY status", (self.target,))
        return dict(rows.fetchall())
