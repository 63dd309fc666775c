"""The ``dcmweb retrieve`` command: one path (today's retrieve), or several in one run
(``retrieve PATH...``, ``--paths-from FILE``).

Parses the options, calls the library and prints each file, the summary and the exit;
the rules for adding an option are in cli.py.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import bounds
from .cligroup import Settings, bounded, pass_settings
from .errors import AllFailed, DcmwebError, LocalFileError, PartialFailure, UsageError
from .output import Output, human_size, plural
from .paths import parse_resource_path
from .redact import redact_url

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from .client import Client
    from .leftover import Leftover
    from .pathlist import PathList
    from .retrieve import RetrieveResult


RETRIEVE_FORMATS = ("json", "xml", "jpeg", "png", "gif")
_FORMATS = {"metadata": ("json", "xml"), "rendered": ("jpeg", "png", "gif")}


@click.command(short_help="Download DICOM, metadata, frames, rendered images, bulk data.")
@click.argument("paths", metavar="[PATH]...", nargs=-1)
@click.option("-o", "--output", "output_path", type=click.Path(), metavar="PATH",
              help="Folder to write STUDY/SERIES/SOP.dcm (frames, images, bulk data) into "
                   "[default: .]; for metadata, a file [default: stdout, also -].")
@click.option("--type", "part_type", metavar="TYPE",
              help="Part type to ask for [default: application/dicom; transfer-syntax=*, "
                   "frames: application/octet-stream; transfer-syntax=*].")
@click.option("--transfer-syntax", metavar="UID",
              help="Ask for this transfer syntax ('*' = as stored, the default); "
                   "a shortcut for --type.")
@click.option("--single-part", is_flag=True,
              help="Ask for one instance as a bare application/dicom body (not multipart).")
@click.option("--format", "fmt", type=click.Choice(RETRIEVE_FORMATS), metavar="FORMAT",
              help="metadata: json (default) or xml; rendered: jpeg (default), png or gif.")
@click.option("--viewport", metavar="W,H", help="rendered: image size in pixels.")
@click.option("--window", metavar="C,W[,FN]",
              help="rendered: window center and width [, linear|linear-exact|sigmoid].")
@click.option("--quality", type=bounded(bounds.QUALITY), metavar="Q",
              help="rendered: JPEG quality, 1-100.")
@click.option("--paths-from", metavar="FILE", multiple=True,
              help="Read more paths from FILE ('-': stdin), one per line (blank lines and "
                   "# comments skipped); repeatable.")
@click.option("-0", "--null", "null_separated", is_flag=True,
              help="Paths in --paths-from are NUL-separated.")
@click.option("--dry-run", is_flag=True,
              help="Print the file each instance would be written to (found with a search) "
                   "and write nothing.")
@pass_settings
def retrieve(settings: Settings, paths: tuple[str, ...], output_path: str | None,
             part_type: str | None, transfer_syntax: str | None, single_part: bool,
             fmt: str | None, viewport: str | None, window: str | None,
             quality: int | None, paths_from: tuple[str, ...], null_separated: bool,
             dry_run: bool) -> None:
    """Download a study, series, instance, frames, rendered images, bulk data or
    metadata (or, with no PATH, the whole store).

    Files are written as OUTPUT/STUDY_UID/SERIES_UID/SOP_UID.dcm, each first to a
    temporary name and renamed when complete; a file of that name is replaced, whatever
    it holds (a rerun gives the same files; --dry-run names the ones that exist). The
    stored bytes are asked for (transfer-syntax=*). A --type other than DICOM (image/png)
    asks for each instance alone and writes its parts as SOP_UID_frame_N.png. PATH may
    end in /metadata (printed on stdout once all of it is checked), /rendered,
    /frames/1,3,5[/rendered] or
    /bulkdata/TAG, or be a BulkDataURI.

    Several PATHs (and --paths-from lists) are fetched in one run, with -m several
    items at a time across all of them: studies, series, instances, frames and
    rendered paths mix; metadata and bulk data go alone. Every path is checked
    before the first request; one that fails is counted, the others are saved.

    \b
    Example:
      dcmweb -m HOST retrieve studies/1.2.3 --output ./downloads
      dcmweb HOST retrieve studies/1.2.3/metadata > metadata.json
      dcmweb HOST retrieve studies/1.2.3/series/4.5/instances/6.7/frames/1,3 -o frames
      dcmweb HOST retrieve studies/1.2.3/series/4.5/rendered --format png --viewport 128,128
      dcmweb HOST retrieve studies/1.2.3 --output ./downloads --dry-run
      dcmweb HOST search instances StudyDate=20240101 --format paths \\
        | dcmweb -m HOST retrieve --paths-from - --format png --viewport 64,64 -o thumbs
    """
    from .wadopath import parse_wado_path

    output = settings.output
    if null_separated and not paths_from:
        raise UsageError("-0 reads the lists of --paths-from", "give --paths-from FILE")
    rendering = fmt in _FORMATS["rendered"] or viewport or window or quality is not None
    many = _path_list(paths, paths_from, null_separated)
    if many and rendering:
        many.render_all()  # studies, series or instances (search --format paths) to render
    path = many.first if many and len(many) == 1 else paths[0] if paths else None
    if many and len(many) == 1:
        many = None  # one path, from a list or not: a retrieve of that path
    elif not many and path and rendering:
        from .pathlist import rendered_path

        path = rendered_path(path)  # as a list of one is
    kinds = many.kinds if many else {parse_wado_path(path).kind}
    these = "these paths" if many else "this path"
    if fmt and not kinds & {kind for kind, formats in _FORMATS.items() if fmt in formats}:
        raise UsageError(f"--format {fmt} does not apply to {these}",
                         "json|xml for .../metadata, jpeg|png|gif for .../rendered")
    if "rendered" not in kinds and (viewport or window or quality is not None):
        raise UsageError("--viewport, --window and --quality apply to .../rendered paths")
    if dry_run and kinds != {"dicom"}:
        raise UsageError("--dry-run applies to the store, a study, series or instance path"
                         + ("s" if many else ""))
    with settings.client() as client:
        if dry_run:
            _dry_run_retrieve(output, client, many or [path], output_path or ".",
                              part_type=part_type, transfer_syntax=transfer_syntax,
                              single_part=single_part)
            return
        if kinds == {"metadata"}:
            if part_type or transfer_syntax or single_part:
                raise UsageError("--type, --transfer-syntax and --single-part do not apply "
                                 "to metadata", "choose JSON or XML with --format")
            # A trailing slash means a folder too, made or not: never a file named md/.
            if output_path is not None and (Path(output_path).is_dir()
                                            or output_path.endswith(("/", os.sep))):
                raise UsageError(f"--output {output_path} is a folder",
                                 "metadata goes to one file: give its name, or none for stdout")
            assert path is not None  # a metadata path was given
            answer = client.fetch_metadata(path, fmt or "json", parse=False)
            if output_path in (None, "-"):  # '-' is stdout, as for --report
                output.data(answer.raw)
                return
            from .saving import Saver

            size = Saver().save([answer.raw], Path(output_path))
            output.summary(f"Transferred {human_size(size)} of metadata to {output_path}")
            return
        render = None
        if "rendered" in kinds:
            from .rendered import RenderOptions

            render = RenderOptions(fmt or "jpeg", viewport, window, quality)
        elif viewport or window or quality:
            raise UsageError("--viewport, --window and --quality apply to .../rendered paths")
        results = client.iter_retrieve(many or path, output_path or ".", part_type=part_type,
                                       transfer_syntax=transfer_syntax,
                                       single_part=single_part, render=render)
        traffic = client.http.transport.traffic
        _report_retrieve(output, results, lambda: traffic.received)


def _path_list(paths: tuple[str, ...], lists: tuple[str, ...], null_separated: bool
               ) -> PathList | None:
    """The run's paths, checked whole, when there are several or a list; None for the
    one PATH (or none) of a plain retrieve."""
    if len(paths) < 2 and not lists:
        return None
    from .pathlist import PathList, listed_paths

    return PathList(listed_paths(paths, lists, null_separated))


def _dry_run_retrieve(output: Output, client: Client, paths: Iterable[str | None],
                      folder: str, *, part_type: str | None, transfer_syntax: str | None,
                      single_part: bool) -> None:
    from .preview import files_under_each
    from .retrieve import dicom_part_type, per_instance

    failed = replaced = 0
    # How many parts an instance of another type than DICOM gets is the server's to say.
    first_parts = per_instance(dicom_part_type(part_type, transfer_syntax))
    if first_parts:
        output.log("each instance is listed as its first part, SOP_frame_1: only the "
                   "server's answer says how many it has (a multi-frame one: SOP_frame_2 ...)")

    def lines() -> Iterator[str]:
        nonlocal failed, replaced
        for path, item in files_under_each(client, paths, folder, part_type=part_type,
                                           transfer_syntax=transfer_syntax,
                                           single_part=single_part):
            if isinstance(item, str):  # refused by the real run: a message, not a path
                failed += 1
                output.error(f"{path or 'the store'}: {item}")
                continue
            if item.replaces:
                replaced += 1
                output.log(f"{item.path} exists: the real run replaces it")
            yield f"{item.path}\n"

    count = output.text_lines(lines())
    replacing = f" ({plural(replaced, 'existing file')} replaced)" if replaced else ""
    failures = f"; {failed} would fail" if failed else ""
    at_least = "at least " if first_parts else ""
    output.summary(f"would write {at_least}{plural(count, 'file')} under {folder}{replacing}"
                   f"{failures}; nothing written (--dry-run)", failed=bool(failed))
    _raise_for_failures(count, failed, dry_run=True)


def _report_retrieve(output: Output, results: Iterator[RetrieveResult],
                     received: Callable[[], int]) -> None:
    """Each file's line as it is saved, the summary, the exit; on a terminal a bar of the
    bytes ``received`` (the files saved after it)."""
    from .signals import deferred, handed_over

    counts = {"saved": 0, "failed": 0, "gone": 0}
    gone: Counter[str] = Counter()  # listed, then no longer on the server: by unit
    size = 0
    failed = True  # until the run ends well: -q shows the summary of a failed run
    summary = True
    left: Leftover | None = None  # what the error that stopped the run left undone

    def report(result: RetrieveResult) -> None:
        nonlocal size
        with deferred():  # a file's line and its count: a signal waits for both
            counts[result.status] += 1
            source = redact_url(result.source)  # a BulkDataURI may be a signed URL
            if result.status == "saved":
                size += result.size
                output.log(f"{source} saved as {result.path}")
            elif result.status == "gone":  # not lost by this run: nothing was there
                gone[parse_resource_path(result.source).level] += 1
                output.warning(f"{source}: {result.message}")
            else:
                output.error(f"{source}: {result.message}")

    output.start_progress(received, note=lambda: plural(counts["saved"], "file") + (
        f", {counts['failed']} failed" if counts["failed"] else ""))
    try:
        try:
            for result in results:
                report(result)
        except KeyboardInterrupt as stop:
            # Ctrl-C or SIGTERM here, between two files: the run still hands over the
            # files it named meanwhile (other threads' ones too), for the summary; in the
            # run, it notes what it left undone on the stop (run_items).
            for result in handed_over(results, stop):
                report(result)
            left = getattr(stop, "leftover", None)
            raise
        except DcmwebError as error:
            left = error.leftover
            raise
        failed = bool(counts["failed"])
    except LocalFileError as error:
        if not counts["saved"]:
            raise  # nothing saved: exit 1
        # A full disk (or the space guard) stopped the run after files were saved: some
        # items failed (exit 6), and the summary counts the one it stopped beside them.
        counts["failed"] += 1
        raise PartialFailure(error.message, error.hint) from error
    except UsageError:
        # Bad input found as the run began (the results are made lazily): the error
        # alone says it, as when the options are refused.
        summary = bool(counts["saved"] or counts["failed"])
        raise
    finally:
        output.stop_progress()
        extras = [f"{counts['failed']} failed"] if counts["failed"] else []
        if gone:
            units = " and ".join(plural(count, unit, _UNITS.get(unit))
                                 for unit, count in gone.items())
            extras.append(f"{units} gone since {'it was' if counts['gone'] == 1 else 'they were'}"
                          " listed")
        if left is not None and (left.never or left.uncounted
                                 or (counts["saved"] and left.cut_off)):
            # (Not for the one item of a run that failed whole: its error says it all;
            # nor for a run stopped once every item was done.)
            extras.append(_describe_leftover(left))
        if summary:
            output.summary(f"Transferred {human_size(size)} in "
                           f"{plural(counts['saved'], 'file')}"
                           + (f"; {', '.join(extras)}" if extras else ""), failed=failed)
    _raise_for_failures(counts["saved"], counts["failed"])


_UNITS = {"study": "studies", "series": "series"}  # plurals that are not the noun + s


def _describe_leftover(left: Leftover) -> str:
    """``9 studies not retrieved (stopped, 2 of them cut off)``: what a stopped run never
    asked for or cut off, in the units it knows (a listing's or the paths given)."""
    items = left.items
    cut = sum(left.cut_off.values())
    notes = ["stopped"]
    if cut:
        notes.append("cut off" if cut == sum(items.values()) else f"{cut} of them cut off")
    text = " and ".join(plural(count, unit, _UNITS.get(unit))
                        for unit, count in items.items() if count)
    if not left.uncounted:
        return f"{text} not retrieved ({', '.join(notes)})"
    if not text:  # every item taken was done: the listing broke, or the run stopped it
        return "the rest of the listing not retrieved (stopped)"
    return f"{text} not retrieved ({', '.join(notes)}; the rest of the listing not counted)"


def _raise_for_failures(saved: int, failed: int, *, dry_run: bool = False) -> None:
    """A retrieve's exit: 1 when every item failed, 6 when some did (a dry run, as its
    real run would)."""
    items = plural(failed, "item")
    if failed and not saved:
        raise AllFailed(f"dry run: nothing would be retrieved ({items} would fail)" if dry_run
                        else f"nothing was retrieved ({items} failed)")
    if failed:
        raise PartialFailure(f"dry run: {items} would fail" if dry_run
                             else f"{items} could not be retrieved")
