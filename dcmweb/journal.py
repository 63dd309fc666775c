"""A SQLite journal of per-file store outcomes, so a rerun sends only what is not stored.

Each file is keyed by its absolute path and the store it went to, and remembered with
its size and modification time: a file changed since is sent again. A file is marked
``sending`` when its batch is handed to the pool and gets its outcome when the
server's answer is read; a kill in between leaves ``sending``, which the next run
checks with a search before it sends anything again.

WAL mode with ``synchronous=NORMAL``: every commit survives a killed process (the
data is in the WAL file, in the OS's page cache); a power cut may lose the last
commits, never the database, and a lost outcome only means that file is checked or
sent again. Each outcome is committed as it arrives.

Two runs cannot share a journal: an exclusive ``flock`` on ``FILE.lock`` is held for
the whole run and a second run stops at once with :class:`JournalBusy` (exit 7).
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO

from .errors import DcmwebError, ExitStatus, UsageError
from .optionnames import option
from .output import readable
from .record import record

SCHEMA_VERSION = 1
DONE = ("stored", "already stored")  # statuses that mean the server holds the file
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    target TEXT NOT NULL,           -- the STOW URL the file went to
    path TEXT NOT NULL,             -- absolute path
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
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


class JournalBusy(DcmwebError):
    """Another run holds the journal (an overlapping cron run)."""

    exit_status = ExitStatus.BUSY


@record(frozen=True)
class Entry:
    size: int
    mtime_ns: int
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


def _lock(path: str) -> IO[bytes]:
    """An exclusive lock on ``path`` for as long as the returned file stays open."""
    handle = open(path, "a+b")  # noqa: SIM115 - held open for the whole run
    try:
        if sys.platform == "win32":
            import msvcrt

            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            except OSError:
                raise BlockingIOError from None
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise
    return handle


class Journal:
    """The outcomes of one store target in one journal file; used by one thread."""

    def __init__(self, path: str | os.PathLike[str], target: str) -> None:
        self.path = os.fspath(path)
        self.target = target
        try:
            self._lock = _lock(self.path + ".lock")
        except BlockingIOError:
            raise JournalBusy(f"the journal {self.path} is in use by another dcmweb run",
                              f"wait for it to finish, or use another {option('journal')}"
                              ) from None
        except OSError as error:
            raise UsageError(f"cannot open the journal {self.path}: {error.strerror}") from None
        import sqlite3  # only with --journal: a store without one never loads it

        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise UsageError(f"the journal {self.path} was written by a newer dcmweb")
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as error:
            self._lock.close()
            raise UsageError(f"{self.path} is not a dcmweb journal: {error}") from None
        self._in_transaction = False

    def close(self) -> None:
        self.commit()
        self.db.close()
        self._lock.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lookup(self, path: str) -> Entry | None:
        row = self.db.execute(
            "SELECT size, mtime_ns, status, study_uid, series_uid, sop_uid, message, attempts,"
            " updated"
            " FROM files WHERE target = ? AND path = ?", (self.target, _key(path))).fetchone()
        return Entry(*row) if row else None

    def _begin(self) -> None:
        if not self._in_transaction:
            self.db.execute("BEGIN")
            self._in_transaction = True

    def mark_sending(self, path: str, size: int, mtime_ns: int,
                     uids: tuple[str | None, str | None, str | None]) -> None:
        """The file is about to be sent; its outcome is unknown until :meth:`record`.
        Committed at once: a run killed after the request left must leave the mark, so
        that the next run asks the server before sending the file again. Not counted as
        an attempt: a run stopped before sending it never did (see :meth:`record`)."""
        self._begin()
        self.db.execute(
            "INSERT INTO files (target, path, size, mtime_ns, status, study_uid, series_uid,"
            " sop_uid, attempts, updated) VALUES (?, ?, ?, ?, 'sending', ?, ?, ?, 0, ?)"
            " ON CONFLICT (target, path) DO UPDATE SET size = excluded.size,"
            " mtime_ns = excluded.mtime_ns, status = 'sending', study_uid = excluded.study_uid,"
            " series_uid = excluded.series_uid, sop_uid = excluded.sop_uid,"
            " updated = excluded.updated",
            (self.target, _key(path), size, mtime_ns, *uids, time.time()))
        self.commit()

    def record(self, path: str, size: int, mtime_ns: int, status: str, *,
               uids: tuple[str | None, str | None, str | None] = (None, None, None),
               http_status: int | None = None, reason: int | None = None,
               message: str | None = None, attempts: int = 0) -> None:
        """A file's outcome and the runs that sent it so far (kept uncommitted until
        :meth:`commit`)."""
        self._begin()
        self.db.execute(
            "INSERT INTO files (target, path, size, mtime_ns, status, study_uid, series_uid,"
            " sop_uid, http_status, reason, message, attempts, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (target, path) DO UPDATE SET size = excluded.size,"
            " mtime_ns = excluded.mtime_ns, status = excluded.status,"
            " study_uid = coalesce(excluded.study_uid, study_uid),"
            " series_uid = coalesce(excluded.series_uid, series_uid),"
            " sop_uid = coalesce(excluded.sop_uid, sop_uid), http_status = excluded.http_status,"
            " reason = excluded.reason, message = excluded.message,"
            " attempts = excluded.attempts, updated = excluded.updated",
            (self.target, _key(path), size, mtime_ns, status, *uids, http_status, reason,
             None if message is None else readable(message), attempts, time.time()))

    def count_attempts(self, path: str, attempts: int) -> None:
        """The runs that sent a file whose outcome is still unknown (it keeps its mark)."""
        self._begin()
        self.db.execute("UPDATE files SET attempts = ? WHERE target = ? AND path = ?",
                        (attempts, self.target, _key(path)))

    def commit(self) -> None:
        if self._in_transaction:
            self.db.execute("COMMIT")
            self._in_transaction = False

    def counts(self) -> dict[str, int]:
        """Files per status for this target (for --dry-run and the summary)."""
        rows = self.db.execute("SELECT status, count(*) FROM files WHERE target = ?"
                               " GROUP BY status", (self.target,))
        return dict(rows.fetchall())
