"""What a store sends: which files go (triage), how they group into requests (batches),
and the types every step of a store shares (its options, each file's result).

Triage reads each file's head once: what is not DICOM, a DICOMDIR, a FIFO or a symbolic
link loop is skipped, what cannot be read fails, and neither is sent. Batches group small
files into one multipart request: per-request overhead, not bytes, dominates small
instances.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from .errors import UsageError
from .files import NOT_REGULAR_COUNTS, Part10Head, not_regular, read_part10_head
from .limits import out_of_descriptors
from .links import LINK_LOOP, loops_back
from .optionnames import option
from .parallel import Ready
from .paths import safe_uid
from .record import record
from .redact import redact_text

STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory: no server stores it
# unconfirmed: sent, and the run stopped before an answer or a search decided it.
Status = Literal["stored", "failed", "skipped", "unconfirmed"]
ConfirmedBy = Literal["answer", "search"]


@record(frozen=True)
class StoreOptions:
    single_part: bool = False
    batch_size: int = 20  # instances per multipart request
    batch_bytes: int = 16 * 1024 * 1024  # a larger file travels alone
    workers: int = 1
    storage_class: str | None = None
    study_uid: str | None = None  # POST to /studies/{uid} instead of /studies
    # With several workers, how many files may be read ahead to send the largest first,
    # so that a run ends on small requests, not on one worker sending a large file.
    largest_first: int = 0

    def __post_init__(self) -> None:
        if self.storage_class and self.storage_class.upper() not in STORAGE_CLASSES:
            raise UsageError(f"unknown storage class {self.storage_class!r}",
                             f"use one of {', '.join(STORAGE_CLASSES)}")
        if self.batch_size < 1 or self.workers < 1:
            raise UsageError(f"{option('batch_size')} and {option('workers')} must be at "
                             "least 1")
        if self.study_uid is not None and safe_uid(self.study_uid) is None:
            # It goes into the URL: '../x' or '1.2?x=1' would post somewhere else.
            raise UsageError(f"invalid study UID {self.study_uid!r}",
                             "give a study UID such as 1.2.840.113619.2.55.3")


@record(frozen=True)
class StoreResult:
    path: Path
    status: Status
    size: int = 0
    sop_instance_uid: str | None = None
    retrieve_url: str | None = None
    message: str | None = None  # why it failed or was skipped, or a server warning
    # How a stored file was proven: the STOW answer named it, or a search found it.
    confirmed_by: ConfirmedBy | None = None
    http_status: int | None = None  # of the STOW request that decided this file
    # The data set's own UIDs, read before sending (None when the file was not read).
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sent: bool = True  # False: decided from the file alone (not DICOM, unreadable)

    def __post_init__(self) -> None:
        # Messages quote the server, which may quote the credentials it was sent: hidden
        # here as in error messages, for library callers that log results.
        if self.message:
            object.__setattr__(self, "message", redact_text(self.message))


@record(frozen=True)
class Part10File:
    """A DICOM file to send, with what one read of its head told (never read again)."""

    path: Path
    head: Part10Head

    @property
    def size(self) -> int:
        return self.head.size

    @property
    def sop_instance_uid(self) -> str:
        return self.head.info.sop_instance_uid

    @property
    def names(self) -> set[str]:
        """The UIDs a STOW answer may name this file by: its File Meta's, its data set's."""
        names = {self.sop_instance_uid}
        if self.head.uids:
            names.add(self.head.uids[2])
        return names


# Why a file is skipped: its warning's, report's and journal's message.
EMPTY = "empty file"
NOT_DICOM = "not a DICOM Part-10 file (no DICM marker)"
DICOMDIR = "a DICOMDIR index, not an image"
# How the dry-run summary counts each reason: one, several ("1 empty file", "2 empty files").
SKIP_COUNTS = {EMPTY: ("empty file", "empty files"), NOT_DICOM: ("not DICOM", "not DICOM"),
               DICOMDIR: ("DICOMDIR index", "DICOMDIR indexes"),
               LINK_LOOP: ("symbolic link loop", "symbolic link loops"), **NOT_REGULAR_COUNTS}


def triage(entry: Path | Part10File) -> Part10File | StoreResult:
    """The file to send, or its outcome decided without sending (skipped: not DICOM, a
    DICOMDIR, a FIFO, a symbolic link loop; failed: missing or unreadable). A dry run
    decides the same way.
    A file whose head was read already is not read again."""
    head: Part10Head | None
    if isinstance(entry, Part10File):
        path, head = entry.path, entry.head
    else:
        path = entry
        odd = not_regular(path)
        unreadable = _unreadable_folder(path) if odd is not None else None
        if unreadable is not None:
            return StoreResult(path, "failed", message=unreadable, sent=False)
        if odd is not None and loops_back(path):  # the walk passes loops on, to be told
            return StoreResult(path, "skipped", message=LINK_LOOP, sent=False)
        if odd is not None:  # never opened: a FIFO would block the run forever
            return StoreResult(path, "skipped", message=odd, sent=False)
        head = read_part10_head(path, checked=True)
    if head is not None and head.info.sop_class_uid == DICOMDIR_CLASS:
        return StoreResult(path, "skipped", message=DICOMDIR, sent=False)
    if head is not None:
        return Part10File(path, head)
    try:
        with open(path, "rb"):
            empty = os.path.getsize(path) == 0
    except OSError as exc:  # asked for but unreadable: a failure, not a skip
        limit = out_of_descriptors(exc, f"cannot open {path}")
        if limit is not None:  # the file is not at fault: no other could be opened
            raise limit from exc
        return StoreResult(path, "failed", message=cannot_read(path, exc), sent=False)
    return StoreResult(path, "skipped", message=EMPTY if empty else NOT_DICOM, sent=False)


def cannot_read(path: Path, error: OSError) -> str:
    """Why a file cannot be opened; a dangling link says so and where it points (the
    bare "No such file" would send the user looking for a file that is listed)."""
    if isinstance(error, FileNotFoundError) and os.path.islink(path):
        return (f"cannot read: a broken symbolic link to {os.readlink(path)} "
                f"({error.strerror})")
    return f"cannot read: {error.strerror}"


def _unreadable_folder(path: Path) -> str | None:
    """Why a folder cannot be read (the walk passes such folders on), or None: its files
    are not skipped, they are lost, so the folder fails."""
    if not os.path.isdir(path):
        return None
    try:
        os.scandir(path).close()
    except OSError as exc:
        limit = out_of_descriptors(exc, f"cannot open the folder {path}")
        if limit is not None:
            raise limit from exc
        return f"cannot read the folder: {exc.strerror}"
    return None


# A request's files, or the outcome of a file decided without sending.
Batch = list[Part10File] | Ready[list[StoreResult]]


def batches(paths: Iterable[Path | Part10File], options: StoreOptions) -> Iterator[Batch]:
    """Group DICOM files into requests; the outcome of a file decided without sending
    comes as soon as it is decided, :class:`Ready` (not held until a batch is sent: a
    rerun may send nothing, and a list may name millions of such files)."""
    limit = 1 if options.single_part else options.batch_size
    files = _triaged(paths)
    if options.workers > 1 and options.largest_first > 1:
        files = _largest_first(files, options.largest_first)
    batch: list[Part10File] = []
    batch_bytes = 0
    uids: set[str] = set()
    for item in files:
        if isinstance(item, Ready):
            yield item
            continue
        # One UID per request: the answer is matched to files by SOP Instance UID.
        if batch and (len(batch) >= limit or batch_bytes + item.size > options.batch_bytes
                      or not uids.isdisjoint(item.names)):
            yield batch
            batch, batch_bytes, uids = [], 0, set()
        batch.append(item)
        batch_bytes += item.size
        uids |= item.names
    if batch:
        yield batch


Triaged = Iterator[Part10File | Ready[list[StoreResult]]]


def _triaged(paths: Iterable[Path | Part10File]) -> Triaged:
    for entry in paths:
        item = triage(entry)
        yield Ready([item]) if isinstance(item, StoreResult) else item


def _largest_first(files: Triaged, window: int) -> Triaged:
    """The files, the largest of the next ``window`` first (files of one size keep their
    order). Parallel requests then end together: a large file last in the input would
    otherwise be sent alone after the others are done (longest-first scheduling).
    Outcomes decided without sending pass at once."""
    waiting: list[tuple[int, int, Part10File]] = []
    for position, item in enumerate(files):
        if isinstance(item, Ready):
            yield item
            continue
        heapq.heappush(waiting, (-item.size, position, item))
        if len(waiting) >= window:
            yield heapq.heappop(waiting)[2]
    while waiting:
        yield heapq.heappop(waiting)[2]
