"""python -m benchmarks [--quick] [--reps N] [--only CASE,...] [--work-dir DIR] [--out DIR]

Starts its own Orthanc servers on 127.0.0.1, makes the data, runs every case for
dcmweb (command and library), curl and dicomweb-client, and writes
benchmarks/results/latest.md and latest.json. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import IO

from . import data, servers
from .cases import Case, Ctx, Sets, build_cases, remove
from .measure import ROOT, Sample, say
from .report import Results, write


def _busy_fraction(seconds: float = 1.0) -> float:
    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values) - values[3] - values[4], sum(values)

    a = read()
    time.sleep(seconds)
    b = read()
    return (b[0] - a[0]) / max(1, b[1] - a[1])


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except OSError:
        return "?"
    return out.split("\n")[0].split()[1] if out else "?"


def check_tools() -> None:
    missing = [tool for tool in ("curl", "jq") if shutil.which(tool) is None]
    if not os.access("/usr/bin/time", os.X_OK):
        missing.append("GNU time (apt-get install time)")
    if servers.find_orthanc() is None:
        missing.append("Orthanc (apt-get install orthanc orthanc-dicomweb)")
    try:
        import dicomweb_client  # noqa: F401
    except ImportError:
        missing.append("dicomweb-client (pip install -e '.[bench]')")
    if missing:
        sys.exit("benchmarks: missing " + ", ".join(missing))


def make_sets(data_dir: Path) -> Sets:
    say(f"data: synthetic sets (cached in {data_dir})")
    small = data.synthetic(data.SMALL, data_dir)
    large = data.synthetic(data.LARGE, data_dir)
    large10 = data.synthetic(data.LARGE10, data_dir)
    search = data.synthetic(data.SEARCH, data_dir)
    meta = data.synthetic(data.META, data_dir)
    huge = data.synthetic(data.HUGE, data_dir)
    corpus = servers.corpus
    candidates = corpus.orthanc_safe(corpus.pydicom_files() + corpus.pydicom_data_files())
    real = data.real_files(data_dir, candidates)
    bodies = {
        "small-1": data.curl_bodies(small, data_dir, 1),
        "small-20": data.curl_bodies(small, data_dir, 20),
        "large-1": data.curl_bodies(large, data_dir, 1),
        "large10-1": data.curl_bodies(large10, data_dir, 1),
        "search-20": data.curl_bodies(search, data_dir, 20),
        "real-1": data.curl_bodies(real, data_dir, 1),
        "meta-20": data.curl_bodies(meta, data_dir, 20),
        "huge-1": data.curl_bodies(huge, data_dir, 1),
    }
    say(f"data: {small.count} small, {large.count}+{large10.count} large, {search.count} "
        f"search, {real.count} real files")
    return Sets(small, large, large10, search, real, bodies, meta, huge)


def run_case(case: Case, reps: int, run_dir: Path, results: Results) -> None:
    scratch = run_dir / "scratch"
    output = run_dir / "out"
    # Each run's files are kept until the case ends. Deleting them before the next run
    # made its file creations slow: ext4 without a journal (this machine's) skips inodes
    # freed in the last minute when it allocates one, up to 0.5 ms per file after 1,000
    # deletes, which charged a client writing 1,000 files for the harness's cleanup.
    spent = run_dir / "spent"
    shared = None
    if case.shared_server is not None:
        started = time.monotonic()
        shared = case.shared_server()
        say(f"{case.key}: server loaded in {time.monotonic() - started:.1f} s")
    try:
        for rep in range(reps):
            shift = rep % len(case.clients)
            order = case.clients[shift:] + case.clients[:shift]
            for client in order:
                for _ in range(case.repeat):
                    remove(scratch)
                    _set_aside(output, spent)
                    scratch.mkdir(parents=True)
                    # Flush the last run's writes and deletes now, not during this run.
                    os.sync()
                    server = case.fresh_server() if case.fresh_server else shared
                    url = server.url if server is not None else ""
                    try:
                        ctx = Ctx(url, scratch, output)
                        server_before = _cpu_of(server.pid) if server is not None else None
                        sample = client.run(ctx)
                        server_after = _cpu_of(server.pid) if server is not None else None
                        if server_before is not None and server_after is not None:
                            sample.extra["server_cpu"] = server_after - server_before
                        if case.after_run is not None and server is not None:
                            case.after_run(server, sample)
                        if client.check is not None and sample.ok:
                            client.check(ctx, sample)
                    finally:
                        if case.fresh_server and server is not None:
                            server.stop()
                    results.setdefault(case.key, {}).setdefault(client.key, []).append(sample)
                    _log(case, client.key, rep, sample)
    finally:
        if shared is not None:
            shared.stop()
        remove(output)
        remove(spent)


def _cpu_of(pid: int) -> float | None:
    """The user+sys seconds a process has used so far (Linux's /proc), None if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _set_aside(output: Path, spent: Path) -> None:
    """Move the last run's output under spent/ (deleted when the case ends)."""
    if output.exists():
        spent.mkdir(parents=True, exist_ok=True)
        output.rename(spent / str(len(list(spent.iterdir()))))


def hold(work: Path) -> IO[str]:
    """One run per work folder: a second one (even ``--list``) would delete the first's
    server folders and outputs under it."""
    import fcntl

    work.mkdir(parents=True, exist_ok=True)
    lock = (work / "run.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"benchmarks: another run is using {work}: wait for it to end, "
                         "or give another --work-dir") from None
    return lock


def compile_dcmweb() -> None:
    """Byte-compile dcmweb as pip does when it installs a wheel: the clients run with
    PYTHONDONTWRITEBYTECODE=1, and an editable checkout without __pycache__ would compile
    every module on every run (tens of ms no installed copy pays)."""
    import compileall

    if not compileall.compile_dir(ROOT / "dcmweb", quiet=1):
        raise SystemExit("benchmarks: dcmweb does not byte-compile")


def _log(case: Case, key: str, rep: int, sample: Sample) -> None:
    status = "ok" if sample.ok else f"FAILED {sample.note}"
    say(f"{case.key} rep {rep + 1} {key}: {sample.wall:.3f} s, cpu {sample.cpu:.2f} s, "
        f"rss {sample.rss_mb:.0f} MB, {status}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split(
        "\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--quick", action="store_true", help="one repetition")
    parser.add_argument("--only", help="comma-separated case keys (default: all)")
    parser.add_argument("--list", action="store_true", help="list the case keys and exit")
    parser.add_argument("--work-dir", type=Path, default=data.default_work_dir(),
                        help="data cache and server folders (default ~/.cache/dcmweb-bench)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                        help="where latest.md and latest.json go")
    args = parser.parse_args(argv)
    reps = 1 if args.quick else args.reps
    check_tools()
    work = args.work_dir.absolute()
    lock = hold(work)  # noqa: F841 (held until the process ends)
    run_dir = work / "run"
    sets = make_sets(work / "data")
    cases = build_cases(sets, run_dir)
    if args.list:
        for case in cases:
            print(f"{case.key:20} {case.title}")
        return 0
    remove(run_dir)
    run_dir.mkdir(parents=True)
    servers.compile_shim()
    compile_dcmweb()
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {c.key for c in cases}
        if unknown:
            parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
        cases = [c for c in cases if c.key in wanted]

    probe = servers.fresh_orthanc(run_dir / "orthanc-probe")
    server_version = servers.orthanc_version(probe)
    probe.stop()
    busy = _busy_fraction()
    load_before = os.getloadavg()
    import dicomweb_client
    import pydicom

    import dcmweb

    started = time.monotonic()
    results: Results = {}
    broken: list[str] = []

    def meta() -> dict[str, object]:
        return {
            "command": "python -m benchmarks" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:]
                                                 else ""),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "reps": reps,
            "machine": f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
            "server": server_version,
            "dcmweb": dcmweb.__version__,
            "curl": _version(["curl", "--version"]),
            "dicomweb_client": dicomweb_client.__version__,
            "pydicom": pydicom.__version__,
            # A distribution's build (PGO, LTO) runs dcmweb about a fifth faster than one
            # compiled without them (pyenv's default): say which one the numbers are from.
            "python": f"{platform.python_version()} ({os.path.realpath(sys.executable)})",
            "background": (f"{busy:.0%} of the CPUs busy before the run, load average "
                           f"{load_before[0]:.1f} before and {os.getloadavg()[0]:.1f} after"),
            "elapsed_s": round(time.monotonic() - started, 1),
            "broken_cases": broken,
        }

    for case in cases:
        say(f"case {case.key}: {case.title}")
        # A case whose set-up breaks (a server that would not load) costs its own rows,
        # not the run's: the others go on, and the results so far are on disk after each.
        try:
            run_case(case, reps, run_dir, results)
        except Exception:  # reported, and named in the results
            say(f"case {case.key} broke:\n{traceback.format_exc()}")
            broken.append(case.key)
        write(args.out, cases, results, meta())
    elapsed = time.monotonic() - started
    remove(run_dir)
    say(f"done in {elapsed:.0f} s: {args.out / 'latest.md'}")
    failed = [f"{c}/{k}" for c, runs in results.items() for k, s in runs.items()
              if not all(x.ok for x in s)]
    if failed:
        say("runs that failed their checks: " + ", ".join(failed))
    if broken:
        say("cases that broke (no rows): " + ", ".join(broken))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
