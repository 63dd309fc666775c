"""Issue-8 benchmarks: the nightly bulk upload. ``python -m benchmarks.bulk [--quick]``.

Each dcmweb run is its own process (as cron runs it), timed with ``wait4`` (wall, CPU,
peak RSS), against dcmweb's local GCP-like server on 127.0.0.1 (a fresh store per run).
Cases:

- journal: the same upload with and without ``--journal`` (the cost of the journal);
- walk: a tree of many small files: time to the first request, peak RSS, and the
  client's CPU per instance for the whole upload;
- quota: a server with a request quota (429 above N/s): the adaptive run alone, and
  with ``--max-rate`` at the quota; the rate reached, 429s and failed files;
- window quota: Google's kind, so many requests per window and 429s without
  Retry-After until the next one: the adaptive run's time against the windows needed.

Results go to ``benchmarks/results/bulk.md`` and ``bulk.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dcmweb.testing import LocalServer
from dcmweb.testing.faults import Quota, WindowQuota
from dcmweb_devtools import corpus

RESULTS = Path(__file__).resolve().parent / "results"


def small_template(root: Path) -> Path:
    """CT_small without its pixel data: a valid 7 KB instance."""
    import pydicom

    root.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(corpus.pydicom_test_files_dir() / "CT_small.dcm")
    del ds.PixelData
    ds.save_as(root / "small.dcm", enforce_file_format=True)
    return root / "small.dcm"


def clone_tree(root: Path, count: int, per_folder: int = 500) -> list[Path]:
    """``count`` valid 7 KB instances made from one synthetic file by rewriting its UIDs
    in place (same length), so that 100,000 files take seconds, not pydicom's minutes."""
    template = corpus.synthetic_files(root / "template", 1, seed="bulk-bench",
                                      template=small_template(root / "small"))[0]
    data = template.read_bytes()
    sop = corpus.sop_instance_uid(template)
    assert sop is not None
    stem = sop[:-8]
    paths = []
    for index in range(count):
        folder = root / "tree" / f"{index // per_folder:04d}"
        if index % per_folder == 0:
            folder.mkdir(parents=True)
        path = folder / f"{index:07d}.dcm"
        path.write_bytes(data.replace(sop.encode(), f"{stem}{index:08d}".encode()))
        paths.append(path)
    return paths


def run_dcmweb(args: list[str], until_first_request: LocalServer | None = None,
               stop_after: float | None = None) -> dict[str, Any]:
    """Run dcmweb as a process; wall seconds, CPU seconds, peak RSS (MiB), exit code.
    With ``stop_after``, SIGTERM it that many seconds after its first request."""
    started = time.monotonic()
    # Peak RSS from GNU time: a child forked from this (large) harness would report the
    # harness's high-water mark in ru_maxrss.
    process = subprocess.Popen(["/usr/bin/time", "-f", "maxrss_kib=%M",
                                sys.executable, "-m", "dcmweb", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = None
    if until_first_request is not None:
        while first is None and process.poll() is None:
            if until_first_request.requests:
                first = time.monotonic() - started
            time.sleep(0.002)
        if stop_after is not None and first is not None:
            time.sleep(stop_after)
            # SIGTERM to dcmweb itself (GNU time would die and leave it running).
            subprocess.run(["pkill", "-TERM", "-P", str(process.pid)], check=False)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    assert process.stderr is not None
    lines = process.stderr.read().decode(errors="replace").strip().splitlines()
    rss = next((int(line.split("=")[1]) for line in reversed(lines)
                if line.startswith("maxrss_kib=")), 0)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": rss / 1024,
            "exit": os.waitstatus_to_exitcode(status), "first_request": first,
            "last_line": [line for line in lines if not line.startswith("maxrss")][-1:]}


def journal_case(work: Path, files: int, reps: int) -> dict[str, Any]:
    clone_tree(work / "j", files)
    samples: dict[str, list[float]] = {"plain": [], "journal": []}
    for rep in range(reps):
        for kind in (("plain", "journal") if rep % 2 == 0 else ("journal", "plain")):
            with LocalServer(work / f"store-{kind}-{rep}") as server:
                extra = ["--journal", str(work / f"j-{rep}.db")] if kind == "journal" else []
                result = run_dcmweb(["-m", "-q", server.url, "store", str(work / "j" / "tree"),
                                     *extra])
                assert result["exit"] == 0, result
                samples[kind].append(result["wall"])
    plain, journal = (statistics.median(samples[k]) for k in ("plain", "journal"))
    return {"files": files, "reps": reps, "plain_s": plain, "journal_s": journal,
            "slower_pct": 100 * (journal / plain - 1), "samples": samples}


def walk_case(work: Path, files: int, upload_files: int) -> dict[str, Any]:
    clone_tree(work / "w", files)
    tree = str(work / "w" / "tree")
    with LocalServer(work / "store-walk") as server:
        # The first request, then 10 s of upload while the walk goes on, then SIGTERM.
        started = run_dcmweb(["-m", "-q", server.url, "store", tree],
                             until_first_request=server, stop_after=10.0)
    dry = run_dcmweb(["-q", "http://127.0.0.1:9/dicomweb", "store", tree, "--dry-run"])
    clone_tree(work / "u", upload_files)
    with LocalServer(work / "store-upload") as server:
        whole = run_dcmweb(["-m", "-q", server.url, "store", str(work / "u" / "tree")])
        assert whole["exit"] == 0, whole
    return {"files": files, "first_request_s": started["first_request"],
            "rss_after_10s_mib": started["rss_mib"],
            "dry_run_s": dry["wall"], "dry_run_rss_mib": dry["rss_mib"],
            "upload_files": upload_files, "upload_wall_s": whole["wall"],
            "upload_rss_mib": whole["rss_mib"],
            "cpu_ms_per_instance": 1000 * whole["cpu"] / upload_files}


def quota_case(work: Path, files: int, rate: float) -> dict[str, Any]:
    clone_tree(work / "q", files)
    rows: dict[str, dict[str, Any]] = {}
    for label, extra in (("adaptive, --workers 16", []),
                         (f"adaptive + --max-rate {rate:g}/s", ["--max-rate", f"{rate:g}/s"])):
        with LocalServer(work / f"store-quota-{len(rows)}") as server:
            server.quota = Quota(rate, burst=rate / 2)
            result = run_dcmweb(["-m", "--workers", "16", "-q", *extra, server.url, "store",
                                 str(work / "q" / "tree"), "--batch-size", "1"])
            stored = len(server.store.query("SELECT sop_uid FROM instances"))
            reached = server.quota.allowed / result["wall"]
            rows[label] = {"exit": result["exit"], "stored": stored, "failed": files - stored,
                           "wall_s": result["wall"], "requests_per_s": reached,
                           "of_ceiling_pct": 100 * reached / rate,
                           "429s": server.quota.refused}
    return {"files": files, "quota_per_s": rate, "runs": rows}


def window_quota_case(work: Path, files: int, limit: int, window: float) -> dict[str, Any]:
    clone_tree(work / "window", files)
    with LocalServer(work / "store-window") as server:
        server.quota = WindowQuota(limit, window)
        result = run_dcmweb(["-m", "--workers", "16", "-q", server.url, "store",
                             str(work / "window" / "tree"), "--batch-size", "1"])
        stored = len(server.store.query("SELECT sop_uid FROM instances"))
        return {"files": files, "limit": limit, "window_s": window, "exit": result["exit"],
                "failed": files - stored, "wall_s": result["wall"],
                "windows_needed_s": (files - 1) // limit * window, "429s": server.quota.refused}


def report(results: dict[str, Any]) -> str:
    j, w, q = results["journal"], results["walk"], results["quota"]
    lines = [
        "# Bulk upload benchmarks (issue 8)", "",
        f"Run {results['when']} on {results['host']}; local GCP-like server on loopback.", "",
        "## Journal overhead", "",
        f"{j['files']} files of 7 KB, `-m`, median of {j['reps']}: without "
        f"{j['plain_s']:.2f} s, with `--journal` {j['journal_s']:.2f} s "
        f"(**{j['slower_pct']:+.1f} %**; target <= 10 %).", "",
        "## Large tree", "",
        f"{w['files']} files of 7 KB in folders of 500, `-m`: first request after "
        f"**{w['first_request_s']:.2f} s**, peak RSS after 10 s of upload "
        f"**{w['rss_after_10s_mib']:.0f} MiB**; `--dry-run` over the whole tree (walk and "
        f"read every header) {w['dry_run_s']:.1f} s, peak RSS **{w['dry_run_rss_mib']:.0f} "
        f"MiB**.", "",
        f"A whole upload of {w['upload_files']} such files: {w['upload_wall_s']:.1f} s, peak "
        f"RSS {w['upload_rss_mib']:.0f} MiB, client CPU **{w['cpu_ms_per_instance']:.2f} ms "
        "per instance** (target <= 0.3 ms).", "",
        "## Request quota", "",
        f"{q['files']} files, one per request, server quota {q['quota_per_s']:g} requests/s "
        "(429 with Retry-After: 1 above it):", "",
        "| run | exit | failed files | requests/s | of the ceiling | 429s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, row in q["runs"].items():
        lines.append(f"| {label} | {row['exit']} | {row['failed']} | "
                     f"{row['requests_per_s']:.1f} | {row['of_ceiling_pct']:.0f} % | "
                     f"{row['429s']} |")
    wq = results["window_quota"]
    lines += [
        "", "## Quota per window", "",
        f"{wq['files']} files, one per request, `-m --workers 16`, server quota {wq['limit']} "
        f"requests per {wq['window_s']:g} s window (429 without Retry-After above it, like "
        f"Google's per-minute quotas): exit {wq['exit']}, {wq['failed']} failed, "
        f"**{wq['wall_s']:.1f} s** (the last window opens at {wq['windows_needed_s']:g} s), "
        f"{wq['429s']} 429s.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    with tempfile.TemporaryDirectory(prefix="dcmweb-bulk-bench-") as scratch:
        work = Path(scratch)
        results = {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "host": os.uname().nodename,
            "journal": journal_case(work, 2000 // scale, 1 if args.quick else 3),
            "walk": walk_case(work, 100_000 // scale, 10_000 // scale),
            "quota": quota_case(work, 1500 // scale, 50.0),
            "window_quota": window_quota_case(work, 900 // scale, 300 // scale, 20.0),
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bulk.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "bulk.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
