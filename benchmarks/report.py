"""Turn the samples into results/latest.json and results/latest.md (tables + targets)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cases import Case
from .measure import Sample

Results = dict[str, dict[str, list[Sample]]]  # case key -> client key -> samples (rep order)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _fastest_walls(series: list[list[Sample]]) -> list[float]:
    """Per repetition, the time of the fastest of several clients."""
    reps = min((len(s) for s in series), default=0)
    return [min(s[i].wall for s in series) for i in range(reps)]


def reference_walls(case: Case, results: Results) -> list[float]:
    """The reference (curl) time of each repetition; 'curl-best' = fastest curl that rep."""
    runs = results.get(case.key, {})
    if case.reference == "curl-best":
        return _fastest_walls([runs[c.key] for c in case.clients
                               if c.tool == "curl" and c.key in runs])
    return [s.wall for s in runs.get(case.reference, [])]


@dataclass
class Row:
    key: str
    label: str
    tool: str
    wall: float
    wall_min: float
    wall_max: float
    rate: float
    ratio: float | None  # reference time / this time, median over paired repetitions
    cpu: float
    cpu_per_item_ms: float
    rss_mb: float
    ok: bool
    check: str
    runs: int
    server_cpu: float | None = None  # user+sys seconds the server used during the run

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rows_for(case: Case, results: Results) -> list[Row]:
    runs = results.get(case.key, {})
    ref = reference_walls(case, results)
    rows = []
    for client in case.clients:
        samples = runs.get(client.key, [])
        if not samples:
            continue
        walls = [s.wall for s in samples]
        wall = _median(walls)
        ratios = [r / s.wall for r, s in zip(ref, samples, strict=False) if s.wall > 0]
        notes = sorted({s.note for s in samples if s.note})
        checks = sorted({str(s.extra.get("check")) for s in samples if s.extra.get("check")})
        ok = all(s.ok for s in samples)
        cpu = _median([s.cpu for s in samples])
        per_item = cpu / case.amount * 1000 if case.unit == "inst" else float("nan")
        server_cpus = [s.extra["server_cpu"] for s in samples if "server_cpu" in s.extra]
        rows.append(Row(
            client.key, client.label, client.tool, wall, min(walls), max(walls),
            case.amount / wall if wall > 0 else float("nan"),
            _median(ratios) if ratios else None, cpu, per_item,
            max(s.rss_mb for s in samples), ok,
            "; ".join(notes if not ok else checks or notes), len(samples),
            _median(server_cpus) if server_cpus else None))
    return rows


# -- targets ---------------------------------------------------------------------------------
@dataclass
class Target:
    text: str
    measured: str
    holds: bool | None  # None: not measured in this run


def _row(rows: dict[str, dict[str, Row]], case: str, key: str) -> Row | None:
    return rows.get(case, {}).get(key)


def _paired(results: Results, case: str, a: str, b: str,
            pick: Callable[[Sample], float] = lambda s: s.wall) -> float | None:
    """median over repetitions of pick(b) / pick(a): how many times faster a is than b."""
    sa, sb = results.get(case, {}).get(a, []), results.get(case, {}).get(b, [])
    values = [pick(y) / pick(x) for x, y in zip(sa, sb, strict=False) if pick(x) > 0]
    return _median(values) if values else None


def _paired_best(results: Results, case: str, a: str, refs: list[str],
                 added: float = 0.0) -> float | None:
    """median over repetitions of (the fastest of ``refs``) / (a + ``added`` seconds)."""
    runs = results.get(case, {})
    fastest = _fastest_walls([runs[r] for r in refs if runs.get(r)])
    values = [wall / (x.wall + added) for x, wall in zip(runs.get(a, []), fastest, strict=False)
              if x.wall > 0]
    return _median(values) if values else None


def targets(cases: list[Case], results: Results) -> list[Target]:
    rows = {c.key: {r.key: r for r in rows_for(c, results)} for c in cases}
    by_key = {c.key: c for c in cases}
    out: list[Target] = []

    def add(text: str, measured: str | None, holds: bool | None) -> None:
        out.append(Target(text, measured or "not measured", holds if measured else None))

    # store small, parallel
    cli_m = _row(rows, "store-small-par", "dcmweb-cli-m")
    if cli_m and cli_m.ratio is not None:
        add("Store 2,000 x 9 KB with -m: at least curl --parallel (1 per request)",
            f"{cli_m.rate:,.0f}/s = {cli_m.ratio:.2f}x curl --parallel", cli_m.ratio >= 1.0)
    else:
        add("Store 2,000 x 9 KB with -m: at least curl --parallel", None, None)
    best_dwc = None
    for key in ("dwc-1", "dwc-all"):
        r = _row(rows, "store-small-seq", key)
        if r and r.ok and (best_dwc is None or r.wall < best_dwc.wall):
            best_dwc = r
    if cli_m and best_dwc:
        ratio = best_dwc.wall / cli_m.wall
        add("Store 2,000 x 9 KB with -m: at least 2.5x dicomweb-client (its best way)",
            f"{ratio:.1f}x ({cli_m.rate:,.0f}/s vs {best_dwc.rate:,.0f}/s)", ratio >= 2.5)
    else:
        add("Store 2,000 x 9 KB with -m: at least 2.5x dicomweb-client", None, None)
    per_item = [r.cpu_per_item_ms for case in ("store-small-seq", "store-small-par")
                for r in rows.get(case, {}).values() if r.tool == "dcmweb-cli"]
    if per_item:
        worst = max(per_item)
        add("Client CPU per small instance stored (whole dcmweb process): at most 0.5 ms",
            f"{worst:.2f} ms (worst dcmweb CLI row)", worst <= 0.5)
    else:
        add("Client CPU per small instance stored: at most 0.5 ms", None, None)

    # issue 8 (a): every store case with -m against curl's best parallel configuration
    click_start = _row(rows, "startup", "click")
    for case_key, what in (("store-small-par", "2,000 x 9 KB"), ("store-large", "100 x 525 KB"),
                           ("store-real", "the real pydicom files")):
        parallel = [r.key for r in rows.get(case_key, {}).values()
                    if r.tool == "curl" and r.key.startswith("curl-p")]
        cli_best = _paired_best(results, case_key, "dcmweb-cli-m", parallel)
        text = f"Store {what} with -m: at least curl's best parallel configuration"
        if cli_best is None:
            add(text, None, None)
            continue
        library = [key for key in ("dcmweb-lib-m", "dcmweb-lib-4") if key in rows[case_key]]
        lib_best = _paired_best(results, case_key, library[0], parallel) if library else None
        lib_note = f"; library, work only: {lib_best:.2f}x" if lib_best is not None else ""
        if library and click_start is not None:
            ceiling = _paired_best(results, case_key, library[0], parallel,
                                   added=click_start.wall)
            lib_note += (f"; the ceiling of a CLI on click (library work + "
                         f"{click_start.wall * 1000:.0f} ms of python and click): {ceiling:.2f}x")
        add(text, f"CLI {cli_best:.2f}x the faster of {', '.join(parallel)}{lib_note}",
            cli_best >= 1.0)

    # retrieve the 52 MB study
    study = rows.get("retrieve-study", {})
    cli = study.get("dcmweb-cli")
    if cli and cli.ratio is not None:
        lib_row = study.get("dcmweb-lib")
        lib_note = (f"; library, work only: {lib_row.ratio:.2f}x"
                    if lib_row and lib_row.ratio is not None else "")
        add("Retrieve 52 MB study to disk: at least 0.8x curl to disk",
            f"CLI {cli.ratio:.2f}x curl ({cli.rate:,.0f} MB/s){lib_note}",
            cli.ratio >= 0.8 and cli.ok)
        lib_dwc = _paired(results, "retrieve-study", "dcmweb-lib", "dwc")
        proc_dwc = _paired(results, "retrieve-study", "dcmweb-cli", "dwc",
                           lambda x: x.process_wall)
        if lib_dwc is not None and proc_dwc is not None:
            add("Retrieve 52 MB study to disk: at least 5x dicomweb-client",
                f"library vs library (work only): {lib_dwc:.1f}x; whole processes "
                f"(dcmweb CLI vs a dicomweb-client script): {proc_dwc:.1f}x",
                min(lib_dwc, proc_dwc) >= 5)
        add("Retrieve 52 MB study: peak RSS under 80 MB", f"{cli.rss_mb:.0f} MB",
            cli.rss_mb < 80)
    else:
        add("Retrieve 52 MB study to disk: at least 0.8x curl to disk", None, None)

    # whole store
    store = rows.get("retrieve-store", {})
    best = None
    for key in ("dcmweb-cli-m", "dcmweb-cli"):
        r = store.get(key)
        if r and r.ratio is not None and (best is None or r.ratio > best.ratio):  # type: ignore[operator]
            best = r
    if best is not None and best.ratio is not None:
        split = _paired(results, "retrieve-store", best.key, "curl-instances")
        split_note = (f"; {split:.1f}x the curl script that fetches each instance"
                      if split is not None else "")
        add("Retrieve 2,000-instance store: at least 0.8x the best curl script",
            f"{best.ratio:.2f}x ({best.label}: {best.wall:.2f} s){split_note}",
            best.ratio >= 0.8)
        add("Retrieve 2,000-instance store: files byte-identical",
            best.check or "?", best.ok and "byte-identical" in best.check)
    else:
        add("Retrieve 2,000-instance store: at least 0.8x the best curl script", None, None)

    # search
    search = rows.get("search", {}).get("dcmweb-cli")
    if search and search.ratio is not None:
        slower = 1 / search.ratio
        add("Search 10,000 instances, paged: within 1.2x of curl's time (same requests)",
            f"{slower:.2f}x curl's time", slower <= 1.2 and search.ok)
    else:
        add("Search 10,000 instances, paged: within 1.2x of curl", None, None)

    # start-up
    help_row = rows.get("startup", {}).get("help")
    add("dcmweb --help: under 150 ms",
        f"{help_row.wall * 1000:.0f} ms" if help_row else None,
        bool(help_row and help_row.wall < 0.150))

    # memory flat in study size
    big = study.get("dcmweb-cli")
    small = rows.get("retrieve-study-10", {}).get("dcmweb-cli")
    if big and small:
        growth = big.rss_mb - small.rss_mb
        mb_big = by_key["retrieve-study"].amount
        mb_small = by_key["retrieve-study-10"].amount
        add("Memory flat: 10x more data raises peak RSS by under 10 MB",
            f"{growth:+.1f} MB ({small.rss_mb:.0f} MB at {mb_small:.0f} MB of data, "
            f"{big.rss_mb:.0f} MB at {mb_big:.0f} MB)", growth < 10)
    else:
        add("Memory flat: 10x more data raises peak RSS by under 10 MB", None, None)
    return out


# -- writing ---------------------------------------------------------------------------------
def _fmt_rate(case: Case, row: Row) -> str:
    if case.unit == "inst":
        return f"{row.rate:,.0f}/s"
    if case.unit == "MB":
        return f"{row.rate:,.0f} MB/s"
    return ""


def _fmt_time(case: Case, row: Row) -> str:
    if case.unit == "run":
        return f"{row.wall * 1000:.0f} ms ({row.wall_min * 1000:.0f}-{row.wall_max * 1000:.0f})"
    return f"{row.wall:.2f} s ({row.wall_min:.2f}-{row.wall_max:.2f})"


def markdown(cases: list[Case], results: Results, meta: dict[str, Any]) -> str:
    lines = [
        "# dcmweb benchmark: results",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} ({meta['reps']} repetitions; "
        "median, with min-max in brackets).",
        "",
        f"Machine: {meta['machine']}. Server: {meta['server']} on 127.0.0.1, fresh for every "
        f"store run. Clients: dcmweb {meta['dcmweb']}, curl {meta['curl']}, "
        f"dicomweb-client {meta['dicomweb_client']}, pydicom {meta['pydicom']}, "
        f"Python {meta['python']}.",
        "",
        f"Other load on the machine: {meta['background']}. Absolute numbers are noisy; the "
        "**x curl** column compares each client with curl in the same repetition (median of "
        "the paired ratios; above 1 is faster than curl).",
        "",
        "Time is the whole process for the dcmweb command and curl; for library rows it is "
        "the work alone (imports excluded). CPU is user+sys of that process; peak RSS is the "
        "process's ru_maxrss.",
        "",
    ]
    if meta.get("broken_cases"):
        lines += [f"Cases that broke before giving rows (see the run's log): "
                  f"{', '.join(meta['broken_cases'])}.", ""]
    lines += [
        "## Targets",
        "",
        "| target | measured | holds |",
        "| --- | --- | --- |",
    ]
    for t in targets(cases, results):
        mark = "yes" if t.holds else ("n/a" if t.holds is None else "**NO**")
        lines.append(f"| {t.text} | {t.measured} | {mark} |")
    for case in cases:
        rows = rows_for(case, results)
        if not rows:
            continue
        lines += ["", f"## {case.title}", ""]
        per = "CPU ms/inst" if case.unit == "inst" else "CPU s"
        rate = "" if case.unit == "run" else " rate |"
        # The server's CPU shows when the server, not the client, sets the pace: on this
        # 2-core machine client and server share the cores.
        server = case.fresh_server is not None and any(r.server_cpu is not None for r in rows)
        lines.append(f"| client | time |{rate} x {case.reference} | peak RSS | {per} |"
                     + (" server CPU s |" if server else "") + " check |")
        lines.append("| --- | --- |" + (" ---: |" if rate else "") + " ---: | ---: | ---: |"
                     + (" ---: |" if server else "") + " --- |")
        for r in rows:
            ratio = "—" if r.ratio is None else f"{r.ratio:.2f}"
            cpu = f"{r.cpu_per_item_ms:.2f}" if case.unit == "inst" else f"{r.cpu:.2f}"
            check = r.check if r.ok else f"**FAILED**: {r.check}"
            label = f"**{r.label}**" if r.tool.startswith("dcmweb") else r.label
            rate_cell = f" {_fmt_rate(case, r)} |" if rate else ""
            server_cell = ("" if not server else " — |" if r.server_cpu is None
                           else f" {r.server_cpu:.2f} |")
            lines.append(f"| {label} | {_fmt_time(case, r)} |{rate_cell} {ratio} | "
                         f"{r.rss_mb:.0f} MB | {cpu} |{server_cell} {check} |")
        for note in case.notes:
            lines += ["", note]
    lines.append("")
    return "\n".join(lines)


def write(out_dir: Path, cases: list[Case], results: Results, meta: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": meta,
        "targets": [t.__dict__ for t in targets(cases, results)],
        "cases": [
            {"key": c.key, "title": c.title, "unit": c.unit, "amount": c.amount,
             "reference": c.reference, "notes": c.notes,
             "rows": [r.as_dict() for r in rows_for(c, results)],
             "samples": {k: [s.to_json() for s in v] for k, v in results.get(c.key, {}).items()}}
            for c in cases
        ],
    }
    (out_dir / "latest.json").write_text(json.dumps(payload, indent=1) + "\n")
    (out_dir / "latest.md").write_text(markdown(cases, results, meta))
