"""The ``--report FILE`` of a store run: one row per file, JSON lines or CSV by extension.

The file is created when the run starts (a cron job finds it even when the run is
stopped early) and every row is flushed as it is written, so a killed run leaves
every finished file in it.
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

from .errors import LocalFileError, UsageError
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


class ReportWriter:
    """Writes report rows to a file: ``.csv`` gives CSV with a header, anything else JSONL.

    A row the disk refuses (full) is a :class:`LocalFileError` naming the report, and
    what was written of it is cut off: the file keeps whole rows only. A report whose
    reader went away (``--report - | head``) is a LocalFileError too, once: the rows
    after it are dropped.
    """

    def __init__(self, target: str | os.PathLike[str] | IO[str]) -> None:
        self._file: IO[bytes] | None = None
        self._stream: IO[str] | None = None
        if isinstance(target, (str, os.PathLike)):
            self.name = os.fspath(target)
            try:
                # Unbuffered: a row is written at once, and none waits in a buffer that
                # close() would try to write again after a failure.
                self._file = open(self.name, "wb", buffering=0)  # noqa: SIM115
            except OSError as error:
                raise UsageError(f"cannot write the report {self.name}: {error.strerror}",
                                 f"give another {option('report')}") from None
        else:
            self._stream = target
            name = str(getattr(target, "name", "")).strip("<>")  # <stdout>: stdout
            self.name = name or "the report stream"
        self.lost = False  # its reader went away (a pipe): no more rows can reach it
        self._csv = self.name.lower().endswith(".csv")
        self._whole = 0  # bytes of the whole rows written: where a cut row is cut off
        if self._csv:
            self._put(_csv_line(COLUMNS))

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
                    self._file.seek(self._whole)
            raise LocalFileError(f"cannot write the report {self.name}: "
                                 f"{error.strerror or error}",
                                 f"free some space, or give {option('report')} another disk"
                                 ) from None

    def close(self) -> None:
        # A reader that went away may leave a row in the stream's buffer: dropped.
        with contextlib.suppress(BrokenPipeError) if self.lost else contextlib.nullcontext():
            if self._file is not None:
                self._file.close()
            elif self._stream is not None:
                self._stream.flush()


def _csv_line(values: Sequence[object]) -> str:
    line = io.StringIO()
    csv.writer(line).writerow(values)
    return line.getvalue()
