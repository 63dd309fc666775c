"""Issue 10's cases: metadata, rendered thumbnails, search as CSV, a retrieve process's
fixed cost, and a 500 MB study.

- metadata of a 2,000-instance study: `dcmweb retrieve studies/UID/metadata` and
  `Client.metadata` against one curl GET to a file and dicomweb-client's
  `retrieve_study_metadata`;
- 1,000 rendered 64x64 thumbnails: `dcmweb -m retrieve studies/S/series/R/rendered
  --viewport 64,64`, and `dcmweb -m retrieve --paths-from LIST` handed the instance list,
  against curl --parallel 4 (handed the same list), and against the curl script that
  does the same job (lists the series, then fetches in parallel);
- search 10,000 instances as CSV: `dcmweb search instances --format csv --fields ...`
  against curl's pages piped to `jq -r ... @csv`;
- a whole retrieve process for a 5 MB study against curl (the fixed cost);
- a 525 MB study to disk against curl -o.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from . import curl
from .cases import (
    ANY_TS_MULTIPART,
    Case,
    Client,
    Ctx,
    Sets,
    _loaded,
    check_identical,
    check_lib_count,
    check_wrapped,
    cli,
    curl_get,
    lib,
    python_floor,
)
from .data import DataSet
from .measure import Sample, run_sample

CSV_FIELDS = ("SOPInstanceUID", "SeriesInstanceUID", "InstanceNumber")
_TAGS = {"SOPInstanceUID": "00080018", "SeriesInstanceUID": "0020000E",
         "InstanceNumber": "00200013"}


def _series_of(dataset: DataSet) -> dict[str, list[str]]:
    """Series UID -> its SOP Instance UIDs (read from the files' heads)."""
    import pydicom

    series: dict[str, list[str]] = {}
    for path in dataset.files:
        ds = pydicom.dcmread(path, stop_before_pixels=True,
                             specific_tags=["SeriesInstanceUID", "SOPInstanceUID"])
        series.setdefault(str(ds.SeriesInstanceUID), []).append(str(ds.SOPInstanceUID))
    return series


def cli_handed(paths: Callable[[Ctx], list[str]], *args: str) -> Callable[[Ctx], Sample]:
    """The dcmweb command handed a list of paths: a file, written before the run (not
    timed), whose name replaces LIST in ``args``."""

    def run(ctx: Ctx) -> Sample:
        listed = ctx.scratch / "paths.txt"
        listed.write_text("".join(f"{path}\n" for path in paths(ctx)))
        return cli(*(str(listed) if arg == "LIST" else arg for arg in args))(ctx)

    return run


def curl_rendered_script(study: str, series: str, parallel: int = 4
                         ) -> Callable[[Ctx], Sample]:
    script = str(Path(__file__).with_name("curl-rendered-series.sh"))

    def run(ctx: Ctx) -> Sample:
        return run_sample(["bash", script, ctx.url, study, series, str(ctx.output),
                           str(parallel)], stderr=ctx.scratch / "curl.stderr")

    return run


def check_metadata_rows(expected: int, name: str = "metadata.json"
                        ) -> Callable[[Ctx, Sample], None]:
    def check(ctx: Ctx, sample: Sample) -> None:
        import json

        rows = len(json.loads((ctx.output / name).read_text()))
        sample.extra["rows"] = rows
        if rows != expected:
            sample.ok, sample.note = False, f"{rows} of {expected} rows"
        else:
            sample.extra["check"] = f"{rows} rows"

    return check


def check_images(expected: int) -> Callable[[Ctx, Sample], None]:
    def check(ctx: Ctx, sample: Sample) -> None:
        images = [p for p in ctx.output.rglob("*.jpg") if p.read_bytes()[:2] == b"\xff\xd8"]
        sample.extra["files"] = len(images)
        if len(images) != expected:
            sample.ok, sample.note = False, f"{len(images)} of {expected} JPEG files"
        else:
            sample.extra["check"] = f"{len(images)} JPEG files"

    return check


def check_lines(expected: int, name: str) -> Callable[[Ctx, Sample], None]:
    def check(ctx: Ctx, sample: Sample) -> None:
        lines = (ctx.output / name).read_text().count("\n")
        sample.extra["rows"] = lines
        if lines != expected:
            sample.ok, sample.note = False, f"{lines} of {expected} lines"
        else:
            sample.extra["check"] = f"{lines} lines"

    return check


def check_size(at_least: int) -> Callable[[Ctx, Sample], None]:
    """curl's one multipart file holds at least every stored byte (searching 500 MB for
    each file, as check_wrapped does, would take minutes)."""

    def check(ctx: Ctx, sample: Sample) -> None:
        size = sum(p.stat().st_size for p in ctx.output.rglob("*.multipart"))
        if size < at_least:
            sample.ok, sample.note = False, f"{size} bytes, fewer than the {at_least} stored"
        else:
            sample.extra["check"] = "size >= stored bytes"

    return check


def curl_jq_csv(pages: list[str]) -> Callable[[Ctx], Sample]:
    """The shell pipeline a user writes without dcmweb: curl the pages, jq them to CSV.

    A page that fails ends the run with curl's message (an earlier run reported "0 of
    10000 lines" and exit 0: every page but the last, empty one had failed, and curl
    exits with the last transfer's status). A 500 or 503 is retried twice, as dcmweb
    retries a 500."""
    fields = ", ".join(f'(.["{_TAGS[f]}"].Value[0] // "")' for f in CSV_FIELDS)

    def run(ctx: Ctx) -> Sample:
        ctx.output.mkdir(parents=True, exist_ok=True)
        config = curl.write_config(ctx.scratch / "pages.curlrc", (
            curl.block(f"{ctx.url}/{page}", headers={"Accept": "application/dicom+json"},
                       output="-")
            for page in pages))
        argv = curl.command(config, fail_early=True, retries=2)
        pipeline = (f"{shlex.join(argv)} | jq -r '.[] | [{fields}] | @csv'"
                    f" > {shlex.quote(str(ctx.output / 'out.csv'))}")
        return run_sample(["bash", "-o", "pipefail", "-c", pipeline],
                          stderr=ctx.scratch / "curl.stderr")

    return run


def build_issue10_cases(s: Sets, run_dir: Path) -> list[Case]:
    b = s.bodies
    meta = s.meta
    study = meta.studies[0]
    series = sorted(_series_of(meta).items())
    thumbs_series, thumbs = series[0]
    read_meta = _loaded(run_dir, "meta", [meta], [b["meta-20"]])
    metadata = Case(
        "metadata", f"Metadata of a {meta.count:,}-instance study (DICOM JSON)", "inst",
        meta.count, "curl",
        [
            Client("dcmweb-cli", "dcmweb retrieve studies/UID/metadata > file (CLI)",
                   "dcmweb-cli", cli("HOST", "retrieve", f"studies/{study}/metadata",
                                     stdout_name="metadata.json"),
                   check_metadata_rows(meta.count)),
            Client("dcmweb-lib", "dcmweb Client.metadata (library)", "dcmweb-lib",
                   lib("dcmweb-metadata", path=f"studies/{study}"),
                   check_lib_count("rows", meta.count)),
            Client("curl", "curl, one GET to a file", "curl",
                   curl_get(lambda ctx: [(f"studies/{study}/metadata", "metadata.json")],
                            "application/dicom+json"), check_metadata_rows(meta.count)),
            Client("dwc", "dicomweb-client retrieve_study_metadata", "dicomweb-client",
                   lib("dwc-metadata", study=study), check_lib_count("rows", meta.count)),
        ],
        shared_server=read_meta,
        notes=["dcmweb checks that the answer is a JSON array of objects before writing it "
               "(a 200 login page is an error); curl writes whatever comes."],
    )

    def rendered_paths(ctx: Ctx) -> list[tuple[str, str]]:
        base = f"studies/{study}/series/{thumbs_series}/instances"
        return [(f"{base}/{sop}/rendered?viewport=64,64", f"{sop}.jpg") for sop in thumbs]

    rendered = Case(
        "rendered", f"{len(thumbs):,} rendered 64x64 JPEG thumbnails, 4 at a time", "inst",
        len(thumbs), "curl-p4",
        [
            Client("dcmweb-cli-m", "dcmweb -m --workers 4 retrieve studies/S/series/R/rendered "
                   "--viewport 64,64 (CLI)", "dcmweb-cli",
                   cli("-m", "--workers", "4", "HOST", "retrieve",
                       f"studies/{study}/series/{thumbs_series}/rendered", "--viewport",
                       "64,64", "-o", "OUT"), check_images(len(thumbs))),
            Client("dcmweb-cli-list", "dcmweb -m --workers 4 retrieve --paths-from LIST "
                   "--viewport 64,64 (CLI, handed the list)", "dcmweb-cli",
                   cli_handed(lambda ctx: [path.partition("?")[0]
                                           for path, _ in rendered_paths(ctx)],
                              "-m", "--workers", "4", "HOST", "retrieve", "--paths-from",
                              "LIST", "--viewport", "64,64", "-o", "OUT"),
                   check_images(len(thumbs))),
            Client("curl-p4", "curl --parallel --parallel-max 4 (instance list given)", "curl",
                   curl_get(rendered_paths, "image/jpeg", parallel=4),
                   check_images(len(thumbs))),
            Client("curl-script", "curl script: list the series, jq, curl --parallel-max 4",
                   "curl", curl_rendered_script(study, thumbs_series),
                   check_images(len(thumbs))),
        ],
        shared_server=read_meta,
        notes=["dcmweb's first row lists the series' instances itself (one search); its "
               "second row and the first curl row are handed the same list of instance "
               "rendered paths, the script (benchmarks/curl-rendered-series.sh) lists the "
               "series as dcmweb's first row does."],
    )
    n_search = s.search.count
    page = 1000
    # The same requests dcmweb sends (--fields are asked for with includefield).
    include = "".join(f"includefield={field}&" for field in CSV_FIELDS)
    pages = [f"instances?{include}limit={page}&offset={off}"
             for off in range(0, n_search + 1, page)]
    read_search = _loaded(run_dir, "search", [s.search], [b["search-20"]])
    search_csv = Case(
        "search-csv", f"Search {n_search:,} instances as CSV ({len(CSV_FIELDS)} columns)",
        "inst", n_search, "curl-jq",
        [
            Client("dcmweb-cli", "dcmweb search instances --format csv --fields ... (CLI)",
                   "dcmweb-cli",
                   cli("HOST", "search", "instances", "--page-size", str(page), "--format",
                       "csv", "--fields", ",".join(CSV_FIELDS), stdout_name="out.csv"),
                   check_lines(n_search + 1, "out.csv")),
            Client("curl-jq", "curl (same pages, keep-alive, --retry 2) piped to "
                   "jq -r '... @csv'", "curl",
                   curl_jq_csv(pages), check_lines(n_search, "out.csv")),
        ],
        shared_server=read_search,
        notes=["dcmweb's CSV has a header line and readable values; jq's has neither."],
    )
    small_study = s.large10.studies[0]
    read_large10 = _loaded(run_dir, "large10", [s.large10], [b["large10-1"]])
    startup_retrieve = Case(
        "startup-retrieve", f"A whole retrieve process: one {s.large10.count}-instance "
        f"{s.large10.total_bytes / 1e6:.1f} MB study (fixed cost)", "run", 1, "curl",
        [
            Client("dcmweb-cli", "dcmweb retrieve studies/UID (CLI)", "dcmweb-cli",
                   cli("HOST", "retrieve", f"studies/{small_study}", "-o", "OUT"),
                   check_identical(s.large10)),
            Client("curl", "curl -o (one multipart file)", "curl",
                   curl_get(lambda ctx: [(f"studies/{small_study}", "study.multipart")],
                            ANY_TS_MULTIPART), check_wrapped(s.large10)),
            Client("python", "python -c pass (the interpreter's floor)", "baseline",
                   python_floor),
        ],
        shared_server=read_large10,
        repeat=5,
        notes=["dcmweb's time minus curl's is its fixed cost (start-up, imports)."],
    )
    huge = s.huge
    huge_mb = huge.total_bytes / 1e6
    huge_study = huge.studies[0]
    retrieve_huge = Case(
        "retrieve-500", f"Retrieve a {huge_mb:.0f} MB study ({huge.count} instances) to disk",
        "MB", huge_mb, "curl",
        [
            Client("dcmweb-cli", "dcmweb retrieve (CLI)", "dcmweb-cli",
                   cli("HOST", "retrieve", f"studies/{huge_study}", "-o", "OUT"),
                   check_identical(huge)),
            Client("curl", "curl -o (one multipart file)", "curl",
                   curl_get(lambda ctx: [(f"studies/{huge_study}", "study.multipart")],
                            ANY_TS_MULTIPART), check_size(huge.total_bytes)),
        ],
        shared_server=_loaded(run_dir, "huge", [huge], [b["huge-1"]]),
    )
    return [metadata, rendered, search_csv, startup_retrieve, retrieve_huge]
