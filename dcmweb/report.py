"""The ``--report FILE`` of a store run: one row per file, JSON lines or CSV by extension.

The file is created when the run starts (a cron job finds it even when the run is
stopped early) and every row is flushed as it is written, so a killed run leaves
every finished file in it.

A report file is watched as the journal is: locked for the run (a second run given it
stops with exit 7 before sending anything), written in append mode so that a report
emptied meanwhile (logrotate's copytruncate) gets the next rows at its start (a CSV
under its header again) rather than after a hole of NUL bytes, and looked at when the
run ends: deleted or replaced by another file, its rows are lost, which fails the run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import stat
from collections.abc import Sequence
from typing import IO, Any

from .errors import Busy, LocalFileError, UsageError
from .locks import file_identity, lock, what_became_of
from .optionnames import option
from .output import shown
from .redact import redact_text

COLUMNS = ("path", "status", "study_instance_uid", "series_instance_uid", "sop_instance_uid",
           "http_status", "reason_code", "message", "attempts", "size", "seconds",
           "retrieve_url", "confirmed_by")


def check_report_target(name: str) -> None:
    """Refuse a report that cannot be created (its folder missing or not writable) before
    a run sends anything, as a missing journal folder is: the run would otherwise stop
    on it after its inputs were walked."""
    folder = os.path.dirname(name) or "."
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write the report {name}: there is no folder {folder}",
                         f"create it, or give another {option('report')}")
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(name)
                                                    and not os.access(name, os.W_OK)):
        raise UsageError(f"cannot write the report {name}: permission denied",
                         f"give a {option('report')} in a folder you can write to")
    if not _replaceable(name):
        raise UsageError(f"{option('report', name)} is an existing file that is not a dcmweb"
                         " report: not overwritten", "give a new file name: .csv or .jsonl")


def _replaceable(name: str) -> bool:
    """Whether writing the report may replace what ``name`` holds: nothing, or an earlier
    report. Any other file is kept: ``--report scan.dcm other.dcm`` is an easy slip, and
    would otherwise destroy an input."""
    try:
        if not stat.S_ISREG(os.stat(name).st_mode):
            return True  # a FIFO, /dev/stdout: not read here (it could block)
        with open(name, "rb") as handle:
            start = handle.read(64)
    except OSError:
        return True  # missing, or unreadable: opening it for writing says what is wrong
    # Reports of every version start so (the columns after these two have grown).
    return not start or start.startswith((b"path,status,", b'{"path": '))


class ReportBusy(Busy):
    """Another run writes the report (two jobs given the same --report)."""


class ReportWriter:
    """Writes report rows to a file: ``.csv`` gives CSV with a header, anything else JSONL.

    A row the disk refuses (full) is a :class:`LocalFileError` naming the report, and
    what was written of it is cut off: the file keeps whole rows only. A report whose
    reader went away (``--report - | head``) is a LocalFileError too, once: the rows
    after it are dropped. A file another run writes is a :class:`ReportBusy`; a file
    deleted or replaced while written is a LocalFileError from :meth:`close`.
    """

    def __init__(self, target: str | os.PathLike[str] | IO[str]) -> None:
        self._file: IO[bytes] | None = None
        self._stream: IO[str] | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of a regular file
        if isinstance(target, (str, os.PathLike)):
            self.name = os.fspath(target)
            self._file = self._open()
        else:
            self._stream = target
            name = str(getattr(target, "name", "")).strip("<>")  # <stdout>: stdout
            self.name = name or "the report stream"
        self.lost = False  # its reader went away (a pipe): no more rows can reach it
        self._csv = self.name.lower().endswith(".csv")
        self._whole = 0  # bytes of the whole rows written: where a cut row is cut off
        self._header = _csv_line(COLUMNS) if self._csv else ""
        self._put(self._header)

    def _open(self) -> IO[bytes]:
        """The file, locked and emptied: appended to, never truncated before it is locked
        (the rows of the run that holds it are kept). A FIFO or a device (/dev/stdout) is
        neither locked nor emptied."""
        try:
            # Unbuffered: a row is written at once, and none waits in a buffer that
            # close() would try to write again after a failure.
            handle = open(self.name, "ab", buffering=0)  # noqa: SIM115
            status = os.fstat(handle.fileno())
        except OSError as error:
            raise UsageError(f"cannot write the report {self.name}: {error.strerror}",
                             f"give another {option('report')}") from None
        if not stat.S_ISREG(status.st_mode):
            return handle
        try:
            lock(handle)
        except BlockingIOError:
            handle.close()
            raise ReportBusy(f"the report {self.name} is in use by another dcmweb run",
                             f"wait for it to finish, or give another {option('report')}"
                             ) from None
        except OSError:
            pass  # a file system without locks (some network ones): written all the same
        try:
            handle.truncate(0)  # an earlier report, replaced
        except OSError as error:
            handle.close()
            raise UsageError(f"cannot write the report {self.name}: {error.strerror}",
                             f"give another {option('report')}") from None
        self._identity = file_identity(status)
        return handle

    def write(self, row: dict[str, Any]) -> None:
        if self.lost:
            return
        # The server's words may quote the credentials sent, and a URL may carry them.
        row = {**row, **{key: redact_text(row[key]) for key in ("message", "retrieve_url")
                         if row.get(key)}}
        if self._csv:
            # As the log lines show them: unambiguous, and no escape sequence for `cat`.
            self._put(_csv_line([shown(value) if isinstance(value, str) else
                                 "" if value is None else value
                                 for value in (row.get(key) for key in COLUMNS)]))
        else:
            # Every value as it is, so a script finds the file again by its path: a byte
            # of a name that is not UTF-8 (a lone surrogate) as the JSON escape \udcXX,
            # which Python's json module reads back into that name.
            line = json.dumps({key: row.get(key) for key in COLUMNS}, ensure_ascii=False)
            self._put(line.encode("utf-8", "backslashreplace").decode("utf-8") + "\n")

    def _put(self, line: str) -> None:
        try:
            if self._file is None:
                assert self._stream is not None
                self._stream.write(line)
                self._stream.flush()
                return
            data = line.encode("utf-8")
            if self._identity is not None:  # a file: appended to, so where others left it
                written_before, self._whole = self._whole, os.fstat(self._file.fileno()).st_size
                if written_before and not self._whole:
                    # Emptied since the last row (logrotate's copytruncate): a CSV gets its
                    # header again, so that the file reads as a whole report, as its copy.
                    data = self._header.encode("utf-8") + data
            written = 0
            while written < len(data):
                written += self._file.write(data[written:])
            self._whole += written
        except BrokenPipeError:
            # --report - | head: reported once, the rows after it are dropped.
            self.lost = True
            raise LocalFileError(f"cannot write the report to {self.name}: its reader went "
                                 "away (broken pipe); the run was stopped",
                                 "read the whole report, or write it to a file") from None
        except OSError as error:
            if self._file is not None:
                with contextlib.suppress(OSError):  # a FIFO or a device cannot be cut
                    self._file.truncate(self._whole)
            raise LocalFileError(f"cannot write the report {self.name}: "
                                 f"{error.strerror or error}",
                                 f"free some space, or give {option('report')} another disk"
                                 ) from None

    def close(self) -> None:
        """Close; a :class:`LocalFileError` when the name no longer names the file written
        (deleted, or replaced: a clean-up script, a rename): its rows are lost."""
        # A reader that went away may leave a row in the stream's buffer: dropped.
        with contextlib.suppress(BrokenPipeError) if self.lost else contextlib.nullcontext():
            if self._file is not None:
                try:
                    self._check_still_there()
                finally:
                    self._file.close()
            elif self._stream is not None:
                self._stream.flush()

    def _check_still_there(self) -> None:
        what = None if self._identity is None else what_became_of(self.name, self._identity)
        if what is None:
            return
        raise LocalFileError(f"the report {self.name} was {what} during the run: this run's "
                             "rows are not in it",
                             f"the server holds what the summary counts; a rerun with this "
                             f"run's {option('journal')}, or with {option('skip_existing')}, "
                             "lists those files as already stored")


def _csv_line(values: Sequence[object]) -> str:
    line = io.StringIO()
    csv.writer(line).writerow(values)
    return line.getvalue()
