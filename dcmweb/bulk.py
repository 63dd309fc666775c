"""A bulk store run a cron job can trust: lazy inputs, a journal, a report, a summary.

The files stream from :mod:`inputs` through a filter (the journal's verdicts, --retry-
failed, --dry-run) into the STOW uploader. Every file ends as exactly one
:class:`Outcome`, recorded in the journal and the report and handed to ``on_outcome``
(the CLI prints it), in the caller's thread: the journal needs no locking. A run that
stops early gives the files it sent without learning their fate the outcome
"unconfirmed", and counts those it never sent as ``Summary.not_attempted`` (no outcome).
A journal or report the disk refuses, or a report whose reader went away (``--report -
| head``), stops the run as a failing ``on_outcome`` does: no new file is sent, those in
flight get their outcome, then the error is raised.

The run's records (options, outcomes, summary) are in :mod:`bulkrecords`; the questions
to the server before a file is sent in :mod:`onserver`; ``--on-conflict overwrite`` in
:mod:`conflicts`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from stat import S_ISREG
from typing import IO, TYPE_CHECKING

from .bulkrecords import BulkOptions, Outcome, Pending, Summary, check_named, outcome_of
from .conflicts import Overwriter, is_conflict
from .errors import (
    DcmwebError,
    LocalFileError,
    UsageError,
)
from .files import read_part10_head
from .http import Http
from .inputs import BackgroundCount, Inputs, InputSpec
from .journal import DONE, GONE, Entry, Journal, Stamp
from .onserver import OnServer
from .optionnames import option
from .parallel import Step, run_ahead
from .record import replace
from .signals import deferred, handed_over
from .store import iter_store
from .storefiles import Part10File, StoreOptions, StoreResult, triage

if TYPE_CHECKING:
    from .report import ReportWriter

# A stopped run counts the input it did not reach, for at most this long: a signal
# must not wait on the walk of a large tree (the background count usually has it).
INTERRUPT_COUNT_SECONDS = 1.0
SHAPING_WAIT = 0.2  # seconds the first request may wait for the job's size to be known
MIN_BATCH_BYTES = 1024 * 1024
LARGE_JOB_BATCH_BYTES = 4 * 1024 * 1024  # a tree too big to count at once
# The most files read ahead to send the largest first (their heads stay in memory).
LARGEST_FIRST_WINDOW = 2000
# Files decided ahead of the one whose turn it is, per worker: enough for each worker to
# search another series while the files of a few series wait in line.
LOOK_AHEAD = 4
log = logging.getLogger("dcmweb")
NAMED_AGAIN = "named again in the inputs"


class BulkStore:
    """One run: ``run()`` stores every input file and returns the :class:`Summary`."""

    def __init__(self, http: Http, base_url: str, spec: InputSpec,
                 store_options: StoreOptions | None = None,
                 options: BulkOptions | None = None, *,
                 report: str | os.PathLike[str] | IO[str] | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 stdin: IO[bytes] | None = None,
                 count: BackgroundCount | None = None) -> None:
        self.http = http
        self.base_url = base_url
        self.store_options = store_options or StoreOptions()
        self.options = options or BulkOptions()
        self.inputs = Inputs(spec, stdin)
        self.count = count  # the job's size, counted in the background (shaping, progress)
        self._source = iter(self.inputs)
        self._taken = 0  # files taken from the input so far
        self._left_out = 0  # of them, this run's own journal or report (see _own_files)
        self.on_outcome = on_outcome
        self.summary = Summary()
        self.target = f"{base_url}/studies"
        if self.store_options.study_uid:
            self.target += f"/{self.store_options.study_uid}"
        if isinstance(report, (str, os.PathLike)):
            check_named("report", report)
        self._report_target = report
        self._report: ReportWriter | None = None
        self._journal: Journal | None = None
        # The files sent and not yet answered, by absolute path: a file named twice
        # ('a', './a') is never in flight twice.
        self._pending: dict[str, Pending] = {}
        self._run_started = 0.0  # time.time(): journal entries since are this run's
        self._on_server = OnServer(http, base_url, self.store_options.study_uid)
        self._overwriter = (Overwriter(http, base_url, self.store_options)
                            if self.options.on_conflict == "overwrite" else None)
        self._own: set[tuple[int, int]] = set()  # see _own_files
        # Folders by journal key: whether the journal lists it, or a folder above it, as
        # failed (unreadable on an earlier run); and those listed whose files this run
        # has seen, forgotten when it ends well (see _in_failed_folder).
        self._failed_folders: dict[str, bool] = {}
        self._read_again: set[str] = set()
        # Folders of files left for a later run (--min-age): no entry of their own yet,
        # so a failed folder above them stays listed.
        self._left_for_later: set[str] = set()
        # Why the run stops once the files in flight are done: on_outcome raised, or the
        # journal or the report could not be written (a full disk, --report - whose
        # reader went away): see _stop.
        self._stop_error: Exception | None = None
        self._caller_failed = False  # on_outcome raised: it is not called again
        self.started = False  # the journal is ours and the run has begun
        # The store has stopped (an error, Ctrl-C): what comes now is its files' fate,
        # not progress.
        self.stopped = False

    # -- the run ------------------------------------------------------------------------
    def run(self, results: Iterable[StoreResult] | None = None, total: int = 0) -> Summary:
        """Store the inputs; or, given ``results`` (``total`` instances built from
        something other than files, e.g. JSON + JPEG), only record and report those."""
        given = results is not None
        if given:
            self._refuse_file_options()
        store: Generator[StoreResult, None, None] | None = None  # iter_store's, when ours
        self._refuse_one_file_for_both()
        if self.options.journal:
            self._journal = Journal(self.options.journal, self.target,
                                    read_only=self.options.dry_run)
        self._open_report()
        self.started = True
        self._run_started = time.time()
        try:
            self._own = self._own_files()
            if self.options.dry_run:
                for _ in self._to_send():
                    pass
            else:
                if results is None:
                    results = store = iter_store(self.http, self.base_url, self._to_send(),
                                                 self.shaped(), on_stop=self._note_stop,
                                                 halt=self._stopping)
                for result in results:
                    self._finish(result)
                    if given and self._stop_error is not None:
                        break  # one instance at a time: none is in flight
            if self._stop_error is not None:
                self.summary.not_attempted += self._left_over(given, total)
            elif self._journal and not self.options.dry_run:
                self._forget_folders_read_again(self._journal)
        except DcmwebError as error:
            # Stopped early: what was listed but not sent, and the rest of the input.
            self.summary.not_attempted += self._left_over(given, total)
            error.summary = self.summary
            raise
        except KeyboardInterrupt as stop:
            # Ctrl-C or SIGTERM: the files in flight come back unconfirmed (iter_store);
            # the rest is counted without making the stop wait on a long walk.
            stop.summary = self.summary  # type: ignore[attr-defined]  # as error.summary
            if given:
                self.summary.not_attempted += self._left_over(given, total)
            else:
                if store is not None:
                    self._hand_over(store, stop)
                rest, counted = self._rest_of_input(INTERRUPT_COUNT_SECONDS)
                self.summary.not_attempted += self._never_sent() + self._undecided() + rest
                self.summary.rest_uncounted = not counted
            raise
        finally:
            stats = self.inputs.stats
            self.summary.excluded = stats.excluded
            self.summary.excluded_folders = stats.excluded_folders
            self.summary.other_shards = stats.other_shards
            self.summary.unmatched = list(stats.unmatched)
            for kept in (self._report, self._journal):
                if kept:
                    try:
                        kept.close()
                    except LocalFileError as error:  # the last outcomes, or all, are lost
                        self._stop(error)
        if self._stop_error is not None:
            if isinstance(self._stop_error, DcmwebError):
                self._stop_error.summary = self.summary
            raise self._stop_error
        return self.summary

    def _open_report(self) -> None:
        """Open (and lock) the report once the journal is this run's: a report another
        run writes (exit 7) or that cannot be made stops the run before it starts, and
        leaves the journal as it was."""
        if self._report_target is None or self.options.dry_run:
            return
        from .report import ReportWriter  # csv: only for --report

        try:
            self._report = ReportWriter(self._report_target)
        except DcmwebError:
            if self._journal:
                with contextlib.suppress(LocalFileError):  # the report's error is the one
                    self._journal.close()
            raise

    def _own_files(self) -> set[tuple[int, int]]:
        """This run's journal (with SQLite's -wal and -shm files, and its lock) and
        report, as (device, inode): a walked tree that holds them (state kept on the data
        volume) is not sent them, nor warned about them every night."""
        names: list[str] = []
        if self.options.journal:
            journal = os.fspath(self.options.journal)
            # The lock, and (for SQLite that follows links) -wal and -shm, are beside the
            # file the path resolves to.
            names += [base + suffix for base in {journal, os.path.realpath(journal)}
                      for suffix in ("", "-wal", "-shm", ".lock")]
        if isinstance(self._report_target, (str, os.PathLike)):
            names.append(os.fspath(self._report_target))
        own: set[tuple[int, int]] = set()
        for name in names:
            with contextlib.suppress(OSError):  # not made (yet): nothing to leave out
                status = os.stat(name)
                own.add((status.st_dev, status.st_ino))
        return own

    def _note_stop(self) -> None:
        self.stopped = True

    def _refuse_one_file_for_both(self) -> None:
        """The journal and the report in one file: the report would overwrite the journal
        (or the journal the report), and the run would lose one of them."""
        report = self._report_target
        if (self.options.journal and isinstance(report, (str, os.PathLike))
                and _same_file(self.options.journal, report)):
            raise UsageError(f"{option('report')} and {option('journal')} name the same file "
                             f"{os.fspath(report)}", "give each its own file")

    def _stopping(self) -> bool:
        """The run is stopping (see _stop): no other batch starts, those being sent
        finish."""
        return self._stop_error is not None

    def _refuse_file_options(self) -> None:
        """The journal and --skip-existing decide by a file's path or the UIDs read from
        it: instances built from something else (JSON + JPEG, new UIDs on each run with
        --generate-uids) would be stored again on every run. Overwrite would delete the
        server's instance and then resend a file: given results have none to resend.
        A study to store into is not where given results went."""
        for keyword, asked in (("journal", self.options.journal),
                               ("skip_existing", self.options.skip_existing)):
            if asked:
                raise UsageError(f"{option(keyword)} works on DICOM files, not on JSON + JPEG "
                                 "pairs", "a rerun would store the pairs again; store them "
                                 "without it")
        if self.options.on_conflict == "overwrite":
            raise UsageError(f"{option('on_conflict', 'overwrite')} works on DICOM files, "
                             "not on JSON + JPEG pairs",
                             "it would delete the server's instance without storing the "
                             "pair again; delete it first (dcmweb HOST delete studies/S/"
                             "series/R/instances/I), then store the pair")
        if self.store_options.study_uid:
            raise UsageError(f"{option('study_uid')} works on DICOM files, not on JSON + "
                             "JPEG pairs", "a pair goes to the study its JSON names "
                             "(0020000D)")

    def _hand_over(self, store: Generator[StoreResult, None, None],
                   stop: KeyboardInterrupt) -> None:
        """Record the results a stopped store hands over (its files in flight, as
        unconfirmed). A signal that came while a result was being recorded here, not
        inside the store, is passed on to it first; one that came inside it has made it
        hand them over already, and throwing into it again only re-raises."""
        for result in handed_over(store, stop):
            # A second signal does not cut the hand-over short: it records a few
            # batches' files, without a request.
            with contextlib.suppress(KeyboardInterrupt):
                self._finish(result)

    def _left_over(self, given: bool, total: int) -> int:
        """Not attempted, when the run stops early: what was listed but not sent (the
        files sent got a result, stored, failed or unconfirmed), and the rest of the
        input (of given results, those that did not come)."""
        if given:
            return total - self.summary.done
        return self._never_sent() + self._undecided() + self._rest_of_input()[0]

    def _never_sent(self) -> int:
        """The files listed but not sent when the run stopped. Each was marked sending
        with this run counted as an attempt (a kill leaves it so: the run may have sent
        it); that count is taken back, the mark kept, so a rerun still checks them. A
        journal that refused a write is left alone: the files are counted all the same,
        and their attempts count this run once too often."""
        journal = self._journal
        if journal and not journal.failed:
            with contextlib.suppress(LocalFileError):  # the run's error is raised instead
                for pending in self._pending.values():
                    journal.count_attempts(pending.key, pending.attempts - 1)
                journal.commit()
        return len(self._pending)

    def _rest_of_input(self, seconds: float = float("inf")) -> tuple[int, bool]:
        """The files of the input not taken yet, and whether that is all of them: the
        background count's total when it has one, else a walk of the rest for at most
        ``seconds``."""
        if self.count is not None and self.count.total is not None:
            return max(0, self.count.total - self._taken), True
        deadline = time.monotonic() + seconds
        rest = 0
        for _ in self._source:
            rest += 1
            if time.monotonic() > deadline:
                return rest, False
        return rest, True

    def shaped(self) -> StoreOptions:
        """Batches that keep every worker busy: at least two requests per worker when the
        job's size is known in time, and never one worker holding a few huge batches.

        Small files still share requests (per-request overhead dominates them); large
        files travel alone, as before, and a file larger than a request's share of the
        job is sent first: last in the input, it would leave the other workers
        idle while it alone is sent. Without a count in time the tree is large, so
        there are many batches anyway and only their bytes are capped.
        """
        options = self.store_options
        if options.workers <= 1 or options.single_part:
            return options
        count = self.count
        if count is None or not count.wait(SHAPING_WAIT) or not count.total:
            return replace(options, batch_bytes=min(options.batch_bytes, LARGE_JOB_BATCH_BYTES))
        requests = 2 * options.workers
        per_request = -(-count.total // requests)  # ceiling division
        share = count.total_bytes // requests
        uneven = count.largest > share
        return replace(options, batch_size=max(1, min(options.batch_size, per_request)),
                       batch_bytes=max(MIN_BATCH_BYTES, min(options.batch_bytes, share)),
                       largest_first=min(count.total, LARGEST_FIRST_WINDOW) if uneven else 0)

    def _to_send(self) -> Iterator[Path | Part10File]:
        """The files to send; the others get their outcome here, without a request.

        A file is decided in its turn, in the input's order; the searches (and read-
        backs) of the next files run meanwhile on up to --workers threads, so that over
        a slow link checking a file before sending it costs no more than sending it.
        """
        workers = self.store_options.workers
        for item in run_ahead(self._deciding(), workers, LOOK_AHEAD * workers,
                              halt=self._stopping):
            if item is not None:
                yield item

    def _deciding(self) -> Iterator[tuple[str, Step[Path | Part10File | None]]]:
        for path in self._source:
            self._taken += 1
            if self._stop_error is not None:
                return  # taken from the input, never sent: counted as undecided
            yield os.path.abspath(path), self._decide(path)

    def _undecided(self) -> int:
        """The files taken from the input that were neither decided nor left out: the
        run stopped before their turn (the search of a check that failed, Ctrl-C)."""
        return self._taken - self._left_out - self._placed

    @property
    def _placed(self) -> int:
        """The files taken from the input that the summary counts: decided, in flight,
        not retried, to send (a dry run) or not attempted."""
        summary = self.summary
        return (summary.done + len(self._pending) + summary.not_retried + summary.would_send
                + summary.not_attempted)

    def _decide(self, path: Path) -> Step[Path | Part10File | None]:
        """The file (or its head, when read here) to send, or None when it was decided
        here (journal, --skip-existing, --dry-run). What the server must be asked is
        yielded, as a Question, and the answer comes back (see parallel.run_ahead)."""
        journal = self._journal
        key = os.path.abspath(path)
        try:
            stat = os.stat(path)
        except OSError:
            if self.options.dry_run:
                self._plan(path)  # fails it, as the upload would
                return None
            return path  # the uploader reports why it cannot be read
        if (stat.st_dev, stat.st_ino) in self._own:
            log.debug("%s: left out: this run's own journal or report", path)
            self._left_out += 1
            return None
        if key in self._pending:  # named again (a list with 'a' and './a'): sent once
            self._emit(Outcome(path, "skipped", stat.st_size,
                               message=f"{NAMED_AGAIN}; sent once"), record=False)
            return None
        entry = journal.lookup(key) if journal else None
        stamp = Stamp.of(stat)
        same = entry is not None and entry.stamp.same_size_and_mtime(stamp)
        if entry is not None and same and entry.status in (*DONE, "skipped"):
            same = self._still_the_file(key, path, entry, stamp)
        this_run = entry is not None and entry.updated >= self._run_started
        if (entry is not None and same and entry.status in DONE and not this_run
                and self.options.verify_journal
                and not (yield self._on_server.still_held(path, entry))):
            self.summary.gone_from_server += 1
            log.info("%s: stored by an earlier run (journal), but the server no longer "
                     "holds it", path)
        elif entry is not None and same and entry.status in DONE:
            self._emit(Outcome(path, "already stored", stat.st_size,
                               (entry.study_uid, entry.series_uid, entry.sop_uid),
                               message=f"{NAMED_AGAIN}; stored earlier in this run" if this_run
                               else "stored by an earlier run (journal)",
                               attempts=entry.attempts), record=False)
            return None
        if entry is not None and same and entry.status == "skipped":
            self._emit(Outcome(path, "skipped", stat.st_size, message=entry.message,
                               known=True), record=False)
            return None
        # A failed file fixed since (its size or mtime changed) is retried all the same, and
        # so are the files of a folder that could not be read (fixed since: they are seen).
        unfinished = entry is not None and entry.status in ("failed", "sending")
        if journal and self._in_failed_folder(journal, os.path.dirname(key)):
            unfinished = True
        if self.options.retry_failed and not (same or unfinished):
            self.summary.not_retried += 1
            return None
        if self._too_new(path, stat):
            self._left_for_later.add(os.path.dirname(key))
            return None
        # A killed run never learned these files' outcome; --skip-existing asks
        # about every file the journal does not know.
        unsure = entry is not None and same and entry.status == "sending"
        item: Path | Part10File = path
        if unsure or (self.options.skip_existing and not same):
            head = read_part10_head(path)
            found = yield self._on_server.found(
                path, head, stat.st_size, "found on the server after an interrupted run"
                if unsure else f"already on the server ({option('skip_existing')})",
                entry.attempts if entry is not None and same else 0, read_back=unsure)
            if found is not None:  # other bytes (failed) are a conflict
                self._conclude(found, None)
                return None
            if head is not None:  # read once: the upload uses what was read here
                item = Part10File(path, head)
        if self.options.dry_run:
            self._plan(item)
            return None
        attempts = (entry.attempts if entry is not None and same else 0) + 1
        if journal:  # a mark the journal refuses raises: the file is not sent
            journal.mark_sending(key, stamp, (None, None, None), attempts=attempts)
        self._pending[key] = Pending(
            key, stamp, time.monotonic(), attempts,
            skipped_before=entry.message if entry and entry.status == "skipped" else None)
        return item

    def _in_failed_folder(self, journal: Journal, folder: str) -> bool:
        """Whether the journal lists ``folder`` (a file's, by its journal key) or a folder
        above it as failed: unreadable on an earlier run, whose files it never saw. One
        lookup per folder a run sees."""
        failed = self._failed_folders.get(folder)
        if failed is None:
            entry = journal.lookup(folder)
            listed = entry is not None and entry.status == "failed"
            if listed:
                self._read_again.add(folder)
            parent = os.path.dirname(folder)
            failed = listed or (parent != folder and self._in_failed_folder(journal, parent))
            self._failed_folders[folder] = failed
        return failed

    def _forget_folders_read_again(self, journal: Journal) -> None:
        """A run that ended well saw every file of the folders it read that the journal
        listed as failed: each file has its own entry now, and the folders' go (unless a
        file below one was left for a later run by --min-age)."""
        for folder in self._read_again:
            if not any(left == folder or left.startswith(folder + os.sep)
                       for left in self._left_for_later):
                journal.forget(folder)
        journal.commit()

    def _too_new(self, path: Path, stat: os.stat_result) -> bool:
        """--min-age: a file modified moments ago may still be being copied in (a
        modality, rsync, an SMB copy): it gets a row, and no journal entry, so that a
        later run sends it whole. Its mtime within that much of the clock either way: a
        file server's clock a little ahead counts too, a file dated years ahead does not."""
        min_age = self.options.min_age
        age = time.time() - stat.st_mtime
        if not min_age or abs(age) >= min_age or not S_ISREG(stat.st_mode):
            return False  # a folder (unreadable, a loop) is not being copied in
        self._emit(Outcome(path, "too new", stat.st_size, message=(
            f"modified {max(age, 0):.0f} s ago, less than the minimum age of {min_age:g} s: "
            "left for a later run")), record=False)
        return True

    def _still_the_file(self, key: str, path: Path, entry: Entry, stamp: Stamp) -> bool:
        """Whether a file the journal decided (stored, skipped) and whose size and mtime
        are unchanged is still the file it decided: the same inode and ctime, or else
        (a copy put in its place: ``cp -p``, ``rsync -a``, ``tar x``; an entry of a
        version 1 journal) the same UIDs, read from the file's head. Those keep its new
        inode and ctime, so that the next run need not read it again."""
        if entry.stamp.same_inode_and_ctime(stamp):
            return True
        head = read_part10_head(path)  # not DICOM (or a FIFO, not opened): no UIDs
        uids = head.uids if head is not None and head.uids else (None, None, None)
        if uids != (entry.study_uid, entry.series_uid, entry.sop_uid):
            return False
        if self._journal and not self.options.dry_run:
            self._journal.restamp(key, stamp)
        return True

    def _plan(self, entry: Path | Part10File) -> None:
        """--dry-run: decide as the store would (skip, fail or send), and count; a file
        that would fail is reported as failed, as in a real run."""
        item = triage(entry)
        if isinstance(item, StoreResult):
            if item.status == "failed":
                self._emit(outcome_of(item, None), record=False)
            else:
                self.summary.counts["skipped"] += 1
                self.summary.skip_reasons[item.message or "skipped"] += 1
            return
        self.summary.would_send += 1
        self.summary.would_send_bytes += item.size
        if item.head.uids:
            self.summary.studies.add(item.head.uids[0])

    def _finish(self, result: StoreResult) -> None:
        # Ctrl-C waits for one file's bookkeeping: cut in the middle, the file would be
        # out of the pending set with no row (see signals.deferred).
        with deferred():
            pending = self._pending.pop(os.path.abspath(result.path), None)
            self._conclude(outcome_of(result, pending), pending)

    def _conclude(self, outcome: Outcome, pending: Pending | None) -> None:
        """Record the outcome; a conflict goes by --on-conflict."""
        if is_conflict(outcome):
            if self._overwriter is not None and None not in outcome.uids:
                self._overwrite(self._overwriter, outcome, pending)  # requests: not deferred
                return
            if self.options.on_conflict == "skip":
                outcome = replace(outcome, status="conflict")
        self._emit(outcome, pending)

    def _overwrite(self, overwriter: Overwriter, outcome: Outcome, pending: Pending | None
                   ) -> None:
        """--on-conflict overwrite (see conflicts.Overwriter.overwrite): what stops the
        run there stops it here too, once the file has its row (see _stop)."""
        if self._stopping():  # no new request once the run stops
            self._emit(replace(outcome, message=f"not overwritten, the run is stopping; "
                                                f"{outcome.message}"), pending)
            return
        stop = overwriter.overwrite(outcome, pending, self._pending.values(),
                                    lambda done: self._emit(done, pending))
        if stop is not None:
            self._stop(stop)

    def _emit(self, outcome: Outcome, pending: Pending | None = None, *,
              record: bool = True) -> None:
        """Count, journal (unless the journal itself decided), report, tell the caller.
        An unconfirmed file keeps its journal mark "sending": a rerun asks the server
        about it before sending it again. Ctrl-C waits for it (see deferred)."""
        with deferred():
            self._emitting(outcome, pending, record)

    def _emitting(self, outcome: Outcome, pending: Pending | None, record: bool) -> None:
        if (outcome.status == "skipped" and pending is not None
                and pending.skipped_before == outcome.message):
            outcome = replace(outcome, known=True)
        summary = self.summary
        summary.counts[outcome.status] += 1
        if outcome.status == "stored":
            summary.stored_bytes += outcome.size
        if self._overwriter is not None:
            self._overwriter.remember(outcome)
        if outcome.status == "skipped":
            summary.skip_reasons[outcome.message or "skipped"] += 1
        elif outcome.status == "failed":
            summary.failed_statuses.add(outcome.http_status)
        if self._journal and record and not self.options.dry_run:
            try:
                self._journal_outcome(self._journal, outcome, pending)
            except LocalFileError as error:  # the file keeps its mark, if it has one
                self._stop(error)
        if self._report:
            try:
                self._report.write(outcome.row())
            except LocalFileError as error:
                self._stop(error)
        if self.on_outcome and not self._caller_failed:
            try:
                self.on_outcome(outcome)
            except Exception as error:  # the caller's bug, or its way to stop
                self._caller_failed = True
                self._stop(error)

    def _journal_outcome(self, journal: Journal, outcome: Outcome,
                         pending: Pending | None) -> None:
        key = pending.key if pending else os.path.abspath(outcome.path)
        if outcome.status == "unconfirmed":
            # Sent (or maybe): this run counts for the next one's attempts.
            journal.count_attempts(key, outcome.attempts)
        else:
            try:
                stamp = Stamp.of(os.stat(outcome.path))
            except OSError:
                stamp = GONE
            if pending:  # the file as sent, unless it changed meanwhile: then sent again
                stamp = pending.stamp if pending.stamp.same_size_and_mtime(stamp) else GONE
            journal.record(key, stamp, outcome.status, uids=outcome.uids,
                           http_status=outcome.http_status, reason=outcome.reason_code,
                           message=outcome.message, attempts=outcome.attempts)
        journal.commit()

    def _stop(self, error: Exception) -> None:
        """Send no new file; the files in flight still get their outcome, in the journal
        and the report as far as they can be written; then run() raises the first error."""
        if self._stop_error is None:
            self._stop_error = error


def _same_file(first: str | os.PathLike[str], second: str | os.PathLike[str]) -> bool:
    """Whether two names are one file: one inode when both exist (a link), else one
    resolved path (neither created yet)."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return os.path.realpath(first) == os.path.realpath(second)
