"""The ``dcmweb store`` command: files, trees and lists, or DICOM JSON plus JPEG pairs.

Parses the options, builds the bulk run (bulk.py) and prints its outcome; the rules for
adding an option are in cli.py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from . import bounds
from .cligroup import Settings, bounded, pass_settings
from .errors import AllFailed, DcmwebError, PartialFailure, UsageError
from .optionnames import option
from .output import describe_start, describe_summary, plural
from .progress import StorePrinter

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from .bulkrecords import Summary
    from .jsonstore import JsonInstance


def _file_names(ctx: click.Context, param: click.Parameter, incomplete: str
                ) -> list[CompletionItem]:
    """On TAB, the shell's own file-name completion."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="file")]


@click.command(short_help="Store DICOM files, folders, masks and file lists.")
@click.argument("masks", nargs=-1, shell_complete=_file_names)
@click.option("--metadata", "metadata_files", multiple=True, metavar="FILE.json",
              type=click.Path(exists=True, dir_okay=False),
              help="Create an instance from this DICOM JSON and the --jpeg of the same "
                   "rank; repeatable.")
@click.option("--jpeg", "jpeg_files", multiple=True, metavar="IMAGE.jpg",
              type=click.Path(exists=True, dir_okay=False),
              help="The baseline JPEG image of the --metadata of the same rank; repeatable.")
@click.option("--generate-uids", is_flag=True,
              help="With --metadata: fill missing Study, Series and SOP Instance UIDs "
                   "(shown in the log line and the report).")
@click.option("--single-part", is_flag=True,
              help="Send each file alone as Content-Type: application/dicom "
                   "(GCP accepts it; Orthanc does not).")
@click.option("--batch-size", type=bounded(bounds.BATCH_SIZE), default=20, show_default=True,
              metavar="N",
              help="Files per multipart request.")
@click.option("--storage-class", metavar="CLASS",
              help="GCP storage class: STANDARD, NEARLINE, COLDLINE or ARCHIVE.")
@click.option("--study", "study_uid", metavar="UID",
              help="Store into this study (POST /studies/UID).")
@click.option("--report", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write one row per file sent or decided (path, status, UIDs, HTTP "
                   "status, reason, ...): CSV when FILE ends in .csv, else JSON lines; "
                   "created at the start.")
@click.option("--journal", metavar="FILE", type=click.Path(dir_okay=False),
              help="SQLite journal of what is stored: a rerun sends only the rest.")
@click.option("--retry-failed", is_flag=True,
              help="With --journal: send only the files that failed before.")
@click.option("--skip-existing", is_flag=True,
              help="Ask the server (one search per series, checked by an instance's "
                   "metadata: searches may lag behind deletes) and send only what it lacks.")
@click.option("--verify-journal", is_flag=True,
              help="With --journal: ask the server (one search per series) whether it "
                   "still holds what the journal lists as stored; send again what it lost.")
@click.option("--on-conflict", type=click.Choice(("fail", "skip", "overwrite")), default="fail",
              show_default=True,
              help="Same UIDs, other bytes on the server: fail, skip (record it) or "
                   "overwrite (delete the instance, store it again).")
@click.option("--min-age", type=bounded(bounds.MIN_AGE), default=0.0, metavar="SECONDS",
              show_default=True,
              help="Leave files modified less than SECONDS ago (maybe still being "
                   "copied in) for a later run, e.g. 60 for a nightly job; 0: off.")
@click.option("--files-from", metavar="FILE", multiple=True, shell_complete=_file_names,
              help="Read paths from FILE ('-': stdin), one per line; repeatable.")
@click.option("-0", "--null", "null_separated", is_flag=True,
              help="Paths in --files-from are NUL-separated (find -print0).")
@click.option("--include", metavar="GLOB", multiple=True,
              help="Only files whose name matches; with '/', whose path below the input "
                   "folder matches ('*' crosses '/', '**/' is any folders or none; "
                   "'tmp/': the files in a folder tmp); repeatable.")
@click.option("--exclude", metavar="GLOB", multiple=True,
              help="Leave out files and folders (all below them) whose name matches; with "
                   "'/', whose path below the input folder matches (2026/tmp, not "
                   "data/2026/tmp for 'store data'); repeatable.")
@click.option("--shard", metavar="K/N",
              help="Take share K of N (1 <= K <= N) by a stable hash of each path.")
@click.option("--progress-every", type=bounded(bounds.PROGRESS_EVERY), default=60.0,
              show_default=True, metavar="SECONDS",
              help="Without a terminal (cron, CI): a progress line this often; 0: never. "
                   "Given, its lines show even with -q.")
@click.option("--dry-run", is_flag=True,
              help="Say what would be sent (files, bytes, studies, skips) and send nothing.")
@pass_settings
def store(settings: Settings, masks: tuple[str, ...], metadata_files: tuple[str, ...],
          jpeg_files: tuple[str, ...], generate_uids: bool, single_part: bool,
          batch_size: int, storage_class: str | None, study_uid: str | None,
          report: str | None, journal: str | None, retry_failed: bool, skip_existing: bool,
          verify_journal: bool, on_conflict: str, min_age: float, files_from: tuple[str, ...],
          null_separated: bool, include: tuple[str, ...], exclude: tuple[str, ...],
          shard: str | None,
          progress_every: float, dry_run: bool) -> None:
    """Store files, directories (recursive), glob masks ('**' recurses) and file lists,
    or create instances from DICOM JSON metadata plus JPEG images (--metadata/--jpeg).

    MASK '-' reads paths from stdin (like --files-from -). Symbolic links to folders
    are followed, each folder once; a link loop is skipped. Files that are not DICOM
    Part-10 (and DICOMDIR, empty files) are skipped with a warning (with --journal,
    not again on later runs). Each stored file prints 'PATH uploaded as URL'; the
    run ends with 'Transferred SIZE in N files'.
    Files the journal (or the server) already holds are not sent again and are
    listed only with -v. Files sent without learning their fate (a run that stops
    early: exit 5, or 3 for credentials; a search that cannot settle a lost answer)
    are reported 'unconfirmed' (the server may hold them; a rerun with --journal
    asks it first); a run that stops counts the files it never sent as 'not
    attempted'.

    \b
    Example:
      dcmweb -m HOST store "./scans/**.dcm" --report store-report.jsonl
      dcmweb HOST store --metadata photo.json --jpeg photo.jpg --generate-uids
      dcmweb -m HOST store /data --journal /var/lib/dcmweb/j.db --report r.csv -q
      find /data -name '*.dcm' -print0 | dcmweb -m HOST store --files-from - -0
    """
    from .bulk import BulkStore
    from .bulkrecords import BulkOptions
    from .inputs import BackgroundCount, InputSpec, Shard, check_lists, unmatched_message
    from .storefiles import StoreOptions

    pairs = _json_pairs((*masks, *files_from), metadata_files, jpeg_files, generate_uids)
    if pairs:
        from .jsonstore import check_pairs

        check_pairs(pairs, generate_uids)  # a bad pair: exit 2 before anything is sent
    if report and report != "-":
        from .report import check_report_target  # csv: only for --report

        check_report_target(report)
    lists = tuple(files_from) + (("-",) if "-" in masks else ())
    # JSON + JPEG instances are not walked: their metadata files name them in the report.
    spec = InputSpec(masks=metadata_files) if pairs else InputSpec(
        masks=tuple(mask for mask in masks if mask != "-"), files_from=lists,
        null_separated=null_separated, include=include, exclude=exclude,
        shard=Shard.parse(shard) if shard else None)
    check_lists(spec)
    options = BulkOptions(journal=journal, retry_failed=retry_failed,
                          skip_existing=skip_existing, verify_journal=verify_journal,
                          on_conflict=on_conflict,  # type: ignore[arg-type]
                          dry_run=dry_run, min_age=min_age)
    output = settings.output
    counter = None
    if not pairs and (output.show_progress or settings.workers > 1 or progress_every):
        counter = BackgroundCount(spec)  # the progress total, and the job's size for shaping
    # -q hides the default progress lines, not the ones --progress-every asks for.
    every_asked = (click.get_current_context().get_parameter_source("progress_every")
                   is not ParameterSource.DEFAULT)
    with settings.client() as client:
        traffic = client.http.transport.traffic
        printer = StorePrinter(
            output, logging.getLogger("dcmweb").isEnabledFor(logging.DEBUG),
            lambda: len(pairs) if pairs else counter.total if counter else None,
            progress_every,
            every_asked=every_asked, stopped=lambda: run.stopped,  # run: made below
            sending=lambda: traffic.sending, awaiting=lambda: traffic.awaiting,
            total_bytes=lambda: counter.total_bytes if counter and counter.total is not None
            else None,
            outage=client.http.gate.outage, outage_limit=client.http.config.outage_limit)
        store_options = StoreOptions(single_part=single_part, batch_size=batch_size,
                                     storage_class=storage_class, study_uid=study_uid,
                                     workers=client.workers)
        run = BulkStore(client.http, client.base_url, spec, store_options, options,
                        report=output.stdout if report == "-" else report,
                        on_outcome=printer, count=counter)
        # Hidden by -q (cron runs stay silent on success), like every info line.
        output.log(describe_start(client.base_url, spec, store_options, options,
                                  None if dry_run else report, client.http.config.max_rate))
        printer.start()
        verdict: DcmwebError | None = None
        failed = True  # until the run ends well: -q shows the summary of a failed run
        try:
            summary = (run.run(client.iter_store_json(pairs, generate_uids=generate_uids),
                               len(pairs)) if pairs else run.run())
            verdict = _store_verdict(summary, dry_run)
            failed = verdict is not None
        finally:
            if counter:
                counter.stop()
            printer.stop()
            for mask in run.inputs.stats.unmatched:
                output.warning(unmatched_message(mask))
            done = run.summary.done
            # When there was nothing to store (no files, none DICOM), the error alone says it.
            nothing = not run.summary.not_attempted and not run.summary.not_retried and (
                not done or run.summary.counts["skipped"] == done)
            if run.started and (dry_run or not nothing):
                output.summary(describe_summary(
                    run.summary, dry_run=dry_run,
                    unavailable_seconds=client.http.stats.unavailable_seconds), failed=failed)
        if verdict is not None:
            raise verdict  # in the block: the client explains a wrong HOST


def _store_verdict(summary: Summary, dry_run: bool) -> DcmwebError | None:
    """The store run's exit: an error, or None when it went well. A dry run ends as
    the real run would, its files to send counting as stored."""
    counts = summary.counts
    would_send = summary.would_send if dry_run else 0
    total = summary.done + would_send
    failed = f"{counts['failed']} of {plural(total, 'file')}"
    done_some = counts["stored"] or counts["already stored"] or counts["conflict"] or would_send
    if summary.unconfirmed:
        # Sent, and neither an answer nor a search decided them: never "nothing stored".
        them = "it" if summary.unconfirmed == 1 else "them"
        unsure = f"unconfirmed (the server may hold {them})"
        if counts["failed"]:
            told = f"{failed} failed, {summary.unconfirmed} {unsure}"
        else:
            told = f"{summary.unconfirmed} of {plural(total, 'file')} {unsure}"
        hint = (f"rerun with {option('skip_existing')} (or this run's {option('journal')}) "
                f"to ask the server about {them} before sending {them} again")
        if done_some:
            return PartialFailure(told, hint)
        return AllFailed(f"nothing confirmed stored: {told}", hint)
    if counts["failed"] and not done_some:
        return AllFailed(f"dry run: nothing would be stored: {failed} would fail" if dry_run
                         else f"nothing stored: {failed} failed",
                         status=summary.failure_status)
    if counts["failed"]:
        return PartialFailure(f"dry run: {failed} would fail" if dry_run
                              else f"{failed} failed to store")
    if done_some or counts["too new"]:  # too new: nothing to do until a later run
        return None
    if summary.not_retried and not summary.done:
        return None  # --retry-failed with nothing left to retry
    if not summary.done:
        return UsageError("no files to store", _why_no_files(summary))
    return UsageError("no DICOM files to store", "all files were skipped as not DICOM")


def _why_no_files(summary: Summary) -> str:
    if summary.unmatched:
        return "check the paths and masks"
    if summary.excluded or summary.excluded_folders:
        return "--include/--exclude left out every file"
    if summary.other_shards:
        return "every file is left to the other shards"
    return "the file lists were empty"


def _json_pairs(masks: tuple[str, ...], metadata: tuple[str, ...], jpeg: tuple[str, ...],
                generate_uids: bool) -> list[JsonInstance]:
    """--metadata/--jpeg pairs by rank; none when files are stored instead."""
    from .jsonstore import JsonInstance

    if not metadata and not jpeg:
        if generate_uids:
            raise UsageError("--generate-uids goes with --metadata and --jpeg")
        if not masks:
            raise UsageError("nothing to store", "give files, folders or masks, or "
                             "--metadata FILE.json --jpeg IMAGE.jpg")
        return []
    if masks:
        raise UsageError("store files or --metadata/--jpeg pairs, not both in one run")
    if len(metadata) != len(jpeg):
        raise UsageError(f"{len(metadata)} --metadata but {len(jpeg)} --jpeg",
                         "give one --jpeg per --metadata, in the same order")
    return [JsonInstance(Path(m), Path(j)) for m, j in zip(metadata, jpeg, strict=True)]
