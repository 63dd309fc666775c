"""The records of a bulk store run: its options, each file's outcome, the summary.

:class:`BulkOptions` checks the run's options when built; :class:`Outcome` is what
happened to one file (the journal's entry, the report's row); :class:`Summary` counts the
run for the closing line and the exit code. :class:`Pending` is a file handed to the
uploader and not yet answered, and :func:`outcome_of` turns the uploader's result for it
into its outcome.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from . import bounds
from .errors import UsageError
from .optionnames import option
from .record import field, record
from .storecheck import dataset_uids

if TYPE_CHECKING:
    from .journal import Stamp
    from .storefiles import StoreResult

# unconfirmed: sent, then the run stopped before an answer or a search decided it.
# too new: modified less than --min-age ago (maybe still being written): left for later.
OutcomeStatus = Literal["stored", "already stored", "skipped", "failed", "conflict",
                        "unconfirmed", "too new"]
ConflictPolicy = Literal["fail", "skip", "overwrite"]
CONFLICT_POLICIES: tuple[ConflictPolicy, ...] = ("fail", "skip", "overwrite")
_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")
_REASON = re.compile(r"\(0x([0-9A-Fa-f]{4})\)")
UIDs = tuple[str | None, str | None, str | None]


@record(frozen=True)
class BulkOptions:
    journal: str | os.PathLike[str] | None = None
    retry_failed: bool = False  # send only what the journal says failed
    skip_existing: bool = False  # ask the server (per study) before sending
    verify_journal: bool = False  # ask the server whether it still holds what the journal says
    on_conflict: ConflictPolicy = "fail"
    dry_run: bool = False
    # Seconds: a file modified less long ago is left for a later run (still being written?)
    min_age: float = 0.0

    def __post_init__(self) -> None:
        bounds.MIN_AGE.check(option("min_age"), self.min_age)
        if self.on_conflict not in CONFLICT_POLICIES:
            raise UsageError(f"unknown {option('on_conflict', self.on_conflict)}",
                             f"use one of {', '.join(CONFLICT_POLICIES)}")
        if self.skip_existing and self.on_conflict == "overwrite":
            # The search sees UIDs, not bytes: the conflicts would pass as already stored.
            raise UsageError(f"{option('skip_existing')} cannot go with "
                             f"{option('on_conflict', 'overwrite')}",
                             "it would report the conflicts to overwrite as already stored; "
                             f"without it, {option('journal')} still keeps a rerun from "
                             "sending the files again")
        check_named("journal", self.journal)
        if self.retry_failed and not self.journal:
            raise UsageError(f"{option('retry_failed')} needs {option('journal')}",
                             "the journal is where the failures of earlier runs are")
        if self.verify_journal and not self.journal:
            raise UsageError(f"{option('verify_journal')} needs {option('journal')}",
                             f"without a journal, {option('skip_existing')} asks the "
                             "server about every file")


@record(frozen=True)
class Outcome:
    """What happened to one file, as the report and the journal record it."""

    path: Path
    status: OutcomeStatus
    size: int = 0
    uids: UIDs = (None, None, None)  # Study, Series, SOP Instance UID
    retrieve_url: str | None = None
    message: str | None = None
    http_status: int | None = None
    reason_code: int | None = None
    attempts: int = 0
    seconds: float | None = None
    confirmed_by: str | None = None  # stored: "answer" or "search" (see storefiles.StoreResult)
    # The journal holds this very outcome from an earlier run (a file skipped for the same
    # reason): the report has its row, the log need not tell it every night.
    known: bool = False
    sent: bool = False  # a request of this run carried it (see storefiles.StoreResult)

    def row(self) -> dict[str, object]:
        return {
            "path": str(self.path), "status": self.status,
            "study_instance_uid": self.uids[0], "series_instance_uid": self.uids[1],
            "sop_instance_uid": self.uids[2], "http_status": self.http_status,
            "reason_code": None if self.reason_code is None else f"0x{self.reason_code:04X}",
            "message": self.message, "attempts": self.attempts, "size": self.size,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "retrieve_url": self.retrieve_url, "confirmed_by": self.confirmed_by,
        }


@record
class Summary:
    """Counts for the closing line and the exit code."""

    counts: Counter[str] = field(default_factory=Counter)
    stored_bytes: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)
    not_retried: int = 0  # --retry-failed: files the journal does not list as failed
    # --verify-journal: files the journal lists as stored that the server no longer holds
    # (deleted since): sent again.
    gone_from_server: int = 0
    # The run stopped early (server unreachable, credentials, Ctrl-C or SIGTERM): files
    # never sent. Those sent without a deciding answer are "unconfirmed" (see below).
    not_attempted: int = 0
    # Stopped by Ctrl-C or SIGTERM before the input was counted: more files than
    # not_attempted were never sent.
    rest_uncounted: bool = False
    excluded: int = 0
    excluded_folders: int = 0  # left unwalked: their files are not counted
    other_shards: int = 0
    unmatched: list[str] = field(default_factory=list)
    # --dry-run: what would be sent
    would_send: int = 0
    would_send_bytes: int = 0
    studies: set[str] = field(default_factory=set)
    failed_statuses: set[int | None] = field(default_factory=set)  # of the failed files

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def unconfirmed(self) -> int:
        """Files sent whose answer never decided them and a search did not find (or
        could not run: the run stopped early, or the search failed): the server may
        hold them."""
        return self.counts["unconfirmed"]

    @property
    def failure_status(self) -> int | None:
        """The HTTP status every failed file got, when they all got the same one."""
        return next(iter(self.failed_statuses)) if len(self.failed_statuses) == 1 else None


@record
class Pending:
    """A file handed to the uploader, not yet answered."""

    key: str
    stamp: Stamp  # the file as it was when it was handed to the uploader
    started: float
    attempts: int
    sop_uid: str | None = None  # read when a conflict asks ("": none)
    # Why the journal says an earlier run skipped this path (a symbolic link loop, whose
    # folder changes; a file still not DICOM after a change): the same skip is not news.
    skipped_before: str | None = None


def file_uids(path: Path) -> UIDs:
    return dataset_uids(path) or (None, None, None)


def outcome_of(result: StoreResult, pending: Pending | None) -> Outcome:
    """The outcome of a file the uploader gave ``result`` for (``pending``: as it was
    handed over, if it was)."""
    message = result.message
    # An unconfirmed file's message may quote the status of the search that failed,
    # which is not its request's.
    http_match = (_HTTP_STATUS.search(message or "") if result.status != "unconfirmed"
                  else None)
    reason_match = _REASON.search(message or "")
    uids: UIDs = (None, None, result.sop_instance_uid)
    if result.study_instance_uid:
        uids = (result.study_instance_uid, result.series_instance_uid,
                result.sop_instance_uid)
    elif result.status != "skipped":  # a file read before sending knows its UIDs
        study, series, sop = file_uids(result.path)
        uids = (study, series, sop or result.sop_instance_uid)
    return Outcome(
        result.path, result.status, result.size or (pending.stamp.size if pending else 0), uids,
        result.retrieve_url, message,
        http_status=result.http_status or (int(http_match[1]) if http_match else None),
        reason_code=int(reason_match[1], 16) if reason_match else None,
        # Runs that sent the file: this one only if a request carried it.
        attempts=(pending.attempts if pending else 1) - (not result.sent),
        seconds=time.monotonic() - pending.started if pending else None,
        confirmed_by=result.confirmed_by, sent=result.sent)


def check_named(keyword: str, path: str | os.PathLike[str] | None) -> None:
    """Refuse an empty file name (a script's unset variable: ``--journal "$JOURNAL"``),
    which would otherwise mean no journal (every file sent again) or no report."""
    if path is not None and not os.fspath(path):
        raise UsageError(f"{option(keyword, '')} names no file",
                         f"give the {keyword}'s path; a variable in the command may be unset")

