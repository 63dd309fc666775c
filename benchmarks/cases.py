"""The cases: each one is a job, done by every client on the same server, several times.

Store cases start a fresh, empty Orthanc before every single run (duplicates are
ignored by Orthanc and would make later runs look fast). Read cases load one Orthanc
once and every client reads the same data from it. Within a repetition the clients
take turns in a rotating order, so drift on a shared machine hits all of them alike.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcmweb.cligroup import LOCAL_WORKERS

from . import curl, servers
from .data import CONTENT_TYPE, DataSet
from .measure import BIN, ROOT, Sample, run_library, run_sample

DCMWEB = str(BIN / "dcmweb")
CLI_M = f"(CLI, {LOCAL_WORKERS} workers)"  # what -m runs against a server that is not Google's
ANY_TS_MULTIPART = 'multipart/related; type="application/dicom"; transfer-syntax=*'
JSON = {"Accept": "application/dicom+json"}


@dataclass
class Ctx:
    """What one run gets: the server, a scratch folder, and the output folder to fill."""

    url: str
    scratch: Path
    output: Path


@dataclass
class Client:
    key: str
    label: str
    tool: str  # dcmweb-cli, dcmweb-lib, curl, dicomweb-client, baseline
    run: Callable[[Ctx], Sample]
    check: Callable[[Ctx, Sample], None] | None = None
    note: str = ""


@dataclass
class Case:
    key: str
    title: str
    unit: str  # what the rate counts: "inst" or "MB"
    amount: float  # instances or megabytes moved
    reference: str  # key of the curl client the ratios refer to
    clients: list[Client]
    fresh_server: Callable[[], servers.Orthanc] | None = None  # store: one per run
    shared_server: Callable[[], servers.Orthanc] | None = None  # read: one per case
    after_run: Callable[[servers.Orthanc, Sample], None] | None = None
    notes: list[str] = field(default_factory=list)
    repeat: int = 1  # runs per repetition (start-up cases take the median of several)


# -- checks ------------------------------------------------------------------------------------
def _dcm_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.dcm"))


def check_identical(dataset: DataSet) -> Callable[[Ctx, Sample], None]:
    """Every instance saved once as SOP.dcm, byte-identical to the file that was stored."""

    def check(ctx: Ctx, sample: Sample) -> None:
        files = _dcm_files(ctx.output)
        got = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        same = sum(got.get(uid) == sha for uid, sha in dataset.sha256.items())
        leftovers = [p for p in ctx.output.rglob(".dcmweb-*")]
        sample.extra["files"] = len(files)
        sample.extra["identical"] = same
        if same != dataset.count or len(files) != dataset.count or leftovers:
            sample.ok = False
            sample.note = (f"{same} of {dataset.count} files byte-identical, {len(files)} files"
                           + (f", {len(leftovers)} temp files left" if leftovers else ""))
        else:
            sample.extra["check"] = "byte-identical"

    return check


def check_same_content(dataset: DataSet) -> Callable[[Ctx, Sample], None]:
    """For clients that re-encode (dicomweb-client + pydicom): every instance present."""

    def check(ctx: Ctx, sample: Sample) -> None:
        files = _dcm_files(ctx.output)
        uids = {p.stem for p in files}
        got = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        same = sum(got.get(uid) == sha for uid, sha in dataset.sha256.items())
        sample.extra["files"] = len(files)
        sample.extra["identical"] = same
        if not set(dataset.sha256) <= uids:
            sample.ok = False
            sample.note = f"{len(set(dataset.sha256) & uids)} of {dataset.count} instances saved"
        else:
            sample.extra["check"] = ("byte-identical" if same == dataset.count
                                     else f"all saved; {same} byte-identical (re-encoded)")

    return check


def check_wrapped(dataset: DataSet) -> Callable[[Ctx, Sample], None]:
    """curl's outputs: every stored file's bytes appear inside the multipart answers."""

    def check(ctx: Ctx, sample: Sample) -> None:
        blobs = [p.read_bytes() for p in sorted(ctx.output.rglob("*.multipart"))]
        found = 0
        if len(blobs) == dataset.count:  # one answer per instance: match by name
            by_name = {p.stem: p for p in ctx.output.rglob("*.multipart")}
            for uid in dataset.sha256:
                path = by_name.get(uid)
                if path is not None:
                    found += _contains_file(path.read_bytes(), dataset, uid)
        else:
            joined = b"".join(blobs)
            found = sum(_contains_file(joined, dataset, uid) for uid in dataset.sha256)
        sample.extra["files"] = len(blobs)
        sample.extra["identical"] = found
        if found != dataset.count:
            sample.ok = False
            sample.note = f"{found} of {dataset.count} instances found in the answers"
        else:
            sample.extra["check"] = "bytes inside multipart (not split)"

    return check


_FILE_CACHE: dict[str, bytes] = {}


def _contains_file(blob: bytes, dataset: DataSet, uid: str) -> bool:
    if _FILE_CACHE.get("__set__") != dataset.name.encode():
        _FILE_CACHE.clear()
        _FILE_CACHE["__set__"] = dataset.name.encode()
        for path in dataset.files:
            data = path.read_bytes()
            _FILE_CACHE[hashlib.sha256(data).hexdigest()] = data
    return _FILE_CACHE[dataset.sha256[uid]] in blob


def check_rows(expected: int) -> Callable[[Ctx, Sample], None]:
    def check(ctx: Ctx, sample: Sample) -> None:
        rows = sample.extra.get("rows")
        if rows is None:
            rows = _count_rows(ctx.output)
            sample.extra["rows"] = rows
        if rows != expected:
            sample.ok = False
            sample.note = f"{rows} of {expected} rows"
        else:
            sample.extra["check"] = f"{rows} rows"

    return check


def _count_rows(folder: Path) -> int:
    import json

    total = 0
    for path in sorted(folder.glob("*")):
        text = path.read_text()
        if path.suffix == ".jsonl":
            total += sum(1 for line in text.splitlines() if line.strip())
        elif text.strip():
            total += len(json.loads(text))
    return total


def check_lib_count(key: str, expected: int) -> Callable[[Ctx, Sample], None]:
    def check(ctx: Ctx, sample: Sample) -> None:
        got = sample.extra.get(key)
        if got != expected:
            sample.ok = False
            sample.note = f"{got} of {expected} {key}"
        else:
            sample.extra["check"] = f"{got} {key}"

    return check


def after_store(expected: int) -> Callable[[servers.Orthanc, Sample], None]:
    def check(server: servers.Orthanc, sample: Sample) -> None:
        count = server.instance_count()
        sample.extra["stored"] = count
        if count != expected:
            sample.ok = False
            errors: dict[str, int] = sample.extra.get("errors") or {}
            why = ""
            if errors:
                top = max(errors, key=lambda name: errors[name])
                why = f"; {sum(errors.values())} calls raised, most often {top} ({errors[top]}x)"
            failures: dict[str, int] = sample.extra.get("failures") or {}
            if failures:
                top = max(failures, key=lambda reason: failures[reason])
                why += f"; most often {top} ({failures[top]}x)"
            sample.note = (sample.note + "; " if sample.note else "") + (
                f"server holds {count} of {expected} instances{why}")
        else:
            sample.extra["check"] = f"{count} stored"

    return check


# -- clients -----------------------------------------------------------------------------------
def cli(*args: str, stdout_name: str | None = None) -> Callable[[Ctx], Sample]:
    """The dcmweb command as a user types it; HOST and OUT are filled in per run."""

    def run(ctx: Ctx) -> Sample:
        argv = [DCMWEB] + [ctx.url if a == "HOST" else str(ctx.output) if a == "OUT" else a
                           for a in args]
        ctx.output.mkdir(parents=True, exist_ok=True)
        stdout = ctx.output / stdout_name if stdout_name else None
        return run_sample(argv, stdout=stdout, stderr=ctx.scratch / "cli.stderr")

    return run


def lib(kind: str, **task: Any) -> Callable[[Ctx], Sample]:
    def run(ctx: Ctx) -> Sample:
        ctx.output.mkdir(parents=True, exist_ok=True)
        full = {"kind": kind, "url": ctx.url, "output": str(ctx.output), **task}
        return run_library(full, ctx.scratch)

    return run


def curl_store(bodies: list[Path], parallel: int = 0) -> Callable[[Ctx], Sample]:
    headers = {"Content-Type": CONTENT_TYPE, "Accept": "application/dicom+json"}

    def run(ctx: Ctx) -> Sample:
        config = curl.write_config(ctx.scratch / "store.curlrc", (
            curl.block(f"{ctx.url}/studies", headers=headers, data_file=body) for body in bodies))
        return run_sample(curl.command(config, parallel=parallel),
                          stderr=ctx.scratch / "curl.stderr")

    return run


def parallel_curls(bodies: list[Path]) -> list[Client]:
    """curl's parallel store at 4 transfers and at -m's worker count: a store target is
    met against the faster of the two in each repetition (curl's best configuration)."""
    return [Client(f"curl-p{n}", f"curl --parallel --parallel-max {n}, 1 per request", "curl",
                   curl_store(bodies, parallel=n)) for n in sorted({4, LOCAL_WORKERS})]


def curl_get(paths: Callable[[Ctx], list[tuple[str, str]]], accept: str,
             parallel: int = 0) -> Callable[[Ctx], Sample]:
    """GET each (url path, output name) in one curl process, keep-alive (or parallel)."""

    def run(ctx: Ctx) -> Sample:
        ctx.output.mkdir(parents=True, exist_ok=True)
        config = curl.write_config(ctx.scratch / "get.curlrc", (
            curl.block(f"{ctx.url}/{path}", headers={"Accept": accept},
                       output=str(ctx.output / name)) for path, name in paths(ctx)))
        return run_sample(curl.command(config, parallel=parallel),
                          stderr=ctx.scratch / "curl.stderr")

    return run


def curl_script(level: str, parallel: int = 4) -> Callable[[Ctx], Sample]:
    script = str(Path(__file__).with_name("curl-retrieve-store.sh"))

    def run(ctx: Ctx) -> Sample:
        return run_sample(["bash", script, ctx.url, str(ctx.output), level, str(parallel)],
                          stderr=ctx.scratch / "curl.stderr")

    return run


def python_floor(ctx: Ctx) -> Sample:
    return run_sample([sys.executable, "-c", "pass"])


def click_floor(ctx: Ctx) -> Sample:
    """The interpreter and click alone: what any command line built on click pays before
    its own code runs (issue 8's store targets are judged against it)."""
    return run_sample([sys.executable, "-c", "import click"])


# -- the cases ---------------------------------------------------------------------------------
@dataclass
class Sets:
    small: DataSet
    large: DataSet
    large10: DataSet
    search: DataSet
    real: DataSet
    bodies: dict[str, list[Path]]
    meta: DataSet  # issue 10: metadata and rendered thumbnails
    huge: DataSet  # issue 10: a 500 MB study


def _loaded(run_dir: Path, name: str, sets: list[DataSet],
            bodies: list[list[Path]]) -> Callable[[], servers.Orthanc]:
    def start() -> servers.Orthanc:
        server = servers.fresh_orthanc(run_dir / f"orthanc-{name}")
        expected = 0
        for dataset, body in zip(sets, bodies, strict=True):
            expected += dataset.count
            servers.load(server, body, expected)
        return server

    return start


def build_cases(s: Sets, run_dir: Path) -> list[Case]:
    b = s.bodies

    def fresh() -> servers.Orthanc:
        return servers.fresh_orthanc(run_dir / "orthanc-store")

    small_mb = s.small.total_bytes / 1e6
    store_small_seq = Case(
        "store-small-seq", f"Store {s.small.count:,} x {small_mb / s.small.count * 1000:.1f} KB "
        "instances, sequential", "inst", s.small.count, "curl-1",
        [
            Client("dcmweb-cli", "dcmweb store (CLI)", "dcmweb-cli",
                   cli("HOST", "store", str(s.small.root))),
            Client("dcmweb-lib", "dcmweb Client.store (library)", "dcmweb-lib",
                   lib("dcmweb-store", folder=str(s.small.root))),
            Client("curl-1", "curl, 1 instance per request, keep-alive", "curl",
                   curl_store(b["small-1"])),
            Client("curl-20", "curl, 20 per request (dcmweb's batch), keep-alive", "curl",
                   curl_store(b["small-20"])),
            Client("dwc-1", "dicomweb-client, store_instances([ds]) per instance",
                   "dicomweb-client", lib("dwc-store", folder=str(s.small.root), per_call=1)),
            Client("dwc-all", "dicomweb-client, store_instances(all datasets)",
                   "dicomweb-client", lib("dwc-store", folder=str(s.small.root))),
        ],
        fresh_server=fresh, after_run=after_store(s.small.count),
        notes=["curl sends prebuilt multipart bodies (building them is not timed): the wire's "
               "limit. dicomweb-client's time includes pydicom.dcmread of every file, which a "
               "user of it must do; dcmweb sends the files as they are."],
    )
    store_small_par = Case(
        "store-small-par", f"Store {s.small.count:,} x {small_mb / s.small.count * 1000:.1f} KB "
        "instances, parallel", "inst", s.small.count, "curl-p4",
        [
            Client("dcmweb-cli-m", f"dcmweb -m store {CLI_M}", "dcmweb-cli",
                   cli("-m", "HOST", "store", str(s.small.root))),
            Client("dcmweb-lib-4", "dcmweb Client(workers=4).store (library)", "dcmweb-lib",
                   lib("dcmweb-store", folder=str(s.small.root), workers=4)),
            *parallel_curls(b["small-1"]),
            Client("curl-p4-20", "curl --parallel --parallel-max 4, 20 per request", "curl",
                   curl_store(b["small-20"], parallel=4)),
        ],
        fresh_server=fresh, after_run=after_store(s.small.count),
        notes=["dicomweb-client has no parallel store; its sequential rows are above."],
    )
    large_mb = s.large.total_bytes / 1e6
    store_large = Case(
        "store-large", f"Store {s.large.count} x {large_mb / s.large.count * 1000:.0f} KB "
        f"instances ({large_mb:.1f} MB)", "MB", large_mb, "curl-1",
        [
            Client("dcmweb-cli", "dcmweb store (CLI)", "dcmweb-cli",
                   cli("HOST", "store", str(s.large.root))),
            Client("dcmweb-cli-m", f"dcmweb -m store {CLI_M}", "dcmweb-cli",
                   cli("-m", "HOST", "store", str(s.large.root))),
            Client("dcmweb-lib", "dcmweb Client.store (library)", "dcmweb-lib",
                   lib("dcmweb-store", folder=str(s.large.root))),
            Client("curl-1", "curl, 1 per request, keep-alive", "curl",
                   curl_store(b["large-1"])),
            Client("dcmweb-lib-m", f"dcmweb Client(workers={LOCAL_WORKERS}).store (library)",
                   "dcmweb-lib", lib("dcmweb-store", folder=str(s.large.root),
                                     workers=LOCAL_WORKERS)),
            *parallel_curls(b["large-1"]),
            Client("dwc-all", "dicomweb-client, store_instances(all datasets)",
                   "dicomweb-client", lib("dwc-store", folder=str(s.large.root))),
        ],
        fresh_server=fresh, after_run=after_store(s.large.count),
    )
    store_real = Case(
        "store-real", f"Store the real pydicom test files ({s.real.count} files, "
        f"{s.real.total_bytes / 1e6:.1f} MB, mixed transfer syntaxes)", "inst", s.real.count,
        "curl-1",
        [
            Client("dcmweb-cli", "dcmweb store (CLI)", "dcmweb-cli",
                   cli("HOST", "store", str(s.real.root))),
            Client("dcmweb-cli-m", f"dcmweb -m store {CLI_M}", "dcmweb-cli",
                   cli("-m", "HOST", "store", str(s.real.root))),
            Client("curl-1", "curl, 1 per request, keep-alive", "curl",
                   curl_store(b["real-1"])),
            Client("dcmweb-lib-m", f"dcmweb Client(workers={LOCAL_WORKERS}).store (library)",
                   "dcmweb-lib", lib("dcmweb-store", folder=str(s.real.root),
                                     workers=LOCAL_WORKERS)),
            *parallel_curls(b["real-1"]),
            Client("dwc-1", "dicomweb-client, store_instances([ds]) per instance",
                   "dicomweb-client", lib("dwc-store", folder=str(s.real.root), per_call=1)),
        ],
        fresh_server=fresh, after_run=after_store(s.real.count),
        notes=["The files of pydicom and pydicom-data that Orthanc 1.10 accepts, one per SOP "
               "Instance UID."],
    )

    study = s.large.studies[0]
    study10 = s.large10.studies[0]
    read_large = _loaded(run_dir, "large", [s.large, s.large10], [b["large-1"], b["large10-1"]])

    def one_study(uid: str) -> Callable[[Ctx], list[tuple[str, str]]]:
        return lambda ctx: [(f"studies/{uid}", "study.multipart")]

    retrieve_study = Case(
        "retrieve-study", f"Retrieve a {large_mb:.1f} MB study ({s.large.count} instances) "
        "to disk", "MB", large_mb, "curl",
        [
            Client("dcmweb-cli", "dcmweb retrieve (CLI)", "dcmweb-cli",
                   cli("HOST", "retrieve", f"studies/{study}", "-o", "OUT"),
                   check_identical(s.large)),
            Client("dcmweb-lib", "dcmweb Client.retrieve (library)", "dcmweb-lib",
                   lib("dcmweb-retrieve", path=f"studies/{study}"), check_identical(s.large)),
            Client("curl", "curl -o (one multipart file; curl cannot split it)", "curl",
                   curl_get(one_study(study), ANY_TS_MULTIPART), check_wrapped(s.large)),
            Client("dwc", "dicomweb-client retrieve_study + save_as", "dicomweb-client",
                   lib("dwc-retrieve-study", study=study), check_same_content(s.large)),
        ],
        shared_server=read_large,
        notes=["All ask for the stored bytes (transfer-syntax=*). dcmweb and dicomweb-client "
               "write one .dcm per instance; curl writes the raw multipart answer."],
    )
    retrieve_study10 = Case(
        "retrieve-study-10", f"Retrieve a {s.large10.total_bytes / 1e6:.1f} MB study "
        f"({s.large10.count} instances) to disk: memory baseline", "MB",
        s.large10.total_bytes / 1e6, "curl",
        [
            Client("dcmweb-cli", "dcmweb retrieve (CLI)", "dcmweb-cli",
                   cli("HOST", "retrieve", f"studies/{study10}", "-o", "OUT"),
                   check_identical(s.large10)),
            Client("dcmweb-lib", "dcmweb Client.retrieve (library)", "dcmweb-lib",
                   lib("dcmweb-retrieve", path=f"studies/{study10}"),
                   check_identical(s.large10)),
            Client("curl", "curl -o (one multipart file)", "curl",
                   curl_get(one_study(study10), ANY_TS_MULTIPART), check_wrapped(s.large10)),
        ],
        shared_server=read_large,
        notes=["Peak RSS here against the 10x larger study above shows whether memory grows "
               "with the data."],
    )
    read_small = _loaded(run_dir, "small", [s.small], [b["small-20"]])
    retrieve_store = Case(
        "retrieve-store", f"Retrieve a whole store of {s.small.count:,} instances "
        f"({len(s.small.studies)} studies, {small_mb:.1f} MB)", "inst", s.small.count,
        "curl-best",
        [
            Client("dcmweb-cli", "dcmweb retrieve (CLI)", "dcmweb-cli",
                   cli("HOST", "retrieve", "-o", "OUT"), check_identical(s.small)),
            Client("dcmweb-cli-m", f"dcmweb -m retrieve {CLI_M}", "dcmweb-cli",
                   cli("-m", "HOST", "retrieve", "-o", "OUT"), check_identical(s.small)),
            Client("dcmweb-lib-4", "dcmweb Client(workers=4).retrieve (library)", "dcmweb-lib",
                   lib("dcmweb-retrieve", workers=4), check_identical(s.small)),
            Client("curl-studies", "curl script: list studies, fetch each, --parallel 4",
                   "curl", curl_script("studies"), check_wrapped(s.small)),
            Client("curl-instances", "curl script: list instances, fetch each, --parallel 4",
                   "curl", curl_script("instances"), check_wrapped(s.small)),
            Client("dwc", "dicomweb-client search_for_studies + retrieve_study + save_as",
                   "dicomweb-client", lib("dwc-retrieve-store"), check_same_content(s.small)),
        ],
        shared_server=read_small,
        notes=["The curl scripts are benchmarks/curl-retrieve-store.sh (QIDO list, jq, one curl "
               "--parallel); their files are raw multipart answers, not .dcm files. "
               "'curl-best' is the faster of the two in each repetition."],
    )
    page = 1000
    n_search = s.search.count

    def pages(ctx: Ctx) -> list[tuple[str, str]]:
        return [(f"instances?limit={page}&offset={off}", f"page-{off:06d}.json")
                for off in range(0, n_search + 1, page)]

    read_search = _loaded(run_dir, "search", [s.search], [b["search-20"]])
    search = Case(
        "search", f"Search {n_search:,} instances, {page:,} per page "
        f"({n_search // page + 1} requests)", "inst", n_search, "curl",
        [
            Client("dcmweb-cli", f"dcmweb search instances --page-size {page} (CLI, JSON "
                   "to a file)", "dcmweb-cli",
                   cli("HOST", "search", "instances", "--page-size", str(page),
                       stdout_name="out.json"), check_rows(n_search)),
            Client("dcmweb-cli-jsonl", f"dcmweb search ... --page-size {page} --format jsonl",
                   "dcmweb-cli",
                   cli("HOST", "search", "instances", "--page-size", str(page), "--format",
                       "jsonl", stdout_name="out.jsonl"), check_rows(n_search)),
            Client("dcmweb-lib", f"dcmweb Client.search(page_size={page}) (library)",
                   "dcmweb-lib", lib("dcmweb-search", page_size=page),
                   check_lib_count("rows", n_search)),
            Client("curl", "curl, the same requests, keep-alive, pages to files", "curl",
                   curl_get(pages, "application/dicom+json"), check_rows(n_search)),
            Client("dwc", f"dicomweb-client search_for_instances(limit={page}, "
                   "get_remaining=True)", "dicomweb-client", lib("dwc-search", page_size=page),
                   check_lib_count("rows", n_search)),
        ],
        shared_server=read_search,
        notes=["dicomweb-client returns only the first page unless get_remaining=True "
               "(without it, GCP's silent 1,000-row default cap goes unnoticed)."],
    )
    startup = Case(
        "startup", "Start-up: dcmweb --help and --version", "run", 1, "python",
        [
            Client("help", "dcmweb --help", "dcmweb-cli", cli("--help")),
            Client("version", "dcmweb --version", "dcmweb-cli", cli("--version")),
            Client("python", "python -c pass (the interpreter's floor)", "baseline",
                   python_floor),
            Client("click", "python -c 'import click' (a click CLI's floor)", "baseline",
                   click_floor),
        ],
        repeat=7,
    )
    from .cases10 import build_issue10_cases

    return [startup, store_small_seq, store_small_par, store_large, store_real,
            retrieve_study, retrieve_study10, retrieve_store, search,
            *build_issue10_cases(s, run_dir)]


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


__all__ = ["ROOT", "Case", "Client", "Ctx", "Sets", "build_cases", "remove"]
