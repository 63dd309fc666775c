"""The ``--report FILE`` of a store run: one row per file, JSON lines or CSV by extension.

The file is created when the run starts (a cron job finds it even when the run is
stopped early) and every row is flushed as it is written, so a killed run leaves
every finished file in it.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from typing import IO, Any

from .errors import UsageError
from .optionnames import option
from .output import readable
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
    """Writes report rows to a file: ``.csv`` gives CSV with a header, anything else JSONL."""

    def __init__(self, target: str | os.PathLike[str] | IO[str]) -> None:
        if isinstance(target, (str, os.PathLike)):
            name = os.fspath(target)
            try:
                self._handle: IO[str] = open(name, "w", newline="", encoding="utf-8")  # noqa: SIM115
            except OSError as error:
                raise UsageError(f"cannot write the report {name}: {error.strerror}",
                                 f"give another {option('report')}") from None
            self._owned = True
        else:
            self._handle = target
            name = getattr(target, "name", "")
            self._owned = False
        self._csv = csv.writer(self._handle) if str(name).lower().endswith(".csv") else None
        if self._csv:
            self._csv.writerow(COLUMNS)
            self._handle.flush()

    def write(self, row: dict[str, Any]) -> None:
        if row.get("message"):  # the server's words: it may quote the credentials sent
            row = {**row, "message": redact_text(row["message"])}
        row = {key: readable(value) if isinstance(value, str) else value
               for key, value in row.items()}
        if self._csv:
            self._csv.writerow(["" if row.get(key) is None else row[key] for key in COLUMNS])
        else:
            self._handle.write(json.dumps({key: row.get(key) for key in COLUMNS},
                                          ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._owned:
            self._handle.close()
        else:
            self._handle.flush()
